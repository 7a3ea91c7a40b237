package lb

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Table size bounds for MaglevConfig, as in Envoy's MaglevLbConfig.
const (
	// DefaultMaglevTableSize is Envoy's table_size default.
	DefaultMaglevTableSize = 65537
	// MaxMaglevTableSize is the largest table Envoy accepts.
	MaxMaglevTableSize = 5000011
)

// MaglevConfig configures NewMaglev. The zero value is Envoy's default
// configuration.
type MaglevConfig struct {
	// TableSize is the number of lookup table slots. It must be prime and
	// at most MaxMaglevTableSize; it should be well above 100 times the
	// number of endpoints for even spreading (Maglev's rule of thumb).
	// Zero means DefaultMaglevTableSize (65537).
	TableSize uint64
}

// Validate reports whether the config is usable.
func (c MaglevConfig) Validate() error {
	size := c.tableSize()
	if size > MaxMaglevTableSize {
		return fmt.Errorf("lb: maglev: table size %d exceeds %d", size, MaxMaglevTableSize)
	}
	if !isPrime(size) {
		return fmt.Errorf("lb: maglev: table size %d is not prime", size)
	}
	return nil
}

func (c MaglevConfig) tableSize() uint64 {
	if c.TableSize == 0 {
		return DefaultMaglevTableSize
	}
	return c.TableSize
}

// isPrime is trial division, ample for sizes up to MaxMaglevTableSize.
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Maglev is a Balancer that maps request hashes onto endpoints with a
// Maglev lookup table (Envoy's MAGLEV policy, after Eisenbud et al., NSDI
// 2016). Like [RingHash] it keeps requests with the same PickInfo.Hash on
// the same endpoint and moves few hashes when the set changes, but a pick
// is a single table lookup, O(1), and load is spread more evenly; the
// price is a fixed table (4 bytes a slot) rebuilt on every Update.
//
// Each endpoint's preference order over the slots comes from two xxHash64
// hashes of its address (seeds 0 and 1) giving offset and skip, as in
// Envoy. Slots are filled round by round with Envoy's weighting: an
// endpoint of the largest weight claims a slot every round, one of a third
// of that weight every third round, so slot counts are proportional to
// weight. Endpoints are ordered by address before filling, so the table
// depends only on the set.
//
// Priority levels, the panic threshold and locality weights apply as for
// [RingHash]: the hash chooses the level and its healthy or degraded
// endpoints, each of those has its own table, and locality weights are
// folded into the endpoints' weights. Health
// changes move keys. Slow start does not apply, as in Envoy.
//
// Update must be called serially (the Balancer contract); Picker and the
// pickers it returns are safe for concurrent use and never block.
type Maglev struct {
	c      control
	picker atomic.Pointer[maglevPicker]
	size   uint64
}

var (
	_ Balancer = (*Maglev)(nil)
	_ Picker   = (*maglevPicker)(nil)
)

// NewMaglev returns a Maglev balancer with default Options and no
// endpoints; its picker returns ErrNoEndpoint until the first Update. A
// zero TableSize takes Envoy's default; a size that Validate would reject
// is replaced by the default too, so callers that must reject bad config
// call Validate first.
func NewMaglev(cfg MaglevConfig) Balancer { return NewMaglevWith(cfg, Options{}) }

// NewMaglevWith returns a Maglev balancer with the given config and
// options, treating invalid fields as NewMaglev and NewRoundRobinWith do.
func NewMaglevWith(cfg MaglevConfig, opts Options) *Maglev {
	b := &Maglev{size: DefaultMaglevTableSize}
	if cfg.Validate() == nil {
		b.size = cfg.tableSize()
	}
	b.c.init(opts, true, false, b.publish)
	return b
}

// Update rebuilds the tables and publishes a new picker atomically. Update
// must not be called concurrently with itself.
func (b *Maglev) Update(endpoints []Endpoint) { b.c.update(endpoints) }

// Picker returns the current picker. It is safe for concurrent use.
func (b *Maglev) Picker() Picker { return b.picker.Load() }

func (b *Maglev) publish(sel *selection, _ []Endpoint) {
	p := &maglevPicker{sel: sel, tables: make([][]uint32, len(sel.sets))}
	for i := range sel.sets {
		p.tables[i] = buildMaglev(sel.sets[i].endpoints, sel.sets[i].weights, b.size)
	}
	b.picker.Store(p)
}

// buildMaglev fills a table of size slots with endpoint indexes the way
// Envoy's MaglevTable does. weights are the endpoints' effective weights,
// nil when equal.
func buildMaglev(eps []Endpoint, weights []float64, size uint64) []uint32 {
	if len(eps) == 0 {
		return nil
	}
	type build struct {
		index        uint32
		offset, skip uint64
		weight       float64
		target       float64
		next         uint64
	}
	entries := make([]build, len(eps))
	var maxWeight float64
	seeded := xxhash.NewWithSeed(1)
	for i := range eps {
		seeded.ResetWithSeed(1)
		seeded.WriteString(eps[i].Address)
		w := 1.0
		if weights != nil {
			w = weights[i]
		}
		entries[i] = build{
			index:  uint32(i),
			offset: xxhash.Sum64String(eps[i].Address) % size,
			skip:   seeded.Sum64()%(size-1) + 1,
			weight: w,
		}
		maxWeight = max(maxWeight, w)
	}
	slices.SortFunc(entries, func(a, b build) int {
		return cmp.Compare(eps[a.index].Address, eps[b.index].Address)
	})

	const empty = ^uint32(0)
	table := make([]uint32, size)
	for i := range table {
		table[i] = empty
	}
	filled := uint64(0)
	for round := 1.0; filled < size; round++ {
		for k := range entries {
			if filled == size {
				break
			}
			e := &entries[k]
			// An endpoint of weight maxWeight/m claims a slot every m rounds.
			if round*e.weight < e.target {
				continue
			}
			e.target += maxWeight
			c := (e.offset + e.skip*e.next) % size
			for table[c] != empty {
				e.next++
				c = (e.offset + e.skip*e.next) % size
			}
			table[c] = e.index
			e.next++
			filled++
		}
	}
	return table
}

// maglevPicker is an immutable snapshot of one table per host set.
type maglevPicker struct {
	sel    *selection
	tables [][]uint32 // endpoint indexes; len is the prime table size
}

// Pick returns the endpoint in slot info.Hash % table size of the table of
// the level the hash selects. Without a hash (HasHash false) it uses a
// random slot. When the chosen endpoint is info.Exclude and another
// endpoint exists, it takes the next slot owned by a different endpoint,
// so retries of one key agree on their second choice. Done is always nil.
// Pick never allocates or blocks.
func (p *maglevPicker) Pick(info PickInfo) (PickResult, error) {
	h := info.Hash
	if !info.HasHash {
		h = rand.Uint64()
	}
	k := p.sel.choose(h, true, info.Exclude)
	if k < 0 {
		return PickResult{}, ErrNoEndpoint
	}
	eps := p.sel.sets[k].endpoints
	table := p.tables[k]
	size := uint64(len(table))
	c := h % size
	if info.Exclude != nil && len(eps) > 1 {
		for range size {
			if !sameEndpoint(&eps[table[c]], info.Exclude) {
				break
			}
			c++
			if c == size {
				c = 0
			}
		}
	}
	return PickResult{Endpoint: &eps[table[c]]}, nil
}
