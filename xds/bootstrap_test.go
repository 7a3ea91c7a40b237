package xds

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/internal/testcert"
)

// btRun builds and runs b's gateway until the test ends.
func btRun(t *testing.T, b *Bootstrap) *portico.Gateway {
	t.Helper()
	gw, err := b.NewGateway()
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, gw) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return")
		}
	})
	return gw
}

func btDo(t *testing.T, method, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func btLoopback(string, string) string { return "127.0.0.1:0" }

// btOrigin starts an origin answering "origin <path>" and returns its
// host:port.
func btOrigin(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "origin-server")
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		io.WriteString(w, "origin "+r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// btBootstrap is a bootstrap with one listener whose HCM gets extra YAML
// (at the HCM's indentation) and routes / to the origin at addr.
func btBootstrap(addr, hcmExtra, extra string) string {
	host, port, _ := strings.Cut(addr, ":")
	return `
static_resources:
  listeners:
  - name: web
    address: {socket_address: {address: 127.0.0.1, port_value: 8080}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          route_config:
            name: local
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: "/direct"}
                direct_response: {status: 418, body: {inline_string: "teapot"}}
              - match: {prefix: "/"}
                route: {cluster: origin}` + hcmExtra + `
  clusters:
  - name: origin
    type: STATIC
    load_assignment:
      cluster_name: origin
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: ` + host + `, port_value: ` + port + `}}}
` + extra
}

// TestBootstrapHealthCheck wires envoy.filters.http.health_check to the
// gateway's POST /healthcheck/fail.
func TestBootstrapHealthCheck(t *testing.T) {
	y := btBootstrap(btOrigin(t), `
          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{name: ":path", string_match: {exact: /healthz}}]
          - name: envoy.filters.http.router`, `
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
`)
	b, err := ParseBootstrap([]byte(y), BootstrapOptions{ListenerAddress: btLoopback, AdminAddress: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	gw := btRun(t, b)
	base := "http://" + gw.ListenerAddr("web").String()
	if code, _, _ := btDo(t, "GET", base+"/healthz", nil); code != 200 {
		t.Errorf("healthy: got %d, want 200", code)
	}
	resp, err := http.Post("http://"+gw.AdminAddr().String()+"/healthcheck/fail", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, hdr, _ := btDo(t, "GET", base+"/healthz", nil)
	if code != 503 || hdr.Get("X-Envoy-Immediate-Health-Check-Fail") != "true" {
		t.Errorf("after /healthcheck/fail: got %d %v, want 503 with x-envoy-immediate-health-check-fail", code, hdr)
	}
	if code, _, body := btDo(t, "GET", base+"/x", nil); code != 200 || body != "origin /x" {
		t.Errorf("ordinary traffic: got %d %q", code, body)
	}
}

// TestBootstrapLocalReply covers local_reply_config (status and body
// overrides, headers, a JSON body format), server_name, and that upstream
// responses are not local replies.
func TestBootstrapLocalReply(t *testing.T) {
	y := btBootstrap(btOrigin(t), `
          server_name: portico-edge
          local_reply_config:
            mappers:
            - filter: {status_code_filter: {comparison: {op: EQ, value: {default_value: 418, runtime_key: k}}}}
              status_code: 200
              body: {inline_string: "mapped teapot"}
              headers_to_add: [{header: {key: x-mapped, value: "yes"}}]
            - filter: {header_filter: {header: {name: x-json, present_match: true}}}
              body_format_override:
                json_format: {code: "%RESPONSE_CODE%", message: "%LOCAL_REPLY_BODY%", path: "%REQ(:path)%", flags: "%RESPONSE_FLAGS%"}
            body_format:
              text_format: "[%RESPONSE_CODE%] %LOCAL_REPLY_BODY%"
              content_type: text/x-portico`, "")
	b, err := ParseBootstrap([]byte(y), BootstrapOptions{ListenerAddress: btLoopback, AdminAddress: "-"})
	if err != nil {
		t.Fatal(err)
	}
	gw := btRun(t, b)
	base := "http://" + gw.ListenerAddr("web").String()

	code, hdr, body := btDo(t, "GET", base+"/direct", nil)
	if code != 200 || body != "[200] mapped teapot" || hdr.Get("X-Mapped") != "yes" || hdr.Get("Content-Type") != "text/x-portico" {
		t.Errorf("direct response: got %d %q %v, want the first mapper's status, body and header in body_format", code, body, hdr)
	}
	if hdr.Get("Server") != "portico-edge" {
		t.Errorf("server: got %q, want portico-edge", hdr.Get("Server"))
	}

	// Upstream responses pass as they are, but for the Server header.
	code, hdr, body = btDo(t, "GET", base+"/missing", nil)
	if code != 404 || body != "origin /missing" || hdr.Get("Server") != "portico-edge" {
		t.Errorf("upstream 404: got %d %q server %q, want the origin's answer with server portico-edge", code, body, hdr.Get("Server"))
	}

	// Point the cluster at a closed port: the 503 is a local reply.
	for _, c := range b.Config.Clusters {
		c.Endpoints[0].Address = "127.0.0.1:1"
		if err := gw.UpsertCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	code, hdr, body = btDo(t, "GET", base+"/down", map[string]string{"X-Json": "1"})
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("JSON body %q: %v", body, err)
	}
	want := map[string]any{"code": 503.0, "path": "/down", "flags": "UF", "message": got["message"]}
	if d := cmp.Diff(want, got); d != "" || code != 503 || hdr.Get("Content-Type") != "application/json" || !strings.Contains(got["message"].(string), "upstream connect error") {
		t.Errorf("connect failure: got %d %s %q, diff (-want +got):\n%s", code, hdr.Get("Content-Type"), body, d)
	}
}

// TestBootstrapAccessLogFile checks a file access log with a JSON format
// and a status filter, flushed when Run returns.
func TestBootstrapAccessLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	y := btBootstrap(btOrigin(t), `
          access_log:
          - name: envoy.access_loggers.file
            filter: {status_code_filter: {comparison: {op: GE, value: {default_value: 400, runtime_key: k}}}}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: `+path+`
              log_format:
                json_format: {status: "%RESPONSE_CODE%", path: "%REQ(:PATH)%", flags: "%RESPONSE_FLAGS%"}`, "")
	b, err := ParseBootstrap([]byte(y), BootstrapOptions{ListenerAddress: btLoopback, AdminAddress: "-"})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := b.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, gw) }()
	base := "http://" + gw.ListenerAddr("web").String()
	btDo(t, "GET", base+"/ok", nil)
	btDo(t, "GET", base+"/missing", nil)
	btDo(t, "GET", base+"/direct", nil)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	want := []map[string]any{
		{"status": 404.0, "path": "/missing", "flags": "-"},
		{"status": 418.0, "path": "/direct", "flags": "-"},
	}
	if d := cmp.Diff(want, lines); d != "" {
		t.Errorf("access log (-want +got):\n%s", d)
	}
}

// TestBootstrapOverload drives the fixed heap monitor with a fake heap.
func TestBootstrapOverload(t *testing.T) {
	y := btBootstrap(btOrigin(t), `
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {text_format: "%RESPONSE_CODE% %RESPONSE_FLAGS%"}`, `
overload_manager:
  refresh_interval: 0.01s
  resource_monitors:
  - name: envoy.resource_monitors.fixed_heap
    typed_config:
      "@type": type.googleapis.com/envoy.config.resource_monitor.fixed_heap.v2alpha.FixedHeapConfig
      max_heap_size_bytes: 1000
  actions:
  - name: envoy.overload_actions.shrink_heap
    triggers: [{name: envoy.resource_monitors.fixed_heap, threshold: {value: 0.90}}]
  - name: envoy.overload_actions.stop_accepting_requests
    triggers: [{name: envoy.resource_monitors.fixed_heap, threshold: {value: 0.95}}]
`)
	var stdout btBuffer
	b, err := ParseBootstrap([]byte(y), BootstrapOptions{ListenerAddress: btLoopback, AdminAddress: "-", Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	var heap, shrinks atomic.Int64
	b.overload.heapInUse = func() uint64 { return uint64(heap.Load()) }
	b.overload.freeOSMemory = func() { shrinks.Add(1) }
	gw := btRun(t, b)
	base := "http://" + gw.ListenerAddr("web").String()

	waitStatus := func(want int) (http.Header, string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; {
			code, hdr, body := btDo(t, "GET", base+"/x", nil)
			if code == want {
				return hdr, body
			}
			if time.Now().After(deadline) {
				t.Fatalf("status: got %d, want %d", code, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	heap.Store(500)
	waitStatus(200)
	heap.Store(920) // shrink_heap only
	time.Sleep(50 * time.Millisecond)
	waitStatus(200)
	if shrinks.Load() == 0 {
		t.Error("shrink_heap: no FreeOSMemory call at 92% pressure")
	}
	heap.Store(960)
	hdr, body := waitStatus(503)
	if hdr.Get("X-Envoy-Overloaded") != "true" || body != "envoy overloaded" {
		t.Errorf("overloaded reply: %v %q, want x-envoy-overloaded and Envoy's body", hdr, body)
	}
	heap.Store(100)
	waitStatus(200)
	// The access log sees the overloaded requests too.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stdout.String(), "503 OM\n"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("access log %q: no 503 OM line", stdout.String())
		}
	}
}

// btBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type btBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *btBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *btBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBootstrapFiles runs file-based LDS and CDS and changes the files.
func TestBootstrapFiles(t *testing.T) {
	dir := t.TempDir()
	a, bAddr := btOrigin(t), btOrigin(t)
	lds, cds := filepath.Join(dir, "lds.yaml"), filepath.Join(dir, "cds.yaml")
	writeLDS := func(body string) {
		t.Helper()
		y := `
version_info: "1"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: files
  address: {socket_address: {address: 127.0.0.1, port_value: 8080}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: files
        http_filters: [{name: envoy.filters.http.router}]
        route_config:
          virtual_hosts:
          - name: vh
            domains: ["*"]
            routes:` + body
		btReplace(t, lds, y)
	}
	cluster := func(name, addr string) string {
		host, port, _ := strings.Cut(addr, ":")
		return `
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: ` + name + `
  type: STATIC
  load_assignment:
    cluster_name: ` + name + `
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: ` + host + `, port_value: ` + port + `}}}}]}]`
	}
	btReplace(t, cds, "resources:"+cluster("a", a)+cluster("b", bAddr))
	writeLDS(`
            - match: {prefix: "/"}
              direct_response: {status: 200, body: {inline_string: "v1"}}`)
	y := `
dynamic_resources:
  lds_config: {path_config_source: {path: ` + lds + `, poll_interval: 0.02s}}
  cds_config: {path: ` + cds + `}
`
	b, err := ParseBootstrap([]byte(y), BootstrapOptions{ListenerAddress: btLoopback, AdminAddress: "-"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Client != nil {
		t.Errorf("client: got %+v, want none for files only", b.Client)
	}
	for _, f := range b.files {
		f.interval = 20 * time.Millisecond
	}
	gw := btRun(t, b)
	base := "http://" + gw.ListenerAddr("files").String()
	waitBody := func(path, want string) {
		t.Helper()
		var body string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, _, body = btDo(t, "GET", base+path, nil); body == want {
				return
			}
		}
		t.Fatalf("GET %s: got %q, want %q", path, body, want)
	}
	waitBody("/", "v1")

	writeLDS(`
            - match: {prefix: "/a"}
              route: {cluster: a}
            - match: {prefix: "/b"}
              route: {cluster: b}`)
	waitBody("/a/1", "origin /a/1")
	waitBody("/b/2", "origin /b/2")

	// An invalid version is rejected whole; the last good one serves.
	writeLDS(`
            - match: {prefix: "/"}
              route: {cluster: a}
              decorator: {operation: nope}`)
	time.Sleep(200 * time.Millisecond)
	waitBody("/b/2", "origin /b/2")

	// Removing a cluster makes its route answer 503 (NC).
	btReplace(t, cds, "resources:"+cluster("a", a))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := btDo(t, "GET", base+"/b/2", nil); code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cluster b still serving after its removal from the CDS file")
		}
	}
}

func TestBootstrapDynamicResources(t *testing.T) {
	xdsCluster := `
static_resources:
  clusters:
  - name: xds_cluster
    type: STRICT_DNS
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: control-plane, port_value: 18000}}}}]}]
node: {id: gw-1, cluster: edge, locality: {zone: z1}}
`
	tests := []struct {
		name, dynamic string
		want          ClientConfig
	}{
		{"ads", `
dynamic_resources:
  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 3s}
`, ClientConfig{Target: "control-plane:18000", Mode: ADS, InitialFetchTimeout: 3 * time.Second}},
		{"delta ads, lds only", `
dynamic_resources:
  ads_config: {api_type: DELTA_GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}
  lds_config: {ads: {}, initial_fetch_timeout: 0s}
`, ClientConfig{Target: "control-plane:18000", Mode: DeltaADS, DisableCDS: true, InitialFetchTimeout: -1}},
		{"per type", `
dynamic_resources:
  lds_config: {api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}}
  cds_config: {api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}}
`, ClientConfig{Target: "control-plane:18000", Mode: PerType}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBootstrap([]byte(xdsCluster+tt.dynamic), BootstrapOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if b.Client == nil {
				t.Fatal("no client config")
			}
			got := *b.Client
			if got.Translator != b.translator {
				t.Error("client translator: not the bootstrap's")
			}
			got.Translator, got.Node = nil, nil
			if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b func(NACK)) bool { return a == nil && b == nil })); d != "" {
				t.Errorf("client config (-want +got):\n%s", d)
			}
			wantNode := &corev3.Node{Id: "gw-1", Cluster: "edge", Locality: &corev3.Locality{Zone: "z1"}}
			if d := cmp.Diff(wantNode, b.Client.Node, protocmp.Transform()); d != "" {
				t.Errorf("node (-want +got):\n%s", d)
			}
			if b.Options.NodeID != "gw-1" || b.Options.NodeCluster != "edge" || b.Options.Admin != "-" || b.Options.StatsPrefix != "envoy" {
				t.Errorf("options: got %+v", b.Options)
			}
		})
	}
}

func TestBootstrapErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", `
static_resources:
  listeners:
  - name: l
    adress: {}
`, `bootstrap: static_resources.listeners[0].adress: unknown field (envoy.config.listener.v3.Listener has no field "adress")`},
		{"unknown type", `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: acme
        typed_config: {"@type": type.googleapis.com/acme.Filter}
`, `static_resources.listeners[0].filter_chains[0].filters[0].typed_config: unknown type "type.googleapis.com/acme.Filter" (not linked into Portico)`},
		{"bootstrap field", `
layered_runtime: {layers: [{name: static, static_layer: {}}]}
stats_flush_interval: 5s
`, "bootstrap: stats_flush_interval: not supported\nlayered_runtime: not supported"},
		{"overload action", `
overload_manager:
  resource_monitors:
  - name: envoy.resource_monitors.fixed_heap
    typed_config: {"@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig, max_heap_size_bytes: 100}
  actions:
  - name: envoy.overload_actions.disable_http_keepalive
    triggers: [{name: envoy.resource_monitors.fixed_heap, threshold: {value: 0.9}}]
`, `overload_manager.actions[0].name: "envoy.overload_actions.disable_http_keepalive": only envoy.overload_actions.shrink_heap and envoy.overload_actions.stop_accepting_requests are supported: not supported`},
		{"rest", `
static_resources:
  clusters:
  - name: xds
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}
dynamic_resources:
  lds_config: {api_config_source: {api_type: REST, cluster_names: [xds], refresh_delay: 1s}}
`, `dynamic_resources.lds_config.api_config_source.cluster_names: not supported`},
		{"rds without client", `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          rds: {route_config_name: r, config_source: {ads: {}}}
`, `static_resources.listeners[0]: listener "l": RDS route configuration "r" needs an xDS client: dynamic_resources has none`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseBootstrap([]byte(tt.yaml), BootstrapOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain\n%s", err, tt.want)
			}
		})
	}
}

// TestUnmarshalConfigOptionalFilter checks that an optional HTTP filter of
// a type Portico does not link is dropped with a warning, as Envoy skips
// optional filters it has no factory for.
func TestUnmarshalConfigOptionalFilter(t *testing.T) {
	y := `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: {name: r}
          http_filters:
          - name: acme.waf
            is_optional: true
            typed_config: {"@type": type.googleapis.com/acme.Waf, mode: strict}
          - name: envoy.filters.http.router
`
	b, err := ParseBootstrap([]byte(y), BootstrapOptions{ListenerAddress: btLoopback})
	if err != nil {
		t.Fatal(err)
	}
	want := []Warning{{
		Path:    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]",
		Message: "optional filter of a type Portico does not know; skipped",
	}}
	if d := cmp.Diff(want, b.Warnings); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
	if errors.Is(err, ErrUnsupported) {
		t.Error("unexpected")
	}
}

// btReplace replaces a file by a rename, as Envoy asks of dynamic
// resource files.
func btReplace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestBootstrapStaticSecret serves TLS with a certificate from
// static_resources.secrets, referenced by name without sds_config.
func TestBootstrapStaticSecret(t *testing.T) {
	ca := testcert.NewCA()
	cert, key := ca.Leaf("localhost")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.pem"), cert, 0o600)
	os.WriteFile(filepath.Join(dir, "k.pem"), key, 0o600)
	y := `
static_resources:
  secrets:
  - name: server
    tls_certificate:
      certificate_chain: {filename: ` + filepath.Join(dir, "c.pem") + `}
      private_key: {filename: ` + filepath.Join(dir, "k.pem") + `}
  listeners:
  - name: tls
    address: {socket_address: {address: 127.0.0.1, port_value: 443}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs: [{name: server}]
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: secret}}}]
`
	b, err := ParseBootstrap([]byte(y), BootstrapOptions{ListenerAddress: btLoopback, AdminAddress: "-"})
	if err != nil {
		t.Fatal(err)
	}
	gw := btRun(t, b)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get("https://" + gw.ListenerAddr("tls").String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "secret" {
		t.Errorf("body: got %q, want secret", body)
	}
}

func TestParseFlag(t *testing.T) {
	for code, want := range map[string]filter.Flags{"UH": filter.FlagNoHealthyUpstream, "DT": filter.FlagDurationTimeout, "NR": filter.FlagNoRouteFound} {
		if got, ok := parseFlag(code); !ok || got != want {
			t.Errorf("parseFlag(%q): got %v %v, want %v", code, got, ok, want)
		}
	}
	if _, ok := parseFlag("XX"); ok {
		t.Error("parseFlag(XX): ok, want unknown")
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{w: writerFunc(func(p []byte) (int, error) { got = append(got, string(p)); return len(p), nil })}
	w.Write([]byte("a\nb"))
	w.Write([]byte("c"))
	w.Write([]byte("\nd\ne\n"))
	w.Write([]byte("f"))
	w.flush()
	if d := cmp.Diff([]string{"a\n", "bc\nd\ne\n", "f"}, got); d != "" {
		t.Errorf("writes (-want +got):\n%s", d)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
