package portico

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/route"
)

// TestPerCodeStatsAndStatsEndpoint drives 3×200 and 2×404 from the origin
// and one local 503 (a cluster without endpoints), then checks the
// per-code Prometheus families and the Envoy-format /stats endpoint.
func TestPerCodeStatsAndStatsEndpoint(t *testing.T) {
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	cfg := simpleConfig(origin, route.Rule{Name: "empty", Match: route.Match{Prefix: "/empty"}, Cluster: "empty"})
	cfg.Clusters = append(cfg.Clusters, cluster.Config{Name: "empty"})
	g, addr := startGateway(t, cfg, Options{StatsPrefix: "envoy"})
	admin := "http://" + g.AdminAddr().String()

	send := func(path string, want int) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	for range 3 {
		send("/ok", 200)
	}
	for range 2 {
		send("/missing", 404)
	}
	send("/empty", 503)

	get := func(path string) (int, string) { t.Helper(); return httpGet(t, admin+path) }

	t.Run("prometheus per-code families", func(t *testing.T) {
		fams := scrape(t, admin)
		value := func(name string, labels map[string]string) (float64, bool) {
			fam := fams[name]
			if fam == nil {
				return 0, false
			}
			for _, m := range fam.Metric {
				if labelsMatch(m.Label, labels) && len(m.Label) == len(labels) {
					if m.Counter != nil {
						return m.GetCounter().GetValue(), true
					}
					return m.GetGauge().GetValue(), true
				}
			}
			return 0, false
		}
		for _, w := range []struct {
			name   string
			labels map[string]string
			value  float64
		}{
			{"envoy_cluster_upstream_rq", map[string]string{"envoy_cluster_name": "app", "envoy_response_code": "200"}, 3},
			{"envoy_cluster_upstream_rq", map[string]string{"envoy_cluster_name": "app", "envoy_response_code": "404"}, 2},
			{"envoy_cluster_upstream_rq_completed", map[string]string{"envoy_cluster_name": "app"}, 5},
			{"envoy_cluster_upstream_rq_completed", map[string]string{"envoy_cluster_name": "empty"}, 0},
			{"envoy_cluster_upstream_cx_none_healthy", map[string]string{"envoy_cluster_name": "empty"}, 1},
			{"envoy_http_downstream_rq_xx", map[string]string{"envoy_http_conn_manager_prefix": "ingress_http", "envoy_response_code_class": "5"}, 1},
			{"envoy_server_live", map[string]string{}, 1},
		} {
			got, ok := value(w.name, w.labels)
			if !ok {
				t.Errorf("%s%v: no such series", w.name, w.labels)
			} else if got != w.value {
				t.Errorf("%s%v: got %v, want %v", w.name, w.labels, got, w.value)
			}
		}
		// The local 503 never reached an upstream: no per-code series.
		for _, code := range []string{"503"} {
			for _, c := range []string{"app", "empty"} {
				if _, ok := value("envoy_cluster_upstream_rq", map[string]string{"envoy_cluster_name": c, "envoy_response_code": code}); ok {
					t.Errorf("unexpected envoy_cluster_upstream_rq{code=%s,cluster=%s}", code, c)
				}
			}
		}
		if v, ok := value("envoy_server_memory_allocated", map[string]string{}); !ok || v <= 0 {
			t.Errorf("envoy_server_memory_allocated: got %v, %v; want > 0", v, ok)
		}
	})

	t.Run("text", func(t *testing.T) {
		code, body := get("/stats")
		if code != 200 {
			t.Fatalf("got %d: %s", code, body)
		}
		lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
		has := map[string]bool{}
		for _, l := range lines {
			has[l] = true
		}
		for _, want := range []string{
			"cluster.app.upstream_rq_200: 3",
			"cluster.app.upstream_rq_404: 2",
			"cluster.app.upstream_rq_2xx: 3",
			"cluster.app.upstream_rq_completed: 5",
			"cluster.app.upstream_rq_total: 5",
			"cluster.empty.upstream_cx_none_healthy: 1",
			"http.ingress_http.downstream_rq_4xx: 2",
			"http.ingress_http.downstream_rq_5xx: 1",
			"http.ingress_http.downstream_rq_total: 6",
			"cluster_manager.active_clusters: 2",
			"server.live: 1",
		} {
			if !has[want] {
				t.Errorf("missing line %q", want)
			}
		}
		var sawListener bool
		for i, l := range lines {
			if i > 0 && lines[i-1] >= l {
				t.Errorf("not sorted: %q before %q", lines[i-1], l)
			}
			if strings.HasPrefix(l, "listener.127.0.0.1_0.downstream_cx_total: ") {
				sawListener = true
			}
			if strings.HasPrefix(l, "go_") || strings.Contains(l, "rq_time:") || strings.Contains(l, "_bucket") || strings.HasPrefix(l, "envoy_") {
				t.Errorf("unexpected line %q", l)
			}
			if strings.Count(l, ": ") != 1 {
				t.Errorf("malformed line %q", l)
			}
		}
		if !sawListener {
			t.Errorf("no listener.127.0.0.1_0.downstream_cx_total line in\n%s", body)
		}
	})

	t.Run("json", func(t *testing.T) {
		code, body := get("/stats?format=json")
		if code != 200 {
			t.Fatalf("got %d: %s", code, body)
		}
		var out struct {
			Stats []struct {
				Name  string  `json:"name"`
				Value float64 `json:"value"`
			} `json:"stats"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("parse: %v\n%s", err, body)
		}
		found := false
		for _, s := range out.Stats {
			if s.Name == "cluster.app.upstream_rq_200" {
				found = s.Value == 3
			}
		}
		if !found {
			t.Errorf("no cluster.app.upstream_rq_200 = 3 in %s", body)
		}
	})

	t.Run("filter", func(t *testing.T) {
		_, body := get("/stats?filter=" + "%5Ecluster%5C.app%5C.upstream_rq_%5B0-9%5D%2B%24")
		if got, want := body, "cluster.app.upstream_rq_200: 3\ncluster.app.upstream_rq_404: 2\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("usedonly", func(t *testing.T) {
		_, body := get("/stats?usedonly&filter=%5Ecluster%5C.empty%5C.")
		for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
			if strings.HasSuffix(l, ": 0") {
				t.Errorf("usedonly kept %q", l)
			}
		}
		if !strings.Contains(body, "cluster.empty.upstream_cx_none_healthy: 1\n") {
			t.Errorf("usedonly dropped a used stat: %q", body)
		}
		_, all := get("/stats?filter=%5Ecluster%5C.empty%5C.")
		if !strings.Contains(all, "cluster.empty.upstream_rq_completed: 0\n") {
			t.Errorf("without usedonly, zero stats should be listed: %q", all)
		}
	})

	t.Run("bad filter", func(t *testing.T) {
		code, body := get("/stats?filter=%28unclosed")
		if code != http.StatusBadRequest || !strings.Contains(body, "missing closing )") {
			t.Errorf("got %d %q, want 400 with the regexp error", code, body)
		}
	})
}

// TestEnvoyName pins the family-to-Envoy-name mapping.
func TestEnvoyName(t *testing.T) {
	tag := func(s string) string { return "envoy_" + s }
	for _, c := range []struct {
		family string
		labels map[string]string
		want   string
	}{
		{"cluster_upstream_rq_total", map[string]string{"envoy_cluster_name": "app"}, "cluster.app.upstream_rq_total"},
		{"cluster_upstream_rq", map[string]string{"envoy_cluster_name": "app", "envoy_response_code": "503"}, "cluster.app.upstream_rq_503"},
		{"cluster_upstream_rq_xx", map[string]string{"envoy_cluster_name": "app", "envoy_response_code_class": "5"}, "cluster.app.upstream_rq_5xx"},
		{"http_downstream_rq_xx", map[string]string{"envoy_http_conn_manager_prefix": "ingress_http", "envoy_response_code_class": "2"}, "http.ingress_http.downstream_rq_2xx"},
		{"listener_downstream_cx_total", map[string]string{"envoy_listener_address": "0.0.0.0_8080"}, "listener.0.0.0.0_8080.downstream_cx_total"},
		{"cluster_manager_active_clusters", nil, "cluster_manager.active_clusters"},
		{"server_uptime", nil, "server.uptime"},
	} {
		if got := envoyName(c.family, c.labels, tag); got != c.want {
			t.Errorf("envoyName(%q, %v) = %q, want %q", c.family, c.labels, got, c.want)
		}
	}
}

// TestClusterChargeAllocations checks the per-code counters bind once and
// then cost no allocations.
func TestClusterChargeAllocations(t *testing.T) {
	m := newMetrics("t", func() float64 { return 0 }, new(atomic.Bool))
	st := m.cluster("c")
	st.charge(200)
	st.charge(0) // out of range: class and code are skipped, completion counts
	if allocs := testing.AllocsPerRun(1000, func() { st.charge(200) }); allocs != 0 {
		t.Errorf("charge allocates %.1f per call", allocs)
	}
	if st.codes[100].Load() == nil || st.codes[404-100].Load() != nil {
		t.Error("per-code slot binding wrong")
	}
}
