package tracing_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/tracing"
)

func Example() {
	// Any exporter works; a SpanRecorder keeps the spans in memory.
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())

	tr, err := tracing.New(tracing.Config{TracerProvider: tp})
	if err != nil {
		fmt.Println(err)
		return
	}
	chain, err := filter.NewChain(tr)
	if err != nil {
		fmt.Println(err)
		return
	}

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("upstream got a traceparent:", r.Header.Get("Traceparent") != "")
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)

	// One client span per upstream attempt.
	transport := tr.Transport(http.DefaultTransport)
	up := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		x.Out.URL.Scheme, x.Out.URL.Host = "http", target.Host
		return transport.RoundTrip(x.Out)
	})

	w := httptest.NewRecorder()
	chain.Serve(w, filter.NewExchange(httptest.NewRequest("GET", "/", nil)), up)
	io.Copy(io.Discard, w.Result().Body)

	for _, s := range rec.Ended() {
		fmt.Println(s.SpanKind(), s.Name())
	}
	// Output:
	// upstream got a traceparent: true
	// client GET
	// server GET
}
