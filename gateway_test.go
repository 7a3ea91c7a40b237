package portico

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/internal/testcert"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// startOrigin starts a real HTTP/1.1 + h2c origin on loopback.
func startOrigin(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func hello(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "hello from %s", name)
	})
}

// simpleConfig is one plaintext listener, one route table sending "/" to
// cluster "app" (with rules added first), and cluster "app".
func simpleConfig(upstream string, extra ...route.Rule) Config {
	rules := append(extra, route.Rule{Name: "default", Match: route.Match{Prefix: "/"}, Cluster: "app"})
	return Config{
		Listeners: []listener.Config{{
			Name:    "ingress",
			Address: "127.0.0.1:0",
			FilterChains: []listener.FilterChain{{
				Name: "http",
				HTTP: &listener.HTTPConfig{StatPrefix: "ingress_http", RouteConfig: "local"},
			}},
		}},
		Routes: []route.Config{{
			Name:         "local",
			VirtualHosts: []route.VirtualHost{{Name: "all", Domains: []string{"*"}, Rules: rules}},
		}},
		Clusters: []cluster.Config{{Name: "app", Endpoints: []cluster.Endpoint{{Address: upstream}}}},
	}
}

func startGateway(t testing.TB, cfg Config, opts Options) (*Gateway, string) {
	t.Helper()
	if opts.Admin == "" {
		opts.Admin = "127.0.0.1:0"
	}
	g, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10s")
		}
	})
	return g, g.ListenerAddr("ingress").String()
}

// flagRecorder is a done filter that records each exchange's flags.
type flagRecorder struct {
	mu    sync.Mutex
	flags []string
}

func (f *flagRecorder) Name() string { return "flags" }

func (f *flagRecorder) OnDone(ctx context.Context, x *filter.Exchange) {
	f.mu.Lock()
	f.flags = append(f.flags, x.Flags.String())
	f.mu.Unlock()
}

func (f *flagRecorder) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.flags) == 0 {
		return ""
	}
	return f.flags[len(f.flags)-1]
}

func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read status line: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestBadInputGetsClearAnswers(t *testing.T) {
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := closed.Addr().String()
	closed.Close()

	rec := &flagRecorder{}
	cfg := simpleConfig(origin,
		route.Rule{Name: "slow", Match: route.Match{Path: "/slow"}, Cluster: "app", Timeout: 200 * time.Millisecond},
		route.Rule{Name: "empty", Match: route.Match{Prefix: "/empty"}, Cluster: "empty"},
		route.Rule{Name: "refused", Match: route.Match{Prefix: "/refused"}, Cluster: "refused"},
		route.Rule{Name: "nocluster", Match: route.Match{Prefix: "/nocluster"}, Cluster: "missing"},
	)
	cfg.Routes[0].VirtualHosts[0].Rules = cfg.Routes[0].VirtualHosts[0].Rules[:4] // no catch-all: unmatched paths get 404
	cfg.Routes[0].VirtualHosts[0].Rules = append(cfg.Routes[0].VirtualHosts[0].Rules,
		route.Rule{Name: "ok", Match: route.Match{Path: "/ok"}, Cluster: "app"})
	cfg.Listeners[0].FilterChains[0].HTTP.Filters = []filter.Filter{rec}
	cfg.Listeners[0].FilterChains[0].HTTP.MaxRequestHeadersBytes = 8 << 10
	cfg.Clusters = append(cfg.Clusters,
		cluster.Config{Name: "empty"},
		cluster.Config{Name: "refused", Endpoints: []cluster.Endpoint{{Address: refused}}})
	_, addr := startGateway(t, cfg, Options{})

	for _, tc := range []struct {
		name       string
		req        string
		wantStatus string
		wantFlags  string // "" = not checked (rejected before the chain)
	}{
		{"oversized headers", "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", "431", ""},
		{"malformed request", "GARBAGE REQUEST LINE\r\n\r\n", "400", ""},
		{"no route", "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", "404", "NR"},
		{"no endpoints", "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n", "503", "UH"},
		{"connection refused", "GET /refused HTTP/1.1\r\nHost: x\r\n\r\n", "503", "UF"},
		{"upstream timeout", "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", "504", "UT"},
		{"no cluster", "GET /nocluster HTTP/1.1\r\nHost: x\r\n\r\n", "503", "NC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := rawRequest(t, addr, tc.req)
			if f := strings.Fields(line); len(f) < 2 || f[1] != tc.wantStatus {
				t.Errorf("got status line %q, want status %s", line, tc.wantStatus)
			}
			if tc.wantFlags != "" {
				if got := rec.last(); got != tc.wantFlags {
					t.Errorf("got response flags %q, want %q", got, tc.wantFlags)
				}
			}
			// The gateway keeps serving.
			if line := rawRequest(t, addr, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.Contains(line, " 200 ") {
				t.Errorf("after %s: got %q, want 200", tc.name, line)
			}
		})
	}
}

// TestStreamingEventByEvent checks DESIGN §7 through the whole gateway: the
// client receives SSE event N before the upstream writes event N+1, over
// HTTP/1.1 and over h2 (TLS, ALPN).
func TestStreamingEventByEvent(t *testing.T) {
	const events = 5
	next := make(chan struct{})
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range events {
			if i > 0 {
				select {
				case <-next: // the client saw event i-1
				case <-time.After(5 * time.Second):
					return
				}
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			rc.Flush()
		}
	}))
	ca := testcert.NewCA()
	certPEM, keyPEM := ca.Leaf("gw.test")
	cfg := simpleConfig(origin)
	cfg.Listeners = append(cfg.Listeners, listener.Config{
		Name:    "tls",
		Address: "127.0.0.1:0",
		FilterChains: []listener.FilterChain{{
			Name: "https",
			TLS:  &listener.TLSConfig{Certificates: []listener.Certificate{{CertPEM: certPEM, KeyPEM: keyPEM}}},
			HTTP: &listener.HTTPConfig{StatPrefix: "ingress_https", RouteConfig: "local"},
		}},
	})
	g, addr := startGateway(t, cfg, Options{})

	h1 := &http.Transport{}
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "gw.test"}, ForceAttemptHTTP2: true}
	defer h1.CloseIdleConnections()
	defer h2.CloseIdleConnections()
	for _, tc := range []struct {
		name, url, proto string
		rt               http.RoundTripper
	}{
		{"http1.1", "http://" + addr + "/sse", "HTTP/1.1", h1},
		{"h2", "https://" + g.ListenerAddr("tls").String() + "/sse", "HTTP/2.0", h2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := (&http.Client{Transport: tc.rt, Timeout: 20 * time.Second}).Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Proto != tc.proto {
				t.Errorf("got %s, want %s", resp.Proto, tc.proto)
			}
			br := bufio.NewReader(resp.Body)
			for i := range events {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("event %d: %v (an event held back until the next one would time out here)", i, err)
				}
				if want := fmt.Sprintf("data: %d\n", i); line != want {
					t.Fatalf("got %q, want %q", line, want)
				}
				br.ReadString('\n')
				if i < events-1 {
					next <- struct{}{}
				}
			}
		})
	}
}

func TestAdmin(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	g, addr := startGateway(t, simpleConfig(origin), Options{StatsPrefix: "envoy"})
	admin := "http://" + g.AdminAddr().String()

	for range 3 {
		resp, err := http.Get("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	get := func(path string) (int, string) { t.Helper(); return httpGet(t, admin+path) }

	t.Run("prometheus", func(t *testing.T) {
		fams := scrape(t, admin)
		want := []struct {
			name   string
			labels map[string]string
			value  float64
		}{
			{"envoy_http_downstream_rq_total", map[string]string{"envoy_http_conn_manager_prefix": "ingress_http"}, 3},
			{"envoy_http_downstream_rq_xx", map[string]string{"envoy_http_conn_manager_prefix": "ingress_http", "envoy_response_code_class": "2"}, 3},
			{"envoy_cluster_upstream_rq_total", map[string]string{"envoy_cluster_name": "app"}, 3},
			{"envoy_cluster_upstream_rq_xx", map[string]string{"envoy_cluster_name": "app", "envoy_response_code_class": "2"}, 3},
		}
		for _, w := range want {
			fam := fams[w.name]
			if fam == nil {
				t.Errorf("missing %s", w.name)
				continue
			}
			found := false
			for _, m := range fam.Metric {
				if labelsMatch(m.Label, w.labels) {
					found = true
					if got := m.GetCounter().GetValue(); got != w.value {
						t.Errorf("%s%v: got %v, want %v", w.name, w.labels, got, w.value)
					}
				}
			}
			if !found {
				t.Errorf("%s: no series with labels %v", w.name, w.labels)
			}
		}
		h := fams["envoy_cluster_upstream_rq_time"]
		if h == nil || h.Metric[0].GetHistogram().GetSampleCount() != 3 {
			t.Errorf("got upstream_rq_time %v, want a histogram with 3 samples", h)
		}
		if _, ok := fams["envoy_listener_downstream_cx_total"]; !ok {
			t.Error("missing envoy_listener_downstream_cx_total")
		}
	})
	t.Run("ready", func(t *testing.T) {
		if code, body := get("/ready"); code != 200 || strings.TrimSpace(body) != "LIVE" {
			t.Errorf("got %d %q, want 200 LIVE", code, body)
		}
	})
	t.Run("healthcheck fail is POST only", func(t *testing.T) {
		if code, _ := get("/healthcheck/fail"); code != http.StatusMethodNotAllowed {
			t.Errorf("GET /healthcheck/fail: got %d, want 405", code)
		}
		resp, err := http.Post(admin+"/healthcheck/fail", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !g.HealthCheckFailed() {
			t.Error("health checks not failing after POST /healthcheck/fail")
		}
		if code, _ := get("/ready"); code != http.StatusServiceUnavailable {
			t.Errorf("ready while failing: got %d, want 503", code)
		}
		resp, _ = http.Post(admin+"/healthcheck/ok", "", nil)
		resp.Body.Close()
		if g.HealthCheckFailed() {
			t.Error("still failing after POST /healthcheck/ok")
		}
	})
	t.Run("config_dump", func(t *testing.T) {
		_, body := get("/config_dump")
		var dump struct {
			Listeners []struct{ Name string }
			Routes    []struct {
				Name    string
				Version string `json:"version_info"`
			} `json:"route_configs"`
			Clusters []struct {
				Name      string
				Endpoints []map[string]any
			}
		}
		if err := json.Unmarshal([]byte(body), &dump); err != nil {
			t.Fatalf("config_dump is not JSON: %v\n%s", err, body)
		}
		if len(dump.Listeners) != 1 || len(dump.Routes) != 1 || dump.Routes[0].Version != "1" || len(dump.Clusters) != 1 ||
			dump.Clusters[0].Endpoints[0]["address"] != origin {
			t.Errorf("unexpected dump: %+v", dump)
		}
		if code, _ := get("/config_dump?resource=nonsense"); code != http.StatusBadRequest {
			t.Errorf("unknown resource: got %d, want 400", code)
		}
	})
	t.Run("clusters and listeners", func(t *testing.T) {
		if _, body := get("/clusters"); !strings.Contains(body, "app::"+origin+"::health_flags::") {
			t.Errorf("/clusters: %q", body)
		}
		if _, body := get("/listeners"); !strings.Contains(body, "ingress::"+addr) {
			t.Errorf("/listeners: %q", body)
		}
	})
	t.Run("pprof", func(t *testing.T) {
		if code, _ := get("/debug/pprof/"); code != 200 {
			t.Errorf("pprof: got %d", code)
		}
	})
}

func labelsMatch(got []*dto.LabelPair, want map[string]string) bool {
	n := 0
	for _, l := range got {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// TestNoGoroutineLeak serves traffic, replaces and removes a listener and
// a cluster, shuts down, and requires the goroutine count to come back.
func TestNoGoroutineLeak(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	before := runtime.NumGoroutine()
	g, err := New(simpleConfig(origin), Options{Admin: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	addr := g.ListenerAddr("ingress").String()
	tr := &http.Transport{}
	for i := range 20 {
		if i == 10 {
			next := simpleConfig(origin)
			next.Clusters[0].ConnectTimeout = time.Second // a new cluster object
			next.Listeners = append(next.Listeners, next.Listeners[0])
			next.Listeners[1].Name = "second"
			if err := g.Apply(next); err != nil {
				t.Fatal(err)
			}
			if err := g.RemoveListener("second"); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("got %d goroutines after shutdown, want at most %d:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// httpGet fetches url and returns its status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape parses the admin API's /stats/prometheus page.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	_, body := httpGet(t, admin+"/stats/prometheus")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /stats/prometheus: %v", err)
	}
	return fams
}
