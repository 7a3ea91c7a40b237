package xds

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/porticoproxy/portico/cluster"
)

func parseCLA(t testing.TB, js string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	var cla endpointv3.ClusterLoadAssignment
	if err := protojson.Unmarshal([]byte(js), &cla); err != nil {
		t.Fatalf("protojson.Unmarshal(%s): %v", js, err)
	}
	return &cla
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []cluster.Endpoint
	}{{
		name: "empty",
		json: `{"cluster_name": "svc"}`,
		want: []cluster.Endpoint{},
	}, {
		name: "priorities, localities and weights",
		json: `{"cluster_name": "svc", "endpoints": [
			{"locality": {"region": "eu", "zone": "eu-1", "sub_zone": "rack-3"}, "load_balancing_weight": 3, "lb_endpoints": [
				{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}, "load_balancing_weight": 5},
				{"endpoint": {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 80}}}, "health_status": "HEALTHY"}]},
			{"locality": {"zone": "eu-2"}, "priority": 1, "lb_endpoints": [
				{"endpoint": {"address": {"socket_address": {"address": "::1", "port_value": 8443}}}, "health_status": "DEGRADED"}]}],
			"policy": {"overprovisioning_factor": 140}}`,
		want: []cluster.Endpoint{
			{Address: "10.0.0.1:80", Weight: 5, Locality: "eu/eu-1/rack-3", LocalityWeight: 3},
			{Address: "10.0.0.2:80", Locality: "eu/eu-1/rack-3", LocalityWeight: 3, Health: cluster.Healthy},
			{Address: "[::1]:8443", Priority: 1, Locality: "/eu-2/", Health: cluster.Degraded},
		},
	}, {
		name: "health statuses",
		json: `{"cluster_name": "svc", "endpoints": [{"lb_endpoints": [
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 1}}}, "health_status": "UNKNOWN"},
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 2}}}, "health_status": "UNHEALTHY"},
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 3}}}, "health_status": "DRAINING"},
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 4}}}, "health_status": "TIMEOUT"}]}]}`,
		want: []cluster.Endpoint{
			{Address: "10.0.0.1:1", Health: cluster.Unknown},
			{Address: "10.0.0.1:2", Health: cluster.Unhealthy},
			{Address: "10.0.0.1:3", Health: cluster.Draining},
			{Address: "10.0.0.1:4", Health: cluster.HealthCheckTimeout},
		},
	}, {
		name: "metadata",
		json: `{"cluster_name": "svc", "endpoints": [{"lb_endpoints": [
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}},
			 "metadata": {"filter_metadata": {
				"envoy.lb": {"version": "v2", "canary": true, "shard": 3, "ratio": 0.25, "none": null},
				"istio": {"labels": {"b": "2", "a": "1"}, "ports": [80, "http"]}}}}]}]}`,
		want: []cluster.Endpoint{{Address: "10.0.0.1:80", Metadata: map[string]string{
			"envoy.lb.version": "v2", "envoy.lb.canary": "true", "envoy.lb.shard": "3", "envoy.lb.ratio": "0.25", "envoy.lb.none": "",
			"istio.labels": `{"a":"1","b":"2"}`, "istio.ports": `[80,"http"]`,
		}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := (&Translator{}).Endpoints(parseCLA(t, tt.json))
			if err != nil {
				t.Fatalf("Endpoints() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Endpoints() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEndpointsErrors(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		lenient bool // the error is expected in lenient mode too
		want    string
	}{
		{"proto validation", `{"cluster_name": ""}`, true,
			`cluster load assignment "": invalid: invalid ClusterLoadAssignment.ClusterName: value length must be at least 1 runes`},
		{"duplicate", `{"cluster_name": "svc", "endpoints": [{"lb_endpoints": [
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}},
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 80}}}},
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}}]}]}`, true,
			`cluster load assignment "svc": endpoints[0].lb_endpoints[2].endpoint.address: 10.0.0.1:80 duplicates endpoints[0].lb_endpoints[0]`},
		{"overprovisioning factor", `{"cluster_name": "svc", "policy": {"overprovisioning_factor": 100}}`, true,
			`cluster load assignment "svc": policy.overprovisioning_factor: 100: only Envoy's default 140 is supported: not supported`},
		{"port 0", `{"cluster_name": "svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 0}}}}]}]}`, true,
			`cluster load assignment "svc": endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: must be 1-65535`},
		{"pipe address", `{"cluster_name": "svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": "/tmp/s"}}}}]}]}`, false,
			`cluster load assignment "svc": endpoints[0].lb_endpoints[0].endpoint.address.pipe: not supported` + "\n" +
				`endpoints[0].lb_endpoints[0].endpoint.address: no socket_address`},
		{"named endpoints and drop overloads", `{"cluster_name": "svc", "policy": {"drop_overloads": [{"category": "x", "drop_percentage": {"numerator": 1}}]},
			"named_endpoints": {"a": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}}}`, false,
			`cluster load assignment "svc": named_endpoints: not supported` + "\n" + `policy.drop_overloads: not supported`},
		{"typed metadata", `{"cluster_name": "svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}},
			"metadata": {"typed_filter_metadata": {"x": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"}}}}]}]}`, false,
			`cluster load assignment "svc": endpoints[0].lb_endpoints[0].metadata.typed_filter_metadata: not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cla := parseCLA(t, tt.json)
			_, err := (&Translator{}).Endpoints(cla)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Endpoints() error =\n%v\nwant\n%s", err, tt.want)
			}
			_, err = (&Translator{Options: TranslateOptions{Lenient: true}}).Endpoints(cla)
			if tt.lenient && err == nil {
				t.Errorf("lenient Endpoints() error = nil, want %q", tt.want)
			}
			if !tt.lenient && strings.Contains(tt.want, "not supported") && err != nil && !strings.Contains(tt.want, "no socket_address") {
				t.Errorf("lenient Endpoints() error = %v, want nil", err)
			}
		})
	}
	if _, err := (&Translator{}).Endpoints(nil); err == nil {
		t.Errorf("Endpoints(nil) error = nil")
	}
	_, err := (&Translator{}).Endpoints(parseCLA(t, `{"cluster_name": "svc", "policy": {"overprovisioning_factor": 100}}`))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("Endpoints(overprovisioning_factor 100) error = %v, want ErrUnsupported", err)
	}
}

// bigCLA builds an assignment of n endpoints in 10 localities over 2
// priorities, with weights and health statuses, and metadata when
// withMetadata is set.
func bigCLA(n int, withMetadata bool) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "big"}
	const localities = 10
	for l := range localities {
		le := &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Region: "region", Zone: fmt.Sprintf("zone-%d", l)},
			LoadBalancingWeight: wrapperspb.UInt32(uint32(l + 1)),
			Priority:            uint32(l % 2),
		}
		for i := l; i < n; i += localities {
			lbe := &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address:       fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
					}}},
				}},
				LoadBalancingWeight: wrapperspb.UInt32(uint32(i%7 + 1)),
				HealthStatus:        corev3.HealthStatus(i % 3),
			}
			if withMetadata {
				lbe.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
					"envoy.lb": {Fields: map[string]*structpb.Value{"version": structpb.NewStringValue("v1")}},
				}}
			}
			le.LbEndpoints = append(le.LbEndpoints, lbe)
		}
		cla.Endpoints = append(cla.Endpoints, le)
	}
	return cla
}

func TestEndpointsLarge(t *testing.T) {
	eps, err := (&Translator{}).Endpoints(bigCLA(10_000, true))
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 10_000 {
		t.Fatalf("len(Endpoints()) = %d, want 10000", len(eps))
	}
	if err := (&cluster.Config{Name: "big", Type: cluster.EDS, Endpoints: eps}).Validate(); err != nil {
		t.Errorf("translated endpoints do not validate: %v", err)
	}
}

// BenchmarkEndpoints10k measures translating an EDS update of 10 000
// endpoints: validation, the allow-list walk and the translation.
func BenchmarkEndpoints10k(b *testing.B) {
	for _, md := range []bool{false, true} {
		b.Run(fmt.Sprintf("metadata=%v", md), func(b *testing.B) {
			cla := bigCLA(10_000, md)
			tr := &Translator{}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.Endpoints(cla); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
