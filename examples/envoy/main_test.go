package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	testv3 "github.com/envoyproxy/go-control-plane/pkg/test/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/internal/testcert"
)

// syncBuffer collects the example's stdout (access logs).
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

// start runs the example on config with every listener on a free
// loopback port and the admin API on another.
func start(t *testing.T, config string, stdout io.Writer) started {
	t.Helper()
	abs, err := filepath.Abs(config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan started, 1)
	done := make(chan error, 1)
	args := []string{"-c", abs, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-log-level", "error"}
	go func() { done <- run(ctx, args, stdout, io.Discard, ready) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("run did not return within 15 s")
		}
	})
	select {
	case s := <-ready:
		return s
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the example did not start within 15 s")
	}
	return started{}
}

// origin starts an HTTP server answering "<name> <path>".
func origin(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" "+r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// pointCluster sends the traffic of the bootstrap's cluster name to addr.
func pointCluster(t *testing.T, s started, name, addr string) {
	t.Helper()
	for _, c := range s.b.Config.Clusters {
		if c.Name == name {
			c.Endpoints = []cluster.Endpoint{{Address: addr}}
			if err := s.gw.UpsertCluster(c); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no cluster %q", name)
}

func fetch(t *testing.T, c *http.Client, method, url string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestFrontProxyExample(t *testing.T) {
	var stdout syncBuffer
	s := start(t, "configs/front-proxy.yaml", &stdout)
	pointCluster(t, s, "service1", origin(t, "one"))
	pointCluster(t, s, "service2", origin(t, "two"))
	base := "http://" + s.gw.ListenerAddr("front").String()
	for path, want := range map[string]string{"/service/1/a": "one /service/1/a", "/service/2": "two /service/2"} {
		if resp, body := fetch(t, http.DefaultClient, "GET", base+path, nil); resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s: got %d %q, want 200 %q", path, resp.StatusCode, body, want)
		}
	}
	if resp, _ := fetch(t, http.DefaultClient, "GET", base+"/elsewhere", nil); resp.StatusCode != 404 {
		t.Errorf("GET /elsewhere: got %d, want 404", resp.StatusCode)
	}
	// Envoy's stat names, Envoy's access log line.
	_, stats := fetch(t, http.DefaultClient, "GET", "http://"+s.gw.AdminAddr().String()+"/stats", nil)
	if !strings.Contains(stats, "cluster.service1.upstream_rq_total: 1") {
		t.Errorf("/stats: no cluster.service1.upstream_rq_total: 1 in\n%s", stats)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stdout.String(), `"GET /service/2 HTTP/1.1" 200`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("access log: got %q, want a line for GET /service/2", stdout.String())
		}
	}
}

func TestTLSIngressExample(t *testing.T) {
	config, err := filepath.Abs("configs/tls-ingress.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wd := t.TempDir()
	os.Mkdir(filepath.Join(wd, "certs"), 0o755)
	ca := testcert.NewCA()
	cert, key := ca.Leaf("localhost")
	os.WriteFile(filepath.Join(wd, "certs", "server.pem"), cert, 0o600)
	os.WriteFile(filepath.Join(wd, "certs", "server.key"), key, 0o600)
	t.Chdir(wd)

	var stdout syncBuffer
	s := start(t, config, &stdout)
	pointCluster(t, s, "app", origin(t, "app"))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := "https://" + s.gw.ListenerAddr("https").String()

	resp, body := fetch(t, c, "GET", base+"/a//b/../c", nil)
	if resp.StatusCode != 200 || body != "app /a/c" || resp.ProtoMajor != 2 {
		t.Errorf("GET: got %d %q over %s, want 200 %q over h2 (path normalized)", resp.StatusCode, body, resp.Proto, "app /a/c")
	}
	if got := resp.Header.Get("Server"); got != "portico" {
		t.Errorf("server header: got %q, want portico", got)
	}
	if resp, _ := fetch(t, c, "GET", base+"/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("health check: got %d, want 200", resp.StatusCode)
	}
	post, err := http.Post("http://"+s.gw.AdminAddr().String()+"/healthcheck/fail", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if resp, _ := fetch(t, c, "GET", base+"/healthz", nil); resp.StatusCode != 503 {
		t.Errorf("health check after /healthcheck/fail: got %d, want 503", resp.StatusCode)
	}

	// Underscores: HTTP/1.1 gets 400.
	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}
	t.Cleanup(h1.CloseIdleConnections)
	resp, _ = fetch(t, &http.Client{Transport: h1}, "GET", base+"/", http.Header{"X_forwarded_user": {"root"}})
	if resp.StatusCode != 400 {
		t.Errorf("underscore header over HTTP/1.1: got %d, want 400", resp.StatusCode)
	}

	// A failing upstream: the local reply mapper's JSON.
	pointCluster(t, s, "app", "127.0.0.1:1")
	resp, body = fetch(t, c, "GET", base+"/x", http.Header{"X-Request-Id": {"req-1"}})
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 503 || got["code"] != 503.0 || got["request_id"] != "req-1" {
		t.Errorf("upstream down: got %d %q (%v), want 503 with the JSON body", resp.StatusCode, body, err)
	}

	// Plain HTTP is redirected.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, _ = fetch(t, noFollow, "GET", "http://"+s.gw.ListenerAddr("http").String()+"/p?q=1", nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != 301 || !strings.HasPrefix(loc, "https://") || !strings.HasSuffix(loc, ":10443/p?q=1") {
		t.Errorf("http: got %d Location %q, want 301 to https://...:10443/p?q=1", resp.StatusCode, loc)
	}

	// The JSON access log.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stdout.String(), `"request":"GET /a/c HTTP/2"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("access log: got %q, want a JSON line for GET /a/c", stdout.String())
		}
	}
}

// TestADSExample runs configs/ads.yaml against go-control-plane's
// management server (snapshot cache, ADS), listening where the example's
// xds_cluster points once its port is rewritten to a free one.
func TestADSExample(t *testing.T) {
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	gs := grpc.NewServer()
	testv3.RegisterServer(gs, serverv3.NewServer(ctx, cache, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	data, err := os.ReadFile("configs/ads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("port_value: 18000")) {
		t.Fatal("configs/ads.yaml: the management server is no longer on port 18000; update the test")
	}
	config := filepath.Join(t.TempDir(), "ads.yaml")
	os.WriteFile(config, bytes.ReplaceAll(data, []byte("port_value: 18000"), []byte("port_value: "+port)), 0o644)

	app := origin(t, "app")
	host, appPort, _ := net.SplitHostPort(app)
	p, _ := strconv.Atoi(appPort)
	snap, err := cachev3.NewSnapshot("1", map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: {adsListener(t)},
		resourcev3.RouteType:    {adsRoutes()},
		resourcev3.ClusterType:  {adsCluster()},
		resourcev3.EndpointType: {adsEndpoints(host, uint32(p))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.SetSnapshot(ctx, "portico-example", snap); err != nil {
		t.Fatal(err)
	}

	s := start(t, config, io.Discard)
	var last string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if a := s.gw.ListenerAddr("ingress"); a != nil {
			resp, err := http.Get("http://" + a.String() + "/hello")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && string(b) == "app /hello" {
					return
				}
				last = resp.Status + " " + string(b)
			} else {
				last = err.Error()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no traffic through the ADS-delivered listener within 10 s; last: %s", last)
		}
	}
}

var ads = &corev3.ConfigSource{
	ResourceApiVersion:    corev3.ApiVersion_V3,
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
}

func adsListener(t *testing.T) *listenerv3.Listener {
	router, _ := anypb.New(&routerv3.Router{})
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: "ingress_http",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: "routes", ConfigSource: ads,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{
		Name: "ingress",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	}
}

func adsRoutes() *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: "routes",
		VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "app"}}},
		}}}},
	}
}

func adsCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 "app",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
	}
}

func adsEndpoints(host string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: "app",
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
				}}},
			}},
		}}}},
	}
}
