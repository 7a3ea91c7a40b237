package xds

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
)

// The tests in this file build translated clusters with cluster.New and
// send real requests to loopback origins.

// namedOrigin is a plain HTTP origin answering with its name and the
// protocol it saw.
func namedOrigin(t *testing.T, name string) (*httptest.Server, netip.AddrPort) {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.Proto)
	}))
	t.Cleanup(s.Close)
	return s, netip.MustParseAddrPort(s.Listener.Addr().String())
}

// buildCluster translates js with tr and builds the cluster.
func buildCluster(t *testing.T, tr *Translator, js string) *cluster.Cluster {
	t.Helper()
	cfg, _, err := tr.Cluster(parseCluster(t, js))
	if err != nil {
		t.Fatalf("Cluster() error = %v", err)
	}
	c, err := cluster.New(cfg)
	if err != nil {
		t.Fatalf("cluster.New() error = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send sends a GET with the given Host through c and returns the body.
func send(c *cluster.Cluster, host string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Send(&cluster.Request{HTTP: req})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// sendEventually retries send until it succeeds, for discovery that
// completes in the background.
func sendEventually(t *testing.T, c *cluster.Cluster, host string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, err := send(c, host)
		if err == nil {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("send() error = %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func socketAddr(ap netip.AddrPort) string {
	return fmt.Sprintf(`{"address": {"socket_address": {"address": %q, "port_value": %d}}}`, ap.Addr(), ap.Port())
}

// TestClusterUpstreamTLSWithSDS sends requests over mutual TLS to an
// origin that requires a client certificate; the client certificate and
// the CA with a SAN matcher come from SDS secrets.
func TestClusterUpstreamTLSWithSDS(t *testing.T) {
	pki := testCerts(t)
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	origin.TLS = pki.serverTLS(t, true)
	origin.Config.ErrorLog = log.New(io.Discard, "", 0) // the SAN mismatch case fails handshakes
	origin.StartTLS()
	defer origin.Close()
	ap := netip.MustParseAddrPort(origin.Listener.Addr().String())

	secrets := map[string]*Secret{}
	tr := &Translator{Secrets: func(name string) (*Secret, bool) { s, ok := secrets[name]; return s, ok }}
	for _, s := range []struct {
		name string
		json string
	}{
		{"client", `{"name": "client", "tls_certificate": {"certificate_chain": {"inline_string": ` + quote(pki.clientCert) + `}, "private_key": {"inline_string": ` + quote(pki.clientKey) + `}}}`},
		{"ca", `{"name": "ca", "validation_context": {"trusted_ca": {"inline_string": ` + quote(pki.caPEM) + `},
			"match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": "spiffe://test/ns/default/sa/backend"}}]}}`},
		{"wrong-san", `{"name": "wrong-san", "validation_context": {"trusted_ca": {"inline_string": ` + quote(pki.caPEM) + `},
			"match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": "spiffe://test/ns/default/sa/other"}}]}}`},
	} {
		sec, err := tr.Secret(parseSecret(t, s.json))
		if err != nil {
			t.Fatalf("Secret(%s) error = %v", s.name, err)
		}
		secrets[s.name] = sec
	}
	clusterJSON := func(ca string) string {
		return `{"name": "tls", "type": "STATIC", "load_assignment": {"cluster_name": "tls", "endpoints": [{"lb_endpoints": [{"endpoint": ` + socketAddr(ap) + `}]}]},
			"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
				"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
				"sni": "backend.test",
				"common_tls_context": {
					"tls_certificate_sds_secret_configs": [{"name": "client", "sds_config": {"ads": {}}}],
					"validation_context_sds_secret_config": {"name": "` + ca + `", "sds_config": {"ads": {}}}}}}}`
	}

	c := buildCluster(t, tr, clusterJSON("ca"))
	if body, err := send(c, "backend.test"); err != nil || body != "hello portico" {
		t.Errorf("send() = %q, %v; want hello portico", body, err)
	}

	bad := buildCluster(t, tr, clusterJSON("wrong-san"))
	if _, err := send(bad, "backend.test"); err == nil || !strings.Contains(err.Error(), "match_subject_alt_names") {
		t.Errorf("send() with a non-matching SAN: error = %v, want a SAN mismatch", err)
	}
}

// TestClusterStrictDNS resolves a STRICT_DNS cluster's host name through
// the Translator's resolver.
func TestClusterStrictDNS(t *testing.T) {
	_, ap := namedOrigin(t, "dns")
	tr := &Translator{Resolver: cluster.ResolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if host == "backend.test" {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	})}
	c := buildCluster(t, tr, `{"name": "dns", "type": "STRICT_DNS", "dns_lookup_family": "V4_ONLY", "dns_refresh_rate": "0.1s",
		"load_assignment": {"cluster_name": "dns", "endpoints": [{"lb_endpoints": [
			{"endpoint": {"address": {"socket_address": {"address": "backend.test", "port_value": `+strconv.Itoa(int(ap.Port()))+`}}}}]}]}}`)
	if body := sendEventually(t, c, "front.test"); body != "dns HTTP/1.1" {
		t.Errorf("body = %q, want dns HTTP/1.1", body)
	}
}

// TestClusterEDSPriorities feeds an EDS cluster a ClusterLoadAssignment
// with two priorities: traffic stays on priority 0 while it is healthy
// and fails over to priority 1 when an update marks it unhealthy.
func TestClusterEDSPriorities(t *testing.T) {
	_, primary := namedOrigin(t, "primary")
	_, backup := namedOrigin(t, "backup")
	tr := &Translator{}
	cfg, refs, err := tr.Cluster(parseCluster(t, `{"name": "eds", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}, "service_name": "eds-svc"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(refs.Endpoints) != 1 || refs.Endpoints[0] != "eds-svc" {
		t.Errorf("Refs.Endpoints = %v, want [eds-svc]", refs.Endpoints)
	}
	c, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	assign := func(primaryHealth string) {
		t.Helper()
		eps, err := tr.Endpoints(parseCLA(t, `{"cluster_name": "eds-svc", "endpoints": [
			{"priority": 0, "lb_endpoints": [{"endpoint": `+socketAddr(primary)+`, "health_status": "`+primaryHealth+`"}]},
			{"priority": 1, "lb_endpoints": [{"endpoint": `+socketAddr(backup)+`, "health_status": "HEALTHY"}]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.UpdateEndpoints(eps); err != nil {
			t.Fatal(err)
		}
	}
	count := func() map[string]int {
		got := map[string]int{}
		for range 20 {
			body, err := send(c, "eds.test")
			if err != nil {
				t.Fatalf("send() error = %v", err)
			}
			got[strings.Fields(body)[0]]++
		}
		return got
	}

	assign("HEALTHY")
	if got := count(); got["primary"] != 20 {
		t.Errorf("with priority 0 healthy: %v, want all 20 on primary", got)
	}
	assign("UNHEALTHY")
	if got := count(); got["backup"] != 20 {
		t.Errorf("with priority 0 unhealthy: %v, want all 20 on backup", got)
	}
}

// TestClusterHTTP2Upstream checks that typed HTTP/2 protocol options
// make the cluster speak h2c to the origin.
func TestClusterHTTP2Upstream(t *testing.T) {
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "h2 %s", r.Proto)
	}))
	origin.Config.Protocols = new(http.Protocols)
	origin.Config.Protocols.SetUnencryptedHTTP2(true)
	origin.Start()
	defer origin.Close()
	ap := netip.MustParseAddrPort(origin.Listener.Addr().String())
	c := buildCluster(t, &Translator{}, `{"name": "h2", "load_assignment": {"cluster_name": "h2", "endpoints": [{"lb_endpoints": [{"endpoint": `+socketAddr(ap)+`}]}]},
		"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
			"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
			"explicit_http_config": {"http2_protocol_options": {"initial_stream_window_size": 65536}}}}}`)
	if body, err := send(c, "h2.test"); err != nil || body != "h2 HTTP/2.0" {
		t.Errorf("send() = %q, %v; want h2 HTTP/2.0", body, err)
	}
}

// TestClusterDynamicForwardProxy sends requests to the authority they
// name, resolved through the shared DNS cache with the Translator's
// resolver.
func TestClusterDynamicForwardProxy(t *testing.T) {
	_, ap := namedOrigin(t, "dfp")
	tr := &Translator{Resolver: cluster.ResolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if host == "backend.test" {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	})}
	defer tr.CloseDNSCaches()
	c := buildCluster(t, tr, `{"name": "dfp", "lb_policy": "CLUSTER_PROVIDED", "cluster_type": {"name": "envoy.clusters.dynamic_forward_proxy",
		"typed_config": {"@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
			"dns_cache_config": {"name": "cache", "dns_lookup_family": "V4_ONLY"}}}}`)
	if body, err := send(c, "backend.test:"+strconv.Itoa(int(ap.Port()))); err != nil || body != "dfp HTTP/1.1" {
		t.Errorf("send() = %q, %v; want dfp HTTP/1.1", body, err)
	}
	if _, err := send(c, "unknown.test:80"); err == nil {
		t.Errorf("send() to an unknown host: error = nil")
	}
}
