package portico

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/accesslog"
	"github.com/porticoproxy/portico/internal/testcert"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// accessLogFormat has every operator issue 4 lists, each under its name.
var accessLogFormat = map[string]string{
	"start_time":        "%START_TIME(%Y-%m-%dT%H:%M:%S)%",
	"method":            "%REQ(:METHOD)%",
	"path":              "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"ua_prefix":         "%REQ(X-MISSING?USER-AGENT):5%",
	"custom":            "%REQ(X-CUSTOM)%",
	"resp_header":       "%RESP(X-ORIGIN)%",
	"trailer":           "%TRAILER(X-CHECKSUM)%",
	"protocol":          "%PROTOCOL%",
	"code":              "%RESPONSE_CODE%",
	"details":           "%RESPONSE_CODE_DETAILS%",
	"flags":             "%RESPONSE_FLAGS%",
	"bytes_received":    "%BYTES_RECEIVED%",
	"bytes_sent":        "%BYTES_SENT%",
	"duration":          "%DURATION%",
	"request_duration":  "%REQUEST_DURATION%",
	"response_duration": "%RESPONSE_DURATION%",
	"upstream_host":     "%UPSTREAM_HOST%",
	"upstream_cluster":  "%UPSTREAM_CLUSTER%",
	"transport_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
	"remote":            "%DOWNSTREAM_REMOTE_ADDRESS%",
	"local":             "%DOWNSTREAM_LOCAL_ADDRESS%",
	"sni":               "%REQUESTED_SERVER_NAME%",
	"route":             "%ROUTE_NAME%",
	"attempts":          "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
}

// TestAccessLogThroughGateway sends a scripted set of requests through a
// real gateway whose connection managers log every operator as JSON, and
// checks each line: a success with a request body, response header and
// trailer; a success over TLS with SNI and HTTP/2; 404 NR; 503 UH; 504 UT;
// and a request retried once after a 503.
func TestAccessLogThroughGateway(t *testing.T) {
	var flaky atomic.Int32
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("X-Origin", "yes")
			w.Header().Set("Trailer", "X-Checksum")
			io.WriteString(w, "hello")
			w.Header().Set("X-Checksum", "c0ffee")
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		case "/flaky":
			if flaky.Add(1) == 1 {
				http.Error(w, "try again", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		}
	}))
	out := newSyncBuffer()
	logger, err := accesslog.New(accesslog.Config{JSON: accessLogFormat, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	ca := testcert.NewCA()
	certPEM, keyPEM := ca.Leaf("gw.test")
	httpCfg := func(prefix string) *listener.HTTPConfig {
		return &listener.HTTPConfig{StatPrefix: prefix, RouteConfig: "local", Filters: []filter.Filter{logger}}
	}
	cfg := Config{
		Listeners: []listener.Config{
			{Name: "ingress", Address: "127.0.0.1:0", FilterChains: []listener.FilterChain{{Name: "http", HTTP: httpCfg("ingress_http")}}},
			{Name: "tls", Address: "127.0.0.1:0", FilterChains: []listener.FilterChain{{
				Name: "https",
				TLS:  &listener.TLSConfig{Certificates: []listener.Certificate{{CertPEM: certPEM, KeyPEM: keyPEM}}},
				HTTP: httpCfg("ingress_https"),
			}}},
		},
		Routes: []route.Config{{
			Name: "local",
			VirtualHosts: []route.VirtualHost{{Name: "all", Domains: []string{"*"}, Rules: []route.Rule{
				{Name: "ok", Match: route.Match{Path: "/ok"}, Cluster: "app"},
				{Name: "empty", Match: route.Match{Path: "/empty"}, Cluster: "empty"},
				{Name: "slow", Match: route.Match{Path: "/slow"}, Cluster: "app", Timeout: 200 * time.Millisecond},
				{Name: "flaky", Match: route.Match{Path: "/flaky"}, Cluster: "app",
					Retry: &route.RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 1, BaseInterval: time.Millisecond}},
			}}},
		}},
		Clusters: []cluster.Config{
			{Name: "app", Endpoints: []cluster.Endpoint{{Address: origin}}},
			{Name: "empty"},
		},
	}
	g, addr := startGateway(t, cfg, Options{})
	tlsAddr := g.ListenerAddr("tls").String()

	type sent struct {
		name   string
		local  string // the gateway address the request went to
		remote string // the client's address as the gateway saw it
	}
	var reqs []sent
	send := func(name string, tc *trackingClient, method, url, body string, want int) {
		t.Helper()
		var remote string
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body == "" {
			req.Body, req.ContentLength = nil, 0
		}
		req.Header.Set("User-Agent", "portico-test/1")
		req.Header.Set("X-Custom", name)
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: got %d, want %d", name, resp.StatusCode, want)
		}
		remote, _ = tc.last.Load().(string)
		reqs = append(reqs, sent{name: name, local: req.URL.Host, remote: remote})
	}
	plain := newTrackingClient(nil)
	h2 := newTrackingClient(&tls.Config{RootCAs: ca.Pool(), ServerName: "gw.test"})
	send("success", plain, "POST", "http://"+addr+"/ok", "hello world", 200)
	send("tls", h2, "GET", "https://"+tlsAddr+"/ok", "", 200)
	send("no route", plain, "GET", "http://"+addr+"/nowhere", "", 404)
	send("no healthy upstream", plain, "GET", "http://"+addr+"/empty", "", 503)
	send("upstream timeout", plain, "GET", "http://"+addr+"/slow", "", 504)
	send("retried", plain, "POST", "http://"+addr+"/flaky", "abc", 200)

	// The TLS connection and the HTTP/2 request show in the stats.
	fams := scrape(t, "http://"+g.AdminAddr().String())
	https := map[string]string{"portico_http_conn_manager_prefix": "ingress_https"}
	for _, name := range []string{"portico_http_downstream_cx_ssl_total", "portico_http_downstream_rq_http2_total"} {
		if m, typ, ok := seriesValue(fams, name, https); !ok || metricNumber(m, typ) != 1 {
			t.Errorf("%s%v: want 1", name, https)
		}
	}

	// OnDone may run after the client has its response: wait for the lines.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "\n") < len(reqs) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := logger.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(reqs) {
		t.Fatalf("got %d access log lines, want %d:\n%s", len(lines), len(reqs), out.String())
	}
	byName := map[string]map[string]any{}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		byName[fmt.Sprint(m["custom"])] = m
	}

	num := func(v float64) any { return v }
	want := map[string]map[string]any{
		"success": {
			"method": "POST", "path": "/ok", "resp_header": "yes", "trailer": "c0ffee", "protocol": "HTTP/1.1",
			"code": num(200), "details": "via_upstream", "flags": "-", "bytes_received": num(11), "bytes_sent": num(5),
			"upstream_host": origin, "upstream_cluster": "app", "transport_failure": "-", "sni": "-", "route": "ok",
			"attempts": num(1),
		},
		"tls": {
			"method": "GET", "path": "/ok", "resp_header": "yes", "trailer": "c0ffee", "protocol": "HTTP/2",
			"code": num(200), "details": "via_upstream", "flags": "-", "bytes_received": num(0), "bytes_sent": num(5),
			"upstream_host": origin, "upstream_cluster": "app", "transport_failure": "-", "sni": "gw.test", "route": "ok",
			"attempts": num(1),
		},
		"no route": {
			"method": "GET", "path": "/nowhere", "resp_header": "-", "trailer": "-", "protocol": "HTTP/1.1",
			"code": num(404), "details": "route_not_found", "flags": "NR", "bytes_received": num(0), "bytes_sent": num(0),
			"upstream_host": "-", "upstream_cluster": "-", "transport_failure": "-", "sni": "-", "route": "-",
			"attempts": num(0),
		},
		"no healthy upstream": {
			"method": "GET", "path": "/empty", "resp_header": "-", "trailer": "-", "protocol": "HTTP/1.1",
			"code": num(503), "details": "no_healthy_upstream", "flags": "UH",
			"bytes_received": num(0), "bytes_sent": num(float64(len("no healthy upstream"))), "upstream_host": "-", "upstream_cluster": "empty", "transport_failure": "-", "sni": "-", "route": "empty",
			"attempts": num(0),
		},
		"upstream timeout": {
			"method": "GET", "path": "/slow", "resp_header": "-", "trailer": "-", "protocol": "HTTP/1.1",
			"code": num(504), "details": "upstream_response_timeout", "flags": "UT",
			"bytes_received": num(0), "bytes_sent": num(float64(len("upstream request timeout"))), "upstream_host": origin, "upstream_cluster": "app", "transport_failure": "-", "sni": "-", "route": "slow",
			"attempts": num(1),
		},
		"retried": {
			"method": "POST", "path": "/flaky", "resp_header": "-", "trailer": "-", "protocol": "HTTP/1.1",
			"code": num(200), "details": "via_upstream", "flags": "-", "bytes_received": num(3), "bytes_sent": num(2),
			"upstream_host": origin, "upstream_cluster": "app", "transport_failure": "-", "sni": "-", "route": "flaky",
			"attempts": num(2),
		},
	}
	for _, r := range reqs {
		got := byName[r.name]
		if got == nil {
			t.Errorf("%s: no access log line", r.name)
			continue
		}
		t.Run(r.name, func(t *testing.T) {
			exact := map[string]any{}
			for k := range want[r.name] {
				exact[k] = got[k]
			}
			if diff := cmp.Diff(want[r.name], exact); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got["ua_prefix"] != "porti" {
				t.Errorf("ua_prefix: got %v, want porti", got["ua_prefix"])
			}
			if got["local"] != r.local {
				t.Errorf("local: got %v, want %s", got["local"], r.local)
			}
			if got["remote"] != r.remote {
				t.Errorf("remote: got %v, want %s", got["remote"], r.remote)
			}
			st, err := time.Parse("2006-01-02T15:04:05", fmt.Sprint(got["start_time"]))
			if err != nil || time.Since(st) > time.Minute || time.Since(st) < -time.Second {
				t.Errorf("start_time %v: %v", got["start_time"], err)
			}
			dur, _ := got["duration"].(float64)
			if _, ok := got["duration"].(float64); !ok || dur > 10000 {
				t.Errorf("duration: got %v", got["duration"])
			}
			if r.name == "upstream timeout" && dur < 200 {
				t.Errorf("duration of the timed out request: got %v, want >= 200 (the route timeout)", dur)
			}
			// The request (headers, then any body) was whole before the
			// response started, and both within the exchange.
			reqDur, ok1 := got["request_duration"].(float64)
			respDur, ok2 := got["response_duration"].(float64)
			if !ok1 || !ok2 || reqDur > respDur || respDur > dur {
				t.Errorf("request_duration %v, response_duration %v, duration %v: want numbers in order", got["request_duration"], got["response_duration"], got["duration"])
			}
		})
	}
}

// trackingClient is an HTTP client that remembers the local address of
// its last connection, to compare with %DOWNSTREAM_REMOTE_ADDRESS%.
type trackingClient struct {
	client *http.Client
	last   atomic.Value // string
}

func newTrackingClient(tlsCfg *tls.Config) *trackingClient {
	tc := &trackingClient{}
	d := &net.Dialer{}
	tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: tlsCfg != nil}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			tc.last.Store(c.LocalAddr().String())
		}
		return c, err
	}
	tc.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return tc
}
