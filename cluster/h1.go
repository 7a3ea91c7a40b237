package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The synchronous HTTP/1.1 path. http.Transport runs a read goroutine and
// a write goroutine per connection and hands every request between them
// and the caller over channels; for a headers-only request that
// bookkeeping costs more CPU than the exchange itself. h1Pool instead does
// the whole exchange on the caller's goroutine: pop an idle connection,
// write the head into its bufio.Writer, flush once, parse the response
// with http.ReadResponse. It serves requests over plain TCP with no
// upgrade and either no body or a small one a filter already holds in
// memory (GetBody set, Content-Length known, at most h1MaxBody bytes:
// LLM requests, buffered JSON). Everything else keeps using the
// Transport, whose write goroutine is what lets a streamed request body
// flow while the response arrives.

const (
	// h1ReadBufferSize is a pooled connection's read buffer. Response
	// bodies are read through it, so it shares bufferSize's reasoning.
	h1ReadBufferSize = bufferSize
	// h1WriteBufferSize only ever holds a request head: 4 KiB holds any
	// ordinary head in one write and keeps idle connections small.
	h1WriteBufferSize = 4 << 10
	// h1MaxHeaderBytes bounds the bytes read from a connection while
	// parsing response heads, 1xx ones included; it matches
	// http.Transport's default MaxResponseHeaderBytes.
	h1MaxHeaderBytes = 10 << 20
	// h1Max1xx is how many 1xx informational responses may precede the
	// final one, as in http.Transport.
	h1Max1xx = 5
	// h1MaxBody is the largest in-memory request body the synchronous
	// path sends. The whole body is written before the response is read,
	// so it must fit the socket's send buffer even when the server
	// answers without reading it (Linux starts at 16 KiB and grows).
	h1MaxBody = 16 << 10
)

// aLongTimeAgo is a deadline in the past: setting it aborts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

var (
	errHeadersTooLarge = errors.New("response headers too large")
	errTooMany1xx      = errors.New("too many 1xx informational responses: invalid response")
	errIdle408         = fmt.Errorf("server sent 408 to an idle connection: %w", io.EOF)
	errUnexpected101   = errors.New("101 Switching Protocols without an upgrade request: invalid response")
)

// h1Eligible reports whether req can take the synchronous path: no body
// or a small buffered one (see h1BufferedBody), no upgrade, nothing for
// http.Transport to add, and a head that passes the validation the
// Transport would apply. A request that fails here goes to the
// Transport, which reports the same errors as always.
func h1Eligible(req *http.Request) bool {
	if req.Close || len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 || req.URL.User != nil {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		if !h1BufferedBody(req) {
			return false
		}
	} else if req.ContentLength != 0 {
		return false
	}
	h := req.Header
	// Connection and Upgrade are hop-by-hop: the caller strips them unless
	// it means to upgrade, which needs the Transport's writable body.
	if _, ok := h["Connection"]; ok {
		return false
	}
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if req.Method != "" && !httpguts.ValidHeaderFieldName(req.Method) { // a method is a token
		return false
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	// The Transport rewrites hosts with these (cleanHost, removeZone,
	// punycode); leave them to it.
	if !httpguts.ValidHostHeader(host) || strings.ContainsAny(host, " /%") || !isASCII(host) {
		return false
	}
	for k, vs := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// h1BufferedBody reports whether req's body is one the synchronous path
// sends: held in memory by a filter (GetBody set, so it can be sent
// again on a fresh connection), of known length up to h1MaxBody, and not
// waiting for a 100 Continue.
func h1BufferedBody(req *http.Request) bool {
	if req.GetBody == nil || req.ContentLength <= 0 || req.ContentLength > h1MaxBody {
		return false
	}
	_, expect := req.Header["Expect"]
	return !expect
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// h1Pool holds a cluster's idle HTTP/1.1 connections, one LIFO stack per
// endpoint address. Safe for concurrent use: the map is a sync.Map read
// without locking on the data path, and each stack has its own mutex,
// held only to push or pop.
type h1Pool struct {
	cluster     *Cluster
	maxIdle     int
	idleTimeout time.Duration
	closed      atomic.Bool // set by Close: released connections close
	endpoints   sync.Map    // address → *h1Endpoint
}

// h1Endpoint is the idle stack of one endpoint.
type h1Endpoint struct {
	pool *h1Pool
	addr string

	mu      sync.Mutex
	idle    []*h1Conn // oldest first; the top is the most recently used
	retired bool      // endpoint removed: released connections close
}

func newH1Pool(c *Cluster) *h1Pool {
	return &h1Pool{cluster: c, maxIdle: c.cfg.MaxIdleConnsPerEndpoint, idleTimeout: c.cfg.IdleTimeout}
}

func (p *h1Pool) endpoint(addr string) *h1Endpoint {
	if e, ok := p.endpoints.Load(addr); ok {
		return e.(*h1Endpoint)
	}
	e, _ := p.endpoints.LoadOrStore(addr, &h1Endpoint{pool: p, addr: addr})
	return e.(*h1Endpoint)
}

// roundTrip sends req (bodiless, or with a body h1BufferedBody accepts)
// to addr and returns the response with its headers read. A stale pooled
// connection (closed by the server while idle) is replaced by a fresh
// one and the request sent again once, under net/http's rules, with its
// body from GetBody; nothing is retried once a response byte was read.
// req.Body is closed, as a RoundTripper must. Errors are raw: Send
// classifies them.
func (p *h1Pool) roundTrip(ctx context.Context, req *http.Request, addr string, deadline time.Time) (*http.Response, error) {
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	if body != nil {
		defer body.Close()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := p.endpoint(addr)
	pc := e.pop()
	for pc != nil && pc.expired() { // past MaxConnectionDuration
		pc.conn.Close()
		pc = e.pop()
	}
	if pc == nil {
		return e.dialAndRoundTrip(ctx, req, body, deadline)
	}
	resp, retry, err := pc.roundTrip(ctx, req, body, true, deadline)
	if err == nil || !retry || ctx.Err() != nil || !staleConnErr(err) {
		return resp, err
	}
	if body != nil {
		b, gerr := req.GetBody()
		if gerr != nil {
			return nil, err
		}
		defer b.Close()
		body = b
	}
	return e.dialAndRoundTrip(ctx, req, body, deadline)
}

func (e *h1Endpoint) dialAndRoundTrip(ctx context.Context, req *http.Request, body io.Reader, deadline time.Time) (*http.Response, error) {
	conn, err := e.pool.cluster.dialContext(ctx, "tcp", e.addr)
	if err != nil {
		return nil, err
	}
	pc := newH1Conn(e, conn)
	resp, _, err := pc.roundTrip(ctx, req, body, false, deadline)
	return resp, err
}

// errBodyLength reports a request body shorter or longer than its
// Content-Length; the message is http.Transport's.
func errBodyLength(req *http.Request, n int64) error {
	return fmt.Errorf("http: ContentLength=%d with Body length %d", req.ContentLength, n)
}

// staleConnErr reports whether err is how a connection the server closed
// while it sat idle fails: the write is refused or the read finds EOF.
func staleConnErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// replayable reports whether req may be sent again after the server may
// have seen it, as net/http decides: idempotent methods, or an explicit
// idempotency key.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	if _, ok := req.Header["Idempotency-Key"]; ok {
		return true
	}
	_, ok := req.Header["X-Idempotency-Key"]
	return ok
}

// pop returns the most recently used idle connection, or nil. Because the
// stack is ordered by release time, an expired top means every entry has
// expired: all are closed.
func (e *h1Endpoint) pop() *h1Conn {
	e.mu.Lock()
	n := len(e.idle)
	if n == 0 {
		e.mu.Unlock()
		return nil
	}
	pc := e.idle[n-1]
	e.idle[n-1] = nil
	e.idle = e.idle[:n-1]
	if time.Since(pc.idleSince) <= e.pool.idleTimeout {
		e.mu.Unlock()
		return pc
	}
	stale := e.idle
	e.idle = nil
	e.mu.Unlock()
	pc.conn.Close()
	for _, c := range stale {
		c.conn.Close()
	}
	return nil
}

// push pools pc, or closes it when the pool is closed, the endpoint
// removed or the stack full. It also closes connections at the bottom of
// the stack that outlived IdleTimeout, so a stack that never empties
// does not keep them forever.
func (e *h1Endpoint) push(pc *h1Conn) {
	now := time.Now()
	pc.idleSince = now
	e.mu.Lock()
	if e.retired || e.pool.closed.Load() || len(e.idle) >= e.pool.maxIdle {
		e.mu.Unlock()
		pc.conn.Close()
		return
	}
	var expired *h1Conn
	if len(e.idle) > 0 && now.Sub(e.idle[0].idleSince) > e.pool.idleTimeout {
		expired = e.idle[0]
		n := copy(e.idle, e.idle[1:])
		e.idle[n] = nil
		e.idle = e.idle[:n]
	}
	e.idle = append(e.idle, pc)
	e.mu.Unlock()
	if expired != nil {
		expired.conn.Close()
	}
}

// drain closes the endpoint's idle connections; retire also makes it
// close those released later.
func (e *h1Endpoint) drain(retire bool) {
	e.mu.Lock()
	idle := e.idle
	e.idle = nil
	if retire {
		e.retired = true
	}
	e.mu.Unlock()
	for _, pc := range idle {
		pc.conn.Close()
	}
}

// closeIdle closes every idle connection; with close set, connections
// released afterwards are closed instead of pooled.
func (p *h1Pool) closeIdle(close bool) {
	if close {
		p.closed.Store(true)
	}
	p.endpoints.Range(func(_, e any) bool {
		e.(*h1Endpoint).drain(false)
		return true
	})
}

// retire drops the stacks of endpoints not in keep and closes their idle
// connections. A request that picked a removed endpoint just before the
// update may still create a fresh stack for it; its connection then
// lives until the next update, Close, CloseIdleConnections or the
// server's own idle timeout.
func (p *h1Pool) retire(keep []Endpoint) {
	p.endpoints.Range(func(k, e any) bool {
		for i := range keep {
			if keep[i].Address == k.(string) {
				return true
			}
		}
		p.endpoints.Delete(k)
		e.(*h1Endpoint).drain(true)
		return true
	})
}

// h1Conn is one pooled connection. It serves one exchange at a time: the
// goroutine that popped or dialed it owns it until the response body
// ends, then pushes it back or closes it.
type h1Conn struct {
	ep   *h1Endpoint
	conn net.Conn
	br   *bufio.Reader // reads through the h1Conn itself, for the head limit
	bw   *bufio.Writer

	// Per exchange, owned by the current owner.
	idleSince time.Time
	limit     int64       // bytes the head may still read; <0 means none
	deadline  bool        // conn has a deadline to clear
	stop      func() bool // stops the cancel AfterFunc; nil without one
	cancel    func()      // pc.abortIO, bound once per connection
}

func newH1Conn(e *h1Endpoint, conn net.Conn) *h1Conn {
	pc := &h1Conn{ep: e, conn: conn, limit: -1}
	pc.br = bufio.NewReaderSize(pc, h1ReadBufferSize)
	pc.bw = bufio.NewWriterSize(conn, h1WriteBufferSize)
	pc.cancel = pc.abortIO
	return pc
}

// Read reads from the connection for br, enforcing the head limit.
func (pc *h1Conn) Read(p []byte) (int, error) {
	if pc.limit < 0 {
		return pc.conn.Read(p)
	}
	if pc.limit == 0 {
		return 0, errHeadersTooLarge
	}
	if int64(len(p)) > pc.limit {
		p = p[:pc.limit]
	}
	n, err := pc.conn.Read(p)
	pc.limit -= int64(n)
	return n, err
}

// abortIO fails the connection's blocked and future I/O; it runs when the
// request context is canceled.
func (pc *h1Conn) abortIO() { pc.conn.SetDeadline(aLongTimeAgo) }

// roundTrip runs one exchange on pc. On error pc is closed, and retry
// reports whether nothing of the response was read and the request may
// be sent again on another connection. reused marks a pooled connection:
// a 408 on one is what some servers (HAProxy) write to an idle
// connection before closing it, so it is treated as the connection
// having gone stale, as http.Transport does.
func (pc *h1Conn) roundTrip(ctx context.Context, req *http.Request, body io.Reader, reused bool, deadline time.Time) (resp *http.Response, retry bool, err error) {
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if !deadline.IsZero() {
		pc.conn.SetDeadline(deadline)
		pc.deadline = true
	}
	if ctx.Done() != nil {
		pc.stop = context.AfterFunc(ctx, pc.cancel)
	}
	writeHead(pc.bw, req)
	if body != nil {
		// At most h1MaxBody bytes, so the head and the body usually leave
		// in one write.
		n, err := io.Copy(pc.bw, io.LimitReader(body, req.ContentLength+1))
		if err != nil {
			// A write to a connection the server closed while it sat idle
			// (the body filled the buffer); the caller retries stale
			// connections. The request was incomplete: no server acted on it.
			pc.close()
			return nil, true, err
		}
		if n != req.ContentLength {
			pc.close()
			return nil, false, errBodyLength(req, n)
		}
	}
	if err := pc.bw.Flush(); err != nil {
		pc.close()
		return nil, true, err
	}
	pc.limit = h1MaxHeaderBytes
	if _, err := pc.br.Peek(1); err != nil {
		pc.close()
		return nil, replayable(req), err
	}
	for n1xx := 0; ; n1xx++ {
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			pc.close()
			return nil, false, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode < 100 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			pc.close()
			return nil, false, errUnexpected101
		}
		if n1xx == h1Max1xx {
			pc.close()
			return nil, false, errTooMany1xx
		}
	}
	pc.limit = -1
	if reused && resp.StatusCode == http.StatusRequestTimeout {
		pc.close()
		return nil, replayable(req), errIdle408
	}
	if resp.Body == http.NoBody {
		// HEAD, 204, 304 and zero-length bodies: the exchange is over.
		pc.release(!resp.Close)
		return resp, false, nil
	}
	resp.Body = &h1Body{pc: pc, rc: resp.Body, req: req, keep: !resp.Close, deadline: pc.deadline}
	return resp, false, nil
}

// release ends the exchange, pooling pc when keep holds and the
// connection is clean, closing it otherwise.
func (pc *h1Conn) release(keep bool) {
	if pc.stop != nil {
		// stop fails when abortIO has run or is running: the deadline is
		// poisoned, so the connection cannot be reused.
		if !pc.stop() {
			keep = false
		}
		pc.stop = nil
	}
	// Bytes past the response are not ours to reuse; reusable applies the
	// per-connection limits.
	if !keep || pc.br.Buffered() > 0 || !pc.reusable() {
		pc.conn.Close()
		return
	}
	if pc.deadline {
		pc.deadline = false
		if err := pc.conn.SetDeadline(time.Time{}); err != nil {
			pc.conn.Close()
			return
		}
	}
	pc.ep.push(pc)
}

// close ends the exchange and the connection.
func (pc *h1Conn) close() {
	if pc.stop != nil {
		pc.stop()
		pc.stop = nil
	}
	pc.conn.Close()
}

// writeHead writes req's request line and header fields. The Host field
// comes from req.Host or the URL; Host, Content-Length,
// Transfer-Encoding and Trailer fields in req.Header are skipped, as
// http.Request.Write skips them. Nothing is added: no User-Agent, no
// Accept-Encoding. A body's length is req.ContentLength; bodiless POST,
// PUT and PATCH get Content-Length: 0, as the Transport sends them.
func writeHead(w *bufio.Writer, req *http.Request) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	w.WriteString(method)
	w.WriteByte(' ')
	u := req.URL
	if u.Opaque != "" {
		w.WriteString(u.RequestURI())
	} else {
		path := u.EscapedPath() // allocation-free unless escaping is needed
		if path == "" {
			path = "/"
		}
		w.WriteString(path)
		if u.ForceQuery || u.RawQuery != "" {
			w.WriteByte('?')
			w.WriteString(u.RawQuery)
		}
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	if req.Host != "" {
		w.WriteString(req.Host)
	} else {
		w.WriteString(u.Host)
	}
	w.WriteString("\r\n")
	if req.ContentLength > 0 {
		var b [20]byte
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(b[:0], req.ContentLength, 10))
		w.WriteString("\r\n")
	} else {
		switch method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			w.WriteString("Content-Length: 0\r\n")
		}
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vs {
			if v == "" && k == "User-Agent" { // the Transport's way to send none
				continue
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
}

// h1Body is a response body on the synchronous path. At EOF it releases
// the connection to the pool; Close before EOF closes the connection.
// Read and Close may be called concurrently, as with the Transport's
// bodies: state decides once who ends the exchange.
//
// One h1Body is allocated per response rather than per connection: the
// connection is reused as soon as the body ends, and a caller that closes
// a body again after EOF (a common, legal pattern) must not reach the
// next response on the same connection.
type h1Body struct {
	pc   *h1Conn
	rc   io.ReadCloser // http.ReadResponse's body; never Closed: that drains
	req  *http.Request // for its context, to explain I/O errors
	keep bool          // the response allows reuse
	// deadline marks an exchange under a deadline (the request's or the
	// route's): a connection deadline error is then the route timeout.
	deadline bool
	state    atomic.Int32
}

const (
	bodyOpen int32 = iota
	bodyEOF
	bodyClosed
)

func (b *h1Body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF:
		return 0, io.EOF
	case bodyClosed:
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		if b.state.CompareAndSwap(bodyOpen, bodyEOF) {
			b.pc.release(b.keep)
		}
	case err != nil:
		if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
			b.pc.close()
		}
		ctx := b.req.Context()
		err = wrapCtxErr(err, requestCtxErr(ctx, b.deadline, err))
	}
	return n, err
}

// Close closes the connection unless the body already ended. It always
// returns nil.
func (b *h1Body) Close() error {
	if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
		b.pc.close()
	}
	return nil
}
