package filter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

// eventLog records phase calls in order; safe for concurrent use.
type eventLog struct {
	mu sync.Mutex
	ev []string
}

func (l *eventLog) add(s string) {
	l.mu.Lock()
	l.ev = append(l.ev, s)
	l.mu.Unlock()
}

func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ev...)
}

// recFilter implements every phase and records its calls.
type recFilter struct {
	name    string
	log     *eventLog
	reqErr  error
	respErr error
}

func (f *recFilter) Name() string { return f.name }

func (f *recFilter) OnRequest(ctx context.Context, x *Exchange) error {
	f.log.add(f.name + ".req")
	return f.reqErr
}

func (f *recFilter) OnResponse(ctx context.Context, x *Exchange) error {
	f.log.add(f.name + ".resp")
	x.Resp.Header.Add("X-Seen", f.name)
	return f.respErr
}

func (f *recFilter) OnResponseBody(ctx context.Context, x *Exchange, c *Chunk) error {
	if c.EOS {
		f.log.add(f.name + ".eos")
	}
	return nil
}

func (f *recFilter) OnDone(ctx context.Context, x *Exchange) { f.log.add(f.name + ".done") }

var (
	_ RequestFilter      = (*recFilter)(nil)
	_ ResponseFilter     = (*recFilter)(nil)
	_ ResponseBodyFilter = (*recFilter)(nil)
	_ DoneFilter         = (*recFilter)(nil)
)

// staticUpstream answers every exchange with a fresh copy of one response.
type staticUpstream struct {
	status int
	header http.Header
	body   string
	err    error
	log    *eventLog
}

func (u *staticUpstream) RoundTrip(ctx context.Context, x *Exchange) (*http.Response, error) {
	if u.log != nil {
		u.log.add("upstream")
	}
	if u.err != nil {
		return nil, u.err
	}
	h := u.header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	return &http.Response{
		StatusCode:    u.status,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader([]byte(u.body))),
		ContentLength: int64(len(u.body)),
	}, nil
}

// proxyUpstream round-trips x.Out to a test server with its own transport.
type proxyUpstream struct {
	target *url.URL
	tr     *http.Transport
}

func newProxyUpstream(t *testing.T, rawURL string) *proxyUpstream {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &proxyUpstream{target: u, tr: tr}
}

func (p *proxyUpstream) RoundTrip(ctx context.Context, x *Exchange) (*http.Response, error) {
	out := x.Out
	out.URL.Scheme = p.target.Scheme
	out.URL.Host = p.target.Host
	out.Host = p.target.Host
	return p.tr.RoundTrip(out)
}

// startProxy starts a downstream server (HTTP/1.1, or h2 over TLS) whose
// handler runs c.Serve with up; setup may adjust each Exchange.
func startProxy(t *testing.T, c *Chain, up Upstream, h2 bool, setup func(*Exchange)) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := NewExchange(r)
		if setup != nil {
			setup(x)
		}
		c.Serve(w, x, up)
	}))
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	client := srv.Client()
	t.Cleanup(client.CloseIdleConnections)
	return srv, client
}

// serveRecover runs c.Serve and returns what it panicked with, if anything.
func serveRecover(c *Chain, w http.ResponseWriter, x *Exchange, up Upstream) (p any) {
	defer func() { p = recover() }()
	c.Serve(w, x, up)
	return nil
}

// statusErr is a StatusError fake.
type statusErr struct {
	status int
	flags  Flags
}

func (e statusErr) Error() string                      { return "status " + strconv.Itoa(e.status) }
func (e statusErr) ReplyStatus() (status int, f Flags) { return e.status, e.flags }

var errBoom = errors.New("boom")

func mustChain(t testing.TB, fs ...Filter) *Chain {
	t.Helper()
	c, err := NewChain(fs...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
