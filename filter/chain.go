package filter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Upstream is the terminal step of a chain: it sends x.Out and returns the
// response, whose body the chain streams downstream through the response
// body filters. The gateway's router is the usual Upstream; it also answers
// redirects and direct responses.
//
// RoundTrip is called on the request's goroutine, once per exchange; an
// Upstream is shared by concurrent exchanges and must be safe for
// concurrent use.
type Upstream interface {
	RoundTrip(ctx context.Context, x *Exchange) (*http.Response, error)
}

// UpstreamFunc adapts a function to Upstream.
type UpstreamFunc func(ctx context.Context, x *Exchange) (*http.Response, error)

// RoundTrip implements Upstream.
func (f UpstreamFunc) RoundTrip(ctx context.Context, x *Exchange) (*http.Response, error) {
	return f(ctx, x)
}

// Chain is an ordered list of filters compiled once into per-phase lists.
// A Chain is immutable and safe for concurrent use.
//
// Filters made with FromMiddleware split the chain into segments: the phase
// filters before a middleware, the middleware itself (instantiated once, when
// the chain is built), and the rest of the chain, which runs as the
// middleware's next handler.
type Chain struct {
	filters []Filter
	segs    []segment   // at least one; all but the last end in a middleware
	done    []doneEntry // reverse declaration order
}

// segment is the run of phase filters between two middlewares.
type segment struct {
	index    int
	end      int // first position after the segment's phase filters
	req      []reqEntry
	resp     []respEntry     // reverse order
	reqBody  []reqBodyEntry  // declaration order
	respBody []respBodyEntry // reverse order
	mw       http.Handler    // the middleware after the segment; nil for the last
}

type reqEntry struct {
	pos int
	f   RequestFilter
}

type respEntry struct {
	pos int
	f   ResponseFilter
}

type reqBodyEntry struct {
	pos int
	f   RequestBodyFilter
}

type respBodyEntry struct {
	pos int
	f   ResponseBodyFilter
}

type doneEntry struct {
	pos int
	f   DoneFilter
}

// NewChain compiles filters into a chain. It fails on a nil filter or an
// empty name.
func NewChain(filters ...Filter) (*Chain, error) {
	for i, f := range filters {
		if f == nil {
			return nil, fmt.Errorf("filter %d: nil filter", i)
		}
		if f.Name() == "" {
			return nil, fmt.Errorf("filter %d (%T): empty name", i, f)
		}
	}
	return compile(filters), nil
}

func compile(filters []Filter) *Chain {
	c := &Chain{filters: filters}
	seg := segment{}
	for pos, f := range filters {
		if m, ok := f.(*middleware); ok {
			seg.end = pos
			seg.mw = m.mw(segmentNext{c: c, seg: len(c.segs) + 1})
			c.segs = append(c.segs, seg)
			seg = segment{index: len(c.segs)}
			continue
		}
		if p, ok := f.(RequestFilter); ok {
			seg.req = append(seg.req, reqEntry{pos, p})
		}
		if p, ok := f.(ResponseFilter); ok {
			seg.resp = append([]respEntry{{pos, p}}, seg.resp...)
		}
		if p, ok := f.(RequestBodyFilter); ok {
			seg.reqBody = append(seg.reqBody, reqBodyEntry{pos, p})
		}
		if p, ok := f.(ResponseBodyFilter); ok {
			seg.respBody = append([]respBodyEntry{{pos, p}}, seg.respBody...)
		}
		if p, ok := f.(DoneFilter); ok {
			c.done = append([]doneEntry{{pos, p}}, c.done...)
		}
	}
	seg.end = len(filters)
	c.segs = append(c.segs, seg)
	return c
}

// ForRoute returns the chain specialised for a route's per-filter
// configuration, keyed by filter name: Disabled removes a filter; other
// values go to the filter's ForRoute (an error if it has none). Filters not
// named in config are kept as they are. ForRoute is meant for the control
// path: it compiles a new chain, leaving c unchanged.
func (c *Chain) ForRoute(config map[string]any) (*Chain, error) {
	if len(config) == 0 {
		return c, nil
	}
	out := make([]Filter, 0, len(c.filters))
	for _, f := range c.filters {
		cfg, ok := config[f.Name()]
		if !ok {
			out = append(out, f)
			continue
		}
		if _, off := cfg.(disabled); off {
			continue
		}
		rc, ok := f.(RouteConfigurable)
		if !ok {
			return nil, fmt.Errorf("filter %q: per-route config given but %T has no ForRoute", f.Name(), f)
		}
		nf, err := rc.ForRoute(cfg)
		if err != nil {
			return nil, fmt.Errorf("filter %q: route config: %w", f.Name(), err)
		}
		out = append(out, nf)
	}
	return NewChain(out...)
}

// Filters returns the chain's filters in declaration order. The slice is
// shared and must not be modified.
func (c *Chain) Filters() []Filter { return c.filters }

// Serve runs the exchange x through the chain with up as its terminal and
// writes the response to w: request phases in order, up.RoundTrip (unless a
// request filter answered locally), response phases in reverse order, the
// response body streamed through the body filters (flushed after every read
// for streams), trailers, and finally the done phases, once.
//
// Serve owns x until it returns and closes x.Resp.Body. A failure after the
// response headers were written aborts the stream: when the upstream broke,
// Serve panics with http.ErrAbortHandler after the done phases, so that
// net/http closes the connection (HTTP/1.1) or resets the stream (h2). A
// response body read error that carries a *ReplyError says why the
// upstream side ended the stream: its flags and details are recorded.
func (c *Chain) Serve(w http.ResponseWriter, x *Exchange, up Upstream) {
	ctx := x.In.Context()
	if len(c.segs) == 1 {
		c.serveLast(ctx, w, x, &c.segs[0], up)
	} else {
		c.run(ctx, w, x, 0, &terminal{up: up})
	}
	c.finish(ctx, x)
}

// finish ends the exchange: done phases, then the abort if one is due.
func (c *Chain) finish(ctx context.Context, x *Exchange) {
	x.End = time.Now()
	x.settle()
	for i := range c.done {
		if d := &c.done[i]; d.pos < x.reached {
			d.f.OnDone(ctx, x)
		}
	}
	if x.abort {
		panic(http.ErrAbortHandler)
	}
}

// terminal is what runs after the last segment: an Upstream (Serve) or a
// handler (Handler, AsMiddleware).
type terminal struct {
	up   Upstream
	next http.Handler
}

// run runs segment i and everything after it.
func (c *Chain) run(ctx context.Context, w http.ResponseWriter, x *Exchange, i int, t *terminal) {
	seg := &c.segs[i]
	if seg.mw == nil && t.up != nil {
		c.serveLast(ctx, w, x, seg, t.up)
		return
	}
	err := c.request(ctx, x, seg)
	if err == nil {
		_, err = c.wrapRequestBody(ctx, x, seg)
	}
	if err != nil {
		c.localReply(x, err)
		c.response(ctx, x, seg)
		c.write(ctx, w, x, seg)
		return
	}
	rw := &responseWriter{w: w, x: x, c: c, seg: seg, ctx: ctx}
	if seg.mw == nil {
		t.next.ServeHTTP(rw, x.Out)
		rw.finish()
		return
	}
	x.reached = seg.end + 1 // the middleware's position is reached
	st := &segmentState{x: x, ctx: ctx, t: t}
	r := x.Out.WithContext(context.WithValue(x.Out.Context(), stateKey{c}, st))
	seg.mw.ServeHTTP(rw, r)
	rw.finish()
}

// serveLast runs the last segment of a chain with an Upstream terminal.
func (c *Chain) serveLast(ctx context.Context, w http.ResponseWriter, x *Exchange, seg *segment, up Upstream) {
	if err := c.request(ctx, x, seg); err != nil {
		c.localReply(x, err)
	} else {
		var rb *requestBody
		if rb, err = c.wrapRequestBody(ctx, x, seg); err != nil {
			c.localReply(x, err)
		} else {
			resp, err := up.RoundTrip(ctx, x)
			if err != nil && rb != nil && rb.ferr != nil {
				err = rb.ferr // the transport may hide a body filter's error
			}
			switch {
			case err != nil:
				c.localReply(x, err)
			case resp == nil:
				c.localReply(x, errNilResponse)
			default:
				x.Resp = resp
			}
		}
	}
	c.response(ctx, x, seg)
	c.write(ctx, w, x, seg)
}

var errNilResponse = errors.New("upstream returned no response")

// request runs the request phases of seg. On success every position of the
// segment counts as reached.
func (c *Chain) request(ctx context.Context, x *Exchange, seg *segment) error {
	for i := range seg.req {
		e := &seg.req[i]
		x.reached = e.pos + 1
		if err := e.f.OnRequest(ctx, x); err != nil {
			return err
		}
	}
	x.reached = seg.end
	return nil
}

// response runs the response phases of seg for the reached filters. An
// error replaces x.Resp with the local reply for it; the remaining filters
// still run.
func (c *Chain) response(ctx context.Context, x *Exchange, seg *segment) {
	for i := range seg.resp {
		e := &seg.resp[i]
		if e.pos >= x.reached {
			continue
		}
		if err := e.f.OnResponse(ctx, x); err != nil {
			if x.Resp != nil && x.Resp.Body != nil {
				x.Resp.Body.Close()
			}
			c.localReply(x, err)
		}
	}
}

// localReply makes x.Resp the local reply that answers err.
func (c *Chain) localReply(x *Exchange, err error) {
	re := ErrorReply(err)
	x.Err = err
	x.Flags |= re.Flags
	if re.Details != "" {
		x.Details = re.Details
	}
	x.Resp = replyResponse(x, re)
}

// Handler returns the chain as an http.Handler in front of next. Each
// request gets a new Exchange (NewExchange); next is called with x.Out and a
// ResponseWriter that runs the response phases when the headers are
// written and the body phases on every write. The writer implements Flush
// and Unwrap, so http.ResponseController reaches the underlying writer.
// The handler is safe for concurrent use.
func (c *Chain) Handler(next http.Handler) http.Handler {
	return &chainHandler{c: c, t: terminal{next: next}}
}

type chainHandler struct {
	c *Chain
	t terminal
}

func (h *chainHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := NewExchange(r)
	ctx := r.Context()
	g := doneGuard{c: h.c, ctx: ctx, x: x}
	defer g.onPanic()
	h.c.run(ctx, w, x, 0, &h.t)
	g.finished = true
	h.c.finish(ctx, x)
}

// doneGuard runs the done phases when a handler below the chain panics.
type doneGuard struct {
	c        *Chain
	ctx      context.Context
	x        *Exchange
	finished bool
}

func (g *doneGuard) onPanic() {
	if g.finished {
		return
	}
	g.finished = true
	g.x.abort = false
	if g.x.Err == nil {
		g.x.Err = errHandlerPanic
	}
	g.c.finish(g.ctx, g.x)
}

var errHandlerPanic = errors.New("handler panicked")
