package portico

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// statsConfig serves /ok (200) and /missing (404) from the origin through
// cluster "app", /empty through cluster "empty" (no endpoints: 503 UH),
// answers /old with a redirect (301) and /direct with a direct response
// (200), and has no route for anything else (404 NR). The /missing route's
// stats are under its StatPrefix "notfound".
func statsConfig(origin string) Config {
	return Config{
		Listeners: []listener.Config{{
			Name:    "ingress",
			Address: "127.0.0.1:0",
			FilterChains: []listener.FilterChain{{
				Name: "http",
				HTTP: &listener.HTTPConfig{StatPrefix: "ingress_http", RouteConfig: "local"},
			}},
		}},
		Routes: []route.Config{{
			Name: "local",
			VirtualHosts: []route.VirtualHost{{Name: "all", Domains: []string{"*"}, Rules: []route.Rule{
				{Name: "ok", Match: route.Match{Path: "/ok"}, Cluster: "app"},
				{Name: "missing", StatPrefix: "notfound", Match: route.Match{Path: "/missing"}, Cluster: "app"},
				{Name: "empty", Match: route.Match{Path: "/empty"}, Cluster: "empty"},
				{Name: "old", Match: route.Match{Path: "/old"}, Redirect: &route.Redirect{Path: "/ok"}},
				{Name: "direct", Match: route.Match{Path: "/direct"}, DirectResponse: &route.DirectResponse{Status: 200, Body: "direct"}},
			}}},
		}},
		Clusters: []cluster.Config{
			{Name: "app", Endpoints: []cluster.Endpoint{{Address: origin}}},
			{Name: "empty"},
		},
	}
}

// byteCounts are the bytes one side of some connections read and wrote.
type byteCounts struct{ rx, tx atomic.Uint64 }

// countingConn adds what it reads and writes to n.
type countingConn struct {
	net.Conn
	n *byteCounts
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.rx.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.tx.Add(uint64(n))
	return n, err
}

// countingListener counts the bytes of every connection it accepts.
type countingListener struct {
	net.Listener
	n *byteCounts
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: l.n}, nil
}

// startCountingOrigin is startOrigin counting the bytes the origin reads
// and writes.
func startCountingOrigin(t *testing.T, h http.Handler) (string, *byteCounts) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := new(byteCounts)
	srv := &http.Server{Handler: h}
	go srv.Serve(countingListener{Listener: ln, n: n})
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), n
}

// statsOrigin answers /missing with 404 and everything else with "ok".
var statsOrigin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/missing" {
		http.NotFound(w, r)
		return
	}
	io.WriteString(w, "ok")
})

// statsTraffic sends the known traffic pattern and closes its connections:
// over one HTTP/1.1 keep-alive connection 3×200, 2×404 from the origin,
// 1×503 (UH), 1×404 (NR), 1×301 (redirect), 1×200 (direct response); then
// 1×200 from the origin over an h2c connection. It returns the bytes the
// client read and wrote.
func statsTraffic(t *testing.T, addr string) *byteCounts {
	t.Helper()
	n := new(byteCounts)
	client := func(p func(*http.Protocols)) (*http.Client, *http.Transport) {
		tr := &http.Transport{MaxConnsPerHost: 1, Protocols: new(http.Protocols),
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &countingConn{Conn: c, n: n}, nil
			}}
		p(tr.Protocols)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, tr
	}
	h1, tr1 := client(func(p *http.Protocols) { p.SetHTTP1(true) })
	h2c, tr2 := client(func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) })
	for _, c := range []struct {
		client *http.Client
		path   string
		n      int
		want   int
		proto  int
	}{
		{h1, "/ok", 3, 200, 1}, {h1, "/missing", 2, 404, 1}, {h1, "/empty", 1, 503, 1}, {h1, "/nowhere", 1, 404, 1},
		{h1, "/old", 1, 301, 1}, {h1, "/direct", 1, 200, 1},
		{h2c, "/ok", 1, 200, 2},
	} {
		for range c.n {
			resp, err := c.client.Get("http://" + addr + c.path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want || resp.ProtoMajor != c.proto {
				t.Fatalf("GET %s: got %d over HTTP/%d, want %d over HTTP/%d", c.path, resp.StatusCode, resp.ProtoMajor, c.want, c.proto)
			}
		}
	}
	tr1.CloseIdleConnections()
	tr2.CloseIdleConnections()
	return n
}

// series is one expected Prometheus series: its family type and value
// (the sample count for histograms). The labels must match exactly.
type series struct {
	name   string
	labels map[string]string
	typ    dto.MetricType
	value  float64
}

// seriesValue finds the series with exactly labels in fams.
func seriesValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (*dto.Metric, dto.MetricType, bool) {
	fam := fams[name]
	if fam == nil {
		return nil, 0, false
	}
	for _, m := range fam.Metric {
		if len(m.Label) == len(labels) && labelsMatch(m.Label, labels) {
			return m, fam.GetType(), true
		}
	}
	return nil, fam.GetType(), false
}

func metricNumber(m *dto.Metric, typ dto.MetricType) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// waitSeries scrapes until the series has the value, or fails.
func waitSeries(t *testing.T, admin, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, typ, ok := seriesValue(scrape(t, admin), name, labels)
		if ok && metricNumber(m, typ) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v never reached %v", name, labels, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPrometheusScrape drives a known traffic pattern through a real
// gateway and checks names, labels, types and values of the scraped
// /stats/prometheus page with the Prometheus text parser, for the default
// prefix and for "envoy", whose output must be Envoy's exactly.
func TestPrometheusScrape(t *testing.T) {
	for _, prefix := range []string{"", "envoy"} {
		name := prefix
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			origin, upstream := startCountingOrigin(t, statsOrigin)
			g, addr := startGateway(t, statsConfig(origin), Options{StatsPrefix: prefix, RouteStats: true, EndpointStats: true})
			admin := "http://" + g.AdminAddr().String()
			downstream := statsTraffic(t, addr)

			p := prefix
			if p == "" {
				p = DefaultStatsPrefix
			}
			n := func(s string) string { return p + "_" + s }
			hcm := map[string]string{n("http_conn_manager_prefix"): "ingress_http"}
			class := func(c string) map[string]string {
				return map[string]string{n("http_conn_manager_prefix"): "ingress_http", n("response_code_class"): c}
			}
			lis := map[string]string{n("listener_address"): "127.0.0.1_0"}
			lisHCM := map[string]string{n("listener_address"): "127.0.0.1_0", n("http_conn_manager_prefix"): "ingress_http"}
			lisClass := func(c string) map[string]string {
				m := map[string]string{n("response_code_class"): c}
				maps.Copy(m, lisHCM)
				return m
			}
			app := map[string]string{n("cluster_name"): "app"}
			empty := map[string]string{n("cluster_name"): "empty"}
			appCode := func(code string) map[string]string {
				return map[string]string{n("cluster_name"): "app", n("response_code"): code}
			}
			appClass := func(c string) map[string]string {
				return map[string]string{n("cluster_name"): "app", n("response_code_class"): c}
			}
			rt := func(route string, extra ...string) map[string]string {
				m := map[string]string{n("virtual_host"): "all", n("route"): route}
				for i := 0; i+1 < len(extra); i += 2 {
					m[n(extra[i])] = extra[i+1]
				}
				return m
			}
			ep := map[string]string{n("cluster_name"): "app", n("endpoint_address"): origin}
			none := map[string]string{}
			C, G, H := dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM

			// The connection closes asynchronously after the client lets go.
			waitSeries(t, admin, n("http_downstream_cx_active"), hcm, 0)

			fams := scrape(t, admin)
			for _, w := range []series{
				{"http_downstream_rq_total", hcm, C, 10},
				{"http_downstream_rq_completed", hcm, C, 10},
				{"http_downstream_rq_http1_total", hcm, C, 9},
				{"http_downstream_rq_http2_total", hcm, C, 1},
				{"http_downstream_rq_active", hcm, G, 0},
				{"http_downstream_rq_xx", class("2"), C, 5},
				{"http_downstream_rq_xx", class("3"), C, 1},
				{"http_downstream_rq_xx", class("4"), C, 3},
				{"http_downstream_rq_xx", class("5"), C, 1},
				{"http_downstream_rq_time", hcm, H, 10},
				{"http_no_route", hcm, C, 1},
				{"http_no_cluster", hcm, C, 0},
				{"http_rq_redirect", hcm, C, 1},
				{"http_rq_direct_response", hcm, C, 1},
				{"http_downstream_rq_idle_timeout", hcm, C, 0},
				{"http_downstream_rq_timeout", hcm, C, 0},
				{"http_downstream_cx_total", hcm, C, 2},
				{"http_downstream_cx_active", hcm, G, 0},
				{"http_downstream_cx_destroy", hcm, C, 2},
				{"http_downstream_cx_ssl_total", hcm, C, 0},
				{"http_downstream_cx_http1_total", hcm, C, 1},
				{"http_downstream_cx_http2_total", hcm, C, 1},
				{"http_downstream_cx_http1_active", hcm, G, 0},
				{"http_downstream_cx_http2_active", hcm, G, 0},
				{"http_downstream_cx_rx_bytes_total", hcm, C, float64(downstream.tx.Load())},
				{"http_downstream_cx_tx_bytes_total", hcm, C, float64(downstream.rx.Load())},
				{"http_downstream_cx_length_ms", hcm, H, 2},
				{"listener_downstream_cx_total", lis, C, 2},
				{"listener_downstream_cx_active", lis, G, 0},
				{"listener_downstream_cx_destroy", lis, C, 2},
				{"listener_downstream_cx_length_ms", lis, H, 2},
				{"listener_no_filter_chain_match", lis, C, 0},
				{"listener_ssl_connection_error", lis, C, 0},
				{"listener_http_downstream_rq_completed", lisHCM, C, 10},
				{"listener_http_downstream_rq_xx", lisClass("1"), C, 0},
				{"listener_http_downstream_rq_xx", lisClass("2"), C, 5},
				{"listener_http_downstream_rq_xx", lisClass("3"), C, 1},
				{"listener_http_downstream_rq_xx", lisClass("4"), C, 3},
				{"listener_http_downstream_rq_xx", lisClass("5"), C, 1},
				{"cluster_upstream_rq_total", app, C, 6},
				{"cluster_upstream_rq_completed", app, C, 6},
				{"cluster_upstream_rq", appCode("200"), C, 4},
				{"cluster_upstream_rq", appCode("404"), C, 2},
				{"cluster_upstream_rq_xx", appClass("2"), C, 4},
				{"cluster_upstream_rq_xx", appClass("4"), C, 2},
				{"cluster_upstream_rq_time", app, H, 6},
				{"cluster_upstream_rq_active", app, G, 0},
				{"cluster_upstream_cx_none_healthy", empty, C, 1},
				{"cluster_membership_total", app, G, 1},
				{"cluster_membership_healthy", app, G, 1},
				{"cluster_membership_total", empty, G, 0},
				{"cluster_upstream_cx_total", app, C, 1},
				{"cluster_upstream_cx_rx_bytes_total", app, C, float64(upstream.tx.Load())},
				{"cluster_upstream_cx_tx_bytes_total", app, C, float64(upstream.rx.Load())},
				{"cluster_upstream_cx_rx_bytes_total", empty, C, 0},
				{"cluster_upstream_cx_connect_fail", app, C, 0},
				{"cluster_upstream_rq_pending_overflow", app, C, 0},
				{"cluster_circuit_breakers_default_remaining_rq", app, G, cluster.DefaultMaxRequests},
				{"cluster_circuit_breakers_high_rq_open", app, G, 0},
				{"cluster_outlier_detection_ejections_active", app, G, 0},
				{"cluster_health_check_attempt", app, C, 0},
				{"cluster_endpoint_rq_total", ep, C, 6},
				{"cluster_endpoint_rq_success", ep, C, 6},
				{"cluster_endpoint_rq_active", ep, G, 0},
				{"cluster_endpoint_healthy", ep, G, 1},
				{"vhost_route_upstream_rq_total", rt("ok"), C, 4},
				{"vhost_route_upstream_rq", rt("ok", "response_code", "200"), C, 4},
				{"vhost_route_upstream_rq_xx", rt("ok", "response_code_class", "2"), C, 4},
				{"vhost_route_upstream_rq_time", rt("ok"), H, 4},
				{"vhost_route_upstream_rq", rt("notfound", "response_code", "404"), C, 2},
				{"vhost_route_upstream_rq_total", rt("notfound"), C, 2},
				{"cluster_manager_active_clusters", none, G, 2},
				{"cluster_manager_warming_clusters", none, G, 0},
				{"cluster_manager_cluster_added", none, C, 2},
				{"cluster_manager_cluster_removed", none, C, 0},
				{"listener_manager_total_listeners_active", none, G, 1},
				{"listener_manager_listener_added", none, C, 1},
				{"server_live", none, G, 1},
				{"server_state", none, G, 0},
				{"server_concurrency", none, G, float64(runtime.GOMAXPROCS(0))},
				{"server_total_connections", none, G, 0},
			} {
				m, typ, ok := seriesValue(fams, n(w.name), w.labels)
				switch {
				case !ok:
					t.Errorf("%s%v: no such series", n(w.name), w.labels)
				case typ != w.typ:
					t.Errorf("%s: got type %v, want %v", n(w.name), typ, w.typ)
				case metricNumber(m, typ) != w.value:
					t.Errorf("%s%v: got %v, want %v", n(w.name), w.labels, metricNumber(m, typ), w.value)
				}
			}
			if downstream.rx.Load() == 0 || upstream.rx.Load() == 0 {
				t.Errorf("byte counts: downstream %d, upstream %d: want some", downstream.rx.Load(), upstream.rx.Load())
			}
			// Route stats are under the route's StatPrefix, else its name;
			// local responses reach no upstream and charge no route.
			if _, _, ok := seriesValue(fams, n("vhost_route_upstream_rq_total"), rt("missing")); ok {
				t.Errorf("unexpected %s%v: the route has a StatPrefix", n("vhost_route_upstream_rq_total"), rt("missing"))
			}
			for _, r := range []string{"old", "direct"} {
				if m, typ, ok := seriesValue(fams, n("vhost_route_upstream_rq_total"), rt(r)); ok && metricNumber(m, typ) != 0 {
					t.Errorf("%s%v: got %v, want 0", n("vhost_route_upstream_rq_total"), rt(r), metricNumber(m, typ))
				}
			}
			// The local 503 never reached an upstream: no per-code series.
			for _, c := range []string{"app", "empty"} {
				labels := map[string]string{n("cluster_name"): c, n("response_code"): "503"}
				if _, _, ok := seriesValue(fams, n("cluster_upstream_rq"), labels); ok {
					t.Errorf("unexpected %s%v", n("cluster_upstream_rq"), labels)
				}
			}
			for _, gauge := range []string{"server_memory_allocated", "server_memory_heap_size", "server_memory_physical_size"} {
				if m, typ, ok := seriesValue(fams, n(gauge), none); !ok || metricNumber(m, typ) <= 0 {
					t.Errorf("%s: want a positive gauge", n(gauge))
				}
			}
			if _, _, ok := seriesValue(fams, n("server_uptime"), none); !ok {
				t.Errorf("no %s", n("server_uptime"))
			}
			// Envoy's histogram buckets, in milliseconds.
			if m, _, _ := seriesValue(fams, n("cluster_upstream_rq_time"), app); m != nil {
				b := m.GetHistogram().GetBucket()
				// The text format adds the +Inf bucket.
				if len(b) != len(rqTimeBuckets)+1 || b[0].GetUpperBound() != 0.5 || b[len(b)-2].GetUpperBound() != 3600000 {
					t.Errorf("upstream_rq_time buckets: got %v", b)
				}
			}
			// Every family of ours carries the prefix, on its name and on
			// every label but le.
			for name, f := range fams {
				if strings.HasPrefix(name, "go_") {
					continue
				}
				if !strings.HasPrefix(name, p+"_") {
					t.Errorf("family %s lacks the prefix %s_", name, p)
				}
				for _, m := range f.Metric {
					for _, l := range m.Label {
						if !strings.HasPrefix(l.GetName(), p+"_") && l.GetName() != "le" {
							t.Errorf("%s: label %s lacks the prefix", name, l.GetName())
						}
					}
				}
			}
		})
	}
}

// TestStatsEndpoint checks Envoy's /stats: dotted names rebuilt from the
// families and their labels, text and JSON, filter, usedonly, type and the
// histogram summaries.
func TestStatsEndpoint(t *testing.T) {
	origin := startOrigin(t, statsOrigin)
	g, addr := startGateway(t, statsConfig(origin), Options{StatsPrefix: "envoy", RouteStats: true})
	admin := "http://" + g.AdminAddr().String()
	statsTraffic(t, addr)
	waitSeries(t, admin, "envoy_http_downstream_cx_active", map[string]string{"envoy_http_conn_manager_prefix": "ingress_http"}, 0)
	get := func(path string) (int, string) { t.Helper(); return httpGet(t, admin+path) }

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
			"cluster.app.upstream_rq_200: 4",
			"cluster.app.upstream_rq_404: 2",
			"cluster.app.upstream_rq_2xx: 4",
			"cluster.app.upstream_rq_completed: 6",
			"cluster.app.upstream_rq_total: 6",
			"cluster.app.membership_total: 1",
			"cluster.empty.upstream_cx_none_healthy: 1",
			"cluster.empty.upstream_cx_rx_bytes_total: 0",
			"http.ingress_http.downstream_rq_3xx: 1",
			"http.ingress_http.downstream_rq_4xx: 3",
			"http.ingress_http.downstream_rq_5xx: 1",
			"http.ingress_http.downstream_rq_total: 10",
			"http.ingress_http.no_route: 1",
			"http.ingress_http.rq_redirect: 1",
			"http.ingress_http.rq_direct_response: 1",
			"http.ingress_http.downstream_cx_destroy: 2",
			"http.ingress_http.downstream_cx_http1_total: 1",
			"http.ingress_http.downstream_cx_http2_active: 0",
			"listener.127.0.0.1_0.downstream_cx_total: 2",
			"listener.127.0.0.1_0.ssl.connection_error: 0",
			"listener.127.0.0.1_0.http.ingress_http.downstream_rq_2xx: 5",
			"listener.127.0.0.1_0.http.ingress_http.downstream_rq_completed: 10",
			"vhost.all.route.ok.upstream_rq_200: 4",
			"vhost.all.route.notfound.upstream_rq_4xx: 2",
			"cluster_manager.active_clusters: 2",
			"cluster_manager.cluster_added: 2",
			"listener_manager.total_listeners_active: 1",
			"server.live: 1",
			"server.state: 0",
		} {
			if !has[want] {
				t.Errorf("missing line %q", want)
			}
		}
		var sawHist bool
		for i, l := range lines {
			if strings.HasPrefix(l, "cluster.app.upstream_rq_time: P0(nan,") {
				sawHist = true
				if !strings.Contains(l, " P50(nan,") || !strings.Contains(l, " P99.9(nan,") || !strings.HasSuffix(l, ")") {
					t.Errorf("histogram line %q: want Envoy's quantiles", l)
				}
				continue
			}
			if strings.Contains(l, "(nan,") || strings.HasSuffix(l, ": No recorded values") {
				continue // the histograms come after the counters and gauges
			}
			if i > 0 && !strings.Contains(lines[i-1], "(nan,") && lines[i-1] >= l {
				t.Errorf("not sorted: %q before %q", lines[i-1], l)
			}
			if strings.HasPrefix(l, "go_") || strings.HasPrefix(l, "envoy_") || strings.Count(l, ": ") != 1 {
				t.Errorf("unexpected line %q", l)
			}
		}
		if !sawHist {
			t.Errorf("no cluster.app.upstream_rq_time summary in\n%s", body)
		}
	})

	t.Run("json", func(t *testing.T) {
		code, body := get("/stats?format=json&filter=" + "%5Ecluster%5C.app%5C.upstream_rq_")
		if code != 200 {
			t.Fatalf("got %d: %s", code, body)
		}
		var out struct {
			Stats []json.RawMessage `json:"stats"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("parse: %v\n%s", err, body)
		}
		values := map[string]float64{}
		var hist struct {
			Histograms struct {
				Supported []float64 `json:"supported_quantiles"`
				Computed  []struct {
					Name   string `json:"name"`
					Values []struct {
						Interval   *float64 `json:"interval"`
						Cumulative *float64 `json:"cumulative"`
					} `json:"values"`
				} `json:"computed_quantiles"`
			} `json:"histograms"`
		}
		for _, raw := range out.Stats {
			var s struct {
				Name  string  `json:"name"`
				Value float64 `json:"value"`
			}
			if json.Unmarshal(raw, &s) == nil && s.Name != "" {
				values[s.Name] = s.Value
				continue
			}
			if err := json.Unmarshal(raw, &hist); err != nil {
				t.Fatalf("element %s: %v", raw, err)
			}
		}
		if values["cluster.app.upstream_rq_200"] != 4 || values["cluster.app.upstream_rq_total"] != 6 {
			t.Errorf("got %v", values)
		}
		h := hist.Histograms
		if len(h.Supported) != 10 || len(h.Computed) != 1 || h.Computed[0].Name != "cluster.app.upstream_rq_time" {
			t.Fatalf("histograms: got %+v", h)
		}
		for _, v := range h.Computed[0].Values {
			if v.Interval != nil || v.Cumulative == nil || *v.Cumulative < 0 {
				t.Errorf("quantile value %+v: want interval null, cumulative set", v)
			}
		}
	})

	t.Run("filter", func(t *testing.T) {
		_, body := get("/stats?filter=" + "%5Ecluster%5C.app%5C.upstream_rq_%5B0-9%5D%2B%24")
		if got, want := body, "cluster.app.upstream_rq_200: 4\ncluster.app.upstream_rq_404: 2\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("usedonly", func(t *testing.T) {
		_, body := get("/stats?usedonly&filter=%5Ecluster%5C.empty%5C.")
		for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
			if strings.HasSuffix(l, ": 0") || strings.HasSuffix(l, "No recorded values") {
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

	t.Run("type", func(t *testing.T) {
		_, body := get("/stats?type=Gauges&filter=%5Eserver%5C.")
		if !strings.Contains(body, "server.live: 1\n") || strings.Contains(body, "cluster_manager") {
			t.Errorf("type=Gauges: %q", body)
		}
		_, body = get("/stats?type=Counters&filter=%5Eserver%5C.live")
		if body != "" {
			t.Errorf("type=Counters kept gauges: %q", body)
		}
		_, body = get("/stats?type=Histograms&filter=upstream_rq_time")
		if !strings.HasPrefix(body, "cluster.app.upstream_rq_time: P0(nan,") {
			t.Errorf("type=Histograms: %q", body)
		}
		if code, _ := get("/stats?type=Bogus"); code != http.StatusBadRequest {
			t.Errorf("type=Bogus: got %d, want 400", code)
		}
	})

	t.Run("format prometheus", func(t *testing.T) {
		_, body := get("/stats?format=prometheus")
		if !strings.Contains(body, `envoy_cluster_upstream_rq_total{envoy_cluster_name="app"} 6`) {
			t.Errorf("format=prometheus: no envoy_cluster_upstream_rq_total line")
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
		{"http_downstream_cx_rx_bytes_total", map[string]string{"envoy_http_conn_manager_prefix": "ingress_http"}, "http.ingress_http.downstream_cx_rx_bytes_total"},
		{"listener_http_downstream_rq_xx", map[string]string{"envoy_listener_address": "0.0.0.0_8080", "envoy_http_conn_manager_prefix": "ingress_http", "envoy_response_code_class": "5"}, "listener.0.0.0.0_8080.http.ingress_http.downstream_rq_5xx"},
		{"listener_http_downstream_rq_completed", map[string]string{"envoy_listener_address": "[__1]_8080", "envoy_http_conn_manager_prefix": "ingress_http"}, "listener.[__1]_8080.http.ingress_http.downstream_rq_completed"},
		{"listener_downstream_cx_total", map[string]string{"envoy_listener_address": "0.0.0.0_8080"}, "listener.0.0.0.0_8080.downstream_cx_total"},
		{"listener_ssl_connection_error", map[string]string{"envoy_listener_address": "[__1]_8443"}, "listener.[__1]_8443.ssl.connection_error"},
		{"cluster_circuit_breakers_high_rq_open", map[string]string{"envoy_cluster_name": "app"}, "cluster.app.circuit_breakers.high.rq_open"},
		{"cluster_outlier_detection_ejections_active", map[string]string{"envoy_cluster_name": "app"}, "cluster.app.outlier_detection.ejections_active"},
		{"cluster_health_check_attempt", map[string]string{"envoy_cluster_name": "app"}, "cluster.app.health_check.attempt"},
		{"cluster_endpoint_rq_total", map[string]string{"envoy_cluster_name": "app", "envoy_endpoint_address": "10.0.0.1:80"}, "cluster.app.endpoint.10.0.0.1_80.rq_total"},
		{"vhost_route_upstream_rq", map[string]string{"envoy_virtual_host": "vh", "envoy_route": "r", "envoy_response_code": "200"}, "vhost.vh.route.r.upstream_rq_200"},
		{"cluster_manager_active_clusters", nil, "cluster_manager.active_clusters"},
		{"listener_manager_listener_added", nil, "listener_manager.listener_added"},
		{"server_uptime", nil, "server.uptime"},
	} {
		if got := envoyName(c.family, c.labels, tag); got != c.want {
			t.Errorf("envoyName(%q, %v) = %q, want %q", c.family, c.labels, got, c.want)
		}
	}
}

func TestListenerLabel(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:8080": "0.0.0.0_8080",
		"[::1]:8443":   "[__1]_8443",
	} {
		if got := listenerLabel(addr); got != want {
			t.Errorf("listenerLabel(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestQuantile(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	f := func(v float64) *float64 { return &v }
	h := &dto.Histogram{SampleCount: u(4), Bucket: []*dto.Bucket{
		{UpperBound: f(1), CumulativeCount: u(0)},
		{UpperBound: f(5), CumulativeCount: u(2)},
		{UpperBound: f(10), CumulativeCount: u(4)},
	}}
	for q, want := range map[float64]float64{0: 1, 0.25: 3, 0.5: 5, 0.75: 7.5, 1: 10} {
		if got := quantile(h, q); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
}

// TestHotPathStatsAllocations checks that counting costs no allocations
// once the per-code counters are bound.
func TestHotPathStatsAllocations(t *testing.T) {
	m := newMetrics("t")
	st := m.cluster("c")
	st.charge(200)
	st.charge(0) // out of range: class and code are skipped, completion counts
	if allocs := testing.AllocsPerRun(1000, func() { st.charge(200) }); allocs != 0 {
		t.Errorf("charge allocates %.1f per call", allocs)
	}
	if st.codes.codes[100].Load() == nil || st.codes.codes[404-100].Load() != nil {
		t.Error("per-code slot binding wrong")
	}
	h := m.hcm("p")
	obs := m.connObserver("127.0.0.1:0")
	obs.bind("c", &listener.FilterChain{}, h)
	if allocs := testing.AllocsPerRun(1000, func() {
		obs.OnConnOpen("c")
		obs.OnConnClose("c", time.Millisecond)
	}); allocs != 0 {
		t.Errorf("connection observer allocates %.1f per connection", allocs)
	}
	if h.lis == nil || obs.ConnCounters("c") != h.conn || obs.ConnCounters("other") != nil {
		t.Fatal("bind: per-listener stats or connection counters not attached")
	}
	if h2 := m.hcm("p"); h2.conn != h.conn {
		t.Error("connection managers of one stat prefix must share their connection counters")
	}
	if allocs := testing.AllocsPerRun(1000, func() {
		h.completed()
		h.lis.rqXX.inc(200)
	}); allocs != 0 {
		t.Errorf("per-listener stats allocate %.1f per request", allocs)
	}
}

// TestMembershipDegradedGauge: membership_degraded counts the endpoints
// the balancers treat as degraded (EDS status here), not failed ones.
func TestMembershipDegradedGauge(t *testing.T) {
	cfg := simpleConfig("127.0.0.1:1")
	cfg.Clusters[0].Endpoints = []cluster.Endpoint{
		{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2", Health: cluster.Degraded},
		{Address: "127.0.0.1:3", Health: cluster.Degraded}, {Address: "127.0.0.1:4", Health: cluster.Unhealthy},
	}
	g, _ := startGateway(t, cfg, Options{StatsPrefix: "envoy"})
	admin := "http://" + g.AdminAddr().String()
	waitSeries(t, admin, "envoy_cluster_membership_degraded", map[string]string{"envoy_cluster_name": "app"}, 2)
	waitSeries(t, admin, "envoy_cluster_membership_healthy", map[string]string{"envoy_cluster_name": "app"}, 1)
}
