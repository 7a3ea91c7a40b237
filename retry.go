package portico

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/route"
)

// The upstream request loop: Envoy's router filter with a retry policy.
//
// A route with neither a retry policy nor mirror policies takes the
// router's single-attempt path (router.once), which costs what it did
// before retries existed. Everything else runs upstreamLoop: attempts,
// retry decisions, backoff, the request-body replay buffer and shadows.
//
// Behaviour follows Envoy (router.cc, retry_state_impl.cc):
//
//   - Retry conditions are Envoy's retry_on names (route.Retry5xx ...).
//     "5xx" and "gateway-error" also retry failures without a response
//     (resets, connect failures, per-try timeouts), "reset" retries every
//     failure without a response except overflow, "connect-failure" only
//     connect failures and connect timeouts, "refused-stream" an HTTP/2
//     stream refused with REFUSED_STREAM. A response carrying
//     x-envoy-ratelimited is retried only under "envoy-ratelimited", one
//     carrying x-envoy-overloaded never. The gRPC conditions read the
//     grpc-status response header (trailers-only responses).
//   - The route timeout is global across attempts; a retry that could not
//     start before it passes is not made (Envoy would wait and answer 504;
//     the last answer is more useful). The per-try timeout bounds an
//     attempt until its response headers: once they are returned Envoy
//     ignores it too. It starts with the attempt, where Envoy starts it
//     once the whole request was received, so with a streamed upload it
//     covers the upload. The per-try idle timeout bounds the silence
//     before the headers and, for the attempt whose response is returned,
//     between body reads. Either is retriable, as a local reset in Envoy,
//     and answers 504 (UT) when it ends the loop.
//   - Backoff is Envoy's jittered exponential backoff: before retry k
//     (from 0) a uniform random wait in [0, min(base·2^k, max)), base 25 ms
//     and max 10× base unless the policy says otherwise. A retriable
//     response with Retry-After (seconds or an HTTP date) or
//     X-RateLimit-Reset waits that long instead, capped at 300 s (Envoy's
//     rate_limited_retry_back_off with its default max_interval), which
//     Envoy needs configured and Portico always does.
//   - Each retry avoids the previous attempt's endpoint (Envoy's
//     previous_hosts predicate, through cluster.Request.Exclude) and asks
//     the cluster's retry circuit breaker first, holding it through the
//     backoff until the retry's answer (Envoy's resetRetry); a refusal
//     ends the loop with the last answer and flag UO. Retries exhausted
//     on a retriable answer set flag URX and return that answer as it is.
//     The request headers x-envoy-retry-on, x-envoy-retry-grpc-on and
//     x-envoy-max-retries are not honoured: Envoy trusts them only from
//     internal clients, which the connection manager cannot yet tell.
//   - A request body is streamed to the first attempt and teed into a
//     replay buffer bounded by the route's buffer limit (Envoy's
//     per_request_buffer_limit_bytes; when unset, filter.DefaultBufferLimit,
//     1 MiB, Envoy's connection buffer default). A body beyond the bound
//     ends retries and shadowing for the request (retry_or_shadow_abandoned).
//   - Nothing is retried once the response is returned to the chain (the
//     downstream may have seen it), and upgrade requests are never retried.
//   - On routes with a retry policy, x-envoy-attempt-count goes on every
//     upstream attempt and on the response. Envoy makes both opt-in
//     (include_request_attempt_count, include_attempt_count_in_response
//     on the virtual host); Portico has no such switch yet and sends them
//     whenever retries are possible, the only time they say anything.
//     x-envoy-upstream-service-time (ms since the first attempt started)
//     is on every upstream response, as in Envoy by default.

// Envoy's constants used by the loop.
const (
	// rateLimitedMaxInterval caps a Retry-After or X-RateLimit-Reset wait:
	// Envoy's rate_limited_retry_back_off max_interval default.
	rateLimitedMaxInterval = 300 * time.Second
	// drainLimit is the largest retriable response body read to its end
	// before the retry, so that its connection can be reused; larger or
	// unknown-length bodies are closed.
	drainLimit = 4 << 10
)

// Headers the router sets or reads, in canonical form.
const (
	hdrAttemptCount     = "X-Envoy-Attempt-Count"
	hdrUpstreamSvcTime  = "X-Envoy-Upstream-Service-Time"
	hdrEnvoyRateLimited = "X-Envoy-Ratelimited"
	hdrEnvoyOverloaded  = "X-Envoy-Overloaded"
	hdrGRPCStatus       = "Grpc-Status"
	hdrRetryAfter       = "Retry-After"
	hdrRateLimitReset   = "X-Ratelimit-Reset"
)

// unixTimestampFrom is where X-RateLimit-Reset values stop being a number
// of seconds and become a Unix time (2001-09-09).
const unixTimestampFrom = 1_000_000_000

var (
	errPerTryTimeout     = errors.New("upstream per-try timeout")
	errPerTryIdleTimeout = errors.New("upstream per-try idle timeout")
)

// retryOn is a set of retry conditions.
type retryOn uint32

const (
	on5xx retryOn = 1 << iota
	onGatewayError
	onReset
	onConnectFailure
	onRetriable4xx
	onRefusedStream
	onRetriableStatusCodes
	onRetriableHeaders
	onEnvoyRateLimited
	onGRPCCancelled
	onGRPCDeadlineExceeded
	onGRPCInternal
	onGRPCResourceExhausted
	onGRPCUnavailable

	onGRPC = onGRPCCancelled | onGRPCDeadlineExceeded | onGRPCInternal | onGRPCResourceExhausted | onGRPCUnavailable
	// onNoResponse are the conditions that retry any failure without a
	// response (Envoy's wouldRetryFromReset).
	onNoResponse = on5xx | onGatewayError | onReset
)

var retryOnNames = map[string]retryOn{
	route.Retry5xx:                  on5xx,
	route.RetryGatewayError:         onGatewayError,
	route.RetryReset:                onReset,
	route.RetryConnectFailure:       onConnectFailure,
	route.RetryRetriable4xx:         onRetriable4xx,
	route.RetryRefusedStream:        onRefusedStream,
	route.RetryRetriableStatusCodes: onRetriableStatusCodes,
	route.RetryRetriableHeaders:     onRetriableHeaders,
	route.RetryEnvoyRateLimited:     onEnvoyRateLimited,
	route.RetryCancelled:            onGRPCCancelled,
	route.RetryDeadlineExceeded:     onGRPCDeadlineExceeded,
	route.RetryInternal:             onGRPCInternal,
	route.RetryResourceExhausted:    onGRPCResourceExhausted,
	route.RetryUnavailable:          onGRPCUnavailable,
}

// retryPolicy is a route.RetryPolicy compiled for the data path. It is
// immutable.
type retryPolicy struct {
	src        *route.RetryPolicy
	on         retryOn
	retries    int
	perTry     time.Duration
	perTryIdle time.Duration
	codes      []int
	headers    *route.ResponseHeaderMatcher
	base, max  time.Duration
}

// compileRetry compiles p, which the route package validated; nil gives nil.
func compileRetry(p *route.RetryPolicy) *retryPolicy {
	if p == nil {
		return nil
	}
	rp := &retryPolicy{
		src:        p,
		retries:    p.Retries(),
		perTry:     p.PerTryTimeout,
		perTryIdle: p.PerTryIdleTimeout,
		codes:      slices.Clone(p.RetriableStatusCodes),
	}
	for _, s := range p.RetryOn {
		rp.on |= retryOnNames[s]
	}
	if len(p.RetriableHeaders) > 0 {
		rp.headers = route.NewResponseHeaderMatcher(p.RetriableHeaders)
	}
	rp.base, rp.max = p.Backoff()
	return rp
}

// compileRetries compiles the retry policy of every route of t, by index.
func compileRetries(t *route.Table) []*retryPolicy {
	routes := t.Routes()
	out := make([]*retryPolicy, len(routes))
	for i, r := range routes {
		out[i] = compileRetry(r.Retry())
	}
	return out
}

// retryFor returns r's compiled retry policy, or nil.
func (st *hcmState) retryFor(r *route.Route) *retryPolicy {
	p := r.Retry()
	if p == nil {
		return nil
	}
	if i := r.Index(); i < len(st.retries) {
		if rp := st.retries[i]; rp != nil && rp.src == p {
			return rp
		}
	}
	return compileRetry(p) // a route of another table, set by a filter
}

// retriableResponse reports whether resp is retriable under the policy.
func (p *retryPolicy) retriableResponse(resp *http.Response) bool {
	h := resp.Header
	if _, ok := h[hdrEnvoyOverloaded]; ok {
		return false
	}
	if _, ok := h[hdrEnvoyRateLimited]; ok {
		return p.on&onEnvoyRateLimited != 0
	}
	code := resp.StatusCode
	switch {
	case p.on&on5xx != 0 && code >= 500 && code <= 599,
		p.on&onGatewayError != 0 && (code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout),
		p.on&onRetriable4xx != 0 && code == http.StatusConflict,
		p.on&onRetriableStatusCodes != 0 && slices.Contains(p.codes, code),
		p.on&onRetriableHeaders != 0 && p.headers != nil && p.headers.MatchAny(h):
		return true
	}
	if p.on&onGRPC != 0 {
		if v := h[hdrGRPCStatus]; len(v) > 0 {
			switch v[0] {
			case "1":
				return p.on&onGRPCCancelled != 0
			case "4":
				return p.on&onGRPCDeadlineExceeded != 0
			case "8":
				return p.on&onGRPCResourceExhausted != 0
			case "13":
				return p.on&onGRPCInternal != 0
			case "14":
				return p.on&onGRPCUnavailable != 0
			}
		}
	}
	return false
}

// retriableError reports whether a failed attempt is retriable under the
// policy. perTry marks a per-try (idle) timeout.
func (p *retryPolicy) retriableError(err error, perTry bool) bool {
	if perTry {
		return p.on&onNoResponse != 0
	}
	var ue *cluster.UpstreamError
	if !errors.As(err, &ue) {
		return false
	}
	switch ue.Kind {
	case cluster.ConnectFailure:
		return p.on&(onNoResponse|onConnectFailure) != 0
	case cluster.Reset, cluster.ProtocolError:
		if p.on&onNoResponse != 0 {
			return true
		}
		return p.on&onRefusedStream != 0 && refusedStream(err)
	}
	// NoHealthyUpstream, Overflow, the route timeout and a client that
	// went away are never retried.
	return false
}

// refusedStream reports whether err is an HTTP/2 stream the server
// refused with REFUSED_STREAM. net/http's HTTP/2 error types are not
// exported; the code's name is in the message.
func refusedStream(err error) bool {
	return strings.Contains(err.Error(), "REFUSED_STREAM")
}

// backoff is Envoy's JitteredExponentialBackOffStrategy.
type backoff struct {
	next, max time.Duration
}

// delay returns the wait before the next retry.
func (b *backoff) delay() time.Duration {
	cur := b.next
	if b.next < b.max/2 {
		b.next *= 2
	} else {
		b.next = b.max
	}
	if cur <= 0 {
		return 0
	}
	return min(time.Duration(rand.Int64N(int64(cur))), b.max)
}

// rateLimitedDelay returns the wait a retriable response asks for with
// Retry-After (delay-seconds or an HTTP date) or X-RateLimit-Reset, capped
// at rateLimitedMaxInterval. X-RateLimit-Reset is read as a Unix time
// (Envoy's UNIX_TIMESTAMP format) from 10^9 on, and below that as a
// number of seconds, as many APIs send it. A time in the past or an
// unparsable value is ignored.
func rateLimitedDelay(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h[hdrRetryAfter]; len(v) > 0 {
		s := strings.TrimSpace(v[0])
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			return min(time.Duration(n)*time.Second, rateLimitedMaxInterval), true
		}
		if t, err := http.ParseTime(s); err == nil {
			if d := t.Sub(now); d >= 0 {
				return min(d, rateLimitedMaxInterval), true
			}
		}
	}
	if v := h[hdrRateLimitReset]; len(v) > 0 {
		if n, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64); err == nil && n >= 0 {
			d := time.Duration(min(n, int64(rateLimitedMaxInterval/time.Second))) * time.Second
			if n >= unixTimestampFrom {
				d = time.Unix(n, 0).Sub(now)
			}
			if d >= 0 {
				return min(d, rateLimitedMaxInterval), true
			}
		}
	}
	return 0, false
}

// isUpgradeRequest reports whether req asks for a protocol upgrade
// (WebSocket) or a tunnel: never retried nor shadowed.
func isUpgradeRequest(req *http.Request) bool {
	if _, ok := req.Header["Upgrade"]; ok {
		return true
	}
	return req.Method == http.MethodConnect
}

func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody
}

// upstreamLoop is one exchange's upstream request loop. It lives on the
// request's goroutine.
type upstreamLoop struct {
	rt       *router
	x        *filter.Exchange
	r        *route.Route
	lc       *liveCluster
	rp       *retryPolicy // nil: one attempt
	sel      selection
	deadline time.Time // the route deadline; zero for none
	body     *replayBuffer
	view     *replayReader // the current attempt's body, when teed
	backoff  backoff
}

// upstream runs the upstream request loop for routes with a retry policy
// or mirror policies.
func (rt *router) upstream(ctx context.Context, x *filter.Exchange, r *route.Route, lc *liveCluster, rp *retryPolicy, mirrors []route.MirrorPolicy, sel selection) (*http.Response, error) {
	out := x.Out
	x.UpstreamStart = time.Now()
	l := upstreamLoop{rt: rt, x: x, r: r, lc: lc, rp: rp, sel: sel}
	if d := r.Timeout(); d > 0 {
		l.deadline = x.UpstreamStart.Add(d)
	}
	upgrade := isUpgradeRequest(out)
	if upgrade {
		l.rp = nil
	}
	shadow := len(mirrors) > 0 && !upgrade
	if hasBody(out) && out.GetBody == nil && (shadow || l.rp != nil && l.rp.retries > 0) {
		limit := x.BufferLimit
		if limit <= 0 {
			limit = filter.DefaultBufferLimit
		}
		l.body = newReplayBuffer(out.Body, limit, lc.stats.retry.abandoned)
	}
	if shadow {
		rt.mirror(x, r, mirrors, l.body, l.deadline)
	}
	if l.rp != nil {
		l.backoff = backoff{next: l.rp.base, max: l.rp.max}
	}
	return l.run(ctx)
}

func (l *upstreamLoop) run(ctx context.Context) (*http.Response, error) {
	st := l.lc.stats
	var (
		release func() // the retry circuit breaker's, held by a retry attempt
		exclude string // the previous attempt's endpoint
	)
	for n := 1; ; n++ {
		req, err := l.request(n)
		if err != nil {
			if release != nil {
				release()
			}
			return nil, err
		}
		start := time.Now()
		resp, err, timedOut := l.send(req, exclude)
		if release != nil {
			release()
			release = nil
		}
		exclude = l.x.Endpoint
		var (
			reply       error
			wait        time.Duration
			rateLimited bool
		)
		if err == nil {
			st.charge(resp.StatusCode)
			st.rqTime.Observe(float64(time.Since(start)) / float64(time.Millisecond))
			if l.rp == nil || !l.rp.retriableResponse(resp) {
				if n > 1 {
					st.retry.success.Inc()
				}
				return l.finish(resp, n), nil
			}
			wait, rateLimited = rateLimitedDelay(resp.Header, time.Now())
		} else {
			reply = l.failure(err, timedOut)
			if l.rp == nil || !l.rp.retriableError(err, timedOut != nil) {
				return nil, reply
			}
		}
		wait, release = l.retryAllowed(n, wait, rateLimited)
		if release == nil {
			if resp != nil {
				return l.finish(resp, n), nil
			}
			return nil, reply
		}
		if resp != nil {
			discardResponse(resp)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				release()
				return nil, context.Cause(ctx)
			}
		}
	}
}

// retryAllowed decides whether attempt n, whose answer is retriable, is
// followed by a retry, checking in Envoy's order: the body can be
// replayed, retries remain, the retry circuit breaker allows it. It
// returns the wait before the retry (rateLimitedWait, when rateLimited,
// else the next exponential backoff) and the circuit breaker's release
// func, nil when there is no retry.
func (l *upstreamLoop) retryAllowed(n int, rateLimitedWait time.Duration, rateLimited bool) (time.Duration, func()) {
	st := l.lc.stats
	if l.body != nil && !l.body.replayable() {
		return 0, nil // counted as retry_or_shadow_abandoned when it overflowed
	}
	if n > l.rp.retries {
		st.retry.limitExceeded.Inc()
		l.x.Flags |= filter.FlagUpstreamRetryLimitExceeded
		return 0, nil
	}
	wait := rateLimitedWait
	if !rateLimited {
		wait = l.backoff.delay()
	}
	if !l.deadline.IsZero() && !time.Now().Add(wait).Before(l.deadline) {
		return 0, nil // the retry could not start within the route timeout
	}
	release, ok := l.lc.c.AllowRetryFor(l.sel.priority)
	if !ok {
		st.retry.overflow.Inc()
		l.x.Flags |= filter.FlagUpstreamOverflow
		return 0, nil
	}
	if l.view != nil {
		// The abandoned attempt may not read on: the bytes it would take
		// are the retry's. A read it already started may still push the
		// body over the limit.
		l.view.abandon()
		if !l.body.replayable() {
			release()
			return 0, nil
		}
	}
	st.retry.retry.Inc() // as Envoy, when the retry is scheduled
	if rateLimited {
		st.retry.backoffRateLimited.Inc()
	} else {
		st.retry.backoffExponential.Inc()
	}
	return wait, release
}

// request returns the request for attempt n: x.Out itself for the first,
// a copy with its own header and URL for retries (the transport may still
// hold the previous one), with the body replayed: from the replay buffer
// when it is teed, else from GetBody when a filter buffered it whole.
func (l *upstreamLoop) request(n int) (*http.Request, error) {
	out := l.x.Out
	req := out
	if n > 1 {
		req = out.WithContext(out.Context())
		if out.URL != nil {
			u := *out.URL
			req.URL = &u
		}
		req.Header = out.Header.Clone()
	}
	switch {
	case l.body != nil:
		l.view = l.body.reader(false)
		req.Body = l.view
		req.GetBody = nil
	case n > 1 && hasBody(out) && out.GetBody != nil:
		b, err := out.GetBody()
		if err != nil {
			return nil, fmt.Errorf("replay request body: %w", err)
		}
		req.Body = b
	}
	if l.rp != nil {
		if req.Header == nil {
			req.Header = make(http.Header)
		}
		req.Header[hdrAttemptCount] = []string{strconv.Itoa(n)}
	}
	return req, nil
}

// send makes one attempt. timedOut is errPerTryTimeout or
// errPerTryIdleTimeout when that ended the attempt.
func (l *upstreamLoop) send(req *http.Request, exclude string) (resp *http.Response, err, timedOut error) {
	if l.rp == nil || l.rp.perTry <= 0 && l.rp.perTryIdle <= 0 {
		resp, _, err = l.sendOnce(req, exclude)
		return resp, err, nil
	}
	// The attempt gets its own context, canceled by the per-try timers.
	actx, cancel := context.WithCancelCause(req.Context())
	var tTry, tIdle *time.Timer
	if d := l.rp.perTry; d > 0 {
		tTry = time.AfterFunc(d, func() { cancel(errPerTryTimeout) })
	}
	if d := l.rp.perTryIdle; d > 0 {
		tIdle = time.AfterFunc(d, func() { cancel(errPerTryIdleTimeout) })
	}
	resp, endpoint, err := l.sendOnce(req.WithContext(actx), exclude)
	// A timer that cannot be stopped has fired, or is firing: the attempt
	// timed out, even if the response headers just made it.
	if tTry != nil && !tTry.Stop() {
		timedOut = errPerTryTimeout
	}
	if tIdle != nil && !tIdle.Stop() && timedOut == nil {
		timedOut = errPerTryIdleTimeout
	}
	switch {
	case timedOut != nil:
		cancel(timedOut)
		if resp != nil {
			resp.Body.Close()
		}
		if err == nil {
			err = &cluster.UpstreamError{Cluster: l.lc.c.Name(), Endpoint: endpoint, Kind: cluster.Timeout, Err: timedOut}
		}
		return nil, err, timedOut
	case err != nil:
		cancel(nil)
		return nil, err, nil
	case resp.Body == nil || resp.Body == http.NoBody:
		cancel(nil)
		return resp, nil, nil
	}
	// The attempt's context lives as long as its body. The per-try timeout
	// no longer applies (Envoy ignores it once the response has started
	// downstream); the per-try idle timeout does.
	resp.Body = &attemptBody{rc: resp.Body, ctx: actx, cancel: cancel, idle: tIdle, idleTimeout: l.rp.perTryIdle}
	return resp, nil, nil
}

// sendOnce sends req to the cluster and records the attempt on the
// Exchange.
func (l *upstreamLoop) sendOnce(req *http.Request, exclude string) (*http.Response, string, error) {
	st := l.lc.stats
	creq := l.sel.request(req)
	creq.Deadline, creq.Exclude = l.deadline, exclude
	st.rqTotal.Inc()
	st.rqActive.Inc()
	resp, err := l.lc.c.Send(&creq)
	st.rqActive.Dec()
	if creq.Endpoint != "" {
		l.x.Endpoint = creq.Endpoint
	}
	l.x.Attempts += creq.Attempts
	return resp, creq.Endpoint, err
}

// failure counts a failed attempt and returns the local reply for it.
func (l *upstreamLoop) failure(err, timedOut error) error {
	st := l.lc.stats
	switch timedOut {
	case errPerTryTimeout:
		st.retry.perTryTimeout.Inc()
		return &filter.ReplyError{Status: http.StatusGatewayTimeout, Flags: filter.FlagUpstreamRequestTimeout,
			Body: []byte("upstream request timeout"), Details: "upstream_per_try_timeout"}
	case errPerTryIdleTimeout:
		st.retry.perTryIdleTimeout.Inc()
		return &filter.ReplyError{Status: http.StatusGatewayTimeout, Flags: filter.FlagUpstreamRequestTimeout,
			Body: []byte("upstream request timeout"), Details: "upstream_per_try_idle_timeout"}
	}
	return upstreamFailure(st, err)
}

// finish prepares the response returned to the chain.
func (l *upstreamLoop) finish(resp *http.Response, attempts int) *http.Response {
	x := l.x
	removeHopHeaders(resp)
	l.r.RewriteResponse(resp.Header, x.In, x.Endpoint)
	setServiceTime(resp.Header, x.UpstreamStart)
	if l.rp != nil {
		resp.Header[hdrAttemptCount] = []string{strconv.Itoa(attempts)}
	}
	return resp
}

// setServiceTime sets x-envoy-upstream-service-time: milliseconds from the
// first attempt's start to the response headers.
func setServiceTime(h http.Header, start time.Time) {
	if h != nil {
		h[hdrUpstreamSvcTime] = []string{strconv.FormatInt(time.Since(start).Milliseconds(), 10)}
	}
}

// discardResponse ends a retriable response before the retry: a small
// body of known length is read to its end, so that its connection can be
// reused; anything else is closed, which closes (HTTP/1.1) or resets
// (HTTP/2) the exchange.
func discardResponse(resp *http.Response) {
	if resp.ContentLength > 0 && resp.ContentLength <= drainLimit {
		io.CopyN(io.Discard, resp.Body, drainLimit+1)
	}
	resp.Body.Close()
}

// attemptBody is the response body of an attempt that has its own
// context: it enforces the per-try idle timeout between reads and ends
// the context with the body.
type attemptBody struct {
	rc          io.ReadCloser
	ctx         context.Context
	cancel      context.CancelCauseFunc
	idle        *time.Timer // nil without a per-try idle timeout
	idleTimeout time.Duration
}

func (b *attemptBody) Read(p []byte) (int, error) {
	if b.idle != nil {
		b.idle.Reset(b.idleTimeout)
	}
	n, err := b.rc.Read(p)
	if b.idle != nil {
		b.idle.Stop()
	}
	switch {
	case err == io.EOF:
		b.cancel(nil)
	case err != nil && context.Cause(b.ctx) == errPerTryIdleTimeout:
		// Reported as a timeout, so the chain flags UT.
		err = fmt.Errorf("%w: %w", errPerTryIdleTimeout, context.DeadlineExceeded)
	}
	return n, err
}

func (b *attemptBody) Close() error {
	err := b.rc.Close()
	if b.idle != nil {
		b.idle.Stop()
	}
	b.cancel(nil)
	return err
}

// replayBuffer tees a request body, as attempts read it, into a buffer
// bounded by limit, so that a retry or a shadow can send it again (Envoy's
// retry and shadow buffering). The body is never read ahead: the first
// attempt streams it as the downstream sends it.
//
// Each attempt and each shadow reads through its own replayReader. Only
// one reader reads the source at a time; readers wait on cond for it.
// Once the body outgrows limit the buffer stops growing: the attempt
// reading the source goes on, nothing can replay.
type replayBuffer struct {
	mu      sync.Mutex
	cond    sync.Cond
	src     io.Reader
	buf     []byte
	n       int64 // bytes read from src so far
	limit   int64
	over    bool  // the body outgrew limit
	reading bool  // a reader is in src.Read
	err     error // src's final error, io.EOF at the end
	ended   bool  // the exchange ended: nothing more will be read

	abandoned prometheus.Counter // retry_or_shadow_abandoned
}

func newReplayBuffer(src io.Reader, limit int64, abandoned prometheus.Counter) *replayBuffer {
	b := &replayBuffer{src: src, limit: limit, abandoned: abandoned}
	b.cond.L = &b.mu
	return b
}

// reader returns a new reader from the start of the body. A passive one
// (a shadow) never reads the source: it waits for attempts to read it and
// fails when the exchange ends first.
func (b *replayBuffer) reader(passive bool) *replayReader {
	return &replayReader{b: b, passive: passive}
}

// replayable reports whether every byte read so far is buffered.
func (b *replayBuffer) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.over
}

// end wakes passive readers for good: the exchange is over.
func (b *replayBuffer) end() {
	b.mu.Lock()
	b.ended = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

var (
	errBodyAbandoned = errors.New("request body: attempt abandoned")
	errBodyOverLimit = errors.New("request body: larger than the retry and shadow buffer limit")
	errBodyEnded     = errors.New("request body: exchange ended before the body was read")
)

// replayReader reads a replayBuffer from the start, as one attempt's or
// one shadow's request body. The transport may call Read and Close from
// its own goroutine.
type replayReader struct {
	b       *replayBuffer
	pos     int64
	passive bool
	dead    bool // guarded by b.mu
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	for {
		switch {
		case r.dead:
			b.mu.Unlock()
			return 0, errBodyAbandoned
		case r.pos < int64(len(b.buf)):
			n := copy(p, b.buf[r.pos:])
			r.pos += int64(n)
			b.mu.Unlock()
			return n, nil
		case r.pos < b.n:
			b.mu.Unlock()
			return 0, errBodyOverLimit
		case b.err != nil:
			err := b.err
			b.mu.Unlock()
			return 0, err
		case r.passive && b.ended:
			b.mu.Unlock()
			return 0, errBodyEnded
		case r.passive || b.reading:
			b.cond.Wait()
			continue
		}
		break
	}
	if len(p) == 0 {
		b.mu.Unlock()
		return 0, nil
	}
	b.reading = true
	b.mu.Unlock()
	n, err := b.src.Read(p)
	b.mu.Lock()
	b.reading = false
	if n > 0 {
		if !b.over {
			if int64(len(b.buf)+n) > b.limit {
				b.over = true
				if b.abandoned != nil {
					b.abandoned.Inc()
				}
			} else {
				b.buf = append(b.buf, p[:n]...)
			}
		}
		b.n += int64(n)
		r.pos += int64(n)
	}
	if err != nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	return n, err
}

// Close detaches the reader; the downstream body stays open for retries
// (the server closes it when the exchange ends).
func (r *replayReader) Close() error {
	r.abandon()
	return nil
}

// abandon makes later reads fail, so an attempt given up cannot consume
// body bytes a retry needs.
func (r *replayReader) abandon() {
	r.b.mu.Lock()
	r.dead = true
	r.b.cond.Broadcast()
	r.b.mu.Unlock()
}

// retryVecs are every cluster's retry and shadow counters, with Envoy's
// names:
//
//	<prefix>_cluster_upstream_rq_retry{<prefix>_cluster_name}
//	<prefix>_cluster_retry_or_shadow_abandoned{<prefix>_cluster_name} ...
type retryVecs struct {
	retry, success, overflow, limitExceeded *prometheus.CounterVec
	perTryTimeout, perTryIdleTimeout        *prometheus.CounterVec
	backoffExponential, backoffRateLimited  *prometheus.CounterVec
	abandoned, shadowOverflow               *prometheus.CounterVec
}

func newRetryVecs(counter func(name, help string, labels ...string) *prometheus.CounterVec, label string) retryVecs {
	return retryVecs{
		retry:              counter("cluster_upstream_rq_retry", "Upstream request retries.", label),
		success:            counter("cluster_upstream_rq_retry_success", "Requests that succeeded after a retry.", label),
		overflow:           counter("cluster_upstream_rq_retry_overflow", "Retries refused by the retry circuit breaker.", label),
		limitExceeded:      counter("cluster_upstream_rq_retry_limit_exceeded", "Retriable requests that ran out of retries.", label),
		perTryTimeout:      counter("cluster_upstream_rq_per_try_timeout", "Upstream attempts that hit the per-try timeout.", label),
		perTryIdleTimeout:  counter("cluster_upstream_rq_per_try_idle_timeout", "Upstream attempts that hit the per-try idle timeout.", label),
		backoffExponential: counter("cluster_upstream_rq_retry_backoff_exponential", "Retries that waited an exponential backoff.", label),
		backoffRateLimited: counter("cluster_upstream_rq_retry_backoff_ratelimited", "Retries that waited what a rate-limited response asked for.", label),
		abandoned:          counter("cluster_retry_or_shadow_abandoned", "Requests whose body outgrew the retry and shadow buffer.", label),
		shadowOverflow:     counter("cluster_upstream_rq_shadow_overflow", "Shadow requests dropped because too many were in flight (Portico's own; Envoy has no bound).", label),
	}
}

// retryStats are one cluster's retry and shadow counters.
type retryStats struct {
	retry, success, overflow, limitExceeded prometheus.Counter
	perTryTimeout, perTryIdleTimeout        prometheus.Counter
	backoffExponential, backoffRateLimited  prometheus.Counter
	abandoned, shadowOverflow               prometheus.Counter
}

func (v *retryVecs) bind(name string) retryStats {
	return retryStats{
		retry:              v.retry.WithLabelValues(name),
		success:            v.success.WithLabelValues(name),
		overflow:           v.overflow.WithLabelValues(name),
		limitExceeded:      v.limitExceeded.WithLabelValues(name),
		perTryTimeout:      v.perTryTimeout.WithLabelValues(name),
		perTryIdleTimeout:  v.perTryIdleTimeout.WithLabelValues(name),
		backoffExponential: v.backoffExponential.WithLabelValues(name),
		backoffRateLimited: v.backoffRateLimited.WithLabelValues(name),
		abandoned:          v.abandoned.WithLabelValues(name),
		shadowOverflow:     v.shadowOverflow.WithLabelValues(name),
	}
}
