package tracing

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/route"
)

// harness is a gateway (a chain with the tracing filter in front of a real
// upstream, both on loopback) and the spans it recorded.
type harness struct {
	t        *testing.T
	rec      *tracetest.SpanRecorder
	f        *Filter
	gateway  *httptest.Server
	upstream *httptest.Server

	mu   sync.Mutex
	seen []http.Header // request headers the upstream received
}

// newHarness starts a gateway. Requests to /api/ match the route "api";
// the X-Test-Status request header sets the upstream's status and
// X-Test-Attempts the number of upstream attempts (a retry policy's).
func newHarness(t *testing.T, cfg Config, opts ...sdktrace.TracerProviderOption) *harness {
	t.Helper()
	h := &harness{t: t, rec: tracetest.NewSpanRecorder()}
	tp := sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(h.rec)}, opts...)...)
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	cfg.TracerProvider = tp
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.f = f

	h.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen = append(h.seen, r.Header.Clone())
		h.mu.Unlock()
		status := http.StatusOK
		if s := r.Header.Get("X-Test-Status"); s != "" {
			status, _ = strconv.Atoi(s)
		}
		w.WriteHeader(status)
		io.WriteString(w, "hello")
	}))
	t.Cleanup(h.upstream.Close)
	upURL, _ := url.Parse(h.upstream.URL)

	tbl, err := route.New(route.Config{VirtualHosts: []route.VirtualHost{{
		Name:    "default",
		Domains: []string{"*"},
		Rules: []route.Rule{
			{Name: "api", Match: route.Match{Prefix: "/api/"}, Cluster: "backend"},
			{Match: route.Match{Prefix: "/"}, Cluster: "backend"},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := filter.NewChain(f)
	if err != nil {
		t.Fatal(err)
	}
	rt := f.Transport(http.DefaultTransport)
	up := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		x.Out.URL.Scheme = "http"
		x.Out.URL.Host = upURL.Host
		x.Endpoint = upURL.Host
		attempts, _ := strconv.Atoi(x.In.Header.Get("X-Test-Attempts"))
		attempts = max(attempts, 1)
		for {
			x.Attempts++
			resp, err := rt.RoundTrip(x.Out)
			if err != nil || x.Attempts == attempts {
				return resp, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	h.gateway = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := filter.NewExchange(r)
		x.Route = tbl.Match(r)
		if x.Route != nil {
			x.Cluster = x.Route.ClusterFor(r)
		}
		chain.Serve(w, x, up)
	}))
	t.Cleanup(h.gateway.Close)
	return h
}

// do sends a request with the given headers through the gateway and returns
// the status.
func (h *harness) do(method, path string, header map[string]string) int {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.gateway.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.gateway.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// spans returns the ended spans once want of them ended: the server span
// ends in the done phase, which may run just after the client has the
// response.
func (h *harness) spans(want int) (server sdktrace.ReadOnlySpan, clients []sdktrace.ReadOnlySpan) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var ended []sdktrace.ReadOnlySpan
	for {
		ended = h.rec.Ended()
		if len(ended) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if len(ended) != want {
		h.t.Fatalf("got %d ended spans, want %d", len(ended), want)
	}
	for _, s := range ended {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			if server != nil {
				h.t.Fatal("got two server spans")
			}
			server = s
		case trace.SpanKindClient:
			clients = append(clients, s)
		default:
			h.t.Fatalf("got span kind %v", s.SpanKind())
		}
	}
	if server == nil {
		h.t.Fatal("got no server span")
	}
	return server, clients
}

func (h *harness) upstreamHeaders() []http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]http.Header(nil), h.seen...)
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := make(map[string]string)
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// parseTraceparent returns the trace and parent ids of a W3C traceparent.
func parseTraceparent(t *testing.T, v string) (trace.TraceID, trace.SpanID, trace.TraceFlags) {
	t.Helper()
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": v}))
	if !sc.IsValid() {
		t.Fatalf("traceparent %q is not valid", v)
	}
	return sc.TraceID(), sc.SpanID(), sc.TraceFlags()
}

func TestServerAndClientSpans(t *testing.T) {
	h := newHarness(t, Config{})
	if got := h.do("GET", "/api/items?q=1", map[string]string{
		"User-Agent":   "test-agent/1",
		"X-Request-Id": "req-1",
	}); got != 200 {
		t.Fatalf("got status %d, want 200", got)
	}
	server, clients := h.spans(2)
	if len(clients) != 1 {
		t.Fatalf("got %d client spans, want 1", len(clients))
	}
	client := clients[0]

	if got, want := server.Name(), "GET api"; got != want {
		t.Errorf("server span name: got %q, want %q", got, want)
	}
	if server.Parent().IsValid() {
		t.Errorf("server span has parent %v, want a root span", server.Parent())
	}
	gw, _ := url.Parse(h.gateway.URL)
	up, _ := url.Parse(h.upstream.URL)
	wantServer := map[string]string{
		"http.request.method":       "GET",
		"url.path":                  "/api/items",
		"url.scheme":                "http",
		"server.address":            "127.0.0.1",
		"server.port":               gw.Port(),
		"network.protocol.version":  "1.1",
		"client.address":            "127.0.0.1",
		"http.response.status_code": "200",
		"user_agent.original":       "test-agent/1",
		"http.route":                "api",
		"upstream.cluster":          "backend",
		"upstream.address":          up.Host,
		"envoy.response_flags":      "-",
		"guid:x-request-id":         "req-1",
	}
	if diff := cmp.Diff(wantServer, attrs(server)); diff != "" {
		t.Errorf("server attributes (-want +got):\n%s", diff)
	}
	if got := server.Status().Code; got != codes.Unset {
		t.Errorf("server status: got %v, want Unset", got)
	}

	if got, want := client.Name(), "GET"; got != want {
		t.Errorf("client span name: got %q, want %q", got, want)
	}
	if got, want := client.Parent().SpanID(), server.SpanContext().SpanID(); got != want {
		t.Errorf("client span parent: got %v, want server span %v", got, want)
	}
	wantClient := map[string]string{
		"http.request.method":       "GET",
		"url.full":                  h.upstream.URL + "/api/items",
		"server.address":            "127.0.0.1",
		"server.port":               up.Port(),
		"http.response.status_code": "200",
		"network.protocol.version":  "1.1",
	}
	if diff := cmp.Diff(wantClient, attrs(client)); diff != "" {
		t.Errorf("client attributes (-want +got):\n%s", diff)
	}

	seen := h.upstreamHeaders()
	if len(seen) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(seen))
	}
	tid, parent, flags := parseTraceparent(t, seen[0].Get("Traceparent"))
	if tid != server.SpanContext().TraceID() {
		t.Errorf("upstream trace id: got %v, want %v", tid, server.SpanContext().TraceID())
	}
	if parent != client.SpanContext().SpanID() {
		t.Errorf("upstream parent id: got %v, want client span %v", parent, client.SpanContext().SpanID())
	}
	if !flags.IsSampled() {
		t.Error("upstream traceparent is not sampled")
	}
	if !server.EndTime().After(client.EndTime()) {
		t.Errorf("server span ended at %v, before its client span at %v", server.EndTime(), client.EndTime())
	}
}

func TestSpanNameWithoutRouteName(t *testing.T) {
	h := newHarness(t, Config{})
	h.do("POST", "/other", nil)
	server, _ := h.spans(2)
	if got, want := server.Name(), "POST"; got != want {
		t.Errorf("server span name: got %q, want %q", got, want)
	}
	if _, ok := attrs(server)["http.route"]; ok {
		t.Error("got http.route for an unnamed route")
	}
}

func TestCustomSpanName(t *testing.T) {
	h := newHarness(t, Config{SpanName: func(*filter.Exchange) string { return "ingress" }})
	h.do("GET", "/api/x", nil)
	server, _ := h.spans(2)
	if got, want := server.Name(), "ingress"; got != want {
		t.Errorf("server span name: got %q, want %q", got, want)
	}
}

const (
	remoteTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	remoteSpan  = "00f067aa0ba902b7"
)

func TestIncomingContext(t *testing.T) {
	traceparent := "00-" + remoteTrace + "-" + remoteSpan + "-01"
	tests := []struct {
		name     string
		acceptB3 bool
		header   map[string]string
		honoured bool
	}{
		{"traceparent", false, map[string]string{"Traceparent": traceparent}, true},
		{"traceparent with tracestate", false, map[string]string{"Traceparent": traceparent, "Tracestate": "vendor=x"}, true},
		{"b3 multi", true, map[string]string{"X-B3-Traceid": remoteTrace, "X-B3-Spanid": remoteSpan, "X-B3-Sampled": "1"}, true},
		{"b3 single", true, map[string]string{"B3": remoteTrace + "-" + remoteSpan + "-1"}, true},
		{"b3 ignored by default", false, map[string]string{"X-B3-Traceid": remoteTrace, "X-B3-Spanid": remoteSpan, "X-B3-Sampled": "1"}, false},
		{"traceparent wins over b3", true, map[string]string{"Traceparent": traceparent, "B3": "11111111111111111111111111111111-2222222222222222-1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{AcceptB3: tt.acceptB3})
			h.do("GET", "/api/x", tt.header)
			server, clients := h.spans(2)
			sc := server.SpanContext()
			honoured := sc.TraceID().String() == remoteTrace
			if honoured != tt.honoured {
				t.Fatalf("got trace id %v, honoured %v, want %v", sc.TraceID(), honoured, tt.honoured)
			}
			if !tt.honoured {
				if server.Parent().IsValid() {
					t.Errorf("got parent %v, want a root span", server.Parent())
				}
				return
			}
			if got := server.Parent().SpanID().String(); got != remoteSpan {
				t.Errorf("server parent: got %s, want %s", got, remoteSpan)
			}
			if !server.Parent().IsRemote() {
				t.Error("server parent is not remote")
			}
			seen := h.upstreamHeaders()[0]
			tid, parent, _ := parseTraceparent(t, seen.Get("Traceparent"))
			if tid.String() != remoteTrace || parent != clients[0].SpanContext().SpanID() {
				t.Errorf("upstream traceparent %q: want trace %s, parent %v", seen.Get("Traceparent"), remoteTrace, clients[0].SpanContext().SpanID())
			}
			if ts := tt.header["Tracestate"]; ts != "" && seen.Get("Tracestate") != ts {
				t.Errorf("upstream tracestate: got %q, want %q", seen.Get("Tracestate"), ts)
			}
			// Without B3 injection, incoming B3 headers pass through untouched.
			if b := tt.header["B3"]; b != "" && seen.Get("B3") != b {
				t.Errorf("upstream b3: got %q, want %q", seen.Get("B3"), b)
			}
		})
	}
}

func TestInjectB3(t *testing.T) {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{},
		b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader)))
	h := newHarness(t, Config{Propagator: prop})
	h.do("GET", "/api/x", map[string]string{
		"X-B3-Traceid":      remoteTrace,
		"X-B3-Spanid":       remoteSpan,
		"X-B3-Parentspanid": "1111111111111111",
		"X-B3-Sampled":      "1",
		"B3":                remoteTrace + "-" + remoteSpan + "-1",
	})
	server, clients := h.spans(2)
	if got := server.SpanContext().TraceID().String(); got != remoteTrace {
		t.Errorf("server trace id: got %s, want %s (B3 extracted by the propagator)", got, remoteTrace)
	}
	seen := h.upstreamHeaders()[0]
	want := http.Header{
		"X-B3-Traceid": {remoteTrace},
		"X-B3-Spanid":  {clients[0].SpanContext().SpanID().String()},
		"X-B3-Sampled": {"1"},
	}
	got := http.Header{}
	for k, v := range seen {
		if k == "B3" || strings.HasPrefix(k, "X-B3-") {
			got[k] = v
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("upstream B3 headers (-want +got):\n%s", diff)
	}
}

func TestNotSampled(t *testing.T) {
	h := newHarness(t, Config{}, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))))
	h.do("GET", "/api/x", nil)
	seen := h.upstreamHeaders()
	if len(seen) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(seen))
	}
	_, _, flags := parseTraceparent(t, seen[0].Get("Traceparent"))
	if flags.IsSampled() {
		t.Error("upstream traceparent is sampled, want not sampled")
	}
	// The done phase may still be running; give it a moment before
	// checking that nothing was recorded.
	time.Sleep(20 * time.Millisecond)
	if n := len(h.rec.Ended()) + len(h.rec.Started()); n != 0 {
		t.Errorf("recorded %d spans, want none", n)
	}
}

func TestServerErrorStatus(t *testing.T) {
	h := newHarness(t, Config{})
	if got := h.do("GET", "/api/x", map[string]string{"X-Test-Status": "503"}); got != 503 {
		t.Fatalf("got status %d, want 503", got)
	}
	server, clients := h.spans(2)
	if got := server.Status().Code; got != codes.Error {
		t.Errorf("server status: got %v, want Error", got)
	}
	a := attrs(server)
	if a["http.response.status_code"] != "503" || a["error.type"] != "503" {
		t.Errorf("server attributes: got status %q, error.type %q; want 503, 503", a["http.response.status_code"], a["error.type"])
	}
	if got := clients[0].Status().Code; got != codes.Error {
		t.Errorf("client status: got %v, want Error", got)
	}
}

func TestClientErrorIsNotServerError(t *testing.T) {
	h := newHarness(t, Config{})
	h.do("GET", "/api/x", map[string]string{"X-Test-Status": "404"})
	server, clients := h.spans(2)
	if got := server.Status().Code; got != codes.Unset {
		t.Errorf("server status for 404: got %v, want Unset", got)
	}
	if got := clients[0].Status().Code; got != codes.Error {
		t.Errorf("client status for 404: got %v, want Error", got)
	}
}

func TestUpstreamFailure(t *testing.T) {
	h := newHarness(t, Config{})
	h.upstream.Close() // connection refused
	if got := h.do("GET", "/api/x", nil); got < 500 {
		t.Fatalf("got status %d, want 5xx", got)
	}
	server, clients := h.spans(2)
	for _, s := range []sdktrace.ReadOnlySpan{server, clients[0]} {
		if got := s.Status().Code; got != codes.Error {
			t.Errorf("%v span status: got %v, want Error", s.SpanKind(), got)
		}
		var exceptions int
		for _, e := range s.Events() {
			if e.Name == "exception" {
				exceptions++
			}
		}
		if exceptions != 1 {
			t.Errorf("%v span: got %d exception events, want 1", s.SpanKind(), exceptions)
		}
	}
}

func TestRetryAttempts(t *testing.T) {
	h := newHarness(t, Config{})
	h.do("GET", "/api/x", map[string]string{"X-Test-Attempts": "2"})
	server, clients := h.spans(3)
	if len(clients) != 2 {
		t.Fatalf("got %d client spans, want 2", len(clients))
	}
	if clients[0].SpanContext().SpanID() == clients[1].SpanContext().SpanID() {
		t.Error("both attempts have the same span id")
	}
	seen := h.upstreamHeaders()
	if len(seen) != 2 {
		t.Fatalf("upstream got %d requests, want 2", len(seen))
	}
	for i, c := range clients {
		if got, want := c.Parent().SpanID(), server.SpanContext().SpanID(); got != want {
			t.Errorf("attempt %d parent: got %v, want server span %v", i, got, want)
		}
		_, parent, _ := parseTraceparent(t, seen[i].Get("Traceparent"))
		if parent != c.SpanContext().SpanID() {
			t.Errorf("attempt %d: upstream parent %v, want client span %v", i, parent, c.SpanContext().SpanID())
		}
	}
}

func TestTransportUsesContextSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	f, err := New(Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Traceparent")
	}))
	defer srv.Close()

	ctx, parent := tp.Tracer("test").Start(context.Background(), "parent")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := (&http.Client{Transport: f.Transport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	if req.Header.Get("Traceparent") != "" {
		t.Error("Transport modified the caller's request")
	}
	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("got %d spans, want 2", len(ended))
	}
	client := ended[0]
	if client.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client parent: got %v, want %v", client.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	_, pid, _ := parseTraceparent(t, <-got)
	if pid != client.SpanContext().SpanID() {
		t.Errorf("upstream parent: got %v, want client span %v", pid, client.SpanContext().SpanID())
	}
}

func TestConcurrentExchanges(t *testing.T) {
	h := newHarness(t, Config{})
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				h.do("GET", fmt.Sprintf("/api/%d/%d", w, i), map[string]string{"X-Request-Id": fmt.Sprintf("%d-%d", w, i)})
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.rec.Ended()) < 2*workers*each && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ended := h.rec.Ended()
	if len(ended) != 2*workers*each {
		t.Fatalf("got %d spans, want %d", len(ended), 2*workers*each)
	}
	servers := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		if s.SpanKind() == trace.SpanKindServer {
			servers[s.SpanContext().SpanID()] = s
		}
	}
	children := map[trace.SpanID]int{}
	for _, s := range ended {
		if s.SpanKind() != trace.SpanKindClient {
			continue
		}
		p, ok := servers[s.Parent().SpanID()]
		if !ok || p.SpanContext().TraceID() != s.SpanContext().TraceID() {
			t.Fatalf("client span %v has no server parent in its trace", s.SpanContext().SpanID())
		}
		children[p.SpanContext().SpanID()]++
		path := attrs(p)["url.path"]
		if id := attrs(p)["guid:x-request-id"]; "/api/"+strings.ReplaceAll(id, "-", "/") != path {
			t.Errorf("server span for %s has request id %s", path, id)
		}
	}
	for id, n := range children {
		if n != 1 {
			t.Errorf("server span %v has %d client spans, want 1", id, n)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a TracerProvider: got nil error")
	}
}

func TestDefaultSpanName(t *testing.T) {
	tests := []struct{ method, want string }{
		{"GET", "GET"},
		{"DELETE", "DELETE"},
		{"PURGE", "HTTP"},
	}
	for _, tt := range tests {
		x := filter.NewExchange(httptest.NewRequest(tt.method, "/", nil))
		if got := DefaultSpanName(x); got != tt.want {
			t.Errorf("DefaultSpanName(%s): got %q, want %q", tt.method, got, tt.want)
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port int
	}{
		{"example.com", "example.com", 0},
		{"example.com:8080", "example.com", 8080},
		{"127.0.0.1:1", "127.0.0.1", 1},
		{"[::1]:443", "::1", 443},
		{"[::1]", "::1", 0},
		{"::1", "::1", 0},
		{"host:bad", "host", 0},
		{"", "", 0},
	}
	for _, tt := range tests {
		host, port := splitHostPort(tt.in)
		if host != tt.host || port != tt.port {
			t.Errorf("splitHostPort(%q): got %q, %d; want %q, %d", tt.in, host, port, tt.host, tt.port)
		}
	}
}
