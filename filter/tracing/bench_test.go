package tracing

import (
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/porticoproxy/portico/filter"
)

// phases runs the filter's phases over one exchange, as a chain would.
func phases(f *Filter, r *http.Request, resp *http.Response) {
	x := filter.NewExchange(r)
	ctx := x.Out.Context()
	f.OnRequest(ctx, x)
	x.Resp = resp
	f.OnResponse(ctx, x)
	x.Status = resp.StatusCode
	f.OnDone(ctx, x)
}

func benchRequest() *http.Request {
	r := httptest.NewRequest("GET", "http://example.com/api/x", nil)
	r.Header.Set("Traceparent", "00-"+remoteTrace+"-"+remoteSpan+"-01")
	r.Header.Set("X-Request-Id", "req-1")
	return r
}

// TestAllocsNoop bounds what the filter itself costs when tracing is off:
// with a no-op provider only the exchange and context bookkeeping allocate.
func TestAllocsNoop(t *testing.T) {
	f, err := New(Config{TracerProvider: noop.NewTracerProvider()})
	if err != nil {
		t.Fatal(err)
	}
	r, resp := benchRequest(), &http.Response{StatusCode: 200}
	base := testing.AllocsPerRun(100, func() { filter.NewExchange(r) })
	got := testing.AllocsPerRun(100, func() { phases(f, r, resp) })
	// All OTel's or the Exchange's: the remote span context and its
	// context (2), the span's context (1), the start options and the
	// start timestamp (2), the Exchange's value slot (1) and the injected
	// traceparent value (1).
	const budget = 7
	if got-base > budget {
		t.Errorf("got %v allocations beyond NewExchange, want at most %d", got-base, budget)
	}
}

func BenchmarkPhases(b *testing.B) {
	for _, bc := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"noop", noop.NewTracerProvider()},
		{"sdk-sampled", sdktrace.NewTracerProvider()},
		{"sdk-unsampled", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := New(Config{TracerProvider: bc.tp})
			if err != nil {
				b.Fatal(err)
			}
			r, resp := benchRequest(), &http.Response{StatusCode: 200}
			b.ReportAllocs()
			for b.Loop() {
				phases(f, r, resp)
			}
		})
	}
}
