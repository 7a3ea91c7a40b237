package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// TCPKeepalive configures TCP keep-alive probes (Envoy's TcpKeepalive).
// Zero fields leave the operating system's setting, as in Envoy; the
// kernel counts in whole seconds.
type TCPKeepalive struct {
	// Probes is how many unanswered probes drop the connection (Linux
	// default 9).
	Probes uint32
	// Time is how long a connection is idle before the first probe
	// (Linux default 2 h).
	Time time.Duration
	// Interval is the time between probes (Linux default 75 s).
	Interval time.Duration
}

// HTTP2Options tunes upstream HTTP/2 connections. Zero fields keep Go's
// defaults, which differ from Envoy's: Envoy advertises 256 MiB stream and
// 1 MiB connection windows, Go 4 MiB and 1 GiB.
type HTTP2Options struct {
	// InitialStreamWindowSize is the flow-control window, in bytes, for
	// data received on one stream: how much of a response body the
	// upstream may send ahead of the proxy reading it (Envoy's
	// initial_stream_window_size). At most 2^31-1.
	InitialStreamWindowSize uint32
	// InitialConnectionWindowSize is the flow-control window for data
	// received on a connection over all its streams (Envoy's
	// initial_connection_window_size). Between 65535 and 2^31-1. Go
	// grows the connection's window by this much on top of the 65535
	// bytes every HTTP/2 connection starts with.
	InitialConnectionWindowSize uint32
}

func (o *HTTP2Options) appendErrors(errs []error) []error {
	if w := o.InitialStreamWindowSize; w > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("http2.initial_stream_window_size: %d exceeds 2^31-1", w))
	}
	if w := o.InitialConnectionWindowSize; w != 0 && (w < 65535 || w > math.MaxInt32) {
		errs = append(errs, fmt.Errorf("http2.initial_connection_window_size: %d not in [65535, 2^31-1]", w))
	}
	return errs
}

// transportConfig returns the http.Transport HTTP/2 settings for o, or
// nil for Go's defaults.
func (o *HTTP2Options) transportConfig() *http.HTTP2Config {
	if *o == (HTTP2Options{}) {
		return nil
	}
	return &http.HTTP2Config{
		MaxReceiveBufferPerStream:     int(o.InitialStreamWindowSize),
		MaxReceiveBufferPerConnection: int(o.InitialConnectionWindowSize),
	}
}

// dialerConfig returns the net.Dialer keep-alive settings for k; nil k
// keeps Go's default.
func (k *TCPKeepalive) dialerConfig() net.KeepAliveConfig {
	if k == nil {
		return net.KeepAliveConfig{}
	}
	kc := net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	if k.Time > 0 {
		kc.Idle = k.Time
	}
	if k.Interval > 0 {
		kc.Interval = k.Interval
	}
	if k.Probes > 0 {
		kc.Count = int(k.Probes)
	}
	return kc
}

// appendTransportErrors checks the connection and transport fields.
func (c *Config) appendTransportErrors(errs []error) []error {
	if c.MaxConnectionDuration < 0 {
		errs = append(errs, fmt.Errorf("max_connection_duration: negative %v", c.MaxConnectionDuration))
	}
	if k := c.TCPKeepalive; k != nil {
		if k.Time < 0 {
			errs = append(errs, fmt.Errorf("tcp_keepalive.keepalive_time: negative %v", k.Time))
		}
		if k.Interval < 0 {
			errs = append(errs, fmt.Errorf("tcp_keepalive.keepalive_interval: negative %v", k.Interval))
		}
	}
	errs = c.HTTP2.appendErrors(errs)
	for i, mw := range c.Middleware {
		if mw == nil {
			errs = append(errs, fmt.Errorf("middleware[%d]: must not be nil", i))
		}
	}
	return c.TLS.appendErrors(errs)
}

// ConnStats is a snapshot of a cluster's upstream connection counters,
// named after Envoy's cluster statistics. Total = Active + Destroy.
type ConnStats struct {
	// Total counts connections opened or attempted
	// (upstream_cx_total).
	Total uint64
	// Active is the number of connections open or being opened
	// (upstream_cx_active).
	Active int64
	// ConnectFail counts connections that failed to connect, TLS
	// handshake and connect timeout included (upstream_cx_connect_fail).
	ConnectFail uint64
	// Overflow counts connections refused by the max-connections circuit
	// breaker (upstream_cx_overflow).
	Overflow uint64
	// MaxRequests counts connections closed because they reached
	// MaxRequestsPerConnection (upstream_cx_max_requests).
	MaxRequests uint64
	// MaxDurationReached counts connections retired because they reached
	// MaxConnectionDuration (upstream_cx_max_duration_reached).
	MaxDurationReached uint64
	// Destroy counts connections closed, or that failed to connect
	// (upstream_cx_destroy).
	Destroy uint64
	// RxBytes and TxBytes count bytes read from and written to the
	// connections, TLS records included (upstream_cx_rx_bytes_total,
	// upstream_cx_tx_bytes_total).
	RxBytes, TxBytes uint64
}

// connStats holds a cluster's connection counters, updated lock-free.
type connStats struct {
	total, connectFail, overflow, maxRequests, maxDuration, destroy atomic.Uint64
	active                                                          atomic.Int64
	rxBytes, txBytes                                                atomic.Uint64
}

// ConnStats returns a snapshot of the cluster's connection counters. The
// counters are read one by one, so a snapshot taken while connections
// open or close may be off by those.
func (c *Cluster) ConnStats() ConnStats {
	s := &c.xport.stats
	return ConnStats{
		Total:              s.total.Load(),
		Active:             s.active.Load(),
		ConnectFail:        s.connectFail.Load(),
		Overflow:           s.overflow.Load(),
		MaxRequests:        s.maxRequests.Load(),
		MaxDurationReached: s.maxDuration.Load(),
		Destroy:            s.destroy.Load(),
		RxBytes:            s.rxBytes.Load(),
		TxBytes:            s.txBytes.Load(),
	}
}

// transportState is a cluster's connection management: limits, counters
// and the middleware chain. Fixed after New except the counters.
type transportState struct {
	stats       connStats
	maxConns    int64
	maxRequests uint32
	maxDuration time.Duration
	// track makes Transport-path requests traced (httptrace.GotConn) to
	// count requests per connection and retire old connections.
	track bool
	// chain is the middleware chain around innerRoundTripper; nil
	// without middleware.
	chain http.RoundTripper
	// wrapped routes Send through sendWrapped: middleware or per
	// connection limits are configured.
	wrapped bool
}

// initTransport sets the connection limits and builds the middleware
// chain.
func (c *Cluster) initTransport() error {
	x := &c.xport
	x.maxConns = int64(c.cfg.CircuitBreakers.Default.MaxConnections)
	x.maxRequests = c.cfg.MaxRequestsPerConnection
	x.maxDuration = c.cfg.MaxConnectionDuration
	x.track = x.maxRequests > 0 || x.maxDuration > 0
	if n := len(c.cfg.Middleware); n > 0 {
		var rt http.RoundTripper = innerRoundTripper{c}
		for i := n - 1; i >= 0; i-- {
			if rt = c.cfg.Middleware[i](rt); rt == nil {
				return fmt.Errorf("middleware[%d]: returned a nil RoundTripper", i)
			}
		}
		x.chain = rt
	}
	x.wrapped = x.track || x.chain != nil
	return nil
}

// defaultDialer returns the dialer used when Config.Dialer is nil.
func defaultDialer(k *TCPKeepalive) func(ctx context.Context, network, address string) (net.Conn, error) {
	d := &net.Dialer{KeepAliveConfig: k.dialerConfig()}
	return d.DialContext
}

// errConnOverflow is the error of a connection refused by the
// max-connections circuit breaker.
var errConnOverflow = &kindError{kind: Overflow, err: errors.New("max connections circuit breaker open")}

// kindError carries the ErrorKind a failure must be classified as.
type kindError struct {
	kind ErrorKind
	err  error
}

func (e *kindError) Error() string           { return e.err.Error() }
func (e *kindError) Unwrap() error           { return e.err }
func (e *kindError) upstreamKind() ErrorKind { return e.kind }

// upstreamKind lets a middleware's *UpstreamError keep its kind.
func (e *UpstreamError) upstreamKind() ErrorKind { return e.Kind }

// kindOf returns the kind an error in err's chain asks for.
func kindOf(err error) (ErrorKind, bool) {
	var k interface{ upstreamKind() ErrorKind }
	if errors.As(err, &k) {
		return k.upstreamKind(), true
	}
	return 0, false
}

// dialConn opens a raw connection to addr for either pool: it enforces
// the max-connections circuit breaker, counts the connection and wraps
// it so that closing it is counted too. A DynamicForwardProxy cluster
// first resolves addr's host, which, as in Envoy, is not a connection
// yet; then the addresses are tried in order. Errors are raw; the
// callers mark them as connect failures.
func (c *Cluster) dialConn(ctx context.Context, network, addr string) (net.Conn, error) {
	targets := []string{addr}
	if d := c.disc.dfp; d != nil {
		var err error
		if targets, err = d.resolve(ctx, addr); err != nil {
			return nil, err
		}
	}
	x := &c.xport
	s := &x.stats
	if s.active.Add(1) > x.maxConns {
		s.active.Add(-1)
		s.overflow.Add(1)
		return nil, errConnOverflow
	}
	s.total.Add(1)
	var (
		conn net.Conn
		err  error
	)
	for _, target := range targets {
		if conn, err = c.dialer(ctx, network, target); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		s.active.Add(-1)
		s.destroy.Add(1)
		s.connectFail.Add(1)
		return nil, err
	}
	return &upConn{Conn: conn, x: x, created: time.Now()}, nil
}

// upConn is an upstream connection of either pool. It keeps the
// per-connection counts for the limits and releases its
// max-connections slot once, when closed.
type upConn struct {
	net.Conn
	x        *transportState
	created  time.Time
	requests atomic.Uint32
	closed   atomic.Bool
	retired  atomic.Bool // counted in max_requests or max_duration

	// Transport path only, with MaxConnectionDuration.
	inUse    atomic.Int32 // requests in flight
	armed    atomic.Bool  // the expiry timer is set
	upgraded atomic.Bool  // taken over by a 101 response: never expired
}

func (u *upConn) Close() error {
	if u.closed.CompareAndSwap(false, true) {
		u.x.stats.active.Add(-1)
		u.x.stats.destroy.Add(1)
	}
	return u.Conn.Close()
}

func (u *upConn) Read(p []byte) (int, error) {
	n, err := u.Conn.Read(p)
	if n > 0 {
		u.x.stats.rxBytes.Add(uint64(n))
	}
	return n, err
}

func (u *upConn) Write(p []byte) (int, error) {
	n, err := u.Conn.Write(p)
	if n > 0 {
		u.x.stats.txBytes.Add(uint64(n))
	}
	return n, err
}

// CloseWrite half-closes the connection when the underlying one can, for
// upgraded (WebSocket) streams.
func (u *upConn) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("CloseWrite: %w", http.ErrNotSupported)
}

// ReadFrom keeps the underlying connection's sendfile/splice path for
// request bodies.
func (u *upConn) ReadFrom(r io.Reader) (n int64, err error) {
	if rf, ok := u.Conn.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{u.Conn}, r)
	}
	u.x.stats.txBytes.Add(uint64(n))
	return n, err
}

// WriteTo keeps the underlying connection's splice path for upgraded
// streams.
func (u *upConn) WriteTo(w io.Writer) (n int64, err error) {
	if wt, ok := u.Conn.(io.WriterTo); ok {
		n, err = wt.WriteTo(w)
	} else {
		n, err = io.Copy(w, struct{ io.Reader }{u.Conn})
	}
	u.x.stats.rxBytes.Add(uint64(n))
	return n, err
}

// retire counts u in the stat of the limit that retired it, once.
func (u *upConn) retire(c *atomic.Uint64) {
	if u.retired.CompareAndSwap(false, true) {
		c.Add(1)
	}
}

// expired reports whether u has reached MaxConnectionDuration.
func (u *upConn) expired() bool {
	return u.x.maxDuration > 0 && time.Since(u.created) >= u.x.maxDuration
}

// reusable counts a finished exchange on the synchronous path and
// reports whether the connection may serve another one.
func (pc *h1Conn) reusable() bool {
	u, ok := pc.conn.(*upConn)
	if !ok || !u.x.track {
		return true
	}
	if m := u.x.maxRequests; m > 0 && u.requests.Add(1) >= m {
		u.retire(&u.x.stats.maxRequests)
		return false
	}
	if u.expired() {
		u.retire(&u.x.stats.maxDuration)
		return false
	}
	return true
}

// expired reports whether a pooled connection has outlived
// MaxConnectionDuration; it is then not to be used again.
func (pc *h1Conn) expired() bool {
	u, ok := pc.conn.(*upConn)
	if !ok || !u.expired() {
		return false
	}
	u.retire(&u.x.stats.maxDuration)
	return true
}

// innerRoundTripper is the innermost round trip under the middleware
// chain: the synchronous HTTP/1.1 pool for the requests it takes, the
// Transport for the rest. The request's URL points at the endpoint.
type innerRoundTripper struct{ c *Cluster }

func (rt innerRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	c := rt.c
	if c.h1 != nil && h1Eligible(req) {
		return c.h1.roundTrip(req.Context(), req, req.URL.Host, time.Time{})
	}
	return c.transportRoundTrip(req)
}

var (
	_ http.RoundTripper = innerRoundTripper{}
	_ http.RoundTripper = transportRoundTripper{}
)

// transportRoundTripper is the Transport path with connection tracking.
type transportRoundTripper struct{ c *Cluster }

func (rt transportRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return rt.c.transportRoundTrip(req)
}

// sendWrapped is Send's round trip when middleware or connection limits
// are configured. deadline is Request.Deadline, zero for none.
func (c *Cluster) sendWrapped(req *http.Request, deadline time.Time) (*http.Response, error) {
	x := &c.xport
	if x.chain == nil {
		if c.h1 != nil && h1Eligible(req) {
			return c.h1.roundTrip(req.Context(), req, req.URL.Host, deadline)
		}
		if deadline.IsZero() {
			return c.transportRoundTrip(req)
		}
		return roundTripUntil(transportRoundTripper{c}, req, deadline)
	}
	if deadline.IsZero() {
		return x.chain.RoundTrip(req)
	}
	return roundTripUntil(x.chain, req, deadline)
}

// roundTripUntil runs rt under deadline, whose context ends with the
// response body.
func roundTripUntil(rt http.RoundTripper, req *http.Request, deadline time.Time) (*http.Response, error) {
	ctx, cancel := context.WithDeadline(req.Context(), deadline)
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil && req.Context().Err() == nil {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		cancel()
		return nil, err
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		cancel()
		return resp, nil
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// transportRoundTrip sends req through the Transport. With connection
// limits it traces which connection the request gets: the request that
// reaches MaxRequestsPerConnection, or that gets a connection past
// MaxConnectionDuration, is sent as the connection's last (Close set, so
// HTTP/1.1 closes after it and HTTP/2 takes no new stream on it).
func (c *Cluster) transportRoundTrip(req *http.Request) (*http.Response, error) {
	if !c.xport.track {
		return c.transport.RoundTrip(req)
	}
	t := &connTrace{c: c}
	r := req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: t.gotConn}))
	if r.Body != nil && r.Body != http.NoBody {
		// The Transport sends a copy of a request with a body, made before
		// the connection is known: only a header it shares carries the
		// close decision there.
		r.Header = r.Header.Clone()
		if r.Header == nil {
			r.Header = make(http.Header)
		}
		t.header = true
	}
	t.req = r
	resp, err := c.transport.RoundTrip(r)
	if err != nil {
		t.done()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if t.u != nil {
			t.u.upgraded.Store(true)
		}
		t.done()
		return resp, nil
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		t.done()
		return resp, nil
	}
	resp.Body = &trackedBody{ReadCloser: resp.Body, t: t}
	return resp, nil
}

// connTrace follows one Transport-path request's connection.
type connTrace struct {
	c      *Cluster
	req    *http.Request
	header bool // mark the last request in its header too
	u      *upConn
	fired  atomic.Bool
}

// gotConn counts the request on its connection and marks it the last one
// when a limit says so. The Transport calls it before sending, on the
// RoundTrip goroutine, possibly again when it retries on another
// connection.
func (t *connTrace) gotConn(info httptrace.GotConnInfo) {
	u := asUpConn(info.Conn)
	if u == nil {
		return
	}
	if t.u != nil {
		t.u.inUse.Add(-1)
	}
	t.u = u
	x := u.x
	u.inUse.Add(1)
	last := false
	if m := x.maxRequests; m > 0 && u.requests.Add(1) >= m {
		u.retire(&x.stats.maxRequests)
		last = true
	}
	if x.maxDuration > 0 {
		if u.expired() {
			u.retire(&x.stats.maxDuration)
			last = true
		} else if u.armed.CompareAndSwap(false, true) {
			time.AfterFunc(x.maxDuration-time.Since(u.created), u.expire)
		}
	}
	if last {
		t.req.Close = true
		if t.header {
			t.req.Header.Add("Connection", "close")
		}
	}
}

// done ends the request's use of its connection, once.
func (t *connTrace) done() {
	if t.u != nil && t.fired.CompareAndSwap(false, true) {
		t.u.inUse.Add(-1)
	}
}

// expireRecheck is how often an expired connection that was busy is
// checked again for idleness.
const expireRecheck = time.Second

// expire runs when a Transport connection reaches MaxConnectionDuration:
// it closes the connection if idle, else looks again shortly. Requests
// that get it meanwhile are sent as its last.
func (u *upConn) expire() {
	if u.closed.Load() || u.upgraded.Load() {
		return
	}
	if u.inUse.Load() > 0 {
		time.AfterFunc(expireRecheck, u.expire)
		return
	}
	u.retire(&u.x.stats.maxDuration)
	u.Close()
}

// asUpConn returns the upConn under a Transport connection.
func asUpConn(conn net.Conn) *upConn {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	u, _ := conn.(*upConn)
	return u
}

// trackedBody ends a traced request when its body ends.
type trackedBody struct {
	io.ReadCloser
	t *connTrace
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.t.done()
	}
	return n, err
}

func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	b.t.done()
	return err
}
