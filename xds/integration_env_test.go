package xds

// The integration tests run go-control-plane v0.14.0's real management
// server (pkg/cache/v3 snapshot cache and pkg/server/v3) in-process on
// loopback, with callbacks that record every request, and drive a real
// Gateway serving a loopback origin.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
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
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	testv3 "github.com/envoyproxy/go-control-plane/pkg/test/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/porticoproxy/portico"
)

const testNode = "portico-test"

// controlPlane is a go-control-plane management server on a fixed
// loopback port, which Stop and Start take down and bring back.
type controlPlane struct {
	t     testing.TB
	addr  string
	cache cachev3.SnapshotCache
	srv   serverv3.Server

	mu       sync.Mutex
	gs       *grpc.Server
	requests []*discoveryv3.DiscoveryRequest
	deltaReq []*discoveryv3.DeltaDiscoveryRequest
	deltaRes []*discoveryv3.DeltaDiscoveryResponse
	sotwRes  []*discoveryv3.DiscoveryResponse
	streams  int
}

// newControlPlane starts a management server; ads selects the snapshot
// cache's ADS mode (it then answers non-wildcard types only once every
// resource of the snapshot is requested).
func newControlPlane(t testing.TB, ads bool) *controlPlane {
	t.Helper()
	cp := &controlPlane{t: t, cache: cachev3.NewSnapshotCache(ads, cachev3.IDHash{}, nil)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cp.srv = serverv3.NewServer(ctx, cp.cache, serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			cp.mu.Lock()
			cp.streams++
			cp.mu.Unlock()
			return nil
		},
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			cp.mu.Lock()
			cp.streams++
			cp.mu.Unlock()
			return nil
		},
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			cp.mu.Lock()
			cp.requests = append(cp.requests, r)
			cp.mu.Unlock()
			return nil
		},
		StreamResponseFunc: func(_ context.Context, _ int64, _ *discoveryv3.DiscoveryRequest, r *discoveryv3.DiscoveryResponse) {
			cp.mu.Lock()
			cp.sotwRes = append(cp.sotwRes, r)
			cp.mu.Unlock()
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			cp.mu.Lock()
			cp.deltaReq = append(cp.deltaReq, r)
			cp.mu.Unlock()
			return nil
		},
		StreamDeltaResponseFunc: func(_ int64, _ *discoveryv3.DeltaDiscoveryRequest, r *discoveryv3.DeltaDiscoveryResponse) {
			cp.mu.Lock()
			cp.deltaRes = append(cp.deltaRes, r)
			cp.mu.Unlock()
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = ln.Addr().String()
	cp.serve(ln)
	t.Cleanup(cp.Stop)
	return cp
}

func (cp *controlPlane) serve(ln net.Listener) {
	gs := grpc.NewServer()
	testv3.RegisterServer(gs, cp.srv)
	cp.mu.Lock()
	cp.gs = gs
	cp.mu.Unlock()
	go gs.Serve(ln)
}

// Stop stops the gRPC server, breaking every stream.
func (cp *controlPlane) Stop() {
	cp.mu.Lock()
	gs := cp.gs
	cp.gs = nil
	cp.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
}

// Start serves again on the same port.
func (cp *controlPlane) Start() {
	cp.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly
		if ln, err = net.Listen("tcp", cp.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cp.t.Fatal(err)
	}
	cp.serve(ln)
}

// set installs a snapshot for the test node.
func (cp *controlPlane) set(version string, res map[resourcev3.Type][]types.Resource) {
	cp.t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		cp.t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		cp.t.Fatal(err)
	}
}

// sotwRequests returns the SotW requests received so far.
func (cp *controlPlane) sotwRequests() []*discoveryv3.DiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), cp.requests...)
}

func (cp *controlPlane) sotwResponses() []*discoveryv3.DiscoveryResponse {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discoveryv3.DiscoveryResponse(nil), cp.sotwRes...)
}

func (cp *controlPlane) deltaRequests() []*discoveryv3.DeltaDiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discoveryv3.DeltaDiscoveryRequest(nil), cp.deltaReq...)
}

func (cp *controlPlane) deltaResponses() []*discoveryv3.DeltaDiscoveryResponse {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discoveryv3.DeltaDiscoveryResponse(nil), cp.deltaRes...)
}

// origin is a loopback HTTP server answering "<name>".
func origin(t testing.TB, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// newTestGateway returns a serving gateway with no configuration and an
// admin listener on loopback.
func newTestGateway(t testing.TB) *portico.Gateway {
	t.Helper()
	gw, err := portico.New(portico.Config{}, portico.Options{Admin: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		gw.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return gw
}

// runClient runs an xDS client for gw against cp until the test ends.
func runClient(t testing.TB, gw *portico.Gateway, cp *controlPlane, cfg ClientConfig) *Client {
	t.Helper()
	cfg.Target = cp.addr
	if cfg.Node == nil {
		cfg.Node = &corev3.Node{Id: testNode}
	}
	if cfg.ReconnectBackoff == (Backoff{}) {
		cfg.ReconnectBackoff = Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := NewClient(gw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return c
}

// testLogger logs to the test at debug level when XDS_DEBUG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("XDS_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var testClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// get requests http://<listener address><path> and returns the status
// and body.
func get(gw *portico.Gateway, lis, path string) (int, string, error) {
	addr := gw.ListenerAddr(lis)
	if addr == nil {
		return 0, "", fmt.Errorf("listener %q not serving", lis)
	}
	resp, err := testClient.Get("http://" + addr.String() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// wantBody waits until GET path on lis answers 200 with body.
func wantBody(t testing.TB, gw *portico.Gateway, lis, path, body string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		code, got, err := get(gw, lis, path)
		if err != nil {
			return err
		}
		if code != 200 || got != body {
			return fmt.Errorf("GET %s: %d %q, want 200 %q", path, code, got, body)
		}
		return nil
	})
}

// adminJSON GETs an admin path and decodes it.
func adminJSON(t testing.TB, gw *portico.Gateway, path string) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + gw.AdminAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// adminText GETs an admin path.
func adminText(t testing.TB, gw *portico.Gateway, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + gw.AdminAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric returns the value of the Prometheus sample whose line starts
// with prefix (name and labels), or -1.
func metric(t testing.TB, gw *portico.Gateway, prefix string) float64 {
	t.Helper()
	for _, line := range strings.Split(adminText(t, gw, "/stats/prometheus"), "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, prefix)), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// Resource builders: the smallest Envoy v3 resources of each type.

var adsSource = &corev3.ConfigSource{
	ResourceApiVersion:    corev3.ApiVersion_V3,
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource},
	}
}

func cla(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
			}}},
		}}})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}

// routes is a route configuration sending each path prefix to a cluster.
func routes(name string, prefixToCluster ...string) *routev3.RouteConfiguration {
	var rs []*routev3.Route
	for i := 0; i+1 < len(prefixToCluster); i += 2 {
		rs = append(rs, &routev3.Route{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefixToCluster[i]}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: prefixToCluster[i+1]},
			}},
		})
	}
	return &routev3.RouteConfiguration{
		Name:         name,
		VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: rs}},
	}
}

// hcm returns an HTTP connection manager using RDS route configuration rds.
func hcm(t testing.TB, rds string) *anypb.Any {
	t.Helper()
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		t.Fatal(err)
	}
	m := &hcmv3.HttpConnectionManager{
		StatPrefix: "ingress_http",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: rds, ConfigSource: adsSource,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	}
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// httpListener is a plaintext listener on 127.0.0.1:port (0: any) whose
// connection manager uses RDS route configuration rds.
func httpListener(t testing.TB, name string, port uint32, rds string) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Name: "http",
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm(t, rds)},
			}},
		}},
	}
}

// tlsListener is httpListener terminating TLS with SDS secret secret.
func tlsListener(t testing.TB, name string, port uint32, rds, secret string) *listenerv3.Listener {
	l := httpListener(t, name, port, rds)
	ctx, err := anypb.New(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secret, SdsConfig: adsSource}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	l.FilterChains[0].TransportSocket = &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ctx},
	}
	return l
}

func tlsSecret(name string, certPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
	}}}
}

// snapshot builds a snapshot's resource map.
type snapshot map[resourcev3.Type][]types.Resource

func (s snapshot) add(typ resourcev3.Type, res ...types.Resource) snapshot {
	s[typ] = append(s[typ], res...)
	return s
}

// basic is one EDS cluster "app" on origin addr, route configuration
// "local" sending / to it, and listener "ingress" using it.
func basic(t testing.TB, addr string) snapshot {
	return snapshot{}.
		add(resourcev3.ClusterType, edsCluster("app")).
		add(resourcev3.EndpointType, cla("app", addr)).
		add(resourcev3.RouteType, routes("local", "/", "app")).
		add(resourcev3.ListenerType, httpListener(t, "ingress", 0, "local"))
}
