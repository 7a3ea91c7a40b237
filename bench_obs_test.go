package portico

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/accesslog"
	"github.com/porticoproxy/portico/filter/tracing"
)

// obsSetup is one observability configuration of the overhead benchmark.
type obsSetup struct {
	name       string
	routeStats bool
	accessLog  bool
	tracing    bool
	sampled    float64 // fraction of traces sampled; 0 means all
}

var obsSetups = []obsSetup{
	{name: "baseline"}, // the always-on stats only
	{name: "route_stats", routeStats: true},
	{name: "accesslog", accessLog: true},
	{name: "tracing", tracing: true},
	{name: "tracing_1pct", tracing: true, sampled: 0.01},
	{name: "all", routeStats: true, accessLog: true, tracing: true},
}

// obsHCM is benchHCM with the observability of s turned on: per-route
// stats, an access log in Envoy's default format (to io.Discard, through
// the logger's own goroutine) and tracing (a span per request and per
// upstream attempt, exported in batches to a no-op exporter; every request
// sampled unless s.sampled says otherwise).
func obsHCM(tb testing.TB, s obsSetup) (*hcm, *http.Request, func()) {
	origin := startOrigin(tb, originHeadersOnly())
	cfg := simpleConfig(origin)
	var filters []filter.Filter
	var cleanup []func()
	if s.accessLog {
		l, err := accesslog.New(accesslog.Config{Output: io.Discard})
		if err != nil {
			tb.Fatal(err)
		}
		filters = append(filters, l)
		cleanup = append(cleanup, func() {
			if d := l.Dropped(); d > 0 {
				tb.Logf("access log dropped %d entries", d)
			}
			l.Close()
		})
	}
	if s.tracing {
		sampler := sdktrace.AlwaysSample()
		if s.sampled > 0 {
			sampler = sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.sampled))
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sampler))
		tr, err := tracing.New(tracing.Config{TracerProvider: tp})
		if err != nil {
			tb.Fatal(err)
		}
		filters = append(filters, tr)
		cfg.Clusters[0].Middleware = []func(http.RoundTripper) http.RoundTripper{tr.Transport}
		cleanup = append(cleanup, func() { tp.Shutdown(context.Background()) })
	}
	cfg.Listeners[0].FilterChains[0].HTTP.Filters = filters
	g, _ := startGateway(tb, cfg, Options{Admin: "-", RouteStats: s.routeStats})
	var h *hcm
	g.mu.Lock()
	for _, hh := range g.listeners["ingress"].hcms {
		h = hh
	}
	g.mu.Unlock()
	req, err := http.NewRequest("GET", "http://gw.test/bench", nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.RemoteAddr = "127.0.0.1:40000"
	req.RequestURI = "/bench"
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("X-Request-Id", "2f1d7c1e-3b8e-4e57-9d0c-6a1f0f3c1b2a")
	return h, req, func() {
		for _, f := range cleanup {
			f()
		}
	}
}

// BenchmarkObservability measures the gateway's request path, as
// BenchmarkProxyHeadersOnly does, with each kind of observability on. The
// Envoy stats are always on; "baseline" is their cost included. See
// docs/benchmarks.md for the figures.
func BenchmarkObservability(b *testing.B) {
	for _, s := range obsSetups {
		b.Run(s.name, func(b *testing.B) {
			h, req, done := obsHCM(b, s)
			defer done()
			w := &nopWriter{h: make(http.Header)}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.status != 200 {
					b.Fatalf("status %d", w.status)
				}
			}
			// Wall time on loopback mostly measures scheduling on a shared
			// machine; the process's CPU time per request (gateway, client
			// side and in-process origin together) is steadier.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkStatsPerRequest measures the stats work of one proxied request
// in isolation: what hcm.ServeHTTP and the router do per request (the
// connection manager's counters, gauge and histogram; the cluster's), with
// route stats, sequentially and from all Ps at once.
func BenchmarkStatsPerRequest(b *testing.B) {
	m := newMetrics("bench")
	hs := m.hcm("ingress_http")
	hs.lis = m.lisHTTP("0.0.0.0:8080", "ingress_http")
	cs := m.cluster("app")
	rs := &routeStats{
		rqTotal: m.rtRqTotal.WithLabelValues("vh", "r"), rqTimeout: m.rtRqTimeout.WithLabelValues("vh", "r"),
		rqTime: m.rtRqTime.WithLabelValues("vh", "r"), rqXX: bindClasses(m.rtRqXX, "vh", "r"),
		codes: codeStats{vec: m.rtRqCode, labels: []string{"vh", "r"}},
	}
	req, _ := http.NewRequest("GET", "http://gw.test/", nil)
	x := filter.NewExchange(req)
	now := time.Now()
	x.Status, x.UpstreamStart, x.ResponseStart = 200, now, now
	one := func() {
		hs.rqTotal.Inc()
		hs.rqActive.Inc()
		hs.rqHTTP1.Inc()
		cs.rqTotal.Inc()
		cs.rqActive.Inc()
		cs.rqActive.Dec()
		cs.charge(200)
		cs.rqTime.Observe(1.5)
		hs.completed()
		hs.rqActive.Dec()
		hs.rqXX.inc(200)
		hs.lis.rqXX.inc(200)
		hs.rqTime.Observe(2.5)
	}
	b.Run("hcm+cluster", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			one()
		}
	})
	b.Run("hcm+cluster+route", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			one()
			rs.charge(x)
		}
	})
	b.Run("hcm+cluster/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one()
			}
		})
	})
}
