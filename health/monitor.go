package health

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Status is an endpoint's health as decided by active checks.
type Status int32

const (
	// Unknown is the status of an endpoint before its first check
	// completes, and of an address the Monitor does not check.
	Unknown Status = iota
	// Healthy endpoints passed their last check or, after being
	// unhealthy, HealthyThreshold consecutive checks.
	Healthy
	// Unhealthy endpoints failed their first check or, after being
	// healthy, UnhealthyThreshold consecutive checks.
	Unhealthy
)

// String returns the status name, e.g. "Healthy".
func (s Status) String() string {
	switch s {
	case Unknown:
		return "Unknown"
	case Healthy:
		return "Healthy"
	case Unhealthy:
		return "Unhealthy"
	default:
		return "Status(" + strconv.Itoa(int(s)) + ")"
	}
}

// Event reports a change of an endpoint's [Status] or degraded flag to a
// Monitor's onChange callback, and every check's result to
// [Config.OnCheck]. It is a value; the callback may keep it.
type Event struct {
	// Cluster is the name given to NewMonitor.
	Cluster string
	// Endpoint is the checked address.
	Endpoint string
	// From and To are the statuses before and after the check; From is
	// Unknown for the first verdict.
	From, To Status
	// WasDegraded and Degraded are the endpoint's degraded flag (see
	// [EndpointStatus.Degraded]) before and after the check.
	WasDegraded, Degraded bool
	// Err is the failure of the check that caused the event; nil if it
	// passed.
	Err error
	// NetworkFailure reports that Err is a network failure: the endpoint
	// could not be reached, the connection broke or the check timed out
	// (Envoy's network_failure), as opposed to an answer that failed the
	// check, such as an unexpected HTTP status.
	NetworkFailure bool
	// TimedOut reports that the check failed by exceeding
	// [Config.Timeout] (Envoy's active_hc_timeout).
	TimedOut bool
	// Time is when that check finished.
	Time time.Time
}

// Changed reports whether the check changed the endpoint's status or its
// degraded flag, which is when onChange hears of it.
func (e Event) Changed() bool { return e.From != e.To || e.WasDegraded != e.Degraded }

// EndpointStatus is a snapshot of one endpoint's checks, for the admin
// /clusters view. It is a copy; the caller owns it.
type EndpointStatus struct {
	// Cluster is the name given to NewMonitor.
	Cluster string
	// Endpoint is the checked address.
	Endpoint string
	// Check names the checker: "http", "tcp", "grpc" or "custom".
	Check  string
	Status Status
	// Degraded reports that the last passing check found the endpoint
	// degraded: a [DegradedChecker] said so, e.g. an [HTTP] check's
	// response carried [DegradedHeader] (Envoy's degraded_active_hc). It
	// changes on passing checks only, at once, without thresholds, and
	// means something to load balancing only while Status is Healthy.
	Degraded bool
	// Successes and Failures count consecutive results; one of them is
	// zero.
	Successes int
	Failures  int
	// LastError is the failure of the last check; nil if it passed.
	LastError error
	// TimedOut reports that the last check failed by exceeding
	// [Config.Timeout] (Envoy's active_hc_timeout host flag).
	TimedOut bool
	// LastCheck is when the last check finished; zero before the first.
	LastCheck time.Time
}

// Stats counts a Monitor's checks, after Envoy's
// cluster.<name>.health_check.* counters. It is a value snapshot.
type Stats struct {
	// Attempts counts checks started and finished (attempt).
	Attempts uint64
	// Successes counts checks that passed (success).
	Successes uint64
	// Failures counts checks that failed, network failures included
	// (failure).
	Failures uint64
	// NetworkFailures counts checks that failed because the endpoint could
	// not be reached, the connection broke or the check timed out
	// (network_failure).
	NetworkFailures uint64
}

// Monitor actively checks the endpoints of one cluster, one goroutine per
// endpoint, and reports status changes.
//
// SetEndpoints, SetTraffic and Close are control-path calls; SetEndpoints
// and Close serialize with each other. Status and Statuses take no lock
// and may be called from any goroutine, including the data path.
type Monitor struct {
	cluster  string
	cfg      Config
	check    string
	degraded DegradedChecker // cfg.Checker, when it is one
	onChange func(Event)

	mu      sync.Mutex // serializes SetEndpoints and Close
	closed  bool
	targets atomic.Pointer[map[string]*target] // replaced, never mutated
	traffic atomic.Bool

	attempts, successes, failures, networkFailures atomic.Uint64
}

// target is one checked endpoint. Its goroutine owns the counters; others
// read the published snapshot.
type target struct {
	address string
	cancel  context.CancelFunc
	done    chan struct{}
	wake    chan struct{} // traffic changed; capacity 1
	snap    atomic.Pointer[EndpointStatus]
}

// NewMonitor returns a Monitor for the named cluster with no endpoints;
// add them with SetEndpoints. It returns cfg.Validate's error if any.
//
// onChange, if not nil, is called on every status change, including the
// first verdict from Unknown, and on every change of the degraded flag
// ([Event.Changed]), from the endpoint's own goroutine: it must
// not block and must not call SetEndpoints or Close. Calls for one
// endpoint are sequential; calls for different endpoints may be
// concurrent. No call starts after the SetEndpoints that removes the
// endpoint, or Close, returns.
func NewMonitor(cluster string, cfg Config, onChange func(Event)) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Monitor{
		cluster:  cluster,
		cfg:      cfg.withDefaults(),
		check:    checkName(cfg.Checker),
		onChange: onChange,
	}
	m.degraded, _ = cfg.Checker.(DegradedChecker)
	m.targets.Store(&map[string]*target{})
	return m, nil
}

// SetEndpoints replaces the set of checked addresses (host:port): it
// starts checking new ones and stops, and waits for, the goroutines of
// removed ones. Addresses kept keep their status. Duplicates are ignored.
// After Close it does nothing.
func (m *Monitor) SetEndpoints(addresses []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	old := *m.targets.Load()
	next := make(map[string]*target, len(addresses))
	for _, a := range addresses {
		if _, ok := next[a]; ok {
			continue
		}
		if t, ok := old[a]; ok {
			next[a] = t
			continue
		}
		next[a] = m.start(a)
	}
	m.targets.Store(&next)
	var removed []*target
	for a, t := range old {
		if _, ok := next[a]; !ok {
			t.cancel()
			removed = append(removed, t)
		}
	}
	for _, t := range removed {
		<-t.done
	}
}

// SetTraffic records whether the cluster has seen traffic, which switches
// the check interval between NoTrafficInterval and the others. A change
// reschedules pending checks at once. When nothing changes it is one
// atomic load, so the data path may call it on every request.
func (m *Monitor) SetTraffic(seen bool) {
	if m.traffic.Load() == seen || m.traffic.Swap(seen) == seen {
		return
	}
	for _, t := range *m.targets.Load() {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// Status returns the status of address, Unknown if it is not checked or
// has no verdict yet. It takes no lock.
func (m *Monitor) Status(address string) Status {
	t, ok := (*m.targets.Load())[address]
	if !ok {
		return Unknown
	}
	return t.snap.Load().Status
}

// Degraded reports whether the last passing check of address found it
// degraded (see [EndpointStatus.Degraded]); false if it is not checked.
// It takes no lock.
func (m *Monitor) Degraded(address string) bool {
	t, ok := (*m.targets.Load())[address]
	return ok && t.snap.Load().Degraded
}

// EndpointStatus returns a snapshot of address's checks. An address the
// Monitor does not check has Status Unknown and no results. It takes no
// lock.
func (m *Monitor) EndpointStatus(address string) EndpointStatus {
	if t, ok := (*m.targets.Load())[address]; ok {
		return *t.snap.Load()
	}
	return EndpointStatus{Cluster: m.cluster, Endpoint: address, Check: m.check}
}

// Statuses returns a snapshot of every checked endpoint, sorted by
// address.
func (m *Monitor) Statuses() []EndpointStatus {
	targets := *m.targets.Load()
	out := make([]EndpointStatus, 0, len(targets))
	for _, t := range targets {
		out = append(out, *t.snap.Load())
	}
	slices.SortFunc(out, func(a, b EndpointStatus) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	return out
}

// Stats returns the Monitor's check counters. It takes no lock.
func (m *Monitor) Stats() Stats {
	return Stats{
		Attempts:        m.attempts.Load(),
		Successes:       m.successes.Load(),
		Failures:        m.failures.Load(),
		NetworkFailures: m.networkFailures.Load(),
	}
}

// Close stops every check and waits for its goroutine, then closes the
// checker's idle connections. It is idempotent and always returns nil.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	targets := *m.targets.Load()
	for _, t := range targets {
		t.cancel()
	}
	for _, t := range targets {
		<-t.done
	}
	m.targets.Store(&map[string]*target{})
	if c, ok := m.cfg.Checker.(idleCloser); ok {
		c.CloseIdleConnections()
	}
	return nil
}

func (m *Monitor) start(address string) *target {
	ctx, cancel := context.WithCancel(context.Background())
	t := &target{
		address: address,
		cancel:  cancel,
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
	t.snap.Store(&EndpointStatus{Cluster: m.cluster, Endpoint: address, Check: m.check})
	go m.run(ctx, t)
	return t
}

// run checks t until ctx is canceled.
func (m *Monitor) run(ctx context.Context, t *target) {
	defer close(t.done)
	st := *t.snap.Load()
	timer := time.NewTimer(0) // first check at once
	defer timer.Stop()
	var started time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
			// Traffic changed: reschedule from the last check's start.
			if !started.IsZero() {
				timer.Reset(max(0, started.Add(m.next(&st)).Sub(time.Now())))
			}
			continue
		case <-timer.C:
		}
		started = time.Now()
		if !m.checkOnce(ctx, t, &st) {
			return
		}
		timer.Reset(m.next(&st))
	}
}

// next returns the delay before the check after st.
func (m *Monitor) next(st *EndpointStatus) time.Duration {
	base := m.cfg.baseInterval(st.Status, st.Successes, st.Failures, m.traffic.Load())
	return m.cfg.jitter(base, rand.Int64N)
}

// checkOnce runs one check, updates st and publishes it. It reports false
// if ctx was canceled meanwhile, without publishing.
func (m *Monitor) checkOnce(ctx context.Context, t *target, st *EndpointStatus) bool {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	var err error
	degraded := false
	if m.degraded != nil {
		degraded, err = m.degraded.CheckDegraded(cctx, t.address)
	} else {
		err = m.cfg.Checker.Check(cctx, t.address)
	}
	// The check's own deadline, not its parent, decides a timeout.
	timedOut := err != nil && ctx.Err() == nil && cctx.Err() == context.DeadlineExceeded
	cancel()
	if ctx.Err() != nil {
		return false
	}
	from, wasDegraded := st.Status, st.Degraded
	st.LastCheck = time.Now()
	st.LastError = err
	st.TimedOut = timedOut
	network := false
	m.attempts.Add(1)
	if err == nil {
		st.Successes++
		st.Failures = 0
		// As in Envoy, only a passing check sets or clears the flag, at
		// once: a failing one says nothing about degradation.
		st.Degraded = degraded
		m.successes.Add(1)
	} else {
		st.Failures++
		st.Successes = 0
		m.failures.Add(1)
		if network = timedOut || networkFailure(err); network {
			m.networkFailures.Add(1)
		}
		m.cfg.Logger.Debug("health check failed", "cluster", m.cluster, "endpoint", t.address, "error", err)
	}
	st.Status = transition(st.Status, err == nil, st.Successes, st.Failures, m.cfg.HealthyThreshold, m.cfg.UnhealthyThreshold)
	snap := *st
	t.snap.Store(&snap)
	ev := Event{Cluster: m.cluster, Endpoint: t.address, From: from, To: st.Status,
		WasDegraded: wasDegraded, Degraded: st.Degraded, Err: err,
		NetworkFailure: network, TimedOut: timedOut, Time: st.LastCheck}
	if st.Status != from {
		m.cfg.Logger.Info("health status changed", "cluster", m.cluster, "endpoint", t.address,
			slog.String("from", from.String()), slog.String("to", st.Status.String()))
	}
	if st.Degraded != wasDegraded {
		m.cfg.Logger.Info("health degraded flag changed", "cluster", m.cluster, "endpoint", t.address,
			slog.Bool("degraded", st.Degraded))
	}
	if ev.Changed() && m.onChange != nil {
		m.onChange(ev)
	}
	if m.cfg.OnCheck != nil {
		m.cfg.OnCheck(ev)
	}
	return true
}

// transition applies Envoy's thresholds: the first verdict decides at
// once; later, a status flips after the threshold of consecutive opposite
// results.
func transition(s Status, ok bool, successes, failures, healthyThreshold, unhealthyThreshold int) Status {
	switch {
	case s == Unknown && ok:
		return Healthy
	case s == Unknown:
		return Unhealthy
	case s == Healthy && !ok && failures >= unhealthyThreshold:
		return Unhealthy
	case s == Unhealthy && ok && successes >= healthyThreshold:
		return Healthy
	}
	return s
}
