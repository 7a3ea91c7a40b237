package portico

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

var body128 = bytes.Repeat([]byte("x"), 128)

func originHeadersOnly() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body128)
	})
}

// nopWriter is a minimal ResponseWriter that discards everything, so that
// the hcm's own cost can be measured without a downstream connection.
type nopWriter struct {
	h      http.Header
	status int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) WriteHeader(code int)        { w.status = code }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush()                      {}

func benchHCM(t testing.TB) (*hcm, *http.Request) {
	origin := startOrigin(t, originHeadersOnly())
	g, _ := startGateway(t, simpleConfig(origin), Options{Admin: "-"})
	var h *hcm
	g.mu.Lock()
	for _, hh := range g.listeners["ingress"].hcms {
		h = hh
	}
	g.mu.Unlock()
	req, err := http.NewRequest("GET", "http://gw.test/bench", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.RemoteAddr = "127.0.0.1:40000"
	req.RequestURI = "/bench"
	return h, req
}

// BenchmarkProxyHeadersOnly measures the gateway's request path (route
// match, chain, router, cluster, upstream round trip over loopback) for a
// GET with a 128-byte answer, without the downstream connection.
func BenchmarkProxyHeadersOnly(b *testing.B) {
	h, req := benchHCM(b)
	w := &nopWriter{h: make(http.Header)}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkProxyEndToEnd measures a whole proxied request over loopback:
// client → gateway listener → upstream, HTTP/1.1 keep-alive.
func BenchmarkProxyEndToEnd(b *testing.B) {
	origin := startOrigin(b, originHeadersOnly())
	_, addr := startGateway(b, simpleConfig(origin), Options{Admin: "-"})
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + addr + "/bench"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// headersOnlyAllocBudget pins the allocations of one headers-only proxied
// request as counted by TestHeadersOnlyAllocations: everything in the
// process for one request — the gateway's path, net/http's client side
// towards the upstream, and the in-process upstream server itself. A
// change that adds allocations to the request path fails the test; lower
// the number when the path gets leaner.
const headersOnlyAllocBudget = 34

func TestHeadersOnlyAllocations(t *testing.T) {
	h, req := benchHCM(t)
	w := &nopWriter{h: make(http.Header)}
	for range 50 { // warm the connection pool
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	allocs := testing.AllocsPerRun(500, func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	})
	t.Logf("%.1f allocations per headers-only request (gateway + client transport + in-process upstream)", allocs)
	if w.status != 200 {
		t.Fatalf("status %d", w.status)
	}
	if allocs > headersOnlyAllocBudget {
		t.Errorf("got %.1f allocations per request, budget %d: something on the request path started allocating", allocs, headersOnlyAllocBudget)
	}
}
