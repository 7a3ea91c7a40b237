package portico

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/accesslog"
)

// reqTimeout is the connection manager's request timeout in these tests;
// reqSlack bounds how late its 408 may come (the race detector is slow).
const (
	reqTimeout = 300 * time.Millisecond
	reqSlack   = 1500 * time.Millisecond
)

// uploadOrigin reads request bodies; it reports on cancelled how a read
// that never completed ended (the gateway gave up on the request), and
// answers "/slow" only after twice the request timeout.
func uploadOrigin(t *testing.T) (string, <-chan error) {
	t.Helper()
	cancelled := make(chan error, 4)
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			cancelled <- err
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(2 * reqTimeout)
		}
		fmt.Fprintf(w, "got %d", n)
	}))
	return origin, cancelled
}

// timedGateway is simpleConfig with the request timeout, an access log of
// code, flags and details, and the given downstream and upstream HTTP
// paths.
func timedGateway(t *testing.T, origin string, stdlib bool, upstream cluster.Protocol) (g *Gateway, addr string, log func() string) {
	t.Helper()
	out := newSyncBuffer()
	logger, err := accesslog.New(accesslog.Config{Format: "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n", Output: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logger.Close() })
	cfg := simpleConfig(origin)
	cfg.Clusters[0].Protocol = upstream
	hc := cfg.Listeners[0].FilterChains[0].HTTP
	hc.RequestTimeout = reqTimeout
	hc.StdlibHTTP1 = stdlib
	hc.Filters = []filter.Filter{logger}
	g, addr = startGateway(t, cfg, Options{})
	log = func() string {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(out.String(), "\n") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // the logger writes on its own goroutine
		}
		return strings.TrimSpace(out.String())
	}
	return g, addr, log
}

// expectRequestTimeoutStats checks downstream_rq_timeout as Envoy's /stats
// and in Prometheus output.
func expectRequestTimeoutStats(t *testing.T, g *Gateway, want float64) {
	t.Helper()
	admin := "http://" + g.AdminAddr().String()
	_, body := httpGet(t, admin+"/stats?filter=downstream_rq_timeout")
	if line := fmt.Sprintf("http.ingress_http.downstream_rq_timeout: %v", want); !strings.Contains(body, line+"\n") {
		t.Errorf("/stats: got %q, want a line %q", body, line)
	}
	m, typ, ok := seriesValue(scrape(t, admin), "portico_http_downstream_rq_timeout", map[string]string{"portico_http_conn_manager_prefix": "ingress_http"})
	if !ok {
		t.Fatal("/stats/prometheus: no portico_http_downstream_rq_timeout{portico_http_conn_manager_prefix=\"ingress_http\"}")
	}
	if got := metricNumber(m, typ); got != want {
		t.Errorf("portico_http_downstream_rq_timeout: got %v, want %v", got, want)
	}
}

// expectUpstreamCancelled checks that the origin's request ended without
// its body (the gateway cancelled it).
func expectUpstreamCancelled(t *testing.T, cancelled <-chan error) {
	t.Helper()
	select {
	case err := <-cancelled:
		t.Logf("origin's body read ended with %v", err)
	case <-time.After(5 * time.Second):
		t.Error("the origin's request was not cancelled within 5 s of the 408")
	}
}

// TestRequestTimeoutProxied sends a request through the gateway whose body
// stalls while the router streams it upstream: the client gets the 408 when
// the timeout expires and then the connection closes, the upstream request
// is cancelled, the access log says 408 request_overall_timeout, and
// downstream_rq_timeout is 1, on both HTTP/1.1 server paths and towards
// HTTP/1.1 and HTTP/2 upstreams.
func TestRequestTimeoutProxied(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stdlib   bool
		upstream cluster.Protocol
	}{
		{"fast path, h1 upstream", false, cluster.HTTP1},
		{"fast path, h2 upstream", false, cluster.HTTP2},
		{"net/http, h1 upstream", true, cluster.HTTP1},
		{"net/http, h2 upstream", true, cluster.HTTP2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origin, cancelled := uploadOrigin(t)
			g, addr, log := timedGateway(t, origin, tc.stdlib, tc.upstream)
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(15 * time.Second))
			start := time.Now()
			io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial body")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			elapsed := time.Since(start)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || string(b) != "request timeout" {
				t.Errorf("got %d %q, want 408 \"request timeout\"", resp.StatusCode, b)
			}
			if elapsed < reqTimeout-50*time.Millisecond || elapsed > reqTimeout+reqSlack {
				t.Errorf("408 after %v, want it when the %v request timeout expires", elapsed, reqTimeout)
			}
			// Envoy closes an HTTP/1.1 connection after a 408.
			var ne net.Error
			if n, err := br.ReadByte(); err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("after the 408: read %q, %v; want the connection closed", n, err)
			}
			expectUpstreamCancelled(t, cancelled)
			if got, want := log(), "408 - request_overall_timeout"; got != want {
				t.Errorf("access log: got %q, want %q", got, want)
			}
			expectRequestTimeoutStats(t, g, 1)
		})
	}
}

// TestRequestTimeoutProxiedHTTP2 is TestRequestTimeoutProxied over h2c,
// with x/net's HTTP/2 client and a request body that stalls: the 408 comes
// on the stream, and the connection carries the next request.
func TestRequestTimeoutProxiedHTTP2(t *testing.T) {
	origin, cancelled := uploadOrigin(t)
	g, addr, log := timedGateway(t, origin, false, cluster.HTTP1)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
	go pw.Write([]byte("partial body")) // then the body stalls
	req, err := http.NewRequest("POST", "http://"+addr+"/upload", pr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout || string(b) != "request timeout" {
		t.Errorf("got %s %d %q, want HTTP/2 408 \"request timeout\"", resp.Proto, resp.StatusCode, b)
	}
	if elapsed < reqTimeout-50*time.Millisecond || elapsed > reqTimeout+reqSlack {
		t.Errorf("408 after %v, want it when the %v request timeout expires", elapsed, reqTimeout)
	}
	expectUpstreamCancelled(t, cancelled)
	if got, want := log(), "408 - request_overall_timeout"; got != want {
		t.Errorf("access log: got %q, want %q", got, want)
	}
	expectRequestTimeoutStats(t, g, 1)

	resp, err = client.Post("http://"+addr+"/next", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "got 5" {
		t.Errorf("next request: got %d %q, want 200 \"got 5\"", resp.StatusCode, b)
	}
	if n := g.metrics.conns["ingress_http"].HTTP2Total.Load(); n != 1 {
		t.Errorf("HTTP/2 connections: got %d, want 1: the 408 must not cost the connection", n)
	}
}

// TestRequestTimeoutSparesSlowUpstreams checks that a request received
// whole within the timeout is answered even though its upstream takes
// twice the timeout to respond, over HTTP/1.1 (both paths) and h2c.
func TestRequestTimeoutSparesSlowUpstreams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stdlib bool
		h2c    bool
	}{
		{"fast path", false, false},
		{"net/http", true, false},
		{"h2c", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origin, _ := uploadOrigin(t)
			g, addr, log := timedGateway(t, origin, tc.stdlib, cluster.HTTP1)
			resp, err := idleClient(t, tc.h2c).Post("http://"+addr+"/slow", "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "got 5" || err != nil {
				t.Errorf("got %d %q (%v), want 200 \"got 5\"", resp.StatusCode, b, err)
			}
			if got, want := log(), "200 - via_upstream"; got != want {
				t.Errorf("access log: got %q, want %q", got, want)
			}
			expectRequestTimeoutStats(t, g, 0)
		})
	}
}
