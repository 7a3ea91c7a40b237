package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/porticoproxy/portico/health"
)

// hcServer answers /healthz with 200 while healthy, 503 otherwise, with
// x-envoy-degraded while degraded, and every other path with its name.
type hcServer struct {
	*httptest.Server
	name     string
	healthy  atomic.Bool
	degraded atomic.Bool
	data     atomic.Int32 // status for data requests; 0 means 200
}

func newHCServer(t *testing.T, name string) *hcServer {
	s := &hcServer{name: name}
	s.healthy.Store(true)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if s.degraded.Load() {
				w.Header().Set("X-Envoy-Degraded", "true")
			}
			if !s.healthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		if code := s.data.Load(); code != 0 {
			w.WriteHeader(int(code))
		}
		io.WriteString(w, s.name)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *hcServer) addr() string { return strings.TrimPrefix(s.URL, "http://") }

// fastCheck is a check at a pace that keeps wall-clock tests short.
func fastCheck(c health.Checker) health.Config {
	return health.Config{
		Checker:            c,
		Interval:           5 * time.Millisecond,
		NoTrafficInterval:  5 * time.Millisecond,
		Timeout:            2 * time.Second,
		UnhealthyThreshold: 2,
		HealthyThreshold:   2,
	}
}

func waitFlags(t *testing.T, c *Cluster, addr, want string) EndpointState {
	t.Helper()
	var st EndpointState
	eventually(t, addr+" health_flags "+want, func() bool {
		st = stateOf(t, c, addr)
		return st.HealthFlags() == want
	})
	return st
}

func TestHTTPHealthCheckRotation(t *testing.T) {
	a, b := newHCServer(t, "a"), newHCServer(t, "b")
	c := newTestCluster(t, Config{
		Endpoints:    []Endpoint{{Address: a.addr()}, {Address: b.addr()}},
		HealthChecks: []health.Config{fastCheck(&health.HTTP{Path: "/healthz"})},
	})
	waitFlags(t, c, a.addr(), "healthy")
	waitFlags(t, c, b.addr(), "healthy")
	if got := sendCount(t, c, 4); got["a"] != 2 || got["b"] != 2 {
		t.Fatalf("both healthy: %v, want 2 and 2", got)
	}

	a.healthy.Store(false)
	st := waitFlags(t, c, a.addr(), "/failed_active_hc")
	if st.Healthy || st.Checks[0].Check != "http" || st.Checks[0].Status != health.Unhealthy || st.Checks[0].Failures < 2 {
		t.Errorf("failing endpoint %+v, want out of rotation after 2 failed http checks", st)
	}
	if got := sendCount(t, c, 10); got["b"] != 10 {
		t.Errorf("a failing: %v, want all 10 on b", got)
	}
	if s := c.Stats(); s.HealthCheck.Healthy != 1 || s.MembershipHealthy != 1 || s.MembershipTotal != 2 {
		t.Errorf("stats %+v, want 1 of 2 healthy", s)
	}

	a.healthy.Store(true)
	st = waitFlags(t, c, a.addr(), "healthy")
	if st.Checks[0].Successes < 2 {
		t.Errorf("returned after %d passing checks, want the healthy threshold 2", st.Checks[0].Successes)
	}
	if got := sendCount(t, c, 4); got["a"] != 2 || got["b"] != 2 {
		t.Errorf("a back: %v, want 2 and 2", got)
	}
	hc := c.Stats().HealthCheck
	if hc.Attempt == 0 || hc.Success == 0 || hc.Failure < 2 || hc.NetworkFailure != 0 || hc.Attempt != hc.Success+hc.Failure {
		t.Errorf("health_check stats %+v, want attempts = successes + failures, 2+ failures, none network", hc)
	}
}

func TestTCPHealthCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 4)
				if _, err := io.ReadFull(conn, buf); err == nil && string(buf) == "PING" {
					conn.Write([]byte("+PONG\r\n"))
				}
			}()
		}
	})
	addr := ln.Addr().String()
	c := newTestCluster(t, Config{
		Endpoints:    []Endpoint{{Address: addr}},
		HealthChecks: []health.Config{fastCheck(&health.TCP{Send: []byte("PING"), Expect: []byte("PONG")})},
	})
	waitFlags(t, c, addr, "healthy")
	ln.Close()
	wg.Wait()
	st := waitFlags(t, c, addr, "/failed_active_hc")
	if st.Checks[0].Check != "tcp" {
		t.Errorf("check %q, want tcp", st.Checks[0].Check)
	}
	if hc := c.Stats().HealthCheck; hc.NetworkFailure < 2 || hc.Failure < hc.NetworkFailure {
		t.Errorf("health_check stats %+v, want refused connections counted as network failures", hc)
	}
}

func TestGRPCHealthCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	addr := ln.Addr().String()

	c := newTestCluster(t, Config{
		Protocol:     HTTP2,
		Endpoints:    []Endpoint{{Address: addr}},
		HealthChecks: []health.Config{fastCheck(&health.GRPC{Service: "api"})},
	})
	waitFlags(t, c, addr, "healthy")
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_NOT_SERVING)
	st := waitFlags(t, c, addr, "/failed_active_hc")
	if st.Checks[0].Check != "grpc" || !strings.Contains(st.Checks[0].LastError.Error(), "NOT_SERVING") {
		t.Errorf("check %+v, want a grpc check failing with NOT_SERVING", st.Checks[0])
	}
	if hc := c.Stats().HealthCheck; hc.Failure < 2 || hc.NetworkFailure != 0 {
		t.Errorf("health_check stats %+v, want NOT_SERVING counted as failure, not network failure", hc)
	}
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	waitFlags(t, c, addr, "healthy")
}

// checkScript is a deterministic checker: address fails while its entry in
// plan, consumed one result per check, says so; past the plan it passes.
type checkScript struct {
	mu    sync.Mutex
	plan  map[string][]bool // true = fail
	calls map[string]int
}

func (s *checkScript) Check(ctx context.Context, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[addr]++
	p := s.plan[addr]
	if len(p) == 0 {
		return nil
	}
	s.plan[addr] = p[1:]
	if p[0] {
		return errors.New("scripted failure")
	}
	return nil
}

func (s *checkScript) count(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[addr]
}

// TestHealthCheckFlapping follows an endpoint through Envoy's thresholds
// on a fake clock: isolated failures never take it out, two in a row do,
// and it returns after two passes in a row.
func TestHealthCheckFlapping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const a, b = "10.0.0.1:80", "10.0.0.2:80"
		// Check results of a, one per second from t=0.
		s := &checkScript{calls: map[string]int{}, plan: map[string][]bool{a: {
			false,             // t=0  first check passes: Healthy
			true, false, true, // flapping, never two failures in a row
			false, true, true, // t=6  second failure in a row: Unhealthy
			false, true, false, // t=9  one pass is not enough
			false, // t=10 second pass in a row: Healthy
		}}}
		c, err := New(Config{
			Name:      "flap",
			Endpoints: []Endpoint{{Address: a}, {Address: b}},
			HealthChecks: []health.Config{{
				Checker: s, Interval: time.Second, NoTrafficInterval: time.Second,
				UnhealthyThreshold: 2, HealthyThreshold: 2,
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var got []string
		for range 11 {
			synctest.Wait()
			got = append(got, stateOf(t, c, a).HealthFlags())
			time.Sleep(time.Second)
		}
		want := []string{
			"healthy", "healthy", "healthy", "healthy", "healthy", "healthy",
			"/failed_active_hc", "/failed_active_hc", "/failed_active_hc", "/failed_active_hc",
			"healthy",
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("flags per second:\n got %v\nwant %v", got, want)
		}
		if h := c.Stats().MembershipHealthy; h != 2 {
			t.Errorf("membership_healthy = %d at the end, want 2", h)
		}
	})
}

// TestRemovedEndpointsStopChecks: UpdateEndpoints stops and joins the
// checks of removed endpoints, starts those of added ones, and Close
// stops the rest.
func TestRemovedEndpointsStopChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &checkScript{calls: map[string]int{}, plan: map[string][]bool{}}
		eps := []Endpoint{{Address: "10.0.0.1:80"}, {Address: "10.0.0.2:80"}, {Address: "10.0.0.3:80"}}
		before := runtime.NumGoroutine()
		c, err := New(Config{
			Name:      "removal",
			Endpoints: eps,
			HealthChecks: []health.Config{
				{Checker: s, Interval: time.Second, NoTrafficInterval: time.Second},
				{Checker: s, Interval: time.Second, NoTrafficInterval: time.Second},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		// Two checks for each of three endpoints, plus the control loop.
		if n := runtime.NumGoroutine() - before; n != 7 {
			t.Errorf("goroutines after New = %d, want 7", n)
		}
		if err := c.UpdateEndpoints([]Endpoint{eps[0], {Address: "10.0.0.4:80"}}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		removed := s.count(eps[1].Address) + s.count(eps[2].Address)
		kept := s.count(eps[0].Address)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := s.count(eps[1].Address) + s.count(eps[2].Address); got != removed {
			t.Errorf("removed endpoints checked %d more times", got-removed)
		}
		if got := s.count(eps[0].Address); got != kept+20 {
			t.Errorf("kept endpoint checked %d times in 10s, want 20 (two checks)", got-kept)
		}
		if got := s.count("10.0.0.4:80"); got != 22 {
			t.Errorf("added endpoint checked %d times, want 22", got)
		}
		if n := runtime.NumGoroutine() - before; n != 5 {
			t.Errorf("goroutines after removing two endpoints = %d, want 5", n)
		}
		c.Close()
		if n := runtime.NumGoroutine() - before; n != 0 {
			t.Errorf("goroutines after Close = %d, want 0", n)
		}
		c.Close() // idempotent
	})
}

// TestNewHostsAwaitFirstCheck: endpoints start failed_active_hc; a new
// cluster whose endpoints all await their first check spreads traffic
// over all of them (panic mode), and a failing first check takes an
// endpoint out at once.
func TestNewHostsAwaitFirstCheck(t *testing.T) {
	a, b := newHCServer(t, "a"), newHCServer(t, "b")
	b.healthy.Store(false)
	release := make(chan struct{})
	gate := health.CheckerFunc(func(ctx context.Context, addr string) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return (&health.HTTP{Path: "/healthz"}).Check(ctx, addr)
	})
	hc := fastCheck(gate)
	hc.HealthyThreshold = 1
	c := newTestCluster(t, Config{
		Endpoints:    []Endpoint{{Address: a.addr()}, {Address: b.addr()}},
		HealthChecks: []health.Config{hc},
	})
	for _, st := range c.EndpointStates() {
		if st.HealthFlags() != "/failed_active_hc" || st.Checks[0].Status != health.Unknown || st.Healthy {
			t.Errorf("%s before its first check: %+v, want failed_active_hc, Unknown", st.Address, st)
		}
	}
	if got := sendCount(t, c, 4); got["a"] != 2 || got["b"] != 2 {
		t.Errorf("awaiting first checks: %v, want 2 and 2 (panic mode)", got)
	}
	close(release)
	waitFlags(t, c, a.addr(), "healthy")
	waitFlags(t, c, b.addr(), "/failed_active_hc")
	if got := sendCount(t, c, 4); got["a"] != 4 {
		t.Errorf("after first checks: %v, want all 4 on a", got)
	}
}

// TestHealthCheckUnejects: a passing active check returns an
// outlier-ejected endpoint, unless configured otherwise.
func TestHealthCheckUnejects(t *testing.T) {
	for _, uneject := range []bool{true, false} {
		a, b := newHCServer(t, "a"), newHCServer(t, "b")
		a.data.Store(503)
		c := newTestCluster(t, Config{
			Endpoints:    []Endpoint{{Address: a.addr()}, {Address: b.addr()}},
			HealthChecks: []health.Config{fastCheck(&health.HTTP{Path: "/healthz"})},
			OutlierDetection: &OutlierDetection{
				Interval:                               time.Hour,
				SuccessfulActiveHealthCheckUnejectHost: &uneject,
			},
		})
		waitFlags(t, c, a.addr(), "healthy")
		waitFlags(t, c, b.addr(), "healthy")
		for i := 0; i < 20 && stateOf(t, c, a.addr()).Ejections == 0; i++ {
			sendCount(t, c, 2)
			applyDetections(c)
		}
		if uneject {
			st := waitFlags(t, c, a.addr(), "healthy")
			if st.Ejections != 1 {
				t.Errorf("ejections = %d, want 1", st.Ejections)
			}
			continue
		}
		n := c.Stats().HealthCheck.Attempt
		eventually(t, "more checks", func() bool { return c.Stats().HealthCheck.Attempt >= n+6 })
		if st := stateOf(t, c, a.addr()); !st.Ejected || st.HealthFlags() != "/failed_outlier_check" {
			t.Errorf("uneject off: %+v, want still ejected", st)
		}
	}
}

func TestEndpointStateHealthFlags(t *testing.T) {
	hcOK := health.EndpointStatus{Status: health.Healthy}
	hcBad := health.EndpointStatus{Status: health.Unhealthy}
	hcTimeout := health.EndpointStatus{Status: health.Unhealthy, TimedOut: true}
	hcDegraded := health.EndpointStatus{Status: health.Healthy, Degraded: true}
	hcBadDegraded := health.EndpointStatus{Status: health.Unhealthy, Degraded: true}
	tests := []struct {
		st   EndpointState
		want string
	}{
		{EndpointState{}, "healthy"},
		{EndpointState{Health: Healthy, Checks: []health.EndpointStatus{hcOK, hcOK}}, "healthy"},
		{EndpointState{Checks: []health.EndpointStatus{hcOK, hcBad}}, "/failed_active_hc"},
		{EndpointState{Checks: []health.EndpointStatus{{}}}, "/failed_active_hc"},
		{EndpointState{Ejected: true}, "/failed_outlier_check"},
		{EndpointState{Health: Unhealthy, Ejected: true, Checks: []health.EndpointStatus{hcBad}}, "/failed_active_hc/failed_outlier_check/failed_eds_health"},
		{EndpointState{Health: HealthCheckTimeout}, "/failed_eds_health"},
		{EndpointState{Health: Degraded}, "/degraded_eds_health"},
		{EndpointState{Checks: []health.EndpointStatus{hcOK, hcDegraded}}, "/degraded_active_hc"},
		// Envoy keeps degraded_active_hc while the check fails.
		{EndpointState{Checks: []health.EndpointStatus{hcBadDegraded}}, "/failed_active_hc/degraded_active_hc"},
		{EndpointState{Health: Degraded, Ejected: true, Checks: []health.EndpointStatus{hcDegraded}}, "/failed_outlier_check/degraded_active_hc/degraded_eds_health"},
		{EndpointState{Health: Unhealthy, Checks: []health.EndpointStatus{hcDegraded}}, "/failed_eds_health/degraded_active_hc"},
		{EndpointState{Health: Draining, Checks: []health.EndpointStatus{hcTimeout}}, "/failed_active_hc/active_hc_timeout/eds_status_draining"},
	}
	for _, tt := range tests {
		if got := tt.st.HealthFlags(); got != tt.want {
			t.Errorf("HealthFlags(%+v) = %q, want %q", tt.st, got, tt.want)
		}
	}
}

// TestEndpointStatesDiscovery: discovery fields and health come through,
// and an endpoint unhealthy by discovery is flagged and skipped.
func TestEndpointStatesDiscovery(t *testing.T) {
	a, b := newStatusServer(t, "a", 200), newStatusServer(t, "b", 200)
	c := newTestCluster(t, Config{Endpoints: []Endpoint{
		{Address: a.addr(), Weight: 3, Priority: 0, Locality: "us-east/1a"},
		{Address: b.addr(), Health: Unhealthy},
	}})
	if got := sendCount(t, c, 4); got["a"] != 4 {
		t.Errorf("%v, want all on a", got)
	}
	es := c.EndpointStates()
	if len(es) != 2 || es[0].Address != a.addr() || es[0].Weight != 3 || es[0].Locality != "us-east/1a" || !es[0].Healthy ||
		es[0].TotalRequests != 4 || es[0].SuccessRequests != 4 {
		t.Errorf("a: %+v", es[0])
	}
	if es[1].Weight != 1 || es[1].Healthy || es[1].HealthFlags() != "/failed_eds_health" || len(es[1].Checks) != 0 {
		t.Errorf("b: %+v, want weight 1, failed_eds_health", es[1])
	}
}

func TestHealthCheckValidate(t *testing.T) {
	cfg := Config{Name: "c", HealthChecks: []health.Config{
		{Checker: &health.TCP{}},
		{Checker: &health.HTTP{Path: "nope"}},
	}}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "health_checks[1]: ") || !strings.Contains(err.Error(), "HTTP.Path") {
		t.Errorf("Validate() = %v, want health_checks[1] naming HTTP.Path", err)
	}
	if _, err := New(cfg); err == nil {
		t.Error("New accepted an invalid health check")
	}
}
