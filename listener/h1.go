package listener

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP/1.1 fast path serves plaintext HTTP/1.x connections of a chain
// with one synchronous loop per connection: read a request with
// http.ReadRequest, call the chain's handler, finish the response, loop.
// Compared with net/http's server it allocates no context per request,
// starts no background read (so no extra EAGAIN read and no goroutine
// wake-ups per request), writes the header map straight into the
// connection's bufio.Writer instead of cloning it, and never sniffs
// Content-Type.
//
// What it cannot do: without a background read, a client that goes away
// while a headers-only request is being handled is not noticed until the
// response is written (the route timeout bounds such requests). The
// request context is per connection, not per request: it is cancelled when
// the connection is closed by the server, not when one request ends.

const (
	// h1MaxDrain bounds how much of an unread request body is discarded to
	// keep a connection alive, as net/http's maxPostHandlerReadBytes.
	h1MaxDrain = 256 << 10
	// h1StageSize is how much body is held back, while the handler runs,
	// to answer with a Content-Length instead of chunking
	// (net/http's bufferBeforeChunkingSize).
	h1StageSize = 2048
	// h1LingerTimeout bounds the lingering close that keeps a reset from
	// destroying a response the client has not read yet.
	h1LingerTimeout = 500 * time.Millisecond
)

// h2Preface is what an h2c prior-knowledge client sends first.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// h1Server is the immutable per-chain configuration of the fast path.
type h1Server struct {
	handler        http.Handler
	maxHeaderBytes int64 // raw bytes read for a request head, as net/http
	idle           time.Duration
	headersTimeout time.Duration
	requestTimeout time.Duration // whole request, head and body; 0: none
	logger         *slog.Logger  // nil discards
}

// Connection states seen by Shutdown.
const (
	h1Active int32 = iota
	h1Idle         // waiting for the first byte of a request
)

// Expect: 100-continue states of a request.
const (
	contNone    int32 = iota
	contPending       // the client waits for 100 Continue
	contSent          // 100 Continue written
	contRefused       // the final response went out first
)

// h1Conns is the listener's registry of fast-path connections, so that
// Shutdown can close the idle ones and Close all of them.
type h1Conns struct {
	mu       sync.Mutex
	m        map[*h1Conn]struct{}
	draining atomic.Bool
	wg       sync.WaitGroup // one per serveH1 goroutine
}

func (r *h1Conns) add(c *h1Conn) {
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[*h1Conn]struct{})
	}
	r.m[c] = struct{}{}
	r.mu.Unlock()
}

func (r *h1Conns) remove(c *h1Conn) {
	r.mu.Lock()
	delete(r.m, c)
	r.mu.Unlock()
}

// drain makes every connection close after its current response and wakes
// the idle ones.
func (r *h1Conns) drain() {
	r.draining.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.m {
		if c.state.Load() == h1Idle {
			c.tc.SetReadDeadline(aLongTimeAgo)
		}
	}
}

// closeAll closes every connection and cancels its context.
func (r *h1Conns) closeAll() {
	r.draining.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.m {
		c.cancel(nil)
		c.tc.Close()
	}
}

// wait waits for every connection goroutine, or for ctx.
func (r *h1Conns) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		r.closeAll()
		<-done
		return ctx.Err()
	}
}

// limitReader is the connection reader under the bufio.Reader; it caps how
// many bytes a request head may take, as net/http's connReader does.
type limitReader struct {
	c net.Conn
	n int64
}

func (r *limitReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, err := r.c.Read(p)
	r.n -= int64(n)
	return n, err
}

// h1Conn is one fast-path connection. It is owned by its serveH1
// goroutine; Shutdown and Close only touch state, tc and cancel, the
// request timer only what is noted. Pooled across connections unless
// hijacked.
type h1Conn struct {
	l      *Listener
	s      *h1Server
	tc     *trackedConn
	lr     limitReader
	br     *bufio.Reader
	bw     *bufio.Writer
	ctx    context.Context // the requests'; its cause says why it ended
	cancel context.CancelCauseFunc
	remote string
	state  atomic.Int32
	readDL time.Time // last read deadline set by the loop
	reqDL  time.Time // the request's deadline (requestTimeout), or zero

	wmu  sync.Mutex   // orders a 100 Continue with the final response
	cont atomic.Int32 // contNone...

	// The request timer of a request whose body is still coming
	// (reqtimeout.go). rt.timer is made on first use and kept in the pool;
	// its function only acts, holding rt.mu, on an armed timer whose
	// deadline rtDL has passed, so a late run for an earlier request is
	// harmless.
	rt   armedTimer
	rtDL time.Time // guarded by rt.mu

	w        h1Response
	hijacked bool
}

var h1ConnPool = sync.Pool{New: func() any {
	c := &h1Conn{}
	c.br = bufio.NewReaderSize(&c.lr, 4096)
	c.bw = bufio.NewWriterSize(nil, 4096)
	c.w.c = c
	c.w.hdr = make(http.Header, 8)
	c.w.stage = make([]byte, 0, h1StageSize)
	return c
}}

// serveH1 serves one plaintext connection of chain ch, handing it to the
// chain's http.Server if it starts with the h2c preface.
func (l *Listener) serveH1(ch *chain, tc *trackedConn) {
	defer l.h1.wg.Done()
	c := h1ConnPool.Get().(*h1Conn)
	c.l, c.s, c.tc = l, ch.h1, tc
	c.lr = limitReader{c: tc, n: math.MaxInt64}
	c.br.Reset(&c.lr)
	c.bw.Reset(tc)
	c.remote = tc.RemoteAddr().String()
	ctx := context.WithValue(context.Background(), http.LocalAddrContextKey, tc.LocalAddr())
	if fc, ok := tc.Conn.(*filteredConn); ok {
		ctx = fc.context(ctx)
	}
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	c.readDL, c.reqDL = time.Time{}, time.Time{}
	c.rt.state.Store(rtOff)
	c.hijacked = false
	l.h1.add(c)

	h2 := c.serve()

	l.h1.remove(c)
	c.cancel(nil)
	if c.hijacked {
		return // the handler owns the conn and the buffers now
	}
	if h2 {
		// Replay what was read and let net/http speak HTTP/2.
		buf, _ := c.br.Peek(c.br.Buffered())
		tc.prefix = append([]byte(nil), buf...)
		tc.SetReadDeadline(time.Time{})
		l.deliver(ch, tc)
	} else {
		tc.Close()
	}
	c.l, c.s, c.tc, c.ctx, c.cancel = nil, nil, nil, nil, nil
	c.br.Reset(&c.lr)
	c.bw.Reset(nil)
	c.lr.c = nil
	c.w.reset(nil)
	h1ConnPool.Put(c)
}

// serve runs the request loop. It reports whether the connection is h2c.
func (c *h1Conn) serve() (h2 bool) {
	s := c.s
	first := true
	for {
		c.lr.n = s.maxHeaderBytes
		if c.br.Buffered() == 0 {
			if s.idle > 0 {
				// Re-arm the idle deadline only when it moved by a second:
				// deadlines are cheap but not free.
				if dl := time.Now().Add(s.idle); dl.Sub(c.readDL) > time.Second {
					c.tc.SetReadDeadline(dl)
					c.readDL = dl
				}
			}
			c.state.Store(h1Idle)
			if c.l.h1.draining.Load() {
				return false
			}
			_, err := c.br.Peek(1)
			c.state.Store(h1Active)
			if err != nil {
				return false
			}
		}
		if first {
			first = false
			isH2, err := c.peekPreface()
			if isH2 {
				c.tc.setProto(protoHTTP2)
			}
			if isH2 || err != nil {
				return isH2
			}
			c.tc.setProto(protoHTTP1)
		}
		if s.headersTimeout > 0 || s.requestTimeout > 0 {
			now := time.Now()
			c.reqDL = time.Time{}
			if s.requestTimeout > 0 {
				c.reqDL = now.Add(s.requestTimeout)
			}
			dl := c.reqDL
			if s.headersTimeout > 0 && (dl.IsZero() || s.headersTimeout < s.requestTimeout) {
				dl = now.Add(s.headersTimeout)
			}
			c.readDL = dl
			c.tc.SetReadDeadline(dl)
		}
		req, err := http.ReadRequest(c.br)
		hitLimit := c.lr.n <= 0
		c.lr.n = math.MaxInt64
		if err != nil {
			if c.headersTimedOut(err) {
				// Envoy's request timer runs from the first byte, headers
				// included.
				if ctr := c.tc.ctr; ctr != nil {
					ctr.RequestTimeouts.Add(1)
				}
				c.replyAndLinger("408 Request Timeout", requestTimeoutBody)
				return false
			}
			c.readError(err, hitLimit)
			return false
		}
		if !c.serveRequest(req) {
			return false
		}
	}
}

// peekPreface reads just enough to tell the h2c preface from HTTP/1: a
// short HTTP/1 request must not wait for 24 bytes.
func (c *h1Conn) peekPreface() (bool, error) {
	want := 1
	for {
		b, err := c.br.Peek(max(want, c.br.Buffered()))
		if err != nil {
			return false, err
		}
		n := min(len(b), len(h2Preface))
		if string(b[:n]) != h2Preface[:n] {
			return false, nil
		}
		if n == len(h2Preface) {
			return true, nil
		}
		want = n + 1
	}
}

// headersTimedOut reports whether err is the request timeout expiring
// while the headers were read (rather than the headers timeout, or
// Shutdown waking the connection).
func (c *h1Conn) headersTimedOut(err error) bool {
	if c.reqDL.IsZero() || !c.readDL.Equal(c.reqDL) || time.Now().Before(c.reqDL) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readError answers a request that could not be read, as net/http does.
func (c *h1Conn) readError(err error, hitLimit bool) {
	var status string
	switch {
	case hitLimit:
		status = "431 Request Header Fields Too Large"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isNetError(err):
		return // the client went away or timed out
	case strings.Contains(err.Error(), "unsupported transfer encoding"):
		status = "501 Not Implemented"
	default:
		status = "400 Bad Request"
	}
	c.replyAndLinger(status, status)
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// replyAndLinger writes a final error response and closes the connection
// gracefully, so that the unread request does not reset it under the
// client before the response is read.
func (c *h1Conn) replyAndLinger(status, body string) {
	c.bw.WriteString("HTTP/1.1 ")
	c.bw.WriteString(status)
	c.bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")
	c.bw.WriteString(body)
	if c.bw.Flush() == nil {
		c.linger()
	}
}

// linger half-closes the connection and discards what the client still
// sends for a bounded time.
func (c *h1Conn) linger() {
	c.tc.CloseWrite()
	c.tc.SetReadDeadline(time.Now().Add(h1LingerTimeout))
	io.CopyN(io.Discard, c.tc, h1MaxDrain)
}

// serveRequest handles one request and reports whether to read another.
func (c *h1Conn) serveRequest(req *http.Request) bool {
	if req.ProtoMajor != 1 {
		c.replyAndLinger("505 HTTP Version Not Supported", "505 HTTP Version Not Supported")
		return false
	}
	// http.ReadRequest has moved Host out of the header map (rejecting
	// duplicates), so an empty Host field reads as a missing one here.
	if req.ProtoMinor >= 1 && req.Host == "" && req.Method != "CONNECT" || !validHost(req.Host) {
		c.replyAndLinger("400 Bad Request", "400 Bad Request")
		return false
	}
	for k := range req.Header {
		// textproto checks values but lets some invalid names through.
		if !validFieldName(k) {
			c.replyAndLinger("400 Bad Request", "400 Bad Request")
			return false
		}
	}
	req.RemoteAddr = c.remote
	req = req.WithContext(c.ctx)

	var body *h1Body
	timed := false
	if req.Body != http.NoBody && req.Body != nil {
		if !c.reqDL.IsZero() {
			// The body must arrive within the request timeout: the request
			// timer's job (armed below), not a read deadline's, so that the
			// response starting can disarm it.
			c.tc.SetReadDeadline(time.Time{})
			c.readDL = time.Time{}
			timed = true
		} else if s := c.s; s.headersTimeout > 0 || s.idle > 0 {
			// The body may take longer than the idle timeout.
			c.tc.SetReadDeadline(time.Time{})
			c.readDL = time.Time{}
		}
		body = &h1Body{src: req.Body, c: c}
		req.Body = body
	} else if c.s.headersTimeout > 0 || c.s.requestTimeout > 0 {
		c.tc.SetReadDeadline(time.Time{})
		c.readDL = time.Time{}
	}
	c.cont.Store(contNone)
	if ex, ok := req.Header["Expect"]; ok {
		if len(ex) == 1 && strings.EqualFold(ex[0], "100-continue") && req.ProtoMinor >= 1 {
			if body != nil {
				c.cont.Store(contPending)
			}
			delete(req.Header, "Expect")
		} else {
			c.replyAndLinger("417 Expectation Failed", "417 Expectation Failed")
			return false
		}
	}

	w := &c.w
	w.reset(req)
	if timed {
		c.armRequestTimer()
	}
	if c.callHandler(w, req) {
		c.endRequestTimer()
		if !c.hijacked && body != nil {
			// Close first: a reader the handler left behind may be blocked
			// in the body, holding its lock.
			c.tc.Close()
			body.mu.Lock()
			body.done = true
			body.mu.Unlock()
		}
		return false // aborted, or hijacked
	}
	keep := w.finish() // the 408 if the request timer fired first
	if body != nil {
		if c.endRequestTimer() {
			c.timedOut(body)
			return false
		}
		keep = c.finishBody(body, keep)
	}
	if w.wroteDL {
		c.tc.SetWriteDeadline(time.Time{})
	}
	if w.readDL || body != nil && !c.reqDL.IsZero() {
		c.readDL = time.Time{}
		c.tc.SetReadDeadline(time.Time{})
	}
	return c.bw.Flush() == nil && keep
}

// callHandler runs the handler; it reports true when the connection must
// be dropped without finishing the response.
func (c *h1Conn) callHandler(w *h1Response, req *http.Request) (drop bool) {
	defer func() {
		if v := recover(); v != nil {
			drop = true
			if c.hijacked {
				return
			}
			c.bw.Flush() // whatever was written, as net/http
			if v == http.ErrAbortHandler {
				return
			}
			if lg := c.s.logger; lg != nil {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				lg.Error("http: panic serving", "remote", c.remote, "panic", v, "stack", string(buf))
			}
		}
	}()
	c.s.handler.ServeHTTP(w, req)
	return c.hijacked
}

// finishBody stops the handler's access to the request body and discards
// what is left of it, bounded; it reports whether the connection may be
// reused.
func (c *h1Conn) finishBody(b *h1Body, keep bool) bool {
	// Send the response before waiting for a reader the handler may have
	// left behind (an http.Transport still copying the body upstream).
	if err := c.bw.Flush(); err != nil {
		c.tc.Close()
	}
	if !c.reqDL.IsZero() {
		// The response started before the body was in, which disarmed the
		// request timer; what is left of the body (read by such a reader,
		// or discarded below) must still come by the request's deadline.
		c.tc.SetReadDeadline(c.reqDL)
		c.readDL = c.reqDL
	}
	b.mu.Lock()
	b.done = true
	eof := b.eof
	b.mu.Unlock()
	if eof {
		return keep
	}
	if c.cont.Load() == contPending || c.cont.Load() == contRefused {
		// The client was never told to send the body.
		if c.bw.Flush() == nil {
			c.linger()
		}
		return false
	}
	if err := c.bw.Flush(); err != nil {
		return false
	}
	n, err := io.CopyN(io.Discard, b.src, h1MaxDrain+1)
	if err == io.EOF && n <= h1MaxDrain {
		return keep
	}
	if err == nil || errors.Is(err, http.ErrBodyReadAfterClose) {
		c.linger() // too much left; keep the response from being reset
	}
	return false
}

// timedOut ends the connection of a request the request timer expired on:
// its 408 is written, the body's readers are cut off, and the connection
// lingers so that the client reads the 408 before the close.
func (c *h1Conn) timedOut(b *h1Body) {
	b.mu.Lock() // a reader in the body was woken by the timer
	b.done = true
	b.mu.Unlock()
	if c.bw.Flush() == nil {
		c.linger()
	}
}

// armRequestTimer starts the request timer for a request whose body is
// still coming.
func (c *h1Conn) armRequestTimer() {
	c.rt.mu.Lock()
	c.rtDL = c.reqDL
	c.rt.state.Store(rtArmed)
	c.rt.mu.Unlock()
	d := time.Until(c.reqDL)
	if c.rt.timer == nil {
		c.rt.timer = time.AfterFunc(d, c.fireRequestTimer)
	} else {
		c.rt.timer.Reset(d)
	}
}

// fireRequestTimer runs on the timer's goroutine.
func (c *h1Conn) fireRequestTimer() {
	c.rt.mu.Lock()
	defer c.rt.mu.Unlock()
	if c.rt.state.Load() != rtArmed || time.Now().Before(c.rtDL) {
		return // disarmed, or a late run for an earlier request
	}
	c.rt.state.Store(rtFired)
	if ctr := c.tc.ctr; ctr != nil {
		ctr.RequestTimeouts.Add(1)
	}
	c.cancel(ErrRequestTimeout) // the connection closes after the 408
	c.tc.SetReadDeadline(aLongTimeAgo)
}

// disarmRequestTimer stops the request timer unless it fired, and reports
// whether it did; it returns once a firing timer is done. Any goroutine
// may call it.
func (c *h1Conn) disarmRequestTimer() (fired bool) { return c.rt.disarm() }

// endRequestTimer disarms the request timer at the end of a request and
// reports whether it fired.
func (c *h1Conn) endRequestTimer() (fired bool) {
	if !c.disarmRequestTimer() {
		return false
	}
	c.rt.mu.Lock()
	c.rt.state.Store(rtOff)
	c.rt.mu.Unlock()
	return true
}

// writeContinue sends 100 Continue once, before the handler's first read,
// unless the final response went out first.
func (c *h1Conn) writeContinue() {
	if c.cont.Load() != contPending {
		return
	}
	c.wmu.Lock()
	if c.cont.CompareAndSwap(contPending, contSent) {
		c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		c.bw.Flush()
	}
	c.wmu.Unlock()
}

// h1Body is the request body seen by the handler: it sends 100 Continue on
// the first read and cuts off readers once the handler has returned (an
// http.Transport may still be copying it upstream), so that they never
// touch the connection's reader again.
type h1Body struct {
	mu   sync.Mutex
	src  io.ReadCloser
	c    *h1Conn
	eof  bool
	done bool // handler returned or closed the body
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	c := b.c
	if c.rt.state.Load() == rtFired {
		return 0, ErrRequestTimeout
	}
	c.writeContinue()
	n, err := b.src.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
		c.disarmRequestTimer() // the request is in
	case err != nil && c.rt.state.Load() == rtFired:
		err = ErrRequestTimeout
	}
	return n, err
}

// Close does not consume the rest: the loop discards it, bounded.
func (b *h1Body) Close() error {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	return nil
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return false
		}
	}
	return true
}

// validHost reports whether h is an acceptable Host header value: no
// control characters, spaces or characters that cannot appear in a URI
// authority.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}' {
			return false
		}
	}
	return true
}

// dateCache formats the Date header once per second.
var dateCache atomic.Pointer[dateEntry]

type dateEntry struct {
	sec int64
	s   string
}

func httpDate() string {
	now := time.Now()
	sec := now.Unix()
	if e := dateCache.Load(); e != nil && e.sec == sec {
		return e.s
	}
	e := &dateEntry{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(e)
	return e.s
}

// statusLine returns "HTTP/1.1 <code> <text>\r\n" without allocating for
// common codes.
func statusLine(code int) string {
	switch code {
	case 200:
		return "HTTP/1.1 200 OK\r\n"
	case 204:
		return "HTTP/1.1 204 No Content\r\n"
	case 206:
		return "HTTP/1.1 206 Partial Content\r\n"
	case 301:
		return "HTTP/1.1 301 Moved Permanently\r\n"
	case 302:
		return "HTTP/1.1 302 Found\r\n"
	case 304:
		return "HTTP/1.1 304 Not Modified\r\n"
	case 400:
		return "HTTP/1.1 400 Bad Request\r\n"
	case 404:
		return "HTTP/1.1 404 Not Found\r\n"
	case 408:
		return "HTTP/1.1 408 Request Timeout\r\n"
	case 500:
		return "HTTP/1.1 500 Internal Server Error\r\n"
	case 502:
		return "HTTP/1.1 502 Bad Gateway\r\n"
	case 503:
		return "HTTP/1.1 503 Service Unavailable\r\n"
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
}

// testStdlibHTTP1 forces HTTPConfig.StdlibHTTP1 on every chain; only the
// package's tests set it, to run their suite against both HTTP/1 paths.
var testStdlibHTTP1 bool
