package portico

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/route"
)

// shadowSeen is what a shadow origin received.
type shadowSeen struct {
	host, path string
	body       []byte
	err        error
}

// mirrorGateway starts a gateway whose catch-all route sends to "app" at
// main and mirrors to "shadow" at shadow with policy m; rule supplies the
// rest of the route.
func mirrorGateway(t *testing.T, main, shadow string, m route.MirrorPolicy, rule route.Rule) (*Gateway, string) {
	t.Helper()
	m.Cluster = "shadow"
	rule.Mirrors = []route.MirrorPolicy{m}
	g, addr, _ := retryGateway(t, []string{main}, rule, func(c *Config) {
		c.Clusters = append(c.Clusters, cluster.Config{Name: "shadow", Endpoints: []cluster.Endpoint{{Address: shadow}}})
	})
	return g, addr
}

func echoOrigin(t *testing.T) string {
	return startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // net/http closes the body once the answer starts
		w.Write(b)
	}))
}

func TestMirrorReachesShadow(t *testing.T) {
	seen := make(chan shadowSeen, 4)
	shadow := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		seen <- shadowSeen{host: r.Host, path: r.URL.RequestURI(), body: b, err: err}
		w.WriteHeader(http.StatusTeapot) // discarded
	}))
	g, addr := mirrorGateway(t, echoOrigin(t), shadow, route.MirrorPolicy{}, route.Rule{})
	body := bytes.Repeat([]byte("mirror me "), 10<<10)
	for _, host := range []struct{ in, want string }{
		{"api.example.com:8080", "api.example.com-shadow:8080"},
		{"api.example.com", "api.example.com-shadow"},
	} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/items?x=1", bytes.NewReader(body))
		req.Host = host.in
		got := do(t, req)
		if got.status != 200 || got.body != string(body) {
			t.Fatalf("main: got %d and %d bytes, want 200 and the echoed body", got.status, len(got.body))
		}
		select {
		case s := <-seen:
			if s.host != host.want || s.path != "/v1/items?x=1" || s.err != nil || !bytes.Equal(s.body, body) {
				t.Errorf("shadow got host %q path %q %d body bytes (err %v), want host %q, the path and the whole body",
					s.host, s.path, len(s.body), s.err, host.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the shadow never got the request")
		}
	}
	st := retryStatsOf(t, g, "shadow")
	deadline := time.Now().Add(5 * time.Second)
	for counterValue(st.rqDone) != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the shadow's response is charged after it was discarded
	}
	if got := counterValue(st.rqDone); got != 2 {
		t.Errorf("got shadow upstream_rq_completed %v, want 2", got)
	}
}

// TestMirrorDoesNotDelay: a shadow that never answers, even one still
// waiting for the request body, does not slow the main request down.
func TestMirrorDoesNotDelay(t *testing.T) {
	hang := make(chan struct{})
	var shadowHits atomic.Int32
	shadow := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		shadowHits.Add(1)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	_, addr := mirrorGateway(t, echoOrigin(t), shadow, route.MirrorPolicy{}, route.Rule{})
	// Registered after the gateway's own cleanup so it runs first: the
	// gateway's Shutdown waits for shadows, which wait on hang.
	t.Cleanup(func() { close(hang) })
	for _, method := range []string{"GET", "POST"} {
		start := time.Now()
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("payload")
		}
		req, _ := http.NewRequest(method, "http://"+addr+"/", body)
		got := do(t, req)
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("%s: took %v with a hanging shadow", method, took)
		}
		if got.status != 200 {
			t.Errorf("%s: got %d, want 200", method, got.status)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for shadowHits.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := shadowHits.Load(); n != 2 {
		t.Errorf("got %d shadow requests, want 2", n)
	}
}

// TestMirrorBounded: shadows in flight are bounded; beyond the bound they
// are dropped and counted, and main requests are unaffected.
func TestMirrorBounded(t *testing.T) {
	hang := make(chan struct{})
	var shadowHits atomic.Int32
	shadow := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		shadowHits.Add(1)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	g, addr := mirrorGateway(t, echoOrigin(t), shadow, route.MirrorPolicy{}, route.Rule{})
	// Registered after the gateway's own cleanup so it runs first: the
	// gateway's Shutdown waits for shadows, which wait on hang.
	t.Cleanup(func() { close(hang) })
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	const extra = 5
	for i := range maxShadowsInFlight + extra {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: got %d", i, resp.StatusCode)
		}
	}
	if got := counterValue(retryStatsOf(t, g, "shadow").retry.shadowOverflow); got != extra {
		t.Errorf("got upstream_rq_shadow_overflow %v, want %d", got, extra)
	}
	deadline := time.Now().Add(5 * time.Second)
	for shadowHits.Load() < maxShadowsInFlight && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := shadowHits.Load(); n != maxShadowsInFlight {
		t.Errorf("got %d shadow requests at the shadow, want %d", n, maxShadowsInFlight)
	}
}

func TestMirrorFraction(t *testing.T) {
	var shadowHits atomic.Int32
	shadow := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { shadowHits.Add(1) }))
	main := echoOrigin(t)
	for _, tc := range []struct {
		fraction float64
		min, max int32
	}{{1e-9, 0, 0}, {0.5, 5, 45}} {
		shadowHits.Store(0)
		g, addr := mirrorGateway(t, main, shadow, route.MirrorPolicy{Fraction: tc.fraction}, route.Rule{})
		for range 50 {
			if got := get(t, addr, "/"); got.status != 200 {
				t.Fatalf("got %d", got.status)
			}
		}
		st := retryStatsOf(t, g, "shadow")
		deadline := time.Now().Add(5 * time.Second)
		for counterValue(st.rqTotal) != float64(shadowHits.Load()) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := shadowHits.Load(); n < tc.min || n > tc.max {
			t.Errorf("fraction %v: got %d of 50 requests mirrored, want %d to %d", tc.fraction, n, tc.min, tc.max)
		}
	}
}

// TestMirrorBodyOverLimit: a body beyond the buffer limit reaches the main
// upstream whole but aborts the shadow, counted as
// retry_or_shadow_abandoned.
func TestMirrorBodyOverLimit(t *testing.T) {
	seen := make(chan shadowSeen, 1)
	shadow := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		seen <- shadowSeen{body: b, err: err}
	}))
	g, addr := mirrorGateway(t, echoOrigin(t), shadow, route.MirrorPolicy{}, route.Rule{BufferLimit: 1 << 10})
	body := bytes.Repeat([]byte("x"), 64<<10)
	req, _ := http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader(body))
	if got := do(t, req); got.status != 200 || got.body != string(body) {
		t.Errorf("main: got %d and %d bytes, want 200 and the whole body", got.status, len(got.body))
	}
	select {
	case s := <-seen:
		if s.err == nil && len(s.body) == len(body) {
			t.Error("the shadow got the whole body beyond the buffer limit")
		}
	case <-time.After(5 * time.Second):
		// The shadow may also fail before its request reached the origin.
	}
	if got := counterValue(retryStatsOf(t, g, "app").retry.abandoned); got != 1 {
		t.Errorf("got retry_or_shadow_abandoned %v, want 1", got)
	}
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"a.example":      "a.example-shadow",
		"a.example:8080": "a.example-shadow:8080",
		"10.0.0.1:80":    "10.0.0.1-shadow:80",
		"[::1]:80":       "[::1]-shadow:80",
		"[::1]":          "[::1]-shadow",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}
