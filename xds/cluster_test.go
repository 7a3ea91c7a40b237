package xds

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// Types the tests name in typed_configs that the translator rejects.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/tcp/v3"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/lb"
)

// parseCluster decodes an Envoy Cluster from its JSON form, as it
// appears in a bootstrap or a control plane's dump.
func parseCluster(t testing.TB, js string) *clusterv3.Cluster {
	t.Helper()
	var c clusterv3.Cluster
	if err := protojson.Unmarshal([]byte(js), &c); err != nil {
		t.Fatalf("protojson.Unmarshal(%s): %v", js, err)
	}
	return &c
}

// quote returns b as a JSON string literal, for PEM blocks in JSON.
func quote(b []byte) string {
	q, _ := json.Marshal(string(b))
	return string(q)
}

// staticLA is a load_assignment with one endpoint, 10.0.0.1:80.
const staticLA = `"load_assignment": {"cluster_name": "svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}}]}]}`

var oneEndpoint = []cluster.Endpoint{{Address: "10.0.0.1:80"}}

// ignoreBuilt leaves out what is compared elsewhere: the balancer
// builder, the resolver, the DNS cache and the health checkers.
var ignoreBuilt = cmpopts.IgnoreFields(cluster.Config{}, "Balancer", "Resolver", "DNSCache", "HealthChecks")

func u32(v uint32) *uint32 { return &v }

func TestClusterTranslate(t *testing.T) {
	pki := testCerts(t)
	tests := []struct {
		name string
		json string
		want cluster.Config
		refs Refs
	}{{
		name: "static",
		json: `{"name": "svc", "type": "STATIC", "lb_policy": "ROUND_ROBIN", ` + staticLA + `}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint},
	}, {
		name: "connect timeout",
		json: `{"name": "svc", "connect_timeout": "0.25s", ` + staticLA + `}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint, ConnectTimeout: 250 * time.Millisecond},
	}, {
		name: "strict dns",
		json: `{"name": "svc", "type": "STRICT_DNS", "dns_lookup_family": "V4_ONLY",
			"dns_refresh_rate": "10s", "dns_failure_refresh_rate": {"base_interval": "1s", "max_interval": "5s"},
			"respect_dns_ttl": true,
			"load_assignment": {"cluster_name": "svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "backend.test", "port_value": 8080}}}}]}]}}`,
		want: cluster.Config{
			Name: "svc", Type: cluster.StrictDNS, Endpoints: []cluster.Endpoint{{Address: "backend.test:8080"}},
			DNSLookupFamily: cluster.DNSV4Only, DNSRefreshRate: 10 * time.Second,
			DNSFailureRefreshRate: cluster.RefreshRate{BaseInterval: time.Second, MaxInterval: 5 * time.Second},
			RespectDNSTTL:         true,
		},
	}, {
		name: "logical dns",
		json: `{"name": "svc", "type": "LOGICAL_DNS", "dns_lookup_family": "ALL",
			"load_assignment": {"cluster_name": "svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "backend.test", "port_value": 443}}}}]}]}}`,
		want: cluster.Config{Name: "svc", Type: cluster.LogicalDNS, DNSLookupFamily: cluster.DNSAll, Endpoints: []cluster.Endpoint{{Address: "backend.test:443"}}},
	}, {
		name: "dns cluster extension",
		json: `{"name": "svc", "cluster_type": {"name": "envoy.cluster.dns", "typed_config": {
				"@type": "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster",
				"dns_refresh_rate": "3s", "respect_dns_ttl": true, "dns_lookup_family": "V6_ONLY"}},
			"load_assignment": {"cluster_name": "svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "backend.test", "port_value": 80}}}}]}]}}`,
		want: cluster.Config{
			Name: "svc", Type: cluster.StrictDNS, Endpoints: []cluster.Endpoint{{Address: "backend.test:80"}},
			DNSLookupFamily: cluster.DNSV6Only, DNSRefreshRate: 3 * time.Second, RespectDNSTTL: true,
		},
	}, {
		name: "eds over ads",
		json: `{"name": "svc", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}, "service_name": "svc-eds"}}`,
		want: cluster.Config{Name: "svc", Type: cluster.EDS},
		refs: Refs{Endpoints: []string{"svc-eds"}},
	}, {
		name: "eds over a grpc api config source, named after the cluster",
		json: `{"name": "svc", "type": "EDS", "eds_cluster_config": {"eds_config": {"resource_api_version": "V3",
			"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": true,
				"grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]}}}}`,
		want: cluster.Config{Name: "svc", Type: cluster.EDS},
		refs: Refs{Endpoints: []string{"svc"}},
	}, {
		name: "original dst",
		json: `{"name": "svc", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "cleanup_interval": "3s",
			"original_dst_lb_config": {"use_http_header": true, "http_header_name": "x-dst"}}`,
		want: cluster.Config{Name: "svc", Type: cluster.OriginalDst, OriginalDst: cluster.OriginalDstConfig{
			UseHTTPHeader: true, HTTPHeaderName: "x-dst", CleanupInterval: 3 * time.Second,
		}},
	}, {
		name: "dynamic forward proxy",
		json: `{"name": "dfp", "lb_policy": "CLUSTER_PROVIDED", "cluster_type": {"name": "envoy.clusters.dynamic_forward_proxy",
			"typed_config": {"@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
				"dns_cache_config": {"name": "dynamic_forward_proxy_cache_config", "dns_lookup_family": "V4_ONLY"}}}}`,
		want: cluster.Config{Name: "dfp", Type: cluster.DynamicForwardProxy},
	}, {
		name: "circuit breakers",
		json: `{"name": "svc", ` + staticLA + `, "circuit_breakers": {"thresholds": [
			{"max_connections": 10, "max_pending_requests": 20, "max_requests": 30, "max_retries": 4},
			{"priority": "HIGH", "max_requests": 100, "retry_budget": {"budget_percent": {"value": 25}, "min_retry_concurrency": 5}}]}}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint, CircuitBreakers: cluster.CircuitBreakers{
			Default: cluster.Thresholds{MaxConnections: 10, MaxPendingRequests: 20, MaxRequests: 30, MaxRetries: 4},
			High:    cluster.Thresholds{MaxRequests: 100, RetryBudget: &cluster.RetryBudget{BudgetPercent: 25, MinRetryConcurrency: 5}},
		}},
	}, {
		name: "outlier detection",
		json: `{"name": "svc", ` + staticLA + `, "outlier_detection": {
			"consecutive_5xx": 3, "interval": "2s", "base_ejection_time": "10s", "max_ejection_time": "60s",
			"max_ejection_time_jitter": "1s", "max_ejection_percent": 50, "enforcing_consecutive_5xx": 90,
			"consecutive_gateway_failure": 2, "enforcing_consecutive_gateway_failure": 100,
			"split_external_local_origin_errors": true, "consecutive_local_origin_failure": 4,
			"enforcing_consecutive_local_origin_failure": 80, "success_rate_minimum_hosts": 3,
			"success_rate_request_volume": 50, "success_rate_stdev_factor": 1500, "enforcing_success_rate": 0,
			"enforcing_local_origin_success_rate": 70, "failure_percentage_threshold": 60,
			"failure_percentage_minimum_hosts": 2, "failure_percentage_request_volume": 20,
			"enforcing_failure_percentage": 30, "enforcing_failure_percentage_local_origin": 40,
			"successful_active_health_check_uneject_host": false}}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint, OutlierDetection: &cluster.OutlierDetection{
			Consecutive5xx: 3, Interval: 2 * time.Second, BaseEjectionTime: 10 * time.Second,
			MaxEjectionTime: time.Minute, MaxEjectionTimeJitter: time.Second, MaxEjectionPercent: u32(50),
			EnforcingConsecutive5xx: u32(90), ConsecutiveGatewayFailure: 2, EnforcingConsecutiveGatewayFailure: u32(100),
			SplitExternalLocalOriginErrors: true, ConsecutiveLocalOriginFailure: 4,
			EnforcingConsecutiveLocalOriginFailure: u32(80), SuccessRateMinimumHosts: 3,
			SuccessRateRequestVolume: 50, SuccessRateStdevFactor: 1500, EnforcingSuccessRate: u32(0),
			EnforcingLocalOriginSuccessRate: u32(70), FailurePercentageThreshold: 60,
			FailurePercentageMinimumHosts: 2, FailurePercentageRequestVolume: 20,
			EnforcingFailurePercentage: u32(30), EnforcingFailurePercentageLocalOrigin: u32(40),
			SuccessfulActiveHealthCheckUnejectHost: new(bool),
		}},
	}, {
		name: "empty outlier detection takes Envoy's defaults",
		json: `{"name": "svc", ` + staticLA + `, "outlier_detection": {}}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint, OutlierDetection: &cluster.OutlierDetection{}},
	}, {
		name: "typed http2 protocol options",
		json: `{"name": "svc", ` + staticLA + `, "typed_extension_protocol_options": {
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
				"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"common_http_protocol_options": {"idle_timeout": "0s", "max_connection_duration": "60s", "max_requests_per_connection": 100},
				"explicit_http_config": {"http2_protocol_options": {"initial_stream_window_size": 65536, "initial_connection_window_size": 1048576}}}}}`,
		want: cluster.Config{
			Name: "svc", Endpoints: oneEndpoint, Protocol: cluster.HTTP2,
			HTTP2:       cluster.HTTP2Options{InitialStreamWindowSize: 65536, InitialConnectionWindowSize: 1 << 20},
			IdleTimeout: noIdleTimeout, MaxConnectionDuration: time.Minute, MaxRequestsPerConnection: 100,
		},
	}, {
		name: "typed http1 protocol options",
		json: `{"name": "svc", ` + staticLA + `, "typed_extension_protocol_options": {
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
				"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"common_http_protocol_options": {"idle_timeout": "30s"},
				"explicit_http_config": {"http_protocol_options": {}}}}}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint, IdleTimeout: 30 * time.Second},
	}, {
		name: "deprecated protocol fields (edge.yaml)",
		json: `{"name": "service_foo", "connect_timeout": "5s", "per_connection_buffer_limit_bytes": 32768, ` + staticLA + `,
			"http2_protocol_options": {"initial_stream_window_size": 65536, "initial_connection_window_size": 1048576},
			"max_requests_per_connection": 7}`,
		want: cluster.Config{
			Name: "service_foo", Endpoints: oneEndpoint, ConnectTimeout: 5 * time.Second, Protocol: cluster.HTTP2,
			HTTP2:                    cluster.HTTP2Options{InitialStreamWindowSize: 65536, InitialConnectionWindowSize: 1 << 20},
			MaxRequestsPerConnection: 7,
		},
	}, {
		name: "tcp keepalive",
		json: `{"name": "svc", ` + staticLA + `, "upstream_connection_options": {"tcp_keepalive": {"keepalive_probes": 3, "keepalive_time": 30, "keepalive_interval": 5}}}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint, TCPKeepalive: &cluster.TCPKeepalive{Probes: 3, Time: 30 * time.Second, Interval: 5 * time.Second}},
	}, {
		name: "upstream tls with inline certificates",
		json: `{"name": "svc", ` + staticLA + `, "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"sni": "backend.test",
			"common_tls_context": {
				"tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
				"alpn_protocols": ["h2", "http/1.1"],
				"tls_certificates": [{"certificate_chain": {"inline_string": ` + quote(pki.clientCert) + `}, "private_key": {"inline_bytes": "` + b64(pki.clientKey) + `"}}],
				"validation_context": {"trusted_ca": {"inline_string": ` + quote(pki.caPEM) + `},
					"match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": "spiffe://test/ns/default/sa/backend"}},
						{"san_type": "DNS", "matcher": {"exact": "Backend.Test", "ignore_case": true}}],
					"match_subject_alt_names": [{"exact": "127.0.0.1"}]}}}}}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint, TLS: &cluster.TLSConfig{
			ServerName: "backend.test", RootCAs: pki.caPEM, Certificate: pki.clientCert, Key: pki.clientKey,
			MatchSubjectAltNames: []cluster.SANMatcher{
				{Type: cluster.SANURI, Exact: "spiffe://test/ns/default/sa/backend"},
				{Type: cluster.SANDNS, Exact: "Backend.Test"},
				{Type: cluster.SANDNS, Exact: "127.0.0.1"}, {Type: cluster.SANURI, Exact: "127.0.0.1"}, {Type: cluster.SANIP, Exact: "127.0.0.1"},
			},
		}},
	}, {
		name: "upstream tls with system roots and auto sni",
		json: `{"name": "svc", ` + staticLA + `, "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"sni": "ignored.test", "auto_host_sni": true, "auto_sni_san_validation": true,
			"common_tls_context": {"validation_context": {"system_root_certs": {}}}}}}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint, TLS: &cluster.TLSConfig{}},
	}, {
		name: "raw buffer transport socket",
		json: `{"name": "svc", ` + staticLA + `, "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}`,
		want: cluster.Config{Name: "svc", Endpoints: oneEndpoint},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Translator{}
			t.Cleanup(func() { tr.CloseDNSCaches() })
			got, refs, err := tr.Cluster(parseCluster(t, tt.json))
			if err != nil {
				t.Fatalf("Cluster() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got, ignoreBuilt); diff != "" {
				t.Errorf("Cluster() config mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.refs, refs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Cluster() refs mismatch (-want +got):\n%s", diff)
			}
			if got.Balancer == nil && got.Type != cluster.OriginalDst && got.Type != cluster.DynamicForwardProxy {
				t.Errorf("Cluster() Balancer = nil")
			}
			if _, err := cluster.New(got); err != nil {
				t.Errorf("cluster.New(translated config) = %v", err)
			}
		})
	}
}

func b64(b []byte) string {
	q, _ := json.Marshal(b) // []byte marshals as base64, as protojson wants bytes
	return strings.Trim(string(q), `"`)
}

// TestClusterUnsupported checks that every unsupported field is reported
// by its path: an error in strict mode, a warning in lenient mode, where
// the cluster translates as if the field were absent.
func TestClusterUnsupported(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // paths and messages, in order
	}{{
		name: "lb_subset_config",
		json: `{"name": "svc", ` + staticLA + `, "lb_subset_config": {"fallback_policy": "ANY_ENDPOINT"}}`,
		want: []string{"lb_subset_config: not supported"},
	}, {
		name: "several top-level fields",
		json: `{"name": "svc", "alt_stat_name": "x", ` + staticLA + `, "metadata": {"filter_metadata": {"a": {"b": "c"}}}, "transport_socket_matches": [{"name": "m"}]}`,
		want: []string{"transport_socket_matches: not supported", "alt_stat_name: not supported", "metadata: not supported"},
	}, {
		name: "nested fields",
		json: `{"name": "svc", ` + staticLA + `, "outlier_detection": {"always_eject_one_host": true},
			"circuit_breakers": {"thresholds": [{"track_remaining": true}], "per_host_thresholds": [{"max_connections": 1}]},
			"common_lb_config": {"zone_aware_lb_config": {}, "update_merge_window": "1s"}}`,
		want: []string{
			"circuit_breakers.thresholds[0].track_remaining: not supported",
			"circuit_breakers.per_host_thresholds: not supported",
			"outlier_detection.always_eject_one_host: not supported",
			"common_lb_config.zone_aware_lb_config: not supported",
			"common_lb_config.update_merge_window: not supported",
		},
	}, {
		name: "endpoint fields",
		json: `{"name": "svc", "load_assignment": {"cluster_name": "svc", "endpoints": [{"priority": 0, "proximity": 1, "lb_endpoints": [
			{"endpoint": {"hostname": "h", "address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}}]}]}}`,
		want: []string{
			"load_assignment.endpoints[0].lb_endpoints[0].endpoint.hostname: not supported",
			"load_assignment.endpoints[0].proximity: not supported",
		},
	}, {
		name: "inside the tls context",
		json: `{"name": "svc", ` + staticLA + `, "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"allow_renegotiation": true, "common_tls_context": {"tls_params": {"cipher_suites": ["AES128-SHA"], "tls_minimum_protocol_version": "TLSv1_1"}}}}}`,
		want: []string{
			"transport_socket.typed_config.common_tls_context.tls_params.cipher_suites: not supported",
			"transport_socket.typed_config.allow_renegotiation: not supported",
			"transport_socket.typed_config.common_tls_context.tls_params.tls_minimum_protocol_version: TLSv1_1: Portico requires TLS 1.2 or later: not supported",
		},
	}, {
		name: "protocol options",
		json: `{"name": "svc", ` + staticLA + `, "typed_extension_protocol_options": {
			"envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions": {"@type": "type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"},
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
				"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
				"auto_config": {"http2_protocol_options": {}}}}}`,
		want: []string{
			`typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].common_http_protocol_options.headers_with_underscores_action: not supported`,
			`typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].auto_config: not supported`,
			`typed_extension_protocol_options["envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"]: type type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions: not supported`,
		},
	}, {
		name: "http2 options beyond the windows",
		json: `{"name": "svc", ` + staticLA + `, "http2_protocol_options": {"max_concurrent_streams": 10, "initial_stream_window_size": 65536}}`,
		want: []string{"http2_protocol_options.max_concurrent_streams: not supported"},
	}, {
		name: "lb config of another policy",
		json: `{"name": "svc", ` + staticLA + `, "ring_hash_lb_config": {"minimum_ring_size": 2048}}`,
		want: []string{"ring_hash_lb_config: does not apply to lb_policy ROUND_ROBIN: not supported"},
	}, {
		name: "typed lb policy field",
		json: `{"name": "svc", ` + staticLA + `, "load_balancing_policy": {"policies": [
			{"typed_extension_config": {"name": "envoy.load_balancing_policies.least_request", "typed_config": {
				"@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
				"selection_method": "FULL_SCAN"}}}]}}`,
		want: []string{"load_balancing_policy.policies[0].typed_extension_config.typed_config.selection_method: not supported"},
	}, {
		name: "ring hash murmur",
		json: `{"name": "svc", ` + staticLA + `, "lb_policy": "RING_HASH", "ring_hash_lb_config": {"hash_function": "MURMUR_HASH_2"}}`,
		want: []string{"ring_hash_lb_config.hash_function: not supported"},
	}, {
		name: "small buffer limit",
		json: `{"name": "svc", ` + staticLA + `, "per_connection_buffer_limit_bytes": 1024}`,
		want: []string{"per_connection_buffer_limit_bytes: 1024 is below Portico's fixed 32768-byte connection buffers: not supported"},
	}, {
		name: "eds cluster with an inline assignment",
		json: `{"name": "svc", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}}, ` + staticLA + `}`,
		want: []string{"load_assignment: not used by EDS clusters, whose endpoints come from EDS: not supported"},
	}, {
		name: "health check fields",
		json: `{"name": "svc", ` + staticLA + `, "health_checks": [{"timeout": "1s", "interval": "5s",
			"unhealthy_threshold": 2, "healthy_threshold": 2, "always_log_health_check_failures": true,
			"reuse_connection": false, "http_health_check": {"path": "/healthz", "request_headers_to_add": [{"header": {"key": "a", "value": "b"}}]}}]}`,
		want: []string{
			"health_checks[0].http_health_check.request_headers_to_add: not supported",
			"health_checks[0].always_log_health_check_failures: not supported",
			"health_checks[0].reuse_connection: false: Portico's HTTP checks keep their connection: not supported",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseCluster(t, tt.json)
			_, _, err := (&Translator{}).Cluster(c)
			if err == nil {
				t.Fatal("strict Cluster() error = nil, want unsupported fields")
			}
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("strict Cluster() error = %v, want one wrapping ErrUnsupported", err)
			}
			wantErr := `cluster "svc": ` + strings.Join(tt.want, "\n")
			if got := err.Error(); got != wantErr {
				t.Errorf("strict Cluster() error =\n%s\nwant\n%s", got, wantErr)
			}

			var warnings []string
			lenient := &Translator{Options: TranslateOptions{Lenient: true, OnUnsupported: func(w Warning) {
				warnings = append(warnings, w.String())
			}}}
			cfg, _, err := lenient.Cluster(c)
			if err != nil {
				t.Fatalf("lenient Cluster() error = %v", err)
			}
			// A warning reads like its error line, without the final
			// ": not supported" when it carries a message of its own.
			var want []string
			for _, w := range tt.want {
				if m := strings.TrimSuffix(w, ": not supported"); strings.Contains(m[strings.LastIndex(m, "]")+1:], ": ") {
					w = m
				}
				want = append(want, w)
			}
			if diff := cmp.Diff(want, warnings); diff != "" {
				t.Errorf("lenient warnings mismatch (-want +got):\n%s", diff)
			}
			if _, err := cluster.New(cfg); err != nil {
				t.Errorf("cluster.New(lenient config) = %v", err)
			}
		})
	}
}

// TestClusterLenientDrops checks that lenient mode translates as if the
// unsupported fields were absent.
func TestClusterLenientDrops(t *testing.T) {
	lenient := &Translator{Options: TranslateOptions{Lenient: true}}
	c := parseCluster(t, `{"name": "svc", `+staticLA+`, "typed_extension_protocol_options": {
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
			"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
			"auto_config": {"http2_protocol_options": {}}}},
		"lb_policy": "MAGLEV", "ring_hash_lb_config": {}}`)
	cfg, _, err := lenient.Cluster(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Protocol != cluster.HTTP1 {
		t.Errorf("Protocol = %v, want HTTP1 (auto_config dropped)", cfg.Protocol)
	}
	if b := cfg.Balancer(); reflect.TypeOf(b.(localityBlind).Balancer) != reflect.TypeFor[*lb.Maglev]() {
		t.Errorf("Balancer() = %T, want a Maglev", b)
	}
}

// TestClusterErrors checks values that cannot be represented: errors
// even in lenient mode, naming the field.
func TestClusterErrors(t *testing.T) {
	pki := testCerts(t)
	tlsSocket := func(ctx string) string {
		return `"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", ` + ctx + `}}`
	}
	tests := []struct {
		name string
		json string
		want string
	}{
		{"proto validation", `{"name": ""}`, `cluster "": invalid: invalid Cluster.Name: value length must be at least 1 runes`},
		{"explicit zero max_retries", `{"name": "svc", ` + staticLA + `, "circuit_breakers": {"thresholds": [{"max_retries": 0}]}}`,
			"circuit_breakers.thresholds[0].max_retries: explicit 0 (Portico's zero means Envoy's default): not supported"},
		{"duplicate priority", `{"name": "svc", ` + staticLA + `, "circuit_breakers": {"thresholds": [{"max_retries": 1}, {"max_retries": 2}]}}`,
			"circuit_breakers.thresholds[1].priority: DEFAULT duplicates circuit_breakers.thresholds[0]"},
		{"explicit zero consecutive_5xx", `{"name": "svc", ` + staticLA + `, "outlier_detection": {"consecutive_5xx": 0}}`,
			"outlier_detection.consecutive_5xx: explicit 0"},
		{"unknown transport socket", `{"name": "svc", ` + staticLA + `, "transport_socket": {"name": "t", "typed_config": {
			"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"}}}`,
			"transport_socket.typed_config: type type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext: not supported"},
		{"prefix san matcher", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"common_tls_context": {"validation_context": {
			"trusted_ca": {"inline_string": `+quote(pki.caPEM)+`}, "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"prefix": "backend"}}]}}`) + `}`,
			"transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names[0].matcher: only exact matches are supported: not supported"},
		{"email san", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"common_tls_context": {"validation_context": {
			"trusted_ca": {"inline_string": `+quote(pki.caPEM)+`}, "match_typed_subject_alt_names": [{"san_type": "EMAIL", "matcher": {"exact": "a@b"}}]}}`) + `}`,
			"match_typed_subject_alt_names[0].san_type: EMAIL: not supported"},
		{"sans without a ca", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"common_tls_context": {"validation_context": {
			"match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "backend.test"}}]}}`) + `}`,
			"validation_context: subject alt name matchers without trusted_ca or system_root_certs"},
		{"bad ca", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"common_tls_context": {"validation_context": {"trusted_ca": {"inline_string": "junk"}}}`) + `}`,
			"validation_context.trusted_ca: no PEM certificates found"},
		{"key does not match", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"common_tls_context": {"tls_certificates": [{
			"certificate_chain": {"inline_string": `+quote(pki.clientCert)+`}, "private_key": {"inline_string": `+quote(pki.otherKey)+`}}]}`) + `}`,
			"tls_certificates[0]: tls: private key does not match public key"},
		{"missing cert file", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"common_tls_context": {"tls_certificates": [{
			"certificate_chain": {"filename": "/nonexistent/cert.pem"}, "private_key": {"filename": "/nonexistent/key.pem"}}]}`) + `}`,
			"tls_certificates[0].certificate_chain.filename: open /nonexistent/cert.pem"},
		{"tls 1.3 floor", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"common_tls_context": {"tls_params": {"tls_minimum_protocol_version": "TLSv1_3"}}`) + `}`,
			"tls_params.tls_minimum_protocol_version: TLSv1_3: not supported"},
		{"alpn without the cluster's protocol", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"common_tls_context": {"alpn_protocols": ["h2"]}`) + `}`,
			`alpn_protocols: [h2] lacks "http/1.1", the protocol the cluster speaks: not supported`},
		{"health check over tls", `{"name": "svc", ` + staticLA + `, ` + tlsSocket(`"sni": "x"`) + `, "health_checks": [{"timeout": "1s", "interval": "1s",
			"unhealthy_threshold": 1, "healthy_threshold": 1, "http_health_check": {"path": "/"}}]}`,
			"health_checks[0].http_health_check: checks over the cluster's TLS transport socket: not supported"},
		{"tcp check with several receive blocks", `{"name": "svc", ` + staticLA + `, "health_checks": [{"timeout": "1s", "interval": "1s",
			"unhealthy_threshold": 1, "healthy_threshold": 1, "tcp_health_check": {"send": {"text": "01"}, "receive": [{"text": "02"}, {"text": "03"}]}}]}`,
			"health_checks[0].tcp_health_check.receive: 2 blocks; only one is supported: not supported"},
		{"load assignment on original dst", `{"name": "svc", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", ` + staticLA + `}`,
			"load_assignment: must be empty for a cluster of type OriginalDst"},
		{"round robin on original dst", `{"name": "svc", "type": "ORIGINAL_DST", "lb_policy": "RANDOM"}`,
			"lb_policy: RANDOM: a cluster of type OriginalDst picks its hosts itself; use CLUSTER_PROVIDED"},
		{"cluster provided elsewhere", `{"name": "svc", ` + staticLA + `, "lb_policy": "CLUSTER_PROVIDED"}`,
			"lb_policy: CLUSTER_PROVIDED applies only to ORIGINAL_DST and dynamic forward proxy clusters"},
		{"no known typed lb policy", `{"name": "svc", ` + staticLA + `, "load_balancing_policy": {"policies": [{"typed_extension_config": {"name": "wrr",
			"typed_config": {"@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin"}}}]}}`,
			"load_balancing_policy: no policy Portico implements (round_robin, least_request, random, ring_hash, maglev) among [type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin]"},
		{"maglev table not prime", `{"name": "svc", ` + staticLA + `, "lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 1000}}`,
			"maglev_lb_config: lb: maglev: table size 1000 is not prime"},
		{"ring sizes inverted", `{"name": "svc", ` + staticLA + `, "lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": 4096, "maximum_ring_size": 2048}}`,
			"ring_hash_lb_config: lb: ring hash: minimum ring size 4096 exceeds maximum 2048"},
		{"unknown cluster type", `{"name": "svc", "cluster_type": {"name": "envoy.clusters.aggregate", "typed_config": {
			"@type": "type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"}}}`,
			"cluster_type.typed_config: type type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions: not supported"},
		{"overprovisioning factor", `{"name": "svc", "load_assignment": {"cluster_name": "svc", "policy": {"overprovisioning_factor": 200}, "endpoints": []}}`,
			"load_assignment.policy.overprovisioning_factor: 200: only Envoy's default 140 is supported: not supported"},
		{"duplicate endpoint", `{"name": "svc", "load_assignment": {"cluster_name": "svc", "endpoints": [{"lb_endpoints": [
			{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}}]},
			{"priority": 1, "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}}]}]}}`,
			"load_assignment.endpoints[1].lb_endpoints[0].endpoint.address: 10.0.0.1:80 duplicates load_assignment.endpoints[0].lb_endpoints[0]"},
		{"typed and deprecated protocol options", `{"name": "svc", ` + staticLA + `, "http2_protocol_options": {}, "typed_extension_protocol_options": {
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
			"explicit_http_config": {"http2_protocol_options": {}}}}}`,
			`http2_protocol_options: deprecated field set together with typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, lenient := range []bool{false, true} {
				tr := &Translator{Options: TranslateOptions{Lenient: lenient}}
				_, _, err := tr.Cluster(parseCluster(t, tt.json))
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Cluster(lenient=%v) error = %v, want one containing %q", lenient, err, tt.want)
				}
			}
		})
	}
}

// TestClusterSDS checks SDS references: Refs list every secret even when
// one is missing, and found secrets fill the TLS config.
func TestClusterSDS(t *testing.T) {
	pki := testCerts(t)
	c := parseCluster(t, `{"name": "svc", `+staticLA+`, "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
		"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
		"common_tls_context": {
			"tls_certificate_sds_secret_configs": [{"name": "client", "sds_config": {"ads": {}}}],
			"combined_validation_context": {
				"default_validation_context": {"match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "backend.test"}}]},
				"validation_context_sds_secret_config": {"name": "ca", "sds_config": {"ads": {}}}}}}}}`)
	wantRefs := Refs{Secrets: []string{"client", "ca"}}

	secrets := map[string]*Secret{}
	tr := &Translator{Secrets: func(name string) (*Secret, bool) { s, ok := secrets[name]; return s, ok }}
	_, refs, err := tr.Cluster(c)
	if !errors.Is(err, ErrSecretNotFound) || !strings.Contains(err.Error(), `secret "client"`) {
		t.Errorf("Cluster() without secrets: error = %v, want ErrSecretNotFound naming client", err)
	}
	if diff := cmp.Diff(wantRefs, refs); diff != "" {
		t.Errorf("Cluster() refs mismatch (-want +got):\n%s", diff)
	}

	var err2 error
	if secrets["client"], err2 = tr.Secret(tlsCertSecret("client", pki.clientCert, pki.clientKey)); err2 != nil {
		t.Fatal(err2)
	}
	if secrets["ca"], err2 = tr.Secret(caSecret("ca", pki.caPEM, "spiffe://test/ns/default/sa/backend")); err2 != nil {
		t.Fatal(err2)
	}
	cfg, refs, err := tr.Cluster(c)
	if err != nil {
		t.Fatalf("Cluster() error = %v", err)
	}
	if diff := cmp.Diff(wantRefs, refs); diff != "" {
		t.Errorf("Cluster() refs mismatch (-want +got):\n%s", diff)
	}
	want := &cluster.TLSConfig{
		RootCAs: pki.caPEM, Certificate: pki.clientCert, Key: pki.clientKey,
		MatchSubjectAltNames: []cluster.SANMatcher{
			{Type: cluster.SANDNS, Exact: "backend.test"},
			{Type: cluster.SANURI, Exact: "spiffe://test/ns/default/sa/backend"},
		},
	}
	if diff := cmp.Diff(want, cfg.TLS); diff != "" {
		t.Errorf("TLS mismatch (-want +got):\n%s", diff)
	}

	// A certificate secret where a validation context belongs.
	secrets["ca"] = secrets["client"]
	if _, _, err := tr.Cluster(c); err == nil || !strings.Contains(err.Error(), `secret "client" is a tls_certificate, not a validation_context`) {
		t.Errorf("Cluster() with a certificate as CA: error = %v", err)
	}
}

// TestClusterBalancer checks the balancer each policy builds, and that
// locality weights reach it only with locality weighting on.
func TestClusterBalancer(t *testing.T) {
	typed := func(typ, body string) string {
		return `"load_balancing_policy": {"policies": [
			{"typed_extension_config": {"name": "unknown", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin"}}},
			{"typed_extension_config": {"name": "p", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.` + typ + `"` + body + `}}}]}`
	}
	tests := []struct {
		name     string
		fields   string
		want     reflect.Type
		locality bool
	}{
		{"default", `"lb_policy": "ROUND_ROBIN"`, reflect.TypeFor[*lb.RoundRobin](), false},
		{"round robin slow start", `"round_robin_lb_config": {"slow_start_config": {"slow_start_window": "10s", "aggression": {"default_value": 2, "runtime_key": ""}, "min_weight_percent": {"value": 20}}}`, reflect.TypeFor[*lb.RoundRobin](), false},
		{"least request", `"lb_policy": "LEAST_REQUEST", "least_request_lb_config": {"choice_count": 3, "active_request_bias": {"default_value": 0.5}}`, reflect.TypeFor[*lb.LeastRequest](), false},
		{"random", `"lb_policy": "RANDOM", "common_lb_config": {"healthy_panic_threshold": {"value": 0}, "locality_weighted_lb_config": {}}`, reflect.TypeFor[*lb.Random](), true},
		{"ring hash", `"lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": 2048, "maximum_ring_size": 4096}`, reflect.TypeFor[*lb.RingHash](), false},
		{"maglev", `"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 5003}`, reflect.TypeFor[*lb.Maglev](), false},
		{"typed round robin", typed("round_robin.v3.RoundRobin", `, "locality_lb_config": {"locality_weighted_lb_config": {}}`), reflect.TypeFor[*lb.RoundRobin](), true},
		{"typed least request", typed("least_request.v3.LeastRequest", `, "choice_count": 4, "slow_start_config": {"slow_start_window": "1s"}`), reflect.TypeFor[*lb.LeastRequest](), false},
		{"typed random", typed("random.v3.Random", ``), reflect.TypeFor[*lb.Random](), false},
		{"typed ring hash", typed("ring_hash.v3.RingHash", `, "hash_function": "XX_HASH", "minimum_ring_size": 512, "locality_weighted_lb_config": {}`), reflect.TypeFor[*lb.RingHash](), true},
		{"typed maglev", typed("maglev.v3.Maglev", `, "table_size": 65537`), reflect.TypeFor[*lb.Maglev](), false},
		{"typed wins over lb_policy", `"lb_policy": "LOAD_BALANCING_POLICY_CONFIG", ` + typed("random.v3.Random", ``), reflect.TypeFor[*lb.Random](), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := (&Translator{}).Cluster(parseCluster(t, `{"name": "svc", `+staticLA+`, `+tt.fields+`}`))
			if err != nil {
				t.Fatalf("Cluster() error = %v", err)
			}
			b := cfg.Balancer()
			if blind, ok := b.(localityBlind); ok {
				if tt.locality {
					t.Errorf("balancer hides locality weights, want them used")
				}
				b = blind.Balancer
			} else if !tt.locality {
				t.Errorf("balancer %T sees locality weights, want them hidden", b)
			}
			if got := reflect.TypeOf(b); got != tt.want {
				t.Errorf("balancer = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLocalityBlind checks that the wrapper clears locality weights and
// forwards Close.
func TestLocalityBlind(t *testing.T) {
	inner := lb.NewLeastRequestWith(lb.LeastRequestConfig{}, lb.Options{SlowStart: lb.SlowStartConfig{Window: time.Second}})
	b := localityBlind{inner}
	eps := []lb.Endpoint{{Address: "a:1", LocalityWeight: 5, Healthy: true}}
	b.Update(eps)
	if eps[0].LocalityWeight != 0 {
		t.Errorf("LocalityWeight = %d after Update, want 0", eps[0].LocalityWeight)
	}
	if _, err := b.Picker().Pick(lb.PickInfo{}); err != nil {
		t.Errorf("Pick() error = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
}

// TestDNSCacheSharing checks that dynamic forward proxy clusters naming
// the same cache share it, and that differing settings are an error.
func TestDNSCacheSharing(t *testing.T) {
	dfp := func(name, cache, extra string) *clusterv3.Cluster {
		return parseCluster(t, `{"name": "`+name+`", "lb_policy": "CLUSTER_PROVIDED", "cluster_type": {"name": "envoy.clusters.dynamic_forward_proxy",
			"typed_config": {"@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
				"dns_cache_config": {"name": "`+cache+`", "max_hosts": 10`+extra+`}}}}`)
	}
	tr := &Translator{}
	defer tr.CloseDNSCaches()
	a, _, err := tr.Cluster(dfp("a", "shared", ""))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := tr.Cluster(dfp("b", "shared", ""))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := tr.Cluster(dfp("c", "other", ""))
	if err != nil {
		t.Fatal(err)
	}
	if a.DNSCache == nil || a.DNSCache != b.DNSCache {
		t.Errorf("clusters naming one cache got %p and %p, want the same cache", a.DNSCache, b.DNSCache)
	}
	if c.DNSCache == a.DNSCache {
		t.Errorf("clusters naming different caches share one")
	}
	_, _, err = tr.Cluster(dfp("d", "shared", `, "host_ttl": "10s"`))
	if err == nil || !strings.Contains(err.Error(), `cache "shared": settings differ`) {
		t.Errorf("Cluster() with differing cache settings: error = %v", err)
	}
	if err := tr.CloseDNSCaches(); err != nil {
		t.Errorf("CloseDNSCaches() = %v", err)
	}
	d, _, err := tr.Cluster(dfp("d", "shared", ""))
	if err != nil {
		t.Fatal(err)
	}
	if d.DNSCache == a.DNSCache {
		t.Errorf("a cache closed by CloseDNSCaches was handed out again")
	}
}

// TestUpstreamSupportedComplete is TestSupportedComplete for the upstream
// allow-list on its own: every listed field exists, and every message
// reachable through a listed field is listed or a well-known type.
func TestUpstreamSupportedComplete(t *testing.T) {
	for name, fields := range upstreamSupported {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Errorf("upstreamSupported[%q]: %v", name, err)
			continue
		}
		md, ok := d.(protoreflect.MessageDescriptor)
		if !ok {
			t.Errorf("upstreamSupported[%q]: not a message", name)
			continue
		}
		for _, f := range fields {
			fd := md.Fields().ByName(f)
			if fd == nil {
				t.Errorf("upstreamSupported[%q]: no field %q", name, f)
				continue
			}
			msg := fd.Message()
			if fd.IsMap() {
				msg = fd.MapValue().Message()
			}
			if msg == nil {
				continue
			}
			if _, listed := upstreamSupported[msg.FullName()]; !listed && !strings.HasPrefix(string(msg.FullName()), "google.protobuf.") {
				t.Errorf("upstreamSupported[%q].%s: message %s is neither listed nor a well-known type", name, f, msg.FullName())
			}
		}
	}
	for name := range upstreamSupported {
		if _, ok := supported[name]; !ok {
			t.Errorf("supported lacks %q after init", name)
		}
	}
}
