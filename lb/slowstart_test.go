package lb

import (
	"io"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// slowStarters are the balancers that honour Options.SlowStart.
var slowStarters = []struct {
	name string
	new  func(Options) Balancer
	// exact balancers follow a schedule: shares over a whole number of
	// cycles are exact.
	exact bool
}{
	{name: "round_robin", new: func(o Options) Balancer { return NewRoundRobinWith(o) }, exact: true},
	{name: "least_request", new: func(o Options) Balancer { return NewLeastRequestWith(LeastRequestConfig{}, o) }},
}

// newShare returns the share of picks that went to "new:1".
func newShare(t *testing.T, b Balancer, n int) float64 {
	t.Helper()
	return float64(tally(t, b.Picker(), PickInfo{}, n)["new:1"]) / float64(n)
}

func TestSlowStartRamp(t *testing.T) {
	// With a 32 s window the picker is republished every second. The new
	// endpoint's factor f gives it f/(1+f) of the picks against an old
	// endpoint of the same weight.
	tests := []struct {
		name string
		cfg  SlowStartConfig
		// factor expected at each checkpoint (seconds after joining).
		at   []time.Duration
		want []float64
	}{
		{
			name: "linear",
			cfg:  SlowStartConfig{Window: 32 * time.Second},
			at:   []time.Duration{0, 8 * time.Second, 16 * time.Second, 24 * time.Second, 32 * time.Second},
			// At 0 the 10% floor applies; from the window's end, full weight.
			want: []float64{0.1, 0.25, 0.5, 0.75, 1},
		},
		{
			name: "aggression 2",
			cfg:  SlowStartConfig{Window: 32 * time.Second, Aggression: percent(2)},
			at:   []time.Duration{8 * time.Second, 16 * time.Second},
			want: []float64{0.5, math.Sqrt(0.5)},
		},
		{
			name: "min weight 40%",
			cfg:  SlowStartConfig{Window: 32 * time.Second, MinWeightPercent: percent(40)},
			at:   []time.Duration{1 * time.Second, 8 * time.Second, 16 * time.Second},
			want: []float64{0.4, 0.4, 0.5},
		},
	}
	for _, s := range slowStarters {
		for _, tt := range tests {
			t.Run(s.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					b := s.new(Options{SlowStart: tt.cfg})
					defer b.(io.Closer).Close()
					old := Endpoint{Address: "old:1", Healthy: true}
					b.Update([]Endpoint{old}) // the first update never ramps
					b.Update([]Endpoint{old, {Address: "new:1", Healthy: true}})
					start := time.Now()
					for i, at := range tt.at {
						// Land between two republications.
						time.Sleep(time.Until(start.Add(at + 500*time.Millisecond)))
						synctest.Wait()
						f := tt.want[i]
						want := f / (1 + f)
						n, tol := 20000, 0.015
						if s.exact {
							n, tol = 2000*11, 0.0005 // whole cycles of the quantised schedule
						}
						if got := newShare(t, b, n); math.Abs(got-want) > tol {
							t.Errorf("%v after joining: new endpoint's share = %.4f, want %.4f (factor %.3f)", at, got, want, f)
						}
					}
				})
			})
		}
	}
}

func TestSlowStartEntry(t *testing.T) {
	for _, s := range slowStarters {
		t.Run(s.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := s.new(Options{SlowStart: SlowStartConfig{Window: 10 * time.Second}})
				defer b.(io.Closer).Close()
				a := Endpoint{Address: "a:1", Healthy: true}
				sick := Endpoint{Address: "new:1", Healthy: false}

				// 20 000 picks: the random balancers' share is then within
				// ±0.03 of 0.5 by 8 standard deviations.
				// Present in the first update: no ramp.
				b.Update([]Endpoint{a, {Address: "new:1", Healthy: true}})
				if got := newShare(t, b, 20000); math.Abs(got-0.5) > 0.03 {
					t.Errorf("initial endpoint share = %.3f, want 0.5", got)
				}

				// Turning healthy again starts the window.
				b.Update([]Endpoint{a, sick})
				time.Sleep(time.Minute)
				b.Update([]Endpoint{a, {Address: "new:1", Healthy: true}})
				if got, want := newShare(t, b, 11000), 0.1/1.1; math.Abs(got-want) > 0.015 {
					t.Errorf("newly healthy endpoint share = %.3f, want %.3f", got, want)
				}

				// A weight change alone does not restart it.
				time.Sleep(11 * time.Second)
				synctest.Wait()
				b.Update([]Endpoint{a, {Address: "new:1", Healthy: true, Weight: 1}})
				if got := newShare(t, b, 20000); math.Abs(got-0.5) > 0.03 {
					t.Errorf("share after the window = %.3f, want 0.5", got)
				}
			})
		})
	}
}

// TestSlowStartStops checks the timer stops after the window and after
// Close: no picker is published while nothing ramps.
func TestSlowStartStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewRoundRobinWith(Options{SlowStart: SlowStartConfig{Window: 4 * time.Second}})
		b.Update([]Endpoint{{Address: "a:1", Healthy: true}})
		b.Update([]Endpoint{{Address: "a:1", Healthy: true}, {Address: "new:1", Healthy: true}})
		first := b.Picker()
		time.Sleep(time.Second)
		synctest.Wait()
		if b.Picker() == first {
			t.Fatal("picker not republished during the window")
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		settled := b.Picker()
		if s := settled.(*rrPicker).sets[0].schedule; s != nil {
			t.Errorf("schedule after the window = %v, want nil (equal weights)", s)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if b.Picker() != settled {
			t.Error("picker republished after the window ended")
		}

		b.Update([]Endpoint{{Address: "a:1", Healthy: true}, {Address: "new:1", Healthy: true}, {Address: "c:1", Healthy: true}})
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		closed := b.Picker()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if b.Picker() != closed {
			t.Error("picker republished after Close")
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close() = %v, want nil", err)
		}
	})
}

func TestSlowStartIgnoredByOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewRandomWith(Options{SlowStart: SlowStartConfig{Window: time.Hour}})
		b.Update([]Endpoint{{Address: "a:1", Healthy: true}})
		b.Update([]Endpoint{{Address: "a:1", Healthy: true}, {Address: "new:1", Healthy: true}})
		if got := newShare(t, b, 20000); math.Abs(got-0.5) > 0.02 {
			t.Errorf("random: new endpoint share = %.3f, want 0.5", got)
		}
	})
}
