package xds_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/internal/testcert"
	"github.com/porticoproxy/portico/xds"
)

// conformanceDir locates Envoy's example configurations: the directory in
// PORTICO_ENVOY_CONFORMANCE, else ../shared/conformance/envoy beside the
// repository, else /work/shared/conformance/envoy. Tests fail without
// them; they are never copied into the repository.
func conformanceDir(t *testing.T) string {
	t.Helper()
	var tried []string
	if d := os.Getenv("PORTICO_ENVOY_CONFORMANCE"); d != "" {
		tried = append(tried, d)
	}
	if wd, err := os.Getwd(); err == nil {
		// The test runs in <repo>/xds.
		tried = append(tried, filepath.Join(wd, "..", "..", "shared", "conformance", "envoy"))
	}
	tried = append(tried, "/work/shared/conformance/envoy")
	for _, d := range tried {
		if st, err := os.Stat(filepath.Join(d, "envoy-demo.yaml")); err == nil && !st.IsDir() {
			return d
		}
	}
	t.Fatalf("Envoy conformance configs not found: set PORTICO_ENVOY_CONFORMANCE to the directory holding envoy-demo.yaml (tried %s)", strings.Join(tried, ", "))
	return ""
}

// loopback binds every listener to a free loopback port.
func loopback(string, string) string { return "127.0.0.1:0" }

// runBootstrap builds and runs b's gateway until the test ends.
func runBootstrap(t *testing.T, b *xds.Bootstrap) *portico.Gateway {
	t.Helper()
	gw, err := b.NewGateway()
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, gw) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return")
		}
	})
	return gw
}

func get(t *testing.T, c *http.Client, url string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// pointCluster sends a running cluster's traffic to addr.
func pointCluster(t *testing.T, b *xds.Bootstrap, gw *portico.Gateway, name, addr string) {
	t.Helper()
	for _, c := range b.Config.Clusters {
		if c.Name != name {
			continue
		}
		c.Endpoints = []cluster.Endpoint{{Address: addr}}
		if err := gw.UpsertCluster(c); err != nil {
			t.Fatalf("UpsertCluster %s: %v", name, err)
		}
		return
	}
	t.Fatalf("no cluster %q", name)
}

// TestEnvoyDemo runs configs/envoy-demo.yaml: listener_0 proxies to the
// loopback cluster, which is listener_1, whose route configuration has no
// virtual host; the no-route 404 is rewritten by listener_1's
// local_reply_config into the "Welcome to Envoy" page for GETs.
func TestEnvoyDemo(t *testing.T) {
	dir := conformanceDir(t)
	b, err := xds.LoadBootstrap(filepath.Join(dir, "envoy-demo.yaml"), xds.BootstrapOptions{ListenerAddress: loopback, AdminAddress: "-"})
	if err != nil {
		t.Fatal(err)
	}
	gw := runBootstrap(t, b)
	// The loopback cluster names listener_1's configured port; send it
	// to the port listener_1 got.
	pointCluster(t, b, gw, "loopback", gw.ListenerAddr("listener_1").String())

	resp, body := get(t, http.DefaultClient, "http://"+gw.ListenerAddr("listener_0").String()+"/", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status: got %d, want 404 (no route on listener_1; the mapper keeps the status)", resp.StatusCode)
	}
	if !strings.Contains(body, "<h1>Welcome to Envoy</h1>") {
		t.Errorf("body: got %q, want the Welcome to Envoy page", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=UTF-8" {
		t.Errorf("content-type: got %q, want text/html; charset=UTF-8", ct)
	}

	// The mapper's filter matches GET only: a POST keeps the plain 404.
	req, _ := http.NewRequest(http.MethodPost, "http://"+gw.ListenerAddr("listener_1").String()+"/", nil)
	presp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(presp.Body)
	presp.Body.Close()
	if presp.StatusCode != http.StatusNotFound || bytes.Contains(pb, []byte("Welcome")) {
		t.Errorf("POST: got %d %q, want a 404 without the page", presp.StatusCode, pb)
	}
}

// TestFrontProxy runs configs/front-proxy_envoy.yaml: prefix routes to
// two STRICT_DNS clusters whose names a test resolver maps to loopback
// origins on port 8000 of 127.0.0.2 and 127.0.0.3.
func TestFrontProxy(t *testing.T) {
	dir := conformanceDir(t)
	origins := map[string]string{"service1": "127.0.0.2", "service2": "127.0.0.3"}
	for name, ip := range origins {
		ln, err := net.Listen("tcp", ip+":8000")
		if err != nil {
			t.Fatalf("origin %s on %s:8000: %v", name, ip, err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name+" "+r.URL.Path)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	resolver := cluster.ResolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if ip, ok := origins[host]; ok {
			return []netip.Addr{netip.MustParseAddr(ip)}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	})
	b, err := xds.LoadBootstrap(filepath.Join(dir, "front-proxy.yaml"), xds.BootstrapOptions{
		ListenerAddress: loopback,
		AdminAddress:    "127.0.0.1:0",
		Resolver:        resolver,
	})
	if err != nil {
		t.Fatal(err)
	}
	gw := runBootstrap(t, b)
	if len(b.Config.Listeners) != 1 {
		t.Fatalf("listeners: got %d, want 1", len(b.Config.Listeners))
	}
	base := "http://" + gw.ListenerAddr(b.Config.Listeners[0].Name).String()
	for path, want := range map[string]string{
		"/service/1":     "service1 /service/1",
		"/service/2/foo": "service2 /service/2/foo",
	} {
		var body string
		var status int
		// STRICT_DNS resolves in the background: allow it a moment.
		for deadline := time.Now().Add(5 * time.Second); ; {
			resp, b := get(t, http.DefaultClient, base+path, nil)
			status, body = resp.StatusCode, b
			if status == http.StatusOK || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if status != http.StatusOK || body != want {
			t.Errorf("GET %s: got %d %q, want 200 %q", path, status, body, want)
		}
	}
	if resp, _ := get(t, http.DefaultClient, base+"/other", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other: got %d, want 404", resp.StatusCode)
	}
	if gw.AdminAddr() == nil {
		t.Error("admin listener: not running, want admin.address honoured (overridden to loopback)")
	}
}

// TestEdge runs configs/bugbounty/envoy-edge.yaml in a working directory
// holding test certificates at certs/servercert.pem and certs/serverkey.pem.
func TestEdge(t *testing.T) {
	dir := conformanceDir(t)
	wd := t.TempDir()
	if err := os.Mkdir(filepath.Join(wd, "certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := testcert.NewCA()
	cert, key := ca.Leaf("edge.example.com", "127.0.0.1")
	os.WriteFile(filepath.Join(wd, "certs", "servercert.pem"), cert, 0o600)
	os.WriteFile(filepath.Join(wd, "certs", "serverkey.pem"), key, 0o600)
	t.Chdir(wd)

	b, err := xds.LoadBootstrap(filepath.Join(dir, "edge.yaml"), xds.BootstrapOptions{ListenerAddress: loopback, AdminAddress: "-"})
	if err != nil {
		t.Fatal(err)
	}
	var clusterList bool
	for _, w := range b.Warnings {
		clusterList = clusterList || w.Path == "static_resources.clusters"
	}
	if !clusterList {
		t.Errorf("warnings %v: want one for static_resources.clusters, a single cluster where Envoy expects a list", b.Warnings)
	}
	gw := runBootstrap(t, b)

	// service_foo speaks HTTP/2 (http2_protocol_options): an h2c origin.
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "content "+r.Proto)
	}))
	origin.Config.Protocols = new(http.Protocols)
	origin.Config.Protocols.SetUnencryptedHTTP2(true)
	origin.Start()
	t.Cleanup(origin.Close)
	pointCluster(t, b, gw, "service_foo", origin.Listener.Addr().String())

	base := "https://" + gw.ListenerAddr("listener_https").String()
	for _, proto := range []string{"h2", "http/1.1"} {
		t.Run(proto, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "edge.example.com", NextProtos: []string{proto}}}
			tr.Protocols = new(http.Protocols)
			if proto == "h2" {
				tr.Protocols.SetHTTP2(true)
			} else {
				tr.Protocols.SetHTTP1(true)
			}
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}

			resp, body := get(t, c, base+"/", nil)
			if resp.StatusCode != http.StatusForbidden || body != "denied\n" {
				t.Errorf("GET /: got %d %q, want 403 %q", resp.StatusCode, body, "denied\n")
			}
			if resp.TLS == nil {
				t.Error("GET /: not over TLS")
			}
			resp, body = get(t, c, base+"/content/a", nil)
			if resp.StatusCode != http.StatusOK || body != "content HTTP/2.0" {
				t.Errorf("GET /content/a: got %d %q, want 200 from the h2 upstream", resp.StatusCode, body)
			}

			// headers_with_underscores_action: REJECT_REQUEST.
			req, _ := http.NewRequest(http.MethodGet, base+"/content/a", nil)
			req.Header["X_user"] = []string{"mallory"}
			resp, err := c.Do(req)
			if proto == "h2" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("h2 request with an underscore header: got %d, want the stream reset", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("HTTP/1.1 request with an underscore header: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Errorf("HTTP/1.1 request with an underscore header: got %d (close %v), want 400 and the connection closed", resp.StatusCode, resp.Close)
			}
		})
	}
}

// TestConformanceRejected checks that the configs Portico cannot run are
// rejected with errors naming each unsupported field by its path.
func TestConformanceRejected(t *testing.T) {
	dir := conformanceDir(t)
	tests := []struct {
		file string
		want []string
	}{
		{"proxy-connect.yaml", []string{
			"static_resources.listeners[0]",
			"filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].match.connect_matcher: not supported",
			"filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.upgrade_configs: not supported",
			"filter_chains[0].filters[0].typed_config.http2_protocol_options.allow_connect: not supported",
		}},
		// The upstream PROXY protocol transport socket and its per-host
		// TLVs are the cluster translator's to reject.
		{"proxy-protocol.yaml", []string{"static_resources.clusters[0]", "not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := xds.LoadBootstrap(filepath.Join(dir, tt.file), xds.BootstrapOptions{ListenerAddress: loopback, AdminAddress: "-"})
			if err == nil {
				t.Fatal("loaded; want it rejected")
			}
			if !errors.Is(err, xds.ErrUnsupported) {
				t.Errorf("error %v does not wrap ErrUnsupported", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestProxyProtocolListener runs the listener of proxy_protocol.yaml, which
// Portico supports (the cluster is what it rejects): an HCM without
// http_filters (the router is implicit, as in Envoy), a stdout access log
// and a direct response.
func TestProxyProtocolListener(t *testing.T) {
	dir := conformanceDir(t)
	data, err := os.ReadFile(filepath.Join(dir, "proxy-protocol.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Keep the listener, drop the clusters.
	i := bytes.Index(data, []byte("\n  clusters:"))
	if i < 0 {
		t.Fatal("proxy-protocol.yaml: no clusters section")
	}
	var stdout syncBuffer
	b, err := xds.ParseBootstrap(data[:i+1], xds.BootstrapOptions{ListenerAddress: loopback, AdminAddress: "-", Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	gw := runBootstrap(t, b)
	resp, body := get(t, http.DefaultClient, "http://"+gw.ListenerAddr("listener_0").String()+"/hello", nil)
	if resp.StatusCode != http.StatusOK || body != "OK" {
		t.Errorf("GET: got %d %q, want 200 OK", resp.StatusCode, body)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stdout.String(), "GET /hello"); {
		if time.Now().After(deadline) {
			t.Fatalf("stdout access log: got %q, want a line for GET /hello", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
