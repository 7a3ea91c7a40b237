package lb

import (
	"math/rand/v2"
	"sync/atomic"
)

// Random is a Balancer that sends each request to an endpoint chosen
// uniformly at random, or in proportion to the endpoints' weights when
// they differ (Envoy's RANDOM policy). It has no shared mutable state on
// the request path: each Pick draws from math/rand/v2's per-thread
// generator, so it scales with cores where round robin shares a counter.
//
// The set it draws from is selected as for every balancer in this package
// (priority load, panic threshold, locality weights; see the package
// documentation). Slow start does not apply, as in Envoy.
//
// Update must be called serially (the Balancer contract); Picker and the
// pickers it returns are safe for concurrent use and never block.
type Random struct {
	c      control
	picker atomic.Pointer[randomPicker]
}

var (
	_ Balancer = (*Random)(nil)
	_ Picker   = (*randomPicker)(nil)
)

// NewRandom returns a Random balancer with default Options and no
// endpoints; its picker returns ErrNoEndpoint until the first Update. It
// has the Builder signature.
func NewRandom() Balancer { return NewRandomWith(Options{}) }

// NewRandomWith returns a Random balancer with the given options (see
// NewRoundRobinWith for how invalid fields are treated).
func NewRandomWith(opts Options) *Random {
	b := &Random{}
	b.c.init(opts, false, false, b.publish)
	return b
}

// Update replaces the endpoint set and publishes a new picker atomically.
// Update must not be called concurrently with itself.
func (b *Random) Update(endpoints []Endpoint) { b.c.update(endpoints) }

// Picker returns the current picker. It is safe for concurrent use.
func (b *Random) Picker() Picker { return b.picker.Load() }

func (b *Random) publish(sel *selection, _ []Endpoint) {
	p := &randomPicker{sel: sel, cum: make([][]uint64, len(sel.sets))}
	for i := range sel.sets {
		p.cum[i] = cumulativeWeights(sel.sets[i].weights)
	}
	b.picker.Store(p)
}

// randomPicker is an immutable random-choice snapshot.
type randomPicker struct {
	sel *selection
	// cum holds, per set, running weight sums (cum[i] = weights of
	// endpoints[0..i]); nil when all weights are equal.
	cum [][]uint64
}

// Pick returns a random endpoint of the selected set. When info.Exclude is
// in the set and the set has another endpoint, the choice is made among
// the others, keeping their relative weights. Done is always nil. Pick
// never allocates or blocks.
func (p *randomPicker) Pick(info PickInfo) (PickResult, error) {
	k := p.sel.choose(0, false, info.Exclude)
	if k < 0 {
		return PickResult{}, ErrNoEndpoint
	}
	eps := p.sel.sets[k].endpoints
	n := len(eps)
	x := -1
	if n > 1 {
		x = indexOf(eps, info.Exclude)
	}
	var i int
	if cum := p.cum[k]; cum == nil {
		i = randomSkipping(n, x)
	} else {
		i = weightedSkipping(cum, x)
	}
	return PickResult{Endpoint: &eps[i]}, nil
}

// cumulativeWeights returns running sums of integral weights, or nil when
// weights is nil (all equal) and a uniform draw will do. Random never
// applies slow start, so its weights are the endpoints' static ones.
func cumulativeWeights(weights []float64) []uint64 {
	if weights == nil {
		return nil
	}
	cum := make([]uint64, len(weights))
	var sum uint64
	for i, w := range weights {
		sum += max(uint64(w), 1)
		cum[i] = sum
	}
	return cum
}

// weightOf returns the endpoint's effective static weight: zero means 1.
func weightOf(ep *Endpoint) uint32 { return max(ep.Weight, 1) }

// indexOf returns the index of the endpoint in eps that denotes ex, or -1
// when ex is nil or absent. It is linear, but runs only on retries.
func indexOf(eps []Endpoint, ex *Endpoint) int {
	if ex == nil {
		return -1
	}
	for i := range eps {
		if sameEndpoint(&eps[i], ex) {
			return i
		}
	}
	return -1
}

// randomSkipping returns a uniform index in [0, n) other than skip; skip
// is -1 for none and n must exceed 1 when it is not.
func randomSkipping(n, skip int) int {
	if skip < 0 {
		return rand.IntN(n)
	}
	i := rand.IntN(n - 1)
	if i >= skip {
		i++
	}
	return i
}

// weightedSkipping returns an index drawn in proportion to the weights
// encoded by the running sums cum, leaving out skip (-1 for none). The
// draw is made over the total minus the skipped weight and shifted past
// the skipped range, so the others keep their exact proportions.
func weightedSkipping(cum []uint64, skip int) int {
	total := cum[len(cum)-1]
	if skip < 0 {
		return searchCum(cum, rand.Uint64N(total))
	}
	lo := uint64(0)
	if skip > 0 {
		lo = cum[skip-1]
	}
	r := rand.Uint64N(total - (cum[skip] - lo))
	if r >= lo {
		r += cum[skip] - lo
	}
	return searchCum(cum, r)
}

// searchCum returns the smallest i with r < cum[i]. It is a hand-written
// binary search so that no closure is built on the request path.
func searchCum(cum []uint64, r uint64) int {
	lo, hi := 0, len(cum)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if cum[mid] <= r {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
