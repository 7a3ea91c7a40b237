package cluster

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Outlier-detection defaults, Envoy's documented values for every field of
// OutlierDetection left zero (or nil).
const (
	DefaultOutlierInterval                = 10 * time.Second
	DefaultBaseEjectionTime               = 30 * time.Second
	DefaultMaxEjectionTime                = 300 * time.Second
	DefaultMaxEjectionPercent             = 10
	DefaultConsecutive5xx                 = 5
	DefaultConsecutiveGatewayFailure      = 5
	DefaultConsecutiveLocalOriginFailure  = 5
	DefaultSuccessRateMinimumHosts        = 5
	DefaultSuccessRateRequestVolume       = 100
	DefaultSuccessRateStdevFactor         = 1900
	DefaultFailurePercentageThreshold     = 85
	DefaultFailurePercentageMinimumHosts  = 5
	DefaultFailurePercentageRequestVolume = 50
)

// OutlierDetection configures passive health checking (Envoy's
// cluster.v3.OutlierDetection): endpoints that fail are ejected from load
// balancing for a while. Zero fields mean Envoy's defaults; the Enforcing
// percentages are pointers because 0 (never eject) differs from several
// defaults of 100 — nil means the default, new(uint32(0)) disables.
//
// Results come from Send: a response's status code, or for failures
// before one, a connect failure or reset (reported as 503) or a timeout
// (504), which Envoy calls locally originated errors. Canceled requests
// are not counted. Consecutive-failure detection ejects at once, from the
// control path; success-rate and failure-percentage detection runs every
// Interval over the requests of the interval before. An ejection lasts
// BaseEjectionTime times the number of times the endpoint was ejected in
// a row, at most MaxEjectionTime, plus jitter; the endpoint returns at
// the first interval after that. Each interval an endpoint spends back in
// service takes one off that count.
//
// At most MaxEjectionPercent of the endpoints are ejected at once, but
// one endpoint may always be (as the proto documents and Envoy's
// always_eject_one_host arranges). When every endpoint of a priority is
// out, the balancer's panic mode uses them all.
type OutlierDetection struct {
	// Interval separates detection sweeps, which eject by success rate
	// and failure percentage and return ejected endpoints; default 10 s.
	Interval time.Duration
	// BaseEjectionTime is the first ejection's length; default 30 s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps an ejection's length; default 300 s or
	// BaseEjectionTime, whichever is longer.
	MaxEjectionTime time.Duration
	// MaxEjectionTimeJitter adds a random [0, jitter] to each ejection;
	// default 0.
	MaxEjectionTimeJitter time.Duration
	// MaxEjectionPercent is the share of endpoints that may be ejected at
	// once; nil means 10.
	MaxEjectionPercent *uint32

	// Consecutive5xx ejects an endpoint after this many 5xx responses
	// (and local failures, unless SplitExternalLocalOriginErrors) in a
	// row; default 5.
	Consecutive5xx uint32
	// EnforcingConsecutive5xx is the chance, in percent, that a detected
	// consecutive-5xx outlier is ejected; nil means 100.
	EnforcingConsecutive5xx *uint32
	// ConsecutiveGatewayFailure ejects after this many 502, 503 or 504
	// responses (and local failures, unless split) in a row; default 5.
	ConsecutiveGatewayFailure uint32
	// EnforcingConsecutiveGatewayFailure is the ejection chance in
	// percent; nil means 0: detected and counted, not enforced.
	EnforcingConsecutiveGatewayFailure *uint32

	// SplitExternalLocalOriginErrors counts local failures (connect
	// failure, reset, timeout) apart from the upstream's 5xx responses:
	// they feed ConsecutiveLocalOriginFailure and a separate success rate.
	SplitExternalLocalOriginErrors bool
	// ConsecutiveLocalOriginFailure ejects after this many local failures
	// in a row, with SplitExternalLocalOriginErrors; default 5.
	ConsecutiveLocalOriginFailure uint32
	// EnforcingConsecutiveLocalOriginFailure is the ejection chance in
	// percent; nil means 100.
	EnforcingConsecutiveLocalOriginFailure *uint32

	// SuccessRateMinimumHosts is how many endpoints need
	// SuccessRateRequestVolume requests in an interval for success-rate
	// detection to run; default 5.
	SuccessRateMinimumHosts uint32
	// SuccessRateRequestVolume is the requests an endpoint needs in an
	// interval to take part in success-rate detection; default 100.
	SuccessRateRequestVolume uint32
	// SuccessRateStdevFactor, divided by 1000, is the number of standard
	// deviations below the mean success rate that makes an outlier;
	// default 1900 (1.9).
	SuccessRateStdevFactor uint32
	// EnforcingSuccessRate is the ejection chance in percent for
	// success-rate outliers; nil means 100.
	EnforcingSuccessRate *uint32
	// EnforcingLocalOriginSuccessRate is the same for the local-origin
	// success rate, with SplitExternalLocalOriginErrors; nil means 100.
	EnforcingLocalOriginSuccessRate *uint32

	// FailurePercentageThreshold is the failure percentage at or above
	// which an endpoint is an outlier; default 85.
	FailurePercentageThreshold uint32
	// FailurePercentageMinimumHosts is how many endpoints need
	// FailurePercentageRequestVolume requests in an interval for
	// failure-percentage detection to run; default 5.
	FailurePercentageMinimumHosts uint32
	// FailurePercentageRequestVolume is the requests an endpoint needs in
	// an interval to take part; default 50.
	FailurePercentageRequestVolume uint32
	// EnforcingFailurePercentage is the ejection chance in percent; nil
	// means 0: detected and counted, not enforced.
	EnforcingFailurePercentage *uint32
	// EnforcingFailurePercentageLocalOrigin is the same for local
	// failures, with SplitExternalLocalOriginErrors; nil means 0.
	EnforcingFailurePercentageLocalOrigin *uint32

	// SuccessfulActiveHealthCheckUnejectHost returns an ejected endpoint
	// on its first passing active health check (when all its checks
	// pass) and resets its counters; nil means true.
	SuccessfulActiveHealthCheckUnejectHost *bool
}

func (o *OutlierDetection) validate(path string) []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"interval", o.Interval},
		{"base_ejection_time", o.BaseEjectionTime},
		{"max_ejection_time", o.MaxEjectionTime},
		{"max_ejection_time_jitter", o.MaxEjectionTimeJitter},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s.%s: negative %v", path, d.name, d.v))
		}
	}
	if o.BaseEjectionTime > 0 && o.MaxEjectionTime > 0 && o.MaxEjectionTime < o.BaseEjectionTime {
		errs = append(errs, fmt.Errorf("%s.max_ejection_time: %v is shorter than base_ejection_time %v", path, o.MaxEjectionTime, o.BaseEjectionTime))
	}
	for _, p := range []struct {
		name string
		v    *uint32
	}{
		{"max_ejection_percent", o.MaxEjectionPercent},
		{"enforcing_consecutive_5xx", o.EnforcingConsecutive5xx},
		{"enforcing_consecutive_gateway_failure", o.EnforcingConsecutiveGatewayFailure},
		{"enforcing_consecutive_local_origin_failure", o.EnforcingConsecutiveLocalOriginFailure},
		{"enforcing_success_rate", o.EnforcingSuccessRate},
		{"enforcing_local_origin_success_rate", o.EnforcingLocalOriginSuccessRate},
		{"enforcing_failure_percentage", o.EnforcingFailurePercentage},
		{"enforcing_failure_percentage_local_origin", o.EnforcingFailurePercentageLocalOrigin},
		{"failure_percentage_threshold", &o.FailurePercentageThreshold},
	} {
		if p.v != nil && *p.v > 100 {
			errs = append(errs, fmt.Errorf("%s.%s: %d over 100", path, p.name, *p.v))
		}
	}
	return errs
}

// ejectionType is Envoy's OutlierEjectionType.
type ejectionType uint8

const (
	consecutive5xx ejectionType = iota
	consecutiveGatewayFailure
	consecutiveLocalOriginFailure
	successRate
	successRateLocalOrigin
	failurePercentage
	failurePercentageLocalOrigin
	numEjectionTypes
)

// String returns the type as Envoy's stats spell it.
func (t ejectionType) String() string {
	switch t {
	case consecutive5xx:
		return "consecutive_5xx"
	case consecutiveGatewayFailure:
		return "consecutive_gateway_failure"
	case consecutiveLocalOriginFailure:
		return "consecutive_local_origin_failure"
	case successRate:
		return "success_rate"
	case successRateLocalOrigin:
		return "local_origin_success_rate"
	case failurePercentage:
		return "failure_percentage"
	case failurePercentageLocalOrigin:
		return "failure_percentage_local_origin"
	}
	return "unknown"
}

// Host event bits the data path and the health checks raise for the
// control loop.
const (
	ev5xx         = 1 << consecutive5xx
	evGateway     = 1 << consecutiveGatewayFailure
	evLocal       = 1 << consecutiveLocalOriginFailure
	evCheckPassed = 1 << numEjectionTypes
)

// hostOutlier is one endpoint's outlier-detection state.
type hostOutlier struct {
	// Data path.
	cons5xx, consGateway, consLocal atomic.Uint32
	// srExt and srLocal pack the current interval's requests (high 32
	// bits) and successes (low 32 bits) so that one atomic add records
	// a result.
	srExt, srLocal atomic.Uint64
	events         atomic.Uint32
	ejectedNow     atomic.Bool // mirrors ejected for lock-free readers

	// Control path, under c.mu.
	ejected         bool
	ejectedAt       time.Time
	unejectedAt     time.Time
	backoff         int64 // Envoy's ejectTimeBackoff multiplier
	ejections       uint32
	jitter          time.Duration
	reason          ejectionType
	rate, rateLocal float64 // last interval's success rates, or -1
	lastExt         uint64  // last interval's packed counters
	lastLocal       uint64
}

const (
	srRequest = 1 << 32
	srSuccess = 1
)

// outlierConfig is OutlierDetection with defaults applied.
type outlierConfig struct {
	interval, base, maxTime, jitter   time.Duration
	maxPercent                        uint32
	split, hcUneject                  bool
	cons5xx, consGateway, consLocal   uint32
	srMinHosts, srVolume, srStdev     uint32
	fpThreshold, fpMinHosts, fpVolume uint32
	enforcing                         [numEjectionTypes]uint32
}

// outlierDetector holds the resolved configuration. Its data-path
// methods only touch the host's atomics and wake the control loop.
type outlierDetector struct {
	cfg  outlierConfig
	wake func()
	rand func(n int) int // [0, n); injectable for tests
}

func newOutlierDetector(o *OutlierDetection, wake func()) *outlierDetector {
	orDefault := func(v, d uint32) uint32 {
		if v == 0 {
			return d
		}
		return v
	}
	ptr := func(v *uint32, d uint32) uint32 {
		if v == nil {
			return d
		}
		return *v
	}
	cfg := outlierConfig{
		interval:    o.Interval,
		base:        o.BaseEjectionTime,
		maxTime:     o.MaxEjectionTime,
		jitter:      o.MaxEjectionTimeJitter,
		maxPercent:  ptr(o.MaxEjectionPercent, DefaultMaxEjectionPercent),
		split:       o.SplitExternalLocalOriginErrors,
		hcUneject:   o.SuccessfulActiveHealthCheckUnejectHost == nil || *o.SuccessfulActiveHealthCheckUnejectHost,
		cons5xx:     orDefault(o.Consecutive5xx, DefaultConsecutive5xx),
		consGateway: orDefault(o.ConsecutiveGatewayFailure, DefaultConsecutiveGatewayFailure),
		consLocal:   orDefault(o.ConsecutiveLocalOriginFailure, DefaultConsecutiveLocalOriginFailure),
		srMinHosts:  orDefault(o.SuccessRateMinimumHosts, DefaultSuccessRateMinimumHosts),
		srVolume:    orDefault(o.SuccessRateRequestVolume, DefaultSuccessRateRequestVolume),
		srStdev:     orDefault(o.SuccessRateStdevFactor, DefaultSuccessRateStdevFactor),
		fpThreshold: orDefault(o.FailurePercentageThreshold, DefaultFailurePercentageThreshold),
		fpMinHosts:  orDefault(o.FailurePercentageMinimumHosts, DefaultFailurePercentageMinimumHosts),
		fpVolume:    orDefault(o.FailurePercentageRequestVolume, DefaultFailurePercentageRequestVolume),
	}
	if cfg.interval == 0 {
		cfg.interval = DefaultOutlierInterval
	}
	if cfg.base == 0 {
		cfg.base = DefaultBaseEjectionTime
	}
	if cfg.maxTime == 0 {
		cfg.maxTime = max(DefaultMaxEjectionTime, cfg.base)
	}
	cfg.enforcing = [numEjectionTypes]uint32{
		consecutive5xx:                ptr(o.EnforcingConsecutive5xx, 100),
		consecutiveGatewayFailure:     ptr(o.EnforcingConsecutiveGatewayFailure, 0),
		consecutiveLocalOriginFailure: ptr(o.EnforcingConsecutiveLocalOriginFailure, 100),
		successRate:                   ptr(o.EnforcingSuccessRate, 100),
		successRateLocalOrigin:        ptr(o.EnforcingLocalOriginSuccessRate, 100),
		failurePercentage:             ptr(o.EnforcingFailurePercentage, 0),
		failurePercentageLocalOrigin:  ptr(o.EnforcingFailurePercentageLocalOrigin, 0),
	}
	return &outlierDetector{cfg: cfg, wake: wake, rand: rand.IntN}
}

// raise flags a detection on h for the control loop.
func (d *outlierDetector) raise(h *host, ev uint32) {
	h.od.events.Or(ev)
	d.wake()
}

// clearCount zeroes a consecutive counter, writing only when it is not zero
// already so that the success path leaves the cache line shared.
func clearCount(n *atomic.Uint32) {
	if n.Load() != 0 {
		n.Store(0)
	}
}

// putHTTP records an upstream response status, or a local failure
// mapped to one (Envoy's putHttpResponseCode). It takes no lock and
// does not allocate.
func (d *outlierDetector) putHTTP(h *host, status int) {
	if status < 500 {
		h.od.srExt.Add(srRequest | srSuccess)
		clearCount(&h.od.cons5xx)
		clearCount(&h.od.consGateway)
		return
	}
	h.od.srExt.Add(srRequest)
	if status == 502 || status == 503 || status == 504 {
		if h.od.consGateway.Add(1) == d.cfg.consGateway {
			d.raise(h, evGateway)
		}
	} else {
		clearCount(&h.od.consGateway)
	}
	if h.od.cons5xx.Add(1) == d.cfg.cons5xx {
		d.raise(h, ev5xx)
	}
}

// putLocalFailure records a failure before response headers; status is
// the code Envoy maps it to when errors are not split.
func (d *outlierDetector) putLocalFailure(h *host, status int) {
	if !d.cfg.split {
		d.putHTTP(h, status)
		return
	}
	h.od.srLocal.Add(srRequest)
	if h.od.consLocal.Add(1) == d.cfg.consLocal {
		d.raise(h, evLocal)
	}
}

// putLocalSuccess records a connection that carried an exchange, in split
// mode.
func (d *outlierDetector) putLocalSuccess(h *host) {
	h.od.srLocal.Add(srRequest | srSuccess)
	clearCount(&h.od.consLocal)
}

// ejectionTime is the length of h's current ejection.
func (d *outlierDetector) ejectionTime(od *hostOutlier) time.Duration {
	t := min(time.Duration(od.backoff)*d.cfg.base, d.cfg.maxTime)
	return t + od.jitter
}

// outlierEvents applies the consecutive-failure detections and passing
// health checks the data path and the checks raised. c.mu is held.
func (c *Cluster) outlierEvents(now time.Time) {
	d := c.outlier
	set := c.hs.hosts.Load()
	for _, h := range set.list {
		ev := h.od.events.Swap(0)
		if ev == 0 {
			continue
		}
		if ev&evCheckPassed != 0 && h.od.ejected && d.cfg.hcUneject && c.checksPassing(h) {
			c.uneject(h, now)
		}
		// Gateway failures first: Envoy detects them before 5xx, so an
		// unenforced gateway detection is counted before a 5xx ejection.
		for _, t := range [...]ejectionType{consecutiveGatewayFailure, consecutive5xx, consecutiveLocalOriginFailure} {
			if ev&(1<<t) == 0 || h.od.ejected {
				// Envoy leaves the counter of an ejected host alone;
				// unejection resets it.
				continue
			}
			c.stats.detected[t].Add(1)
			c.eject(h, t, now, len(set.list))
			switch t {
			case consecutive5xx:
				c.stats.ejections5xxOld.Add(1)
				h.od.cons5xx.Store(0)
			case consecutiveGatewayFailure:
				h.od.consGateway.Store(0)
			case consecutiveLocalOriginFailure:
				h.od.consLocal.Store(0)
			}
		}
	}
}

// eject ejects h unless max_ejection_percent or the enforcing percentage
// says otherwise (Envoy's DetectorImpl::ejectHost). c.mu is held.
func (c *Cluster) eject(h *host, t ejectionType, now time.Time, hosts int) {
	d := c.outlier
	active := c.stats.ejectionsActive.Load()
	if active > 0 && 100*(active+1) > uint64(d.cfg.maxPercent)*uint64(hosts) {
		c.stats.ejectionsOverflow.Add(1)
		return
	}
	if t == consecutive5xx || t == successRate {
		c.stats.ejectionsTotal.Add(1)
	}
	if p := d.cfg.enforcing[t]; p < 100 && (p == 0 || uint32(d.rand(100)) >= p) {
		return
	}
	c.stats.ejectionsActive.Add(1)
	c.stats.ejectionsEnforcedTotal.Add(1)
	c.stats.enforced[t].Add(1)
	od := &h.od
	od.ejected = true
	od.ejectedNow.Store(true)
	od.ejectedAt = now
	od.ejections++
	od.reason = t
	od.jitter = 0
	if d.cfg.jitter > 0 {
		od.jitter = time.Duration(d.rand(int(min(d.cfg.jitter, math.MaxInt64-1)) + 1))
	}
	if time.Duration(od.backoff)*d.cfg.base < d.cfg.maxTime+d.cfg.base {
		od.backoff++
	}
}

// uneject returns h to service and resets its consecutive counters.
// c.mu is held.
func (c *Cluster) uneject(h *host, now time.Time) {
	od := &h.od
	od.ejected = false
	od.ejectedNow.Store(false)
	od.unejectedAt = now
	od.cons5xx.Store(0)
	od.consGateway.Store(0)
	od.consLocal.Store(0)
	c.stats.ejectionsActive.Add(^uint64(0))
}

// outlierSweep is the interval timer (Envoy's onIntervalTimer): return
// endpoints whose ejection ran out, close the interval's success-rate
// buckets, eject by success rate and failure percentage, and decay the
// ejection multiplier of endpoints that stayed in service. c.mu is held.
func (c *Cluster) outlierSweep(now time.Time) {
	d := c.outlier
	if d == nil {
		return
	}
	set := c.hs.hosts.Load()
	for _, h := range set.list {
		od := &h.od
		if od.ejected && now.Sub(od.ejectedAt) >= d.ejectionTime(od) {
			c.uneject(h, now)
		}
		od.lastExt = od.srExt.Swap(0)
		od.lastLocal = od.srLocal.Swap(0)
		od.rate, od.rateLocal = -1, -1
	}
	c.successRateEjections(set.list, false, now)
	c.successRateEjections(set.list, true, now)
	for _, h := range set.list {
		od := &h.od
		if !od.ejected && !od.unejectedAt.IsZero() && now.Sub(od.unejectedAt) >= d.cfg.interval && od.backoff > 0 {
			od.backoff--
		}
	}
	c.republish(false)
}

// successRateEjections is Envoy's processSuccessRateEjections for the
// external or the local-origin results of the last interval.
func (c *Cluster) successRateEjections(hosts []*host, local bool, now time.Time) {
	cfg := &c.outlier.cfg
	if len(hosts) < int(cfg.srMinHosts) && len(hosts) < int(cfg.fpMinHosts) {
		return
	}
	type sample struct {
		h    *host
		rate float64
	}
	var srValid, fpValid []sample
	var sum float64
	for _, h := range hosts {
		if h.od.ejected {
			continue
		}
		packed := h.od.lastExt
		if local {
			packed = h.od.lastLocal
		}
		total, ok := packed>>32, packed&math.MaxUint32
		if total == 0 {
			continue
		}
		rate := float64(ok) * 100 / float64(total)
		if total >= uint64(min(cfg.srVolume, cfg.fpVolume)) {
			if local {
				h.od.rateLocal = rate
			} else {
				h.od.rate = rate
			}
		}
		if total >= uint64(cfg.srVolume) {
			srValid = append(srValid, sample{h, rate})
			sum += rate
		}
		if total >= uint64(cfg.fpVolume) {
			fpValid = append(fpValid, sample{h, rate})
		}
	}
	srType, fpType := successRate, failurePercentage
	if local {
		srType, fpType = successRateLocalOrigin, failurePercentageLocalOrigin
	}
	if len(srValid) > 0 && len(srValid) >= int(cfg.srMinHosts) {
		mean := sum / float64(len(srValid))
		var variance float64
		for _, s := range srValid {
			variance += (s.rate - mean) * (s.rate - mean)
		}
		stdev := math.Sqrt(variance / float64(len(srValid)))
		threshold := mean - float64(cfg.srStdev)/1000*stdev
		for _, s := range srValid {
			if s.rate < threshold {
				c.stats.ejectionsSROld.Add(1)
				c.stats.detected[srType].Add(1)
				if !s.h.od.ejected {
					c.eject(s.h, srType, now, len(hosts))
				}
			}
		}
	}
	if len(fpValid) > 0 && len(fpValid) >= int(cfg.fpMinHosts) {
		for _, s := range fpValid {
			if 100-s.rate >= float64(cfg.fpThreshold) {
				c.stats.detected[fpType].Add(1)
				if !s.h.od.ejected {
					c.eject(s.h, fpType, now, len(hosts))
				}
			}
		}
	}
}
