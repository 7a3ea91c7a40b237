package filter

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// fixedBody is a reusable 128-byte response body.
type fixedBody struct {
	data []byte
	off  int
}

func (b *fixedBody) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

func (b *fixedBody) Close() error { return nil }

// fixedUpstream returns the same pre-built response every time.
type fixedUpstream struct {
	resp *http.Response
	body *fixedBody
}

func newFixedUpstream() *fixedUpstream {
	body := &fixedBody{data: make([]byte, 128)}
	return &fixedUpstream{body: body, resp: &http.Response{
		StatusCode:    200,
		Header:        http.Header{"Content-Type": {"application/octet-stream"}, "Content-Length": {"128"}},
		Body:          body,
		ContentLength: 128,
	}}
}

func (u *fixedUpstream) RoundTrip(context.Context, *Exchange) (*http.Response, error) {
	u.body.off = 0
	return u.resp, nil
}

// nopWriter is a minimal ResponseWriter that keeps one header map.
type nopWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) WriteHeader(code int)        { w.code = code }
func (w *nopWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func noopFilters() []Filter {
	return []Filter{
		RequestFunc{FilterName: "req", Func: func(context.Context, *Exchange) error { return nil }},
		ResponseFunc{FilterName: "resp", Func: func(context.Context, *Exchange) error { return nil }},
		DoneFunc{FilterName: "done", Func: func(context.Context, *Exchange) {}},
	}
}

func TestServeEmptyChainAllocs(t *testing.T) {
	tests := []struct {
		name    string
		filters []Filter
	}{
		{"empty", nil},
		{"three filters", noopFilters()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustChain(t, tt.filters...)
			up := newFixedUpstream()
			w := &nopWriter{h: make(http.Header)}
			x := NewExchange(httptest.NewRequest("GET", "/", nil))
			c.Serve(w, x, up) // warm the buffer pool
			got := testing.AllocsPerRun(100, func() { c.Serve(w, x, up) })
			if got != 0 {
				t.Errorf("Serve allocs = %v, want 0", got)
			}
			if w.code != 200 || x.BytesSent == 0 {
				t.Errorf("response %d, %d bytes sent; want 200 and bytes", w.code, x.BytesSent)
			}
		})
	}
}

func BenchmarkServe(b *testing.B) {
	benches := []struct {
		name    string
		filters []Filter
	}{
		{"empty", nil},
		{"three", noopFilters()},
		{"three+body", append(noopFilters(), ResponseBodyFunc{FilterName: "body", Func: func(context.Context, *Exchange, *Chunk) error { return nil }})},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			c := mustChain(b, bb.filters...)
			up := newFixedUpstream()
			w := &nopWriter{h: make(http.Header)}
			x := NewExchange(httptest.NewRequest("GET", "/", nil))
			b.ReportAllocs()
			for b.Loop() {
				c.Serve(w, x, up)
			}
		})
	}
}
