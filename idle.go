package portico

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// The stream idle timeout: Envoy's stream_idle_timeout
// (listener.HTTPConfig.StreamIdleTimeout, 5 min by default) and the
// route's idle_timeout (route.Rule.IdleTimeout), which overrides it; a
// negative value disables either.
//
// The router starts the timer with the upstream request and restarts it
// whenever bytes move on the stream: a read of the downstream request
// body, the upstream response headers, a read of the upstream response
// body. When it fires, the upstream request is canceled and the stream
// ends:
//
//   - before the response started, with a local reply "stream timeout",
//     flag SI, details stream_idle_timeout: 504 when the request was
//     received whole, 408 while its body was still coming (Envoy's
//     override_request_timeout_by_gateway_timeout, on since 1.22);
//   - after, by aborting the response (HTTP/1 connection closed, h2
//     stream reset), with flag SI and the same details.
//
// Both count http.<prefix>.downstream_rq_idle_timeout. Unlike Envoy's,
// the timer does not run while request filters read the request body
// before the upstream request, and upgraded (WebSocket) streams are not
// bound by it. A request body that stops coming is cut at once towards an
// HTTP/2 upstream; Go's HTTP/1.1 transport waits for the body read it
// started, so there the stream ends when that read does (the listener's
// RequestTimeout bounds it).
//
// A stream with the timer costs a timer, a context and a copy of the
// outgoing request. The route timeout bounds the same stretch (upstream
// request to end of response body), so when it is shorter than the idle
// timeout no timer is made: with Envoy's defaults (15 s route timeout,
// 5 min idle timeout) the request path has none.

var errStreamIdleTimeout = errors.New("stream idle timeout")

var (
	// streamIdleReply answers a request received whole whose stream went
	// idle before the response started.
	streamIdleReply = &filter.ReplyError{Status: http.StatusGatewayTimeout, Flags: filter.FlagStreamIdleTimeout,
		Body: []byte("stream timeout"), Details: "stream_idle_timeout"}
	// streamIdleRequestReply answers one whose body was still coming.
	streamIdleRequestReply = &filter.ReplyError{Status: http.StatusRequestTimeout, Flags: filter.FlagStreamIdleTimeout,
		Body: []byte("stream timeout"), Details: "stream_idle_timeout"}
	// errStreamIdleAbort ends a response body when the stream went idle
	// after the response started; the chain aborts the stream with the
	// reply's flag and details.
	errStreamIdleAbort = fmt.Errorf("%w after the response started: %w", errStreamIdleTimeout, streamIdleReply)
)

// streamIdleTimeout returns the connection manager's effective stream
// idle timeout, zero when disabled.
func streamIdleTimeout(cfg *listener.HTTPConfig) time.Duration {
	switch d := cfg.StreamIdleTimeout; {
	case d == 0:
		return listener.DefaultStreamIdleTimeout
	case d < 0:
		return 0
	default:
		return d
	}
}

// idleTimeout returns the idle timeout the router enforces for a request
// on r: the route's, else the connection manager's; zero when disabled or
// when the route timeout would end the stream first.
func (st *hcmState) idleTimeout(r *route.Route) time.Duration {
	d := r.IdleTimeout()
	if d == 0 {
		d = st.streamIdle
	}
	if d <= 0 {
		return 0
	}
	if t := r.Timeout(); t > 0 && d >= t {
		return 0
	}
	return d
}

// streamIdle is one stream's idle timer. It belongs to the request's
// goroutine, except that the upstream transport reads the request body
// through it on its own goroutine: what both touch is the timer (safe for
// concurrent use), the context and reqDone.
type streamIdle struct {
	d       time.Duration
	t       *time.Timer
	ctx     context.Context // the upstream request's; ends with the stream
	cancel  context.CancelCauseFunc
	stats   *hcmStats
	reqDone atomic.Bool // the request was received whole
	req     idleRequestBody
	resp    idleResponseBody
}

// startIdle starts the idle timer of x's stream: x.Out becomes a copy
// bound to the timer's context, with its body read through the timer.
func (rt *router) startIdle(x *filter.Exchange, d time.Duration) *streamIdle {
	s := &streamIdle{d: d, stats: rt.st.stats}
	s.ctx, s.cancel = context.WithCancelCause(x.Out.Context())
	out := x.Out.WithContext(s.ctx)
	if hasBody(out) && out.GetBody == nil {
		s.req = idleRequestBody{s: s, rc: out.Body}
		out.Body = &s.req
	} else {
		// No body, or one a filter read whole.
		s.reqDone.Store(true)
	}
	x.Out = out
	s.resp.s = s
	s.t = time.AfterFunc(d, s.expire)
	return s
}

func (s *streamIdle) expire() { s.cancel(errStreamIdleTimeout) }

// touch restarts the timer: bytes moved.
func (s *streamIdle) touch() {
	if s.ctx.Err() == nil {
		s.t.Reset(s.d)
	}
}

// response takes the upstream answer: a stream that went idle before it
// gets the local reply for that; a response with a body keeps the timer
// running until the body ends.
func (s *streamIdle) response(resp *http.Response, err error) (*http.Response, error) {
	// A timer that cannot be stopped has fired, or is firing: the stream
	// timed out, even if the response headers just made it.
	if !s.t.Stop() || context.Cause(s.ctx) == errStreamIdleTimeout {
		s.cancel(errStreamIdleTimeout)
		if resp != nil {
			resp.Body.Close()
		}
		s.stats.rqIdle.Inc()
		if s.reqDone.Load() {
			return nil, streamIdleReply
		}
		return nil, streamIdleRequestReply
	}
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		s.cancel(nil)
		return resp, err
	}
	s.t.Reset(s.d)
	s.resp.rc = resp.Body
	resp.Body = &s.resp
	return resp, nil
}

// idleRequestBody is the downstream request body as the upstream
// transport reads it: every read that moves bytes restarts the timer.
type idleRequestBody struct {
	s  *streamIdle
	rc io.ReadCloser
}

func (b *idleRequestBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.s.touch()
	}
	if err == io.EOF {
		b.s.reqDone.Store(true)
	}
	return n, err
}

// Close closes the downstream body, unless the stream ended: then a read
// may be blocked on the downstream, holding the body, and the transport
// would wait for it in Close. The server closes the body when the
// exchange ends.
func (b *idleRequestBody) Close() error {
	if b.s.ctx.Err() != nil {
		return nil
	}
	return b.rc.Close()
}

// idleResponseBody is the upstream response body as the chain reads it:
// every read that moves bytes restarts the timer, and a read the timer
// cut fails with errStreamIdleAbort.
type idleResponseBody struct {
	s       *streamIdle
	rc      io.ReadCloser
	counted bool
}

func (b *idleResponseBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	s := b.s
	switch {
	case err == nil:
		if n > 0 {
			s.touch()
		}
	case err == io.EOF:
		s.t.Stop()
	case context.Cause(s.ctx) == errStreamIdleTimeout:
		if !b.counted {
			b.counted = true
			s.stats.rqIdle.Inc()
		}
		err = errStreamIdleAbort
	}
	return n, err
}

// Close closes the body, then ends the stream's context and timer.
func (b *idleResponseBody) Close() error {
	err := b.rc.Close()
	b.s.cancel(nil)
	b.s.t.Stop()
	return err
}
