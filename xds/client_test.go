package xds

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/porticoproxy/portico/internal/testcert"
)

// badCluster sets a field Portico does not implement (load reporting),
// which the translator rejects by its path.
func badCluster(name string) *clusterv3.Cluster {
	c := edsCluster(name)
	c.LrsServer = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}}
	return c
}

// TestClientFirstRequests: a new ADS stream starts with wildcard CDS and
// LDS requests (no names: the legacy wildcard go-control-plane serves),
// empty version and nonce, and the node on the stream's first request
// only.
func TestClientFirstRequests(t *testing.T) {
	fs := newFakeServer(t)
	runFakeClient(t, newTestGateway(t), fs, ClientConfig{})
	s := fs.stream(t)
	first := <-s.reqs
	second := <-s.reqs
	if first.GetTypeUrl() != urlCluster || second.GetTypeUrl() != urlListener {
		t.Fatalf("first requests are %s, %s; want CDS then LDS", first.GetTypeUrl(), second.GetTypeUrl())
	}
	if first.GetNode().GetId() != testNode || first.GetNode().GetUserAgentName() != "portico" {
		t.Errorf("first request node = %v, want id %q, user agent portico", first.GetNode(), testNode)
	}
	if second.GetNode() != nil {
		t.Errorf("second request carries the node again")
	}
	for _, r := range []*discoveryv3.DiscoveryRequest{first, second} {
		if r.GetVersionInfo() != "" || r.GetResponseNonce() != "" || len(r.GetResourceNames()) != 0 || r.GetErrorDetail() != nil {
			t.Errorf("first %s request = %v, want no version, nonce, names or error", r.GetTypeUrl(), r)
		}
	}
}

// TestClientDuplicateNamesNACK: a response naming a resource twice is
// rejected whole: NACK with the previous version, the response's nonce
// and an error_detail naming the duplicate; OnNACK is told.
func TestClientDuplicateNamesNACK(t *testing.T) {
	fs := newFakeServer(t)
	var nacks []NACK
	var mu sync.Mutex
	runFakeClient(t, newTestGateway(t), fs, ClientConfig{OnNACK: func(n NACK) {
		mu.Lock()
		nacks = append(nacks, n)
		mu.Unlock()
	}})
	s := fs.stream(t)
	s.next(t, urlCluster)
	s.out <- response(t, urlCluster, "1", "n1")
	if r := s.next(t, urlCluster); r.GetVersionInfo() != "1" || r.GetResponseNonce() != "n1" || r.GetErrorDetail() != nil {
		t.Fatalf("ACK = %v, want version 1, nonce n1, no error", r)
	}
	s.out <- response(t, urlCluster, "2", "n2", edsCluster("a"), edsCluster("a"))
	r := s.next(t, urlCluster)
	if r.GetVersionInfo() != "1" || r.GetResponseNonce() != "n2" {
		t.Errorf("NACK version %q nonce %q, want 1 and n2", r.GetVersionInfo(), r.GetResponseNonce())
	}
	if r.GetErrorDetail().GetCode() != 3 || !strings.Contains(r.GetErrorDetail().GetMessage(), `duplicate cluster name "a"`) {
		t.Errorf("NACK error_detail = %v, want INVALID_ARGUMENT naming the duplicate", r.GetErrorDetail())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(nacks) != 1 || nacks[0].Version != "2" || nacks[0].Nonce != "n2" || nacks[0].TypeURL != urlCluster {
		t.Errorf("OnNACK got %+v, want one NACK of version 2, nonce n2", nacks)
	}
}

// TestClientNACKPacing: a server that answers every NACK by resending
// the rejected update at once (go-control-plane does) gets paced NACKs,
// not a busy loop; OnNACK fires once; a new update is answered at once.
func TestClientNACKPacing(t *testing.T) {
	fs := newFakeServer(t)
	var nacked atomic.Int32
	runFakeClient(t, newTestGateway(t), fs, ClientConfig{
		NACKBackoff: Backoff{Base: 100 * time.Millisecond, Max: 400 * time.Millisecond},
		OnNACK:      func(NACK) { nacked.Add(1) },
	})
	s := fs.stream(t)
	s.next(t, urlCluster)
	bad := response(t, urlCluster, "2", "", badCluster("a"))
	bad.Nonce = "0"
	s.out <- bad
	start := time.Now()
	var requests int
	for time.Since(start) < 2*time.Second {
		r := s.next(t, urlCluster)
		if r.GetErrorDetail() == nil {
			t.Fatalf("request %v without error_detail", r)
		}
		if !strings.Contains(r.GetErrorDetail().GetMessage(), `cluster "a"`) {
			t.Errorf("error_detail %q does not name the cluster", r.GetErrorDetail().GetMessage())
		}
		requests++
		resend := response(t, urlCluster, "2", "", badCluster("a"))
		resend.Nonce = string(rune('a' + requests%26))
		s.out <- resend
	}
	// 100, 200, 400, 400 ms... (jittered to half): about 8 in 2 s.
	if requests < 3 || requests > 25 {
		t.Errorf("%d NACKs in 2 s, want paced (3..25)", requests)
	}
	if n := nacked.Load(); n != 1 {
		t.Errorf("OnNACK called %d times, want once for a resent update", n)
	}
	// A new version is answered at once, even while a NACK is paced.
	s.out <- response(t, urlCluster, "3", "fixed")
	deadline := time.Now().Add(300 * time.Millisecond)
	for {
		r := s.next(t, urlCluster)
		if r.GetResponseNonce() == "fixed" {
			if r.GetVersionInfo() != "3" || r.GetErrorDetail() != nil {
				t.Errorf("after a good update: %v, want ACK of version 3", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("good update not ACKed at once")
		}
	}
}

// TestClientReconnectKeepsVersions: after the stream breaks, the client
// reconnects; its first requests carry the versions it ACKed, no nonce
// (nonces are per stream), and the node again.
func TestClientReconnectKeepsVersions(t *testing.T) {
	fs := newFakeServer(t)
	runFakeClient(t, newTestGateway(t), fs, ClientConfig{})
	s := fs.stream(t)
	s.next(t, urlCluster)
	s.next(t, urlListener)
	s.out <- response(t, urlCluster, "c1", "n1")
	s.out <- response(t, urlListener, "l7", "n2")
	s.next(t, urlCluster)
	s.next(t, urlListener)
	close(s.done)

	s = fs.stream(t)
	cds, lds := s.next(t, urlCluster), s.next(t, urlListener)
	got := [][3]string{{cds.GetVersionInfo(), cds.GetResponseNonce(), cds.GetNode().GetId()},
		{lds.GetVersionInfo(), lds.GetResponseNonce(), lds.GetNode().GetId()}}
	want := [][3]string{{"c1", "", testNode}, {"l7", "", ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first requests after reconnect (version, nonce, node) (-want +got):\n%s", diff)
	}
}

// TestClientUnrequestedIgnored: resources of a non-wildcard type that
// were not requested are ignored; a response of a type never requested
// is not answered, since an empty request would be a legacy wildcard
// subscription.
func TestClientUnrequestedIgnored(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	runFakeClient(t, gw, fs, ClientConfig{})
	s := fs.stream(t)
	s.next(t, urlCluster)
	s.out <- response(t, urlRoute, "1", "r1", routes("nobody-asked", "/", "x"))
	s.none(t, urlRoute, 300*time.Millisecond)
	if dump := adminText(t, gw, "/config_dump"); strings.Contains(dump, "nobody-asked") {
		t.Errorf("unrequested route configuration applied: %s", dump)
	}
}

// TestClientConfigValidate covers ClientConfig.Validate.
func TestClientConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ClientConfig
		want string
	}{
		{"ok", ClientConfig{Target: "x"}, ""},
		{"no target", ClientConfig{}, "target is required"},
		{"mode", ClientConfig{Target: "x", Mode: 9}, "unknown mode"},
		{"backoff", ClientConfig{Target: "x", ReconnectBackoff: Backoff{Base: time.Second, Max: time.Millisecond}}, "less than base"},
		{"nothing", ClientConfig{Target: "x", DisableCDS: true, DisableLDS: true}, "both LDS and CDS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestBackoffDelay: exponential, capped, jittered within the upper half.
func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	c, _ := NewClient(newTestGateway(t), ClientConfig{Target: "x"})
	for n, top := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		top *= time.Millisecond
		for range 20 {
			if d := b.delay(n+1, c.rng); d < top/2 || d > top {
				t.Fatalf("delay(%d) = %v, want in [%v, %v]", n+1, d, top/2, top)
			}
		}
	}
}

// TestResourceName reads names without decoding the resources.
func TestResourceName(t *testing.T) {
	for want, m := range map[string]proto.Message{
		"c1": edsCluster("c1"), "r1": routes("r1"), "l1": httpListener(t, "l1", 0, "r"),
		"e1": cla("e1", "127.0.0.1:1"), "s1": tlsSecret("s1", []byte("x"), []byte("y")),
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := resourceName(b); err != nil || got != want {
			t.Errorf("resourceName = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := resourceName([]byte{0x0a, 0x05, 'a'}); err == nil {
		t.Error("resourceName of a truncated message: no error")
	}
}

// TestSDSRefs finds secret references inside typed_config Anys.
func TestSDSRefs(t *testing.T) {
	got := sdsRefs(tlsListener(t, "l", 0, "r", "cert"))
	if diff := cmp.Diff([]string{"cert"}, got); diff != "" {
		t.Errorf("sdsRefs (-want +got):\n%s", diff)
	}
}

// TestClientSubscriptionChangeCarriesLatestNonce: a listener update that
// moves to another route configuration changes the RDS subscription; the
// request carries the latest RDS nonce (go-control-plane drops requests
// with a stale one) and the version ACKed. The old name stays subscribed
// while the updated listener warms, and goes once it serves.
func TestClientSubscriptionChangeCarriesLatestNonce(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	runFakeClient(t, gw, fs, ClientConfig{})
	s := fs.stream(t)
	s.next(t, urlCluster)
	s.out <- response(t, urlCluster, "1", "c1")
	s.out <- response(t, urlListener, "1", "l1", httpListener(t, "ingress", 0, "a"))
	r := s.next(t, urlRoute)
	if diff := cmp.Diff([]string{"a"}, r.GetResourceNames()); diff != "" || r.GetResponseNonce() != "" {
		t.Fatalf("first RDS request %v, want names [a] and no nonce", r)
	}
	s.out <- response(t, urlRoute, "1", "r1", routes("a", "/", "x"))
	if r := s.next(t, urlRoute); r.GetResponseNonce() != "r1" || r.GetVersionInfo() != "1" {
		t.Fatalf("RDS ACK %v, want version 1 nonce r1", r)
	}
	eventually(t, 5*time.Second, func() error {
		if gw.ListenerAddr("ingress") == nil {
			return errors.New("listener not serving")
		}
		return nil
	})

	s.out <- response(t, urlListener, "2", "l2", httpListener(t, "ingress", 0, "b"))
	r = s.next(t, urlRoute)
	if diff := cmp.Diff([]string{"a", "b"}, r.GetResourceNames()); diff != "" || r.GetResponseNonce() != "r1" || r.GetVersionInfo() != "1" {
		t.Fatalf("RDS request after the listener change: %v; want names [a b], version 1, nonce r1", r)
	}
	s.out <- response(t, urlRoute, "2", "r2", routes("b", "/", "x"))
	for {
		r = s.next(t, urlRoute)
		if len(r.GetResourceNames()) == 1 {
			break
		}
	}
	if diff := cmp.Diff([]string{"b"}, r.GetResourceNames()); diff != "" || r.GetResponseNonce() != "r2" {
		t.Fatalf("RDS request once the listener serves: %v; want names [b], nonce r2", r)
	}
}

// TestClientWarming: a cluster serves only once its endpoints arrived,
// a listener only once its routes arrived.
func TestClientWarming(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	addr := origin(t, "warm")
	runFakeClient(t, gw, fs, ClientConfig{})
	s := fs.stream(t)
	s.next(t, urlCluster)
	s.out <- response(t, urlCluster, "1", "c1", edsCluster("app"))
	if r := s.next(t, urlEndpoints); fmt.Sprint(r.GetResourceNames()) != "[app]" {
		t.Fatalf("EDS request %v, want [app]", r)
	}
	s.out <- response(t, urlListener, "1", "l1", httpListener(t, "ingress", 0, "local"))
	s.next(t, urlRoute)
	time.Sleep(200 * time.Millisecond)
	if gw.Cluster("app") != nil || gw.ListenerAddr("ingress") != nil {
		t.Fatal("cluster or listener serving before what it depends on arrived")
	}
	dump := adminText(t, gw, "/config_dump")
	if strings.Count(dump, `"WARMING"`) != 2 {
		t.Errorf("config_dump does not show the cluster and listener warming: %s", dump)
	}
	s.out <- response(t, urlEndpoints, "1", "e1", cla("app", addr))
	eventually(t, 5*time.Second, func() error {
		if gw.Cluster("app") == nil {
			return errors.New("cluster not serving")
		}
		return nil
	})
	if gw.ListenerAddr("ingress") != nil {
		t.Fatal("listener serving before its routes arrived")
	}
	s.out <- response(t, urlRoute, "1", "r1", routes("local", "/", "app"))
	wantBody(t, gw, "ingress", "/", "warm")
}

// TestClientDoesNotExist: a route configuration the server never sends is
// taken not to exist after DoesNotExistTimeout; the listener waiting for
// it stops waiting (and answers 404), and /config_dump says so.
func TestClientDoesNotExist(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	runFakeClient(t, gw, fs, ClientConfig{DoesNotExistTimeout: 300 * time.Millisecond})
	s := fs.stream(t)
	s.next(t, urlCluster)
	s.out <- response(t, urlCluster, "1", "c1")
	s.out <- response(t, urlListener, "1", "l1", httpListener(t, "ingress", 0, "nowhere"))
	s.next(t, urlRoute)
	start := time.Now()
	eventually(t, 5*time.Second, func() error {
		code, _, err := get(gw, "ingress", "/")
		if err != nil {
			return err
		}
		if code != 404 {
			return fmt.Errorf("status %d, want 404", code)
		}
		return nil
	})
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("listener served after %v, before the does-not-exist timer", d)
	}
	dump := adminJSON(t, gw, "/config_dump?resource=route_configs")
	if !strings.Contains(fmt.Sprint(dump), "client_status:DOES_NOT_EXIST") {
		t.Errorf("config_dump route_configs = %v, want nowhere DOES_NOT_EXIST", dump)
	}
}

// TestClientInitialFetchTimeout: a cluster whose endpoints never come
// serves (without endpoints) once InitialFetchTimeout passes.
func TestClientInitialFetchTimeout(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	runFakeClient(t, gw, fs, ClientConfig{InitialFetchTimeout: 300 * time.Millisecond, DoesNotExistTimeout: time.Hour})
	s := fs.stream(t)
	s.next(t, urlCluster)
	start := time.Now()
	s.out <- response(t, urlCluster, "1", "c1", edsCluster("app"))
	eventually(t, 5*time.Second, func() error {
		if gw.Cluster("app") == nil {
			return errors.New("cluster not serving")
		}
		return nil
	})
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("cluster served after %v, before the initial fetch timeout", d)
	}
	if got := metric(t, gw, `portico_cluster_init_fetch_timeout{portico_cluster_name="app"}`); got != 1 {
		t.Errorf("init_fetch_timeout = %v, want 1", got)
	}
}

// TestClientRemovals: a SotW LDS or CDS response without a resource
// removes it; the route configurations and endpoint assignments only it
// referenced are unsubscribed and removed.
func TestClientRemovals(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	addr := origin(t, "x")
	runFakeClient(t, gw, fs, ClientConfig{})
	s := fs.stream(t)
	s.next(t, urlCluster)
	s.out <- response(t, urlCluster, "1", "c1", edsCluster("app"))
	s.next(t, urlEndpoints)
	s.out <- response(t, urlEndpoints, "1", "e1", cla("app", addr))
	s.out <- response(t, urlListener, "1", "l1", httpListener(t, "ingress", 0, "local"))
	s.next(t, urlRoute)
	s.out <- response(t, urlRoute, "1", "r1", routes("local", "/", "app"))
	wantBody(t, gw, "ingress", "/", "x")

	s.out <- response(t, urlListener, "2", "l2")
	if r := s.until(t, urlRoute, func(r *discoveryv3.DiscoveryRequest) bool { return len(r.GetResourceNames()) == 0 }); r.GetResponseNonce() != "r1" {
		t.Errorf("RDS unsubscription after the listener went: %v, want nonce r1", r)
	}
	s.out <- response(t, urlCluster, "2", "c2")
	if r := s.until(t, urlEndpoints, func(r *discoveryv3.DiscoveryRequest) bool { return len(r.GetResourceNames()) == 0 }); r.GetResponseNonce() != "e1" {
		t.Errorf("EDS unsubscription after the cluster went: %v, want nonce e1", r)
	}
	eventually(t, 5*time.Second, func() error {
		if gw.ListenerAddr("ingress") != nil || gw.Cluster("app") != nil {
			return errors.New("listener or cluster still there")
		}
		if d := adminText(t, gw, "/config_dump"); strings.Contains(d, `"local"`) {
			return fmt.Errorf("route configuration still there: %s", d)
		}
		return nil
	})
}

// TestClientDeltaProtocol: delta subscribes with "*" for LDS and CDS,
// ACKs with the nonce only, removes on removed_resources, and on
// reconnect lists what it holds in initial_resource_versions.
func TestClientDeltaProtocol(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	runFakeClient(t, gw, fs, ClientConfig{Mode: DeltaADS})
	s := fs.deltaStream(t)
	r := s.next(t, urlCluster)
	if fmt.Sprint(r.GetResourceNamesSubscribe()) != "[*]" || r.GetNode().GetId() != testNode || len(r.GetInitialResourceVersions()) != 0 {
		t.Fatalf("first delta CDS request %v, want subscribe [*] with the node", r)
	}
	s.out <- &discoveryv3.DeltaDiscoveryResponse{TypeUrl: urlCluster, Nonce: "d1", Resources: []*discoveryv3.Resource{
		{Name: "a", Version: "va", Resource: packAny(t, edsCluster("a"))},
		{Name: "b", Version: "vb", Resource: packAny(t, edsCluster("b"))},
	}}
	if r := s.next(t, urlCluster); r.GetResponseNonce() != "d1" || r.GetErrorDetail() != nil || len(r.GetResourceNamesSubscribe()) != 0 {
		t.Errorf("delta ACK %v, want nonce d1 only", r)
	}
	if r := s.next(t, urlEndpoints); fmt.Sprint(r.GetResourceNamesSubscribe()) != "[a b]" || r.GetResponseNonce() != "" {
		t.Errorf("delta EDS request %v, want subscribe [a b] and no nonce", r)
	}
	s.out <- &discoveryv3.DeltaDiscoveryResponse{TypeUrl: urlCluster, Nonce: "d2", RemovedResources: []string{"b"}}
	s.next(t, urlCluster)
	if r := s.next(t, urlEndpoints); fmt.Sprint(r.GetResourceNamesUnsubscribe()) != "[b]" {
		t.Errorf("delta EDS request after removal %v, want unsubscribe [b]", r)
	}
	close(s.done)

	s = fs.deltaStream(t)
	r = s.next(t, urlCluster)
	if fmt.Sprint(r.GetInitialResourceVersions()) != "map[a:va]" || r.GetResponseNonce() != "" {
		t.Errorf("delta CDS request after reconnect %v, want initial_resource_versions {a: va} and no nonce", r)
	}
	if r := s.next(t, urlEndpoints); fmt.Sprint(r.GetResourceNamesSubscribe()) != "[a]" {
		t.Errorf("delta EDS request after reconnect %v, want subscribe [a]", r)
	}
}

// TestClientLastGoodPerResource: in a response where one resource is
// invalid, the valid ones are applied and the invalid one keeps its
// previous version serving; the NACK names only the invalid one.
func TestClientLastGoodPerResource(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	runFakeClient(t, gw, fs, ClientConfig{})
	s := fs.stream(t)
	s.next(t, urlCluster)
	static := func(name string, timeout time.Duration) *clusterv3.Cluster {
		return &clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       durationpb.New(timeout),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment:       cla(name, "127.0.0.1:1"),
		}
	}
	s.out <- response(t, urlCluster, "1", "c1", static("a", time.Second), static("b", time.Second))
	s.until(t, urlCluster, func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == "c1" })

	badA := static("a", 2*time.Second)
	badA.LrsServer = badCluster("x").LrsServer
	s.out <- response(t, urlCluster, "2", "c2", badA, static("b", 3*time.Second))
	r := s.until(t, urlCluster, func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == "c2" })
	msg := r.GetErrorDetail().GetMessage()
	if r.GetVersionInfo() != "1" || !strings.Contains(msg, `cluster "a"`) || strings.Contains(msg, `cluster "b"`) {
		t.Errorf("NACK version %q error %q, want version 1 and an error about a only", r.GetVersionInfo(), msg)
	}
	if got := gw.Cluster("a").Config().ConnectTimeout; got != time.Second {
		t.Errorf("cluster a connect timeout %v, want the previous 1s", got)
	}
	if got := gw.Cluster("b").Config().ConnectTimeout; got != 3*time.Second {
		t.Errorf("cluster b connect timeout %v, want the new 3s", got)
	}
	dump := adminJSON(t, gw, "/config_dump?resource=clusters")
	for _, c := range dump["configs"].([]any) {
		m := c.(map[string]any)
		switch m["name"] {
		case "a":
			if m["version_info"] != "1" || m["client_status"] != "NACKED" || m["error_state"] == nil {
				t.Errorf("config_dump a = %v, want version 1, NACKED, an error_state", m)
			}
		case "b":
			if m["version_info"] != "2" || m["client_status"] != "ACKED" || m["error_state"] != nil {
				t.Errorf("config_dump b = %v, want version 2 ACKED", m)
			}
		}
	}
}

// TestClientClusterWaitsForSecret: a cluster whose upstream TLS takes its
// trusted CA from SDS subscribes to the secret and waits for it (it is
// not rejected); when the secret arrives the cluster is translated and
// serves, and a new secret version translates it again.
func TestClientClusterWaitsForSecret(t *testing.T) {
	fs := newFakeServer(t)
	gw := newTestGateway(t)
	runFakeClient(t, gw, fs, ClientConfig{})
	s := fs.stream(t)
	s.next(t, urlCluster)
	tlsCtx := packAny(t, &tlsv3.UpstreamTlsContext{Sni: "origin.example", CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ca", SdsConfig: adsSource},
		},
	}})
	up := &clusterv3.Cluster{
		Name:                 "up",
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       cla("up", "127.0.0.1:1"),
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tlsCtx}},
	}
	s.out <- response(t, urlCluster, "1", "c1", up)
	if r := s.until(t, urlCluster, func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == "c1" }); r.GetErrorDetail() != nil {
		t.Fatalf("cluster waiting for its secret was NACKed: %v", r.GetErrorDetail())
	}
	if r := s.next(t, urlSecret); fmt.Sprint(r.GetResourceNames()) != "[ca]" {
		t.Fatalf("SDS request %v, want [ca]", r)
	}
	if gw.Cluster("up") != nil {
		t.Fatal("cluster serving without its secret")
	}
	caSecret := func(pem []byte) *tlsv3.Secret {
		return &tlsv3.Secret{Name: "ca", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pem}},
		}}}
	}
	ca1, ca2 := testcert.NewCA(), testcert.NewCA()
	s.out <- response(t, urlSecret, "1", "s1", caSecret(ca1.CertPEM))
	eventually(t, 5*time.Second, func() error {
		c := gw.Cluster("up")
		if c == nil || c.Config().TLS == nil || !bytes.Contains(c.Config().TLS.RootCAs, ca1.CertPEM) {
			return errors.New("cluster not serving with the secret's CA")
		}
		return nil
	})
	s.out <- response(t, urlSecret, "2", "s2", caSecret(ca2.CertPEM))
	eventually(t, 5*time.Second, func() error {
		if c := gw.Cluster("up"); !bytes.Contains(c.Config().TLS.RootCAs, ca2.CertPEM) {
			return errors.New("cluster not translated again with the new CA")
		}
		return nil
	})
}

// TestClientLatestNonce: responses that arrive back to back are each
// ACKed in order, and once a nonce was answered no later request goes
// back to an older one (a server drops requests with a stale nonce).
func TestClientLatestNonce(t *testing.T) {
	fs := newFakeServer(t)
	runFakeClient(t, newTestGateway(t), fs, ClientConfig{})
	s := fs.stream(t)
	s.next(t, urlCluster)
	for i := range 5 {
		s.out <- response(t, urlCluster, fmt.Sprint(i), fmt.Sprint("n", i))
	}
	last := -1
	for last < 4 {
		r := s.next(t, urlCluster)
		var n int
		if _, err := fmt.Sscanf(r.GetResponseNonce(), "n%d", &n); err != nil {
			t.Fatalf("request nonce %q", r.GetResponseNonce())
		}
		if n < last {
			t.Fatalf("request with nonce n%d after n%d", n, last)
		}
		if r.GetVersionInfo() != fmt.Sprint(n) {
			t.Errorf("request with nonce n%d has version %q, want %d", n, r.GetVersionInfo(), n)
		}
		last = n
	}
}
