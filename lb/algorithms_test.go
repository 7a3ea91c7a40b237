package lb

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/google/go-cmp/cmp"
)

// algorithm names a balancer under test and builds it with defaults.
type algorithm struct {
	name string
	new  func() Balancer
	// hashed balancers are driven with PickInfo.Hash in property tests.
	hashed bool
}

var algorithms = []algorithm{
	{name: "round_robin", new: NewRoundRobin},
	{name: "random", new: NewRandom},
	{name: "least_request", new: func() Balancer { return NewLeastRequest(LeastRequestConfig{}) }},
	{name: "ring_hash", new: func() Balancer { return NewRingHash(RingHashConfig{}) }, hashed: true},
	{name: "maglev", new: func() Balancer { return NewMaglev(MaglevConfig{}) }, hashed: true},
}

// pickDone picks once with a fresh random hash, calls Done at once when
// set, and returns the endpoint's address.
func pickDone(t testing.TB, p Picker, info PickInfo) string {
	t.Helper()
	info.Hash, info.HasHash = rand.Uint64(), true
	res, err := p.Pick(info)
	if err != nil {
		t.Fatalf("Pick() error = %v, want nil", err)
	}
	if res.Done != nil {
		res.Done(DoneInfo{})
	}
	return res.Endpoint.Address
}

// tally picks n times (see pickDone) and counts addresses.
func tally(t testing.TB, p Picker, info PickInfo, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		got[pickDone(t, p, info)]++
	}
	return got
}

func endpoints(n int) []Endpoint {
	eps := make([]Endpoint, n)
	for i := range eps {
		eps[i] = Endpoint{Address: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256), Healthy: true}
	}
	return eps
}

func TestAlgorithmsEmpty(t *testing.T) {
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) {
			b := a.new()
			for _, info := range []PickInfo{{}, {Hash: 7, HasHash: true}, {Exclude: &Endpoint{Address: "a:1"}}} {
				if _, err := b.Picker().Pick(info); !errors.Is(err, ErrNoEndpoint) {
					t.Errorf("Pick(%+v) before Update error = %v, want ErrNoEndpoint", info, err)
				}
			}
			b.Update([]Endpoint{{Address: "a:1", Healthy: true}})
			b.Update(nil)
			if _, err := b.Picker().Pick(PickInfo{}); !errors.Is(err, ErrNoEndpoint) {
				t.Errorf("Pick() after Update(nil) error = %v, want ErrNoEndpoint", err)
			}
		})
	}
}

func TestAlgorithmsSelection(t *testing.T) {
	tests := []struct {
		name string
		eps  []Endpoint
		want []string // the addresses that may be picked; all must be
	}{
		{
			name: "unhealthy skipped",
			eps: []Endpoint{
				{Address: "a:1", Healthy: true},
				{Address: "b:1", Healthy: false},
				{Address: "c:1", Healthy: true},
			},
			want: []string{"a:1", "c:1"},
		},
		{
			name: "highest healthy priority wins",
			eps: []Endpoint{
				{Address: "p0:1", Priority: 0, Healthy: false},
				{Address: "p1a:1", Priority: 1, Healthy: true},
				{Address: "p1b:1", Priority: 1, Healthy: true, Weight: 3},
				{Address: "p2:1", Priority: 2, Healthy: true},
			},
			want: []string{"p1a:1", "p1b:1"},
		},
		{
			// Envoy's total panic: every level takes load by its
			// endpoint count, over all of its endpoints.
			name: "total panic uses all levels",
			eps: []Endpoint{
				{Address: "p1:1", Priority: 1, Healthy: false},
				{Address: "p0a:1", Priority: 0, Healthy: false},
				{Address: "p0b:1", Priority: 0, Healthy: false},
			},
			want: []string{"p0a:1", "p0b:1", "p1:1"},
		},
		{
			name: "level in panic uses all its endpoints",
			eps: []Endpoint{
				{Address: "a:1", Healthy: true},
				{Address: "b:1", Healthy: false},
				{Address: "c:1", Healthy: false},
			},
			want: []string{"a:1", "b:1", "c:1"},
		},
	}
	for _, a := range algorithms {
		for _, tt := range tests {
			t.Run(a.name+"/"+tt.name, func(t *testing.T) {
				b := a.new()
				b.Update(tt.eps)
				got := tally(t, b.Picker(), PickInfo{}, 2000)
				want := map[string]bool{}
				for _, addr := range tt.want {
					want[addr] = true
				}
				seen := map[string]bool{}
				for addr := range got {
					seen[addr] = true
				}
				if diff := cmp.Diff(want, seen); diff != "" {
					t.Errorf("picked addresses mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestAlgorithmsExclude(t *testing.T) {
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) {
			b := a.new()
			b.Update([]Endpoint{
				{Address: "a:1", Healthy: true, Weight: 5},
				{Address: "b:1", Healthy: true},
				{Address: "c:1", Healthy: true, Weight: 2},
			})
			p := b.Picker()
			// By address (a retry across a picker swap) and by pointer.
			first, err := p.Pick(PickInfo{})
			if err != nil {
				t.Fatal(err)
			}
			if first.Done != nil {
				first.Done(DoneInfo{})
			}
			for _, ex := range []*Endpoint{{Address: "a:1"}, first.Endpoint} {
				got := tally(t, p, PickInfo{Exclude: ex}, 3000)
				if n := got[ex.Address]; n != 0 {
					t.Errorf("excluded %s picked %d times, want 0 (counts %v)", ex.Address, n, got)
				}
				if len(got) != 2 {
					t.Errorf("picked %v, want both other endpoints", got)
				}
			}

			// A lone endpoint is picked even when excluded.
			b.Update([]Endpoint{{Address: "a:1", Healthy: true}})
			got := tally(t, b.Picker(), PickInfo{Exclude: &Endpoint{Address: "a:1"}}, 10)
			if diff := cmp.Diff(map[string]int{"a:1": 10}, got); diff != "" {
				t.Errorf("lone excluded endpoint (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAlgorithmsUpdateDoesNotAliasInput(t *testing.T) {
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) {
			b := a.new()
			eps := []Endpoint{{Address: "a:1", Healthy: true}}
			b.Update(eps)
			eps[0].Address = "mutated:1"
			if got := pickDone(t, b.Picker(), PickInfo{}); got != "a:1" {
				t.Errorf("Pick() = %s after caller mutated its slice, want a:1", got)
			}
		})
	}
}

// TestAlgorithmsConcurrent updates while many goroutines pick; run with
// -race.
func TestAlgorithmsConcurrent(t *testing.T) {
	sets := [][]Endpoint{
		endpoints(3),
		{{Address: "x:1", Healthy: true, Weight: 3}, {Address: "10.0.0.1:80", Healthy: true}},
		nil,
		endpoints(20),
	}
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) {
			b := a.new()
			b.Update(sets[0])
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					info := PickInfo{Exclude: &Endpoint{Address: "10.0.0.1:80"}}
					for k := 0; ; k++ {
						select {
						case <-stop:
							return
						default:
						}
						info.Hash, info.HasHash = uint64(g*1000+k), k%2 == 0
						res, err := b.Picker().Pick(info)
						if err != nil {
							if !errors.Is(err, ErrNoEndpoint) {
								t.Errorf("Pick() error = %v, want nil or ErrNoEndpoint", err)
								return
							}
							continue
						}
						_ = res.Endpoint.Address
						if res.Done != nil {
							res.Done(DoneInfo{})
						}
					}
				}()
			}
			// Maglev rebuilds a 65537-slot table per update; 40 updates are
			// plenty to interleave with picks under -race.
			for i := range 40 {
				b.Update(sets[i%len(sets)])
			}
			close(stop)
			wg.Wait()
		})
	}
}

func TestAlgorithmsPickAllocs(t *testing.T) {
	for _, a := range algorithms {
		for _, weighted := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/weighted=%t", a.name, weighted), func(t *testing.T) {
				eps := endpoints(10)
				if weighted {
					for i := range eps {
						eps[i].Weight = uint32(i%3 + 1)
					}
				}
				b := a.new()
				b.Update(eps)
				p := b.Picker()
				ex := &Endpoint{Address: eps[0].Address}
				var h uint64
				got := testing.AllocsPerRun(1000, func() {
					h += 0x9e3779b97f4a7c15
					res, err := p.Pick(PickInfo{Hash: h, HasHash: true, Exclude: ex})
					if err != nil {
						t.Fatal(err)
					}
					if res.Done != nil {
						res.Done(DoneInfo{})
					}
				})
				if got != 0 {
					t.Errorf("Pick allocs = %v, want 0", got)
				}
			})
		}
	}
}

// within reports whether got is within tol (a fraction) of want.
func within(got, want int, tol float64) bool {
	return math.Abs(float64(got-want)) <= tol*float64(want)
}

func TestRandomDistribution(t *testing.T) {
	tests := []struct {
		name    string
		eps     []Endpoint
		exclude *Endpoint
		want    map[string]int // expected counts over 60 000 picks
	}{
		{
			name: "uniform",
			eps:  endpoints(3),
			want: map[string]int{"10.0.0.0:80": 20000, "10.0.0.1:80": 20000, "10.0.0.2:80": 20000},
		},
		{
			name: "weighted",
			eps: []Endpoint{
				{Address: "a:1", Weight: 1, Healthy: true},
				{Address: "b:1", Weight: 2, Healthy: true},
				{Address: "c:1", Weight: 3, Healthy: true},
			},
			want: map[string]int{"a:1": 10000, "b:1": 20000, "c:1": 30000},
		},
		{
			name: "weighted excluding middle keeps proportions",
			eps: []Endpoint{
				{Address: "a:1", Weight: 1, Healthy: true},
				{Address: "b:1", Weight: 2, Healthy: true},
				{Address: "c:1", Weight: 3, Healthy: true},
			},
			exclude: &Endpoint{Address: "b:1"},
			want:    map[string]int{"a:1": 15000, "c:1": 45000},
		},
		{
			name:    "uniform excluding first",
			eps:     endpoints(3),
			exclude: &Endpoint{Address: "10.0.0.0:80"},
			want:    map[string]int{"10.0.0.1:80": 30000, "10.0.0.2:80": 30000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewRandom()
			b.Update(tt.eps)
			got := tally(t, b.Picker(), PickInfo{Exclude: tt.exclude}, 60000)
			// Binomial sd is below 125 here; 5% of the smallest count is 750.
			for addr, want := range tt.want {
				if !within(got[addr], want, 0.05) {
					t.Errorf("picks of %s = %d, want %d ± 5%%", addr, got[addr], want)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("picked %v, want only %v", got, tt.want)
			}
		})
	}
}

// hold picks until addr has been picked n more times, keeping those
// requests in flight and finishing all others, and returns the held Done
// callbacks.
func hold(t *testing.T, p Picker, addr string, n int) []func(DoneInfo) {
	t.Helper()
	var held []func(DoneInfo)
	for tries := 0; len(held) < n; tries++ {
		if tries > 100000 {
			t.Fatalf("could not pick %s %d times", addr, n)
		}
		res, err := p.Pick(PickInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Done == nil {
			t.Fatal("Pick() Done = nil, want a callback")
		}
		if res.Endpoint.Address == addr {
			held = append(held, res.Done)
		} else {
			res.Done(DoneInfo{})
		}
	}
	return held
}

func activeOf(t *testing.T, b Balancer, addr string) int64 {
	t.Helper()
	p := b.Picker().(*lrPicker)
	for k := range p.sel.sets {
		for i, ep := range p.sel.sets[k].endpoints {
			if ep.Address == addr {
				return p.sets[k].hosts[i].active.Load()
			}
		}
	}
	t.Fatalf("no endpoint %s", addr)
	return 0
}

func TestLeastRequestAvoidsBusyEndpoint(t *testing.T) {
	tests := []struct {
		name string
		cfg  LeastRequestConfig
		// maxBusy bounds the busy endpoint's share of 9000 picks.
		maxBusy int
	}{
		// P2C picks the busy one only when both samples hit it: 1/9.
		{name: "two choices", cfg: LeastRequestConfig{}, maxBusy: 1300},
		// With 6 samples: (1/3)^6, about 12 of 9000.
		{name: "six choices", cfg: LeastRequestConfig{ChoiceCount: 6}, maxBusy: 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewLeastRequest(tt.cfg)
			b.Update(endpoints(3))
			busy := "10.0.0.1:80"
			held := hold(t, b.Picker(), busy, 10)
			if got := activeOf(t, b, busy); got != 10 {
				t.Fatalf("active(%s) = %d, want 10", busy, got)
			}
			got := tally(t, b.Picker(), PickInfo{}, 9000)
			if got[busy] > tt.maxBusy {
				t.Errorf("busy endpoint picked %d of 9000 times, want at most %d (counts %v)", got[busy], tt.maxBusy, got)
			}
			for _, done := range held {
				done(DoneInfo{})
			}
			for _, ep := range endpoints(3) {
				if got := activeOf(t, b, ep.Address); got != 0 {
					t.Errorf("active(%s) = %d after all Done, want 0", ep.Address, got)
				}
			}
		})
	}
}

func TestLeastRequestCountersSurviveUpdate(t *testing.T) {
	b := NewLeastRequest(LeastRequestConfig{})
	eps := endpoints(2)
	b.Update(eps)
	held := hold(t, b.Picker(), "10.0.0.0:80", 3)

	// Still present (even while unhealthy) keeps its count.
	b.Update([]Endpoint{
		{Address: "10.0.0.0:80", Healthy: false},
		{Address: "10.0.0.1:80", Healthy: true},
	})
	b.Update(append(endpoints(3), Endpoint{Address: "new:1", Healthy: true}))
	if got := activeOf(t, b, "10.0.0.0:80"); got != 3 {
		t.Errorf("active after updates = %d, want 3", got)
	}
	held[0](DoneInfo{}) // a Done from the old picker lands on the same counter
	if got := activeOf(t, b, "10.0.0.0:80"); got != 2 {
		t.Errorf("active after one Done = %d, want 2", got)
	}

	// Removed and re-added starts afresh; late Done calls cannot push the
	// new counter below zero.
	b.Update(endpoints(1)[:0])
	b.Update(endpoints(2))
	if got := activeOf(t, b, "10.0.0.0:80"); got != 0 {
		t.Errorf("active after remove and re-add = %d, want 0", got)
	}
	held[1](DoneInfo{})
	held[2](DoneInfo{})
	if got := activeOf(t, b, "10.0.0.0:80"); got != 0 {
		t.Errorf("active after stale Done = %d, want 0", got)
	}
}

func TestLeastRequestWeighted(t *testing.T) {
	eps := []Endpoint{
		{Address: "a:1", Weight: 2, Healthy: true},
		{Address: "b:1", Weight: 1, Healthy: true},
		{Address: "c:1", Weight: 1, Healthy: true},
	}
	zero := 0.0
	tests := []struct {
		name string
		cfg  LeastRequestConfig
		hold int            // requests held on a:1
		want map[string]int // expected counts over 40 000 picks
	}{
		{name: "idle follows weights", hold: 0, want: map[string]int{"a:1": 20000, "b:1": 10000, "c:1": 10000}},
		// a: 2/(3+1) = 0.5 against 1 and 1.
		{name: "busy endpoint loses share", hold: 3, want: map[string]int{"a:1": 8000, "b:1": 16000, "c:1": 16000}},
		{name: "bias zero ignores load", cfg: LeastRequestConfig{ActiveRequestBias: &zero}, hold: 3, want: map[string]int{"a:1": 20000, "b:1": 10000, "c:1": 10000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewLeastRequest(tt.cfg)
			b.Update(eps)
			hold(t, b.Picker(), "a:1", tt.hold)
			got := tally(t, b.Picker(), PickInfo{}, 40000)
			for addr, want := range tt.want {
				if !within(got[addr], want, 0.06) {
					t.Errorf("picks of %s = %d, want %d ± 6%% (counts %v)", addr, got[addr], want, got)
				}
			}
		})
	}
}

func TestLeastRequestDoneBoundOnce(t *testing.T) {
	b := NewLeastRequest(LeastRequestConfig{})
	b.Update([]Endpoint{{Address: "a:1", Healthy: true}})
	old := b.Picker().(*lrPicker)
	r1, _ := old.Pick(PickInfo{})
	b.Update([]Endpoint{{Address: "b:1", Healthy: false}, {Address: "a:1", Healthy: true}})
	cur := b.Picker().(*lrPicker)
	r2, _ := cur.Pick(PickInfo{})
	// The callback belongs to the address's counter, built once and
	// carried into the new picker, not to the request.
	if old.sets[0].hosts[0] != cur.sets[0].hosts[0] {
		t.Error("counter for a:1 replaced by Update, want it carried over")
	}
	if got := activeOf(t, b, "a:1"); got != 2 {
		t.Errorf("active = %d after two picks, want 2", got)
	}
	r1.Done(DoneInfo{})
	r2.Done(DoneInfo{})
	if got := activeOf(t, b, "a:1"); got != 0 {
		t.Errorf("active = %d after two Done, want 0", got)
	}
}

func TestConfigValidate(t *testing.T) {
	neg, nan := -1.0, math.NaN()
	tests := []struct {
		name    string
		cfg     interface{ Validate() error }
		wantErr bool
	}{
		{"least request zero", LeastRequestConfig{}, false},
		{"least request choice 1", LeastRequestConfig{ChoiceCount: 1}, true},
		{"least request choice 5", LeastRequestConfig{ChoiceCount: 5}, false},
		{"least request negative bias", LeastRequestConfig{ActiveRequestBias: &neg}, true},
		{"least request NaN bias", LeastRequestConfig{ActiveRequestBias: &nan}, true},
		{"ring hash zero", RingHashConfig{}, false},
		{"ring hash min above max", RingHashConfig{MinimumRingSize: 4096, MaximumRingSize: 2048}, true},
		{"ring hash max too big", RingHashConfig{MaximumRingSize: DefaultMaximumRingSize + 1}, true},
		{"ring hash min too big", RingHashConfig{MinimumRingSize: DefaultMaximumRingSize + 1}, true},
		{"maglev zero", MaglevConfig{}, false},
		{"maglev prime", MaglevConfig{TableSize: 251}, false},
		{"maglev not prime", MaglevConfig{TableSize: 65536}, true},
		{"maglev one", MaglevConfig{TableSize: 1}, true},
		{"maglev too big", MaglevConfig{TableSize: 5000101}, true},
		{"maglev max", MaglevConfig{TableSize: MaxMaglevTableSize}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error %t", err, tt.wantErr)
			}
		})
	}
}

// owners maps each of keys to the address a hashed picker chooses.
func owners(t *testing.T, p Picker, keys []uint64) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		res, err := p.Pick(PickInfo{Hash: k, HasHash: true})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = res.Endpoint.Address
	}
	return out
}

func randomKeys(n int) []uint64 {
	r := rand.New(rand.NewPCG(1, 2))
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64()
	}
	return keys
}

func TestConsistentHashing(t *testing.T) {
	const n = 10
	keys := randomKeys(10000)
	for _, a := range algorithms {
		if !a.hashed {
			continue
		}
		t.Run(a.name, func(t *testing.T) {
			b := a.new()
			eps := endpoints(n)
			b.Update(eps)
			before := owners(t, b.Picker(), keys)

			// Same hash, same endpoint: again, after an identical update in
			// another order, and from an independent balancer.
			reversed := make([]Endpoint, n)
			for i := range eps {
				reversed[n-1-i] = eps[i]
			}
			b.Update(reversed)
			other := a.new()
			other.Update(endpoints(n))
			for name, got := range map[string][]string{
				"repeat":   owners(t, b.Picker(), keys),
				"reversed": owners(t, b.Picker(), keys),
				"other":    owners(t, other.Picker(), keys),
			} {
				if diff := cmp.Diff(before, got); diff != "" {
					t.Errorf("%s: owners changed (-before +after):\n%.500s", name, diff)
				}
			}

			// Removing one endpoint remaps about 1/n of the keys.
			removed := eps[3].Address
			b.Update(append(endpoints(n)[:3], endpoints(n)[4:]...))
			after := owners(t, b.Picker(), keys)
			moved, movedOthers := 0, 0
			for i := range keys {
				if before[i] != after[i] {
					moved++
					if before[i] != removed {
						movedOthers++
					}
				}
				if after[i] == removed {
					t.Fatalf("key %d still maps to removed %s", keys[i], removed)
				}
			}
			// Maglev moves about 1/n. Envoy's ring moves about 2/n: it is
			// scaled to MinimumRingSize, so each remaining endpoint gains
			// entries (ceil(1024/9) instead of ceil(1024/10)) and those
			// capture arcs from the others, a further ~1/n.
			maxFrac, maxOthers := 0.14, 0.03
			if a.name == "ring_hash" {
				maxFrac, maxOthers = 0.22, 0.11
			}
			frac, others := float64(moved)/float64(len(keys)), float64(movedOthers)/float64(len(keys))
			t.Logf("removing 1 of %d endpoints moved %.3f of keys (%.3f from remaining endpoints)", n, frac, others)
			if frac < 0.09 || frac > maxFrac {
				t.Errorf("removing 1 of %d endpoints moved %.3f of keys, want within [0.09, %.2f]", n, frac, maxFrac)
			}
			if others > maxOthers {
				t.Errorf("%.3f of keys moved between remaining endpoints, want at most %.2f", others, maxOthers)
			}
		})
	}
}

func TestConsistentHashingWeights(t *testing.T) {
	eps := []Endpoint{
		{Address: "a:1", Weight: 1, Healthy: true},
		{Address: "b:1", Weight: 2, Healthy: true},
		{Address: "c:1", Weight: 5, Healthy: true},
	}
	keys := randomKeys(80000)
	want := map[string]int{"a:1": 10000, "b:1": 20000, "c:1": 50000}
	for _, a := range algorithms {
		if !a.hashed {
			continue
		}
		t.Run(a.name, func(t *testing.T) {
			b := a.new()
			b.Update(eps)
			got := map[string]int{}
			for _, addr := range owners(t, b.Picker(), keys) {
				got[addr]++
			}
			// A 1024-entry ring is lumpy (that is why Maglev exists); the
			// Maglev table is exact to within sampling noise.
			tol := 0.25
			if a.name == "maglev" {
				tol = 0.05
			}
			for addr, w := range want {
				if !within(got[addr], w, tol) {
					t.Errorf("keys on %s = %d, want %d ± %.0f%% (counts %v)", addr, got[addr], w, tol*100, got)
				}
			}
		})
	}
}

func TestRingHashSize(t *testing.T) {
	tests := []struct {
		name string
		cfg  RingHashConfig
		eps  []Endpoint
		want int
	}{
		// ceil(1024/3) = 342 entries each.
		{name: "equal weights", eps: endpoints(3), want: 1026},
		// The light endpoint needs ceil(1024/1001) = 2 entries, so the
		// scale is 2 * 1001.
		{name: "skewed weights grow the ring", eps: []Endpoint{
			{Address: "a:1", Weight: 1, Healthy: true},
			{Address: "b:1", Weight: 1000, Healthy: true},
		}, want: 2002},
		{name: "maximum caps", cfg: RingHashConfig{MaximumRingSize: 100}, eps: endpoints(3), want: 100},
		{name: "minimum", cfg: RingHashConfig{MinimumRingSize: 10000}, eps: endpoints(4), want: 10000},
		{name: "invalid clamps to maximum", cfg: RingHashConfig{MinimumRingSize: 500, MaximumRingSize: 200}, eps: endpoints(2), want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewRingHash(tt.cfg)
			b.Update(tt.eps)
			if got := len(b.Picker().(*ringPicker).rings[0].hashes); got != tt.want {
				t.Errorf("ring size = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestRingHashEnvoyPlacement checks entries sit where Envoy puts them:
// xxHash64 of "address_i", and a hash maps to the first entry at or after
// it.
func TestRingHashEnvoyPlacement(t *testing.T) {
	b := NewRingHash(RingHashConfig{})
	b.Update([]Endpoint{{Address: "10.0.0.1:80", Healthy: true}, {Address: "10.0.0.2:80", Healthy: true}})
	for _, key := range []string{"10.0.0.1:80_0", "10.0.0.1:80_511", "10.0.0.2:80_0", "10.0.0.2:80_511"} {
		h := xxhash.Sum64String(key)
		res, err := b.Picker().Pick(PickInfo{Hash: h, HasHash: true})
		if err != nil {
			t.Fatal(err)
		}
		if want := key[:len("10.0.0.1:80")]; res.Endpoint.Address != want {
			t.Errorf("Pick(hash of %q) = %s, want %s", key, res.Endpoint.Address, want)
		}
	}
	if got := len(b.Picker().(*ringPicker).rings[0].hashes); got != 1024 {
		t.Errorf("ring size = %d, want 1024", got)
	}
}

func TestMaglevTable(t *testing.T) {
	tests := []struct {
		name    string
		size    uint64
		weights []uint32
		want    []int // slots per endpoint
	}{
		// Every endpoint claims one slot per round: counts differ by at
		// most one.
		{name: "equal", size: 65537, weights: []uint32{1, 1, 1}, want: []int{21846, 21846, 21845}},
		{name: "weighted", size: 65537, weights: []uint32{1, 2, 3}, want: []int{10923, 21846, 32768}},
		{name: "small prime", size: 7, weights: []uint32{1, 1}, want: []int{4, 3}},
		{name: "more endpoints than slots", size: 2, weights: []uint32{1, 1, 1}, want: []int{1, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := endpoints(len(tt.weights))
			weights := make([]float64, len(eps))
			for i := range eps {
				weights[i] = float64(tt.weights[i])
			}
			table := buildMaglev(eps, weights, tt.size)
			got := make([]int, len(eps))
			for _, idx := range table {
				got[idx]++
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("slots per endpoint mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMaglevInvalidSizeUsesDefault(t *testing.T) {
	b := NewMaglev(MaglevConfig{TableSize: 1000})
	b.Update(endpoints(2))
	if got := len(b.Picker().(*maglevPicker).tables[0]); got != DefaultMaglevTableSize {
		t.Errorf("table size = %d, want %d", got, DefaultMaglevTableSize)
	}
}

func TestHashedWithoutHashSpreads(t *testing.T) {
	for _, a := range algorithms {
		if !a.hashed {
			continue
		}
		t.Run(a.name, func(t *testing.T) {
			b := a.new()
			b.Update(endpoints(2))
			got := map[string]int{}
			for range 4000 {
				res, err := b.Picker().Pick(PickInfo{})
				if err != nil {
					t.Fatal(err)
				}
				got[res.Endpoint.Address]++
			}
			for addr, n := range got {
				if !within(n, 2000, 0.25) {
					t.Errorf("picks of %s = %d without a hash, want about 2000", addr, n)
				}
			}
		})
	}
}

func BenchmarkPickAll(b *testing.B) {
	for _, a := range algorithms {
		for _, n := range []int{3, 100} {
			for _, weighted := range []bool{false, true} {
				b.Run(fmt.Sprintf("%s/endpoints=%d/weighted=%t", a.name, n, weighted), func(b *testing.B) {
					eps := endpoints(n)
					if weighted {
						for i := range eps {
							eps[i].Weight = uint32(i%5 + 1)
						}
					}
					bal := a.new()
					bal.Update(eps)
					p := bal.Picker()
					b.ReportAllocs()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						h := rand.Uint64()
						for pb.Next() {
							h += 0x9e3779b97f4a7c15
							res, err := p.Pick(PickInfo{Hash: h, HasHash: true})
							if err != nil {
								b.Fatal(err)
							}
							if res.Done != nil {
								res.Done(DoneInfo{})
							}
						}
					})
				})
			}
		}
	}
}

// BenchmarkPickAllDegraded picks from degradedSet: priorities, weighted
// localities, and healthy and degraded shares that both take load.
func BenchmarkPickAllDegraded(b *testing.B) {
	for _, a := range algorithms {
		b.Run(a.name, func(b *testing.B) {
			bal := a.new()
			bal.Update(degradedSet())
			p := bal.Picker()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				h := rand.Uint64()
				for pb.Next() {
					h += 0x9e3779b97f4a7c15
					res, err := p.Pick(PickInfo{Hash: h, HasHash: true})
					if err != nil {
						b.Fatal(err)
					}
					if res.Done != nil {
						res.Done(DoneInfo{})
					}
				}
			})
		})
	}
}

// BenchmarkUpdate measures the control-path cost of publishing a picker,
// dominated by building the ring or the Maglev table.
func BenchmarkUpdate(b *testing.B) {
	for _, a := range algorithms {
		for _, n := range []int{10, 1000} {
			b.Run(fmt.Sprintf("%s/endpoints=%d", a.name, n), func(b *testing.B) {
				eps := endpoints(n)
				bal := a.new()
				b.ReportAllocs()
				for b.Loop() {
					bal.Update(eps)
				}
			})
		}
	}
}

// TestLeastRequestWeightedLarge covers sets beyond the picker's stack
// snapshot of effective weights.
func TestLeastRequestWeightedLarge(t *testing.T) {
	eps := endpoints(200)
	heavy := map[string]bool{}
	for i := range eps {
		eps[i].Weight = uint32(i%2 + 1)
		heavy[eps[i].Address] = eps[i].Weight == 2
	}
	b := NewLeastRequest(LeastRequestConfig{})
	b.Update(eps)
	ex := &Endpoint{Address: eps[199].Address} // heavy, past the snapshot
	got := tally(t, b.Picker(), PickInfo{Exclude: ex}, 30000)
	if got[ex.Address] != 0 {
		t.Errorf("excluded %s picked %d times, want 0", ex.Address, got[ex.Address])
	}
	var heavyPicks, lightPicks int
	for addr, n := range got {
		if heavy[addr] {
			heavyPicks += n
		} else {
			lightPicks += n
		}
	}
	// 99 heavy endpoints of weight 2 against 100 of weight 1.
	want := 30000 * 198 / 298
	if !within(heavyPicks, want, 0.05) {
		t.Errorf("picks of weight-2 endpoints = %d (weight-1: %d), want %d ± 5%%", heavyPicks, lightPicks, want)
	}
}
