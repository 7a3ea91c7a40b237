package healthcheck_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/healthcheck"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// startGateway runs a gateway whose chain holds hc in front of an origin
// that counts the requests it sees.
func startGateway(t *testing.T, cfg healthcheck.Config) (gw *portico.Gateway, base string, originHits *atomic.Int64) {
	t.Helper()
	originHits = new(atomic.Int64)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originHits.Add(1)
		io.WriteString(w, "origin")
	}))
	t.Cleanup(origin.Close)

	cfg.Failing = func() bool { return gw.HealthCheckFailed() }
	hc, err := healthcheck.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gw, err = portico.New(portico.Config{
		Listeners: []listener.Config{{
			Name:    "ingress",
			Address: "127.0.0.1:0",
			FilterChains: []listener.FilterChain{{
				HTTP: &listener.HTTPConfig{StatPrefix: "ingress_http", RouteConfig: "local", Filters: []filter.Filter{hc}},
			}},
		}},
		Routes: []route.Config{{Name: "local", VirtualHosts: []route.VirtualHost{{
			Name: "all", Domains: []string{"*"},
			Rules: []route.Rule{{Match: route.Match{Prefix: "/"}, Cluster: "app"}},
		}}}},
		Clusters: []cluster.Config{{Name: "app", Endpoints: []cluster.Endpoint{{Address: strings.TrimPrefix(origin.URL, "http://")}}}},
	}, portico.Options{Admin: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop")
		}
	})
	return gw, "http://" + gw.ListenerAddr("ingress").String(), originHits
}

func get(t *testing.T, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func admin(t *testing.T, gw *portico.Gateway, path string) {
	t.Helper()
	resp, err := http.Post("http://"+gw.AdminAddr().String()+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
}

func TestAnswersAndFailsOnAdminCall(t *testing.T) {
	gw, base, hits := startGateway(t, healthcheck.Config{Path: "/healthz", Headers: map[string]string{"x-probe": "lb"}})

	if code, _, _ := get(t, base+"/healthz", map[string]string{"X-Probe": "lb"}); code != http.StatusOK {
		t.Fatalf("healthy check: %d, want 200", code)
	}
	if hits.Load() != 0 {
		t.Fatalf("health check reached the origin (%d hits); it should be answered locally", hits.Load())
	}
	// Without the header the path is ordinary traffic.
	if code, _, body := get(t, base+"/healthz", nil); code != http.StatusOK || body != "origin" {
		t.Fatalf("non-check request: %d %q, want the origin's answer", code, body)
	}

	admin(t, gw, "/healthcheck/fail")
	code, h, _ := get(t, base+"/healthz?x=1", map[string]string{"X-Probe": "lb"})
	if code != http.StatusServiceUnavailable || h.Get(healthcheck.ImmediateFailHeader) != "true" {
		t.Fatalf("failing check: %d %s=%q, want 503 and true", code, healthcheck.ImmediateFailHeader, h.Get(healthcheck.ImmediateFailHeader))
	}
	// Traffic other than health checks still flows while failing: the
	// gateway is being drained, not broken.
	if code, _, body := get(t, base+"/app", nil); code != http.StatusOK || body != "origin" {
		t.Fatalf("traffic while failing: %d %q", code, body)
	}

	admin(t, gw, "/healthcheck/ok")
	if code, _, _ := get(t, base+"/healthz", map[string]string{"X-Probe": "lb"}); code != http.StatusOK {
		t.Fatalf("after /healthcheck/ok: %d, want 200", code)
	}
}

func TestPassThrough(t *testing.T) {
	gw, base, hits := startGateway(t, healthcheck.Config{Path: "/healthz", PassThrough: true})
	if code, _, body := get(t, base+"/healthz", nil); code != http.StatusOK || body != "origin" || hits.Load() != 1 {
		t.Fatalf("pass-through check: %d %q hits=%d, want the origin's 200", code, body, hits.Load())
	}
	admin(t, gw, "/healthcheck/fail")
	if code, _, _ := get(t, base+"/healthz", nil); code != http.StatusServiceUnavailable || hits.Load() != 1 {
		t.Fatalf("failing pass-through check: %d hits=%d, want 503 answered locally", code, hits.Load())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []healthcheck.Config{
		{},
		{Path: "healthz"},
		{Path: "/h", Headers: map[string]string{"bad name": "x"}},
	} {
		if _, err := healthcheck.New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}
