package lb

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Ring size bounds for RingHashConfig, as in Envoy's RingHashLbConfig.
const (
	// DefaultMinimumRingSize is Envoy's minimum_ring_size default.
	DefaultMinimumRingSize = 1024
	// DefaultMaximumRingSize is Envoy's maximum_ring_size default, which
	// is also the largest ring Envoy (and this package) accepts.
	DefaultMaximumRingSize = 8 << 20
)

// RingHashConfig configures NewRingHash. The zero value is Envoy's default
// configuration.
type RingHashConfig struct {
	// MinimumRingSize is the least number of ring entries. Larger rings
	// spread load more evenly between endpoints at the cost of memory (12
	// bytes per entry) and build time. Zero means DefaultMinimumRingSize.
	MinimumRingSize uint64
	// MaximumRingSize caps the ring, which otherwise grows so that the
	// lightest endpoint still gets its share of entries. Zero means
	// DefaultMaximumRingSize, which is also the upper limit.
	MaximumRingSize uint64
}

// Validate reports whether the config is usable.
func (c RingHashConfig) Validate() error {
	lo, hi := c.sizes()
	if c.MinimumRingSize > DefaultMaximumRingSize || c.MaximumRingSize > DefaultMaximumRingSize {
		return fmt.Errorf("lb: ring hash: ring sizes (%d, %d) exceed %d", c.MinimumRingSize, c.MaximumRingSize, DefaultMaximumRingSize)
	}
	if lo > hi {
		return fmt.Errorf("lb: ring hash: minimum ring size %d exceeds maximum %d", lo, hi)
	}
	return nil
}

// sizes returns the ring bounds with defaults applied.
func (c RingHashConfig) sizes() (lo, hi uint64) {
	lo, hi = c.MinimumRingSize, c.MaximumRingSize
	if lo == 0 {
		lo = DefaultMinimumRingSize
	}
	if hi == 0 {
		hi = DefaultMaximumRingSize
	}
	return lo, hi
}

// RingHash is a Balancer that maps request hashes onto endpoints with a
// consistent hash ring (Envoy's RING_HASH policy, a ketama ring hashed
// with xxHash64). Requests with the same PickInfo.Hash go to the same
// endpoint while the set is stable. Removing one of n endpoints moves its
// 1/n of the hashes and, as in Envoy, roughly as many again: the ring is
// rescaled to MinimumRingSize, so each remaining endpoint gains entries
// that take arcs from the others. [Maglev] moves closer to 1/n.
//
// Each endpoint gets entries on the ring in proportion to its weight;
// entry i of an endpoint sits at xxHash64 (seed 0) of "address_i", exactly
// as Envoy places it, so rings agree with Envoy's for the same endpoints
// and weights. The ring has at least MinimumRingSize entries, more when
// needed so that the lightest endpoint gets its share, and at most
// MaximumRingSize. A pick takes the first entry at or after the hash,
// wrapping around: a binary search, O(log n), without allocation.
//
// Priority levels, the panic threshold and locality weights apply as for
// every balancer in this package, with Envoy's twists for hashing: the
// request hash (not a random draw) chooses the priority level, so a key
// keeps its level while loads are stable; each level has its own ring,
// and a second one for its degraded endpoints when they take load; and
// locality weights are folded into the entry counts (a locality's share of
// the ring is its weight's share, divided among its endpoints by weight)
// instead of choosing a locality per request. Health changes move keys.
// Slow start does not apply, as in Envoy.
//
// Update must be called serially (the Balancer contract); it builds the
// rings, which takes time proportional to their size. Picker and the
// pickers it returns are safe for concurrent use and never block.
type RingHash struct {
	c        control
	picker   atomic.Pointer[ringPicker]
	min, max uint64
}

var (
	_ Balancer = (*RingHash)(nil)
	_ Picker   = (*ringPicker)(nil)
)

// NewRingHash returns a RingHash balancer with default Options and no
// endpoints; its picker returns ErrNoEndpoint until the first Update. Zero
// fields of cfg take Envoy's defaults. Sizes that Validate would reject
// are clamped to the limits (a minimum above the maximum is lowered to
// it), so callers that must reject bad config call Validate first.
func NewRingHash(cfg RingHashConfig) Balancer { return NewRingHashWith(cfg, Options{}) }

// NewRingHashWith returns a RingHash balancer with the given config and
// options, treating invalid fields as NewRingHash and NewRoundRobinWith do.
func NewRingHashWith(cfg RingHashConfig, opts Options) *RingHash {
	lo, hi := cfg.sizes()
	hi = min(hi, DefaultMaximumRingSize)
	b := &RingHash{min: min(lo, hi), max: hi}
	b.c.init(opts, true, false, b.publish)
	return b
}

// Update rebuilds the rings and publishes a new picker atomically. Update
// must not be called concurrently with itself.
func (b *RingHash) Update(endpoints []Endpoint) { b.c.update(endpoints) }

// Picker returns the current picker. It is safe for concurrent use.
func (b *RingHash) Picker() Picker { return b.picker.Load() }

func (b *RingHash) publish(sel *selection, _ []Endpoint) {
	p := &ringPicker{sel: sel, rings: make([]ring, len(sel.sets))}
	for i := range sel.sets {
		hs := &sel.sets[i]
		p.rings[i].hashes, p.rings[i].owners = buildRing(hs.endpoints, hs.weights, b.min, b.max)
	}
	b.picker.Store(p)
}

// buildRing places the endpoints on a ring the way Envoy's
// RingHashLoadBalancer::Ring does and returns the sorted entry hashes with
// the index of the endpoint owning each. weights are the endpoints'
// effective weights, nil when equal.
func buildRing(eps []Endpoint, weights []float64, minSize, maxSize uint64) (hashes []uint64, owners []uint32) {
	if len(eps) == 0 {
		return nil, nil
	}
	weight := func(i int) float64 {
		if weights == nil {
			return 1
		}
		return weights[i]
	}
	// Order does not change where entries land, but it decides the owner
	// of equal hashes; sorting by address makes the ring a function of the
	// set, not of the order Update saw it in.
	order := make([]int, len(eps))
	var sum float64
	for i := range eps {
		order[i] = i
		sum += weight(i)
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(eps[a].Address, eps[b].Address) })
	minWeight := math.Inf(1)
	for i := range eps {
		minWeight = min(minWeight, weight(i)/sum)
	}
	// Scale so the lightest endpoint gets at least one entry per
	// 1/minSize of the ring, within the maximum.
	scale := min(math.Ceil(minWeight*float64(minSize))/minWeight, float64(maxSize))
	size := uint64(math.Ceil(scale))

	type entry struct {
		hash  uint64
		owner uint32
	}
	ring := make([]entry, 0, size)
	var current, target float64
	key := make([]byte, 0, 64)
	for _, i := range order {
		// Running sums across endpoints keep the total at size despite
		// fractional shares.
		target += scale * weight(i) / sum
		for n := uint64(0); current < target; n++ {
			key = append(key[:0], eps[i].Address...)
			key = append(key, '_')
			key = strconv.AppendUint(key, n, 10)
			ring = append(ring, entry{hash: xxhash.Sum64(key), owner: uint32(i)})
			current++
		}
	}
	slices.SortStableFunc(ring, func(a, b entry) int { return cmp.Compare(a.hash, b.hash) })

	hashes = make([]uint64, len(ring))
	owners = make([]uint32, len(ring))
	for j, e := range ring {
		hashes[j], owners[j] = e.hash, e.owner
	}
	return hashes, owners
}

// ringPicker is an immutable snapshot of one ring per host set.
type ringPicker struct {
	sel   *selection
	rings []ring // parallel to sel.sets
}

// ring is stored as two parallel slices so the binary search scans hashes
// densely.
type ring struct {
	hashes []uint64
	owners []uint32
}

// Pick returns the owner of the first ring entry at or after info.Hash,
// wrapping around, on the ring of the level the hash selects. Without a
// hash (HasHash false) it uses a random point, so such requests spread
// like Random. When the chosen endpoint is info.Exclude and another
// endpoint exists, it walks on clockwise to the next entry owned by a
// different endpoint, so retries of one key agree on their second choice.
// Done is always nil. Pick never allocates or blocks.
func (p *ringPicker) Pick(info PickInfo) (PickResult, error) {
	h := info.Hash
	if !info.HasHash {
		h = rand.Uint64()
	}
	k := p.sel.choose(h, true, info.Exclude)
	if k < 0 {
		return PickResult{}, ErrNoEndpoint
	}
	eps := p.sel.sets[k].endpoints
	r := &p.rings[k]
	size := len(r.hashes)
	j := searchRing(r.hashes, h)
	if info.Exclude != nil && len(eps) > 1 {
		for range size {
			if !sameEndpoint(&eps[r.owners[j]], info.Exclude) {
				break
			}
			j++
			if j == size {
				j = 0
			}
		}
	}
	return PickResult{Endpoint: &eps[r.owners[j]]}, nil
}

// searchRing returns the index of the first hash >= h, or 0 when h is past
// the last entry (the ring wraps).
func searchRing(hashes []uint64, h uint64) int {
	lo, hi := 0, len(hashes)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if hashes[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(hashes) {
		return 0
	}
	return lo
}
