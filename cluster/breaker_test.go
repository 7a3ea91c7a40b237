package cluster

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventually polls cond until it holds, failing the test after testTimeout.
// It is for state another goroutine reaches on its own (a request parked
// in a server, a control-loop event), never to order two actions.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gateServer parks every request until release is called: before the
// response headers with headFirst false, after them (with a streamed,
// chunked body) with headFirst true.
type gateServer struct {
	*httptest.Server
	gate    chan struct{}
	once    sync.Once
	arrived chan struct{}
}

func newGateServer(t *testing.T, headFirst bool) *gateServer {
	g := &gateServer{gate: make(chan struct{}), arrived: make(chan struct{}, 100)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headFirst {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		}
		g.arrived <- struct{}{}
		<-g.gate
		io.WriteString(w, "done")
	}))
	t.Cleanup(func() {
		g.release()
		g.Close()
	})
	return g
}

func (g *gateServer) release() { g.once.Do(func() { close(g.gate) }) }

// sendAsync sends a GET with priority p in a goroutine; the returned
// channel yields the response (body read and closed) or the error.
func sendAsync(t *testing.T, c *Cluster, p RoutingPriority) <-chan error {
	t.Helper()
	r := newReq(t, context.Background(), http.MethodGet, nil)
	r.Priority = p
	done := make(chan error, 1)
	go func() {
		resp, err := c.Send(r)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	return done
}

func sendPriority(t *testing.T, c *Cluster, p RoutingPriority) (*http.Response, error) {
	t.Helper()
	r := newReq(t, context.Background(), http.MethodGet, nil)
	r.Priority = p
	return c.Send(r)
}

func wantOverflow(t *testing.T, err error, want error) {
	t.Helper()
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Kind != Overflow || !errors.Is(err, want) {
		t.Fatalf("Send() error = %v, want Kind Overflow wrapping %q", err, want)
	}
	if ue.Endpoint != "" {
		t.Errorf("overflow error names endpoint %q; no endpoint is picked", ue.Endpoint)
	}
}

func TestPendingOverflow(t *testing.T) {
	g := newGateServer(t, false)
	c := newTestCluster(t, Config{
		Endpoints: []Endpoint{{Address: hostOf(t, g.URL)}},
		CircuitBreakers: CircuitBreakers{
			Default: Thresholds{MaxPendingRequests: 1},
			High:    Thresholds{MaxPendingRequests: 1},
		},
	})
	first := sendAsync(t, c, DefaultPriority)
	<-g.arrived // parked before its response headers: pending
	st := c.Stats()
	if st.UpstreamRqPendingActive != 1 || st.UpstreamRqActive != 1 {
		t.Errorf("pending, active = %d, %d; want 1, 1", st.UpstreamRqPendingActive, st.UpstreamRqActive)
	}
	if b := st.CircuitBreakers.Default; !b.RqPendingOpen || b.RemainingPending != 0 || b.RqOpen || b.RemainingRq != DefaultMaxRequests-1 {
		t.Errorf("default breaker = %+v, want pending open with 0 remaining, requests closed with %d", b, DefaultMaxRequests-1)
	}

	_, err := sendPriority(t, c, DefaultPriority)
	wantOverflow(t, err, ErrPendingOverflow)

	// High priority has its own counters.
	high := sendAsync(t, c, HighPriority)
	<-g.arrived
	_, err = sendPriority(t, c, HighPriority)
	wantOverflow(t, err, ErrPendingOverflow)

	st = c.Stats()
	if st.UpstreamRqPendingOverflow != 2 || st.UpstreamRqActiveOverflow != 0 {
		t.Errorf("pending overflow, active overflow = %d, %d; want 2, 0", st.UpstreamRqPendingOverflow, st.UpstreamRqActiveOverflow)
	}
	g.release()
	for _, ch := range []<-chan error{first, high} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.UpstreamRqPendingActive != 0 || st.UpstreamRqActive != 0 || st.CircuitBreakers.Default.RqPendingOpen {
		t.Errorf("after release: %+v; want nothing pending or active", st)
	}
	if _, resp := get(t, c); resp.StatusCode != 200 {
		t.Errorf("status %d after release", resp.StatusCode)
	}
}

func TestRequestsOverflow(t *testing.T) {
	g := newGateServer(t, true)
	c := newTestCluster(t, Config{
		Endpoints:       []Endpoint{{Address: hostOf(t, g.URL)}},
		CircuitBreakers: CircuitBreakers{Default: Thresholds{MaxRequests: 1}},
	})
	// Headers arrive at once; the streamed body keeps the request active.
	resp, err := sendPriority(t, c, DefaultPriority)
	if err != nil {
		t.Fatal(err)
	}
	<-g.arrived
	if st := c.Stats(); st.UpstreamRqActive != 1 || st.UpstreamRqPendingActive != 0 || !st.CircuitBreakers.Default.RqOpen {
		t.Errorf("with a body streaming: %+v; want 1 active, 0 pending, rq_open", st)
	}
	_, err = sendPriority(t, c, DefaultPriority)
	wantOverflow(t, err, ErrRequestOverflow)
	st := c.Stats()
	if st.UpstreamRqPendingOverflow != 1 || st.UpstreamRqActiveOverflow != 1 {
		t.Errorf("pending overflow, active overflow = %d, %d; want 1, 1 (Envoy counts the requests breaker as pending overflow)",
			st.UpstreamRqPendingOverflow, st.UpstreamRqActiveOverflow)
	}
	if es := c.EndpointStates(); es[0].ActiveRequests != 1 || es[0].TotalRequests != 1 {
		t.Errorf("endpoint active, total = %d, %d; want 1, 1", es[0].ActiveRequests, es[0].TotalRequests)
	}
	g.release()
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "done" {
		t.Errorf("body %q", b)
	}
	if st := c.Stats(); st.UpstreamRqActive != 0 {
		t.Errorf("active after the body ended = %d, want 0", st.UpstreamRqActive)
	}
	if _, resp := get(t, c); resp.StatusCode != 200 {
		t.Errorf("status %d after the body ended", resp.StatusCode)
	}
	es := c.EndpointStates()[0]
	if es.ActiveRequests != 0 || es.TotalRequests != 2 || es.SuccessRequests != 2 {
		t.Errorf("endpoint state %+v, want 0 active, 2 total, 2 successes", es)
	}
}

// TestShortBodyEndsAtHeaders: a short body with a Content-Length stops
// counting when headers arrive, so an unread one does not hold the
// breaker.
func TestShortBodyEndsAtHeaders(t *testing.T) {
	ts := nameServer(t, "short")
	c := newTestCluster(t, Config{
		Endpoints:       []Endpoint{{Address: hostOf(t, ts.URL)}},
		CircuitBreakers: CircuitBreakers{Default: Thresholds{MaxRequests: 1}},
	})
	for i := range 3 {
		resp, err := sendPriority(t, c, DefaultPriority)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		defer resp.Body.Close()
	}
	if st := c.Stats(); st.UpstreamRqActive != 0 || st.UpstreamRqPendingOverflow != 0 {
		t.Errorf("stats %+v, want nothing active or refused", st)
	}
}

func TestTrackBody(t *testing.T) {
	body := io.NopCloser(strings.NewReader(""))
	tests := []struct {
		name string
		resp *http.Response
		want bool
	}{
		{"no body", &http.Response{StatusCode: 204, Body: http.NoBody}, false},
		{"short", &http.Response{StatusCode: 200, Body: body, ContentLength: 128}, false},
		{"at limit", &http.Response{StatusCode: 200, Body: body, ContentLength: bufferSize}, false},
		{"long", &http.Response{StatusCode: 200, Body: body, ContentLength: bufferSize + 1}, true},
		{"streamed", &http.Response{StatusCode: 200, Body: body, ContentLength: -1}, true},
		{"upgrade", &http.Response{StatusCode: 101, Body: body, ContentLength: -1}, false},
	}
	for _, tt := range tests {
		if got := trackBody(tt.resp); got != tt.want {
			t.Errorf("%s: trackBody = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAllowRetry(t *testing.T) {
	c := newTestCluster(t, Config{CircuitBreakers: CircuitBreakers{High: Thresholds{MaxRetries: 1}}})
	var releases []func()
	for i := range DefaultMaxRetries {
		release, ok := c.AllowRetry()
		if !ok {
			t.Fatalf("retry %d refused, want %d allowed", i, DefaultMaxRetries)
		}
		releases = append(releases, release)
	}
	if _, ok := c.AllowRetry(); ok {
		t.Fatal("retry over MaxRetries allowed")
	}
	st := c.Stats()
	if st.UpstreamRqRetryOverflow != 1 || !st.CircuitBreakers.Default.RqRetryOpen || st.CircuitBreakers.Default.RemainingRetries != 0 {
		t.Errorf("stats %+v, want 1 retry overflow and the retry breaker open", st)
	}
	// High priority has its own limit.
	hr, ok := c.AllowRetryFor(HighPriority)
	if !ok {
		t.Fatal("high-priority retry refused")
	}
	if _, ok := c.AllowRetryFor(HighPriority); ok {
		t.Fatal("second high-priority retry allowed, MaxRetries 1")
	}
	hr()
	releases[0]()
	if _, ok := c.AllowRetry(); !ok {
		t.Error("retry refused after a release")
	}
	if got := c.Stats().UpstreamRqRetryOverflow; got != 2 {
		t.Errorf("retry overflow = %d, want 2", got)
	}
	if n := testing.AllocsPerRun(100, func() {
		if release, ok := c.AllowRetryFor(HighPriority); ok {
			release()
		}
	}); n != 0 {
		t.Errorf("AllowRetryFor allocates %v times, want 0", n)
	}
}

// TestRetryBudget: the budget scales with the requests in flight.
func TestRetryBudget(t *testing.T) {
	g := newGateServer(t, false)
	c := newTestCluster(t, Config{
		Endpoints: []Endpoint{{Address: hostOf(t, g.URL)}},
		CircuitBreakers: CircuitBreakers{Default: Thresholds{
			RetryBudget: &RetryBudget{BudgetPercent: 50, MinRetryConcurrency: 1},
		}},
	})
	allowed := func() int {
		var rel []func()
		for {
			release, ok := c.AllowRetry()
			if !ok {
				break
			}
			rel = append(rel, release)
		}
		for _, r := range rel {
			r()
		}
		return len(rel)
	}
	if got := allowed(); got != 1 {
		t.Errorf("retries allowed idle = %d, want MinRetryConcurrency 1", got)
	}
	var done []<-chan error
	for range 6 {
		done = append(done, sendAsync(t, c, DefaultPriority))
		<-g.arrived
	}
	if got := allowed(); got != 3 {
		t.Errorf("retries allowed with 6 requests active = %d, want 50%% = 3", got)
	}
	g.release()
	for _, ch := range done {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
}

func TestBreakerDefaultsAndStrings(t *testing.T) {
	c := newTestCluster(t, Config{})
	st := c.Stats().CircuitBreakers
	for name, b := range map[string]BreakerStats{"default": st.Default, "high": st.High} {
		if b.RemainingPending != DefaultMaxPendingRequests || b.RemainingRq != DefaultMaxRequests || b.RemainingRetries != DefaultMaxRetries {
			t.Errorf("%s remaining = %+v, want Envoy's defaults 1024/1024/3", name, b)
		}
	}
	if st.Default.RemainingCx != DefaultMaxConnections || st.Default.CxOpen {
		t.Errorf("default remaining_cx = %d, cx_open %v; want 1024, false", st.Default.RemainingCx, st.Default.CxOpen)
	}
	for p, want := range map[RoutingPriority]string{DefaultPriority: "default", HighPriority: "high", 5: "RoutingPriority(5)"} {
		if got := p.String(); got != want {
			t.Errorf("RoutingPriority(%d).String() = %q, want %q", p, got, want)
		}
	}
	// Unknown priorities count as default.
	if b := c.breakers.of(7); b != &c.breakers.prio[DefaultPriority] {
		t.Error("priority 7 does not map to the default breaker")
	}
}

// BenchmarkAdmission measures what circuit breakers, per-endpoint
// counters and outlier detection add to a successful Send.
func BenchmarkAdmission(b *testing.B) {
	const addr = "10.0.0.1:80"
	c := newTestCluster(b, Config{Endpoints: []Endpoint{{Address: addr}}, OutlierDetection: &OutlierDetection{}})
	run := func(r *Request) {
		adm, err := c.admit(r)
		if err != nil {
			b.Fatal(err)
		}
		adm.picked(addr)
		adm.responded(200, false)
	}
	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		r := &Request{}
		for b.Loop() {
			run(r)
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := &Request{}
			for pb.Next() {
				run(r)
			}
		})
	})
}
