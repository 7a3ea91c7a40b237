package portico

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// doneRecorder is a done filter that records each exchange's flags and
// details.
type doneRecorder struct {
	mu   sync.Mutex
	done []string // "flags details"
}

func (f *doneRecorder) Name() string { return "done" }

func (f *doneRecorder) OnDone(ctx context.Context, x *filter.Exchange) {
	f.mu.Lock()
	f.done = append(f.done, x.Flags.String()+" "+x.Details)
	f.mu.Unlock()
}

// wait returns the first exchange's record, waiting for it: the done
// phases of an aborted stream may run after the client saw the abort.
func (f *doneRecorder) wait(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.done)
		var first string
		if n > 0 {
			first = f.done[0]
		}
		f.mu.Unlock()
		if n > 0 {
			return first
		}
		if time.Now().After(deadline) {
			t.Fatal("no exchange finished within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// idleGateway starts a gateway whose catch-all route sends to origin with
// the given route idle timeout and no route timeout; hcmIdle is the
// connection manager's StreamIdleTimeout.
func idleGateway(t *testing.T, origin string, idle, hcmIdle time.Duration, retry *route.RetryPolicy, mod ...func(*Config)) (*Gateway, string, *doneRecorder) {
	t.Helper()
	cfg := simpleConfig(origin)
	for _, f := range mod {
		f(&cfg)
	}
	rule := &cfg.Routes[0].VirtualHosts[0].Rules[0]
	rule.Timeout, rule.IdleTimeout, rule.Retry = -1, idle, retry
	rec := &doneRecorder{}
	hc := cfg.Listeners[0].FilterChains[0].HTTP
	hc.Filters = []filter.Filter{rec}
	hc.StreamIdleTimeout = hcmIdle
	g, addr := startGateway(t, cfg, Options{Admin: "-"})
	return g, addr, rec
}

func idleTimeouts(g *Gateway) float64 {
	return counterValue(g.metrics.hcmRqIdle.WithLabelValues("ingress_http"))
}

func idleClient(t *testing.T, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	if h2 {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// stallOrigin answers "/headers" with its headers and a first chunk, then
// stalls; anything else stalls before the headers. The stalls end when
// the gateway gives up on the request, or after the test.
func stallOrigin(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/headers" {
			io.WriteString(w, "head ")
			http.NewResponseController(w).Flush()
		}
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	return origin, &hits
}

func TestStreamIdleTimeoutAfterHeaders(t *testing.T) {
	origin, _ := stallOrigin(t)
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			g, addr, rec := idleGateway(t, origin, 200*time.Millisecond, 0, nil)
			start := time.Now()
			resp, err := idleClient(t, h2).Get("http://" + addr + "/headers")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != 200 || string(body) != "head " || err == nil {
				t.Errorf("got %d %q (body error %v), want 200 \"head \" and the stream aborted", resp.StatusCode, body, err)
			}
			if took < 150*time.Millisecond || took > 3*time.Second {
				t.Errorf("stream aborted after %v, want about 200ms", took)
			}
			if got, want := rec.wait(t), "SI stream_idle_timeout"; got != want {
				t.Errorf("got flags and details %q, want %q", got, want)
			}
			if got := idleTimeouts(g); got != 1 {
				t.Errorf("got downstream_rq_idle_timeout %v, want 1", got)
			}
		})
	}
}

func TestStreamIdleTimeoutBeforeHeaders(t *testing.T) {
	origin, hits := stallOrigin(t)
	for _, tc := range []struct {
		name          string
		idle, hcmIdle time.Duration
		retry         *route.RetryPolicy
	}{
		{name: "route idle timeout", idle: 200 * time.Millisecond},
		{name: "connection manager's", hcmIdle: 200 * time.Millisecond},
		{name: "route's overrides the manager's", idle: 200 * time.Millisecond, hcmIdle: time.Hour},
		// The stream ends; nothing is retried.
		{name: "with a retry policy", idle: 200 * time.Millisecond,
			retry: &route.RetryPolicy{RetryOn: []string{route.Retry5xx, route.RetryReset}, NumRetries: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			g, addr, rec := idleGateway(t, origin, tc.idle, tc.hcmIdle, tc.retry)
			start := time.Now()
			got := get(t, addr, "/")
			took := time.Since(start)
			if got.status != http.StatusGatewayTimeout || got.body != "stream timeout" {
				t.Errorf("got %d %q, want 504 \"stream timeout\"", got.status, got.body)
			}
			if took < 150*time.Millisecond || took > 3*time.Second {
				t.Errorf("answered after %v, want about 200ms", took)
			}
			if got, want := rec.wait(t), "SI stream_idle_timeout"; got != want {
				t.Errorf("got flags and details %q, want %q", got, want)
			}
			if got := idleTimeouts(g); got != 1 {
				t.Errorf("got downstream_rq_idle_timeout %v, want 1", got)
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("got %d upstream requests, want 1", n)
			}
		})
	}
}

// TestStreamIdleTimeoutRequestBody checks that request body bytes keep
// the stream alive, and that a request body that stops coming ends it
// with Envoy's 408.
func TestStreamIdleTimeoutRequestBody(t *testing.T) {
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "got %d", n)
	}))
	t.Run("slow upload", func(t *testing.T) {
		g, addr, rec := idleGateway(t, origin, 300*time.Millisecond, 0, nil)
		pr, pw := io.Pipe()
		go func() {
			for range 8 {
				time.Sleep(100 * time.Millisecond)
				pw.Write([]byte("0123456789"))
			}
			pw.Close()
		}()
		req, err := http.NewRequest("POST", "http://"+addr+"/", pr)
		if err != nil {
			t.Fatal(err)
		}
		if got := do(t, req); got.status != 200 || got.body != "got 80" || got.err != nil {
			t.Errorf("got %d %q (%v), want 200 \"got 80\"", got.status, got.body, got.err)
		}
		if got := rec.wait(t); got != "- " {
			t.Errorf("got flags and details %q, want none", got)
		}
		if got := idleTimeouts(g); got != 0 {
			t.Errorf("got downstream_rq_idle_timeout %v, want 0", got)
		}
	})
	// Over HTTP/1.1 Go's transport waits for a request body read it
	// started, so a stalled upload ends when the read does (the listener's
	// RequestTimeout bounds it); over HTTP/2 at once.
	t.Run("stalled upload", func(t *testing.T) {
		g, addr, rec := idleGateway(t, origin, 200*time.Millisecond, 0, nil, func(c *Config) {
			c.Clusters[0].Protocol = cluster.HTTP2
		})
		status := rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123")
		if status != "HTTP/1.1 408 Request Timeout" {
			t.Errorf("got %q, want 408", status)
		}
		if got, want := rec.wait(t), "SI stream_idle_timeout"; got != want {
			t.Errorf("got flags and details %q, want %q", got, want)
		}
		if got := idleTimeouts(g); got != 1 {
			t.Errorf("got downstream_rq_idle_timeout %v, want 1", got)
		}
	})
}

// TestStreamIdleTimeoutNotIdle checks streams that are slow but never
// idle for the timeout, and a route that disables the timeout.
func TestStreamIdleTimeoutNotIdle(t *testing.T) {
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/late" {
			time.Sleep(400 * time.Millisecond)
			io.WriteString(w, "late")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range 10 {
			time.Sleep(100 * time.Millisecond)
			fmt.Fprintf(w, "data: %d\n\n", i)
			rc.Flush()
		}
	}))
	var events strings.Builder
	for i := range 10 {
		fmt.Fprintf(&events, "data: %d\n\n", i)
	}
	for _, tc := range []struct {
		name, path, want string
		idle, hcmIdle    time.Duration
	}{
		{name: "events every 100ms, idle 300ms", path: "/events", want: events.String(), idle: 300 * time.Millisecond},
		{name: "route disables the manager's", path: "/late", want: "late", idle: -1, hcmIdle: 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, addr, rec := idleGateway(t, origin, tc.idle, tc.hcmIdle, nil)
			if got := get(t, addr, tc.path); got.status != 200 || got.body != tc.want || got.err != nil {
				t.Errorf("got %d %q (%v), want 200 %q", got.status, got.body, got.err, tc.want)
			}
			if got := rec.wait(t); got != "- " {
				t.Errorf("got flags and details %q, want none", got)
			}
			if got := idleTimeouts(g); got != 0 {
				t.Errorf("got downstream_rq_idle_timeout %v, want 0", got)
			}
		})
	}
}

func TestIdleTimeoutEffective(t *testing.T) {
	for _, tc := range []struct {
		name               string
		idle, timeout, hcm time.Duration
		want               time.Duration
	}{
		{name: "defaults: the route timeout bounds it", hcm: 0, want: 0},
		{name: "no route timeout: the manager's default", timeout: -1, want: 5 * time.Minute},
		{name: "route's below the route timeout", idle: time.Second, want: time.Second},
		{name: "route's at the route timeout", idle: 15 * time.Second, want: 0},
		{name: "route disables", idle: -1, timeout: -1, hcm: time.Second, want: 0},
		{name: "manager disables", timeout: -1, hcm: -1, want: 0},
		{name: "route's despite the manager disabling", idle: time.Second, timeout: -1, hcm: -1, want: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := route.New(route.Config{Name: "r", VirtualHosts: []route.VirtualHost{{
				Name: "all", Domains: []string{"*"},
				Rules: []route.Rule{{Match: route.Match{Prefix: "/"}, Cluster: "app", IdleTimeout: tc.idle, Timeout: tc.timeout}},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			st := &hcmState{streamIdle: streamIdleTimeout(&listener.HTTPConfig{StreamIdleTimeout: tc.hcm})}
			if got := st.idleTimeout(rt.Routes()[0]); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
