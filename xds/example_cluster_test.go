package xds_test

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/porticoproxy/portico/xds"
)

func ExampleTranslator_Cluster() {
	// A cluster as it appears in an Envoy bootstrap's static_resources,
	// in its JSON form.
	const js = `{
		"name": "service1",
		"type": "STRICT_DNS",
		"connect_timeout": "0.25s",
		"lb_policy": "LEAST_REQUEST",
		"load_assignment": {
			"cluster_name": "service1",
			"endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "service1", "port_value": 8000}}}}]}]
		},
		"circuit_breakers": {"thresholds": [{"max_requests": 200}]},
		"typed_extension_protocol_options": {
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
				"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": {"http2_protocol_options": {}}
			}
		}
	}`
	var c clusterv3.Cluster
	if err := protojson.Unmarshal([]byte(js), &c); err != nil {
		fmt.Println(err)
		return
	}
	var tr xds.Translator
	cfg, refs, err := tr.Cluster(&c)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Name, cfg.Type, cfg.Protocol, cfg.ConnectTimeout, cfg.Endpoints[0].Address)
	fmt.Println("max requests:", cfg.CircuitBreakers.Default.MaxRequests, "refs:", len(refs.Endpoints)+len(refs.Secrets))

	// cluster.New(cfg) builds the cluster. An unsupported field fails the
	// translation, naming the field by its path.
	c.LbSubsetConfig = &clusterv3.Cluster_LbSubsetConfig{}
	_, _, err = tr.Cluster(&c)
	fmt.Println(err)
	// Output:
	// service1 StrictDNS HTTP2 250ms service1:8000
	// max requests: 200 refs: 0
	// cluster "service1": lb_subset_config: not supported
}

func ExampleTranslator_Endpoints() {
	const js = `{
		"cluster_name": "backend",
		"endpoints": [
			{"locality": {"region": "eu", "zone": "eu-1"}, "lb_endpoints": [
				{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}, "load_balancing_weight": 3}
			]},
			{"priority": 1, "lb_endpoints": [
				{"endpoint": {"address": {"socket_address": {"address": "10.0.1.1", "port_value": 80}}}, "health_status": "DRAINING"}
			]}
		]
	}`
	var tr xds.Translator
	cla := new(endpointv3.ClusterLoadAssignment)
	if err := protojson.Unmarshal([]byte(js), cla); err != nil {
		fmt.Println(err)
		return
	}
	eps, err := tr.Endpoints(cla)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ep := range eps {
		fmt.Printf("%s weight=%d priority=%d locality=%q %v\n", ep.Address, ep.Weight, ep.Priority, ep.Locality, ep.Health)
	}
	// Output:
	// 10.0.0.1:80 weight=3 priority=0 locality="eu/eu-1/" Unknown
	// 10.0.1.1:80 weight=0 priority=1 locality="" Draining
}
