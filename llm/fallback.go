package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Defaults of Resilience fields.
const (
	// DefaultMaxRetryWait is the longest Retry-After a retry waits for
	// when Resilience.MaxRetryWait is zero. A provider asking for longer
	// is skipped for a fallback instead.
	DefaultMaxRetryWait = 10 * time.Second
	// retryBackoffBase and retryBackoffMax bound the jittered exponential
	// backoff of a retry without Retry-After: Envoy's defaults.
	retryBackoffBase = 25 * time.Millisecond
	retryBackoffMax  = 250 * time.Millisecond
)

// Resilience configures what the gateway does when a provider fails.
//
// A request goes first to one deployment of its model (a weighted choice
// among Model.Deployments). When that attempt fails before any byte of
// the response reached the client — status 429, 408, 5xx or Anthropic's
// 529, no connection, a timeout, the provider rejecting the gateway's
// credentials (401, 403), or a context-length error — the gateway
//
//  1. retries the same deployment up to Retries times, on 429, 408, 5xx
//     and transport failures only, after the provider's Retry-After
//     (retry-after-ms, Retry-After in seconds or as a date) when it is at
//     most MaxRetryWait, else after a jittered backoff of 25 ms doubling
//     up to 250 ms; a longer Retry-After skips to step 2;
//  2. tries the model's other deployments, by descending weight;
//  3. tries the Model.Fallbacks in order, each routed as a request for
//     that model would be (a weighted choice among its deployments, then
//     the others), translating the request when the fallback speaks
//     another schema.
//
// A context-length error skips step 1. The client sees the first success,
// or the last failure when every candidate failed. A stream that already
// started is never retried: its bytes reached the client.
//
// Deployments that fail repeatedly cool down (Cooldown): they get no
// traffic until a probe succeeds. Retries and fallbacks are sent through
// the clusters of the ClusterSource given to Gateway.Bind.
type Resilience struct {
	// Retries is the number of retries of the same deployment; zero means
	// none (the route's own retry policy still applies to the first
	// attempt).
	Retries int `json:"retries,omitempty"`
	// MaxRetryWait is the longest Retry-After honoured; zero means
	// DefaultMaxRetryWait.
	MaxRetryWait time.Duration `json:"max_retry_wait,omitempty"`
	// Cooldown configures the per-deployment circuit breakers.
	Cooldown Cooldown `json:"cooldown,omitzero"`
}

// Cooldown configures the per-deployment circuit breaker (one
// github.com/sony/gobreaker/v2 state machine per provider and upstream
// model; per provider for pattern entries without an upstream model).
// Closed is healthy. Failures consecutive failed attempts (status 429,
// 408, 5xx, transport failures, rejected credentials) open it: the
// deployment cools down for Duration, during which requests go to the
// model's other deployments. Then it is half-open: Probes requests go
// through, and as many consecutive successes close it again while a
// failure reopens it.
type Cooldown struct {
	// Disabled turns cooldown off: every deployment always takes traffic.
	Disabled bool `json:"disabled,omitempty"`
	// Failures is the number of consecutive failures that start a
	// cooldown; zero means DefaultCooldownFailures.
	Failures uint32 `json:"failures,omitempty"`
	// Duration is how long a cooldown lasts; zero means
	// DefaultCooldownDuration.
	Duration time.Duration `json:"duration,omitempty"`
	// Probes is the number of requests let through after a cooldown;
	// zero means 1.
	Probes uint32 `json:"probes,omitempty"`
}

// UnmarshalJSON reads durations as Go duration strings ("10s").
func (r *Resilience) UnmarshalJSON(b []byte) error {
	type plain Resilience
	aux := struct {
		*plain
		MaxRetryWait jsonDuration `json:"max_retry_wait"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	r.MaxRetryWait = time.Duration(aux.MaxRetryWait)
	return nil
}

// UnmarshalJSON reads durations as Go duration strings ("30s").
func (c *Cooldown) UnmarshalJSON(b []byte) error {
	type plain Cooldown
	aux := struct {
		*plain
		Duration jsonDuration `json:"duration"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	c.Duration = time.Duration(aux.Duration)
	return nil
}

func (r *Resilience) validate() error {
	switch {
	case r.Retries < 0:
		return fmt.Errorf("resilience.retries: %d is negative", r.Retries)
	case r.MaxRetryWait < 0:
		return fmt.Errorf("resilience.max_retry_wait: %v is negative", r.MaxRetryWait)
	case r.Cooldown.Duration < 0:
		return fmt.Errorf("resilience.cooldown.duration: %v is negative", r.Cooldown.Duration)
	}
	return nil
}

// resilience is Resilience with defaults applied.
type resilience struct {
	retries  int
	maxWait  time.Duration
	cooldown Cooldown
}

func newResilience(r Resilience) resilience {
	out := resilience{retries: r.Retries, maxWait: r.MaxRetryWait, cooldown: r.Cooldown}
	if out.maxWait == 0 {
		out.maxWait = DefaultMaxRetryWait
	}
	if out.cooldown.Failures == 0 {
		out.cooldown.Failures = DefaultCooldownFailures
	}
	if out.cooldown.Duration == 0 {
		out.cooldown.Duration = DefaultCooldownDuration
	}
	if out.cooldown.Probes == 0 {
		out.cooldown.Probes = 1
	}
	return out
}

// ClusterSource resolves cluster names to live clusters: the gateway
// sends retries and fallbacks through them. *portico.Gateway implements
// it.
type ClusterSource interface {
	Cluster(name string) *cluster.Cluster
}

// Bind gives the gateway the clusters it sends retries and fallbacks to,
// typically the *portico.Gateway it is a filter of (which exists only
// after the llm Gateway, hence a separate call):
//
//	gl, _ := llm.New(cfg)
//	gw, _ := portico.New(portico.Config{... gl ...}, opts)
//	gl.Bind(gw)
//
// The first attempt of a request always goes through the router, with
// the route's own retry policy; without Bind there are no retries or
// fallbacks beyond it. Bind may be called at any time, concurrently with
// requests.
func (g *Gateway) Bind(src ClusterSource) { g.clusters.Store(&clusterSource{src}) }

type clusterSource struct{ ClusterSource }

// sources holds the bound ClusterSource.
type sources = atomic.Pointer[clusterSource]

// verdict classifies an attempt's outcome.
type verdict uint8

const (
	vDone          verdict = iota // a success, or a failure no other candidate can fix
	vRetriable                    // retry, then fall back
	vFallback                     // fall back, never retry (the same answer would come)
	vContextLength                // fall back without counting against the deployment
)

// contextLengthMarkers are phrases of the providers' context-length
// errors: OpenAI's code, vLLM's and Anthropic's messages.
var contextLengthMarkers = []string{"context_length_exceeded", "maximum context length", "prompt is too long",
	"context window", "too many tokens", "input is too long"}

// classify judges the attempt whose answer is x.Resp (or x.Err). For a
// 400 or 413 it reads the body, to recognise a context-length error, and
// puts it back.
func classify(x *filter.Exchange) verdict {
	if x.Err != nil {
		const transport = filter.FlagUpstreamConnectionFailure | filter.FlagNoHealthyUpstream | filter.FlagUpstreamRequestTimeout |
			filter.FlagUpstreamOverflow | filter.FlagUpstreamConnectionTermination | filter.FlagUpstreamProtocolError |
			filter.FlagNoClusterFound | filter.FlagUpstreamRemoteReset
		if x.Flags&transport != 0 {
			return vRetriable
		}
		return vDone
	}
	resp := x.Resp
	if resp == nil {
		return vDone
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests || s == http.StatusRequestTimeout || s >= 500:
		return vRetriable
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return vFallback
	case s == http.StatusBadRequest || s == http.StatusRequestEntityTooLarge:
		body, _ := readLimited(resp.Body, 64<<10)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		lower := strings.ToLower(string(body))
		for _, m := range contextLengthMarkers {
			if strings.Contains(lower, m) {
				return vContextLength
			}
		}
	}
	return vDone
}

// upstreamFailureFlags are the flags an upstream failure leaves; a
// successful retry or fallback clears them.
const upstreamFailureFlags = filter.FlagUpstreamConnectionFailure | filter.FlagNoHealthyUpstream | filter.FlagUpstreamRequestTimeout |
	filter.FlagUpstreamOverflow | filter.FlagUpstreamConnectionTermination | filter.FlagUpstreamProtocolError |
	filter.FlagNoClusterFound | filter.FlagUpstreamRemoteReset | filter.FlagUpstreamRetryLimitExceeded

// attempts runs in the llm filter's response phase, before the response
// is looked at: it reports the attempt's outcome to the deployment's
// breaker and, while the answer is a failure another attempt may fix,
// retries or falls back (see Resilience), replacing x.Resp (and x.Err)
// with the new attempt's answer and the call's provider and model with
// the new target's.
func (g *Gateway) attempts(ctx context.Context, x *filter.Exchange, f *frontDoor, call *Call) {
	st := call.st
	ps := &st.pol
	if !ps.sent {
		// A local reply of the llm filter itself: nothing was attempted.
		ps.report(errNoOutcome)
		return
	}
	if ps.upstream == 0 && !x.UpstreamStart.IsZero() {
		ps.upstream = time.Since(x.UpstreamStart)
	}
	for {
		v := classify(x)
		switch v {
		case vRetriable, vFallback:
			ps.report(errAttemptFailed)
		case vContextLength:
			ps.report(errNoOutcome)
		default:
			if x.Err != nil && errors.Is(x.Err, context.Canceled) {
				ps.report(errNoOutcome)
			} else {
				ps.report(nil)
			}
			return
		}
		if ctx.Err() != nil || f.api == CountTokens {
			return
		}
		src := g.clusters.Load()
		if src == nil {
			return
		}
		t, wait, ok := g.nextAttempt(x, call, v)
		if !ok {
			return
		}
		if wait > 0 && !sleep(ctx, wait) {
			ps.report(errNoOutcome)
			return
		}
		from := call.Provider
		if !g.send(ctx, x, f, call, t, src.ClusterSource) {
			continue // the candidate cannot take the request; x is unchanged
		}
		call.Fallbacks++
		g.tel.fallback(from, call.Provider, v)
	}
}

// nextAttempt returns the target of the next attempt and how long to wait
// before it.
func (g *Gateway) nextAttempt(x *filter.Exchange, call *Call, v verdict) (target, time.Duration, bool) {
	ps := &call.st.pol
	if v == vRetriable && ps.retries < g.res.retries && ps.dep != nil {
		wait, ok := retryAfter(x.Resp)
		if !ok {
			wait = backoff(ps.retries)
		}
		if wait <= g.res.maxWait {
			if done, ok := ps.dep.allow(); ok {
				ps.retries++
				ps.done = done
				return g.targetOf(ps.dep, ps.route, ps.model), wait, true
			}
		}
	}
	t, ok := g.next(call)
	return t, 0, ok
}

// send prepares the request for t and sends it through t's cluster. It
// returns false, leaving x as it was, when the candidate cannot take the
// request (it cannot be translated for it, or its cluster is missing).
func (g *Gateway) send(ctx context.Context, x *filter.Exchange, f *frontDoor, call *Call, t target, src ClusterSource) bool {
	st := call.st
	ps := &st.pol
	cl := src.Cluster(t.p.cluster)
	if cl == nil {
		ps.report(errAttemptFailed)
		return false
	}
	// Re-prepare from the client's request: headers without the previous
	// provider's, the body after the prompt policies.
	savedCall, savedState := *call, *st
	resetUpstreamHeaders(x, st.p)
	x.Out.URL.RawQuery = x.In.URL.RawQuery
	obj, err := jsonobj.Parse(st.body)
	if err == nil {
		err = f.prepare(ctx, x, call, obj, st.body, t)
	}
	if err != nil {
		// The candidate's schema cannot express this request: skip it,
		// keeping the previous attempt's answer and state.
		pol := st.pol
		*call, *st = savedCall, savedState
		st.pol = pol
		ps.report(errNoOutcome)
		return false
	}
	if x.Resp != nil && x.Resp.Body != nil {
		x.Resp.Body.Close()
	}
	// The router may have given the first attempt a context of its own
	// (the stream idle timer), ended with that attempt: this one runs
	// under the downstream request's.
	x.Out = x.Out.WithContext(ctx)
	creq := cluster.Request{HTTP: x.Out}
	if x.Route != nil {
		if d := x.Route.Timeout(); d > 0 && !x.UpstreamStart.IsZero() {
			creq.Deadline = x.UpstreamStart.Add(d)
		}
	}
	start := time.Now()
	resp, err := cl.Send(&creq)
	ps.upstream += time.Since(start)
	x.Endpoint = creq.Endpoint
	x.Attempts += creq.Attempts
	x.Cluster = t.p.cluster
	call.ResponseModel, call.StopReason, call.UpstreamError = "", "", ""
	if err != nil {
		x.Resp, x.Err = failureResponse(x, err)
		return true
	}
	removeHopHeaders(resp.Header)
	x.Resp, x.Err, x.Details = resp, nil, ""
	x.Flags &^= upstreamFailureFlags
	return true
}

// failureResponse is the answer for an attempt that got no response: the
// router's mapping (DESIGN §6), as a plain-text local reply that the llm
// filter puts into the client's schema.
func failureResponse(x *filter.Exchange, err error) (*http.Response, error) {
	status, flags, msg := http.StatusServiceUnavailable, filter.FlagUpstreamConnectionFailure, "upstream connect error or disconnect/reset before headers"
	var ue *cluster.UpstreamError
	if errors.As(err, &ue) {
		switch ue.Kind {
		case cluster.Timeout:
			status, flags, msg = http.StatusGatewayTimeout, filter.FlagUpstreamRequestTimeout, "upstream request timeout"
		case cluster.NoHealthyUpstream:
			flags, msg = filter.FlagNoHealthyUpstream, "no healthy upstream"
		case cluster.Overflow:
			flags, msg = filter.FlagUpstreamOverflow, "upstream overflow"
		case cluster.Reset:
			flags = filter.FlagUpstreamConnectionTermination
		}
	}
	x.Flags |= flags
	body := []byte(msg)
	return &http.Response{
		Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}, "Content-Length": {strconv.Itoa(len(body))}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
	}, err
}

// resetUpstreamHeaders undoes what preparing the request for prev did to
// its headers, so that the next provider's preparation starts from the
// headers the llm filter got: prev's own headers and credential go, and
// the client's Anthropic headers, which a provider of another schema
// drops, come back.
func resetUpstreamHeaders(x *filter.Exchange, prev *provider) {
	h := x.Out.Header
	if prev != nil {
		for k := range prev.headers {
			delete(h, k)
		}
	}
	for _, k := range stripRequest {
		delete(h, k)
	}
	for _, k := range anthropicRequest {
		if v, ok := x.In.Header[k]; ok {
			h[k] = v
		} else {
			delete(h, k)
		}
	}
}

var hopHeaders = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Authenticate"}

func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if n := strings.TrimSpace(name); n != "" {
				h.Del(n)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// retryAfter reads how long a provider asks to wait: retry-after-ms
// (OpenAI), then Retry-After in seconds or as an HTTP date.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	if v := resp.Header.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// backoff is Envoy's jittered exponential backoff before retry k (from 0).
func backoff(k int) time.Duration {
	limit := min(retryBackoffBase<<min(k, 16), retryBackoffMax)
	return time.Duration(rand.Int64N(int64(limit)) + 1)
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// report gives the current attempt's outcome to its deployment's breaker,
// once.
func (ps *polState) report(err error) {
	if ps.done != nil {
		ps.done(err)
		ps.done = nil
	}
}
