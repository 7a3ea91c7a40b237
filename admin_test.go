package portico

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
)

// adminDo sends a request to the admin API and returns status, headers
// and body.
func adminDo(t *testing.T, method, url, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAdminToken(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	g, _ := startGateway(t, simpleConfig(origin), Options{AdminToken: "s3cret"})
	admin := "http://" + g.AdminAddr().String()
	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"no token", "/stats", "", http.StatusUnauthorized},
		{"wrong token", "/stats", "s3cre", http.StatusUnauthorized},
		{"right token", "/stats", "s3cret", http.StatusOK},
		{"index without token", "/", "", http.StatusUnauthorized},
		{"pprof without token", "/debug/pprof/", "", http.StatusUnauthorized},
		{"ready is open", "/ready", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, _ := adminDo(t, "GET", admin+tc.path, tc.token)
			if code != tc.want {
				t.Errorf("got %d, want %d", code, tc.want)
			}
			if code == http.StatusUnauthorized && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("401 without a Bearer WWW-Authenticate: %q", hdr.Get("WWW-Authenticate"))
			}
		})
	}
	// Without the token a mutation is refused before it happens.
	if code, _, _ := adminDo(t, "POST", admin+"/healthcheck/fail", ""); code != http.StatusUnauthorized || g.HealthCheckFailed() {
		t.Errorf("unauthenticated POST /healthcheck/fail: got %d, failing=%v", code, g.HealthCheckFailed())
	}
}

func TestAdminMutationsArePOSTOnly(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	g, _ := startGateway(t, simpleConfig(origin), Options{})
	admin := "http://" + g.AdminAddr().String()
	for _, path := range []string{"/healthcheck/fail", "/healthcheck/ok", "/drain_listeners", "/logging?level=debug"} {
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			code, hdr, _ := adminDo(t, method, admin+path, "")
			if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "POST" {
				t.Errorf("%s %s: got %d Allow=%q, want 405 Allow=POST", method, path, code, hdr.Get("Allow"))
			}
		}
	}
	if g.HealthCheckFailed() || g.draining.Load() || g.level.Level() != slog.LevelInfo {
		t.Error("a refused mutation changed state")
	}
}

func TestAdminConfigDump(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	cfg := simpleConfig(origin)
	cfg.Clusters = append(cfg.Clusters, cluster.Config{Name: "other"})
	g, _ := startGateway(t, cfg, Options{})
	admin := "http://" + g.AdminAddr().String()
	getJSON := func(path string) any {
		t.Helper()
		code, body := httpGet(t, admin+path)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
		return v
	}

	t.Run("versions", func(t *testing.T) {
		dump := getJSON("/config_dump").(map[string]any)
		c := dump["clusters"].([]any)[0].(map[string]any)
		if c["name"] != "app" || c["version_info"] != "1" {
			t.Errorf("cluster: got %v", c)
		}
		if ts, err := time.Parse(time.RFC3339Nano, c["last_updated"].(string)); err != nil || time.Since(ts) > time.Minute {
			t.Errorf("last_updated %v: %v", c["last_updated"], err)
		}
		if err := g.UpdateEndpoints("app", []cluster.Endpoint{{Address: origin}}); err != nil {
			t.Fatal(err)
		}
		c = getJSON("/config_dump").(map[string]any)["clusters"].([]any)[0].(map[string]any)
		if c["version_info"] != "2" {
			t.Errorf("after an update: version_info %v, want 2", c["version_info"])
		}
	})

	t.Run("resource and mask", func(t *testing.T) {
		got := getJSON("/config_dump?resource=dynamic_active_clusters&mask=name,version_info")
		want := map[string]any{"configs": []any{
			map[string]any{"name": "app", "version_info": "2"},
			map[string]any{"name": "other", "version_info": "1"},
		}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		// Without resource the mask applies to the whole dump, through lists.
		got = getJSON("/config_dump?mask=clusters.name,route_configs.virtual_hosts.name")
		want = map[string]any{
			"clusters":      []any{map[string]any{"name": "app"}, map[string]any{"name": "other"}},
			"route_configs": []any{map[string]any{"virtual_hosts": []any{map[string]any{"name": "all"}}}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		got = getJSON("/config_dump?resource=clusters&name_regex=%5Eoth&mask=name")
		if diff := cmp.Diff(map[string]any{"configs": []any{map[string]any{"name": "other"}}}, got); diff != "" {
			t.Errorf("name_regex (-want +got):\n%s", diff)
		}
		for _, bad := range []string{"?resource=nonsense", "?name_regex=%28"} {
			if code, _ := httpGet(t, admin+"/config_dump"+bad); code != http.StatusBadRequest {
				t.Errorf("%s: got %d, want 400", bad, code)
			}
		}
	})

	t.Run("rejected updates", func(t *testing.T) {
		g.recordRejection(kindCluster, "app", "v7", map[string]any{"name": "app", "lb_policy": "BOGUS"}, errors.New("lb_policy: unknown BOGUS"))
		g.recordRejection(kindListener, "ghost", "v3", nil, errors.New("address: missing port"))
		got := getJSON("/config_dump?resource=clusters&mask=name,version_info,error_state.details,error_state.version_info,error_state.failed_configuration")
		want := map[string]any{"configs": []any{
			map[string]any{"name": "app", "version_info": "2", "error_state": map[string]any{
				"details": "lb_policy: unknown BOGUS", "version_info": "v7",
				"failed_configuration": map[string]any{"name": "app", "lb_policy": "BOGUS"},
			}},
			map[string]any{"name": "other", "version_info": "1"},
		}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		// A resource rejected before it was ever accepted is listed with
		// its error only.
		got = getJSON("/config_dump?resource=listeners&name_regex=ghost&mask=name,version_info,error_state.details")
		want = map[string]any{"configs": []any{map[string]any{"name": "ghost", "error_state": map[string]any{"details": "address: missing port"}}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		// An accepted update clears the error state.
		time.Sleep(time.Millisecond)
		if err := g.UpdateEndpoints("app", []cluster.Endpoint{{Address: origin}}); err != nil {
			t.Fatal(err)
		}
		got = getJSON("/config_dump?resource=clusters&name_regex=app&mask=error_state")
		if diff := cmp.Diff(map[string]any{"configs": []any{map[string]any{}}}, got); diff != "" {
			t.Errorf("after an accepted update (-want +got):\n%s", diff)
		}
	})
}

// selfSigned returns a self-signed certificate and key valid for life.
func selfSigned(t *testing.T, name string, life time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(0xc0ffee),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(life),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestAdminCerts(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	leaf, key := selfSigned(t, "gw.test", 30*24*time.Hour+time.Hour)
	ca, _ := selfSigned(t, "upstream-ca", 10*24*time.Hour+time.Hour)
	cfg := simpleConfig(origin)
	cfg.Listeners = append(cfg.Listeners, listener.Config{
		Name:    "tls",
		Address: "127.0.0.1:0",
		FilterChains: []listener.FilterChain{{
			Name: "https",
			TLS:  &listener.TLSConfig{Certificates: []listener.Certificate{{CertPEM: leaf, KeyPEM: key}}},
			HTTP: &listener.HTTPConfig{StatPrefix: "ingress_https", RouteConfig: "local"},
		}},
	})
	cfg.Clusters = append(cfg.Clusters, cluster.Config{Name: "secure", TLS: &cluster.TLSConfig{RootCAs: ca}})
	g, _ := startGateway(t, cfg, Options{StatsPrefix: "envoy"})
	admin := "http://" + g.AdminAddr().String()

	_, body := httpGet(t, admin+"/certs")
	var out struct {
		Certificates []struct {
			CACert    []map[string]any `json:"ca_cert"`
			CertChain []map[string]any `json:"cert_chain"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if len(out.Certificates) != 2 {
		t.Fatalf("got %d TLS contexts, want 2:\n%s", len(out.Certificates), body)
	}
	// Sorted by owner: the cluster, then the listener chain.
	caCert, served := out.Certificates[0].CACert, out.Certificates[1].CertChain
	if len(caCert) != 1 || caCert[0]["days_until_expiration"] != "10" || caCert[0]["path"] != "<inline>" {
		t.Errorf("cluster CA: got %v, want 10 days", caCert)
	}
	if len(served) != 1 || served[0]["days_until_expiration"] != "30" || served[0]["serial_number"] != "c0ffee" {
		t.Errorf("listener certificate: got %v, want 30 days, serial c0ffee", served)
	}
	if sans, _ := served[0]["subject_alt_names"].([]any); len(sans) != 1 || sans[0].(map[string]any)["dns"] != "gw.test" {
		t.Errorf("subject_alt_names: got %v", served[0]["subject_alt_names"])
	}
	m, typ, ok := seriesValue(scrape(t, admin), "envoy_server_days_until_first_cert_expiring", map[string]string{})
	if !ok || metricNumber(m, typ) != 10 {
		t.Errorf("envoy_server_days_until_first_cert_expiring: got %v (%v), want 10", m, ok)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

func TestAdminLogging(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	out := newSyncBuffer()
	// The handler lets everything through; the gateway's level decides.
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug - 8}))
	g, _ := startGateway(t, simpleConfig(origin), Options{Logger: logger})
	admin := "http://" + g.AdminAddr().String()

	g.log.Debug("before")
	code, _, body := adminDo(t, "POST", admin+"/logging?level=debug", "")
	if code != 200 || body != "active loggers:\n  portico: debug\n" {
		t.Fatalf("POST /logging?level=debug: got %d %q", code, body)
	}
	if got := g.level.Level(); got != slog.LevelDebug {
		t.Errorf("level: got %v, want DEBUG", got)
	}
	g.log.Debug("after")
	if s := out.String(); strings.Contains(s, "msg=before") || !strings.Contains(s, "msg=after") {
		t.Errorf("log output:\n%s\nwant only the debug record logged after the change", s)
	}
	for _, c := range []struct {
		level string
		want  slog.Level
	}{{"warning", slog.LevelWarn}, {"warn", slog.LevelWarn}, {"error", slog.LevelError}, {"trace", slog.LevelDebug - 4}, {"info", slog.LevelInfo}} {
		if code, _, _ := adminDo(t, "POST", admin+"/logging?level="+c.level, ""); code != 200 || g.level.Level() != c.want {
			t.Errorf("level=%s: got %d, level %v", c.level, code, g.level.Level())
		}
	}
	if code, _, _ := adminDo(t, "POST", admin+"/logging?level=verbose", ""); code != http.StatusBadRequest {
		t.Errorf("unknown level: got %d, want 400", code)
	}
	if code, _, body := adminDo(t, "POST", admin+"/logging", ""); code != 200 || !strings.Contains(body, "portico: info") {
		t.Errorf("POST /logging: got %d %q, want the current level", code, body)
	}

	// Options.LogLevel is the variable /logging changes.
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelError)
	g2, _ := startGateway(t, simpleConfig(origin), Options{LogLevel: lv})
	adminDo(t, "POST", "http://"+g2.AdminAddr().String()+"/logging?level=debug", "")
	if lv.Level() != slog.LevelDebug {
		t.Errorf("Options.LogLevel: got %v, want DEBUG", lv.Level())
	}
}

func TestAdminServerInfoAndMemory(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	g, _ := startGateway(t, simpleConfig(origin), Options{NodeID: "gw-1", NodeCluster: "edge"})
	admin := "http://" + g.AdminAddr().String()

	_, body := httpGet(t, admin+"/server_info")
	var info struct {
		Version string `json:"version"`
		State   string `json:"state"`
		Options struct {
			Concurrency    int    `json:"concurrency"`
			LogLevel       string `json:"log_level"`
			ServiceCluster string `json:"service_cluster"`
			ServiceNode    string `json:"service_node"`
			DrainTime      string `json:"drain_time"`
		} `json:"command_line_options"`
		Node struct {
			ID      string `json:"id"`
			Cluster string `json:"cluster"`
		} `json:"node"`
		Uptime string `json:"uptime_current_epoch"`
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if info.State != "LIVE" || info.Options.Concurrency < 1 || info.Options.LogLevel != "info" ||
		info.Options.ServiceNode != "gw-1" || info.Options.ServiceCluster != "edge" || info.Options.DrainTime != "600s" ||
		info.Node.ID != "gw-1" || info.Node.Cluster != "edge" || !strings.HasSuffix(info.Uptime, "s") ||
		strings.Count(info.Version, "/") != 4 {
		t.Errorf("unexpected server_info:\n%s", body)
	}

	_, body = httpGet(t, admin+"/memory")
	var mem map[string]string
	if err := json.Unmarshal([]byte(body), &mem); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	for _, k := range []string{"allocated", "heap_size", "pageheap_unmapped", "pageheap_free", "total_thread_cache", "total_physical_bytes"} {
		if _, ok := mem[k]; !ok {
			t.Errorf("/memory lacks %q: %s", k, body)
		}
	}
	if mem["allocated"] == "0" || mem["heap_size"] == "0" {
		t.Errorf("/memory: %s", body)
	}
}

func TestAdminClustersAndListeners(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	cfg := simpleConfig(origin)
	cfg.Clusters[0].Endpoints[0].Locality = "eu/eu-west-1a/rack1"
	cfg.Clusters[0].Endpoints[0].Weight = 3
	g, addr := startGateway(t, cfg, Options{})
	admin := "http://" + g.AdminAddr().String()
	for range 2 {
		if code, _ := httpGet(t, "http://"+addr+"/"); code != 200 {
			t.Fatal(code)
		}
	}

	_, text := httpGet(t, admin+"/clusters")
	for _, want := range []string{
		"app::default_priority::max_connections::1024\n",
		"app::high_priority::max_retries::3\n",
		"app::" + origin + "::rq_total::2\n",
		"app::" + origin + "::rq_success::2\n",
		"app::" + origin + "::rq_active::0\n",
		"app::" + origin + "::health_flags::healthy\n",
		"app::" + origin + "::weight::3\n",
		"app::" + origin + "::region::eu\n",
		"app::" + origin + "::zone::eu-west-1a\n",
		"app::" + origin + "::sub_zone::rack1\n",
		"app::" + origin + "::priority::0\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/clusters lacks %q:\n%s", want, text)
		}
	}

	_, body := httpGet(t, admin+"/clusters?format=json")
	var cs struct {
		Statuses []struct {
			Name            string `json:"name"`
			CircuitBreakers struct {
				Thresholds []map[string]any `json:"thresholds"`
			} `json:"circuit_breakers"`
			Hosts []struct {
				Address struct {
					SocketAddress struct {
						Address string `json:"address"`
						Port    int    `json:"port_value"`
					} `json:"socket_address"`
				} `json:"address"`
				Stats []struct {
					Name, Value string
				} `json:"stats"`
				HealthStatus map[string]any `json:"health_status"`
				Weight       int            `json:"weight"`
			} `json:"host_statuses"`
		} `json:"cluster_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &cs); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	host, port, _ := net.SplitHostPort(origin)
	if len(cs.Statuses) != 1 || len(cs.Statuses[0].Hosts) != 1 || len(cs.Statuses[0].CircuitBreakers.Thresholds) != 2 {
		t.Fatalf("unexpected /clusters?format=json:\n%s", body)
	}
	h := cs.Statuses[0].Hosts[0]
	if h.Address.SocketAddress.Address != host || port != strings.TrimPrefix(strings.TrimPrefix(origin, host), ":") ||
		h.Weight != 3 || h.HealthStatus["eds_health_status"] != "UNKNOWN" {
		t.Errorf("host status: %+v", h)
	}
	stats := map[string]string{}
	for _, s := range h.Stats {
		stats[s.Name] = s.Value
	}
	if stats["rq_total"] != "2" || stats["rq_success"] != "2" {
		t.Errorf("host stats: %v", stats)
	}

	_, body = httpGet(t, admin+"/listeners?format=json")
	var ls struct {
		Statuses []struct {
			Name  string `json:"name"`
			Local struct {
				SocketAddress struct {
					Address string `json:"address"`
					Port    int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &ls); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if len(ls.Statuses) != 1 || ls.Statuses[0].Name != "ingress" || ls.Statuses[0].Local.SocketAddress.Address != "127.0.0.1" ||
		ls.Statuses[0].Local.SocketAddress.Port == 0 {
		t.Errorf("/listeners?format=json: %s", body)
	}
}

func TestAdminDrainListeners(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	for _, graceful := range []bool{false, true} {
		name := "immediate"
		if graceful {
			name = "graceful"
		}
		t.Run(name, func(t *testing.T) {
			g, addr := startGateway(t, simpleConfig(origin), Options{DrainTime: time.Second})
			admin := "http://" + g.AdminAddr().String()
			path := "/drain_listeners"
			if graceful {
				path += "?graceful"
			}
			if code, _, body := adminDo(t, "POST", admin+path, ""); code != 200 {
				t.Fatalf("POST %s: %d %s", path, code, body)
			}
			code, _ := httpGet(t, admin+"/ready")
			if graceful {
				// Draining: readiness fails at once, but the listener keeps
				// serving for the drain time.
				if code != http.StatusServiceUnavailable {
					t.Errorf("ready while draining: got %d, want 503", code)
				}
				if c, _ := httpGet(t, "http://"+addr+"/"); c != 200 {
					t.Errorf("request during the drain time: got %d, want 200", c)
				}
			} else if code != 200 {
				t.Errorf("ready after an immediate drain: got %d, want 200 (as Envoy)", code)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					break // the listener is closed
				}
				c.Close()
				if time.Now().After(deadline) {
					t.Fatal("listener still accepting after the drain")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
