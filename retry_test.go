package portico

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/http2"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/lb"
	"github.com/porticoproxy/portico/route"
)

// firstBalancer always picks the first endpoint unless it is excluded, so
// a retry reaches the second endpoint only by avoiding the previous one.
type firstBalancer struct{ eps atomic.Pointer[[]lb.Endpoint] }

func (b *firstBalancer) Update(eps []lb.Endpoint) {
	c := append([]lb.Endpoint(nil), eps...)
	b.eps.Store(&c)
}

func (b *firstBalancer) Picker() lb.Picker {
	eps := *b.eps.Load()
	return lb.PickerFunc(func(info lb.PickInfo) (lb.PickResult, error) {
		for i := range eps {
			if info.Exclude == nil || eps[i].Address != info.Exclude.Address {
				return lb.PickResult{Endpoint: &eps[i]}, nil
			}
		}
		if len(eps) > 0 {
			return lb.PickResult{Endpoint: &eps[0]}, nil
		}
		return lb.PickResult{}, lb.ErrNoEndpoint
	})
}

// stickToFirst makes cluster "app" pick its first endpoint unless excluded.
func stickToFirst(c *Config) {
	c.Clusters[0].Balancer = func() lb.Balancer { return &firstBalancer{} }
}

// retryGateway starts a gateway whose catch-all route sends to cluster
// "app" with endpoints eps. rule supplies the retry policy, timeouts and
// so on; its name, match and cluster are filled in. mod, when not nil,
// edits the config last.
func retryGateway(t *testing.T, eps []string, rule route.Rule, mod func(*Config)) (*Gateway, string, *flagRecorder) {
	t.Helper()
	rule.Name, rule.Match, rule.Cluster = "default", route.Match{Prefix: "/"}, "app"
	cfg := simpleConfig(eps[0])
	cfg.Routes[0].VirtualHosts[0].Rules = []route.Rule{rule}
	cfg.Clusters[0].Endpoints = nil
	for _, ep := range eps {
		cfg.Clusters[0].Endpoints = append(cfg.Clusters[0].Endpoints, cluster.Endpoint{Address: ep})
	}
	rec := &flagRecorder{}
	cfg.Listeners[0].FilterChains[0].HTTP.Filters = []filter.Filter{rec}
	if mod != nil {
		mod(&cfg)
	}
	g, addr := startGateway(t, cfg, Options{Admin: "-"})
	return g, addr, rec
}

func retryStatsOf(t *testing.T, g *Gateway, name string) *clusterStats {
	t.Helper()
	lc := g.clusters.Load().byName[name]
	if lc == nil {
		t.Fatalf("no cluster %q", name)
	}
	return lc.stats
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type response struct {
	status int
	header http.Header
	body   string
	err    error
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

func get(t *testing.T, addr, path string) response {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// TestRetryOnConditions drives each retry_on condition with an origin
// whose first answer meets it and whose later answers are 200, and checks
// that the condition, and only it, retries.
func TestRetryOnConditions(t *testing.T) {
	grpcAnswer := func(code string) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", code)
			w.WriteHeader(http.StatusOK)
		}
	}
	status := func(code int, kv ...string) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			for i := 0; i+1 < len(kv); i += 2 {
				w.Header().Set(kv[i], kv[i+1])
			}
			w.WriteHeader(code)
			io.WriteString(w, "first answer")
		}
	}
	for _, tc := range []struct {
		name       string
		policy     route.RetryPolicy
		first      func(w http.ResponseWriter)
		wantStatus int
		wantHits   int
	}{
		{"5xx retries 500", route.RetryPolicy{RetryOn: []string{"5xx"}}, status(500), 200, 2},
		{"5xx retries 503", route.RetryPolicy{RetryOn: []string{"5xx"}}, status(503), 200, 2},
		{"5xx ignores 429", route.RetryPolicy{RetryOn: []string{"5xx"}}, status(429), 429, 1},
		{"gateway-error retries 502", route.RetryPolicy{RetryOn: []string{"gateway-error"}}, status(502), 200, 2},
		{"gateway-error retries 504", route.RetryPolicy{RetryOn: []string{"gateway-error"}}, status(504), 200, 2},
		{"gateway-error ignores 500", route.RetryPolicy{RetryOn: []string{"gateway-error"}}, status(500), 500, 1},
		{"retriable-4xx retries 409", route.RetryPolicy{RetryOn: []string{"retriable-4xx"}}, status(409), 200, 2},
		{"retriable-4xx ignores 404", route.RetryPolicy{RetryOn: []string{"retriable-4xx"}}, status(404), 404, 1},
		{"retriable-status-codes", route.RetryPolicy{RetryOn: []string{"retriable-status-codes"}, RetriableStatusCodes: []int{418}}, status(418), 200, 2},
		{"retriable-status-codes other code", route.RetryPolicy{RetryOn: []string{"retriable-status-codes"}, RetriableStatusCodes: []int{418}}, status(503), 503, 1},
		{"retriable-headers", route.RetryPolicy{RetryOn: []string{"retriable-headers"},
			RetriableHeaders: []route.HeaderMatcher{{Name: "x-upstream-retry", String: &route.StringMatcher{Exact: "yes"}}}},
			status(200, "X-Upstream-Retry", "yes"), 200, 2},
		{"retriable-headers no match", route.RetryPolicy{RetryOn: []string{"retriable-headers"},
			RetriableHeaders: []route.HeaderMatcher{{Name: "x-upstream-retry", String: &route.StringMatcher{Exact: "yes"}}}},
			status(500, "X-Upstream-Retry", "no"), 500, 1},
		{"envoy-ratelimited", route.RetryPolicy{RetryOn: []string{"envoy-ratelimited"}}, status(429, "X-Envoy-Ratelimited", "true"), 200, 2},
		{"x-envoy-ratelimited only under envoy-ratelimited", route.RetryPolicy{RetryOn: []string{"5xx"}}, status(503, "X-Envoy-Ratelimited", "true"), 503, 1},
		{"x-envoy-overloaded never", route.RetryPolicy{RetryOn: []string{"5xx"}}, status(503, "X-Envoy-Overloaded", "true"), 503, 1},
		{"grpc cancelled", route.RetryPolicy{RetryOn: []string{"cancelled"}}, grpcAnswer("1"), 200, 2},
		{"grpc deadline-exceeded", route.RetryPolicy{RetryOn: []string{"deadline-exceeded"}}, grpcAnswer("4"), 200, 2},
		{"grpc resource-exhausted", route.RetryPolicy{RetryOn: []string{"resource-exhausted"}}, grpcAnswer("8"), 200, 2},
		{"grpc internal", route.RetryPolicy{RetryOn: []string{"internal"}}, grpcAnswer("13"), 200, 2},
		{"grpc unavailable", route.RetryPolicy{RetryOn: []string{"unavailable"}}, grpcAnswer("14"), 200, 2},
		{"grpc unavailable not under internal", route.RetryPolicy{RetryOn: []string{"internal"}}, grpcAnswer("14"), 200, 1},
		{"no retries left", route.RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: -1}, status(503), 503, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					tc.first(w)
					return
				}
				io.WriteString(w, "ok")
			}))
			p := tc.policy
			g, addr, rec := retryGateway(t, []string{origin}, route.Rule{Retry: &p}, nil)
			got := get(t, addr, "/")
			if got.status != tc.wantStatus || int(hits.Load()) != tc.wantHits {
				t.Errorf("got status %d after %d upstream requests, want %d after %d", got.status, hits.Load(), tc.wantStatus, tc.wantHits)
			}
			if want := strconv.Itoa(tc.wantHits); got.header.Get("X-Envoy-Attempt-Count") != want {
				t.Errorf("got x-envoy-attempt-count %q, want %q", got.header.Get("X-Envoy-Attempt-Count"), want)
			}
			st := retryStatsOf(t, g, "app").retry
			if got, want := counterValue(st.retry), float64(tc.wantHits-1); got != want {
				t.Errorf("got upstream_rq_retry %v, want %v", got, want)
			}
			if tc.wantHits == 2 {
				if got := counterValue(st.success); got != 1 {
					t.Errorf("got upstream_rq_retry_success %v, want 1", got)
				}
			}
			if tc.name == "no retries left" {
				if got := counterValue(st.limitExceeded); got != 1 {
					t.Errorf("got upstream_rq_retry_limit_exceeded %v, want 1", got)
				}
				if f := rec.last(); f != "URX" {
					t.Errorf("got flags %q, want URX", f)
				}
			}
		})
	}
}

// TestRetryWithoutResponse covers failures before response headers: a
// refused connection, a connection reset before the headers, a hang past
// the per-try (idle) timeout. The first endpoint, which the balancer
// always picks unless told to avoid it, fails every time; every request
// must succeed through the retry to the other endpoint.
func TestRetryWithoutResponse(t *testing.T) {
	good := startOrigin(t, hello("good"))
	resetting := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	hanging := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	for _, tc := range []struct {
		name    string
		bad     string
		retryOn string
		perTry  time.Duration
		counter func(retryStats) prometheus.Counter
	}{
		{"connect-failure", closedAddr(t), "connect-failure", 0, nil},
		{"reset before headers", resetting, "reset", 0, nil},
		{"reset under 5xx", resetting, "5xx", 0, nil},
		{"per-try timeout", hanging, "5xx", 150 * time.Millisecond, func(s retryStats) prometheus.Counter { return s.perTryTimeout }},
		{"per-try idle timeout", hanging, "reset", 0, func(s retryStats) prometheus.Counter { return s.perTryIdleTimeout }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &route.RetryPolicy{RetryOn: []string{tc.retryOn}, PerTryTimeout: tc.perTry}
			if tc.name == "per-try idle timeout" {
				p.PerTryIdleTimeout = 150 * time.Millisecond
			}
			g, addr, rec := retryGateway(t, []string{tc.bad, good}, route.Rule{Retry: p}, stickToFirst)
			for i := range 3 {
				got := get(t, addr, "/")
				if got.status != 200 || got.body != "hello from good" {
					t.Fatalf("request %d: got %d %q, want 200 from the good endpoint", i, got.status, got.body)
				}
				if f := rec.last(); f != "-" {
					t.Errorf("request %d: got flags %q, want none", i, f)
				}
			}
			st := retryStatsOf(t, g, "app").retry
			if got := counterValue(st.retry); got != 3 {
				t.Errorf("got upstream_rq_retry %v, want 3", got)
			}
			if tc.counter != nil {
				if got := counterValue(tc.counter(st)); got != 3 {
					t.Errorf("got timeout counter %v, want 3", got)
				}
			}
		})
	}
	t.Run("connect failure not retried under retriable-4xx", func(t *testing.T) {
		_, addr, rec := retryGateway(t, []string{closedAddr(t)}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{"retriable-4xx"}}}, nil)
		if got := get(t, addr, "/"); got.status != 503 {
			t.Errorf("got %d, want 503", got.status)
		}
		if f := rec.last(); f != "UF" {
			t.Errorf("got flags %q, want UF", f)
		}
	})
}

// TestPerTryTimeoutExhausted: every attempt hangs; the answer is 504 (UT)
// after the attempts, and the route timeout still bounds everything.
func TestPerTryTimeoutExhausted(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	var hits atomic.Int32
	hanging := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	p := &route.RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 2, PerTryTimeout: 100 * time.Millisecond}
	g, addr, rec := retryGateway(t, []string{hanging}, route.Rule{Retry: p}, nil)
	start := time.Now()
	got := get(t, addr, "/")
	took := time.Since(start)
	if got.status != http.StatusGatewayTimeout || got.body != "upstream request timeout" {
		t.Errorf("got %d %q, want 504 upstream request timeout", got.status, got.body)
	}
	if f := rec.last(); f != "UT,URX" {
		t.Errorf("got flags %q, want UT,URX", f)
	}
	if hits.Load() != 3 {
		t.Errorf("got %d attempts, want 3", hits.Load())
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("took %v, want about 3 per-try timeouts plus backoff", took)
	}
	if got := counterValue(retryStatsOf(t, g, "app").retry.perTryTimeout); got != 3 {
		t.Errorf("got upstream_rq_per_try_timeout %v, want 3", got)
	}

	t.Run("route timeout is global", func(t *testing.T) {
		p := &route.RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 10, PerTryTimeout: 100 * time.Millisecond}
		_, addr, rec := retryGateway(t, []string{hanging}, route.Rule{Retry: p, Timeout: 350 * time.Millisecond}, nil)
		start := time.Now()
		got := get(t, addr, "/")
		took := time.Since(start)
		if got.status != http.StatusGatewayTimeout {
			t.Errorf("got %d, want 504", got.status)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("took %v, want the 350ms route timeout to end the retries", took)
		}
		if f := rec.last(); !strings.Contains(f, "UT") {
			t.Errorf("got flags %q, want UT", f)
		}
	})
}

// TestNoRetryAfterResponseHeaders: an upstream that breaks after sending
// its headers is not retried, since the response went to the chain; the
// client sees the stream aborted.
func TestNoRetryAfterResponseHeaders(t *testing.T) {
	var hits atomic.Int32
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "partial")
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}))
	_, addr, _ := retryGateway(t, []string{origin}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{"reset", "5xx"}, NumRetries: 3}}, nil)
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || rerr == nil {
		t.Errorf("got %d and body error %v, want 200 and a broken body", resp.StatusCode, rerr)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("got %d upstream requests, want 1: nothing is retried after the headers", n)
	}
}

// TestRetryHeadersAndReplay checks the 503-then-success path end to end:
// x-envoy-attempt-count on each attempt and on the response,
// x-envoy-upstream-service-time, the previous endpoint avoided, and a
// POST body replayed byte for byte, whether the first endpoint read it
// whole or not at all.
func TestRetryHeadersAndReplay(t *testing.T) {
	type seen struct {
		attempt, sum string
	}
	var mu sync.Mutex
	var log []seen
	record := func(r *http.Request) string {
		h := sha256.New()
		io.Copy(h, r.Body)
		sum := hex.EncodeToString(h.Sum(nil))
		mu.Lock()
		log = append(log, seen{r.Header.Get("X-Envoy-Attempt-Count"), sum})
		mu.Unlock()
		return sum
	}
	readsAll := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	readsLittle := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answers after 1 KiB: the transport is still sending the body
		// when the retry starts (the server discards the rest after
		// answering).
		io.CopyN(io.Discard, r.Body, 1<<10)
		mu.Lock()
		log = append(log, seen{r.Header.Get("X-Envoy-Attempt-Count"), "partly read"})
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	good := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := record(r)
		time.Sleep(30 * time.Millisecond)
		io.WriteString(w, sum)
	}))
	policy := &route.RetryPolicy{RetryOn: []string{"retriable-status-codes"}, RetriableStatusCodes: []int{503}}
	// Below net/http's 256 KiB discard limit, so that the server that
	// answers early keeps its connection.
	body := bytes.Repeat([]byte("0123456789abcdef"), 12<<10) // 192 KiB
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])
	for _, bad := range []struct{ name, addr string }{{"first endpoint reads the body", readsAll}, {"first endpoint reads 1 KiB", readsLittle}} {
		t.Run(bad.name, func(t *testing.T) {
			mu.Lock()
			log = nil
			mu.Unlock()
			g, addr, _ := retryGateway(t, []string{bad.addr, good}, route.Rule{Retry: policy}, stickToFirst)
			for i := range 2 {
				req, _ := http.NewRequest("POST", "http://"+addr+"/upload", bytes.NewReader(body))
				got := do(t, req)
				if got.status != 200 || got.body != want {
					t.Fatalf("request %d: got %d %q, want 200 with the body's hash", i, got.status, got.body)
				}
				st, err := strconv.Atoi(got.header.Get("X-Envoy-Upstream-Service-Time"))
				if err != nil || st < 30 {
					t.Errorf("got x-envoy-upstream-service-time %q, want at least the upstream's 30 ms", got.header.Get("X-Envoy-Upstream-Service-Time"))
				}
				if a := got.header.Get("X-Envoy-Attempt-Count"); a != "2" {
					t.Errorf("got x-envoy-attempt-count %q on the response, want 2", a)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			var attempts []string
			for _, s := range log {
				attempts = append(attempts, s.attempt)
				if s.sum != want && (s.attempt != "1" || s.sum != "partly read") {
					t.Errorf("attempt %s got a body with hash %s, want %s", s.attempt, s.sum, want)
				}
			}
			if got := strings.Join(attempts, ","); got != "1,2,1,2" {
				t.Errorf("got x-envoy-attempt-count %s upstream, want 1,2,1,2", got)
			}
			if got := counterValue(retryStatsOf(t, g, "app").retry.retry); got != 2 {
				t.Errorf("got upstream_rq_retry %v, want 2", got)
			}
		})
	}
	t.Run("body buffered by a filter", func(t *testing.T) {
		var hits atomic.Int32
		flaky := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sum := record(r)
			if hits.Add(1) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, sum)
		}))
		_, addr, _ := retryGateway(t, []string{flaky}, route.Rule{Retry: policy}, func(c *Config) {
			h := c.Listeners[0].FilterChains[0].HTTP
			h.Filters = append(h.Filters, bodyReader{})
		})
		req, _ := http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader(body[:10000]))
		sum := sha256.Sum256(body[:10000])
		if got := do(t, req); got.status != 200 || got.body != hex.EncodeToString(sum[:]) {
			t.Errorf("got %d %q, want 200 with the body's hash", got.status, got.body)
		}
	})
}

// bodyReader is a request filter that buffers the whole body.
type bodyReader struct{}

func (bodyReader) Name() string { return "body-reader" }

func (bodyReader) OnRequest(ctx context.Context, x *filter.Exchange) error {
	_, err := x.Body()
	return err
}

// TestRetryBodyStreams: with a retry policy, the first attempt gets the
// body as the client sends it; the gateway does not wait for all of it.
func TestRetryBodyStreams(t *testing.T) {
	firstChunk := make(chan struct{})
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Errorf("origin: %v", err)
			return
		}
		close(firstChunk)
		rest, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|%s", buf, rest)
	}))
	_, addr, _ := retryGateway(t, []string{origin}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{"5xx"}}}, nil)
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, "first")
		select {
		case <-firstChunk:
			io.WriteString(pw, "second")
			pw.Close()
		case <-time.After(5 * time.Second):
			pw.CloseWithError(fmt.Errorf("the origin never saw the first chunk"))
		}
	}()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", pr)
	if got := do(t, req); got.status != 200 || got.body != "first|second" {
		t.Errorf("got %d %q, want 200 first|second", got.status, got.body)
	}
}

// TestRetryBodyOverLimit: a body beyond the route's buffer limit cannot be
// replayed, so the retriable answer is returned as is, and counted.
func TestRetryBodyOverLimit(t *testing.T) {
	var hits atomic.Int32
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "try later")
			return
		}
		io.WriteString(w, "ok")
	}))
	g, addr, _ := retryGateway(t, []string{origin}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{"5xx"}}, BufferLimit: 1024}, nil)
	req, _ := http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader(make([]byte, 4096)))
	if got := do(t, req); got.status != 503 || got.body != "try later" {
		t.Errorf("got %d %q, want the origin's 503 try later", got.status, got.body)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("got %d upstream requests, want 1", n)
	}
	if got := counterValue(retryStatsOf(t, g, "app").retry.abandoned); got != 1 {
		t.Errorf("got retry_or_shadow_abandoned %v, want 1", got)
	}
	// A body within the limit is retried.
	req, _ = http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader(make([]byte, 1000)))
	hits.Store(0)
	if got := do(t, req); got.status != 200 || hits.Load() != 2 {
		t.Errorf("got %d after %d upstream requests, want 200 after 2", got.status, hits.Load())
	}
}

// TestRetryAfterHonoured: a retriable answer's Retry-After sets the wait.
func TestRetryAfterHonoured(t *testing.T) {
	var hits atomic.Int32
	var first, second atomic.Int64
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			first.Store(time.Now().UnixNano())
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		second.Store(time.Now().UnixNano())
		io.WriteString(w, "ok")
	}))
	g, addr, _ := retryGateway(t, []string{origin}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{"5xx"}}}, nil)
	if got := get(t, addr, "/"); got.status != 200 {
		t.Fatalf("got %d, want 200", got.status)
	}
	wait := time.Duration(second.Load() - first.Load())
	if wait < time.Second || wait > 2500*time.Millisecond {
		t.Errorf("retried after %v, want the 1s Retry-After asked for", wait)
	}
	st := retryStatsOf(t, g, "app").retry
	if got := counterValue(st.backoffRateLimited); got != 1 {
		t.Errorf("got upstream_rq_retry_backoff_ratelimited %v, want 1", got)
	}

	t.Run("not within the route timeout", func(t *testing.T) {
		var hits atomic.Int32
		origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		_, addr, _ := retryGateway(t, []string{origin}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{"5xx"}}, Timeout: 2 * time.Second}, nil)
		start := time.Now()
		if got := get(t, addr, "/"); got.status != 503 || hits.Load() != 1 {
			t.Errorf("got %d after %d requests, want the 503 at once", got.status, hits.Load())
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("took %v: a retry that cannot start within the route timeout must not be waited for", took)
		}
	})
}

// TestRetryOverflow: the retry circuit breaker refuses a retry while
// another is in flight; the refused request gets the last answer, flag UO,
// and upstream_rq_retry_overflow counts it.
func TestRetryOverflow(t *testing.T) {
	holding := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Envoy-Attempt-Count") == "1" {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "first attempt")
			return
		}
		if r.URL.Path == "/hold" {
			once.Do(func() { close(holding) })
			<-release
		}
		io.WriteString(w, "retried")
	}))
	g, addr, rec := retryGateway(t, []string{origin}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{"5xx"}}}, func(c *Config) {
		c.Clusters[0].CircuitBreakers.Default.MaxRetries = 1
	})
	held := make(chan response, 1)
	go func() { held <- get(t, addr, "/hold") }()
	select {
	case <-holding:
	case <-time.After(5 * time.Second):
		t.Fatal("the first request's retry never arrived")
	}
	got := get(t, addr, "/other")
	if got.status != 503 || got.body != "first attempt" {
		t.Errorf("got %d %q, want the first attempt's 503", got.status, got.body)
	}
	if f := rec.last(); f != "UO" {
		t.Errorf("got flags %q, want UO", f)
	}
	close(release)
	if h := <-held; h.status != 200 || h.body != "retried" {
		t.Errorf("held request: got %d %q, want 200 retried", h.status, h.body)
	}
	if got := counterValue(retryStatsOf(t, g, "app").retry.overflow); got != 1 {
		t.Errorf("got upstream_rq_retry_overflow %v, want 1", got)
	}
}

// TestUpgradeNotRetried: an upgrade request is sent once whatever the
// policy says.
func TestUpgradeNotRetried(t *testing.T) {
	var hits atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	_, addr, _ := retryGateway(t, []string{startOrigin(t, h), startOrigin(t, h)}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 3}}, nil)
	line := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	if !strings.Contains(line, " 503 ") {
		t.Errorf("got %q, want the upstream's 503", line)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("got %d upstream requests, want 1", n)
	}
}

// TestRetryRefusedStream: an HTTP/2 endpoint that refuses every stream
// (RST_STREAM REFUSED_STREAM) is retried on the other endpoint under
// refused-stream. The request has a body, so net/http's own HTTP/2
// retry (which only replays bodiless or GetBody requests) gives up and
// the router's takes over.
func TestRetryRefusedStream(t *testing.T) {
	var refused atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go refuseStreams(c, &refused)
		}
	}()
	good := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Proto, b)
	}))
	for _, tc := range []struct {
		retryOn    string
		wantStatus int
	}{{"refused-stream", 200}, {"connect-failure", 503}} {
		t.Run(tc.retryOn, func(t *testing.T) {
			refused.Store(0)
			_, addr, _ := retryGateway(t, []string{ln.Addr().String(), good}, route.Rule{Retry: &route.RetryPolicy{RetryOn: []string{tc.retryOn}}}, func(c *Config) {
				c.Clusters[0].Protocol = cluster.HTTP2
				stickToFirst(c)
			})
			req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader("payload"))
			got := do(t, req)
			if got.status != tc.wantStatus || tc.wantStatus == 200 && got.body != "HTTP/2.0 payload" {
				t.Errorf("got %d %q, want %d", got.status, got.body, tc.wantStatus)
			}
			if refused.Load() == 0 {
				t.Error("no stream was refused")
			}
		})
	}
}

// refuseStreams speaks just enough HTTP/2 on c to refuse every stream.
func refuseStreams(c net.Conn, refused *atomic.Int32) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.HeadersFrame:
			refused.Add(1)
			fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
		}
	}
}

func TestBackoffIsEnvoys(t *testing.T) {
	b := backoff{next: 25 * time.Millisecond, max: 250 * time.Millisecond}
	bounds := []time.Duration{25, 50, 100, 200, 250, 250}
	for i, bound := range bounds {
		bound *= time.Millisecond
		for range 200 {
			c := b
			if d := c.delay(); d < 0 || d >= bound {
				t.Fatalf("retry %d: got %v, want [0, %v)", i, d, bound)
			}
		}
		b.delay()
	}
}

func TestRateLimitedDelay(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{"none", http.Header{}, 0, false},
		{"retry-after seconds", http.Header{"Retry-After": {"3"}}, 3 * time.Second, true},
		{"retry-after zero", http.Header{"Retry-After": {"0"}}, 0, true},
		{"retry-after date", http.Header{"Retry-After": {now.Add(7 * time.Second).Format(http.TimeFormat)}}, 7 * time.Second, true},
		{"retry-after date past", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0, false},
		{"retry-after capped", http.Header{"Retry-After": {"100000"}}, 300 * time.Second, true},
		{"retry-after garbage", http.Header{"Retry-After": {"soon"}}, 0, false},
		{"x-ratelimit-reset seconds", http.Header{"X-Ratelimit-Reset": {"2"}}, 2 * time.Second, true},
		{"x-ratelimit-reset unix time", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(9*time.Second).Unix(), 10)}}, 9 * time.Second, true},
		{"x-ratelimit-reset past", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(-9*time.Second).Unix(), 10)}}, 0, false},
		{"retry-after first", http.Header{"Retry-After": {"1"}, "X-Ratelimit-Reset": {"5"}}, time.Second, true},
	} {
		got, ok := rateLimitedDelay(tc.header, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestReplayBuffer checks the buffer's readers directly: a retry reader
// replays what an abandoned one read, a passive reader follows the active
// one, and over the limit replays fail.
func TestReplayBuffer(t *testing.T) {
	src := strings.NewReader("hello, replay")
	b := newReplayBuffer(src, 1<<10, nil)
	first := b.reader(false)
	p := make([]byte, 5)
	if n, _ := first.Read(p); string(p[:n]) != "hello" {
		t.Fatalf("first read %q", p[:n])
	}
	shadow := b.reader(true)
	done := make(chan string)
	go func() {
		all, err := io.ReadAll(shadow)
		if err != nil {
			all = append(all, "|"+err.Error()...)
		}
		done <- string(all)
	}()
	first.abandon()
	if _, err := first.Read(p); err != errBodyAbandoned {
		t.Errorf("abandoned reader: got %v, want errBodyAbandoned", err)
	}
	retry, err := io.ReadAll(b.reader(false))
	if err != nil || string(retry) != "hello, replay" {
		t.Errorf("retry read %q, %v", retry, err)
	}
	if got := <-done; got != "hello, replay" {
		t.Errorf("shadow read %q", got)
	}

	over := newReplayBuffer(strings.NewReader("0123456789"), 4, nil)
	r := over.reader(false)
	if all, err := io.ReadAll(r); err != nil || string(all) != "0123456789" {
		t.Errorf("over the limit, the reading attempt still got %q, %v", all, err)
	}
	if over.replayable() {
		t.Error("a body over the limit reported replayable")
	}
	if _, err := io.ReadAll(over.reader(false)); err != errBodyOverLimit {
		t.Errorf("replay over the limit: got %v, want errBodyOverLimit", err)
	}

	ended := newReplayBuffer(strings.NewReader("x"), 4, nil)
	pr := ended.reader(true)
	go ended.end()
	if _, err := pr.Read(p); err != errBodyEnded {
		t.Errorf("passive reader after the exchange ended: got %v, want errBodyEnded", err)
	}
}

// TestPerTryTimeoutsAfterHeaders: once the response headers are back the
// per-try timeout no longer applies (a slow body streams on), while the
// per-try idle timeout still cuts a body that stalls, flagged UT and not
// retried.
func TestPerTryTimeoutsAfterHeaders(t *testing.T) {
	var hits atomic.Int32
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "head ")
		http.NewResponseController(w).Flush()
		if r.URL.Path == "/stall" {
			select {
			case <-stall:
			case <-r.Context().Done():
			}
			return
		}
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "tail")
	}))
	t.Run("per-try timeout", func(t *testing.T) {
		hits.Store(0)
		p := &route.RetryPolicy{RetryOn: []string{"5xx"}, PerTryTimeout: 100 * time.Millisecond}
		_, addr, _ := retryGateway(t, []string{origin}, route.Rule{Retry: p}, nil)
		if got := get(t, addr, "/slow"); got.status != 200 || got.body != "head tail" || got.err != nil {
			t.Errorf("got %d %q (%v), want the whole slow body", got.status, got.body, got.err)
		}
		if n := hits.Load(); n != 1 {
			t.Errorf("got %d upstream requests, want 1", n)
		}
	})
	t.Run("per-try idle timeout", func(t *testing.T) {
		hits.Store(0)
		p := &route.RetryPolicy{RetryOn: []string{"5xx"}, PerTryIdleTimeout: 100 * time.Millisecond}
		_, addr, rec := retryGateway(t, []string{origin}, route.Rule{Retry: p}, nil)
		start := time.Now()
		got := get(t, addr, "/stall")
		if got.status != 200 || got.err == nil || time.Since(start) > 3*time.Second {
			t.Errorf("got %d %q (body error %v) after %v, want 200 and the stream cut after 100ms", got.status, got.body, got.err, time.Since(start))
		}
		deadline := time.Now().Add(5 * time.Second)
		for rec.last() == "" && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if f := rec.last(); f != "UT" {
			t.Errorf("got flags %q, want UT", f)
		}
		if n := hits.Load(); n != 1 {
			t.Errorf("got %d upstream requests, want 1", n)
		}
	})
}
