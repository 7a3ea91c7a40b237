package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// script is a fake Checker: each address fails while its entry in fail
// is true, and every check is recorded with its (bubble) time.
type script struct {
	mu    sync.Mutex
	fail  map[string]bool
	calls map[string][]time.Time
}

func newScript() *script {
	return &script{fail: map[string]bool{}, calls: map[string][]time.Time{}}
}

func (s *script) Check(ctx context.Context, address string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[address] = append(s.calls[address], time.Now())
	if s.fail[address] {
		return errors.New("scripted failure")
	}
	return nil
}

func (s *script) set(address string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[address] = fail
}

func (s *script) count(address string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls[address])
}

// gaps returns the intervals between consecutive checks of address.
func (s *script) gaps(address string) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	c := s.calls[address]
	for i := 1; i < len(c); i++ {
		out = append(out, c[i].Sub(c[i-1]))
	}
	return out
}

// events collects onChange calls as "endpoint From->To".
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, fmt.Sprintf("%s %v->%v", ev.Endpoint, ev.From, ev.To))
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.got
	e.got = nil
	return out
}

func TestThresholds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		var ev events
		m, err := NewMonitor("api", Config{
			Checker:            s,
			Interval:           time.Second,
			UnhealthyThreshold: 3,
			HealthyThreshold:   2,
		}, ev.add)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.SetTraffic(true)
		const a = "10.0.0.1:80"

		if got := m.Status(a); got != Unknown {
			t.Errorf("Status before SetEndpoints = %v, want Unknown", got)
		}
		// step advances the bubble by d and waits for the checks to settle.
		step := func(d time.Duration) {
			time.Sleep(d)
			synctest.Wait()
		}
		m.SetEndpoints([]string{a})
		synctest.Wait()
		if got, want := m.Status(a), Healthy; got != want {
			t.Fatalf("Status after first success = %v, want %v", got, want)
		}

		s.set(a, true)
		step(time.Second)
		step(time.Second)
		if got, want := m.Status(a), Healthy; got != want {
			t.Errorf("Status after 2 failures = %v, want %v (threshold 3)", got, want)
		}
		step(time.Second)
		if got, want := m.Status(a), Unhealthy; got != want {
			t.Errorf("Status after 3 failures = %v, want %v", got, want)
		}
		s.set(a, false)
		step(time.Second)
		if got, want := m.Status(a), Unhealthy; got != want {
			t.Errorf("Status after 1 success = %v, want %v (threshold 2)", got, want)
		}
		step(time.Second)
		if got, want := m.Status(a), Healthy; got != want {
			t.Errorf("Status after 2 successes = %v, want %v", got, want)
		}
		want := []string{a + " Unknown->Healthy", a + " Healthy->Unhealthy", a + " Unhealthy->Healthy"}
		if diff := cmp.Diff(want, ev.take()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}

		got := m.Statuses()
		if len(got) != 1 {
			t.Fatalf("Statuses = %v, want one endpoint", got)
		}
		wantStatus := EndpointStatus{Cluster: "api", Endpoint: a, Check: "custom", Status: Healthy, Successes: 2, LastCheck: time.Now()}
		if diff := cmp.Diff(wantStatus, got[0]); diff != "" {
			t.Errorf("Statuses()[0] (-want +got):\n%s", diff)
		}
	})
}

func TestFirstFailureIsUnhealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		s.set("a:1", true)
		m, err := NewMonitor("api", Config{Checker: s}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.SetEndpoints([]string{"a:1"})
		synctest.Wait()
		if got := m.Status("a:1"); got != Unhealthy {
			t.Errorf("Status after first failure = %v, want Unhealthy", got)
		}
		st := m.Statuses()[0]
		if st.Failures != 1 || st.LastError == nil || !strings.Contains(st.LastError.Error(), "scripted") {
			t.Errorf("Statuses()[0] = %+v, want 1 failure with the scripted error", st)
		}
	})
}

// TestIntervals checks Envoy's choice of interval in every state.
func TestIntervals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		m, err := NewMonitor("api", Config{
			Checker:               s,
			Interval:              10 * time.Second,
			UnhealthyInterval:     20 * time.Second,
			UnhealthyEdgeInterval: 3 * time.Second,
			HealthyEdgeInterval:   4 * time.Second,
			NoTrafficInterval:     60 * time.Second,
			UnhealthyThreshold:    2,
			HealthyThreshold:      2,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		const a = "a:1"
		m.SetEndpoints([]string{a})
		synctest.Wait() // check 1 at t=0: healthy
		time.Sleep(60 * time.Second)
		synctest.Wait() // check 2 at t=60, no traffic
		m.SetTraffic(true)
		time.Sleep(10 * time.Second)
		synctest.Wait() // check 3 at t=70: healthy interval
		s.set(a, true)
		time.Sleep(10 * time.Second)
		synctest.Wait() // check 4 fails: pending unhealthy
		time.Sleep(3 * time.Second)
		synctest.Wait() // check 5 fails: unhealthy
		time.Sleep(20 * time.Second)
		synctest.Wait() // check 6 fails: unhealthy interval
		s.set(a, false)
		time.Sleep(20 * time.Second)
		synctest.Wait() // check 7 passes: pending healthy
		time.Sleep(4 * time.Second)
		synctest.Wait() // check 8 passes: healthy
		time.Sleep(10 * time.Second)
		synctest.Wait() // check 9: healthy interval
		m.Close()
		want := []time.Duration{60, 10, 10, 3, 20, 20, 4, 10}
		for i := range want {
			want[i] *= time.Second
		}
		if diff := cmp.Diff(want, s.gaps(a)); diff != "" {
			t.Errorf("intervals between checks (-want +got):\n%s", diff)
		}
	})
}

// TestSetTrafficReschedules checks that traffic shortens a pending
// no-traffic wait instead of waiting it out.
func TestSetTrafficReschedules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		m, err := NewMonitor("api", Config{Checker: s, Interval: time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.SetEndpoints([]string{"a:1"})
		synctest.Wait()
		time.Sleep(5 * time.Second)
		m.SetTraffic(true) // 5s past the first check: overdue, check at once
		synctest.Wait()
		if got := s.count("a:1"); got != 2 {
			t.Errorf("checks after SetTraffic = %d, want 2", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := s.count("a:1"); got != 3 {
			t.Errorf("checks 1s later = %d, want 3", got)
		}
	})
}

func TestTimeoutHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var gotErr error
		stall := CheckerFunc(func(ctx context.Context, _ string) error {
			<-ctx.Done()
			return ctx.Err()
		})
		var ev Event
		m, err := NewMonitor("api", Config{Checker: stall, Timeout: 250 * time.Millisecond}, func(e Event) { ev = e })
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		start := time.Now()
		m.SetEndpoints([]string{"a:1"})
		time.Sleep(249 * time.Millisecond)
		synctest.Wait()
		if got := m.Status("a:1"); got != Unknown {
			t.Errorf("Status before timeout = %v, want Unknown", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		gotErr = ev.Err
		if !errors.Is(gotErr, context.DeadlineExceeded) || ev.To != Unhealthy {
			t.Errorf("event = %+v, want Unhealthy with DeadlineExceeded", ev)
		}
		if d := ev.Time.Sub(start); d != 250*time.Millisecond {
			t.Errorf("verdict after %v, want 250ms", d)
		}
	})
}

// TestSetEndpoints adds and removes endpoints; synctest.Test fails if any
// goroutine outlives the bubble, which checks that each is joined.
func TestSetEndpoints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		var ev events
		m, err := NewMonitor("api", Config{Checker: s, Interval: time.Second}, ev.add)
		if err != nil {
			t.Fatal(err)
		}
		m.SetTraffic(true)
		m.SetEndpoints([]string{"a:1", "b:1", "a:1"})
		synctest.Wait()
		s.set("b:1", true)
		time.Sleep(time.Second)
		synctest.Wait()
		m.SetEndpoints([]string{"b:1", "c:1"})
		synctest.Wait()
		addrs := func() []string {
			var out []string
			for _, st := range m.Statuses() {
				out = append(out, st.Endpoint+"="+st.Status.String())
			}
			return out
		}
		// b keeps its counters: one failure, still healthy.
		if diff := cmp.Diff([]string{"b:1=Healthy", "c:1=Healthy"}, addrs()); diff != "" {
			t.Errorf("after replace (-want +got):\n%s", diff)
		}
		if got := m.Status("a:1"); got != Unknown {
			t.Errorf("Status of removed endpoint = %v, want Unknown", got)
		}
		n := s.count("a:1")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := s.count("a:1"); got != n {
			t.Errorf("removed endpoint checked %d more times", got-n)
		}
		m.SetEndpoints(nil)
		if got := m.Statuses(); len(got) != 0 {
			t.Errorf("Statuses after SetEndpoints(nil) = %v, want none", got)
		}
		m.SetEndpoints([]string{"d:1"})
		synctest.Wait()
		if err := m.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		m.SetEndpoints([]string{"e:1"}) // ignored after Close
		if got := m.Statuses(); len(got) != 0 {
			t.Errorf("Statuses after Close = %v, want none", got)
		}
		want := []string{"a:1 Unknown->Healthy", "b:1 Healthy->Unhealthy", "b:1 Unknown->Healthy", "c:1 Unknown->Healthy", "d:1 Unknown->Healthy"}
		got := ev.take()
		slicesSort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func slicesSort(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

// TestCloseStopsStalledCheck checks that Close cancels a check in flight
// and emits no event for it.
func TestCloseStopsStalledCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stall := CheckerFunc(func(ctx context.Context, _ string) error { <-ctx.Done(); return ctx.Err() })
		called := false
		m, err := NewMonitor("api", Config{Checker: stall, Timeout: time.Hour}, func(Event) { called = true })
		if err != nil {
			t.Fatal(err)
		}
		m.SetEndpoints([]string{"a:1"})
		synctest.Wait()
		m.Close()
		if called {
			t.Error("onChange called for a check canceled by Close")
		}
	})
}

func TestJitter(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		base     time.Duration
		min, max time.Duration // max is exclusive
		draws    int           // random draws per call
	}{
		{name: "none", base: 10 * time.Second, min: 10 * time.Second, max: 10*time.Second + 1},
		{name: "percent", cfg: Config{IntervalJitterPercent: 10}, base: 10 * time.Second, min: 10 * time.Second, max: 11 * time.Second, draws: 1},
		{name: "absolute", cfg: Config{IntervalJitter: time.Second}, base: 10 * time.Second, min: 10 * time.Second, max: 11 * time.Second, draws: 1},
		{name: "both", cfg: Config{IntervalJitterPercent: 100, IntervalJitter: time.Second}, base: 2 * time.Second, min: 2 * time.Second, max: 5 * time.Second, draws: 2},
		{name: "tiny base", cfg: Config{IntervalJitterPercent: 1}, base: 50, min: 50, max: 51}, // 1% of 50ns rounds to no jitter
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Extremes of the random source, then real draws.
			lo := tt.cfg.jitter(tt.base, func(int64) int64 { return 0 })
			hi := tt.cfg.jitter(tt.base, func(n int64) int64 { return n - 1 })
			if lo != tt.min {
				t.Errorf("jitter with zero draws = %v, want %v", lo, tt.min)
			}
			if want := tt.max - 1 - time.Duration(max(0, tt.draws-1)); hi != want {
				t.Errorf("jitter with maximal draws = %v, want %v", hi, want)
			}
			for range 1000 {
				if d := tt.cfg.jitter(tt.base, rand.Int64N); d < tt.min || d >= tt.max {
					t.Fatalf("jitter = %v, want in [%v, %v)", d, tt.min, tt.max)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := CheckerFunc(func(context.Context, string) error { return nil })
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero but checker", cfg: Config{Checker: ok}},
		{name: "no checker", cfg: Config{}, wantErr: "Checker is nil"},
		{name: "negative interval", cfg: Config{Checker: ok, Interval: -1}, wantErr: "Config.Interval"},
		{name: "negative timeout", cfg: Config{Checker: ok, Timeout: -1}, wantErr: "Config.Timeout"},
		{name: "negative edge", cfg: Config{Checker: ok, HealthyEdgeInterval: -1}, wantErr: "Config.HealthyEdgeInterval"},
		{name: "jitter percent", cfg: Config{Checker: ok, IntervalJitterPercent: 101}, wantErr: "IntervalJitterPercent"},
		{name: "threshold", cfg: Config{Checker: ok, UnhealthyThreshold: -1}, wantErr: "UnhealthyThreshold"},
		{name: "healthy threshold", cfg: Config{Checker: ok, HealthyThreshold: -2}, wantErr: "HealthyThreshold"},
		{name: "http path", cfg: Config{Checker: &HTTP{Path: "healthz"}}, wantErr: "HTTP.Path"},
		{name: "http connect", cfg: Config{Checker: &HTTP{Method: "CONNECT"}}, wantErr: "HTTP.Method"},
		{name: "http method token", cfg: Config{Checker: &HTTP{Method: "G T"}}, wantErr: "HTTP.Method"},
		{name: "http range", cfg: Config{Checker: &HTTP{ExpectedStatuses: []Range{{200, 200}}}}, wantErr: "ExpectedStatuses[0]"},
		{name: "http ok", cfg: Config{Checker: &HTTP{Path: "/h", Method: "HEAD", ExpectedStatuses: []Range{{200, 400}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			checkErr(t, err, tt.wantErr)
			if _, nerr := NewMonitor("c", tt.cfg, nil); (nerr == nil) != (err == nil) {
				t.Errorf("NewMonitor error %v, Validate error %v; want both or neither", nerr, err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Interval: 2 * time.Second, UnhealthyInterval: 7 * time.Second}.withDefaults()
	got := []time.Duration{c.Interval, c.Timeout, c.NoTrafficInterval, c.UnhealthyInterval, c.UnhealthyEdgeInterval, c.HealthyEdgeInterval}
	want := []time.Duration{2 * time.Second, time.Second, 60 * time.Second, 7 * time.Second, 7 * time.Second, 2 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("durations (-want +got):\n%s", diff)
	}
	if c.UnhealthyThreshold != 3 || c.HealthyThreshold != 2 {
		t.Errorf("thresholds = %d/%d, want 3/2", c.UnhealthyThreshold, c.HealthyThreshold)
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{Unknown: "Unknown", Healthy: "Healthy", Unhealthy: "Unhealthy", 7: "Status(7)"} {
		if got := s.String(); got != want {
			t.Errorf("Status(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

// TestConcurrent exercises the lock-free readers against the control
// path and the check goroutines, with real time and a real TCP checker;
// run it under -race.
func TestConcurrent(t *testing.T) {
	var addrs []string
	for range 4 {
		addrs = append(addrs, startTCP(t, func(net.Conn) {}))
	}
	m, err := NewMonitor("api", Config{
		Checker: &TCP{}, Interval: time.Millisecond, NoTrafficInterval: time.Millisecond,
		IntervalJitterPercent: 50, Timeout: time.Second,
	}, func(Event) {})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, a := range addrs {
					m.Status(a)
				}
				m.Statuses()
				m.SetTraffic(rand.IntN(2) == 0)
			}
		})
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		m.SetEndpoints(addrs[:i%len(addrs)+1])
		time.Sleep(time.Millisecond)
	}
	m.SetEndpoints(addrs)
	allHealthy := func() bool {
		for _, a := range addrs {
			if m.Status(a) != Healthy {
				return false
			}
		}
		return true
	}
	for !allHealthy() && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for _, st := range m.Statuses() {
		if st.Status != Healthy {
			t.Errorf("%s = %v (%v), want Healthy", st.Endpoint, st.Status, st.LastError)
		}
	}
}

// TestOnCheckAndStats: OnCheck sees every check, changes and repeats
// alike, and the counters follow Envoy's health_check stats.
func TestOnCheckAndStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		var mu sync.Mutex
		var seen []string
		var changes events
		m, err := NewMonitor("api", Config{
			Checker: s, Interval: time.Second, NoTrafficInterval: time.Second, UnhealthyThreshold: 2,
			OnCheck: func(ev Event) {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, fmt.Sprintf("%v->%v %v", ev.From, ev.To, ev.Err != nil))
			},
		}, changes.add)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		const a = "a:1"
		if got := m.EndpointStatus(a); got != (EndpointStatus{Cluster: "api", Endpoint: a, Check: "custom"}) {
			t.Errorf("EndpointStatus of an unchecked address = %+v, want Unknown with names", got)
		}
		m.SetEndpoints([]string{a})
		synctest.Wait()
		s.set(a, true)
		for range 2 {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		want := []string{"Unknown->Healthy false", "Healthy->Healthy true", "Healthy->Unhealthy true"}
		mu.Lock()
		if diff := cmp.Diff(want, seen); diff != "" {
			t.Errorf("OnCheck events (-want +got):\n%s", diff)
		}
		mu.Unlock()
		if got := changes.take(); len(got) != 2 {
			t.Errorf("onChange events %v, want the 2 changes only", got)
		}
		if got, want := m.Stats(), (Stats{Attempts: 3, Successes: 1, Failures: 2}); got != want {
			t.Errorf("Stats = %+v, want %+v (scripted failures are not network failures)", got, want)
		}
		if st := m.EndpointStatus(a); st.Status != Unhealthy || st.Failures != 2 {
			t.Errorf("EndpointStatus = %+v, want Unhealthy after 2 failures", st)
		}
	})
}

// TestTimedOut: a check that outlives Timeout is a timed-out network
// failure.
func TestTimedOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := CheckerFunc(func(ctx context.Context, _ string) error {
			<-ctx.Done()
			return fmt.Errorf("hung: %w", ctx.Err())
		})
		var got Event
		m, err := NewMonitor("api", Config{Checker: hang, Timeout: time.Second}, func(ev Event) { got = ev })
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.SetEndpoints([]string{"a:1"})
		time.Sleep(time.Second)
		synctest.Wait()
		if !got.TimedOut || !got.NetworkFailure || got.To != Unhealthy {
			t.Errorf("event %+v, want a timed-out network failure", got)
		}
		if st := m.EndpointStatus("a:1"); !st.TimedOut {
			t.Errorf("EndpointStatus = %+v, want TimedOut", st)
		}
		if s := m.Stats(); s.NetworkFailures != 1 || s.Failures != 1 {
			t.Errorf("Stats = %+v, want 1 network failure", s)
		}
	})
}

func TestNetworkFailure(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{fmt.Errorf("health: http a:1: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("x: %w", io.EOF), true},
		{errClosedEarly, true},
		{status.Error(codes.Unavailable, "down"), true},
		{fmt.Errorf("health: grpc a:1: %w", status.Error(codes.DeadlineExceeded, "slow")), true},
		{status.Error(codes.NotFound, "unknown service"), false},
		{errors.New("health: http a:1: unexpected status 503"), false},
	}
	for _, tt := range tests {
		if got := networkFailure(tt.err); got != tt.want {
			t.Errorf("networkFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestDegradedFlag: a DegradedChecker's verdict sets the endpoint's
// degraded flag on passing checks only, at once, and each change reaches
// onChange.
func TestDegradedFlag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		fail, degraded := false, true
		checker := DegradedCheckerFunc(func(context.Context, string) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				return true, errors.New("scripted failure") // degraded is ignored
			}
			return degraded, nil
		})
		set := func(f, d bool) {
			mu.Lock()
			defer mu.Unlock()
			fail, degraded = f, d
		}
		var evMu sync.Mutex
		var changes []string
		m, err := NewMonitor("api", Config{
			Checker: checker, Interval: time.Second, NoTrafficInterval: time.Second,
			UnhealthyThreshold: 2, HealthyThreshold: 2,
		}, func(ev Event) {
			evMu.Lock()
			defer evMu.Unlock()
			changes = append(changes, fmt.Sprintf("%v->%v degraded %t->%t", ev.From, ev.To, ev.WasDegraded, ev.Degraded))
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		const a = "a:1"
		step := func() {
			time.Sleep(time.Second)
			synctest.Wait()
		}
		check := func(when string, wantStatus Status, wantDegraded bool) {
			t.Helper()
			if got := m.Status(a); got != wantStatus {
				t.Errorf("%s: Status = %v, want %v", when, got, wantStatus)
			}
			if got := m.Degraded(a); got != wantDegraded {
				t.Errorf("%s: Degraded = %t, want %t", when, got, wantDegraded)
			}
			if got := m.EndpointStatus(a).Degraded; got != wantDegraded {
				t.Errorf("%s: EndpointStatus.Degraded = %t, want %t", when, got, wantDegraded)
			}
		}

		m.SetEndpoints([]string{a})
		synctest.Wait()
		check("first check passes degraded", Healthy, true)
		set(false, false)
		step()
		check("passes, not degraded", Healthy, false)
		set(false, true)
		step()
		check("passes degraded again", Healthy, true)
		set(true, false)
		step()
		check("one failure", Healthy, true)
		step()
		check("two failures", Unhealthy, true)
		set(false, false)
		step()
		check("one pass, not degraded", Unhealthy, false)
		step()
		check("two passes", Healthy, false)

		want := []string{
			"Unknown->Healthy degraded false->true",
			"Healthy->Healthy degraded true->false",
			"Healthy->Healthy degraded false->true",
			"Healthy->Unhealthy degraded true->true",
			"Unhealthy->Unhealthy degraded true->false",
			"Unhealthy->Healthy degraded false->false",
		}
		evMu.Lock()
		defer evMu.Unlock()
		if diff := cmp.Diff(want, changes); diff != "" {
			t.Errorf("onChange events (-want +got):\n%s", diff)
		}
		if m.Degraded("unchecked:1") {
			t.Error("Degraded of an unchecked address = true, want false")
		}
	})
}
