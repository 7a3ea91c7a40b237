package lb

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// countPicks picks n times and counts endpoints by address.
func countPicks(t *testing.T, p Picker, info PickInfo, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		res, err := p.Pick(info)
		if err != nil {
			t.Fatalf("Pick() error = %v, want nil", err)
		}
		if res.Done != nil {
			t.Fatalf("Pick() Done = non-nil, want nil")
		}
		got[res.Endpoint.Address]++
	}
	return got
}

func TestRoundRobinSelection(t *testing.T) {
	tests := []struct {
		name string
		eps  []Endpoint
		want map[string]int // over 120 picks
	}{
		{
			name: "equal weights spread evenly",
			eps: []Endpoint{
				{Address: "a:1", Healthy: true},
				{Address: "b:1", Healthy: true},
				{Address: "c:1", Healthy: true},
			},
			want: map[string]int{"a:1": 40, "b:1": 40, "c:1": 40},
		},
		{
			name: "unhealthy skipped",
			eps: []Endpoint{
				{Address: "a:1", Healthy: true},
				{Address: "b:1", Healthy: false},
				{Address: "c:1", Healthy: true},
			},
			want: map[string]int{"a:1": 60, "c:1": 60},
		},
		{
			name: "highest healthy priority wins",
			eps: []Endpoint{
				{Address: "p0:1", Priority: 0, Healthy: false},
				{Address: "p1a:1", Priority: 1, Healthy: true},
				{Address: "p1b:1", Priority: 1, Healthy: true},
				{Address: "p2:1", Priority: 2, Healthy: true},
			},
			want: map[string]int{"p1a:1": 60, "p1b:1": 60},
		},
		{
			name: "panic mode uses all endpoints of the level",
			eps: []Endpoint{
				{Address: "a:1", Priority: 1, Healthy: false},
				{Address: "b:1", Priority: 1, Healthy: false},
			},
			want: map[string]int{"a:1": 60, "b:1": 60},
		},
		{
			name: "weights",
			eps: []Endpoint{
				{Address: "a:1", Weight: 1, Healthy: true},
				{Address: "b:1", Weight: 2, Healthy: true},
				{Address: "c:1", Weight: 3, Healthy: true},
			},
			want: map[string]int{"a:1": 20, "b:1": 40, "c:1": 60},
		},
		{
			name: "zero weight counts as one",
			eps: []Endpoint{
				{Address: "a:1", Weight: 0, Healthy: true},
				{Address: "b:1", Weight: 1, Healthy: true},
			},
			want: map[string]int{"a:1": 60, "b:1": 60},
		},
		{
			name: "huge weights are scaled",
			eps: []Endpoint{
				{Address: "a:1", Weight: 1 << 31, Healthy: true},
				{Address: "b:1", Weight: 1<<31 + 1<<30, Healthy: true},
			},
			want: nil, // checked by ratio below
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewRoundRobin()
			b.Update(tt.eps)
			if tt.want == nil {
				got := countPicks(t, b.Picker(), PickInfo{}, 1<<16)
				if ratio := float64(got["b:1"]) / float64(got["a:1"]); ratio < 1.49 || ratio > 1.51 {
					t.Errorf("b/a ratio = %.3f (%v), want 1.5", ratio, got)
				}
				return
			}
			got := countPicks(t, b.Picker(), PickInfo{}, 120)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("pick counts mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoundRobinEDFSchedule(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
		want    []string // one cycle
	}{
		// Deadlines a: 1/3, 2/3, 1; b: 1/2, 1; c: 1. Ties at 1 go to the
		// earlier endpoint, as Envoy's insertion order does.
		{name: "3:2:1", weights: []uint32{3, 2, 1}, want: []string{"a", "b", "a", "a", "b", "c"}},
		// a: 1/5 … 1; b, c: 1. EDF spaces a's picks evenly in virtual time.
		{name: "5:1:1", weights: []uint32{5, 1, 1}, want: []string{"a", "a", "a", "a", "a", "b", "c"}},
		// b: 1/3, 2/3, 1; a: 1/2, 1: interleaved, not b b b a a.
		{name: "2:3", weights: []uint32{2, 3}, want: []string{"b", "a", "b", "a", "b"}},
		// Reduced by the common divisor.
		{name: "20:10", weights: []uint32{20, 10}, want: []string{"a", "a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var eps []Endpoint
			for i, w := range tt.weights {
				eps = append(eps, Endpoint{Address: string(rune('a' + i)), Weight: w, Healthy: true})
			}
			b := NewRoundRobin()
			b.Update(eps)
			p := b.Picker().(*rrPicker)
			var got []string
			for _, i := range p.sets[0].schedule {
				got = append(got, p.sel.sets[0].endpoints[i].Address)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("schedule mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// envoyEDF simulates Envoy's EdfScheduler from a fresh state for n
// picks: every entry starts with deadline 1/w, a pick takes the earliest
// deadline (ties to the entry added first) and re-adds it at deadline +
// 1/w. Deadlines are kept exact: after k picks entry i is due at
// (k+1)/w[i].
func envoyEDF(weights []uint64, n int) []uint32 {
	picks := make([]uint64, len(weights))
	out := make([]uint32, n)
	for step := range out {
		best := 0
		for i := 1; i < len(weights); i++ {
			// (picks[i]+1)/w[i] < (picks[best]+1)/w[best]
			if (picks[i]+1)*weights[best] < (picks[best]+1)*weights[i] {
				best = i
			}
		}
		picks[best]++
		out[step] = uint32(best)
	}
	return out
}

func TestEDFScheduleMatchesEnvoy(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		n := 2 + r.IntN(8)
		weights := make([]float64, n)
		ints := make([]uint64, n)
		for i := range weights {
			ints[i] = 1 + r.Uint64N(20)
			weights[i] = float64(ints[i])
		}
		schedule := edfSchedule(weights)
		// Compare three cycles: the schedule repeats.
		want := envoyEDF(ints, 3*len(schedule))
		got := make([]uint32, len(want))
		for c := range got {
			got[c] = schedule[c%len(schedule)]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("trial %d, weights %v: schedule differs from Envoy's EDF (-want +got):\n%s", trial, ints, diff)
		}
	}
}

func TestIntegerWeights(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want []uint64
	}{
		{name: "reduced", in: []float64{4, 6, 10}, want: []uint64{2, 3, 5}},
		{name: "fractions quantised", in: []float64{0.25, 1}, want: []uint64{1, 4}},
		{name: "tiny fraction keeps 1", in: []float64{1e-9, 1}, want: []uint64{1, 1000}},
		{name: "huge scaled", in: []float64{1 << 31, 1<<31 + 1<<30}, want: []uint64{2, 3}},
		{name: "capped", in: []float64{1, 1 << 20}, want: []uint64{1, 65535}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, integerWeights(tt.in)); diff != "" {
				t.Errorf("integerWeights(%v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestRoundRobinEmpty(t *testing.T) {
	tests := []struct {
		name   string
		update bool
		eps    []Endpoint
	}{
		{name: "never updated"},
		{name: "nil update", update: true},
		{name: "empty update", update: true, eps: []Endpoint{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewRoundRobin()
			if tt.update {
				b.Update([]Endpoint{{Address: "a:1", Healthy: true}})
				b.Update(tt.eps)
			}
			res, err := b.Picker().Pick(PickInfo{})
			if !errors.Is(err, ErrNoEndpoint) {
				t.Errorf("Pick() error = %v, want %v", err, ErrNoEndpoint)
			}
			if res.Endpoint != nil {
				t.Errorf("Pick() endpoint = %+v, want nil", res.Endpoint)
			}
		})
	}
}

func TestRoundRobinExclude(t *testing.T) {
	tests := []struct {
		name    string
		eps     []Endpoint
		exclude Endpoint
		want    map[string]int // over 60 picks
	}{
		{
			name: "excluded endpoint avoided",
			eps: []Endpoint{
				{Address: "a:1", Healthy: true},
				{Address: "b:1", Healthy: true},
				{Address: "c:1", Healthy: true},
			},
			exclude: Endpoint{Address: "b:1"},
			want:    map[string]int{"a:1": 20, "c:1": 40},
		},
		{
			name: "weighted excluded endpoint avoided",
			eps: []Endpoint{
				{Address: "a:1", Weight: 10, Healthy: true},
				{Address: "b:1", Weight: 1, Healthy: true},
			},
			exclude: Endpoint{Address: "a:1"},
			want:    map[string]int{"b:1": 60},
		},
		{
			name:    "sole endpoint still picked",
			eps:     []Endpoint{{Address: "a:1", Healthy: true}},
			exclude: Endpoint{Address: "a:1"},
			want:    map[string]int{"a:1": 60},
		},
		{
			name:    "unknown exclude ignored",
			eps:     []Endpoint{{Address: "a:1", Healthy: true}, {Address: "b:1", Healthy: true}},
			exclude: Endpoint{Address: "z:1"},
			want:    map[string]int{"a:1": 30, "b:1": 30},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewRoundRobin()
			b.Update(tt.eps)
			got := countPicks(t, b.Picker(), PickInfo{Exclude: &tt.exclude}, 60)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("pick counts mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoundRobinExcludeSamePointer(t *testing.T) {
	b := NewRoundRobin()
	b.Update([]Endpoint{{Address: "a:1", Healthy: true}, {Address: "b:1", Healthy: true}})
	p := b.Picker()
	first, err := p.Pick(PickInfo{})
	if err != nil {
		t.Fatalf("Pick() error = %v", err)
	}
	for range 10 {
		res, err := p.Pick(PickInfo{Exclude: first.Endpoint})
		if err != nil {
			t.Fatalf("Pick() error = %v", err)
		}
		if res.Endpoint.Address == first.Endpoint.Address {
			t.Fatalf("Pick(Exclude %s) = %s, want the other endpoint", first.Endpoint.Address, res.Endpoint.Address)
		}
	}
}

func TestRoundRobinUpdateDoesNotAliasInput(t *testing.T) {
	eps := []Endpoint{{Address: "a:1", Healthy: true}}
	b := NewRoundRobin()
	b.Update(eps)
	eps[0].Address = "mutated:1"
	res, err := b.Picker().Pick(PickInfo{})
	if err != nil {
		t.Fatalf("Pick() error = %v", err)
	}
	if got, want := res.Endpoint.Address, "a:1"; got != want {
		t.Errorf("Pick() address = %q, want %q", got, want)
	}
}

func TestRoundRobinConcurrent(t *testing.T) {
	const (
		goroutines = 8
		picks      = 2000
	)
	// p is counted exactly; b is updated concurrently and picked from
	// without counting, to exercise picker swaps under -race.
	counted := NewRoundRobin()
	counted.Update([]Endpoint{{Address: "a:1", Healthy: true}, {Address: "b:1", Healthy: true}})
	p := counted.Picker()
	b := NewRoundRobin()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	// A control-path writer publishing new pickers while others pick.
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b.Update([]Endpoint{
				{Address: fmt.Sprintf("x%d:1", i%3), Healthy: true},
				{Address: "y:1", Healthy: true, Weight: uint32(i%4 + 1)},
			})
		}
	})
	counts := make([]map[string]int, goroutines)
	var pickers sync.WaitGroup
	for g := range goroutines {
		pickers.Go(func() {
			m := map[string]int{}
			for range picks {
				res, err := p.Pick(PickInfo{})
				if err != nil {
					t.Errorf("Pick() error = %v", err)
					return
				}
				m[res.Endpoint.Address]++
				// The current picker may be empty before the first update.
				if _, err := b.Picker().Pick(PickInfo{}); err != nil && !errors.Is(err, ErrNoEndpoint) {
					t.Errorf("current Pick() error = %v", err)
					return
				}
			}
			counts[g] = m
		})
	}
	pickers.Wait()
	close(stop)
	wg.Wait()

	total := map[string]int{}
	for _, m := range counts {
		for k, v := range m {
			total[k] += v
		}
	}
	want := map[string]int{"a:1": goroutines * picks / 2, "b:1": goroutines * picks / 2}
	if diff := cmp.Diff(want, total); diff != "" {
		t.Errorf("concurrent pick counts mismatch (-want +got):\n%s", diff)
	}
}

func TestRoundRobinPickAllocs(t *testing.T) {
	b := NewRoundRobin()
	b.Update([]Endpoint{
		{Address: "a:1", Weight: 2, Healthy: true},
		{Address: "b:1", Weight: 1, Healthy: true},
	})
	p := b.Picker()
	ex := &Endpoint{Address: "a:1"}
	got := testing.AllocsPerRun(1000, func() {
		if _, err := p.Pick(PickInfo{Exclude: ex}); err != nil {
			t.Fatal(err)
		}
	})
	if got != 0 {
		t.Errorf("Pick allocs = %v, want 0", got)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 100} {
		for _, weighted := range []bool{false, true} {
			b.Run(fmt.Sprintf("endpoints=%d/weighted=%t", n, weighted), func(b *testing.B) {
				eps := make([]Endpoint, n)
				for i := range eps {
					eps[i] = Endpoint{Address: fmt.Sprintf("10.0.0.%d:80", i), Healthy: true}
					if weighted {
						eps[i].Weight = uint32(i%5 + 1)
					}
				}
				bal := NewRoundRobin()
				bal.Update(eps)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						p := bal.Picker()
						if _, err := p.Pick(PickInfo{}); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}
