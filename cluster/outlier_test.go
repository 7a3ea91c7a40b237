package cluster

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// statusServer answers with its name and the status in code; script, if
// set, overrides code per request (n counts from 0).
type statusServer struct {
	*httptest.Server
	name   string
	code   atomic.Int32
	hits   atomic.Int64
	script func(n int64) int
}

func newStatusServer(t *testing.T, name string, code int) *statusServer {
	s := &statusServer{name: name}
	s.code.Store(int32(code))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.hits.Add(1) - 1
		code := int(s.code.Load())
		if s.script != nil {
			code = s.script(n)
		}
		w.WriteHeader(code)
		io.WriteString(w, s.name)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *statusServer) addr() string { return strings.TrimPrefix(s.URL, "http://") }

// fakeClock is the control path's clock in these tests; the cluster reads
// it under c.mu.
type fakeClock struct{ t time.Time }

// newOutlierCluster builds a round-robin cluster over servers with
// outlier detection whose own timer never fires (Interval one hour): the
// tests run sweeps themselves, on a fake clock.
func newOutlierCluster(t *testing.T, od OutlierDetection, servers ...*statusServer) (*Cluster, *fakeClock) {
	t.Helper()
	if od.Interval == 0 {
		od.Interval = time.Hour
	}
	var eps []Endpoint
	for _, s := range servers {
		eps = append(eps, Endpoint{Address: s.addr()})
	}
	c := newTestCluster(t, Config{Endpoints: eps, OutlierDetection: &od})
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	c.mu.Lock()
	c.hs.now = func() time.Time { return clk.t }
	c.mu.Unlock()
	return c, clk
}

// outlierTick advances the fake clock by d and runs the outlier interval.
func outlierTick(c *Cluster, clk *fakeClock, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clk.t = clk.t.Add(d)
	c.outlierSweep(clk.t)
}

// applyDetections applies the data path's pending detections, as the control loop
// does when woken; calling it makes the test independent of the loop's
// scheduling.
func applyDetections(c *Cluster) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyEvents()
}

// sendCount sends n GETs and counts the responses by body (the server name)
// or by error kind.
func sendCount(t *testing.T, c *Cluster, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		resp, err := c.Send(newReq(t, ctx, http.MethodGet, nil))
		if err != nil {
			var ue *UpstreamError
			if !errors.As(err, &ue) {
				t.Fatal(err)
			}
			got[ue.Kind.String()]++
			cancel()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		got[string(b)]++
	}
	return got
}

func stateOf(t *testing.T, c *Cluster, addr string) EndpointState {
	t.Helper()
	for _, s := range c.EndpointStates() {
		if s.Address == addr {
			return s
		}
	}
	t.Fatalf("no endpoint %s", addr)
	return EndpointState{}
}

func TestConsecutive5xxEjection(t *testing.T) {
	bad := newStatusServer(t, "bad", 503)
	good := newStatusServer(t, "good", 200)
	c, clk := newOutlierCluster(t, OutlierDetection{}, bad, good)
	t0 := clk.t

	// Round robin: ten requests give bad its five 503s in a row.
	sendCount(t, c, 10)
	applyDetections(c)
	st := stateOf(t, c, bad.addr())
	if !st.Ejected || st.EjectionReason != "consecutive_5xx" || st.Ejections != 1 {
		t.Fatalf("bad endpoint %+v, want ejected once for consecutive_5xx", st)
	}
	if got, want := st.EjectedUntil, t0.Add(DefaultBaseEjectionTime); !got.Equal(want) {
		t.Errorf("EjectedUntil = %v, want base ejection time %v", got, want)
	}
	if got := st.HealthFlags(); got != "/failed_outlier_check" {
		t.Errorf("HealthFlags = %q, want /failed_outlier_check", got)
	}
	if st.ErrorRequests != 5 || st.TotalRequests != 5 {
		t.Errorf("bad endpoint counters: %d errors of %d, want 5 of 5", st.ErrorRequests, st.TotalRequests)
	}
	od := c.Stats().OutlierDetection
	want := OutlierStats{EjectionsActive: 1, EjectionsEnforcedTotal: 1, EjectionsTotal: 1, EjectionsConsecutive5xx: 1,
		EnforcedConsecutive5xx: 1, DetectedConsecutive5xx: 1, DetectedGatewayFailure: 1}
	if diff := cmp.Diff(want, od); diff != "" {
		t.Errorf("outlier stats (-want +got):\n%s", diff)
	}
	if h := c.Stats().MembershipHealthy; h != 1 {
		t.Errorf("membership_healthy = %d, want 1", h)
	}

	// Ejected: no traffic for the ejection time.
	if got := sendCount(t, c, 20); got["good"] != 20 {
		t.Errorf("while ejected: %v, want all 20 on good", got)
	}
	outlierTick(c, clk, 29*time.Second)
	if !stateOf(t, c, bad.addr()).Ejected {
		t.Fatal("returned after 29s, before the 30s base ejection time")
	}
	if got := sendCount(t, c, 10); got["good"] != 10 {
		t.Errorf("still ejected: %v, want all 10 on good", got)
	}
	outlierTick(c, clk, time.Second)
	st = stateOf(t, c, bad.addr())
	if st.Ejected || st.HealthFlags() != "healthy" {
		t.Fatalf("after 30s: %+v, want back in service", st)
	}
	if got := sendCount(t, c, 4); got["bad"] != 2 || got["good"] != 2 {
		t.Errorf("after return: %v, want 2 and 2", got)
	}
	if a := c.Stats().OutlierDetection.EjectionsActive; a != 0 {
		t.Errorf("ejections_active = %d after return, want 0", a)
	}
}

// TestEjectionTimeGrows: each ejection in a row lasts one base time
// longer, capped by max_ejection_time; time in service shortens it again.
func TestEjectionTimeGrows(t *testing.T) {
	bad := newStatusServer(t, "bad", 500)
	good := newStatusServer(t, "good", 200)
	c, clk := newOutlierCluster(t, OutlierDetection{
		Interval:         10 * time.Second, // for the multiplier's decay; sweeps are manual
		BaseEjectionTime: 10 * time.Second,
		MaxEjectionTime:  25 * time.Second,
	}, bad, good)
	// eject fails bad until it is ejected and returns the ejection length.
	eject := func() time.Duration {
		t.Helper()
		for i := 0; i < 50 && !stateOf(t, c, bad.addr()).Ejected; i++ {
			sendCount(t, c, 1)
			applyDetections(c)
		}
		st := stateOf(t, c, bad.addr())
		if !st.Ejected {
			t.Fatal("not ejected")
		}
		return st.EjectedUntil.Sub(clk.t)
	}
	returns := func(d time.Duration) {
		t.Helper()
		outlierTick(c, clk, d-time.Second)
		if !stateOf(t, c, bad.addr()).Ejected {
			t.Fatalf("returned before %v", d)
		}
		outlierTick(c, clk, time.Second)
		if stateOf(t, c, bad.addr()).Ejected {
			t.Fatalf("still ejected after %v", d)
		}
	}
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second, 25 * time.Second} {
		if got := eject(); got != want {
			t.Fatalf("ejection %d lasts %v, want %v", i+1, got, want)
		}
		returns(want)
	}
	if n := stateOf(t, c, bad.addr()).Ejections; n != 4 {
		t.Errorf("Ejections = %d, want 4", n)
	}
	// The multiplier grew to 4 (it stops once the time is capped); four
	// intervals in service take it down to 0, and the next ejection is a
	// first one again.
	for range 4 {
		outlierTick(c, clk, 10*time.Second)
	}
	if got := eject(); got != 10*time.Second {
		t.Errorf("ejection after a healthy spell lasts %v, want the base 10s", got)
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name    string
		percent *uint32
		servers int
		want    uint64
	}{
		{"default 10% ejects one of four", nil, 4, 1},
		{"50% of four", new(uint32(50)), 4, 2},
		{"0% still ejects one", new(uint32(0)), 4, 1},
		{"100% of three", new(uint32(100)), 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var servers []*statusServer
			for range tt.servers {
				servers = append(servers, newStatusServer(t, "bad", 503))
			}
			c, _ := newOutlierCluster(t, OutlierDetection{MaxEjectionPercent: tt.percent}, servers...)
			// Enough rounds for every endpoint to reach five 503s in a row;
			// ejected ones get no more traffic unless all are out (panic).
			for range 10 {
				sendCount(t, c, tt.servers)
				applyDetections(c)
			}
			od := c.Stats().OutlierDetection
			if od.EjectionsActive != tt.want {
				t.Errorf("ejections_active = %d, want %d", od.EjectionsActive, tt.want)
			}
			if tt.want < uint64(tt.servers) && od.EjectionsOverflow == 0 {
				t.Error("ejections_overflow = 0, want refusals counted")
			}
		})
	}
}

// skewed sets up five endpoints, four always succeeding and one
// answering with its script, sends every endpoint perHost requests and
// runs an interval.
func skewed(t *testing.T, od OutlierDetection, perHost int, script func(n int64) int) (*Cluster, *statusServer) {
	t.Helper()
	servers := []*statusServer{newStatusServer(t, "outlier", 200)}
	servers[0].script = script
	for range 4 {
		servers = append(servers, newStatusServer(t, "ok", 200))
	}
	c, clk := newOutlierCluster(t, od, servers...)
	outlierTick(c, clk, time.Second) // start a fresh interval
	sendCount(t, c, perHost*len(servers))
	applyDetections(c)
	outlierTick(c, clk, time.Second)
	return c, servers[0]
}

func TestSuccessRateEjection(t *testing.T) {
	// Success rates 100, 100, 100, 100 and 50: mean 90, stdev 20,
	// threshold 90 - 1.9*20 = 52.
	c, out := skewed(t, OutlierDetection{SuccessRateRequestVolume: 20}, 20, func(n int64) int {
		return []int{200, 500}[n%2]
	})
	st := stateOf(t, c, out.addr())
	if !st.Ejected || st.EjectionReason != "success_rate" {
		t.Fatalf("outlier %+v, want ejected by success_rate", st)
	}
	if st.SuccessRate != 50 {
		t.Errorf("outlier SuccessRate = %v, want 50", st.SuccessRate)
	}
	for _, s := range c.EndpointStates() {
		if s.Address != out.addr() && (s.Ejected || s.SuccessRate != 100) {
			t.Errorf("%s: %+v, want in service at 100%%", s.Address, s)
		}
	}
	od := c.Stats().OutlierDetection
	if od.DetectedSuccessRate != 1 || od.EnforcedSuccessRate != 1 || od.EjectionsSuccessRate != 1 || od.DetectedConsecutive5xx != 0 {
		t.Errorf("outlier stats %+v, want one success-rate ejection and no consecutive-5xx one", od)
	}
}

func TestSuccessRateNeedsVolume(t *testing.T) {
	c, out := skewed(t, OutlierDetection{SuccessRateRequestVolume: 30, FailurePercentageRequestVolume: 30}, 20,
		func(n int64) int { return []int{200, 500}[n%2] })
	if st := stateOf(t, c, out.addr()); st.Ejected || st.SuccessRate != -1 {
		t.Errorf("outlier %+v, want in service with no success rate below the request volume", st)
	}
}

func TestFailurePercentageEjection(t *testing.T) {
	// 90% failures over the threshold of 85; success-rate detection
	// finds it too but is not enforced here, and consecutive 5xx is off.
	c, out := skewed(t, OutlierDetection{
		Consecutive5xx:                 1000,
		EnforcingSuccessRate:           new(uint32(0)),
		EnforcingFailurePercentage:     new(uint32(100)),
		SuccessRateRequestVolume:       20,
		FailurePercentageRequestVolume: 20,
	}, 20, func(n int64) int {
		if n%10 == 0 {
			return 200
		}
		return 500
	})
	st := stateOf(t, c, out.addr())
	if !st.Ejected || st.EjectionReason != "failure_percentage" {
		t.Fatalf("outlier %+v, want ejected by failure_percentage", st)
	}
	od := c.Stats().OutlierDetection
	if od.DetectedSuccessRate != 1 || od.EnforcedSuccessRate != 0 || od.DetectedFailurePct != 1 || od.EnforcedFailurePct != 1 {
		t.Errorf("outlier stats %+v, want success rate detected only, failure percentage enforced", od)
	}
}

// TestGatewayFailureDetectedNotEnforced: Envoy's default
// enforcing_consecutive_gateway_failure is 0.
func TestGatewayFailureDetectedNotEnforced(t *testing.T) {
	bad := newStatusServer(t, "bad", 502)
	good := newStatusServer(t, "good", 200)
	c, _ := newOutlierCluster(t, OutlierDetection{Consecutive5xx: 100}, bad, good)
	sendCount(t, c, 10)
	applyDetections(c)
	od := c.Stats().OutlierDetection
	if od.DetectedGatewayFailure != 1 || od.EnforcedGatewayFailure != 0 || od.EjectionsActive != 0 {
		t.Errorf("outlier stats %+v, want a gateway failure detected, none enforced", od)
	}
	// Enforced, it ejects.
	c, _ = newOutlierCluster(t, OutlierDetection{Consecutive5xx: 100, EnforcingConsecutiveGatewayFailure: new(uint32(100))}, bad, good)
	sendCount(t, c, 10)
	applyDetections(c)
	if st := stateOf(t, c, bad.addr()); !st.Ejected || st.EjectionReason != "consecutive_gateway_failure" {
		t.Errorf("bad %+v, want ejected for consecutive_gateway_failure", st)
	}
}

// TestLocalOriginFailures: connect failures count as 503s by default and
// apart from 5xx responses when split.
func TestLocalOriginFailures(t *testing.T) {
	good := newStatusServer(t, "good", 200)
	for _, split := range []bool{false, true} {
		dead := closedPort(t)
		c, _ := newOutlierCluster(t, OutlierDetection{SplitExternalLocalOriginErrors: split}, good)
		if err := c.UpdateEndpoints([]Endpoint{{Address: dead}, {Address: good.addr()}}); err != nil {
			t.Fatal(err)
		}
		got := sendCount(t, c, 10)
		applyDetections(c)
		if got["ConnectFailure"] != 5 {
			t.Fatalf("split=%v: %v, want 5 connect failures", split, got)
		}
		st := stateOf(t, c, dead)
		want := "consecutive_5xx"
		if split {
			want = "consecutive_local_origin_failure"
		}
		if !st.Ejected || st.EjectionReason != want {
			t.Errorf("split=%v: dead endpoint %+v, want ejected for %s", split, st, want)
		}
		if st.ErrorRequests != 5 {
			t.Errorf("split=%v: rq_error = %d, want 5", split, st.ErrorRequests)
		}
	}
}

// TestNoOutlierDetection: without the config nothing is ejected and the
// per-endpoint counters still run.
func TestNoOutlierDetection(t *testing.T) {
	bad := newStatusServer(t, "bad", 503)
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: bad.addr()}}})
	sendCount(t, c, 10)
	st := c.EndpointStates()[0]
	if st.Ejected || st.ErrorRequests != 10 || st.SuccessRate != -1 || st.HealthFlags() != "healthy" {
		t.Errorf("state %+v, want 10 errors and no ejection", st)
	}
	if c.hs.started {
		t.Error("control loop started without health checks or outlier detection")
	}
}

// TestOutlierDataPathAllocs: recording a result allocates nothing.
func TestOutlierDataPathAllocs(t *testing.T) {
	d := newOutlierDetector(&OutlierDetection{}, func() {})
	h := &host{addr: "a:1"}
	if n := testing.AllocsPerRun(1000, func() {
		h.recordStatus(d, 200)
		h.recordStatus(d, 503)
		h.recordError(d, ConnectFailure)
	}); n != 0 {
		t.Errorf("allocations per result = %v, want 0", n)
	}
}

func TestOutlierValidate(t *testing.T) {
	tests := []struct {
		od   OutlierDetection
		want string
	}{
		{OutlierDetection{Interval: -1}, "outlier_detection.interval: negative"},
		{OutlierDetection{BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second}, "outlier_detection.max_ejection_time: 1s is shorter than base_ejection_time 1m0s"},
		{OutlierDetection{EnforcingConsecutive5xx: new(uint32(101))}, "outlier_detection.enforcing_consecutive_5xx: 101 over 100"},
		{OutlierDetection{MaxEjectionPercent: new(uint32(200))}, "outlier_detection.max_ejection_percent: 200 over 100"},
		{OutlierDetection{FailurePercentageThreshold: 101}, "outlier_detection.failure_percentage_threshold: 101 over 100"},
	}
	for _, tt := range tests {
		cfg := Config{Name: "c", OutlierDetection: &tt.od}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want %q", err, tt.want)
		}
	}
	// A long base ejection time raises the default cap with it.
	d := newOutlierDetector(&OutlierDetection{BaseEjectionTime: 10 * time.Minute}, func() {})
	if d.cfg.maxTime != 10*time.Minute {
		t.Errorf("max ejection time = %v, want the base 10m", d.cfg.maxTime)
	}
}
