package lb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

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
		name     string
		opts     Options
		total    []int
		healthy  []int
		degraded []int // nil: none
		wantLoad []uint32
		// wantDegraded is the degraded load per level; nil means zero
		// everywhere.
		wantDegraded []uint32
		wantPanic    []bool
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

		// Degraded endpoints. Notation: h = min(100, 140 × healthy /
		// total) and d = min(100, 140 × degraded / total) per level
		// (integer division, as Envoy's uint32 arithmetic), N = min(100,
		// Σh + Σd). Healthy load first: each level min(left, h×100/N);
		// then degraded load from what is left: min(left, d×100/N);
		// rounding leftovers to the first level with h > 0.
		//
		// P0: 2 healthy and 4 degraded of 10; P1: 10 healthy of 10.
		// h0 = 280/10 = 28, d0 = 560/10 = 56, h1 = 100, d1 = 0;
		// N = min(100, 184) = 100. Healthy: P0 28, P1 min(72, 100) = 72;
		// nothing is left for degraded. P1's healthy capacity suffices,
		// so P0's degraded endpoints get nothing.
		{name: "degraded: healthy lower level first", total: []int{10, 10}, healthy: []int{2, 10}, degraded: []int{4, 0},
			wantLoad: []uint32{28, 72}, wantPanic: []bool{false, false}},
		// The same P0 alone: h0 = 28, d0 = 56, N = 84. Healthy:
		// 2800/84 = 33, left 67; degraded: min(67, 5600/84 = 66) = 66,
		// left 1, which goes to the first healthy level: 34 / 66. Not in
		// panic: healthy + degraded is 60% ≥ 50% (healthy alone, 20%,
		// would be).
		{name: "degraded: single level normalised", total: []int{10}, healthy: []int{2}, degraded: []int{4},
			wantLoad: []uint32{34}, wantDegraded: []uint32{66}, wantPanic: []bool{false}},
		// Envoy's degraded-endpoints table, 25%/65%/10% (5/13/2 of 20):
		// h = 700/20 = 35, d = 1820/20 = 91, N = min(100, 126) = 100.
		// Healthy 35, degraded min(65, 91) = 65.
		{name: "degraded: envoy table 25/65/10", total: []int{20}, healthy: []int{5}, degraded: []int{13},
			wantLoad: []uint32{35}, wantDegraded: []uint32{65}, wantPanic: []bool{false}},
		// Envoy's table, 71%/29%/0%: h = 9940/100 = 99, d = 4060/100 =
		// 40, N = 100. Healthy 99, degraded min(1, 40) = 1.
		{name: "degraded: envoy table 71/29/0", total: []int{100}, healthy: []int{71}, degraded: []int{29},
			wantLoad: []uint32{99}, wantDegraded: []uint32{1}, wantPanic: []bool{false}},
		// Envoy's table, 71%/0%/29%: no degraded endpoint, 99 + rounding.
		{name: "degraded: envoy table 71/0/29", total: []int{100}, healthy: []int{71}, degraded: []int{0},
			wantLoad: []uint32{100}, wantPanic: []bool{false}},
		// The example in Envoy's recalculatePerPriorityState comment:
		// availabilities 10/20/10 healthy and 20/10/0 degraded (factor
		// 100: 1,2,1 healthy and 2,1,0 degraded of 10 each), N = 70.
		// Healthy: 1000/70 = 14, 2000/70 = 28, 1000/70 = 14, left 44.
		// Degraded: min(44, 2000/70 = 28) = 28, min(16, 1000/70 = 14) =
		// 14, 0; left 2 to P0's healthy load: 16/28/14 and 28/14/0.
		// Panic is off: each level is 30% or 10% available and would
		// otherwise be in panic.
		{name: "degraded: envoy comment example", opts: Options{OverprovisioningFactor: 100, PanicThreshold: percent(0)},
			total: []int{10, 10, 10}, healthy: []int{1, 2, 1}, degraded: []int{2, 1, 0},
			wantLoad: []uint32{16, 28, 14}, wantDegraded: []uint32{28, 14, 0}, wantPanic: []bool{false, false, false}},
		// The same with the default threshold: N = 70 < 100 and every
		// level is below 50% (30%, 30%, 10%), so total panic: load by
		// endpoint counts, 1000/30 = 33 each plus the rounding 1 to P0,
		// all of it healthy load.
		{name: "degraded: total panic drops the degraded load", opts: Options{OverprovisioningFactor: 100},
			total: []int{10, 10, 10}, healthy: []int{1, 2, 1}, degraded: []int{2, 1, 0},
			wantLoad: []uint32{34, 33, 33}, wantPanic: []bool{true, true, true}},
		// Panic with degraded endpoints. P0: 2 degraded of 10 (20%); P1:
		// 1 healthy of 2 (50%). h0 = 0, d0 = 280/10 = 28, h1 = 140/2 =
		// 70, d1 = 0; N = 98. Healthy: P0 0, P1 7000/98 = 71, left 29.
		// Degraded: P0 min(29, 2800/98 = 28) = 28, left 1, which goes to
		// P1 (the first level with healthy availability): 0/72 and
		// 28/0. N < 100 and P0 is 20% < 50%: P0 is in panic; P1 at 50%
		// is not.
		{name: "degraded: level in panic keeps its degraded load", total: []int{10, 2}, healthy: []int{0, 1}, degraded: []int{2, 0},
			wantLoad: []uint32{0, 72}, wantDegraded: []uint32{28, 0}, wantPanic: []bool{true, false}},
		// All degraded: h = 0, d = min(100, 140) = 100 = N. Degraded 100;
		// no panic (N = 100).
		{name: "degraded: only degraded", total: []int{3}, healthy: []int{0}, degraded: []int{3},
			wantDegraded: []uint32{100}, wantLoad: []uint32{0}, wantPanic: []bool{false}},
		// No healthy endpoint anywhere: h = 0; d0 = 140/4 = 35, d1 =
		// 280/4 = 70; N = 100 (105 capped). Degraded: P0 35, P1 min(65,
		// 70) = 65; nothing left. No panic.
		{name: "degraded: spills across levels", total: []int{4, 4}, healthy: []int{0, 0}, degraded: []int{1, 2},
			wantLoad: []uint32{0, 0}, wantDegraded: []uint32{35, 65}, wantPanic: []bool{false, false}},
		// One degraded endpoint of 3 per level: d = 140/3 = 46 each, N =
		// min(100, 138) = 100. Degraded: 46, 46, then min(8, 46) = 8.
		{name: "degraded: three degraded levels", total: []int{3, 3, 3}, healthy: []int{0, 0, 0}, degraded: []int{1, 1, 1},
			wantLoad: []uint32{0, 0, 0}, wantDegraded: []uint32{46, 46, 8}, wantPanic: []bool{false, false, false}},
		// With no healthy availability anywhere the rounding leftover
		// goes to the first degraded level: d0 = 280/7 = 40, d1 = 140/7 =
		// 20, N = 60; degraded 4000/60 = 66 and 2000/60 = 33, left 1 to
		// P0: 67/33. Panic is off: at 29% and 14% both levels would be in
		// panic, which is total panic.
		{name: "degraded: rounding to first degraded level", opts: Options{PanicThreshold: percent(0)},
			total: []int{7, 7}, healthy: []int{0, 0}, degraded: []int{2, 1},
			wantLoad: []uint32{0, 0}, wantDegraded: []uint32{67, 33}, wantPanic: []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts.resolve()
			degraded := tt.degraded
			if degraded == nil {
				degraded = make([]int, len(tt.total))
			}
			wantDegraded := tt.wantDegraded
			if wantDegraded == nil {
				wantDegraded = make([]uint32, len(tt.total))
			}
			load, degradedLoad, panicking := priorityLoads(tt.total, tt.healthy, degraded, &o)
			if diff := cmp.Diff(tt.wantLoad, load); diff != "" {
				t.Errorf("healthy loads (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantDegraded, degradedLoad); diff != "" {
				t.Errorf("degraded loads (-want +got):\n%s", diff)
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

// TestDegradedDistribution checks that every balancer sends the healthy
// load to healthy endpoints and the degraded load to degraded ones, and
// uses degraded endpoints only when healthy capacity runs short.
func TestDegradedDistribution(t *testing.T) {
	tests := []struct {
		name string
		eps  []Endpoint
		want map[string]float64
	}{
		{
			// h = min(100, 140 × 3/4) = 100: the healthy endpoints carry
			// it all and the degraded one gets nothing.
			name: "healthy capacity suffices",
			eps: []Endpoint{
				{Address: "h1:1", Healthy: true},
				{Address: "h2:1", Healthy: true},
				{Address: "h3:1", Healthy: true},
				{Address: "d1:1", Healthy: true, Degraded: true},
			},
			want: map[string]float64{"h1:1": 1.0 / 3, "h2:1": 1.0 / 3, "h3:1": 1.0 / 3},
		},
		{
			// h = d = 140 × 2/4 = 70, N = 100: healthy 70, degraded 30.
			name: "degraded take the shortfall",
			eps: []Endpoint{
				{Address: "h1:1", Healthy: true},
				{Address: "h2:1", Healthy: true},
				{Address: "d1:1", Healthy: true, Degraded: true},
				{Address: "d2:1", Healthy: true, Degraded: true},
			},
			want: map[string]float64{"h1:1": 0.35, "h2:1": 0.35, "d1:1": 0.15, "d2:1": 0.15},
		},
		{
			// P0: 1 healthy, 1 degraded of 4 (h0 = d0 = 35); P1: 2
			// healthy (h1 = 100). Healthy load: P0 35, P1 65; nothing is
			// left for degraded: healthy P1 goes before degraded P0.
			name: "healthy lower priority before degraded",
			eps: []Endpoint{
				{Address: "p0h:1", Healthy: true},
				{Address: "p0d:1", Healthy: true, Degraded: true},
				{Address: "p0u1:1"},
				{Address: "p0u2:1"},
				{Address: "p1a:1", Priority: 1, Healthy: true},
				{Address: "p1b:1", Priority: 1, Healthy: true},
			},
			want: map[string]float64{"p0h:1": 0.35, "p1a:1": 0.325, "p1b:1": 0.325},
		},
		{
			// Nothing healthy: d = 140 × 2/3 = 93 = N, degraded 100.
			// 67% ≥ 50%: not in panic, so the unhealthy endpoint stays
			// out.
			name: "degraded carry the level",
			eps: []Endpoint{
				{Address: "d1:1", Healthy: true, Degraded: true},
				{Address: "d2:1", Healthy: true, Degraded: true},
				{Address: "u1:1"},
			},
			want: map[string]float64{"d1:1": 0.5, "d2:1": 0.5},
		},
		{
			// A degraded flag on an unhealthy endpoint changes nothing:
			// it is unhealthy.
			name: "unhealthy outranks degraded",
			eps: []Endpoint{
				{Address: "h1:1", Healthy: true},
				{Address: "h2:1", Healthy: true},
				{Address: "u1:1", Degraded: true},
			},
			// h = min(100, 140 × 2/3 = 93), N = 93: healthy 100.
			want: map[string]float64{"h1:1": 0.5, "h2:1": 0.5},
		},
	}
	for _, a := range withOptions {
		for _, tt := range tests {
			t.Run(a.name+"/"+tt.name, func(t *testing.T) {
				b := a.new(Options{})
				b.Update(tt.eps)
				got := shares(t, b.Picker(), PickInfo{}, 30000)
				checkShares(t, got, tt.want, 0.02)
			})
		}
	}
}

// TestDegradedPanic checks the panic threshold with degraded endpoints:
// they count toward a level's availability, and a level in panic spreads
// its healthy and degraded load over all of its endpoints.
func TestDegradedPanic(t *testing.T) {
	tests := []struct {
		name string
		eps  []Endpoint
		want map[string]float64
	}{
		{
			// 1 healthy, 1 degraded of 4: 50% available, not in panic
			// (healthy alone, 25%, would be). h = d = 35, N = 70:
			// healthy 3500/70 = 50, degraded 50.
			name: "degraded keep a level out of panic",
			eps: []Endpoint{
				{Address: "h1:1", Healthy: true},
				{Address: "d1:1", Healthy: true, Degraded: true},
				{Address: "u1:1"},
				{Address: "u2:1"},
			},
			want: map[string]float64{"h1:1": 0.5, "d1:1": 0.5},
		},
		{
			// P0: 2 degraded of 10 (20%, in panic), P1: 1 healthy of 2
			// (50%, not in panic). Loads (TestPriorityLoads): P0
			// degraded 28, P1 healthy 72. P0's 28% goes to all ten of
			// its endpoints; P1's 72% to its healthy one.
			name: "level in panic spreads its degraded load",
			eps: func() []Endpoint {
				var eps []Endpoint
				for i := range 10 {
					eps = append(eps, Endpoint{Address: fmt.Sprintf("p0-%d:1", i), Healthy: i < 2, Degraded: i < 2})
				}
				return append(eps,
					Endpoint{Address: "p1h:1", Priority: 1, Healthy: true},
					Endpoint{Address: "p1u:1", Priority: 1})
			}(),
			want: func() map[string]float64 {
				m := map[string]float64{"p1h:1": 0.72}
				for i := range 10 {
					m[fmt.Sprintf("p0-%d:1", i)] = 0.028
				}
				return m
			}(),
		},
		{
			// 1 degraded of 3 (33% < 50%): the only level is in panic
			// and uses all of its endpoints.
			name: "total panic uses everything",
			eps: []Endpoint{
				{Address: "d1:1", Healthy: true, Degraded: true},
				{Address: "u1:1"},
				{Address: "u2:1"},
			},
			want: map[string]float64{"d1:1": 1.0 / 3, "u1:1": 1.0 / 3, "u2:1": 1.0 / 3},
		},
	}
	for _, a := range withOptions {
		for _, tt := range tests {
			t.Run(a.name+"/"+tt.name, func(t *testing.T) {
				b := a.new(Options{})
				b.Update(tt.eps)
				got := shares(t, b.Picker(), PickInfo{}, 30000)
				checkShares(t, got, tt.want, 0.02)
			})
		}
	}
}

// TestDegradedLocalities checks that the degraded share is spread over
// localities by their degraded effective weights, and that hashing
// balancers fold locality weights into their degraded tables.
func TestDegradedLocalities(t *testing.T) {
	// Locality x (weight 1): one healthy, one degraded; y (weight 1):
	// two degraded. Level: 1 healthy, 3 degraded of 4: h = 35, d = 100,
	// N = 100: healthy 35, degraded 65.
	eps := []Endpoint{
		{Address: "x1:1", Locality: "x", LocalityWeight: 1, Healthy: true},
		{Address: "x2:1", Locality: "x", LocalityWeight: 1, Healthy: true, Degraded: true},
		{Address: "y1:1", Locality: "y", LocalityWeight: 1, Healthy: true, Degraded: true},
		{Address: "y2:1", Locality: "y", LocalityWeight: 1, Healthy: true, Degraded: true},
	}
	// Per request: the healthy share goes to x only (y has no healthy
	// endpoint). The degraded share by degraded effective weight: x 1 ×
	// min(1, 1.4 × 1/2) = 0.7, y 1 × min(1, 1.4 × 2/2) = 1.
	perRequest := map[string]float64{
		"x1:1": 0.35,
		"x2:1": 0.65 * 0.7 / 1.7,
		"y1:1": 0.65 / 1.7 / 2,
		"y2:1": 0.65 / 1.7 / 2,
	}
	// Hashing balancers fold the raw locality weights: x and y half each
	// of the degraded table.
	folded := map[string]float64{"x1:1": 0.35, "x2:1": 0.325, "y1:1": 0.1625, "y2:1": 0.1625}
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

// TestDegradedExclude checks that a retry whose endpoint is a whole share
// moves to the other share of the level.
func TestDegradedExclude(t *testing.T) {
	// h = d = 70: a:1 takes the healthy 70%, d:1 the degraded 30%.
	eps := []Endpoint{
		{Address: "a:1", Healthy: true},
		{Address: "d:1", Healthy: true, Degraded: true},
	}
	for _, a := range withOptions {
		t.Run(a.name, func(t *testing.T) {
			b := a.new(Options{})
			b.Update(eps)
			got := tally(t, b.Picker(), PickInfo{Exclude: &Endpoint{Address: "a:1"}}, 2000)
			if diff := cmp.Diff(map[string]int{"d:1": 2000}, got); diff != "" {
				t.Errorf("picked with a:1 excluded (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDegradedSlowStartFactors checks that degraded endpoints are not ramped, and
// that a healthy endpoint that was degraded keeps its window.
func TestDegradedSlowStartFactors(t *testing.T) {
	o := Options{SlowStart: SlowStartConfig{Window: time.Minute}}.resolve()
	r := &ramp{o: &o}
	t0 := time.Unix(1000, 0)
	r.observe([]Endpoint{{Address: "a:1", Healthy: true}}, t0)
	// b joins degraded 10 s later: usable, so its window starts, but a
	// degraded endpoint keeps its full weight.
	set := []Endpoint{{Address: "a:1", Healthy: true}, {Address: "b:1", Healthy: true, Degraded: true}}
	r.observe(set, t0.Add(10*time.Second))
	if f, ramping := r.factors(set, t0.Add(20*time.Second)); ramping {
		t.Errorf("factors with b degraded = %v, want none", f)
	}
	// b turns healthy at 40 s: 30 s into its window, half ramped.
	set[1].Degraded = false
	r.observe(set, t0.Add(40*time.Second))
	f, ramping := r.factors(set, t0.Add(40*time.Second))
	if !ramping || f[0] != 1 || math.Abs(f[1]-0.5) > 1e-9 {
		t.Errorf("factors after b turned healthy = %v (ramping %t), want [1 0.5]", f, ramping)
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

// degradedSet is complexSet with P0 mostly degraded and P1 mostly
// unhealthy, so that healthy and degraded shares both take load. P0: 4
// healthy, 12 degraded (eps[1] among them, which the allocation test
// excludes) of 20; P1: 2 healthy of 10. h0 = 28, d0 = 84, h1 = 28, N =
// 100: healthy 28 + 28, degraded 44 on P0.
func degradedSet() []Endpoint {
	eps := complexSet()
	for i := range eps {
		switch {
		case eps[i].Priority == 1:
			eps[i].Healthy = i%5 == 0
		case i%5 < 3:
			eps[i].Healthy, eps[i].Degraded = true, true
		default:
			eps[i].Healthy = i%5 == 4
		}
	}
	return eps
}

func TestPickAllocsWithPrioritiesAndLocalities(t *testing.T) {
	for _, a := range withOptions {
		for _, set := range []struct {
			name string
			eps  func() []Endpoint
		}{{"healthy", complexSet}, {"degraded", degradedSet}} {
			t.Run(a.name+"/"+set.name, func(t *testing.T) {
				eps := set.eps()
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

func TestDegradedSetLoads(t *testing.T) {
	o := Options{}.resolve()
	s := buildSelection(degradedSet(), &o, false, nil)
	var loads []uint32
	for _, b := range s.buckets {
		loads = append(loads, b.load)
	}
	// Healthy P0 (split over localities), healthy P1, degraded P0.
	if diff := cmp.Diff([]uint32{28, 28, 44}, loads); diff != "" {
		t.Errorf("bucket loads (-want +got):\n%s", diff)
	}
}
