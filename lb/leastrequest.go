package lb

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
)

// Defaults for LeastRequestConfig, as in Envoy's LeastRequest policy.
const (
	// DefaultChoiceCount is Envoy's choice_count default: power of two
	// choices.
	DefaultChoiceCount = 2
	// DefaultActiveRequestBias is Envoy's active_request_bias default.
	DefaultActiveRequestBias = 1.0
)

// LeastRequestConfig configures NewLeastRequest. The zero value is Envoy's
// default configuration.
type LeastRequestConfig struct {
	// ChoiceCount is how many endpoints are sampled at random per pick
	// when all weights are equal; the one with the fewest active requests
	// wins. Zero means DefaultChoiceCount (2); otherwise it must be at
	// least 2, as in Envoy.
	ChoiceCount uint32
	// ActiveRequestBias applies when weights differ: each endpoint's
	// effective weight is weight / (active+1)^ActiveRequestBias. Nil means
	// DefaultActiveRequestBias (1.0); 0 ignores active requests (plain
	// weighted random); larger values avoid busy endpoints harder. It must
	// be finite and not negative.
	ActiveRequestBias *float64
}

// Validate reports whether the config is usable.
func (c LeastRequestConfig) Validate() error {
	if c.ChoiceCount == 1 {
		return errors.New("lb: least request: choice count must be at least 2")
	}
	if b := c.ActiveRequestBias; b != nil && (*b < 0 || math.IsNaN(*b) || math.IsInf(*b, 0)) {
		return fmt.Errorf("lb: least request: active request bias %v must be finite and not negative", *b)
	}
	return nil
}

// LeastRequest is a Balancer that prefers endpoints with fewer requests in
// flight (Envoy's LEAST_REQUEST policy).
//
// With equal weights it uses the power of N choices: it samples
// ChoiceCount endpoints uniformly at random (with replacement, as Envoy
// does) and picks the one with the fewest active requests, which spreads
// load nearly as well as a full scan at O(ChoiceCount) cost. With unequal
// weights it draws in proportion to the effective weight
// weight / (active+1)^ActiveRequestBias; Envoy keeps an EDF schedule over
// these, which needs a lock, so this picker computes the same proportions
// over all endpoints in two lock-free O(n) passes instead.
//
// Active requests are counted per endpoint address: Pick increments the
// counter and the PickResult's Done callback decrements it; the callback
// is bound once per address, when it first appears, never per request. Counters survive Updates for
// addresses that stay in the endpoint set (healthy or not), so in-flight
// requests keep counting across a picker swap. Every successful Pick must
// be matched by exactly one call to Done.
//
// Endpoint selection (highest healthy priority level, panic mode when none
// is healthy) is the same as [RoundRobin]'s.
//
// Update must be called serially (the Balancer contract) and owns the
// counter map; Picker and the pickers it returns are safe for concurrent
// use and never block.
type LeastRequest struct {
	picker atomic.Pointer[lrPicker]
	choice int
	bias   float64
	// hosts maps addresses to counters; only Update touches it.
	hosts map[string]*lrHost
}

var (
	_ Balancer = (*LeastRequest)(nil)
	_ Picker   = (*lrPicker)(nil)
)

// NewLeastRequest returns a LeastRequest balancer with no endpoints; its
// picker returns ErrNoEndpoint until the first Update. Zero fields of cfg
// take Envoy's defaults; fields that Validate would reject are replaced by
// their defaults too, so callers that must reject bad config call Validate
// first.
func NewLeastRequest(cfg LeastRequestConfig) Balancer {
	b := &LeastRequest{choice: DefaultChoiceCount, bias: DefaultActiveRequestBias}
	if cfg.ChoiceCount >= 2 {
		b.choice = int(cfg.ChoiceCount)
	}
	if v := cfg.ActiveRequestBias; v != nil && *v >= 0 && !math.IsInf(*v, 1) {
		b.bias = *v // NaN fails the comparison and keeps the default
	}
	b.picker.Store(&lrPicker{})
	return b
}

// Update replaces the endpoint set and publishes a new picker atomically.
// Update must not be called concurrently with itself.
func (b *LeastRequest) Update(endpoints []Endpoint) {
	hosts := make(map[string]*lrHost, len(endpoints))
	for i := range endpoints {
		addr := endpoints[i].Address
		if _, ok := hosts[addr]; ok {
			continue
		}
		h := b.hosts[addr]
		if h == nil {
			h = newLRHost()
		}
		hosts[addr] = h
	}
	b.hosts = hosts

	eps := selectEndpoints(endpoints)
	p := &lrPicker{
		endpoints: eps,
		hosts:     make([]*lrHost, len(eps)),
		choice:    b.choice,
		bias:      b.bias,
		weighted:  cumulativeWeights(eps) != nil,
	}
	for i := range eps {
		p.hosts[i] = hosts[eps[i].Address]
	}
	b.picker.Store(p)
}

// Picker returns the current picker. It is safe for concurrent use.
func (b *LeastRequest) Picker() Picker { return b.picker.Load() }

// lrHost is one address's active request counter and the Done callback
// bound to it.
type lrHost struct {
	active atomic.Int64
	done   func(DoneInfo)
	// Pad to a cache line: counters of different endpoints are written by
	// different cores and would otherwise share lines (16-byte objects).
	_ [48]byte
}

func newLRHost() *lrHost {
	h := &lrHost{}
	h.done = func(DoneInfo) { h.active.Add(-1) }
	return h
}

// load returns the active request count, ignoring transient negatives
// from a Done called twice.
func (h *lrHost) load() int64 { return max(h.active.Load(), 0) }

// lrPicker is an immutable least-request snapshot; only the counters it
// points to change.
type lrPicker struct {
	endpoints []Endpoint
	hosts     []*lrHost // parallel to endpoints
	choice    int
	bias      float64
	weighted  bool
}

// Pick returns a lightly loaded endpoint and counts the request against
// it; the caller must call the returned Done once the request has
// finished. When info.Exclude is in the set and another endpoint exists,
// it is never chosen. Pick never allocates or blocks.
func (p *lrPicker) Pick(info PickInfo) (PickResult, error) {
	n := len(p.endpoints)
	if n == 0 {
		return PickResult{}, ErrNoEndpoint
	}
	x := -1
	if n > 1 {
		x = indexOf(p.endpoints, info.Exclude)
	}
	var i int
	if p.weighted {
		i = p.pickWeighted(x)
	} else {
		i = p.pickChoices(x)
	}
	h := p.hosts[i]
	h.active.Add(1)
	return PickResult{Endpoint: &p.endpoints[i], Done: h.done}, nil
}

// pickChoices is the power of N choices over uniformly sampled endpoints.
func (p *lrPicker) pickChoices(skip int) int {
	n := len(p.endpoints)
	best := randomSkipping(n, skip)
	if n == 1 || (n == 2 && skip >= 0) {
		return best
	}
	bestActive := p.hosts[best].load()
	for range p.choice - 1 {
		c := randomSkipping(n, skip)
		if a := p.hosts[c].load(); a < bestActive {
			best, bestActive = c, a
		}
	}
	return best
}

// pickWeighted draws in proportion to effective weights. Up to
// snapshotSize endpoints, the weights are computed once into a stack
// buffer; beyond that they are recomputed in a second pass, and as
// counters move between passes it falls back to the last eligible
// endpoint if the draw overshoots.
func (p *lrPicker) pickWeighted(skip int) int {
	const snapshotSize = 128
	var buf [snapshotSize]float64
	n := len(p.endpoints)
	var total float64
	for i := range n {
		if i == skip {
			continue
		}
		w := p.effectiveWeight(i)
		if i < snapshotSize {
			buf[i] = w
		}
		total += w
	}
	r := rand.Float64() * total
	last := -1
	for i := range n {
		if i == skip {
			continue
		}
		last = i
		w := buf[min(i, snapshotSize-1)]
		if i >= snapshotSize {
			w = p.effectiveWeight(i)
		}
		r -= w
		if r < 0 {
			return i
		}
	}
	return last
}

func (p *lrPicker) effectiveWeight(i int) float64 {
	w := float64(weightOf(&p.endpoints[i]))
	switch p.bias {
	case 0:
		return w
	case 1:
		return w / float64(p.hosts[i].load()+1)
	default:
		return w / math.Pow(float64(p.hosts[i].load()+1), p.bias)
	}
}
