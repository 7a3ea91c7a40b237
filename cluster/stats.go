package cluster

import "sync/atomic"

// Stats is a snapshot of a cluster's circuit-breaker, outlier-detection
// and health-check statistics. Field comments give the Envoy statistic
// each one exports as, under cluster.<name>. It is a value; the caller
// owns it.
type Stats struct {
	// UpstreamRqActive is upstream_rq_active (gauge): requests admitted
	// and not yet finished, both priorities. See Thresholds for when a
	// request stops counting.
	UpstreamRqActive uint64
	// UpstreamRqPendingActive is upstream_rq_pending_active (gauge):
	// admitted requests still waiting for response headers.
	UpstreamRqPendingActive uint64
	// UpstreamRqPendingOverflow is upstream_rq_pending_overflow: requests
	// refused by the pending-requests or the requests circuit breaker.
	UpstreamRqPendingOverflow uint64
	// UpstreamRqActiveOverflow is upstream_rq_active_overflow: the
	// subset of UpstreamRqPendingOverflow refused by the requests
	// (MaxRequests) breaker.
	UpstreamRqActiveOverflow uint64
	// UpstreamRqRetryOverflow is upstream_rq_retry_overflow: retries
	// refused by the retry breaker or budget.
	UpstreamRqRetryOverflow uint64

	// MembershipTotal is membership_total (gauge): endpoints in the set.
	MembershipTotal uint64
	// MembershipHealthy is membership_healthy (gauge): endpoints healthy
	// by discovery, every active check and outlier detection, and
	// degraded by none of them.
	MembershipHealthy uint64
	// MembershipDegraded is membership_degraded (gauge): endpoints that
	// pass every source but are degraded by discovery (EDS DEGRADED) or
	// an active check (x-envoy-degraded).
	MembershipDegraded uint64

	// CircuitBreakers are the circuit_breakers.<priority>.* gauges.
	CircuitBreakers CircuitBreakerStats
	// OutlierDetection are the outlier_detection.* statistics; all zero
	// without Config.OutlierDetection.
	OutlierDetection OutlierStats
	// HealthCheck are the health_check.* statistics; all zero without
	// Config.HealthChecks.
	HealthCheck HealthCheckStats
}

// CircuitBreakerStats holds the breaker gauges of each routing priority.
type CircuitBreakerStats struct {
	Default BreakerStats // circuit_breakers.default.*
	High    BreakerStats // circuit_breakers.high.*
}

// BreakerStats are one routing priority's circuit-breaker gauges
// (circuit_breakers.<priority>.*). The open gauges export as 1 when true.
// The connection pool enforces CircuitBreakers.Default.MaxConnections for
// requests of both priorities, so CxOpen and RemainingCx are reported
// for the default priority only and stay zero for high.
type BreakerStats struct {
	CxOpen           bool   // cx_open
	RemainingCx      uint64 // remaining_cx
	RqPendingOpen    bool   // rq_pending_open
	RqOpen           bool   // rq_open
	RqRetryOpen      bool   // rq_retry_open
	RemainingPending uint64 // remaining_pending
	RemainingRq      uint64 // remaining_rq
	RemainingRetries uint64 // remaining_retries
}

// OutlierStats are the outlier_detection.* statistics. "Detected"
// counters count every outlier found, "enforced" ones those ejected after
// the max-ejection-percent check and the enforcing_* percentage.
type OutlierStats struct {
	EjectionsActive         uint64 // ejections_active (gauge)
	EjectionsOverflow       uint64 // ejections_overflow: refused by max_ejection_percent
	EjectionsEnforcedTotal  uint64 // ejections_enforced_total
	EjectionsTotal          uint64 // ejections_total (deprecated in Envoy): consecutive 5xx and success rate, enforced or not
	EjectionsConsecutive5xx uint64 // ejections_consecutive_5xx (deprecated in Envoy)
	EjectionsSuccessRate    uint64 // ejections_success_rate (deprecated in Envoy)
	EnforcedConsecutive5xx  uint64 // ejections_enforced_consecutive_5xx
	DetectedConsecutive5xx  uint64 // ejections_detected_consecutive_5xx
	EnforcedGatewayFailure  uint64 // ejections_enforced_consecutive_gateway_failure
	DetectedGatewayFailure  uint64 // ejections_detected_consecutive_gateway_failure
	EnforcedLocalOrigin     uint64 // ejections_enforced_consecutive_local_origin_failure
	DetectedLocalOrigin     uint64 // ejections_detected_consecutive_local_origin_failure
	EnforcedSuccessRate     uint64 // ejections_enforced_success_rate
	DetectedSuccessRate     uint64 // ejections_detected_success_rate
	EnforcedLocalOriginSR   uint64 // ejections_enforced_local_origin_success_rate
	DetectedLocalOriginSR   uint64 // ejections_detected_local_origin_success_rate
	EnforcedFailurePct      uint64 // ejections_enforced_failure_percentage
	DetectedFailurePct      uint64 // ejections_detected_failure_percentage
	EnforcedFailurePctLocal uint64 // ejections_enforced_failure_percentage_local_origin
	DetectedFailurePctLocal uint64 // ejections_detected_failure_percentage_local_origin
}

// HealthCheckStats are the health_check.* statistics, summed over the
// cluster's checks. Envoy's passive_failure and verify_cluster have no
// Portico source (no x-envoy-immediate-health-check-fail, no service name
// verification) and are not reported.
type HealthCheckStats struct {
	Attempt        uint64 // attempt
	Success        uint64 // success
	Failure        uint64 // failure, network failures included
	NetworkFailure uint64 // network_failure
	Healthy        uint64 // healthy (gauge): endpoints passing every check
}

// clusterStats holds a cluster's counters. Data-path counters are atomics
// updated without a lock; the control path updates the rest under c.mu,
// also as atomics so that Stats never takes the lock.
type clusterStats struct {
	pendingOverflow atomic.Uint64
	activeOverflow  atomic.Uint64
	retryOverflow   atomic.Uint64

	membershipTotal, membershipHealthy, membershipDegraded, hcHealthy atomic.Uint64

	ejectionsActive, ejectionsOverflow, ejectionsTotal      atomic.Uint64
	ejectionsEnforcedTotal, ejections5xxOld, ejectionsSROld atomic.Uint64
	detected, enforced                                      [numEjectionTypes]atomic.Uint64
}

// Stats returns a snapshot of the cluster's statistics. It takes no lock;
// counters read at slightly different instants may disagree by the
// requests in flight.
func (c *Cluster) Stats() Stats {
	s := &c.stats
	d, h := c.breakers.prio[DefaultPriority].stats(), c.breakers.prio[HighPriority].stats()
	cx, maxCx := c.ConnStats().Active, int64(c.cfg.CircuitBreakers.Default.MaxConnections)
	d.CxOpen, d.RemainingCx = cx >= maxCx, uint64(max(0, maxCx-cx))
	var pending, active int64
	for i := range c.breakers.prio {
		pending += c.breakers.prio[i].pending.Load()
		active += c.breakers.prio[i].active.Load()
	}
	st := Stats{
		UpstreamRqActive:          uint64(max(0, active)),
		UpstreamRqPendingActive:   uint64(max(0, pending)),
		UpstreamRqPendingOverflow: s.pendingOverflow.Load(),
		UpstreamRqActiveOverflow:  s.activeOverflow.Load(),
		UpstreamRqRetryOverflow:   s.retryOverflow.Load(),
		MembershipTotal:           s.membershipTotal.Load(),
		MembershipHealthy:         s.membershipHealthy.Load(),
		MembershipDegraded:        s.membershipDegraded.Load(),
		CircuitBreakers:           CircuitBreakerStats{Default: d, High: h},
		OutlierDetection: OutlierStats{
			EjectionsActive:         s.ejectionsActive.Load(),
			EjectionsOverflow:       s.ejectionsOverflow.Load(),
			EjectionsEnforcedTotal:  s.ejectionsEnforcedTotal.Load(),
			EjectionsTotal:          s.ejectionsTotal.Load(),
			EjectionsConsecutive5xx: s.ejections5xxOld.Load(),
			EjectionsSuccessRate:    s.ejectionsSROld.Load(),
			EnforcedConsecutive5xx:  s.enforced[consecutive5xx].Load(),
			DetectedConsecutive5xx:  s.detected[consecutive5xx].Load(),
			EnforcedGatewayFailure:  s.enforced[consecutiveGatewayFailure].Load(),
			DetectedGatewayFailure:  s.detected[consecutiveGatewayFailure].Load(),
			EnforcedLocalOrigin:     s.enforced[consecutiveLocalOriginFailure].Load(),
			DetectedLocalOrigin:     s.detected[consecutiveLocalOriginFailure].Load(),
			EnforcedSuccessRate:     s.enforced[successRate].Load(),
			DetectedSuccessRate:     s.detected[successRate].Load(),
			EnforcedLocalOriginSR:   s.enforced[successRateLocalOrigin].Load(),
			DetectedLocalOriginSR:   s.detected[successRateLocalOrigin].Load(),
			EnforcedFailurePct:      s.enforced[failurePercentage].Load(),
			DetectedFailurePct:      s.detected[failurePercentage].Load(),
			EnforcedFailurePctLocal: s.enforced[failurePercentageLocalOrigin].Load(),
			DetectedFailurePctLocal: s.detected[failurePercentageLocalOrigin].Load(),
		},
	}
	for _, m := range c.hs.monitors {
		ms := m.Stats()
		st.HealthCheck.Attempt += ms.Attempts
		st.HealthCheck.Success += ms.Successes
		st.HealthCheck.Failure += ms.Failures
		st.HealthCheck.NetworkFailure += ms.NetworkFailures
	}
	st.HealthCheck.Healthy = s.hcHealthy.Load()
	return st
}
