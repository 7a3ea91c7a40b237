package lb

import (
	"cmp"
	"math/rand/v2"
	"slices"
)

// This file is the first step of every pick, shared by all balancers:
// choosing the priority level (Envoy's priority load with the
// overprovisioning factor), deciding whether that level is in panic, and,
// with locality weights, choosing the locality. The result is a set of
// endpoints, a hostSet, within which each algorithm then picks its own way.
// The control path computes it into an immutable selection; the data path
// reads it with one or two random draws (or the request hash) and never
// allocates.

// hostSet is one group of endpoints a picker balances within: the healthy
// endpoints of a priority level, those of one of its localities, or, in
// panic, all endpoints of the level.
type hostSet struct {
	endpoints []Endpoint
	// weights are the endpoints' effective weights: the static weight,
	// scaled by slow start or, for hashing balancers, by the locality's
	// share. Nil when all are equal.
	weights []float64
}

// levelChoice routes one priority level's share of the traffic to its
// sets.
type levelChoice struct {
	first int    // index of the level's first set
	load  uint32 // the level's share of the traffic, in percent
	// cum holds running sums of the effective weights of the level's
	// localities, one per set from first on; nil when the level has a
	// single set.
	cum []float64
}

// selection is the immutable, algorithm-independent part of a picker.
type selection struct {
	sets   []hostSet
	levels []levelChoice // the levels that take load, in priority order
	// byPercent maps a draw in [0, 100) to an index into levels, as
	// Envoy's choosePriority maps hash%100+1 onto cumulative loads.
	byPercent [100]int32
	// When multi is false every request goes to set only (-1: none).
	only  int
	multi bool
}

// emptySelection is what a balancer publishes before its first update.
var emptySelection = &selection{only: -1}

// choose returns the index of the set that takes a request, or -1 when no
// endpoint can. Hashing balancers pass the request hash so that a key maps
// to the same priority level every time; the others get a random draw.
//
// When the chosen set consists of ex alone, choose moves to another set:
// another locality of the same level, in proportion to the weights of the
// others, else another level that takes load, in proportion to the loads
// of the others. (Envoy instead repeats host selection a bounded number of
// times for retry host predicates; skipping is exact and as cheap.) It
// never allocates.
func (s *selection) choose(hash uint64, hashed bool, ex *Endpoint) int {
	if !s.multi {
		return s.only
	}
	if !hashed {
		hash = rand.Uint64()
	}
	l := int(s.byPercent[hash%100])
	k := s.inLevel(l, hash, hashed, -1)
	if ex == nil || !s.onlyEndpoint(k, ex) {
		return k
	}
	hash = mix64(hash)
	lc := &s.levels[l]
	if lc.cum != nil {
		return s.inLevel(l, hash, hashed, k-lc.first)
	}
	if lc.load >= 100 {
		return k
	}
	r := uint32(hash % uint64(100-lc.load))
	for i := range s.levels {
		if i == l {
			continue
		}
		if r < s.levels[i].load {
			return s.inLevel(i, mix64(hash), hashed, -1)
		}
		r -= s.levels[i].load
	}
	return k
}

// inLevel returns the set of level l that takes a request: the only one,
// or a locality drawn in proportion to the effective weights, leaving out
// locality skip (-1 for none; the level must have another).
func (s *selection) inLevel(l int, h uint64, hashed bool, skip int) int {
	lc := &s.levels[l]
	if lc.cum == nil {
		return lc.first
	}
	var x float64
	if hashed {
		x = float64(h>>11) / (1 << 53)
	} else {
		x = rand.Float64()
	}
	cum := lc.cum
	total := cum[len(cum)-1]
	if skip < 0 {
		return lc.first + searchFloat(cum, x*total)
	}
	lo := 0.0
	if skip > 0 {
		lo = cum[skip-1]
	}
	w := cum[skip] - lo
	r := x * (total - w)
	if r >= lo {
		r += w
	}
	i := searchFloat(cum, r)
	if i == skip { // rounding at an edge
		i = (i + 1) % len(cum)
	}
	return lc.first + i
}

// onlyEndpoint reports whether set i holds ex and nothing else.
func (s *selection) onlyEndpoint(i int, ex *Endpoint) bool {
	eps := s.sets[i].endpoints
	return len(eps) == 1 && sameEndpoint(&eps[0], ex)
}

// mix64 is SplitMix64's finalizer: a cheap bijection that turns one draw
// (or hash) into an unrelated one.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// searchFloat returns the smallest i with r < cum[i], clamped to the last
// index against rounding at the top end.
func searchFloat(cum []float64, r float64) int {
	lo, hi := 0, len(cum)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if cum[mid] <= r {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return min(lo, len(cum)-1)
}

// buildSelection computes the selection for an endpoint set. fold is set
// by hashing balancers: instead of choosing a locality per request, which
// would break key affinity, they fold locality weights into the endpoint
// weights of one set per level, as Envoy's ring hash and Maglev do.
// factors, when not nil, scales each endpoint's weight (slow start).
func buildSelection(eps []Endpoint, o *options, fold bool, factors []float64) *selection {
	s := &selection{only: -1}
	for i := range s.byPercent {
		s.byPercent[i] = -1
	}
	if len(eps) == 0 {
		return s
	}

	// Group by priority level, keeping update order within a level.
	order := make([]int, len(eps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(eps[a].Priority, eps[b].Priority) })
	var levels [][]int
	var total, healthy []int
	for _, i := range order {
		if len(levels) == 0 || eps[levels[len(levels)-1][0]].Priority != eps[i].Priority {
			levels = append(levels, nil)
			total = append(total, 0)
			healthy = append(healthy, 0)
		}
		l := len(levels) - 1
		levels[l] = append(levels[l], i)
		total[l]++
		if eps[i].Healthy {
			healthy[l]++
		}
	}
	load, panicking := priorityLoads(total, healthy, o)

	localities := false
	for i := range eps {
		if eps[i].LocalityWeight != 0 {
			localities = true
			break
		}
	}

	var cum uint32
	for l, members := range levels {
		if load[l] == 0 {
			continue
		}
		eligible := members
		if !panicking[l] {
			eligible = make([]int, 0, healthy[l])
			for _, i := range members {
				if eps[i].Healthy {
					eligible = append(eligible, i)
				}
			}
		}
		lc := levelChoice{first: len(s.sets), load: load[l]}
		switch {
		case !localities:
			s.sets = append(s.sets, newHostSet(eps, eligible, factors, nil))
		case fold:
			s.sets = append(s.sets, newHostSet(eps, eligible, factors, foldLocalities(eps, members, eligible)))
		case panicking[l]:
			// Envoy balances a level in panic over all its endpoints,
			// without locality weighting.
			s.sets = append(s.sets, newHostSet(eps, eligible, factors, nil))
		default:
			for _, loc := range groupLocalities(eps, members) {
				w := loc.effectiveWeight(o)
				if w <= 0 {
					continue
				}
				var sum float64
				if len(lc.cum) > 0 {
					sum = lc.cum[len(lc.cum)-1]
				}
				lc.cum = append(lc.cum, sum+w)
				s.sets = append(s.sets, newHostSet(eps, loc.healthy, factors, nil))
			}
			if len(lc.cum) == 0 {
				// No locality carries weight: Envoy falls back to the
				// level's healthy endpoints.
				s.sets = append(s.sets, newHostSet(eps, eligible, factors, nil))
			}
			if len(lc.cum) == 1 {
				lc.cum = nil
			}
		}
		li := int32(len(s.levels))
		s.levels = append(s.levels, lc)
		for p := cum; p < cum+load[l]; p++ {
			s.byPercent[p] = li
		}
		cum += load[l]
	}
	switch {
	case len(s.levels) == 1 && s.levels[0].cum == nil:
		s.only = s.levels[0].first
	case len(s.levels) > 0:
		s.multi = true
	}
	return s
}

// priorityLoads is Envoy's priority load computation
// (LoadBalancerBase::recalculatePerPriorityState and
// recalculatePerPriorityPanic), given each level's endpoint and healthy
// counts. A level's health is min(100, overprovisioning × healthy /
// total); levels take load in priority order as their health allows, and
// when the health sum is below 100 the loads are normalised by it. A level
// is in panic when the health sum is below 100 and its healthy share is
// below the panic threshold; when every level is, load is spread by
// endpoint counts and every level uses all its endpoints. With no healthy
// endpoint and panic disabled, no level takes load.
func priorityLoads(total, healthy []int, o *options) (load []uint32, panicking []bool) {
	n := len(total)
	load = make([]uint32, n)
	panicking = make([]bool, n)
	health := make([]uint64, n)
	var sum uint64
	for i := range total {
		health[i] = min(100, o.overprovisioning*uint64(healthy[i])/uint64(total[i]))
		sum += health[i]
	}
	normalized := min(100, sum)
	if normalized == 0 {
		if o.panicThreshold == 0 {
			return load, panicking
		}
		return totalPanic(total, load, panicking)
	}
	remaining := uint64(100)
	first := -1
	for i := range health {
		if first < 0 && health[i] > 0 {
			first = i
		}
		l := min(remaining, health[i]*100/normalized)
		load[i] = uint32(l)
		remaining -= l
	}
	load[first] += uint32(remaining) // rounding, as Envoy does
	if normalized == 100 {
		return load, panicking
	}
	all := true
	for i := range total {
		panicking[i] = 100*float64(healthy[i])/float64(total[i]) < o.panicThreshold
		all = all && panicking[i]
	}
	if all {
		return totalPanic(total, load, panicking)
	}
	return load, panicking
}

// totalPanic is Envoy's recalculateLoadInTotalPanic: every level is in
// panic and takes load in proportion to its endpoint count.
func totalPanic(total []int, load []uint32, panicking []bool) ([]uint32, []bool) {
	var hosts uint64
	for _, t := range total {
		hosts += uint64(t)
	}
	remaining := uint32(100)
	for i, t := range total {
		load[i] = uint32(100 * uint64(t) / hosts)
		remaining -= load[i]
		panicking[i] = true
	}
	load[0] += remaining
	return load, panicking
}

// locality is one locality of a priority level.
type locality struct {
	name    string
	weight  uint32 // the first non-zero LocalityWeight of its endpoints
	total   int
	healthy []int // indexes of its healthy endpoints
	members []int // indexes of all its endpoints
}

// effectiveWeight is Envoy's effectiveLocalityWeight: the locality weight
// scaled by its healthy share times the overprovisioning factor, capped
// at the full weight.
func (l *locality) effectiveWeight(o *options) float64 {
	ratio := float64(len(l.healthy)) / float64(l.total)
	return float64(l.weight) * min(1, float64(o.overprovisioning)/100*ratio)
}

// groupLocalities groups a level's endpoints by locality, in name order.
func groupLocalities(eps []Endpoint, members []int) []locality {
	var locs []locality
	index := map[string]int{}
	for _, i := range members {
		ep := &eps[i]
		k, ok := index[ep.Locality]
		if !ok {
			k = len(locs)
			index[ep.Locality] = k
			locs = append(locs, locality{name: ep.Locality})
		}
		l := &locs[k]
		if l.weight == 0 {
			l.weight = ep.LocalityWeight
		}
		l.total++
		l.members = append(l.members, i)
		if ep.Healthy {
			l.healthy = append(l.healthy, i)
		}
	}
	slices.SortFunc(locs, func(a, b locality) int { return cmp.Compare(a.name, b.name) })
	return locs
}

// foldLocalities returns, for the eligible endpoints of a level, weights
// that give each locality its share of the locality weights and each
// endpoint its share of its locality (Envoy's normalizeLocalityWeights for
// ring hash and Maglev; the health of a locality does not scale its share
// there). Endpoints of zero-weight localities get no weight. It returns
// nil, meaning plain endpoint weights, when no eligible endpoint has a
// weighted locality; Envoy would leave the level's table empty instead.
func foldLocalities(eps []Endpoint, members, eligible []int) map[int]float64 {
	locs := groupLocalities(eps, members)
	isEligible := make(map[int]bool, len(eligible))
	for _, i := range eligible {
		isEligible[i] = true
	}
	var sumLoc float64
	for _, l := range locs {
		sumLoc += float64(l.weight)
	}
	out := map[int]float64{}
	for _, l := range locs {
		if l.weight == 0 {
			continue
		}
		var sum float64
		for _, i := range l.members {
			if isEligible[i] {
				sum += float64(weightOf(&eps[i]))
			}
		}
		for _, i := range l.members {
			if isEligible[i] {
				out[i] = float64(l.weight) / sumLoc * float64(weightOf(&eps[i])) / sum
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// newHostSet copies the endpoints at idx into a set with their effective
// weights: folded (locality) weights when given, where endpoints without
// one are left out, else the static weight times the slow-start factor.
func newHostSet(eps []Endpoint, idx []int, factors []float64, folded map[int]float64) hostSet {
	hs := hostSet{
		endpoints: make([]Endpoint, 0, len(idx)),
		weights:   make([]float64, 0, len(idx)),
	}
	for _, i := range idx {
		var w float64
		if folded != nil {
			var ok bool
			if w, ok = folded[i]; !ok {
				continue
			}
		} else {
			w = float64(weightOf(&eps[i]))
			if factors != nil {
				w *= factors[i]
			}
		}
		hs.endpoints = append(hs.endpoints, eps[i])
		hs.weights = append(hs.weights, w)
	}
	equal := true
	for _, w := range hs.weights {
		if w != hs.weights[0] {
			equal = false
			break
		}
	}
	if equal {
		hs.weights = nil
	}
	return hs
}
