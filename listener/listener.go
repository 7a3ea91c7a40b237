package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Serve and Update once the listener has been shut
// down or closed.
var ErrClosed = errors.New("listener: closed")

// Observer is told when a connection is handed to a filter chain and when it
// closes, so the gateway can keep per-chain stats (Envoy
// http.<prefix>.downstream_cx_total / downstream_cx_active /
// downstream_cx_length_ms). Each connection yields exactly one OnConnOpen
// and, once it is closed (by the server, by the peer, or by whoever
// hijacked it), exactly one OnConnClose with the same chain name and the
// time the connection was open since it was handed to the chain. Calls
// come from many goroutines at once and must not block.
type Observer interface {
	OnConnOpen(chain string)
	OnConnClose(chain string, open time.Duration)
}

// ConnCounters are counters a listener keeps, with atomic adds, for the
// connections of the filter chains a CountingObserver attaches them to,
// and for the requests on them: Envoy's
// http.<stat_prefix>.downstream_cx_http1_total, _http1_active,
// _http2_total, _http2_active, downstream_cx_rx_bytes_total,
// downstream_cx_tx_bytes_total and downstream_rq_timeout. Chains of one or
// several listeners may share one ConnCounters. They may be read at any
// time.
type ConnCounters struct {
	// RxBytes counts bytes read from the connections, TxBytes bytes
	// written to them: bytes on the wire, TLS records included.
	RxBytes atomic.Uint64
	_       [56]byte // RxBytes and TxBytes are updated by different goroutines
	TxBytes atomic.Uint64
	_       [56]byte
	// HTTP1Total and HTTP2Total count connections by protocol, known at
	// the TLS handshake (ALPN) or from the first bytes of a plaintext
	// connection (the h2c preface); a connection closed before that is
	// in neither. HTTP1Active and HTTP2Active are those still open.
	HTTP1Total, HTTP2Total   atomic.Uint64
	HTTP1Active, HTTP2Active atomic.Int64
	// RequestTimeouts counts requests that HTTPConfig.RequestTimeout
	// ended before they were received whole (downstream_rq_timeout).
	RequestTimeouts atomic.Uint64
}

// CountingObserver is an Observer that also has the listener keep
// ConnCounters for the connections of its chains.
type CountingObserver interface {
	Observer
	// ConnCounters returns the counters of the connections of the named
	// chain, or nil for none. It is called when New or Update builds the
	// chain.
	ConnCounters(chain string) *ConnCounters
}

// Stats are a listener's connection counters, named after Envoy's
// listener.<address>.* stats. Read them with Listener.Stats.
type Stats struct {
	// DownstreamCxTotal counts accepted connections (downstream_cx_total).
	DownstreamCxTotal uint64
	// DownstreamCxActive is the number of open connections
	// (downstream_cx_active).
	DownstreamCxActive int64
	// DownstreamCxDestroy counts closed connections, whatever closed them
	// (downstream_cx_destroy).
	DownstreamCxDestroy uint64
	// NoFilterChainMatch counts connections closed because no chain
	// matched and there is no default chain (no_filter_chain_match).
	NoFilterChainMatch uint64
	// ListenerFilterErrors counts connections closed by the TLS inspector:
	// timeout or peer gone before a first record
	// (downstream_listener_filter_error).
	ListenerFilterErrors uint64
	// TLSHandshakeErrors counts failed downstream TLS handshakes
	// (ssl.connection_error).
	TLSHandshakeErrors uint64
}

// Listener accepts connections on one address and hands each to the filter
// chain that matches it. Create it with New, run it with Serve, stop it with
// Shutdown or Close. All methods are safe for concurrent use; the request
// path reads the chain table through an atomic pointer and never takes a
// lock that Update holds.
type Listener struct {
	addr        string // as configured
	ln          net.Listener
	tab         atomic.Pointer[table]
	sniffConfig *tls.Config
	ctx         context.Context // cancelled by Shutdown and Close
	cancel      context.CancelFunc

	updateMu sync.Mutex // serializes Update
	mu       sync.Mutex // guards the fields below
	closed   bool
	serving  bool
	live     map[*chain]struct{} // chains whose server goroutine runs

	acceptWG sync.WaitGroup // the accept loop in Serve
	connWG   sync.WaitGroup // per-connection inspector goroutines
	srvWG    sync.WaitGroup // one http.Server.Serve goroutine per chain
	h1       h1Conns        // connections on the HTTP/1.1 fast path
	tcp      tcpConns       // connections of TCP proxy chains

	cxTotal    atomic.Uint64
	cxActive   atomic.Int64
	cxDestroy  atomic.Uint64
	noChain    atomic.Uint64
	filterErrs atomic.Uint64
	tlsErrs    atomic.Uint64
}

// table is an immutable snapshot of a listener's chains.
type table struct {
	name             string
	chains           []*chain
	def              *chain
	all              []*chain             // chains and def
	inspect          bool                 // some chain needs the TLS inspector
	origDst          bool                 // the original_dst listener filter
	proxy            *ProxyProtocolConfig // the proxy_protocol listener filter
	filtersTimeout   time.Duration
	handshakeTimeout time.Duration
	drain            time.Duration
}

// chain is one running filter chain: its match, TLS and http.Server.
type chain struct {
	name     string
	match    ChainMatch
	tls      *tls.Config
	srv      *http.Server // nil for a TCP proxy chain
	h1       *h1Server    // nil: plaintext HTTP/1 goes to srv too
	tcp      *tcpProxy    // non-nil for a TCP proxy chain
	ln       *chanListener
	observer Observer
	ctr      *ConnCounters // from a CountingObserver; nil: none kept
	timed    bool          // the HCM has a request timeout
	active   atomic.Int64  // open connections
	retired  atomic.Bool   // replaced by Update; stop when active hits 0
}

// New validates cfg, loads its certificates and binds its address, so that
// Addr works at once and bind errors surface here. The listener accepts
// nothing until Serve is called; the caller must eventually call Shutdown
// or Close to release the socket.
func New(cfg Config) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	l := &Listener{
		addr:        cfg.Address,
		ln:          ln,
		sniffConfig: &tls.Config{GetConfigForClient: captureHello},
		live:        make(map[*chain]struct{}),
	}
	t, err := l.build(&cfg)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.mu.Lock()
	l.start(t)
	l.mu.Unlock()
	l.tab.Store(t)
	return l, nil
}

// build turns a validated config into a table of chains whose servers are
// not yet started.
func (l *Listener) build(cfg *Config) (*table, error) {
	t := &table{
		name:             cfg.Name,
		filtersTimeout:   orDefault(cfg.ListenerFiltersTimeout, DefaultListenerFiltersTimeout),
		handshakeTimeout: orDefault(cfg.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout),
		origDst:          cfg.OriginalDst,
	}
	if cfg.ProxyProtocol != nil {
		pp := *cfg.ProxyProtocol
		t.proxy = &pp
	}
	errLog := log.New(io.Discard, "", 0)
	if cfg.Logger != nil {
		errLog = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	}
	for i := range cfg.FilterChains {
		path := "filter_chains[" + strconv.Itoa(i) + "]"
		ch, err := l.buildChain(&cfg.FilterChains[i], path, cfg.Observer, errLog, cfg.Logger)
		if err != nil {
			return nil, err
		}
		t.chains = append(t.chains, ch)
	}
	if cfg.DefaultFilterChain != nil {
		ch, err := l.buildChain(cfg.DefaultFilterChain, "default_filter_chain", cfg.Observer, errLog, cfg.Logger)
		if err != nil {
			return nil, err
		}
		t.def = ch
	}
	t.all = append(t.all, t.chains...)
	if t.def != nil {
		t.all = append(t.all, t.def)
	}
	for _, ch := range t.all {
		m := &ch.match
		if ch.tls != nil || len(m.ServerNames) > 0 || len(m.ApplicationProtocols) > 0 || m.TransportProtocol != "" {
			t.inspect = true
		}
		t.drain = max(t.drain, ch.srvDrain())
		if ch.srv != nil && (t.listenerFilters() || ch.timed) {
			ch.srv.ConnContext = connContext
		}
	}
	return t, nil
}

// listenerFilters reports whether connections go through original_dst or
// proxy_protocol before chain selection.
func (t *table) listenerFilters() bool { return t.origDst || t.proxy != nil }

func (ch *chain) srvDrain() time.Duration {
	if ch.srv == nil {
		return DefaultDrainTimeout
	}
	if d, ok := ch.srv.Handler.(*hcm); ok {
		return d.drain
	}
	return DefaultDrainTimeout
}

func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func (l *Listener) buildChain(fc *FilterChain, path string, obs Observer, errLog *log.Logger, logger *slog.Logger) (*chain, error) {
	ch := &chain{
		name:     chainName(fc, path),
		match:    cloneMatch(fc.Match),
		ln:       newChanListener(l.ln.Addr()),
		observer: obs,
	}
	if co, ok := obs.(CountingObserver); ok {
		ch.ctr = co.ConnCounters(ch.name)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	if fc.TLS != nil {
		c, err := buildTLS(fc.TLS, path+".tls")
		if err != nil {
			return nil, err
		}
		ch.tls = c
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	if fc.TCP != nil {
		ch.tcp = newTCPProxy(fc.TCP)
		return ch, nil
	}
	hc := fc.HTTP
	h := newHCM(hc)
	h.drain = orDefault(hc.DrainTimeout, DefaultDrainTimeout)
	h.ctr = ch.ctr
	ch.timed = hc.RequestTimeout > 0
	idle := orDefault(hc.IdleTimeout, DefaultIdleTimeout)
	if idle < 0 {
		idle = 0
	}
	ch.srv = &http.Server{
		Handler: h,
		// The request timeout bounds the headers too. Not ReadTimeout: the
		// HCM times the body itself (reqtimeout.go), so that the response
		// starting disarms it and a late body gets a 408.
		ReadHeaderTimeout: h.headerTimeout,
		IdleTimeout:       idle,
		// net/http reads up to MaxHeaderBytes+4096 raw bytes on HTTP/1.1
		// and advertises MaxHeaderBytes+320 as HTTP/2's
		// SETTINGS_MAX_HEADER_LIST_SIZE; both answer 431 beyond. The HCM
		// then enforces the configured limit exactly on names and values.
		MaxHeaderBytes: h.maxHeaderBytes,
		Protocols:      &protos,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          int(hc.MaxConcurrentStreams),
			MaxReceiveBufferPerStream:     min(hc.HTTP2StreamWindow, maxHTTP2Window),
			MaxReceiveBufferPerConnection: min(hc.HTTP2ConnectionWindow, maxHTTP2Window),
		},
		ErrorLog: errLog,
	}
	if ch.tls == nil && !hc.StdlibHTTP1 && !testStdlibHTTP1 {
		ch.h1 = &h1Server{
			handler:        h,
			maxHeaderBytes: int64(h.maxHeaderBytes) + 4096, // as net/http
			idle:           idle,
			headersTimeout: hc.RequestHeadersTimeout,
			requestTimeout: hc.RequestTimeout,
			logger:         logger,
		}
	}
	return ch, nil
}

// maxHTTP2Window is the largest flow-control window net/http accepts.
const maxHTTP2Window = 4<<20 - 1

func cloneMatch(m ChainMatch) ChainMatch {
	m.DestinationPorts = append([]uint16(nil), m.DestinationPorts...)
	m.ServerNames = append([]string(nil), m.ServerNames...)
	m.ApplicationProtocols = append([]string(nil), m.ApplicationProtocols...)
	m.SourcePrefixes = append(m.SourcePrefixes[:0:0], m.SourcePrefixes...)
	return m
}

// start launches the server goroutine of every chain in t. l.mu is held.
func (l *Listener) start(t *table) {
	for _, ch := range t.all {
		if ch.srv == nil {
			continue // a TCP proxy: connections are served by serveTCP
		}
		l.live[ch] = struct{}{}
		l.srvWG.Add(1)
		go func() {
			defer l.srvWG.Done()
			_ = ch.srv.Serve(ch.ln) // returns once ch.ln is closed
			l.mu.Lock()
			delete(l.live, ch)
			l.mu.Unlock()
		}()
	}
}

// Addr returns the bound address (with the real port when the configured
// port was 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Name returns the name of the current configuration.
func (l *Listener) Name() string { return l.tab.Load().name }

// Stats returns a snapshot of the listener's connection counters. It is
// lock-free and may be called at any time.
func (l *Listener) Stats() Stats {
	return Stats{
		DownstreamCxTotal:    l.cxTotal.Load(),
		DownstreamCxActive:   l.cxActive.Load(),
		DownstreamCxDestroy:  l.cxDestroy.Load(),
		NoFilterChainMatch:   l.noChain.Load(),
		ListenerFilterErrors: l.filterErrs.Load(),
		TLSHandshakeErrors:   l.tlsErrs.Load(),
	}
}

// Serve runs the accept loop until Shutdown or Close is called or ctx is
// done, and returns nil on such an orderly stop. When ctx ends, Serve drains
// the listener like Shutdown, bounded by the largest DrainTimeout of its
// chains, before returning. Serve may be called once; after Shutdown or
// Close it returns ErrClosed.
func (l *Listener) Serve(ctx context.Context) error {
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrClosed
	case l.serving:
		l.mu.Unlock()
		return fmt.Errorf("listener %q: Serve called twice", l.Name())
	}
	l.serving = true
	l.acceptWG.Add(1)
	l.mu.Unlock()

	l.acceptLoop(ctx)
	if ctx.Err() != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.tab.Load().drain)
		defer cancel()
		if err := l.Shutdown(dctx); err != nil {
			l.Close()
		}
	}
	return nil
}

func (l *Listener) acceptLoop(ctx context.Context) {
	defer l.acceptWG.Done()
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. EMFILE): back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
			case <-l.ctx.Done():
			}
			t.Stop()
			continue
		}
		backoff = 0
		l.cxTotal.Add(1)
		l.cxActive.Add(1)
		t := l.tab.Load()
		if !t.inspect && !t.listenerFilters() {
			// Plaintext-only listeners pay for no peeking and no goroutine.
			info := connInfo{port: addrPort(c.LocalAddr()), src: c.RemoteAddr(), transport: TransportRawBuffer}
			if tc := l.attach(t.selectChain(&info), c, nil); tc != nil {
				l.deliver(tc.cs, tc)
			}
			continue
		}
		l.connWG.Add(1)
		go l.inspectConn(t, c)
	}
}

// inspectConn runs the TLS inspector and TLS handshake for one connection,
// then hands it to its chain.
func (l *Listener) inspectConn(t *table, c net.Conn) {
	defer l.connWG.Done()
	raw := c // the socket; c may become a filteredConn around it
	stop := context.AfterFunc(l.ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	c.SetReadDeadline(time.Now().Add(t.filtersTimeout))
	var prefix []byte
	var err error
	if t.listenerFilters() {
		if fc, ferr := runListenerFilters(t, raw); ferr == nil {
			c = fc
		} else {
			err = ferr
		}
	}
	info := connInfo{transport: TransportRawBuffer}
	if err == nil {
		info.port, info.src = addrPort(c.LocalAddr()), c.RemoteAddr()
		if t.inspect {
			prefix, err = l.inspect(c, &info)
		}
	}
	if err != nil {
		stop()
		l.filterErrs.Add(1)
		l.connGone()
		c.Close()
		return
	}
	tc := l.attach(t.selectChain(&info), c, prefix)
	if tc == nil {
		stop()
		return
	}
	var conn net.Conn = tc
	if tc.cs.tls != nil {
		c.SetDeadline(time.Now().Add(t.handshakeTimeout))
		tlsConn := tls.Server(tc, tc.cs.tls)
		if l.ctx.Err() != nil {
			stop()
			tlsConn.Close()
			return
		}
		if err := tlsConn.Handshake(); err != nil {
			stop()
			l.tlsErrs.Add(1)
			tlsConn.Close()
			return
		}
		if tc.ctr != nil {
			p := protoHTTP1
			if tlsConn.ConnectionState().NegotiatedProtocol == "h2" {
				p = protoHTTP2
			}
			tc.setProto(p)
		}
		conn = tlsConn
	}
	if !stop() {
		conn.Close() // shutting down
		return
	}
	c.SetDeadline(time.Time{})
	l.deliver(tc.cs, conn)
}

// attach binds c to ch for accounting, or closes c when ch is nil.
func (l *Listener) attach(ch *chain, c net.Conn, prefix []byte) *trackedConn {
	if ch == nil {
		l.noChain.Add(1)
		l.connGone()
		c.Close()
		return nil
	}
	ch.active.Add(1)
	tc := &trackedConn{Conn: c, prefix: prefix, cs: ch, l: l, ctr: ch.ctr}
	if tc.ctr != nil {
		// The inspector's bytes are counted here, not when replayed.
		tc.ctr.RxBytes.Add(uint64(len(prefix)))
		// Plaintext that net/http serves from the first byte: tell HTTP/1
		// from h2c as the bytes go by. (The HTTP/1.1 fast path tells them
		// itself; TLS connections by ALPN.)
		tc.sniff = ch.tls == nil && ch.h1 == nil
	}
	if ch.observer != nil {
		tc.opened = time.Now()
		ch.observer.OnConnOpen(ch.name)
	}
	return tc
}

// connGone accounts for an accepted connection that is closed.
func (l *Listener) connGone() {
	l.cxActive.Add(-1)
	l.cxDestroy.Add(1)
}

// deliver hands c to its chain: to the HTTP/1.1 fast path for plaintext
// connections when the chain has one, else to the chain's http.Server.
func (l *Listener) deliver(ch *chain, c net.Conn) {
	if ch.tcp != nil {
		l.tcp.wg.Add(1)
		go l.serveTCP(ch, c)
		return
	}
	if tc, ok := c.(*trackedConn); ok && ch.h1 != nil && !tc.h2 {
		tc.h2 = true // if it comes back, it is for HTTP/2
		l.h1.wg.Add(1)
		go l.serveH1(ch, tc)
		return
	}
	if !ch.ln.push(c) {
		c.Close()
	}
}

// Update replaces the filter chains for new connections. cfg must have the
// same Address as the listener; it is validated and its certificates loaded
// before anything changes, so a failed Update leaves the running
// configuration serving. Connections accepted earlier stay on the chain they
// were accepted on until they close; the old chains' servers then stop.
func (l *Listener) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	if cfg.Address != l.addr {
		return fmt.Errorf("listener %q: address: %q cannot change to %q in place", cfg.Name, l.addr, cfg.Address)
	}
	l.updateMu.Lock()
	defer l.updateMu.Unlock()
	t, err := l.build(&cfg)
	if err != nil {
		return fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.start(t)
	old := l.tab.Swap(t)
	l.mu.Unlock()
	for _, ch := range old.all {
		ch.retired.Store(true)
		if ch.active.Load() == 0 {
			ch.ln.Close()
		}
	}
	return nil
}

// beginClose stops accepting and marks the listener closed.
func (l *Listener) beginClose() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.ln.Close()
	l.acceptWG.Wait()
	l.connWG.Wait()
}

func (l *Listener) liveChains() []*chain {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*chain, 0, len(l.live))
	for ch := range l.live {
		out = append(out, ch)
	}
	return out
}

// Shutdown stops accepting and drains: HTTP/1.1 responses written from now
// on carry Connection: close, HTTP/2 connections receive GOAWAY, idle
// connections are closed, and in-flight requests may finish until ctx is
// done, at which point the remaining connections are closed and Shutdown
// returns ctx's error. It waits for every goroutine the listener started
// (not for handlers of hijacked connections). Calling it again, or after
// Close, is harmless.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.beginClose()
	// Before the servers' shutdown hooks run, so that a response written
	// once they ran carries Connection: close on both paths.
	l.h1.drain()
	var wg sync.WaitGroup
	wg.Go(func() { l.h1.wait(ctx) })
	wg.Go(func() { l.tcp.wait(ctx) })
	for _, ch := range l.liveChains() {
		wg.Go(func() {
			if err := ch.srv.Shutdown(ctx); err != nil {
				ch.srv.Close()
			}
		})
	}
	wg.Wait()
	l.srvWG.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listener %q: drain: %w", l.Name(), err)
	}
	return nil
}

// Close stops accepting and closes every connection at once, then waits for
// the listener's goroutines, including handlers running on the HTTP/1.1
// fast path (their request context is cancelled and their connection
// closed, so a handler that honours either returns). It is idempotent and
// always returns nil.
func (l *Listener) Close() error {
	l.beginClose()
	l.h1.closeAll()
	l.tcp.closeAll()
	for _, ch := range l.liveChains() {
		ch.srv.Close()
	}
	l.h1.wg.Wait()
	l.tcp.wg.Wait()
	l.srvWG.Wait()
	return nil
}
