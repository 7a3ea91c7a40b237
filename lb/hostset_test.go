package lb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// withOptions builds each algorithm with the given options. Ring hash
// gets a large ring so that its shares are exact enough to test.
var withOptions = []struct {
	name   string
	hashed bool
	new    func(Options) Balancer
}{
	{name: "round_robin", new: func(o Options) Balancer { return NewRoundRobinWith(o) }},
	{name: "random", new: func(o Options) Balancer { return NewRandomWith(o) }},
	{name: "least_request", new: func(o Options) Balancer { return NewLeastRequestWith(LeastRequestConfig{}, o) }},
	{name: "ring_hash", hashed: true, new: func(o Options) Balancer {
		return NewRingHashWith(RingHashConfig{MinimumRingSize: 1 << 16}, o)
	}},
	{name: "maglev", hashed: true, new: func(o Options) Balancer { return NewMaglevWith(MaglevConfig{}, o) }},
}

func percent(v float64) *float64 { return &v }

func TestPriorityLoads(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		total     []int
		healthy   []int
		wantLoad  []uint32
		wantPanic []bool
	}{
		// Envoy's priority-level table (arch_overview/upstream/load_balancing/priority).
		{name: "all healthy", total: []int{10, 10}, healthy: []int{10, 10}, wantLoad: []uint32{100, 0}, wantPanic: []bool{false, false}},
		{name: "72% is enough", total: []int{100, 100}, healthy: []int{72, 100}, wantLoad: []uint32{100, 0}, wantPanic: []bool{false, false}},
		{name: "71% spills 1%", total: []int{100, 100}, healthy: []int{71, 100}, wantLoad: []uint32{99, 1}, wantPanic: []bool{false, false}},
		{name: "50% keeps 70%", total: []int{4, 2}, healthy: []int{2, 2}, wantLoad: []uint32{70, 30}, wantPanic: []bool{false, false}},
		{name: "25% keeps 35%", total: []int{4, 2}, healthy: []int{1, 2}, wantLoad: []uint32{35, 65}, wantPanic: []bool{false, false}},
		{name: "0% fails over", total: []int{4, 2}, healthy: []int{0, 2}, wantLoad: []uint32{0, 100}, wantPanic: []bool{false, false}},
		{name: "three levels spill in order", total: []int{10, 10, 10}, healthy: []int{3, 3, 10}, wantLoad: []uint32{42, 42, 16}, wantPanic: []bool{false, false, false}},
		// Health sums to 56: normalised to 50/50 (panic disabled).
		{name: "normalised below 100", opts: Options{PanicThreshold: percent(0)}, total: []int{5, 5, 5}, healthy: []int{1, 1, 0}, wantLoad: []uint32{50, 50, 0}, wantPanic: []bool{false, false, false}},
		// Health 14 + 84 = 98: P0 gets 14 + the rounding 1 and is in
		// panic (10% < 50%); P1 is not (60%).
		{name: "one level in panic", total: []int{10, 5}, healthy: []int{1, 3}, wantLoad: []uint32{15, 85}, wantPanic: []bool{true, false}},
		{name: "single level in panic", total: []int{5}, healthy: []int{2}, wantLoad: []uint32{100}, wantPanic: []bool{true}},
		{name: "panic disabled", opts: Options{PanicThreshold: percent(0)}, total: []int{5}, healthy: []int{2}, wantLoad: []uint32{100}, wantPanic: []bool{false}},
		{name: "lower threshold", opts: Options{PanicThreshold: percent(30)}, total: []int{5}, healthy: []int{2}, wantLoad: []uint32{100}, wantPanic: []bool{false}},
		{name: "exactly at threshold", total: []int{2}, healthy: []int{1}, wantLoad: []uint32{100}, wantPanic: []bool{false}},
		// All in panic: load by endpoint counts, rounding to the first.
		{name: "total panic", total: []int{2, 1}, healthy: []int{0, 0}, wantLoad: []uint32{67, 33}, wantPanic: []bool{true, true}},
		{name: "total panic with some health", total: []int{10, 10}, healthy: []int{2, 1}, wantLoad: []uint32{50, 50}, wantPanic: []bool{true, true}},
		{name: "nothing healthy, panic disabled", opts: Options{PanicThreshold: percent(0)}, total: []int{2, 1}, healthy: []int{0, 0}, wantLoad: []uint32{0, 0}, wantPanic: []bool{false, false}},
		{name: "overprovisioning 100", opts: Options{OverprovisioningFactor: 100}, total: []int{4, 2}, healthy: []int{2, 2}, wantLoad: []uint32{50, 50}, wantPanic: []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts.resolve()
			load, panicking := priorityLoads(tt.total, tt.healthy, &o)
			if diff := cmp.Diff(tt.wantLoad, load); diff != "" {
				t.Errorf("loads (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPanic, panicking); diff != "" {
				t.Errorf("panic (-want +got):\n%s", diff)
			}
		})
	}
}

// shares picks n times with random hashes and returns each address's
// share of the picks.
func shares(t *testing.T, p Picker, info PickInfo, n int) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for addr, c := range tally(t, p, info, n) {
		out[addr] = float64(c) / float64(n)
	}
	return out
}

// checkShares compares shares within an absolute tolerance; addresses
// absent from want must not be picked at all.
func checkShares(t *testing.T, got, want map[string]float64, tol float64) {
	t.Helper()
	for addr, w := range want {
		if math.Abs(got[addr]-w) > tol {
			t.Errorf("share of %s = %.4f, want %.4f ± %.3f (all %v)", addr, got[addr], w, tol, got)
		}
	}
	for addr, g := range got {
		if _, ok := want[addr]; !ok {
			t.Errorf("share of %s = %.4f, want 0", addr, g)
		}
	}
}

func TestPriorityDistribution(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		eps  []Endpoint
		want map[string]float64
	}{
		{
			// Half of P0 healthy: 1.4 × 50% = 70% stays on P0.
			name: "P0 half healthy keeps 70%",
			eps: []Endpoint{
				{Address: "p0a:1", Healthy: true},
				{Address: "p0b:1", Healthy: true},
				{Address: "p0c:1", Healthy: false},
				{Address: "p0d:1", Healthy: false},
				{Address: "p1a:1", Priority: 1, Healthy: true},
				{Address: "p1b:1", Priority: 1, Healthy: true},
			},
			want: map[string]float64{"p0a:1": 0.35, "p0b:1": 0.35, "p1a:1": 0.15, "p1b:1": 0.15},
		},
		{
			name: "overprovisioning 100 keeps 50%",
			opts: Options{OverprovisioningFactor: 100},
			eps: []Endpoint{
				{Address: "p0a:1", Healthy: true},
				{Address: "p0b:1", Healthy: false},
				{Address: "p1a:1", Priority: 5, Healthy: true},
			},
			want: map[string]float64{"p0a:1": 0.5, "p1a:1": 0.5},
		},
		{
			// One of three healthy (33% < 50%): the level balances over
			// all of its endpoints.
			name: "panic spreads over all endpoints",
			eps: []Endpoint{
				{Address: "a:1", Healthy: true},
				{Address: "b:1", Healthy: false},
				{Address: "c:1", Healthy: false},
			},
			want: map[string]float64{"a:1": 1.0 / 3, "b:1": 1.0 / 3, "c:1": 1.0 / 3},
		},
		{
			name: "panic disabled keeps to healthy",
			opts: Options{PanicThreshold: percent(0)},
			eps: []Endpoint{
				{Address: "a:1", Healthy: true},
				{Address: "b:1", Healthy: false},
				{Address: "c:1", Healthy: false},
			},
			want: map[string]float64{"a:1": 1},
		},
		{
			// P0: 15% over all ten (in panic); P1: 85% over its three
			// healthy endpoints (60%, not in panic).
			name: "one level in panic",
			eps: func() []Endpoint {
				var eps []Endpoint
				for i := range 10 {
					eps = append(eps, Endpoint{Address: fmt.Sprintf("p0-%d:1", i), Healthy: i == 0})
				}
				for i := range 5 {
					eps = append(eps, Endpoint{Address: fmt.Sprintf("p1-%d:1", i), Priority: 1, Healthy: i < 3})
				}
				return eps
			}(),
			want: func() map[string]float64 {
				m := map[string]float64{}
				for i := range 10 {
					m[fmt.Sprintf("p0-%d:1", i)] = 0.015
				}
				for i := range 3 {
					m[fmt.Sprintf("p1-%d:1", i)] = 0.85 / 3
				}
				return m
			}(),
		},
	}
	for _, a := range withOptions {
		for _, tt := range tests {
			t.Run(a.name+"/"+tt.name, func(t *testing.T) {
				b := a.new(tt.opts)
				b.Update(tt.eps)
				got := shares(t, b.Picker(), PickInfo{}, 30000)
				// Binomial sd at 30 000 picks is below 0.003; hashed
				// tables add a little lumpiness.
				checkShares(t, got, tt.want, 0.02)
			})
		}
	}
}

func TestLocalityWeights(t *testing.T) {
	// Locality a (weight 1) has two healthy endpoints; locality b (weight
	// 3) one healthy of two; locality c has weight 0 and takes nothing.
	eps := []Endpoint{
		{Address: "a1:1", Locality: "a", LocalityWeight: 1, Healthy: true},
		{Address: "a2:1", Locality: "a", LocalityWeight: 1, Healthy: true},
		{Address: "b1:1", Locality: "b", LocalityWeight: 3, Healthy: true},
		{Address: "b2:1", Locality: "b", LocalityWeight: 3, Healthy: false},
		{Address: "c1:1", Locality: "c", Healthy: true},
		{Address: "p1:1", Priority: 1, Locality: "a", LocalityWeight: 1, Healthy: true},
	}
	// Per request: b's effective weight is 3 × min(1, 1.4 × 1/2) = 2.1
	// against a's 1. P0 is 4 of 5 healthy, so it keeps all the load.
	perRequest := map[string]float64{"a1:1": 0.5 / 3.1, "a2:1": 0.5 / 3.1, "b1:1": 2.1 / 3.1}
	// Hashing balancers fold the raw locality weights into the table, as
	// Envoy does: a gets 1/4, b 3/4.
	folded := map[string]float64{"a1:1": 0.125, "a2:1": 0.125, "b1:1": 0.75}
	for _, a := range withOptions {
		t.Run(a.name, func(t *testing.T) {
			b := a.new(Options{})
			b.Update(eps)
			want := perRequest
			if a.hashed {
				want = folded
			}
			got := shares(t, b.Picker(), PickInfo{}, 40000)
			checkShares(t, got, want, 0.02)
		})
	}
}

func TestLocalityWeightsEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		eps  []Endpoint
		want map[string]float64
	}{
		{
			// Locality weighting is on, but no locality of the level
			// carries weight: Envoy falls back to the level's healthy
			// endpoints.
			name: "no weighted locality in the level",
			eps: []Endpoint{
				{Address: "a:1", Locality: "x", Healthy: true},
				{Address: "b:1", Locality: "y", Healthy: true},
				{Address: "other:1", Priority: 1, Locality: "z", LocalityWeight: 5, Healthy: true},
			},
			want: map[string]float64{"a:1": 0.5, "b:1": 0.5},
		},
		{
			// In panic the level uses all its endpoints, without
			// locality weights (for the per-request balancers).
			name: "panic ignores localities",
			eps: []Endpoint{
				{Address: "a:1", Locality: "x", LocalityWeight: 1, Healthy: true},
				{Address: "b:1", Locality: "y", LocalityWeight: 1, Healthy: false},
				{Address: "c:1", Locality: "y", LocalityWeight: 1, Healthy: false},
			},
			want: map[string]float64{"a:1": 1.0 / 3, "b:1": 1.0 / 3, "c:1": 1.0 / 3},
		},
		{
			// Endpoint weights still apply inside a locality.
			name: "endpoint weights within a locality",
			eps: []Endpoint{
				{Address: "a:1", Locality: "x", LocalityWeight: 1, Weight: 1, Healthy: true},
				{Address: "b:1", Locality: "x", LocalityWeight: 1, Weight: 3, Healthy: true},
				{Address: "c:1", Locality: "y", LocalityWeight: 1, Healthy: true},
			},
			want: map[string]float64{"a:1": 0.125, "b:1": 0.375, "c:1": 0.5},
		},
	}
	for _, a := range withOptions {
		for _, tt := range tests {
			if a.hashed && tt.name == "panic ignores localities" {
				continue // hashing balancers fold localities in panic too
			}
			t.Run(a.name+"/"+tt.name, func(t *testing.T) {
				b := a.new(tt.opts)
				b.Update(tt.eps)
				got := shares(t, b.Picker(), PickInfo{}, 30000)
				checkShares(t, got, tt.want, 0.02)
			})
		}
	}
}

func TestExcludeAcrossSets(t *testing.T) {
	tests := []struct {
		name string
		eps  []Endpoint
		want []string // endpoints picked when a:1 is excluded
	}{
		{
			name: "excluded endpoint is a whole locality",
			eps: []Endpoint{
				{Address: "a:1", Locality: "x", LocalityWeight: 1, Healthy: true},
				{Address: "b:1", Locality: "y", LocalityWeight: 1, Healthy: true},
				{Address: "c:1", Locality: "z", LocalityWeight: 2, Healthy: true},
			},
			want: []string{"b:1", "c:1"},
		},
		{
			// P0 keeps 70%, all of it on a:1; a retry goes to P1.
			name: "excluded endpoint is a whole level",
			eps: []Endpoint{
				{Address: "a:1", Healthy: true},
				{Address: "u:1", Healthy: false},
				{Address: "b:1", Priority: 1, Healthy: true},
			},
			want: []string{"b:1"},
		},
	}
	for _, a := range withOptions {
		for _, tt := range tests {
			if a.hashed && tt.name == "excluded endpoint is a whole locality" {
				continue // one folded set per level: covered by TestAlgorithmsExclude
			}
			t.Run(a.name+"/"+tt.name, func(t *testing.T) {
				b := a.new(Options{})
				b.Update(tt.eps)
				got := tally(t, b.Picker(), PickInfo{Exclude: &Endpoint{Address: "a:1"}}, 3000)
				seen := map[string]bool{}
				for addr := range got {
					seen[addr] = true
				}
				want := map[string]bool{}
				for _, addr := range tt.want {
					want[addr] = true
				}
				if diff := cmp.Diff(want, seen); diff != "" {
					t.Errorf("picked with a:1 excluded (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestHashedPriorityAffinity checks a key keeps its endpoint across
// pickers while loads are stable, with priorities in play.
func TestHashedPriorityAffinity(t *testing.T) {
	eps := []Endpoint{
		{Address: "p0a:1", Healthy: true},
		{Address: "p0b:1", Healthy: false},
		{Address: "p1a:1", Priority: 1, Healthy: true},
		{Address: "p1b:1", Priority: 1, Healthy: true},
	}
	keys := randomKeys(2000)
	for _, a := range withOptions {
		if !a.hashed {
			continue
		}
		t.Run(a.name, func(t *testing.T) {
			b := a.new(Options{})
			b.Update(eps)
			first := owners(t, b.Picker(), keys)
			b.Update(eps)
			if diff := cmp.Diff(first, owners(t, b.Picker(), keys)); diff != "" {
				t.Errorf("owners changed across identical updates:\n%.300s", diff)
			}
			p0 := 0
			for _, o := range first {
				if o == "p0a:1" {
					p0++
				}
			}
			if !within(p0, 1400, 0.1) {
				t.Errorf("keys on P0 = %d of 2000, want about 1400 (70%%)", p0)
			}
		})
	}
}

// complexSet has two priority levels, three weighted localities and
// unequal endpoint weights.
func complexSet() []Endpoint {
	var eps []Endpoint
	for i := range 30 {
		eps = append(eps, Endpoint{
			Address:        fmt.Sprintf("10.0.%d.%d:80", i/256, i%256),
			Weight:         uint32(i%3 + 1),
			Priority:       uint32(i / 20),
			Locality:       fmt.Sprintf("zone-%d", i%3),
			LocalityWeight: uint32(i%3 + 1),
			Healthy:        i%5 > 1, // 60%: P0 keeps 84% of the load
		})
	}
	return eps
}

func TestPickAllocsWithPrioritiesAndLocalities(t *testing.T) {
	for _, a := range withOptions {
		t.Run(a.name, func(t *testing.T) {
			eps := complexSet()
			b := a.new(Options{})
			b.Update(eps)
			p := b.Picker()
			ex := &Endpoint{Address: eps[1].Address}
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

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{"zero", Options{}, false},
		{"panic 0", Options{PanicThreshold: percent(0)}, false},
		{"panic 100", Options{PanicThreshold: percent(100)}, false},
		{"panic above 100", Options{PanicThreshold: percent(101)}, true},
		{"panic negative", Options{PanicThreshold: percent(-1)}, true},
		{"panic NaN", Options{PanicThreshold: percent(math.NaN())}, true},
		{"slow start", Options{SlowStart: SlowStartConfig{Window: 1, Aggression: percent(2), MinWeightPercent: percent(5)}}, false},
		{"negative window", Options{SlowStart: SlowStartConfig{Window: -1}}, true},
		{"aggression 0", Options{SlowStart: SlowStartConfig{Aggression: percent(0)}}, true},
		{"aggression inf", Options{SlowStart: SlowStartConfig{Aggression: percent(math.Inf(1))}}, true},
		{"aggression NaN", Options{SlowStart: SlowStartConfig{Aggression: percent(math.NaN())}}, true},
		{"min weight above 100", Options{SlowStart: SlowStartConfig{MinWeightPercent: percent(100.5)}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error %t", err, tt.wantErr)
			}
		})
	}
	// Invalid values fall back to the defaults.
	o := Options{PanicThreshold: percent(200), SlowStart: SlowStartConfig{Aggression: percent(-1)}}.resolve()
	if o.panicThreshold != DefaultPanicThreshold || o.aggression != DefaultSlowStartAggression {
		t.Errorf("resolve() = %+v, want defaults for invalid fields", o)
	}
}

// BenchmarkPickPriorityLocality picks from two priority levels with
// weighted localities, unequal weights and some unhealthy endpoints.
func BenchmarkPickPriorityLocality(b *testing.B) {
	for _, a := range algorithms {
		b.Run(a.name, func(b *testing.B) {
			bal := a.new()
			bal.Update(complexSet())
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
