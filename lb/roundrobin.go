package lb

import (
	"math/rand/v2"
	"sync/atomic"
)

// maxSchedule caps the length of a weighted round-robin schedule. Weights
// whose reduced sum exceeds it are scaled down proportionally (each endpoint
// keeps a weight of at least 1), trading a little weight precision for a
// bounded, precomputed schedule.
const maxSchedule = 1 << 16

// RoundRobin is a Balancer that spreads requests over endpoints in turn,
// in proportion to their weights (smooth weighted round robin, the
// sequence nginx uses, precomputed once per update).
//
// On each Update it selects the highest priority level (lowest Priority
// number) that has at least one healthy endpoint and balances over the
// healthy endpoints of that level only. When no endpoint of any level is
// healthy it enters panic mode, as Envoy does when the healthy share drops
// to zero: it balances over all endpoints of the highest priority level,
// healthy or not, on the theory that trying a possibly bad endpoint beats
// failing every request. Partial panic thresholds, overprovisioning and
// locality weights are not modelled.
//
// Update must be called serially (the Balancer contract); Picker and the
// pickers it returns are safe for concurrent use and never block.
type RoundRobin struct {
	picker atomic.Pointer[rrPicker]
}

var (
	_ Balancer = (*RoundRobin)(nil)
	_ Picker   = (*rrPicker)(nil)
)

// NewRoundRobin returns a RoundRobin balancer with no endpoints; its
// picker returns ErrNoEndpoint until the first Update. It has the Builder
// signature, so NewRoundRobin itself can be used as a Builder.
func NewRoundRobin() Balancer {
	b := &RoundRobin{}
	b.picker.Store(&rrPicker{})
	return b
}

// Update replaces the endpoint set and publishes a new picker atomically.
// Pickers already handed out keep working on the old set. Update must not
// be called concurrently with itself.
func (b *RoundRobin) Update(endpoints []Endpoint) {
	b.picker.Store(newRRPicker(endpoints))
}

// Picker returns the current picker. It is safe for concurrent use.
func (b *RoundRobin) Picker() Picker { return b.picker.Load() }

// rrPicker is an immutable round-robin snapshot. Pick advances a shared
// atomic counter over a precomputed schedule of endpoint indexes.
type rrPicker struct {
	endpoints []Endpoint
	// schedule holds indexes into endpoints; nil when all weights are
	// equal, in which case the counter indexes endpoints directly.
	schedule []uint32
	next     atomic.Uint64
}

func newRRPicker(all []Endpoint) *rrPicker {
	selected := selectEndpoints(all)
	p := &rrPicker{endpoints: selected}
	if len(selected) == 0 {
		return p
	}
	p.schedule = buildSchedule(selected)
	// Start at a random position so that many proxies restarted together
	// do not all send their first request to the same endpoint.
	p.next.Store(rand.Uint64())
	return p
}

// selectEndpoints returns the healthy endpoints of the highest priority
// level that has any, or in panic mode all endpoints of the highest
// priority level present. The result is a fresh slice.
func selectEndpoints(all []Endpoint) []Endpoint {
	if len(all) == 0 {
		return nil
	}
	best, found := uint32(0), false
	top := all[0].Priority
	for i := range all {
		ep := &all[i]
		top = min(top, ep.Priority)
		if ep.Healthy && (!found || ep.Priority < best) {
			best, found = ep.Priority, true
		}
	}
	panicMode := !found
	if panicMode {
		best = top
	}
	out := make([]Endpoint, 0, len(all))
	for i := range all {
		ep := &all[i]
		if ep.Priority == best && (panicMode || ep.Healthy) {
			out = append(out, *ep)
		}
	}
	return out
}

// buildSchedule precomputes one cycle of smooth weighted round robin, or
// returns nil when all weights are equal.
func buildSchedule(eps []Endpoint) []uint32 {
	weights := make([]uint64, len(eps))
	equal := true
	for i := range eps {
		weights[i] = uint64(max(eps[i].Weight, 1))
		if weights[i] != weights[0] {
			equal = false
		}
	}
	if equal {
		return nil
	}
	g := weights[0]
	for _, w := range weights[1:] {
		g = gcd(g, w)
	}
	var total uint64
	for i := range weights {
		weights[i] /= g
		total += weights[i]
	}
	if total > maxSchedule {
		limit := uint64(max(maxSchedule, len(eps)))
		scaled := uint64(0)
		for i := range weights {
			weights[i] = max(weights[i]*limit/total, 1)
			scaled += weights[i]
		}
		total = scaled
	}
	schedule := make([]uint32, total)
	current := make([]int64, len(weights))
	for s := range schedule {
		best := 0
		for i, w := range weights {
			current[i] += int64(w)
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= int64(total)
		schedule[s] = uint32(best)
	}
	return schedule
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Pick returns the next endpoint in turn. When info.Exclude names the
// endpoint that would be picked and another endpoint exists, the next
// different endpoint is returned instead. Done is always nil. Pick never
// allocates or blocks.
func (p *rrPicker) Pick(info PickInfo) (PickResult, error) {
	n := uint64(len(p.endpoints))
	if n == 0 {
		return PickResult{}, ErrNoEndpoint
	}
	c := p.next.Add(1)
	var i uint64
	if p.schedule == nil {
		i = c % n
	} else {
		i = uint64(p.schedule[c%uint64(len(p.schedule))])
	}
	if info.Exclude != nil && n > 1 {
		for range n {
			if !sameEndpoint(&p.endpoints[i], info.Exclude) {
				break
			}
			i = (i + 1) % n
		}
	}
	return PickResult{Endpoint: &p.endpoints[i]}, nil
}

// sameEndpoint reports whether a and b denote the same endpoint. Retries
// may span a picker swap, so addresses are compared, not only pointers.
func sameEndpoint(a, b *Endpoint) bool {
	return a == b || a.Address == b.Address
}
