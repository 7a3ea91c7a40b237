package lb

import (
	"errors"
	"fmt"
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
			name: "panic mode uses all endpoints of the top level",
			eps: []Endpoint{
				{Address: "a:1", Priority: 1, Healthy: false},
				{Address: "b:1", Priority: 1, Healthy: false},
				{Address: "c:1", Priority: 2, Healthy: false},
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

func TestRoundRobinSmoothWeights(t *testing.T) {
	// Smooth WRR interleaves: with weights 5:1:1 the heavy endpoint never
	// gets more than its share in a row within a cycle.
	b := NewRoundRobin()
	b.Update([]Endpoint{
		{Address: "a:1", Weight: 5, Healthy: true},
		{Address: "b:1", Weight: 1, Healthy: true},
		{Address: "c:1", Weight: 1, Healthy: true},
	})
	p := b.Picker().(*rrPicker)
	var got []string
	for _, i := range p.schedule {
		got = append(got, p.endpoints[i].Address)
	}
	want := []string{"a:1", "a:1", "b:1", "a:1", "c:1", "a:1", "a:1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schedule mismatch (-want +got):\n%s", diff)
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
