package lb

import (
	"cmp"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

// maxSchedule caps the length of a weighted round-robin schedule. Weights
// whose reduced sum exceeds it are scaled down proportionally (each endpoint
// keeps a weight of at least 1), trading a little weight precision for a
// bounded, precomputed schedule.
const maxSchedule = 1 << 16

// weightResolution is how finely fractional weights (slow start) are
// quantised for a schedule: the heaviest endpoint gets this many slots per
// cycle, so shares are exact to 0.1 % of the heaviest weight.
const weightResolution = 1000

// RoundRobin is a Balancer that spreads requests over endpoints in turn,
// in proportion to their weights (Envoy's ROUND_ROBIN policy).
//
// It first selects a set of endpoints the way every balancer in this
// package does (see the package documentation): a priority level and
// its healthy or degraded endpoints by Envoy's priority load with the
// overprovisioning factor, all endpoints of the level in panic, and with
// locality weights a locality by its effective weight. Within the set, equal weights are served in turn;
// unequal weights follow Envoy's earliest-deadline-first schedule: the
// k-th pick of an endpoint of weight w is due at k/w, and the endpoint
// with the earliest deadline goes next (ties to the earlier endpoint), so
// picks of each endpoint are evenly spaced and interleaved with the
// others. The schedule's cycle is precomputed on the control path and a
// pick is one atomic increment and an index, O(1), instead of Envoy's
// per-worker heap; each set starts at a random point of its cycle, as
// Envoy's scheduler does, so that proxies restarted together spread out.
//
// With Options.SlowStart, endpoints that joined or turned healthy recently
// get a reduced weight that ramps up over the window; a timer republishes
// the picker every ramp step while any endpoint is in its window.
//
// Update must be called serially (the Balancer contract); Picker and the
// pickers it returns are safe for concurrent use and never block. Close
// stops the slow-start timer.
type RoundRobin struct {
	c      control
	picker atomic.Pointer[rrPicker]
}

var (
	_ Balancer  = (*RoundRobin)(nil)
	_ io.Closer = (*RoundRobin)(nil)
	_ Picker    = (*rrPicker)(nil)
)

// NewRoundRobin returns a RoundRobin balancer with default Options and no
// endpoints; its picker returns ErrNoEndpoint until the first Update. It
// has the Builder signature, so NewRoundRobin itself can be used as a
// Builder.
func NewRoundRobin() Balancer { return NewRoundRobinWith(Options{}) }

// NewRoundRobinWith returns a RoundRobin balancer with the given options.
// Zero fields take Envoy's defaults; fields that Validate would reject are
// replaced by their defaults too, so callers that must reject bad config
// call Validate first.
func NewRoundRobinWith(opts Options) *RoundRobin {
	b := &RoundRobin{}
	b.c.init(opts, false, true, b.publish)
	return b
}

// Update replaces the endpoint set and publishes a new picker atomically.
// Pickers already handed out keep working on the old set. Update must not
// be called concurrently with itself.
func (b *RoundRobin) Update(endpoints []Endpoint) { b.c.update(endpoints) }

// Picker returns the current picker. It is safe for concurrent use.
func (b *RoundRobin) Picker() Picker { return b.picker.Load() }

// Close stops republishing for slow start; the balancer keeps serving and
// accepting updates. It is idempotent and always returns nil.
func (b *RoundRobin) Close() error { return b.c.close() }

func (b *RoundRobin) publish(sel *selection, _ []Endpoint) {
	p := &rrPicker{sel: sel, sets: make([]rrSet, len(sel.sets))}
	for i := range sel.sets {
		p.sets[i].schedule = edfSchedule(sel.sets[i].weights)
		p.sets[i].next.Store(rand.Uint64())
	}
	b.picker.Store(p)
}

// rrPicker is an immutable round-robin snapshot.
type rrPicker struct {
	sel  *selection
	sets []rrSet // parallel to sel.sets
}

// rrSet is the round-robin state of one host set.
type rrSet struct {
	// schedule holds one EDF cycle of indexes into the set's endpoints;
	// nil when all weights are equal and the counter indexes them
	// directly.
	schedule []uint32
	next     atomic.Uint64
	// Keep counters of different sets on different cache lines.
	_ [32]byte
}

// Pick returns the next endpoint in turn within the selected set. When
// info.Exclude names the endpoint that would be picked and the set has
// another, the next different endpoint is returned instead. Done is
// always nil. Pick never allocates or blocks.
func (p *rrPicker) Pick(info PickInfo) (PickResult, error) {
	k := p.sel.choose(0, false, info.Exclude)
	if k < 0 {
		return PickResult{}, ErrNoEndpoint
	}
	eps := p.sel.sets[k].endpoints
	s := &p.sets[k]
	n := uint64(len(eps))
	c := s.next.Add(1)
	var i uint64
	if s.schedule == nil {
		i = c % n
	} else {
		i = uint64(s.schedule[c%uint64(len(s.schedule))])
	}
	if info.Exclude != nil && n > 1 {
		for range n {
			if !sameEndpoint(&eps[i], info.Exclude) {
				break
			}
			i = (i + 1) % n
		}
	}
	return PickResult{Endpoint: &eps[i]}, nil
}

// sameEndpoint reports whether a and b denote the same endpoint. Retries
// may span a picker swap, so addresses are compared, not only pointers.
func sameEndpoint(a, b *Endpoint) bool {
	return a == b || a.Address == b.Address
}

// edfSchedule returns one cycle of Envoy's earliest-deadline-first order
// for the weights, as indexes, or nil when weights is nil (all equal).
// Weights are first made integral (see integerWeights) so that the cycle
// is finite: with integer weights q summing to T, the k-th pick of i is
// due at k/q[i], and after T picks every deadline has advanced by exactly
// 1, so the order repeats. Deadlines are compared exactly, by cross
// multiplication, with ties going to the lower index as Envoy's
// insertion-order tie break does.
func edfSchedule(weights []float64) []uint32 {
	if weights == nil {
		return nil
	}
	q := integerWeights(weights)
	type slot struct{ k, i uint32 }
	var total uint64
	for _, w := range q {
		total += w
	}
	slots := make([]slot, 0, total)
	for i, w := range q {
		for k := uint64(1); k <= w; k++ {
			slots = append(slots, slot{k: uint32(k), i: uint32(i)})
		}
	}
	slices.SortFunc(slots, func(a, b slot) int {
		// a.k/q[a.i] against b.k/q[b.i]; the factors are below 2^32.
		if c := cmp.Compare(uint64(a.k)*q[b.i], uint64(b.k)*q[a.i]); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	schedule := make([]uint32, len(slots))
	for j, s := range slots {
		schedule[j] = s.i
	}
	return schedule
}

// integerWeights turns effective weights into positive integers with the
// same proportions, reduced by their common divisor and scaled so that
// they sum to at most about maxSchedule. Integral weights are kept exact
// up to that cap; fractional ones (slow start) are quantised to
// weightResolution steps of the heaviest.
func integerWeights(ws []float64) []uint64 {
	q := make([]uint64, len(ws))
	integral := true
	for _, w := range ws {
		if w != math.Trunc(w) || w > math.MaxUint32 {
			integral = false
			break
		}
	}
	if integral {
		for i, w := range ws {
			q[i] = max(uint64(w), 1)
		}
	} else {
		top := slices.Max(ws)
		for i, w := range ws {
			q[i] = max(uint64(math.Round(w/top*weightResolution)), 1)
		}
	}
	g := q[0]
	for _, w := range q[1:] {
		g = gcd(g, w)
	}
	var total uint64
	for i := range q {
		q[i] /= g
		total += q[i]
	}
	if total > maxSchedule {
		limit := uint64(max(maxSchedule, len(q)))
		for i := range q {
			q[i] = max(q[i]*limit/total, 1)
		}
	}
	return q
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
