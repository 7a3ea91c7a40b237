package listener

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/filter"
)

// The request timeout (HTTPConfig.RequestTimeout, Envoy's request_timeout)
// runs from a request's first byte until its body has been read to the end
// or its response starts, which disarm it, as Envoy's encodeHeaders does.
// Headers are bounded by read deadlines (the fast path's own; net/http's
// ReadHeaderTimeout). A request with a body gets a timer when its handler
// is called; when it fires first, it
//
//   - counts the request in ConnCounters.RequestTimeouts,
//   - cancels the request's context with cause ErrRequestTimeout, so that
//     an upstream request made with it is cancelled,
//   - unblocks a body read in progress (the connection's read deadline on
//     HTTP/1, the stream's body on HTTP/2), which then fails with
//     ErrRequestTimeout, as every later one does.
//
// The 408 goes out on the handler's goroutine, never on the timer's (the
// response writer and its header map are the handler's): in place of the
// handler's first final status, or when the handler returns without one.
// What the handler writes afterwards is dropped. The connection is closed
// after the 408 on HTTP/1; on HTTP/2 only the stream ends.
//
// Requests served by the fast path keep the timer's state in their h1Conn
// (h1.go), with a timer reused across requests; those served by net/http
// get a requestTimer, which is their ResponseWriter and Body.

// ErrRequestTimeout is the cause of a request's context, and the error of
// its body reads, once HTTPConfig.RequestTimeout expired before the request
// was received whole. The client gets a 408 whatever the handler answers;
// through filter.ErrorReply the error answers 408 too, with Envoy's
// response code details "request_overall_timeout" and no response flag
// (Envoy sets none).
var ErrRequestTimeout error = requestTimeoutError{}

type requestTimeoutError struct{}

func (requestTimeoutError) Error() string { return "request timeout" }

// ReplyStatus implements filter.StatusError.
func (requestTimeoutError) ReplyStatus() (int, filter.Flags) { return http.StatusRequestTimeout, 0 }

// Details implements filter.Detailer.
func (requestTimeoutError) Details() string { return "request_overall_timeout" }

var _ filter.StatusError = requestTimeoutError{}

// requestTimeoutBody is the 408's body, Envoy's.
const requestTimeoutBody = "request timeout"

// States of a request timer.
const (
	rtOff   int32 = iota // none, or disarmed: the body is in or the response started
	rtArmed              // the body is still coming
	rtFired              // expired first: the request is answered 408
)

// timeoutHeader replaces h with the 408's header fields.
func timeoutHeader(h http.Header, h1 bool) {
	clear(h)
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Content-Length"] = []string{"15"} // len(requestTimeoutBody)
	if h1 {
		// On HTTP/2 this would make net/http GOAWAY the connection.
		h["Connection"] = []string{"close"}
	}
}

// trackedConnKey is the request context key of the *trackedConn a request
// net/http serves arrived on, set when the chain has a request timeout.
type trackedConnKey struct{}

// serveTimed serves a request that net/http read (HTTP/1 with StdlibHTTP1
// or TLS, every HTTP/2 stream) and whose body is still to come, under the
// request timeout.
func (h *hcm) serveTimed(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	dl := now.Add(h.requestTimeout)
	if r.ProtoMajor == 1 {
		// The timeout runs from the request's first bytes, when net/http
		// set the header deadline (ReadHeaderTimeout, at most the request
		// timeout) that the connection recorded.
		if tc, _ := r.Context().Value(trackedConnKey{}).(*trackedConn); tc != nil {
			if ns := tc.readDL.Load(); ns != 0 {
				start := time.Unix(0, ns).Add(-h.headerTimeout)
				if age := now.Sub(start); age >= 0 && age <= h.headerTimeout+time.Second {
					dl = start.Add(h.requestTimeout)
				}
			}
		}
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	t := &requestTimer{w: w, ctr: h.ctr, cancel: cancel, dl: dl, h1: r.ProtoMajor == 1}
	t.body = timedBody{t: t, rc: r.Body}
	if d, ok := w.(interface{ SetReadDeadline(time.Time) error }); ok {
		t.rd = d
	}
	r = r.WithContext(ctx)
	r.Body = &t.body
	t.state.Store(rtArmed)
	t.timer = time.AfterFunc(time.Until(dl), t.fire)
	defer t.release()
	h.next.ServeHTTP(t, r)
	t.finish()
}

// requestTimer is the request timeout of one request net/http serves. It
// is the handler's ResponseWriter, and its body reader is the request's
// Body. The handler's goroutine owns started and replied; the timer's
// goroutine only moves state from rtArmed to rtFired, holding mu, which the
// handler's goroutine takes to disarm, so that the timer's work is over
// before the handler returns.
type requestTimer struct {
	w      http.ResponseWriter
	rd     interface{ SetReadDeadline(time.Time) error } // w's, to unblock a body read; nil: none
	body   timedBody
	ctr    *ConnCounters
	cancel context.CancelCauseFunc
	dl     time.Time // the request's deadline
	h1     bool
	eof    atomic.Bool // the body was read to its end

	armedTimer

	started bool // a final status went out, the handler's or the 408
	replied bool // the 408 went out: what the handler writes is dropped
}

var (
	_ http.ResponseWriter             = (*requestTimer)(nil)
	_ http.Flusher                    = (*requestTimer)(nil)
	_ http.Hijacker                   = (*requestTimer)(nil)
	_ interface{ FlushError() error } = (*requestTimer)(nil)
)

// fire runs on the timer's goroutine.
func (t *requestTimer) fire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.state.CompareAndSwap(rtArmed, rtFired) {
		return
	}
	if t.ctr != nil {
		t.ctr.RequestTimeouts.Add(1)
	}
	t.cancel(ErrRequestTimeout)
	if t.rd != nil {
		// HTTP/1: the connection's read deadline; HTTP/2: closes the
		// stream's body.
		t.rd.SetReadDeadline(aLongTimeAgo)
	}
}

// armedTimer is the state both request timers share (requestTimer here,
// h1Conn's on the fast path): the timer's goroutine moves state from
// rtArmed to rtFired holding mu; disarm takes mu to move it from rtArmed to
// rtOff, so a firing timer's work is over when disarm returns.
type armedTimer struct {
	mu    sync.Mutex
	state atomic.Int32 // rtOff, rtArmed or rtFired
	timer *time.Timer
}

// disarm stops the timer unless it fired, and reports whether it did; it
// returns once a firing timer is done. Any goroutine may call it.
func (t *armedTimer) disarm() (fired bool) {
	if t.state.Load() == rtOff {
		return false
	}
	t.mu.Lock()
	st := t.state.Load()
	if st == rtArmed {
		t.state.Store(rtOff)
	}
	t.mu.Unlock()
	if st == rtArmed {
		t.timer.Stop()
	}
	return st == rtFired
}

// begin is called before the handler's response goes out; it reports false
// when the 408 went out instead.
func (t *requestTimer) begin() bool {
	if t.started {
		return !t.replied
	}
	t.started = true
	if t.disarm() {
		t.reply()
		return false
	}
	return true
}

// reply writes the 408.
func (t *requestTimer) reply() {
	t.started, t.replied = true, true
	timeoutHeader(t.w.Header(), t.h1)
	t.w.WriteHeader(http.StatusRequestTimeout)
	io.WriteString(t.w, requestTimeoutBody)
	t.flush()
}

func (t *requestTimer) flush() error {
	switch f := t.w.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
	}
	return nil
}

// finish ends a request whose handler returned: the 408 goes out if the
// timer fired and the handler wrote no final status.
func (t *requestTimer) finish() {
	if t.disarm() {
		if !t.started {
			t.reply()
		}
		return
	}
	if t.h1 && t.rd != nil && !t.eof.Load() {
		// The response started before the body was in, which disarmed the
		// timer. What is left of the body, that net/http discards to keep
		// the connection or that a reader the handler left behind waits
		// for, must still come by the request's deadline.
		t.rd.SetReadDeadline(t.dl)
	}
}

// release disarms the timer and ends the request's context, also when the
// handler panicked.
func (t *requestTimer) release() {
	t.disarm()
	t.cancel(nil)
}

// Header implements http.ResponseWriter.
func (t *requestTimer) Header() http.Header { return t.w.Header() }

// WriteHeader implements http.ResponseWriter: a final status disarms the
// timer, or becomes the 408 if it fired.
func (t *requestTimer) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		if !t.begin() {
			return
		}
	} else if t.replied || t.state.Load() == rtFired {
		return // no interim response for a request that timed out
	}
	t.w.WriteHeader(code)
}

// Write implements http.ResponseWriter; after a 408 it drops p.
func (t *requestTimer) Write(p []byte) (int, error) {
	if !t.begin() {
		return len(p), nil
	}
	return t.w.Write(p)
}

// FlushError flushes the response, starting it if need be.
func (t *requestTimer) FlushError() error {
	if !t.begin() {
		return nil
	}
	return t.flush()
}

// Flush implements http.Flusher.
func (t *requestTimer) Flush() { _ = t.FlushError() }

// Hijack hands the connection to the handler, which then owns it: the
// timer is disarmed first, or the 408 goes out and Hijack fails if it
// fired.
func (t *requestTimer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if t.replied || t.disarm() {
		if !t.started {
			t.reply()
		}
		return nil, nil, ErrRequestTimeout
	}
	return http.NewResponseController(t.w).Hijack()
}

// Unwrap returns the server's ResponseWriter, for http.ResponseController.
func (t *requestTimer) Unwrap() http.ResponseWriter { return t.w }

// timedBody is the request body under the request timer: it disarms the
// timer at its end, and fails with ErrRequestTimeout once the timer fired.
type timedBody struct {
	t  *requestTimer
	rc io.ReadCloser
}

func (b *timedBody) Read(p []byte) (int, error) {
	t := b.t
	if t.state.Load() == rtFired {
		return 0, ErrRequestTimeout
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		t.eof.Store(true)
		t.disarm()
	case err != nil && t.state.Load() == rtFired:
		err = ErrRequestTimeout
	}
	return n, err
}

func (b *timedBody) Close() error { return b.rc.Close() }
