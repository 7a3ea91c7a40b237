package cluster

import (
	"testing"

	"github.com/porticoproxy/portico/health"
	"github.com/porticoproxy/portico/lb"
)

// degradedBalancer is round robin with options under which the tests'
// expectations are exact results of Envoy's priority load, not shares.
// With Envoy's defaults, two healthy endpoints of three are 2/3 × 1.4 =
// 93 % available, so 7 % of requests go to a degraded third (Envoy does
// the same; TestDegradedEDSDefaults checks it), and one degraded endpoint
// of three (33 %) is below the 50 % panic threshold, so with the other
// two unhealthy the level would be in panic. Overprovisioning 1.5 makes
// two of three 100 % available, so healthy capacity suffices; a 25 %
// panic threshold keeps one usable endpoint of three out of panic.
func degradedBalancer() lb.Balancer {
	panicThreshold := 25.0
	return lb.NewRoundRobinWith(lb.Options{OverprovisioningFactor: 150, PanicThreshold: &panicThreshold})
}

// waitMembership waits until the balancer has been handed a set with the
// given healthy and degraded counts. The gauges are stored under c.mu in
// the same republish that updates the balancer, and EndpointStates takes
// c.mu, so once it returns the new picker is in place.
func waitMembership(t *testing.T, c *Cluster, healthy, degraded uint64) {
	t.Helper()
	eventually(t, "membership", func() bool {
		s := c.Stats()
		return s.MembershipHealthy == healthy && s.MembershipDegraded == degraded
	})
	c.EndpointStates()
}

// TestDegradedActiveHealthCheck: an endpoint whose HTTP health check
// passes with x-envoy-degraded takes no traffic while the healthy ones
// carry it, and all of it once they fail their checks, instead of the
// cluster failing or panicking over every endpoint.
func TestDegradedActiveHealthCheck(t *testing.T) {
	a, b, d := newHCServer(t, "a"), newHCServer(t, "b"), newHCServer(t, "d")
	d.degraded.Store(true)
	c := newTestCluster(t, Config{
		Endpoints:    []Endpoint{{Address: a.addr()}, {Address: b.addr()}, {Address: d.addr()}},
		HealthChecks: []health.Config{fastCheck(&health.HTTP{Path: "/healthz"})},
		Balancer:     degradedBalancer,
	})
	waitMembership(t, c, 2, 1)
	waitFlags(t, c, a.addr(), "healthy")
	waitFlags(t, c, b.addr(), "healthy")
	st := waitFlags(t, c, d.addr(), "/degraded_active_hc")
	if st.Healthy || !st.Degraded || !st.Checks[0].Degraded || st.Checks[0].Status != health.Healthy {
		t.Errorf("degraded endpoint %+v, want Degraded, not Healthy, its check passing and degraded", st)
	}
	if got := sendCount(t, c, 60); got["d"] != 0 || got["a"]+got["b"] != 60 {
		t.Errorf("two healthy, one degraded: %v, want all 60 on a and b", got)
	}

	// The flag follows each passing check, without a status change: the
	// cluster republishes on the flag alone.
	d.degraded.Store(false)
	waitMembership(t, c, 3, 0)
	d.degraded.Store(true)
	waitMembership(t, c, 2, 1)

	a.healthy.Store(false)
	b.healthy.Store(false)
	waitMembership(t, c, 0, 1)
	waitFlags(t, c, a.addr(), "/failed_active_hc")
	waitFlags(t, c, b.addr(), "/failed_active_hc")
	if got := sendCount(t, c, 30); got["d"] != 30 {
		t.Errorf("healthy ones failing: %v, want all 30 on the degraded d", got)
	}

	// A failing check outranks degraded, and the flag stays while it
	// fails, as in Envoy: nothing is usable and the level panics over all
	// three.
	d.healthy.Store(false)
	waitMembership(t, c, 0, 0)
	waitFlags(t, c, d.addr(), "/failed_active_hc/degraded_active_hc")
	if got := sendCount(t, c, 30); got["a"] == 0 || got["b"] == 0 || got["d"] == 0 {
		t.Errorf("all failing: %v, want panic over all three", got)
	}

	// A passing check without the header clears the flag at once (d
	// returns after the healthy threshold of passing checks).
	d.healthy.Store(true)
	d.degraded.Store(false)
	waitMembership(t, c, 1, 0)
	waitFlags(t, c, d.addr(), "healthy")
	if got := sendCount(t, c, 10); got["d"] != 10 {
		t.Errorf("d healthy, a and b failing: %v, want all 10 on d", got)
	}
}

// TestDegradedEDS: the same with the degraded status set by discovery
// (EDS health_status DEGRADED) through UpdateEndpoints.
func TestDegradedEDS(t *testing.T) {
	a, b, d := newStatusServer(t, "a", 200), newStatusServer(t, "b", 200), newStatusServer(t, "d", 200)
	c := newTestCluster(t, Config{
		Endpoints: []Endpoint{{Address: a.addr()}, {Address: b.addr()}, {Address: d.addr(), Health: Degraded}},
		Balancer:  degradedBalancer,
	})
	st := stateOf(t, c, d.addr())
	if st.HealthFlags() != "/degraded_eds_health" || st.Healthy || !st.Degraded {
		t.Errorf("degraded endpoint %+v (flags %q), want Degraded with /degraded_eds_health", st, st.HealthFlags())
	}
	if s := c.Stats(); s.MembershipHealthy != 2 || s.MembershipDegraded != 1 || s.MembershipTotal != 3 {
		t.Errorf("stats %+v, want 2 healthy and 1 degraded of 3", s)
	}
	if got := sendCount(t, c, 60); got["d"] != 0 || got["a"]+got["b"] != 60 {
		t.Errorf("two healthy, one degraded: %v, want all 60 on a and b", got)
	}

	err := c.UpdateEndpoints([]Endpoint{
		{Address: a.addr(), Health: Unhealthy},
		{Address: b.addr(), Health: Unhealthy},
		{Address: d.addr(), Health: Degraded},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sendCount(t, c, 30); got["d"] != 30 {
		t.Errorf("a and b unhealthy: %v, want all 30 on the degraded d", got)
	}
	if s := c.Stats(); s.MembershipHealthy != 0 || s.MembershipDegraded != 1 {
		t.Errorf("stats %+v, want 0 healthy and 1 degraded", s)
	}

	// With d unhealthy too nothing is usable: the level panics over all
	// three.
	err = c.UpdateEndpoints([]Endpoint{
		{Address: a.addr(), Health: Unhealthy},
		{Address: b.addr(), Health: Unhealthy},
		{Address: d.addr(), Health: Unhealthy},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sendCount(t, c, 30); got["a"] == 0 || got["b"] == 0 || got["d"] == 0 {
		t.Errorf("all unhealthy: %v, want panic over all three", got)
	}
}

// TestDegradedEDSDefaults: with Envoy's defaults, two healthy endpoints of
// three are 93 % available (2/3 × 1.4, rounded down), so the degraded
// third takes the remaining 7 %, as in Envoy.
func TestDegradedEDSDefaults(t *testing.T) {
	a, b, d := newStatusServer(t, "a", 200), newStatusServer(t, "b", 200), newStatusServer(t, "d", 200)
	c := newTestCluster(t, Config{
		Endpoints: []Endpoint{{Address: a.addr()}, {Address: b.addr()}, {Address: d.addr(), Health: Degraded}},
	})
	// d's count is binomial(400, 0.07): mean 28, sd 5.1; the bounds are
	// more than 4.5 sd away.
	got := sendCount(t, c, 400)
	if got["d"] < 5 || got["d"] > 55 || got["a"]+got["b"]+got["d"] != 400 {
		t.Errorf("two healthy, one degraded, defaults: %v, want about 28 of 400 on d", got)
	}
}
