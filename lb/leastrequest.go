package lb

import (
	"errors"
	"fmt"
	"io"
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
// It first selects a set of endpoints as every balancer in this package
// does (priority load, panic threshold, locality weights; see the package
// documentation), then picks within it. With equal weights it uses the
// power of N choices: it samples ChoiceCount endpoints uniformly at
// random (with replacement, as Envoy does) and picks the one with the
// fewest active requests, which spreads load nearly as well as a full scan
// at O(ChoiceCount) cost. With unequal weights, or while an endpoint is in
// slow start, it draws in proportion to the effective weight
// weight × slow-start factor / (active+1)^ActiveRequestBias; Envoy keeps
// an EDF schedule over these, which needs a lock, so this picker draws the
// same proportions lock-free by rejection sampling: a draw by static
// weight in O(log n), accepted with probability 1/(active+1)^bias (at most
// 8 tries, then the best proposal seen).
//
// Active requests are counted per endpoint address: Pick increments the
// counter and the PickResult's Done callback decrements it; the callback
// is bound once per address, when it first appears, never per request.
// Counters survive Updates for addresses that stay in the endpoint set
// (healthy or not), so in-flight requests keep counting across a picker
// swap. Every successful Pick must be matched by exactly one call to Done.
//
// Update must be called serially (the Balancer contract) and owns the
// counter map; Picker and the pickers it returns are safe for concurrent
// use and never block. Close stops the slow-start timer.
type LeastRequest struct {
	c      control
	picker atomic.Pointer[lrPicker]
	choice int
	bias   float64
	// hosts maps addresses to counters; only publish, serialized by c,
	// touches it.
	hosts map[string]*lrHost
}

var (
	_ Balancer  = (*LeastRequest)(nil)
	_ io.Closer = (*LeastRequest)(nil)
	_ Picker    = (*lrPicker)(nil)
)

// NewLeastRequest returns a LeastRequest balancer with default Options and
// no endpoints; its picker returns ErrNoEndpoint until the first Update.
// Zero fields of cfg take Envoy's defaults; fields that Validate would
// reject are replaced by their defaults too, so callers that must reject
// bad config call Validate first.
func NewLeastRequest(cfg LeastRequestConfig) Balancer {
	return NewLeastRequestWith(cfg, Options{})
}

// NewLeastRequestWith returns a LeastRequest balancer with the given
// config and options, treating invalid fields as NewLeastRequest and
// NewRoundRobinWith do.
func NewLeastRequestWith(cfg LeastRequestConfig, opts Options) *LeastRequest {
	b := &LeastRequest{choice: DefaultChoiceCount, bias: DefaultActiveRequestBias}
	if cfg.ChoiceCount >= 2 {
		b.choice = int(cfg.ChoiceCount)
	}
	if v := cfg.ActiveRequestBias; v != nil && *v >= 0 && !math.IsInf(*v, 1) {
		b.bias = *v // NaN fails the comparison and keeps the default
	}
	b.c.init(opts, false, true, b.publish)
	return b
}

// Update replaces the endpoint set and publishes a new picker atomically.
// Update must not be called concurrently with itself.
func (b *LeastRequest) Update(endpoints []Endpoint) { b.c.update(endpoints) }

// Picker returns the current picker. It is safe for concurrent use.
func (b *LeastRequest) Picker() Picker { return b.picker.Load() }

// Close stops republishing for slow start; the balancer keeps serving and
// accepting updates. It is idempotent and always returns nil.
func (b *LeastRequest) Close() error { return b.c.close() }

func (b *LeastRequest) publish(sel *selection, endpoints []Endpoint) {
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

	p := &lrPicker{sel: sel, sets: make([]lrSet, len(sel.sets)), choice: b.choice, bias: b.bias}
	for k := range sel.sets {
		hs := &sel.sets[k]
		s := &p.sets[k]
		s.weights = hs.weights
		if s.weights != nil {
			s.cum = make([]float64, len(s.weights))
			var sum float64
			for i, w := range s.weights {
				sum += w
				s.cum[i] = sum
			}
		}
		s.hosts = make([]*lrHost, len(hs.endpoints))
		for i := range hs.endpoints {
			s.hosts[i] = hosts[hs.endpoints[i].Address]
		}
	}
	b.picker.Store(p)
}

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
	sel    *selection
	sets   []lrSet // parallel to sel.sets
	choice int
	bias   float64
}

// lrSet is the least-request state of one host set.
type lrSet struct {
	hosts []*lrHost // parallel to the set's endpoints
	// weights are the effective static weights (slow start included);
	// nil when equal, which selects the power of N choices.
	weights []float64
	cum     []float64 // running sums of weights, for O(log n) draws
}

// Pick returns a lightly loaded endpoint of the selected set and counts
// the request against it; the caller must call the returned Done once the
// request has finished. When info.Exclude is in the set and the set has
// another endpoint, it is never chosen. Pick never allocates or blocks.
func (p *lrPicker) Pick(info PickInfo) (PickResult, error) {
	k := p.sel.choose(0, false, info.Exclude)
	if k < 0 {
		return PickResult{}, ErrNoEndpoint
	}
	eps := p.sel.sets[k].endpoints
	s := &p.sets[k]
	x := -1
	if len(eps) > 1 {
		x = indexOf(eps, info.Exclude)
	}
	var i int
	if s.weights != nil {
		i = s.pickWeighted(x, p.bias)
	} else {
		i = s.pickChoices(x, p.choice)
	}
	h := s.hosts[i]
	h.active.Add(1)
	return PickResult{Endpoint: &eps[i], Done: h.done}, nil
}

// pickChoices is the power of N choices over uniformly sampled endpoints.
func (s *lrSet) pickChoices(skip, choice int) int {
	n := len(s.hosts)
	best := randomSkipping(n, skip)
	if n == 1 || (n == 2 && skip >= 0) {
		return best
	}
	bestActive := s.hosts[best].load()
	for range choice - 1 {
		c := randomSkipping(n, skip)
		if a := s.hosts[c].load(); a < bestActive {
			best, bestActive = c, a
		}
	}
	return best
}

// maxWeightedTries bounds the rejection sampling of pickWeighted.
const maxWeightedTries = 8

// pickWeighted draws in proportion to the effective weight
// weight / (active+1)^bias by rejection sampling, in O(log n) per try with
// no lock: a proposal is drawn in proportion to its static weight (slow
// start included) by binary search over the running sums, then accepted
// with probability 1/(active+1)^bias, which makes accepted picks exactly
// proportional to the effective weight. When every endpoint is busy the
// acceptance rate drops, so after maxWeightedTries rejections the proposal
// with the highest effective weight seen wins.
func (s *lrSet) pickWeighted(skip int, bias float64) int {
	best, bestW := -1, -1.0
	for range maxWeightedTries {
		i := s.drawStatic(skip)
		if bias == 0 {
			return i
		}
		var f float64
		if a := float64(s.hosts[i].load() + 1); bias == 1 {
			f = 1 / a
		} else {
			f = math.Pow(a, -bias)
		}
		if f >= 1 || rand.Float64() < f {
			return i
		}
		if w := s.weights[i] * f; w > bestW {
			best, bestW = i, w
		}
	}
	return best
}

// drawStatic returns an index drawn in proportion to the static weights,
// leaving out skip (-1 for none): the draw is made over the total minus
// the skipped weight and shifted past the skipped range.
func (s *lrSet) drawStatic(skip int) int {
	cum := s.cum
	n := len(cum)
	total := cum[n-1]
	var before, skipped float64
	if skip >= 0 {
		if skip > 0 {
			before = cum[skip-1]
		}
		skipped = cum[skip] - before
		total -= skipped
	}
	if total <= 0 {
		return randomSkipping(n, skip)
	}
	r := rand.Float64() * total
	if skip >= 0 && r >= before {
		r += skipped
	}
	lo, hi := 0, n-1 // the first index whose running sum exceeds r
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if cum[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if lo == skip { // r landed on the boundary through rounding
		return randomSkipping(n, skip)
	}
	return lo
}

func (s *lrSet) effectiveWeight(i int, bias float64) float64 {
	w := s.weights[i]
	switch bias {
	case 0:
		return w
	case 1:
		return w / float64(s.hosts[i].load()+1)
	default:
		return w / math.Pow(float64(s.hosts[i].load()+1), bias)
	}
}
