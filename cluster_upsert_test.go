package portico

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/health"
	"github.com/porticoproxy/portico/lb"
)

// upsertOrigin is an HTTP/1.1 origin answering status with its name
// and counting the connections it accepted.
type upsertOrigin struct {
	addr  string
	conns atomic.Int32
	rqs   atomic.Int32
}

func startUpsertOrigin(t *testing.T, name string, status int) *upsertOrigin {
	t.Helper()
	o := &upsertOrigin{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o.rqs.Add(1)
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(status)
			io.WriteString(w, name)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				o.conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	o.addr = ln.Addr().String()
	return o
}

// upsertProbes counts active health checks per endpoint.
type upsertProbes struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *upsertProbes) check(_ context.Context, addr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		p.n = map[string]int{}
	}
	p.n[addr]++
	return nil
}

func (p *upsertProbes) of(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[addr]
}

func upsertPassThrough(next http.RoundTripper) http.RoundTripper { return next }

func upsertEndpointState(t *testing.T, c *cluster.Cluster, addr string) cluster.EndpointState {
	t.Helper()
	for _, s := range c.EndpointStates() {
		if s.Address == addr {
			return s
		}
	}
	t.Fatalf("cluster %s has no endpoint %s", c.Name(), addr)
	return cluster.EndpointState{}
}

func upsertEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpsertClusterEndpointsInPlace: UpsertCluster with the same
// configuration and one more endpoint updates the live cluster: its
// pooled connection to the kept endpoint serves the next requests, the
// kept endpoints are not health-checked anew and an outlier ejection
// stays; /clusters shows the new endpoint. A changed timeout builds a new
// cluster, which connects anew.
func TestUpsertClusterEndpointsInPlace(t *testing.T) {
	a := startUpsertOrigin(t, "a", http.StatusOK)
	bad := startUpsertOrigin(t, "bad", http.StatusServiceUnavailable)
	c := startUpsertOrigin(t, "c", http.StatusOK)
	var hc upsertProbes
	checker := health.CheckerFunc(hc.check) // one func value, passed again below
	config := func(eps ...*upsertOrigin) cluster.Config {
		cfg := cluster.Config{
			Name:             "app",
			Balancer:         lb.NewRoundRobin,
			OutlierDetection: &cluster.OutlierDetection{Consecutive5xx: 3, Interval: time.Hour, BaseEjectionTime: time.Hour},
			HealthChecks:     []health.Config{{Checker: checker, Interval: time.Hour, NoTrafficInterval: time.Hour}},
			Middleware:       []func(http.RoundTripper) http.RoundTripper{upsertPassThrough},
		}
		for _, o := range eps {
			cfg.Endpoints = append(cfg.Endpoints, cluster.Endpoint{Address: o.addr})
		}
		return cfg
	}
	gcfg := simpleConfig(a.addr)
	gcfg.Clusters[0] = config(a, bad)
	g, addr := startGateway(t, gcfg, Options{Admin: "-"})
	first := g.Cluster("app")
	upsertEventually(t, "the first health checks", func() bool {
		for _, ep := range []string{a.addr, bad.addr} {
			if s := upsertEndpointState(t, first, ep); len(s.Checks) != 1 || s.Checks[0].Status != health.Healthy {
				return false
			}
		}
		return true
	})
	for i := 0; !upsertEndpointState(t, first, bad.addr).Ejected; i++ {
		if i == 20 {
			t.Fatal("bad was not ejected after 20 requests")
		}
		get(t, addr, "/")
	}
	aConns, aTotal := a.conns.Load(), upsertEndpointState(t, first, a.addr).TotalRequests
	if aConns != 1 {
		t.Fatalf("a accepted %d connections, want 1 pooled", aConns)
	}

	// Same configuration, built anew, and one more endpoint.
	if err := g.UpsertCluster(config(a, bad, c)); err != nil {
		t.Fatal(err)
	}
	if g.Cluster("app") != first {
		t.Fatal("UpsertCluster with one more endpoint replaced the cluster")
	}
	upsertEventually(t, "c's first health check", func() bool { return hc.of(c.addr) == 1 })
	if na, nb := hc.of(a.addr), hc.of(bad.addr); na != 1 || nb != 1 {
		t.Errorf("kept endpoints were health-checked %d (a) and %d (bad) times, want once each", na, nb)
	}
	if s := upsertEndpointState(t, first, bad.addr); !s.Ejected || s.Ejections != 1 {
		t.Errorf("bad: ejected %v, %d ejections; want still ejected, once", s.Ejected, s.Ejections)
	}
	if s := upsertEndpointState(t, first, a.addr); s.TotalRequests != aTotal {
		t.Errorf("a: rq_total %d, want %d kept", s.TotalRequests, aTotal)
	}
	bodies := map[string]int{}
	for range 6 {
		r := get(t, addr, "/")
		bodies[r.body]++
	}
	if bodies["a"] != 3 || bodies["c"] != 3 {
		t.Errorf("got responses %v, want 3 from a and 3 from c (bad stays ejected)", bodies)
	}
	if n := a.conns.Load(); n != aConns {
		t.Errorf("a accepted %d connections, want %d: the pool was dropped", n, aConns)
	}
	rec := httptest.NewRecorder()
	g.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/clusters", nil))
	for _, want := range []string{
		"app::" + c.addr + "::rq_total::3\n",
		"app::" + bad.addr + "::health_flags::/failed_outlier_check\n",
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/clusters lacks %q:\n%s", want, rec.Body)
		}
	}

	// A changed timeout is a new cluster.
	changed := config(a, bad, c)
	changed.ConnectTimeout = 2 * time.Second
	if err := g.UpsertCluster(changed); err != nil {
		t.Fatal(err)
	}
	second := g.Cluster("app")
	if second == first {
		t.Fatal("UpsertCluster with a new connect timeout kept the cluster")
	}
	if s := upsertEndpointState(t, second, bad.addr); s.Ejected || s.Ejections != 0 {
		t.Errorf("new cluster: bad ejected %v, %d ejections; want a fresh state", s.Ejected, s.Ejections)
	}
	aRqs := a.rqs.Load()
	for a.rqs.Load() == aRqs {
		get(t, addr, "/")
	}
	if n := a.conns.Load(); n != aConns+1 {
		t.Errorf("a accepted %d connections, want %d: the new cluster connects anew", n, aConns+1)
	}
}

// TestUpsertClustersEndpointsInPlace: the batch update (discovery) takes
// the same fast path.
func TestUpsertClustersEndpointsInPlace(t *testing.T) {
	a := startUpsertOrigin(t, "a", http.StatusOK)
	b := startUpsertOrigin(t, "b", http.StatusOK)
	g, addr := startGateway(t, simpleConfig(a.addr), Options{Admin: "-"})
	first := g.Cluster("app")
	get(t, addr, "/")
	cfg := cluster.Config{Name: "app", Endpoints: []cluster.Endpoint{{Address: a.addr}, {Address: b.addr}}}
	if err := g.UpsertClusters([]cluster.Config{cfg, {Name: "other", Endpoints: []cluster.Endpoint{{Address: b.addr}}}}); err != nil {
		t.Fatal(err)
	}
	if g.Cluster("app") != first {
		t.Fatal("UpsertClusters with one more endpoint replaced the cluster")
	}
	if g.Cluster("other") == nil {
		t.Fatal("UpsertClusters did not add cluster other")
	}
	if got := len(first.Endpoints()); got != 2 {
		t.Errorf("got %d endpoints, want 2", got)
	}
	for a.rqs.Load() < 2 {
		get(t, addr, "/")
	}
	if n := a.conns.Load(); n != 1 {
		t.Errorf("a accepted %d connections, want 1: the pool was dropped", n)
	}
}

// Values for TestSameCluster.
type upsertValueChecker struct{ f func() error }

func (v upsertValueChecker) Check(context.Context, string) error { return v.f() }

func upsertDialer(tag string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, fmt.Errorf("%s: no dialing here", tag)
	}
}

func upsertMiddleware(tag string) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		if tag == "" {
			return nil
		}
		return next
	}
}

// TestSameCluster checks UpsertCluster's rules for what is a change.
func TestSameCluster(t *testing.T) {
	dialer := upsertDialer("a")
	mw := upsertMiddleware("a")
	httpCheck := &health.HTTP{Path: "/healthz"}
	resolver := &net.Resolver{PreferGo: true}
	checkFn := func() error { return nil }
	u32 := func(v uint32) *uint32 { return &v }
	base := func() cluster.Config {
		return cluster.Config{
			Name:      "app",
			Endpoints: []cluster.Endpoint{{Address: "127.0.0.1:1", Metadata: map[string]string{"k": "v"}}},
			Balancer:  lb.NewRoundRobin,
			Dialer:    dialer,
			Resolver:  resolver,
			TLS: &cluster.TLSConfig{
				ServerName:           "app.example",
				RootCAs:              []byte("pem"),
				MatchSubjectAltNames: []cluster.SANMatcher{{Exact: "spiffe://app"}},
			},
			OutlierDetection: &cluster.OutlierDetection{Consecutive5xx: 3, MaxEjectionPercent: u32(20)},
			HealthChecks: []health.Config{
				{Checker: httpCheck, Interval: time.Second},
				{Checker: &health.TCP{Send: []byte("ping")}},
				{Checker: upsertValueChecker{checkFn}},
			},
			Middleware: []func(http.RoundTripper) http.RoundTripper{mw, upsertPassThrough},
		}
	}
	for _, tc := range []struct {
		name string
		same bool
		edit func(*cluster.Config)
	}{
		{"identical", true, func(*cluster.Config) {}},
		{"endpoints only", true, func(c *cluster.Config) {
			c.Endpoints = append(c.Endpoints, cluster.Endpoint{Address: "127.0.0.1:2"})
		}},
		{"new slices and pointers to equal data", true, func(c *cluster.Config) {
			tls := *c.TLS
			tls.RootCAs = []byte("pem")
			c.TLS = &tls
			c.OutlierDetection = &cluster.OutlierDetection{Consecutive5xx: 3, MaxEjectionPercent: u32(20)}
			c.HealthChecks = []health.Config{
				{Checker: httpCheck, Interval: time.Second},
				{Checker: &health.TCP{Send: []byte("ping")}},
				{Checker: upsertValueChecker{checkFn}},
			}
			c.Middleware = []func(http.RoundTripper) http.RoundTripper{mw, upsertPassThrough}
		}},
		{"nil and empty alike", true, func(c *cluster.Config) {
			c.TLS.MatchSubjectAltNames = append([]cluster.SANMatcher{}, c.TLS.MatchSubjectAltNames...)
			c.HealthChecks[1].Checker = &health.TCP{Send: []byte("ping"), Expect: []byte{}}
		}},
		{"connect timeout", false, func(c *cluster.Config) { c.ConnectTimeout = time.Second }},
		{"explicit default", false, func(c *cluster.Config) { c.ConnectTimeout = cluster.DefaultConnectTimeout }},
		{"type", false, func(c *cluster.Config) { c.Type = cluster.StrictDNS }},
		{"balancer", false, func(c *cluster.Config) { c.Balancer = lb.NewRandom }},
		{"dialer re-created", false, func(c *cluster.Config) { c.Dialer = upsertDialer("a") }},
		{"dialer from one literal, other capture", false, func(c *cluster.Config) { c.Dialer = upsertDialer("b") }},
		{"middleware re-created", false, func(c *cluster.Config) {
			c.Middleware = []func(http.RoundTripper) http.RoundTripper{upsertMiddleware("a"), upsertPassThrough}
		}},
		{"middleware order", false, func(c *cluster.Config) {
			c.Middleware = []func(http.RoundTripper) http.RoundTripper{upsertPassThrough, mw}
		}},
		{"middleware removed", false, func(c *cluster.Config) { c.Middleware = c.Middleware[:1] }},
		{"tls server name", false, func(c *cluster.Config) { c.TLS.ServerName = "other.example" }},
		{"tls san", false, func(c *cluster.Config) { c.TLS.MatchSubjectAltNames[0].Exact = "spiffe://other" }},
		{"outlier percent behind a pointer", false, func(c *cluster.Config) { *c.OutlierDetection.MaxEjectionPercent = 30 }},
		{"health interval", false, func(c *cluster.Config) { c.HealthChecks[0].Interval = 2 * time.Second }},
		{"health on-check added", false, func(c *cluster.Config) { c.HealthChecks[0].OnCheck = func(health.Event) {} }},
		{"stateful checker anew, same fields", false, func(c *cluster.Config) {
			c.HealthChecks[0].Checker = &health.HTTP{Path: "/healthz"}
		}},
		{"plain-data checker changed", false, func(c *cluster.Config) {
			c.HealthChecks[1].Checker = &health.TCP{Send: []byte("pong")}
		}},
		{"value checker's unexported func", false, func(c *cluster.Config) {
			c.HealthChecks[2].Checker = upsertValueChecker{func() error { return nil }}
		}},
		{"resolver anew, same fields", false, func(c *cluster.Config) { c.Resolver = &net.Resolver{PreferGo: true} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			given := givenCluster(base())
			cfg := base()
			tc.edit(&cfg)
			if got := sameCluster(given, cfg); got != tc.same {
				t.Errorf("sameCluster = %v, want %v", got, tc.same)
			}
		})
	}

	t.Run("EDS endpoints change in place", func(t *testing.T) {
		eds := base()
		eds.Type = cluster.EDS
		given := givenCluster(eds)
		eds.Endpoints = nil
		if !sameCluster(given, eds) {
			t.Error("an EDS endpoint change counts as a configuration change")
		}
	})

	t.Run("DNS endpoints are configuration", func(t *testing.T) {
		dns := base()
		dns.Type = cluster.StrictDNS
		given := givenCluster(dns)
		if !sameCluster(given, dns) {
			t.Error("an unchanged StrictDNS configuration differs")
		}
		dns.Endpoints = append(dns.Endpoints, cluster.Endpoint{Address: "127.0.0.1:2"})
		if sameCluster(given, dns) {
			t.Error("a StrictDNS endpoint change counts as endpoints only")
		}
	})

	t.Run("the copy is the gateway's own", func(t *testing.T) {
		cfg := base()
		given := givenCluster(cfg)
		cfg.TLS.ServerName = "changed.example"
		cfg.TLS.RootCAs[0] = 'P'
		*cfg.OutlierDetection.MaxEjectionPercent = 99
		cfg.HealthChecks[0].Interval = time.Hour
		cfg.Middleware[0] = upsertPassThrough
		cfg.HealthChecks[1].Checker.(*health.TCP).Send[0] = 'P'
		if !sameCluster(given, base()) {
			t.Error("changing the caller's configuration after the fact changed the gateway's copy")
		}
	})
}
