package xds

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/internal/testcert"
)

// TestIntegrationColdStartADS: a go-control-plane ADS snapshot (CDS, EDS,
// LDS, RDS) brings an empty gateway to serving a loopback origin, and
// every response is ACKed with its version and nonce.
func TestIntegrationColdStartADS(t *testing.T) {
	cp := newControlPlane(t, true)
	cp.set("1", basic(t, origin(t, "v1")))
	gw := newTestGateway(t)
	runClient(t, gw, cp, ClientConfig{})
	wantBody(t, gw, "ingress", "/", "v1")
	eventually(t, 5*time.Second, func() error { return allAcked(cp) })

	// /config_dump shows the xDS versions and ACKED; the stats count.
	dump := adminJSON(t, gw, "/config_dump")
	for _, f := range []string{"listeners", "route_configs", "clusters", "endpoint_configs"} {
		list, _ := dump[f].([]any)
		if len(list) != 1 {
			t.Errorf("config_dump %s = %v, want one", f, dump[f])
			continue
		}
		m := list[0].(map[string]any)
		if m["version_info"] != "1" || m["client_status"] != "ACKED" {
			t.Errorf("config_dump %s[0]: version_info %v client_status %v, want 1 ACKED", f, m["version_info"], m["client_status"])
		}
	}
	for name, want := range map[string]float64{
		"portico_control_plane_connected_state":                             1,
		"portico_cluster_manager_cds_update_success":                        1,
		"portico_listener_manager_lds_update_success":                       1,
		`portico_http_rds_update_success{portico_rds_route_config="local"}`: 1,
		`portico_cluster_update_success{portico_cluster_name="app"}`:        1,
		"portico_cluster_manager_cds_update_rejected":                       0,
	} {
		if got := metric(t, gw, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// allAcked checks that every SotW response has been ACKed and nothing
// NACKed.
func allAcked(cp *controlPlane) error {
	reqs := cp.sotwRequests()
	for _, r := range reqs {
		if r.GetErrorDetail() != nil {
			return fmt.Errorf("request %v carries error %v", r.GetTypeUrl(), r.GetErrorDetail())
		}
	}
	for _, resp := range cp.sotwResponses() {
		if !slices.ContainsFunc(reqs, func(r *discoveryv3.DiscoveryRequest) bool {
			return r.GetTypeUrl() == resp.GetTypeUrl() && r.GetResponseNonce() == resp.GetNonce() && r.GetVersionInfo() == resp.GetVersionInfo()
		}) {
			return fmt.Errorf("response %s version %s nonce %s not ACKed", resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce())
		}
	}
	return nil
}

// TestIntegrationRouteChange: a new snapshot moves "/" to a new cluster.
func TestIntegrationRouteChange(t *testing.T) {
	cp := newControlPlane(t, true)
	v1, v2 := origin(t, "v1"), origin(t, "v2")
	cp.set("1", basic(t, v1))
	gw := newTestGateway(t)
	runClient(t, gw, cp, ClientConfig{})
	wantBody(t, gw, "ingress", "/", "v1")

	cp.set("2", snapshot{}.
		add(resourcev3.ClusterType, edsCluster("app"), edsCluster("app2")).
		add(resourcev3.EndpointType, cla("app", v1), cla("app2", v2)).
		add(resourcev3.RouteType, routes("local", "/old", "app", "/", "app2")).
		add(resourcev3.ListenerType, httpListener(t, "ingress", 0, "local")))
	wantBody(t, gw, "ingress", "/", "v2")
	wantBody(t, gw, "ingress", "/old", "v1")
}

// TestIntegrationRouteChangeUnderLoad: one snapshot moves the route to a
// new cluster and removes the old one; go-control-plane sends the
// clusters before the routes, and the client keeps the old cluster until
// the route no longer sends to it, so no request fails.
func TestIntegrationRouteChangeUnderLoad(t *testing.T) {
	cp := newControlPlane(t, true)
	cp.set("1", basic(t, origin(t, "v1")))
	gw := newTestGateway(t)
	runClient(t, gw, cp, ClientConfig{})
	wantBody(t, gw, "ingress", "/", "v1")
	l := startLoad(t, gw, "ingress", 4)
	time.Sleep(100 * time.Millisecond)
	cp.set("2", snapshot{}.
		add(resourcev3.ClusterType, edsCluster("app2")).
		add(resourcev3.EndpointType, cla("app2", origin(t, "v2"))).
		add(resourcev3.RouteType, routes("local", "/", "app2")).
		add(resourcev3.ListenerType, httpListener(t, "ingress", 0, "local")))
	wantBody(t, gw, "ingress", "/", "v2")
	eventually(t, 5*time.Second, func() error {
		if gw.Cluster("app") != nil {
			return fmt.Errorf("old cluster still there")
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	l.check(t)
}

// load runs a steady loop of requests until stop, counting failures.
type load struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       chan struct{}
	done       sync.WaitGroup
}

func startLoad(t testing.TB, gw *portico.Gateway, lis string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, body, err := get(gw, lis, "/")
				if err == nil && code != 200 {
					err = fmt.Errorf("status %d: %s", code, body)
				}
				if err != nil {
					l.failed.Add(1)
					l.lastErr.Store(err.Error())
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

func (l *load) check(t testing.TB) {
	t.Helper()
	l.finish()
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed; last: %v", n, n+l.ok.Load(), l.lastErr.Load())
	}
	if l.ok.Load() == 0 {
		t.Error("no request succeeded")
	}
	t.Logf("%d requests", l.ok.Load())
}

// TestIntegrationEndpointChangeUnderLoad: endpoints move between origins
// while a steady loop of requests sees no failure.
func TestIntegrationEndpointChangeUnderLoad(t *testing.T) {
	cp := newControlPlane(t, true)
	a, b := origin(t, "a"), origin(t, "b")
	cp.set("1", basic(t, a))
	gw := newTestGateway(t)
	runClient(t, gw, cp, ClientConfig{})
	wantBody(t, gw, "ingress", "/", "a")

	l := startLoad(t, gw, "ingress", 4)
	for i := 2; i < 12; i++ {
		addr := a
		if i%2 == 0 {
			addr = b
		}
		s := basic(t, addr)
		cp.set(fmt.Sprint(i), s)
		time.Sleep(100 * time.Millisecond)
	}
	wantBody(t, gw, "ingress", "/", "a")
	l.check(t)
}

// TestIntegrationInvalidCluster: a snapshot with an invalid cluster is
// NACKed with an error_detail naming it (seen by the server's
// callbacks), while the old configuration keeps serving; go-control-plane
// resends the rejected version at once after each NACK, and the client
// paces its NACKs instead of spinning; a fixed snapshot is applied.
func TestIntegrationInvalidCluster(t *testing.T) {
	cp := newControlPlane(t, true)
	addr := origin(t, "ok")
	cp.set("1", basic(t, addr))
	gw := newTestGateway(t)
	var nacks atomic.Int32
	runClient(t, gw, cp, ClientConfig{
		OnNACK:      func(NACK) { nacks.Add(1) },
		NACKBackoff: Backoff{Base: 200 * time.Millisecond, Max: time.Second},
	})
	wantBody(t, gw, "ingress", "/", "ok")
	l := startLoad(t, gw, "ingress", 2)

	cp.set("2", basic(t, addr).add(resourcev3.ClusterType, badCluster("bad")).add(resourcev3.EndpointType, cla("bad", addr)))
	var nack *discoveryv3.DiscoveryRequest
	eventually(t, 5*time.Second, func() error {
		for _, r := range cp.sotwRequests() {
			if r.GetTypeUrl() == urlCluster && r.GetErrorDetail() != nil {
				nack = r
				return nil
			}
		}
		return fmt.Errorf("no CDS NACK")
	})
	if nack.GetVersionInfo() != "1" || !strings.Contains(nack.GetErrorDetail().GetMessage(), `cluster "bad"`) ||
		!strings.Contains(nack.GetErrorDetail().GetMessage(), "lrs_server: not supported") {
		t.Errorf("NACK: version %q, error_detail %q; want version 1 and an error naming cluster \"bad\" and the field",
			nack.GetVersionInfo(), nack.GetErrorDetail().GetMessage())
	}
	// No busy spin while go-control-plane resends version 2.
	time.Sleep(2 * time.Second)
	count := 0
	for _, r := range cp.sotwRequests() {
		if r.GetTypeUrl() == urlCluster && r.GetErrorDetail() != nil {
			count++
		}
	}
	if count > 15 {
		t.Errorf("%d CDS NACKs in about 2 s: the client spins", count)
	}
	if n := nacks.Load(); n != 1 {
		t.Errorf("OnNACK called %d times, want 1", n)
	}
	// The old configuration keeps serving; /config_dump and the stats
	// say what was rejected.
	wantBody(t, gw, "ingress", "/", "ok")
	dump := adminJSON(t, gw, "/config_dump?resource=clusters&name_regex=bad")
	configs, _ := dump["configs"].([]any)
	if len(configs) != 1 {
		t.Fatalf("config_dump of cluster bad: %v", dump)
	}
	bad := configs[0].(map[string]any)
	es, _ := bad["error_state"].(map[string]any)
	if bad["client_status"] != "NACKED" || es == nil || es["version_info"] != "2" || !strings.Contains(fmt.Sprint(es["details"]), "lrs_server") {
		t.Errorf("config_dump cluster bad = %v, want NACKED with an error_state of version 2", bad)
	}
	if got := metric(t, gw, "portico_cluster_manager_cds_update_rejected"); got < 1 {
		t.Errorf("cds update_rejected = %v, want ≥ 1", got)
	}

	// A fixed snapshot is taken.
	fixed := basic(t, addr).add(resourcev3.ClusterType, edsCluster("bad")).add(resourcev3.EndpointType, cla("bad", addr))
	cp.set("3", fixed)
	eventually(t, 5*time.Second, func() error {
		if gw.Cluster("bad") == nil {
			return fmt.Errorf("cluster bad not applied")
		}
		return nil
	})
	l.check(t)
}

// TestIntegrationControlPlaneRestart: the management server goes away and
// comes back on the same port; traffic is unaffected, and the client
// re-subscribes with the versions it had.
func TestIntegrationControlPlaneRestart(t *testing.T) {
	cp := newControlPlane(t, true)
	cp.set("1", basic(t, origin(t, "v1")))
	gw := newTestGateway(t)
	runClient(t, gw, cp, ClientConfig{})
	wantBody(t, gw, "ingress", "/", "v1")
	eventually(t, 5*time.Second, func() error { return allAcked(cp) })
	before := len(cp.sotwRequests())
	updated := lastUpdated(t, gw)

	l := startLoad(t, gw, "ingress", 2)
	cp.Stop()
	eventually(t, 5*time.Second, func() error {
		if metric(t, gw, "portico_control_plane_connected_state") != 0 {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	cp.Start()
	eventually(t, 10*time.Second, func() error {
		if metric(t, gw, "portico_control_plane_connected_state") != 1 {
			return fmt.Errorf("not reconnected")
		}
		return allAcked(cp)
	})
	time.Sleep(200 * time.Millisecond)
	l.check(t)

	// The new stream's first request of each type carries the version
	// ACKed before, and no nonce.
	first := map[string]*discoveryv3.DiscoveryRequest{}
	for _, r := range cp.sotwRequests()[before:] {
		if first[r.GetTypeUrl()] == nil {
			first[r.GetTypeUrl()] = r
		}
	}
	for _, url := range []string{urlCluster, urlEndpoints, urlListener, urlRoute} {
		r := first[url]
		if r == nil {
			t.Errorf("no %s request after the restart", url)
			continue
		}
		if r.GetVersionInfo() != "1" || r.GetResponseNonce() != "" {
			t.Errorf("first %s request after the restart: version %q nonce %q, want 1 and none", url, r.GetVersionInfo(), r.GetResponseNonce())
		}
	}
	// go-control-plane resent version 1 (it forgets what a stream had);
	// identical resources were not applied again.
	if got := lastUpdated(t, gw); got != updated {
		t.Errorf("last_updated changed across the restart: %v, was %v", got, updated)
	}
}

// lastUpdated returns the last_updated of every resource in /config_dump.
func lastUpdated(t testing.TB, gw *portico.Gateway) string {
	dump := adminJSON(t, gw, "/config_dump?mask=name,last_updated")
	return fmt.Sprint(dump["listeners"], dump["route_configs"], dump["clusters"])
}

// TestIntegrationDeltaReconnect: delta ADS cold start; after a restart of
// the management server the client sends initial_resource_versions and
// the server sends nothing it already has; a change sends only the
// changed resource.
func TestIntegrationDeltaReconnect(t *testing.T) {
	cp := newControlPlane(t, false)
	a, b := origin(t, "a"), origin(t, "b")
	cp.set("1", basic(t, a))
	gw := newTestGateway(t)
	runClient(t, gw, cp, ClientConfig{Mode: DeltaADS})
	wantBody(t, gw, "ingress", "/", "a")

	// What the server sent, by name and version.
	sent := map[string]string{}
	for _, r := range cp.deltaResponses() {
		for _, res := range r.GetResources() {
			sent[typeName(r.GetTypeUrl(), res.GetName())] = res.GetVersion()
		}
	}
	if len(sent) != 4 {
		t.Fatalf("server sent %v, want the 4 resources", sent)
	}
	eventually(t, 5*time.Second, func() error { return deltaAcked(cp) })

	nReq, nRes := len(cp.deltaRequests()), len(cp.deltaResponses())
	cp.Stop()
	time.Sleep(200 * time.Millisecond)
	cp.Start()
	eventually(t, 10*time.Second, func() error {
		if metric(t, gw, "portico_control_plane_connected_state") != 1 {
			return fmt.Errorf("not reconnected")
		}
		if n := len(cp.deltaRequests()) - nReq; n < 4 {
			return fmt.Errorf("%d requests after the restart", n)
		}
		return nil
	})
	// Every type's first request lists what the client holds.
	got := map[string]string{}
	for _, r := range cp.deltaRequests()[nReq:] {
		for k, v := range r.GetInitialResourceVersions() {
			got[typeName(r.GetTypeUrl(), k)] = v
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Errorf("initial_resource_versions after reconnect = %v, want %v", got, sent)
	}
	time.Sleep(300 * time.Millisecond)
	for _, r := range cp.deltaResponses()[nRes:] {
		if len(r.GetResources()) > 0 {
			t.Errorf("server resent %d unchanged %s resources after reconnect", len(r.GetResources()), r.GetTypeUrl())
		}
	}
	wantBody(t, gw, "ingress", "/", "a")

	// A change of endpoints sends that resource only.
	nRes = len(cp.deltaResponses())
	cp.set("2", basic(t, b))
	wantBody(t, gw, "ingress", "/", "b")
	var names []string
	for _, r := range cp.deltaResponses()[nRes:] {
		for _, res := range r.GetResources() {
			names = append(names, res.GetName())
		}
	}
	if fmt.Sprint(names) != "[app]" || !strings.Contains(fmt.Sprint(cp.deltaResponses()[nRes:]), "ClusterLoadAssignment") {
		t.Errorf("after an endpoint change the server sent %v, want the app ClusterLoadAssignment only", names)
	}
	eventually(t, 5*time.Second, func() error { return deltaAcked(cp) })
}

func typeName(url, name string) string { return url[strings.LastIndex(url, ".")+1:] + "/" + name }

// deltaAcked checks that every delta response was ACKed.
func deltaAcked(cp *controlPlane) error {
	reqs := cp.deltaRequests()
	for _, r := range reqs {
		if r.GetErrorDetail() != nil {
			return fmt.Errorf("delta NACK: %v", r)
		}
	}
	for _, resp := range cp.deltaResponses() {
		if !slices.ContainsFunc(reqs, func(r *discoveryv3.DeltaDiscoveryRequest) bool {
			return r.GetResponseNonce() == resp.GetNonce() && r.GetTypeUrl() == resp.GetTypeUrl()
		}) {
			return fmt.Errorf("delta response %s nonce %s not ACKed", resp.GetTypeUrl(), resp.GetNonce())
		}
	}
	return nil
}

// TestIntegrationSDSRotation: a TLS listener takes its certificate from
// SDS; a new secret version reaches new handshakes.
func TestIntegrationSDSRotation(t *testing.T) {
	ca := testcert.NewCA()
	cert1, key1 := ca.Leaf("one.example")
	cert2, key2 := ca.Leaf("two.example")
	addr := origin(t, "tls")
	snap := func(cert, key []byte) snapshot {
		return snapshot{}.
			add(resourcev3.ClusterType, edsCluster("app")).
			add(resourcev3.EndpointType, cla("app", addr)).
			add(resourcev3.RouteType, routes("local", "/", "app")).
			add(resourcev3.ListenerType, tlsListener(t, "ingress", 0, "local", "cert")).
			add(resourcev3.SecretType, tlsSecret("cert", cert, key))
	}
	cp := newControlPlane(t, true)
	cp.set("1", snap(cert1, key1))
	gw := newTestGateway(t)
	runClient(t, gw, cp, ClientConfig{})

	served := func() (string, error) {
		a := gw.ListenerAddr("ingress")
		if a == nil {
			return "", fmt.Errorf("not serving")
		}
		conn, err := tls.Dial("tcp", a.String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "one.example", InsecureSkipVerify: true})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].DNSNames[0], nil
	}
	waitCert := func(want string) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			got, err := served()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("certificate for %s, want %s", got, want)
			}
			return nil
		})
	}
	waitCert("one.example")
	// A request through TLS works.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + gw.ListenerAddr("ingress").String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	cp.set("2", snap(cert2, key2))
	waitCert("two.example")
	eventually(t, 5*time.Second, func() error { return allAcked(cp) })
}

// TestIntegrationModes: every transport variant — ADS and per-type
// streams, state of the world and delta — brings the gateway up and
// follows route and endpoint changes, ACKing everything.
func TestIntegrationModes(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode Mode
		ads  bool
	}{
		{"ADS", ADS, true},
		{"DeltaADS", DeltaADS, false},
		{"PerType", PerType, false},
		{"DeltaPerType", DeltaPerType, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := newControlPlane(t, tc.ads)
			a, b := origin(t, "a"), origin(t, "b")
			cp.set("1", basic(t, a))
			gw := newTestGateway(t)
			runClient(t, gw, cp, ClientConfig{Mode: tc.mode})
			wantBody(t, gw, "ingress", "/", "a")
			cp.set("2", basic(t, b))
			wantBody(t, gw, "ingress", "/", "b")
			cp.set("3", snapshot{}.
				add(resourcev3.ClusterType, edsCluster("app"), edsCluster("other")).
				add(resourcev3.EndpointType, cla("app", b), cla("other", a)).
				add(resourcev3.RouteType, routes("local2", "/", "other")).
				add(resourcev3.ListenerType, httpListener(t, "ingress", 0, "local2")))
			wantBody(t, gw, "ingress", "/", "a")
			eventually(t, 5*time.Second, func() error {
				if err := allAcked(cp); err != nil {
					return err
				}
				return deltaAcked(cp)
			})
			cp.mu.Lock()
			streams := cp.streams
			cp.mu.Unlock()
			want := 1
			if tc.mode == PerType || tc.mode == DeltaPerType {
				want = 4 // CDS, EDS, LDS, RDS
			}
			if streams != want {
				t.Errorf("%d streams, want %d", streams, want)
			}
		})
	}
}
