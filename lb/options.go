package lb

import (
	"fmt"
	"math"
	"time"
)

// Defaults for Options, as Envoy documents them.
const (
	// DefaultOverprovisioningFactor is Envoy's overprovisioning_factor
	// default, in percent: a priority level or locality counts as fully
	// available while at least 1/1.4 ≈ 71.4 % of its endpoints are healthy.
	DefaultOverprovisioningFactor = 140
	// DefaultPanicThreshold is Envoy's healthy_panic_threshold default, in
	// percent.
	DefaultPanicThreshold = 50.0
	// DefaultSlowStartAggression is Envoy's slow_start_config.aggression
	// default: the weight ramps linearly over the window.
	DefaultSlowStartAggression = 1.0
	// DefaultSlowStartMinWeightPercent is Envoy's
	// slow_start_config.min_weight_percent default: an endpoint in slow
	// start gets at least 10 % of its weight.
	DefaultSlowStartMinWeightPercent = 10.0
)

// Options holds the configuration every balancer of this package shares:
// priority spill-over, the panic threshold and slow start (Envoy's
// common_lb_config and slow_start_config). The zero value is Envoy's
// default configuration. It is plain data; constructors copy it.
type Options struct {
	// OverprovisioningFactor, in percent, scales the healthy share of a
	// priority level (and of a locality) before traffic spills to lower
	// levels and then to degraded endpoints: a level's healthy
	// availability is min(100, factor × healthy / total), its degraded
	// availability the same with the degraded count. Zero means
	// DefaultOverprovisioningFactor (140, Envoy's 1.4).
	OverprovisioningFactor uint32
	// PanicThreshold, in percent, is the healthy plus degraded share of a
	// priority level below which the level balances over all of its
	// endpoints, healthy or not, on the theory that trying possibly bad
	// endpoints beats overloading the few good ones. Nil means
	// DefaultPanicThreshold (50); 0 disables panic mode. It must be within
	// [0, 100].
	PanicThreshold *float64
	// SlowStart ramps up the weight of endpoints that joined or turned
	// healthy recently. It applies to round robin and least request, as in
	// Envoy; the other balancers ignore it.
	SlowStart SlowStartConfig
}

// SlowStartConfig is Envoy's slow_start_config. During Window after an
// endpoint joins the set (or turns healthy again) its weight is scaled by
//
//	max(MinWeightPercent/100, (max(elapsed, 1ms) / Window)^(1/Aggression))
//
// The zero value disables slow start.
type SlowStartConfig struct {
	// Window is how long an endpoint stays in slow start; zero disables
	// it. Endpoints present in a balancer's first update are not ramped:
	// they would all ramp together, which changes nothing.
	Window time.Duration
	// Aggression shapes the ramp: 1 is linear, larger values ramp faster
	// at first. Nil means DefaultSlowStartAggression (1.0); it must be
	// finite and greater than 0.
	Aggression *float64
	// MinWeightPercent is the least share of its weight, in percent, an
	// endpoint in slow start gets. Nil means
	// DefaultSlowStartMinWeightPercent (10); it must be within [0, 100].
	MinWeightPercent *float64
}

// Validate reports whether the options are usable.
func (o Options) Validate() error {
	if p := o.PanicThreshold; p != nil && !(*p >= 0 && *p <= 100) {
		return fmt.Errorf("lb: panic threshold %v out of range [0, 100]", *p)
	}
	s := &o.SlowStart
	if s.Window < 0 {
		return fmt.Errorf("lb: slow start: window %v is negative", s.Window)
	}
	if a := s.Aggression; a != nil && !(*a > 0 && !math.IsInf(*a, 1)) {
		return fmt.Errorf("lb: slow start: aggression %v must be finite and greater than 0", *a)
	}
	if m := s.MinWeightPercent; m != nil && !(*m >= 0 && *m <= 100) {
		return fmt.Errorf("lb: slow start: min weight percent %v out of range [0, 100]", *m)
	}
	return nil
}

// options is Options with defaults applied, in the units the code uses.
type options struct {
	overprovisioning uint64  // percent
	panicThreshold   float64 // percent; 0 disables
	window           time.Duration
	aggression       float64
	minWeight        float64 // fraction in [0, 1]
}

// resolve applies defaults. Values Validate would reject are replaced by
// their defaults, so callers that must reject bad config call Validate
// first.
func (o Options) resolve() options {
	r := options{
		overprovisioning: DefaultOverprovisioningFactor,
		panicThreshold:   DefaultPanicThreshold,
		aggression:       DefaultSlowStartAggression,
		minWeight:        DefaultSlowStartMinWeightPercent / 100,
	}
	if o.OverprovisioningFactor != 0 {
		r.overprovisioning = uint64(o.OverprovisioningFactor)
	}
	if p := o.PanicThreshold; p != nil && *p >= 0 && *p <= 100 {
		r.panicThreshold = *p
	}
	s := &o.SlowStart
	if s.Window > 0 {
		r.window = s.Window
	}
	if a := s.Aggression; a != nil && *a > 0 && !math.IsInf(*a, 1) {
		r.aggression = *a
	}
	if m := s.MinWeightPercent; m != nil && *m >= 0 && *m <= 100 {
		r.minWeight = *m / 100
	}
	return r
}
