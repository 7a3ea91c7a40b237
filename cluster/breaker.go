package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
)

// Circuit-breaker defaults, Envoy's documented values for every threshold
// that is left zero.
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
)

// Thresholds are one routing priority's circuit-breaker limits (Envoy's
// CircuitBreakers.Thresholds). A zero limit means its Envoy default.
//
// How Portico counts, against Envoy's connection pools: Portico never
// queues a request for a connection (the HTTP/1.1 pool dials at once when
// no idle connection is left, HTTP/2 multiplexes), so there is no queue
// for MaxPendingRequests to bound. A request is instead pending
// (upstream_rq_pending_active) from its admission by Send until response
// headers arrive or the attempt fails: the time it waits for a connection
// and for the upstream's answer. It is active (upstream_rq_active) from
// admission until the exchange ends: until the response body ends for
// streamed responses and for bodies longer than 32 KiB, and until the
// headers for shorter ones, whose few remaining bytes are already on
// their way (tracking them to the end would cost an allocation per
// response). A 101 Switching Protocols exchange stops counting at its
// headers.
type Thresholds struct {
	// MaxConnections bounds the connections open to all of the cluster's
	// endpoints; default 1024.
	MaxConnections uint32
	// MaxPendingRequests bounds requests waiting for a connection and
	// response headers; default 1024. Overflow fails the request with
	// Kind Overflow wrapping ErrPendingOverflow, counted as
	// upstream_rq_pending_overflow.
	MaxPendingRequests uint32
	// MaxRequests bounds requests in flight; default 1024. Overflow fails
	// the request with Kind Overflow wrapping ErrRequestOverflow, counted
	// as upstream_rq_pending_overflow (Envoy's documented counter for the
	// requests breaker) and upstream_rq_active_overflow (the counter Envoy
	// 1.36+ uses instead).
	MaxRequests uint32
	// MaxRetries bounds retries in flight; default 3. A RetryBudget, when
	// set, replaces it.
	MaxRetries uint32
	// RetryBudget, when set, limits retries in flight to a fraction of
	// the requests in flight instead of MaxRetries.
	RetryBudget *RetryBudget
}

// RetryBudget is Envoy's retry budget: retries in flight may be at most
// BudgetPercent of the requests in flight, but never fewer than
// MinRetryConcurrency. Requests in flight are the active requests of the
// retry's routing priority, which include the pending ones (Envoy adds
// its separately counted pending requests).
type RetryBudget struct {
	// BudgetPercent of active requests that may be retries; default 20.
	BudgetPercent float64
	// MinRetryConcurrency is the floor; default 3.
	MinRetryConcurrency uint32
}

// CircuitBreakers holds the thresholds per routing priority.
type CircuitBreakers struct {
	// Default applies to requests of the default routing priority.
	Default Thresholds
	// High applies to requests of the high routing priority.
	High Thresholds
}

// RoutingPriority selects the circuit-breaker thresholds a request counts
// against (Envoy's core.v3.RoutingPriority). Each priority has its own
// counters: high-priority requests do not use up default-priority room.
type RoutingPriority uint8

const (
	// DefaultPriority is the routing priority of ordinary requests.
	DefaultPriority RoutingPriority = iota
	// HighPriority requests count against CircuitBreakers.High.
	HighPriority
)

// String returns "default" or "high", the priority's name in Envoy's
// circuit_breakers.<priority> stats.
func (p RoutingPriority) String() string {
	switch p {
	case DefaultPriority:
		return "default"
	case HighPriority:
		return "high"
	}
	return "RoutingPriority(" + strconv.Itoa(int(p)) + ")"
}

func (t *Thresholds) validate(path string) []error {
	var errs []error
	if b := t.RetryBudget; b != nil {
		if b.BudgetPercent < 0 || b.BudgetPercent > 100 {
			errs = append(errs, fmt.Errorf("%s.retry_budget.budget_percent: %v not in [0, 100]", path, b.BudgetPercent))
		}
	}
	return errs
}

func (t Thresholds) withDefaults() Thresholds {
	if t.MaxConnections == 0 {
		t.MaxConnections = DefaultMaxConnections
	}
	if t.MaxPendingRequests == 0 {
		t.MaxPendingRequests = DefaultMaxPendingRequests
	}
	if t.MaxRequests == 0 {
		t.MaxRequests = DefaultMaxRequests
	}
	if t.MaxRetries == 0 {
		t.MaxRetries = DefaultMaxRetries
	}
	if b := t.RetryBudget; b != nil {
		bb := *b
		if bb.BudgetPercent == 0 {
			bb.BudgetPercent = 20
		}
		if bb.MinRetryConcurrency == 0 {
			bb.MinRetryConcurrency = 3
		}
		t.RetryBudget = &bb
	}
	return t
}

// Errors wrapped by the *UpstreamError (Kind Overflow) of a request or
// retry refused by a circuit breaker; each names its breaker.
var (
	// ErrRetryOverflow is the error of a retry refused by the max-retries
	// circuit breaker or the retry budget.
	ErrRetryOverflow = errors.New("retry circuit breaker open")
	// ErrPendingOverflow is wrapped when MaxPendingRequests is reached.
	ErrPendingOverflow = errors.New("pending requests circuit breaker open")
	// ErrRequestOverflow is wrapped when MaxRequests is reached.
	ErrRequestOverflow = errors.New("requests circuit breaker open")
)

// breakers is a cluster's live circuit-breaker state, one set of
// lock-free counters per routing priority, checked on the data path.
type breakers struct {
	prio [2]breaker
}

// breaker is one routing priority's counters. Admission is a CAS loop, so
// a limit is never exceeded, not even for an instant.
type breaker struct {
	limits  Thresholds
	pending atomic.Int64 // upstream_rq_pending_active
	active  atomic.Int64 // upstream_rq_active
	retries atomic.Int64 // retries in flight

	releaseRetry func() // bound once, so AllowRetry does not allocate
}

func (b *breakers) init(cb CircuitBreakers) {
	b.prio[DefaultPriority].limits = cb.Default
	b.prio[HighPriority].limits = cb.High
	for i := range b.prio {
		p := &b.prio[i]
		p.releaseRetry = func() { p.retries.Add(-1) }
	}
}

// of returns the breaker of priority p; unknown priorities count as
// default.
func (b *breakers) of(p RoutingPriority) *breaker {
	if p == HighPriority {
		return &b.prio[HighPriority]
	}
	return &b.prio[DefaultPriority]
}

// acquireUpTo adds one to n unless that would pass limit.
func acquireUpTo(n *atomic.Int64, limit int64) bool {
	for {
		v := n.Load()
		if v >= limit {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// retryLimit is the number of retries that may be in flight now.
func (b *breaker) retryLimit() int64 {
	bud := b.limits.RetryBudget
	if bud == nil {
		return int64(b.limits.MaxRetries)
	}
	limit := int64(float64(b.active.Load()) * bud.BudgetPercent / 100)
	return max(limit, int64(bud.MinRetryConcurrency))
}

// AllowRetry asks the default-priority retry circuit breaker for one
// retry; see AllowRetryFor.
func (c *Cluster) AllowRetry() (release func(), ok bool) {
	return c.AllowRetryFor(DefaultPriority)
}

// AllowRetryFor asks priority p's retry circuit breaker (MaxRetries, or
// the RetryBudget when set) for one retry. When it allows, release must
// be called once the retry attempt has finished; when it refuses, the
// retry must not be made and the refusal is counted as
// upstream_rq_retry_overflow. It takes no lock and does not allocate.
func (c *Cluster) AllowRetryFor(p RoutingPriority) (release func(), ok bool) {
	b := c.breakers.of(p)
	if !acquireUpTo(&b.retries, b.retryLimit()) {
		c.stats.retryOverflow.Add(1)
		return nil, false
	}
	return b.releaseRetry, true
}

// admission is one request's hold on its breaker and endpoint counters,
// a value carried through Send; its methods release what it holds.
type admission struct {
	c *Cluster
	b *breaker
	h *host // nil until picked, or if the endpoint left the set meanwhile
}

// admit applies the pending and requests circuit breakers of r's
// priority. On refusal it returns the *UpstreamError Send fails with.
func (c *Cluster) admit(r *Request) (admission, error) {
	b := c.breakers.of(r.Priority)
	if !acquireUpTo(&b.pending, int64(b.limits.MaxPendingRequests)) {
		c.stats.pendingOverflow.Add(1)
		return admission{}, &UpstreamError{Cluster: c.cfg.Name, Kind: Overflow, Err: ErrPendingOverflow}
	}
	if !acquireUpTo(&b.active, int64(b.limits.MaxRequests)) {
		b.pending.Add(-1)
		c.stats.pendingOverflow.Add(1)
		c.stats.activeOverflow.Add(1)
		return admission{}, &UpstreamError{Cluster: c.cfg.Name, Kind: Overflow, Err: ErrRequestOverflow}
	}
	if !c.hs.traffic.Load() {
		c.noteTraffic()
	}
	return admission{c: c, b: b}, nil
}

// picked records the endpoint the balancer chose.
func (a *admission) picked(addr string) {
	if h := a.c.hostFor(addr); h != nil {
		a.h = h
		h.rqTotal.Add(1)
		h.rqActive.Add(1)
	}
}

// abort releases an admission that never reached an endpoint.
func (a *admission) abort() {
	a.b.pending.Add(-1)
	a.b.active.Add(-1)
}

// failed records a failed attempt and releases the admission.
func (a *admission) failed(kind ErrorKind) {
	if a.h != nil {
		a.h.recordError(a.c.outlier, kind)
		a.h.rqActive.Add(-1)
	}
	a.abort()
}

// responded records response headers. The request stays active until
// end is called, when the caller tracks the body, or ends now.
func (a *admission) responded(status int, track bool) {
	a.b.pending.Add(-1)
	if a.h != nil {
		a.h.recordStatus(a.c.outlier, status)
	}
	if !track {
		a.end()
	}
}

// end ends an exchange that responded.
func (a *admission) end() {
	if a.h != nil {
		a.h.rqActive.Add(-1)
	}
	a.b.active.Add(-1)
}

// trackBody reports whether a response's body is followed to its end to
// keep the request active: streamed bodies and those over bufferSize.
func trackBody(resp *http.Response) bool {
	if resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusSwitchingProtocols {
		return false
	}
	return resp.ContentLength < 0 || resp.ContentLength > bufferSize
}

// breakerStats snapshots one priority's gauges.
func (b *breaker) stats() BreakerStats {
	pending, active, retries := b.pending.Load(), b.active.Load(), b.retries.Load()
	maxPending, maxRq, maxRetries := int64(b.limits.MaxPendingRequests), int64(b.limits.MaxRequests), b.retryLimit()
	return BreakerStats{
		RqPendingOpen:    pending >= maxPending,
		RqOpen:           active >= maxRq,
		RqRetryOpen:      retries >= maxRetries,
		RemainingPending: uint64(max(0, maxPending-pending)),
		RemainingRq:      uint64(max(0, maxRq-active)),
		RemainingRetries: uint64(max(0, maxRetries-retries)),
	}
}
