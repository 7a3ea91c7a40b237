package xds

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/healthcheck"
	"github.com/porticoproxy/portico/internal/testcert"
	"github.com/porticoproxy/portico/listener"
)

// ltListener reads a Listener from YAML, as a bootstrap would.
func ltListener(t *testing.T, y string) *listenerv3.Listener {
	t.Helper()
	var l listenerv3.Listener
	if err := unmarshalConfig([]byte(y), &l, func(w Warning) { t.Logf("warning: %v", w) }); err != nil {
		t.Fatalf("listener YAML: %v", err)
	}
	return &l
}

// ltHCM returns a listener YAML with one plaintext chain whose HCM has
// the given extra YAML (indented for the HCM's typed_config) and an
// inline catch-all route to cluster c, unless the extra names a route.
func ltHCM(extra string) string {
	route := `
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: c}`
	if strings.Contains(extra, "route_config:") || strings.Contains(extra, "rds:") {
		route = ""
	}
	return `
name: l
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress` + route + extra
}

func TestListenerTranslation(t *testing.T) {
	ca := testcert.NewCA()
	cert, key := ca.Leaf("a.example.com")
	secrets := map[string]*Secret{"sds-cert": {Name: "sds-cert", CertPEM: cert, KeyPEM: key}}
	tr := &Translator{Secrets: func(n string) (*Secret, bool) { s, ok := secrets[n]; return s, ok }}
	y := `
name: edge
address: {socket_address: {address: "::", port_value: 8443}}
per_connection_buffer_limit_bytes: 32768
listener_filters_timeout: 2s
listener_filters:
- name: envoy.filters.listener.tls_inspector
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}
filter_chains:
- name: tls
  filter_chain_match:
    destination_port: 8443
    server_names: [a.example.com, "*.b.example.com"]
    transport_protocol: tls
    application_protocols: [h2]
    source_prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        alpn_protocols: [h2, http/1.1]
        tls_params: {tls_minimum_protocol_version: TLSv1_3}
        tls_certificates:
        - certificate_chain: {filename: /etc/certs/a.pem}
          private_key: {filename: /etc/certs/a.key}
        tls_certificate_sds_secret_configs:
        - name: sds-cert
          sds_config: {ads: {}, resource_api_version: V3}
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: https
      codec_type: AUTO
      rds: {route_config_name: public, config_source: {ads: {}}}
      use_remote_address: true
      xff_num_trusted_hops: 1
      generate_request_id: false
      max_request_headers_kb: 96
      stream_idle_timeout: 0s
      request_timeout: 30s
      request_headers_timeout: 5s
      drain_timeout: 10s
      normalize_path: true
      merge_slashes: true
      common_http_protocol_options:
        idle_timeout: 600s
        max_headers_count: 50
        headers_with_underscores_action: DROP_HEADER
      http2_protocol_options:
        max_concurrent_streams: 100
        initial_stream_window_size: 65536
        initial_connection_window_size: 1048576
      upgrade_configs: [{upgrade_type: websocket}]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
default_filter_chain:
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: plain
      route_config:
        name: own_name
        virtual_hosts:
        - name: vh
          domains: ["*"]
          routes:
          - match: {prefix: "/"}
            direct_response: {status: 426}
      http_filters:
      - name: envoy.filters.http.router
`
	got, routes, refs, err := tr.Listener(ltListener(t, y))
	if err != nil {
		t.Fatal(err)
	}
	want := listener.Config{
		Name:                   "edge",
		Address:                "[::]:8443",
		ListenerFiltersTimeout: 2 * time.Second,
		FilterChains: []listener.FilterChain{{
			Name: "tls",
			Match: listener.ChainMatch{
				DestinationPorts:     []uint16{8443},
				ServerNames:          []string{"a.example.com", "*.b.example.com"},
				ApplicationProtocols: []string{"h2"},
				SourcePrefixes:       []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
				TransportProtocol:    "tls",
			},
			TLS: &listener.TLSConfig{
				Certificates: []listener.Certificate{
					{CertFile: "/etc/certs/a.pem", KeyFile: "/etc/certs/a.key"},
					{CertPEM: cert, KeyPEM: key},
				},
				MinVersion: 0x0304,
				ALPN:       []string{"h2", "http/1.1"},
			},
			HTTP: &listener.HTTPConfig{
				StatPrefix:             "https",
				RouteConfig:            "public",
				MaxRequestHeadersBytes: 96 << 10,
				MaxRequestHeaders:      50,
				UseRemoteAddress:       true,
				XFFNumTrustedHops:      1,
				DisableRequestID:       true,
				StreamIdleTimeout:      -1,
				RequestTimeout:         30 * time.Second,
				RequestHeadersTimeout:  5 * time.Second,
				IdleTimeout:            600 * time.Second,
				DrainTimeout:           10 * time.Second,
				MaxConcurrentStreams:   100,
				HeadersWithUnderscores: listener.DropUnderscores,
				NormalizePath:          true,
				MergeSlashes:           true,
				HTTP2StreamWindow:      65536,
				HTTP2ConnectionWindow:  1 << 20,
			},
		}},
		DefaultFilterChain: &listener.FilterChain{
			HTTP: &listener.HTTPConfig{StatPrefix: "plain", RouteConfig: "edge/default_filter_chain"},
		},
	}
	// Filters are checked below: the connection manager's own filter
	// carries the buffer limit.
	ignoreFilters := cmpopts.IgnoreFields(listener.HTTPConfig{}, "Filters")
	if d := cmp.Diff(want, got, ignoreFilters, cmpopts.EquateComparable(netip.Prefix{})); d != "" {
		t.Errorf("listener (-want +got):\n%s", d)
	}
	if d := cmp.Diff(Refs{Routes: []string{"public"}, Secrets: []string{"sds-cert"}}, refs); d != "" {
		t.Errorf("refs (-want +got):\n%s", d)
	}
	if len(routes) != 1 || routes[0].Name != "edge/default_filter_chain" || routes[0].VirtualHosts[0].Rules[0].DirectResponse.Status != 426 {
		t.Errorf("routes: got %+v, want the default chain's inline route named edge/default_filter_chain", routes)
	}
	for _, fc := range []*listener.FilterChain{&got.FilterChains[0], got.DefaultFilterChain} {
		fs := fc.HTTP.Filters
		hf, ok := fs[0].(*hcmFilter)
		if len(fs) != 1 || !ok || hf.bufferLimit != 32768 {
			t.Errorf("chain %q filters: got %#v, want the connection manager's filter with the 32 KiB buffer limit", fc.Name, fs)
		}
	}
}

func TestListenerErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string
	}{
		{"proxy protocol rules", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 80}}
listener_filters:
- name: envoy.filters.listener.proxy_protocol
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol, rules: [{tlv_type: 1, on_tlv_present: {key: k}}]}
filter_chains: [{filters: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]}]
`, `listener_filters[0].typed_config.rules: not supported`},
		{"proxy protocol pass_through_tlvs", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 80}}
listener_filters:
- name: envoy.filters.listener.proxy_protocol
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol, pass_through_tlvs: {match_type: INCLUDE, tlv_type: [1]}}
filter_chains: [{filters: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]}]
`, `listener_filters[0].typed_config.pass_through_tlvs`},
		{"proxy protocol stat_prefix", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 80}}
listener_filters:
- name: envoy.filters.listener.proxy_protocol
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol, stat_prefix: p}
filter_chains: [{filters: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]}]
`, `listener_filters[0].typed_config.stat_prefix: not supported`},
		{"tcp proxy", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 80}}
filter_chains: [{filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, weighted_clusters: {clusters: [{name: a, weight: 1}]}}}]}]
`, `filter_chains[0].filters[0].typed_config.weighted_clusters: not supported`},
		{"tcp proxy tunneling", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 80}}
filter_chains: [{filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: c, tunneling_config: {hostname: h}}}]}]
`, `filter_chains[0].filters[0].typed_config.tunneling_config: not supported`},
		{"tcp proxy not last", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 80}}
filter_chains: [{filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: c}}, {name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]}]
`, `filter_chains[0].filters[0]: envoy.filters.network.tcp_proxy is terminal and must be the last filter`},
		{"listener field", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 80}}
reuse_port: true
filter_chains: [{filters: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]}]
`, `listener "l": reuse_port: not supported`},
		{"mtls", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 443}}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      require_client_certificate: true
      common_tls_context:
        tls_certificates: [{certificate_chain: {filename: a}, private_key: {filename: b}}]
        validation_context: {trusted_ca: {filename: ca.pem}}
  filters: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]
`, `filter_chains[0].transport_socket.typed_config.require_client_certificate: true: the listener does not verify client certificates: not supported`},
		{"validation context", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 443}}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificates: [{certificate_chain: {filename: a}, private_key: {filename: b}}]
        validation_context: {trusted_ca: {filename: ca.pem}}
  filters: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]
`, `filter_chains[0].transport_socket.typed_config.common_tls_context.validation_context: not supported`},
		{"unknown sds secret", `
name: l
address: {socket_address: {address: 0.0.0.0, port_value: 443}}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificate_sds_secret_configs: [{name: missing, sds_config: {ads: {}}}]
  filters: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]
`, `common_tls_context.tls_certificate_sds_secret_configs[0]: secret "missing": not known (yet)`},
		{"codec", ltHCM(`
          codec_type: HTTP1`), `filter_chains[0].filters[0].typed_config.codec_type: HTTP1: only AUTO is supported: not supported`},
		{"tracing", ltHCM(`
          tracing: {}`), `filter_chains[0].filters[0].typed_config.tracing: not supported`},
		{"rds from a file", ltHCM(`
          rds: {route_config_name: r, config_source: {path_config_source: {path: /tmp/r.yaml}}}`), `rds.config_source.path_config_source: files are supported for the bootstrap's lds_config and cds_config only: not supported`},
		{"unknown filter", ltHCM(`
          http_filters:
          - name: acme.auth
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
          - name: envoy.filters.http.router`), `typed_config.http_filters[0].typed_config: filter "acme.auth": no factory registered for type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors: not supported`},
		{"router not last", ltHCM(`
          http_filters:
          - name: envoy.filters.http.router
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{name: ":path", string_match: {exact: /healthz}}]`), `http_filters[1]: "envoy.filters.http.health_check" after the terminal envoy.filters.http.router: the router must be the last filter`},
		{"no router", ltHCM(`
          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{name: ":path", string_match: {exact: /healthz}}]`), `typed_config.http_filters: the last filter is "envoy.filters.http.health_check", not the terminal envoy.filters.http.router`},
		{"router option", ltHCM(`
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, suppress_envoy_headers: true}`), `http_filters[0].typed_config.suppress_envoy_headers: not supported`},
		{"health check prefix", ltHCM(`
          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{name: ":path", string_match: {prefix: /health}}]
          - name: envoy.filters.http.router`), `http_filters[0].typed_config: filter "envoy.filters.http.health_check": headers[0]: only exact matchers`},
		{"local reply operator", ltHCM(`
          local_reply_config:
            body_format: {text_format: "%UPSTREAM_HOST% %LOCAL_REPLY_BODY%"}`), `local_reply_config.body_format.text_format: operator %UPSTREAM_HOST% at byte 0: not supported`},
		{"grpc access log", ltHCM(`
          access_log:
          - name: envoy.access_loggers.http_grpc
            typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig, common_config: {log_name: x, transport_api_version: V3, grpc_service: {envoy_grpc: {cluster_name: c}}}}`), `access_log[0].typed_config: access logger "envoy.access_loggers.http_grpc"`},
		{"access log format", ltHCM(`
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog, log_format: {text_format: "%NOPE%"}}`), `access_log[0].typed_config`},
		{"connect", ltHCM(`
          upgrade_configs: [{upgrade_type: CONNECT}]`), `upgrade_configs[0].upgrade_type: CONNECT: not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := (&Translator{}).Listener(ltListener(t, tt.yaml))
			if err == nil {
				t.Fatal("translated; want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain\n%s", err, tt.want)
			}
		})
	}
}

func TestListenerLenient(t *testing.T) {
	var warnings []Warning
	tr := &Translator{Options: TranslateOptions{Lenient: true, OnUnsupported: func(w Warning) { warnings = append(warnings, w) }}}
	l := ltListener(t, ltHCM(`
          tracing: {}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, suppress_envoy_headers: true}`))
	got, _, _, err := tr.Listener(l)
	if err != nil {
		t.Fatal(err)
	}
	if got.FilterChains[0].HTTP.StatPrefix != "ingress" {
		t.Errorf("stat prefix: got %q", got.FilterChains[0].HTTP.StatPrefix)
	}
	var paths []string
	for _, w := range warnings {
		paths = append(paths, w.Path)
	}
	want := []string{
		"filter_chains[0].filters[0].typed_config.tracing",
		"filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.suppress_envoy_headers",
	}
	if d := cmp.Diff(want, paths); d != "" {
		t.Errorf("warning paths (-want +got):\n%s", d)
	}
}

// TestFilterRegistry registers an application filter for a type of its
// own and checks that unknown optional filters are skipped, in strict
// mode too, with a warning.
func TestFilterRegistry(t *testing.T) {
	const acme = "type.googleapis.com/acme.RateLimit"
	reg := DefaultFilters()
	var gotConfig *anypb.Any
	reg.Register(acme, func(ctx FactoryContext, config *anypb.Any) (filter.Filter, error) {
		gotConfig = config
		return namedFilter("acme.ratelimit"), nil
	})
	if _, ok := reg.Lookup("acme.RateLimit"); !ok {
		t.Error("Lookup by message name: not found")
	}
	var warnings []Warning
	tr := &Translator{Filters: reg, Options: TranslateOptions{OnUnsupported: func(w Warning) { warnings = append(warnings, w) }}}
	l := ltListener(t, ltHCM(``))
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	acmeAny := &anypb.Any{TypeUrl: acme, Value: []byte{0x08, 0x01}}
	hcm.HttpFilters = []*hcmv3.HttpFilter{
		{Name: "acme", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: acmeAny}},
		{Name: "other", IsOptional: true, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/other.Filter"}}},
		{Name: "envoy.filters.http.router"},
	}
	a, _ := anypb.New(hcm)
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	got, _, _, err := tr.Listener(l)
	if err != nil {
		t.Fatal(err)
	}
	fs := got.FilterChains[0].HTTP.Filters
	if len(fs) != 1 || fs[0].Name() != "acme.ratelimit" {
		t.Errorf("filters: got %v, want the application's filter alone", fs)
	}
	if gotConfig.GetTypeUrl() != acme || string(gotConfig.GetValue()) != "\x08\x01" {
		t.Errorf("factory config: got %v", gotConfig)
	}
	if len(warnings) != 1 || warnings[0].Path != "filter_chains[0].filters[0].typed_config.http_filters[1]" {
		t.Errorf("warnings: got %v, want one for the skipped optional filter", warnings)
	}
	reg.Register(acme, nil)
	if _, ok := reg.Lookup(acme); ok {
		t.Error("Register(nil) did not remove the factory")
	}
}

type namedFilter string

func (n namedFilter) Name() string { return string(n) }

// TestHealthCheckFactoryContext checks that the health check filter's fail
// state is the FactoryContext's.
func TestHealthCheckFactoryContext(t *testing.T) {
	failing := false
	tr := &Translator{FactoryContext: FactoryContext{HealthCheckFailed: func() bool { return failing }}}
	got, _, _, err := tr.Listener(ltListener(t, ltHCM(`
          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers:
              - {name: ":path", exact_match: /healthz}
              - {name: x-probe, string_match: {exact: lb}}
          - name: envoy.filters.http.router`)))
	if err != nil {
		t.Fatal(err)
	}
	hc, ok := got.FilterChains[0].HTTP.Filters[0].(*healthcheck.Filter)
	if !ok {
		t.Fatalf("filters: got %v, want the health check filter", got.FilterChains[0].HTTP.Filters)
	}
	check := func() int {
		r, _ := http.NewRequest("GET", "http://x/healthz", nil)
		r.Header.Set("X-Probe", "lb")
		x := filter.NewExchange(r)
		err := hc.OnRequest(context.Background(), x)
		var re *filter.ReplyError
		if !errors.As(err, &re) {
			t.Fatalf("OnRequest: %v, want a local reply", err)
		}
		return re.Status
	}
	if s := check(); s != 200 {
		t.Errorf("healthy: got %d, want 200", s)
	}
	failing = true
	if s := check(); s != 503 {
		t.Errorf("failing: got %d, want 503", s)
	}
}

// TestListenerSupportedComplete checks listenerSupported and
// bootstrapSupported against the descriptors, as TestSupportedComplete
// does for the package-wide list: every listed field exists, and every
// message reachable through a listed field is listed in the same map, is
// checked with the route translator's entries, or is a well-known type.
func TestListenerSupportedComplete(t *testing.T) {
	for name, list := range map[string]map[protoreflect.FullName][]protoreflect.Name{
		"listenerSupported":  listenerSupported,
		"bootstrapSupported": bootstrapSupported,
	} {
		for msgName, fields := range list {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(msgName)
			if err != nil {
				t.Errorf("%s[%q]: %v", name, msgName, err)
				continue
			}
			md := d.(protoreflect.MessageDescriptor)
			for _, f := range fields {
				fd := md.Fields().ByName(f)
				if fd == nil {
					t.Errorf("%s[%q]: no field %q", name, msgName, f)
					continue
				}
				msg := fd.Message()
				if fd.IsMap() {
					msg = fd.MapValue().Message()
				}
				if msg == nil {
					continue
				}
				_, listed := list[msg.FullName()]
				_, routeListed := supported[msg.FullName()]
				switch {
				case listed, strings.HasPrefix(string(msg.FullName()), "google.protobuf."):
				case delegatedToRoute(msg.FullName()) && routeListed:
				case name == "bootstrapSupported" && msgName == "envoy.config.bootstrap.v3.Bootstrap.StaticResources":
					// Resources: checked by their translators.
				default:
					t.Errorf("%s[%q].%s: message %s is neither listed nor checked elsewhere", name, msgName, f, msg.FullName())
				}
			}
		}
	}
}

func TestListenerFiltersProxyProtocolOriginalDst(t *testing.T) {
	const hcm = `filter_chains: [{filters: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, rds: {route_config_name: r, config_source: {ads: {}}}}}]}]
`
	tests := []struct {
		name, filters string
		wantPP        *listener.ProxyProtocolConfig
		wantOD        bool
	}{
		{"original dst", `
- name: envoy.filters.listener.original_dst
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
`, nil, true},
		{"proxy protocol defaults", `
- name: envoy.filters.listener.proxy_protocol
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol, pass_through_tlvs: {}}
`, &listener.ProxyProtocolConfig{}, false},
		{"both, allow without header", `
- name: envoy.filters.listener.original_dst
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
- name: envoy.filters.listener.proxy_protocol
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol, allow_requests_without_proxy_protocol: true}
`, &listener.ProxyProtocolConfig{AllowRequestsWithoutProxyProtocol: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := "name: l\naddress: {socket_address: {address: 127.0.0.1, port_value: 80}}\nlistener_filters:" + tt.filters + hcm
			got, _, _, err := (&Translator{}).Listener(ltListener(t, y))
			if err != nil {
				t.Fatal(err)
			}
			if got.OriginalDst != tt.wantOD {
				t.Errorf("OriginalDst: got %v, want %v", got.OriginalDst, tt.wantOD)
			}
			if d := cmp.Diff(tt.wantPP, got.ProxyProtocol); d != "" {
				t.Errorf("ProxyProtocol (-want +got):\n%s", d)
			}
		})
	}
}
