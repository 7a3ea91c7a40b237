package cluster

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/health"
)

// An endpoint's effective health, the one its balancer sees, combines
// three sources, as Envoy's host health flags do (Envoy's coarse health):
// it is unhealthy when any source fails it, else degraded when any source
// says degraded, else healthy.
//
//   - discovery: Endpoint.Health Unknown or Healthy, Degraded
//     (degraded_eds_health), anything else fails;
//   - active health checking: every check in Config.HealthChecks passing;
//     a passing check that found the endpoint degraded (an HTTP check
//     answered with x-envoy-degraded) makes it degraded
//     (degraded_active_hc).
//     As in Envoy, an endpoint added to a health-checked cluster starts
//     failed_active_hc and takes traffic once its first checks pass,
//     which they do at once (the first verdict decides). A new cluster
//     whose endpoints all await their first check is in panic mode and
//     spreads traffic over all of them, where Envoy would hold the
//     cluster warming until that first round;
//   - outlier detection: not ejected.
//
// Every change of one of them republishes the balancer's endpoint set,
// serially under c.mu on the control path; Send never waits for it.

// host is the state Portico keeps for one endpoint address. Hosts are
// kept across UpdateEndpoints while their address stays in the set, so
// counters, check results and ejections survive updates.
type host struct {
	addr string

	// Data-path counters, Envoy's per-host /clusters stats.
	rqTotal   atomic.Uint64 // rq_total: requests sent to the endpoint
	rqSuccess atomic.Uint64 // rq_success: responses below 500
	rqError   atomic.Uint64 // rq_error: 5xx responses and local failures
	rqTimeout atomic.Uint64 // rq_timeout
	rqActive  atomic.Int64  // rq_active

	od hostOutlier

	// Control path, under c.mu.
	ep     Endpoint   // the discovery view
	health hostHealth // effective health last published
}

// hostHealth is an endpoint's effective health, Envoy's coarse host
// health.
type hostHealth uint8

const (
	hostUnhealthy hostHealth = iota // only in panic mode
	hostDegraded                    // when healthy capacity runs short
	hostHealthy
)

// hostSet is an immutable snapshot of the hosts, published through an
// atomic pointer so that Send can find a host without locking.
type hostSet struct {
	list   []*host // in endpoint order
	byAddr map[string]*host
}

// hostState is the Cluster's health and outlier machinery.
type hostState struct {
	hosts    atomic.Pointer[hostSet]
	traffic  atomic.Bool       // the cluster has sent a request
	wake     chan struct{}     // capacity 1: events for the control loop
	monitors []*health.Monitor // one per Config.HealthChecks entry

	// Control path, under c.mu.
	now     func() time.Time // injectable for tests
	started bool
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

// initHosts prepares the cluster's breakers, health checks and outlier
// detection; New calls it before loading the first endpoints. Nothing
// runs until the first UpdateEndpoints.
func (c *Cluster) initHosts() error {
	c.breakers.init(c.cfg.CircuitBreakers)
	hs := &c.hs
	hs.hosts.Store(&hostSet{byAddr: map[string]*host{}})
	hs.wake = make(chan struct{}, 1)
	hs.now = time.Now
	if od := c.cfg.OutlierDetection; od != nil {
		c.outlier = newOutlierDetector(od, hs.wakeup)
	}
	return c.initHealthChecks()
}

func (hs *hostState) wakeup() {
	select {
	case hs.wake <- struct{}{}:
	default:
	}
}

// hostFor returns the host of addr, or nil. It takes no lock.
func (c *Cluster) hostFor(addr string) *host {
	return c.hs.hosts.Load().byAddr[addr]
}

// syncHosts reconciles the hosts with the endpoint set eps: kept
// addresses keep their host, new ones get a fresh one, and the health
// checks follow. It starts the control loop on the first call. c.mu is
// held.
func (c *Cluster) syncHosts(eps []Endpoint) {
	hs := &c.hs
	old := hs.hosts.Load()
	next := &hostSet{list: make([]*host, len(eps)), byAddr: make(map[string]*host, len(eps))}
	addrs := make([]string, len(eps))
	for i := range eps {
		addr := eps[i].Address
		h := old.byAddr[addr]
		if h == nil {
			h = &host{addr: addr}
			h.od.rate, h.od.rateLocal = -1, -1
		}
		h.ep = eps[i]
		next.list[i] = h
		next.byAddr[addr] = h
		addrs[i] = addr
	}
	for _, h := range old.list {
		if next.byAddr[h.addr] == nil && h.od.ejected {
			c.stats.ejectionsActive.Add(^uint64(0))
		}
	}
	hs.hosts.Store(next)
	if hs.closed {
		return
	}
	for _, m := range hs.monitors {
		m.SetEndpoints(addrs)
	}
	if !hs.started && (c.outlier != nil || len(hs.monitors) > 0) {
		hs.started = true
		hs.stop = make(chan struct{})
		hs.done = make(chan struct{})
		go c.controlLoop(hs.stop, hs.done)
	}
}

// controlLoop applies health and outlier events and runs the outlier
// detection sweep every interval, each under c.mu, until stop closes.
func (c *Cluster) controlLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var tick <-chan time.Time
	if c.outlier != nil {
		t := time.NewTicker(c.outlier.cfg.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-stop:
			return
		case <-c.hs.wake:
			c.mu.Lock()
			c.applyEvents()
			c.mu.Unlock()
		case <-tick:
			c.mu.Lock()
			c.outlierSweep(c.hs.now())
			c.mu.Unlock()
		}
	}
}

// applyEvents applies what the data path and the checks reported since
// the last call, and republishes if effective health changed. c.mu is
// held.
func (c *Cluster) applyEvents() {
	if c.outlier != nil {
		c.outlierEvents(c.hs.now())
	}
	c.republish(false)
}

// stopHosts stops the control loop and the health checks; Close calls it.
func (c *Cluster) stopHosts() {
	hs := &c.hs
	c.mu.Lock()
	if hs.closed {
		c.mu.Unlock()
		return
	}
	hs.closed = true
	stop, done := hs.stop, hs.done
	c.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	for _, m := range hs.monitors {
		m.Close()
	}
}

// effective is h's health as the balancer sees it.
func (c *Cluster) effective(h *host) hostHealth {
	switch {
	case !h.ep.Health.usable() || h.od.ejected || !c.checksPassing(h):
		return hostUnhealthy
	case h.ep.Health == Degraded || c.checksDegraded(h):
		return hostDegraded
	}
	return hostHealthy
}

// republish recomputes every host's effective health and, if one changed
// or force is set, hands the balancer a new endpoint set. c.mu is held.
func (c *Cluster) republish(force bool) {
	set := c.hs.hosts.Load()
	changed := force
	var healthy, degraded, hcHealthy uint64
	for _, h := range set.list {
		e := c.effective(h)
		if e != h.health {
			h.health = e
			changed = true
		}
		switch e {
		case hostHealthy:
			healthy++
		case hostDegraded:
			degraded++
		}
		if c.checksPassing(h) {
			hcHealthy++
		}
	}
	c.stats.membershipTotal.Store(uint64(len(set.list)))
	c.stats.membershipHealthy.Store(healthy)
	c.stats.membershipDegraded.Store(degraded)
	if len(c.hs.monitors) > 0 {
		c.stats.hcHealthy.Store(hcHealthy)
	}
	if !changed {
		return
	}
	eps := *c.endpoints.Load()
	view := c.lbView(eps)
	for i := range view {
		if h := set.byAddr[view[i].Address]; h != nil {
			view[i].Healthy = h.health != hostUnhealthy
			view[i].Degraded = h.health == hostDegraded
		}
	}
	c.balancer.Update(view)
}

// EndpointState is a snapshot of one endpoint for the admin /clusters
// view: its discovery data, the health of each active check, its outlier
// status and its request counters. It is a copy; the caller owns it.
// Field comments name Envoy's /clusters entry where there is one.
type EndpointState struct {
	Address  string
	Weight   uint32 // weight
	Priority uint32 // priority
	Locality string // region/zone/sub_zone
	// Health is the discovery (EDS) health status.
	Health HealthStatus
	// Checks holds one status per Config.HealthChecks entry, in order;
	// Status Unknown means the first check has not finished.
	Checks []health.EndpointStatus
	// Ejected reports an outlier ejection (failed_outlier_check).
	Ejected bool
	// EjectionReason names the detection that ejected the endpoint last,
	// in Envoy's stat spelling ("consecutive_5xx", "success_rate", …);
	// empty if it never was.
	EjectionReason string
	// EjectedUntil is when the current ejection's time runs out; the
	// endpoint returns at the first outlier-detection interval after it.
	// Zero when not ejected.
	EjectedUntil time.Time
	// Ejections counts the times the endpoint was ejected
	// (num_ejections in Envoy's outlier event log).
	Ejections uint32
	// SuccessRate and LocalOriginSuccessRate are the percentages of
	// successful requests in the last outlier-detection interval
	// (success_rate, local_origin_success_rate); -1 without outlier
	// detection or with too few requests.
	SuccessRate            float64
	LocalOriginSuccessRate float64
	// Healthy and Degraded are the effective health the balancer uses:
	// Healthy when every source passes it and none says degraded,
	// Degraded when every source passes it but one says degraded (it then
	// takes traffic only when healthy endpoints run short), neither when
	// it is unhealthy.
	Healthy  bool
	Degraded bool

	ActiveRequests  int64  // rq_active
	TotalRequests   uint64 // rq_total
	SuccessRequests uint64 // rq_success
	ErrorRequests   uint64 // rq_error
	TimeoutRequests uint64 // rq_timeout
}

// HealthFlags returns the endpoint's health in the form of Envoy's
// /clusters health_flags entry: "healthy", or the flags that keep it out
// of load balancing or mark it degraded, each with a leading slash, e.g.
// "/failed_active_hc/failed_outlier_check" or "/degraded_active_hc", in
// Envoy's order. As in Envoy, degraded_active_hc stays set while checks
// fail, until a passing check finds the endpoint no longer degraded.
func (s EndpointState) HealthFlags() string {
	var b strings.Builder
	failed, degraded, timeout := false, false, false
	for _, st := range s.Checks {
		failed = failed || st.Status != health.Healthy
		degraded = degraded || st.Degraded
		timeout = timeout || st.TimedOut
	}
	if failed {
		b.WriteString("/failed_active_hc")
	}
	if s.Ejected {
		b.WriteString("/failed_outlier_check")
	}
	if s.Health == Unhealthy || s.Health == HealthCheckTimeout {
		b.WriteString("/failed_eds_health")
	}
	if degraded {
		b.WriteString("/degraded_active_hc")
	}
	if s.Health == Degraded {
		b.WriteString("/degraded_eds_health")
	}
	if timeout {
		b.WriteString("/active_hc_timeout")
	}
	if s.Health == Draining {
		b.WriteString("/eds_status_draining")
	}
	if b.Len() == 0 {
		return "healthy"
	}
	return b.String()
}

// EndpointStates returns a snapshot of every endpoint, in the order of
// the current endpoint set. It takes the control-path lock, never a
// lock Send uses.
func (c *Cluster) EndpointStates() []EndpointState {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.hs.hosts.Load()
	out := make([]EndpointState, len(set.list))
	for i, h := range set.list {
		s := &out[i]
		e := c.effective(h)
		*s = EndpointState{
			Address:                h.addr,
			Weight:                 h.ep.Weight,
			Priority:               h.ep.Priority,
			Locality:               h.ep.Locality,
			Health:                 h.ep.Health,
			Ejected:                h.od.ejected,
			Ejections:              h.od.ejections,
			SuccessRate:            h.od.rate,
			LocalOriginSuccessRate: h.od.rateLocal,
			Healthy:                e == hostHealthy,
			Degraded:               e == hostDegraded,
			ActiveRequests:         h.rqActive.Load(),
			TotalRequests:          h.rqTotal.Load(),
			SuccessRequests:        h.rqSuccess.Load(),
			ErrorRequests:          h.rqError.Load(),
			TimeoutRequests:        h.rqTimeout.Load(),
		}
		if s.Weight == 0 {
			s.Weight = 1
		}
		if h.od.ejections > 0 {
			s.EjectionReason = h.od.reason.String()
		}
		if h.od.ejected {
			s.EjectedUntil = h.od.ejectedAt.Add(c.outlier.ejectionTime(&h.od))
		}
		for _, m := range c.hs.monitors {
			s.Checks = append(s.Checks, m.EndpointStatus(h.addr))
		}
	}
	return out
}

// recordStatus records an attempt that got response headers.
func (h *host) recordStatus(od *outlierDetector, status int) {
	if status >= 500 {
		h.rqError.Add(1)
	} else {
		h.rqSuccess.Add(1)
	}
	if od != nil {
		od.putHTTP(h, status)
		if od.cfg.split {
			od.putLocalSuccess(h)
		}
	}
}

// recordError records an attempt that failed before response headers.
// A canceled request is the client's doing and counts for neither side.
func (h *host) recordError(od *outlierDetector, kind ErrorKind) {
	var status int
	switch kind {
	case Timeout:
		h.rqTimeout.Add(1)
		status = 504
	case ConnectFailure, Reset, ProtocolError:
		status = 503
	default:
		return
	}
	h.rqError.Add(1)
	if od != nil {
		od.putLocalFailure(h, status)
	}
}
