package lb

import (
	"cmp"
	"math/rand/v2"
	"slices"
)

// This file is the first step of every pick, shared by all balancers:
// choosing the priority level and, within it, the healthy or the degraded
// endpoints (Envoy's healthy and degraded priority loads with the
// overprovisioning factor), deciding whether that level is in panic, and,
// with locality weights, choosing the locality. The result is a set of
// endpoints, a hostSet, within which each algorithm then picks its own way.
// The control path computes it into an immutable selection; the data path
// reads it with one or two random draws (or the request hash) and never
// allocates.

// availability is how an endpoint may take traffic, Envoy's coarse host
// health.
type availability uint8

const (
	availUnhealthy availability = iota // unhealthy: only in panic
	availDegraded                      // only when healthy capacity runs short
	availHealthy                       // healthy
)

// availabilityOf maps an endpoint's flags to its availability. Unhealthy
// outranks degraded, as Envoy's failure flags outrank its degraded ones.
func availabilityOf(ep *Endpoint) availability {
	switch {
	case !ep.Healthy:
		return availUnhealthy
	case ep.Degraded:
		return availDegraded
	}
	return availHealthy
}

// hostSet is one group of endpoints a picker balances within: the healthy
// or the degraded endpoints of a priority level, those of one of its
// localities, or, in panic, all endpoints of the level.
type hostSet struct {
	endpoints []Endpoint
	// weights are the endpoints' effective weights: the static weight,
	// scaled by slow start or, for hashing balancers, by the locality's
	// share. Nil when all are equal.
	weights []float64
}

// bucket routes one share of the traffic to its sets: the share of a
// priority level's healthy endpoints or that of its degraded ones.
type bucket struct {
	first int    // index of the bucket's first set
	load  uint32 // the bucket's share of the traffic, in percent
	// cum holds running sums of the effective weights of the bucket's
	// localities, one per set from first on; nil when the bucket has a
	// single set.
	cum []float64
}

// selection is the immutable, algorithm-independent part of a picker.
type selection struct {
	sets []hostSet
	// buckets are the shares that take load: the healthy shares in
	// priority order, then the degraded ones in priority order, the order
	// in which Envoy's choosePriority walks its loads. A level in panic
	// serves both of its shares from one set, which its buckets share.
	buckets []bucket
	// byPercent maps a draw in [0, 100) to an index into buckets, as
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
// to the same bucket every time; the others get a random draw.
//
// When the chosen set consists of ex alone, choose moves to another set:
// another locality of the same bucket, in proportion to the weights of the
// others, else another bucket that takes load (another level, or the other
// availability of the same level), in proportion to the loads of the
// others. (Envoy instead repeats host selection a bounded number of times
// for retry host predicates; skipping is exact and as cheap.) It never
// allocates.
func (s *selection) choose(hash uint64, hashed bool, ex *Endpoint) int {
	if !s.multi {
		return s.only
	}
	if !hashed {
		hash = rand.Uint64()
	}
	bi := int(s.byPercent[hash%100])
	k := s.inBucket(bi, hash, hashed, -1)
	if ex == nil || !s.onlyEndpoint(k, ex) {
		return k
	}
	hash = mix64(hash)
	b := &s.buckets[bi]
	if b.cum != nil {
		return s.inBucket(bi, hash, hashed, k-b.first)
	}
	// Buckets that share b's set (the two shares of a level in panic)
	// would land on ex again.
	other := uint32(100)
	for i := range s.buckets {
		if s.buckets[i].first == b.first {
			other -= s.buckets[i].load
		}
	}
	if other == 0 {
		return k
	}
	r := uint32(hash % uint64(other))
	for i := range s.buckets {
		if s.buckets[i].first == b.first {
			continue
		}
		if r < s.buckets[i].load {
			return s.inBucket(i, mix64(hash), hashed, -1)
		}
		r -= s.buckets[i].load
	}
	return k
}

// inBucket returns the set of bucket bi that takes a request: the only
// one, or a locality drawn in proportion to the effective weights, leaving
// out locality skip (-1 for none; the bucket must have another).
func (s *selection) inBucket(bi int, h uint64, hashed bool, skip int) int {
	b := &s.buckets[bi]
	if b.cum == nil {
		return b.first
	}
	var x float64
	if hashed {
		x = float64(h>>11) / (1 << 53)
	} else {
		x = rand.Float64()
	}
	cum := b.cum
	total := cum[len(cum)-1]
	if skip < 0 {
		return b.first + searchFloat(cum, x*total)
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
	return b.first + i
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
// weights of one set per bucket, as Envoy's ring hash and Maglev do.
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
	var total, healthyCount, degradedCount []int
	for _, i := range order {
		if len(levels) == 0 || eps[levels[len(levels)-1][0]].Priority != eps[i].Priority {
			levels = append(levels, nil)
			total = append(total, 0)
			healthyCount = append(healthyCount, 0)
			degradedCount = append(degradedCount, 0)
		}
		l := len(levels) - 1
		levels[l] = append(levels[l], i)
		total[l]++
		switch availabilityOf(&eps[i]) {
		case availHealthy:
			healthyCount[l]++
		case availDegraded:
			degradedCount[l]++
		}
	}
	healthyLoad, degradedLoad, panicking := priorityLoads(total, healthyCount, degradedCount, o)

	localities := false
	for i := range eps {
		if eps[i].LocalityWeight != 0 {
			localities = true
			break
		}
	}

	panicFirst := make([]int, len(levels)) // a level's shared panic set, -1 until built
	for l := range panicFirst {
		panicFirst[l] = -1
	}
	var cum uint32
	for _, avail := range [...]availability{availHealthy, availDegraded} {
		loads := healthyLoad
		if avail == availDegraded {
			loads = degradedLoad
		}
		for l, members := range levels {
			if loads[l] == 0 {
				continue
			}
			var b bucket
			if panicking[l] {
				if panicFirst[l] < 0 {
					panicFirst[l] = len(s.sets)
					s.sets = append(s.sets, panicSet(eps, members, localities && fold, factors))
				}
				b.first = panicFirst[l]
			} else {
				b = s.addSets(eps, o, members, avail, localities, fold, factors)
			}
			b.load = loads[l]
			bi := int32(len(s.buckets))
			s.buckets = append(s.buckets, b)
			for p := cum; p < cum+b.load; p++ {
				s.byPercent[p] = bi
			}
			cum += b.load
		}
	}
	if len(s.buckets) == 0 {
		return s
	}
	// One set without localities takes everything: no draw needed.
	single := true
	for _, b := range s.buckets {
		single = single && b.cum == nil && b.first == s.buckets[0].first
	}
	if single {
		s.only = s.buckets[0].first
	} else {
		s.multi = true
	}
	return s
}

// panicSet is the set of a level in panic: all of its endpoints. Envoy
// balances it without locality weighting, except that ring hash and Maglev
// (foldLocalities) fold locality weights into their tables in panic too.
func panicSet(eps []Endpoint, members []int, foldLoc bool, factors []float64) hostSet {
	if foldLoc {
		return newHostSet(eps, members, factors, foldLocalities(eps, members, members))
	}
	return newHostSet(eps, members, factors, nil)
}

// addSets appends the sets of a level's endpoints of availability avail,
// for a level that is not in panic, and returns their bucket without its
// load: one set, or with per-request locality weighting one per locality
// that carries weight.
func (s *selection) addSets(eps []Endpoint, o *options, members []int, avail availability, localities, fold bool, factors []float64) bucket {
	b := bucket{first: len(s.sets)}
	eligible := make([]int, 0, len(members))
	for _, i := range members {
		if availabilityOf(&eps[i]) == avail {
			eligible = append(eligible, i)
		}
	}
	switch {
	case !localities:
		s.sets = append(s.sets, newHostSet(eps, eligible, factors, nil))
	case fold:
		s.sets = append(s.sets, newHostSet(eps, eligible, factors, foldLocalities(eps, members, eligible)))
	default:
		for _, loc := range groupLocalities(eps, members) {
			idx := loc.healthy
			if avail == availDegraded {
				idx = loc.degraded
			}
			w := loc.effectiveWeight(o, len(idx))
			if w <= 0 {
				continue
			}
			var sum float64
			if len(b.cum) > 0 {
				sum = b.cum[len(b.cum)-1]
			}
			b.cum = append(b.cum, sum+w)
			s.sets = append(s.sets, newHostSet(eps, idx, factors, nil))
		}
		if len(b.cum) == 0 {
			// No locality carries weight: Envoy falls back to the
			// level's healthy (or degraded) endpoints.
			s.sets = append(s.sets, newHostSet(eps, eligible, factors, nil))
		}
		if len(b.cum) == 1 {
			b.cum = nil
		}
	}
	return b
}

// priorityLoads is Envoy's priority load computation
// (LoadBalancerBase::recalculatePerPriorityState and
// recalculatePerPriorityPanic), given each level's endpoint, healthy and
// degraded counts. It returns each level's healthy load and degraded load,
// in percent, summing to 100 over all levels (or to 0 when nothing can
// take traffic), and which levels are in panic.
//
// A level's healthy availability is min(100, overprovisioning × healthy /
// total), its degraded availability the same with the degraded count.
// Their sum over all levels, capped at 100, is the normalized total
// availability. Healthy load is handed out first, in priority order: each
// level takes min(what is left, its healthy availability × 100 /
// normalized total); what is left after that goes to degraded endpoints
// in priority order the same way, and rounding leftovers to the first
// level with healthy availability (else the first with degraded). A level
// is in panic when the normalized total is below 100 and its healthy plus
// degraded share is below the panic threshold; when every level is, load
// is spread by endpoint counts, all of it as healthy load, and every level
// uses all its endpoints. With nothing healthy or degraded and panic
// disabled, no level takes load.
func priorityLoads(total, healthy, degraded []int, o *options) (healthyLoad, degradedLoad []uint32, panicking []bool) {
	n := len(total)
	healthyLoad = make([]uint32, n)
	degradedLoad = make([]uint32, n)
	panicking = make([]bool, n)
	healthyAvail := make([]uint64, n)
	degradedAvail := make([]uint64, n)
	var sum uint64
	for i := range total {
		healthyAvail[i] = min(100, o.overprovisioning*uint64(healthy[i])/uint64(total[i]))
		degradedAvail[i] = min(100, o.overprovisioning*uint64(degraded[i])/uint64(total[i]))
		sum += healthyAvail[i] + degradedAvail[i]
	}
	normalized := min(100, sum)
	if normalized == 0 {
		if o.panicThreshold == 0 {
			return healthyLoad, degradedLoad, panicking
		}
		return totalPanic(total, healthyLoad, degradedLoad, panicking)
	}
	firstHealthy, remaining := distributeLoad(healthyLoad, healthyAvail, 100, normalized)
	firstDegraded, remaining := distributeLoad(degradedLoad, degradedAvail, remaining, normalized)
	if remaining > 0 { // rounding, as Envoy does
		if firstHealthy >= 0 {
			healthyLoad[firstHealthy] += uint32(remaining)
		} else {
			degradedLoad[firstDegraded] += uint32(remaining)
		}
	}
	if normalized == 100 {
		return healthyLoad, degradedLoad, panicking
	}
	all := true
	for i := range total {
		// Envoy's isHostSetInPanic adds the two percentages.
		t := float64(total[i])
		panicking[i] = 100*float64(healthy[i])/t+100*float64(degraded[i])/t < o.panicThreshold
		all = all && panicking[i]
	}
	if all {
		return totalPanic(total, healthyLoad, degradedLoad, panicking)
	}
	return healthyLoad, degradedLoad, panicking
}

// distributeLoad is Envoy's distributeLoad: it hands out up to load
// percent over the levels in priority order, each taking min(what is
// left, its availability × 100 / normalized), and returns the first level
// with any availability (-1 for none) and what is left.
func distributeLoad(loads []uint32, avail []uint64, load, normalized uint64) (first int, remaining uint64) {
	first = -1
	for i, a := range avail {
		if first < 0 && a > 0 {
			first = i
		}
		l := min(load, a*100/normalized)
		loads[i] = uint32(l)
		load -= l
	}
	return first, load
}

// totalPanic is Envoy's recalculateLoadInTotalPanic: every level is in
// panic and takes load in proportion to its endpoint count, all of it as
// healthy load.
func totalPanic(total []int, healthyLoad, degradedLoad []uint32, panicking []bool) ([]uint32, []uint32, []bool) {
	var hosts uint64
	for _, t := range total {
		hosts += uint64(t)
	}
	remaining := uint32(100)
	for i, t := range total {
		healthyLoad[i] = uint32(100 * uint64(t) / hosts)
		degradedLoad[i] = 0
		remaining -= healthyLoad[i]
		panicking[i] = true
	}
	healthyLoad[0] += remaining
	return healthyLoad, degradedLoad, panicking
}

// locality is one locality of a priority level.
type locality struct {
	name     string
	weight   uint32 // the first non-zero LocalityWeight of its endpoints
	total    int
	healthy  []int // indexes of its healthy endpoints
	degraded []int // indexes of its degraded endpoints
	members  []int // indexes of all its endpoints
}

// effectiveWeight is Envoy's effectiveLocalityWeight: the locality weight
// scaled by the share of its endpoints that are eligible (healthy, or
// degraded for the degraded share) times the overprovisioning factor,
// capped at the full weight.
func (l *locality) effectiveWeight(o *options, eligible int) float64 {
	ratio := float64(eligible) / float64(l.total)
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
		switch availabilityOf(ep) {
		case availHealthy:
			l.healthy = append(l.healthy, i)
		case availDegraded:
			l.degraded = append(l.degraded, i)
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
