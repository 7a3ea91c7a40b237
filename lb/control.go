package lb

import (
	"math"
	"slices"
	"sync"
	"time"
)

// control is the control-path half that every balancer in this package
// embeds: it keeps the last endpoint set, tracks slow start, builds the
// shared selection and hands it to the balancer's publish function, which
// builds the algorithm's per-set state and stores a new picker. Update and
// the slow-start timer both publish, serialized by mu; pickers never see
// mu.
type control struct {
	mu      sync.Mutex
	opts    options
	fold    bool // hashing balancer: fold locality weights into sets
	eps     []Endpoint
	ramp    *ramp // nil when slow start is off or not supported
	timer   *time.Timer
	closed  bool
	publish func(sel *selection, eps []Endpoint)
}

// init sets the control up and publishes the empty picker. slowStart is
// whether the algorithm honours Options.SlowStart.
func (c *control) init(o Options, fold, slowStart bool, publish func(*selection, []Endpoint)) {
	c.opts = o.resolve()
	c.fold = fold
	c.publish = publish
	if slowStart && c.opts.window > 0 {
		c.ramp = &ramp{o: &c.opts}
	}
	publish(emptySelection, nil)
}

// update replaces the endpoint set and publishes.
func (c *control) update(eps []Endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The caller owns eps by contract, but the slow-start timer reads the
	// set later; a copy keeps a careless caller from racing with it.
	c.eps = slices.Clone(eps)
	now := time.Now()
	if c.ramp != nil {
		c.ramp.observe(c.eps, now)
	}
	c.publishLocked(now)
}

// publishLocked publishes a picker for c.eps as of now and, while any
// endpoint is in slow start, arms the timer to publish again one ramp
// step later.
func (c *control) publishLocked(now time.Time) {
	var factors []float64
	ramping := false
	if c.ramp != nil {
		factors, ramping = c.ramp.factors(c.eps, now)
	}
	c.publish(buildSelection(c.eps, &c.opts, c.fold, factors), c.eps)
	if !ramping || c.closed {
		return
	}
	d := rampStep(c.opts.window)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.tick)
	} else {
		c.timer.Reset(d)
	}
}

func (c *control) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.publishLocked(time.Now())
	}
}

func (c *control) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	return nil
}

// rampStep is how often pickers are republished while an endpoint is in
// slow start: 1/32 of the window, between 10 ms and 1 s. Pickers are
// immutable, so the ramp advances in these steps rather than per request
// as in Envoy, whose EDF scheduler recomputes weights under a lock.
func rampStep(window time.Duration) time.Duration {
	return min(max(window/32, 10*time.Millisecond), time.Second)
}

// ramp tracks when endpoints entered slow start.
type ramp struct {
	o     *options
	seen  bool // the first update has been observed
	state map[string]rampEntry
}

type rampEntry struct {
	healthy bool
	start   time.Time // zero: not in slow start
}

// observe records an update at now. An endpoint enters slow start when it
// joins the set healthy, or turns healthy, after the first update; Envoy
// likewise starts the window at the host's last transition to healthy.
// Healthy here is the Healthy flag, degraded endpoints included: turning
// from degraded to healthy is no new start.
func (r *ramp) observe(eps []Endpoint, now time.Time) {
	next := make(map[string]rampEntry, len(eps))
	for i := range eps {
		ep := &eps[i]
		if _, dup := next[ep.Address]; dup {
			continue
		}
		old, known := r.state[ep.Address]
		e := rampEntry{healthy: ep.Healthy}
		switch {
		case known && old.healthy && ep.Healthy:
			e.start = old.start
		case ep.Healthy && r.seen:
			e.start = now
		}
		next[ep.Address] = e
	}
	r.state = next
	r.seen = true
}

// factors returns each endpoint's slow-start weight factor at now (nil
// when none is in slow start) and whether any is. Degraded endpoints keep
// their full weight, as in Envoy, which ramps only healthy hosts; their
// window still starts when they turn usable, so one that goes on to turn
// healthy ramps for what is left of it (Envoy's last_hc_pass_time).
func (r *ramp) factors(eps []Endpoint, now time.Time) ([]float64, bool) {
	var f []float64
	for i := range eps {
		e := r.state[eps[i].Address]
		if e.start.IsZero() || availabilityOf(&eps[i]) != availHealthy {
			continue
		}
		elapsed := now.Sub(e.start)
		if elapsed >= r.o.window {
			continue
		}
		if f == nil {
			f = make([]float64, len(eps))
			for j := range f {
				f[j] = 1
			}
		}
		f[i] = r.o.factor(elapsed)
	}
	return f, f != nil
}

// factor is Envoy's slow-start scaling (EdfLoadBalancerBase::
// applySlowStartFactor) for an endpoint elapsed into its window.
func (o *options) factor(elapsed time.Duration) float64 {
	t := float64(max(elapsed, time.Millisecond)) / float64(o.window)
	if o.aggression != 1 && t != 1 {
		t = math.Pow(t, 1/o.aggression)
	}
	return max(t, o.minWeight)
}
