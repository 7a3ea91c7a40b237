package portico

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/tracing"
	"github.com/porticoproxy/portico/route"
)

// TestTracingRetriedRequest sends a request carrying a W3C trace context
// through a real gateway whose route retries once after a 503, and checks
// with the OpenTelemetry in-memory exporter: one SERVER span, child of the
// caller's span; one CLIENT span per upstream attempt, each a child of the
// server span; and each attempt's traceparent naming its own client span
// as the parent.
func TestTracingRetriedRequest(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	var n atomic.Int32
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		if n.Add(1) == 1 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr, err := tracing.New(tracing.Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	cfg := simpleConfig(origin, route.Rule{Name: "api", Match: route.Match{Prefix: "/api"}, Cluster: "app",
		Retry: &route.RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 1, BaseInterval: time.Millisecond}})
	cfg.Listeners[0].FilterChains[0].HTTP.Filters = []filter.Filter{tr}
	// The transport middleware makes a CLIENT span per upstream attempt.
	cfg.Clusters[0].Middleware = []func(http.RoundTripper) http.RoundTripper{tr.Transport}
	_, addr := startGateway(t, cfg, Options{})

	caller := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/items", nil)
	req.Header.Set("X-Request-Id", "req-42")
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), caller), propagation.HeaderCarrier(req.Header))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("got %d, want 200 after one retry", resp.StatusCode)
	}

	// The server span ends in OnDone, possibly after the client has its
	// response.
	deadline := time.Now().Add(5 * time.Second)
	for len(exp.GetSpans()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	spans := exp.GetSpans()
	var server *tracetest.SpanStub
	var clients []tracetest.SpanStub
	for i := range spans {
		switch spans[i].SpanKind {
		case trace.SpanKindServer:
			server = &spans[i]
		case trace.SpanKindClient:
			clients = append(clients, spans[i])
		}
	}
	if server == nil || len(clients) != 2 || len(spans) != 3 {
		t.Fatalf("got %d spans (%d client), want one server span and two client spans", len(spans), len(clients))
	}
	if got := server.SpanContext.TraceID(); got != caller.TraceID() {
		t.Errorf("server span trace: got %v, want the caller's %v", got, caller.TraceID())
	}
	if got := server.Parent.SpanID(); got != caller.SpanID() || !server.Parent.IsRemote() {
		t.Errorf("server span parent: got %v (remote %v), want the caller's span %v", got, server.Parent.IsRemote(), caller.SpanID())
	}
	attrs := map[string]any{}
	for _, a := range server.Attributes {
		attrs[string(a.Key)] = a.Value.AsInterface()
	}
	if attrs["http.response.status_code"] != int64(200) || attrs["http.route"] != "api" ||
		attrs["upstream.cluster"] != "app" || attrs["guid:x-request-id"] != "req-42" {
		t.Errorf("server span attributes: %v", attrs)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("upstream got %d requests, want 2", len(seen))
	}
	// Clients end in the order of the attempts.
	if clients[0].StartTime.After(clients[1].StartTime) {
		clients[0], clients[1] = clients[1], clients[0]
	}
	wantStatus := []int64{503, 200}
	for i, c := range clients {
		if c.SpanContext.TraceID() != caller.TraceID() {
			t.Errorf("attempt %d: trace %v, want %v", i, c.SpanContext.TraceID(), caller.TraceID())
		}
		if got, want := c.Parent.SpanID(), server.SpanContext.SpanID(); got != want {
			t.Errorf("attempt %d parent: got %v, want the server span %v", i, got, want)
		}
		var status int64
		for _, a := range c.Attributes {
			if a.Key == "http.response.status_code" {
				status = a.Value.AsInt64()
			}
		}
		if status != wantStatus[i] {
			t.Errorf("attempt %d: status attribute %d, want %d", i, status, wantStatus[i])
		}
		// What reached the upstream names this attempt's span as parent.
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(seen[i])))
		if sc.TraceID() != caller.TraceID() || sc.SpanID() != c.SpanContext.SpanID() {
			t.Errorf("attempt %d: upstream traceparent %q, want trace %v parent %v", i, seen[i].Get("Traceparent"), caller.TraceID(), c.SpanContext.SpanID())
		}
	}
	if clients[0].SpanContext.SpanID() == clients[1].SpanContext.SpanID() {
		t.Error("both attempts have the same span id")
	}
}
