package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/porticoproxy/portico/lb"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

func newTestCluster(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hostOf(t testing.TB, rawURL string) string {
	t.Helper()
	return strings.TrimPrefix(strings.TrimPrefix(rawURL, "http://"), "https://")
}

// newReq builds a request with a placeholder URL host that Send replaces.
func newReq(t testing.TB, ctx context.Context, method string, body io.Reader) *Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://upstream.test/path?q=1", body)
	if err != nil {
		t.Fatal(err)
	}
	return &Request{HTTP: req}
}

// get sends a GET and returns the response body.
func get(t testing.TB, c *Cluster) (string, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.Send(newReq(t, ctx, http.MethodGet, nil))
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b), resp
}

// nameServer returns a server answering with its name.
func nameServer(t testing.TB, name string) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	}))
	t.Cleanup(ts.Close)
	return ts
}

// sendErr sends a GET with ctx and returns the *UpstreamError.
func sendErr(t *testing.T, c *Cluster, ctx context.Context) *UpstreamError {
	t.Helper()
	resp, err := c.Send(newReq(t, ctx, http.MethodGet, nil))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("Send() error = nil, status %d; want an error", resp.StatusCode)
	}
	var ue *UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("Send() error = %T %v, want *UpstreamError", err, err)
	}
	return ue
}

func TestSendRoundRobin(t *testing.T) {
	var eps []Endpoint
	for _, name := range []string{"a", "b", "c"} {
		eps = append(eps, Endpoint{Address: hostOf(t, nameServer(t, name).URL)})
	}
	c := newTestCluster(t, Config{Endpoints: eps})
	got := map[string]int{}
	for range 30 {
		body, _ := get(t, c)
		got[body]++
	}
	want := map[string]int{"a": 10, "b": 10, "c": 10}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("responses per endpoint mismatch (-want +got):\n%s", diff)
	}
}

func TestSendFillsRequest(t *testing.T) {
	var gotHost, gotURI atomic.Value
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		gotURI.Store(r.RequestURI)
	}))
	defer ts.Close()
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}})

	r := newReq(t, context.Background(), http.MethodGet, nil)
	r.HTTP.Host = "api.example.com"
	r.HTTP.RequestURI = "/path?q=1" // as on a server-side request being forwarded
	resp, err := c.Send(r)
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	resp.Body.Close()
	type result struct {
		Endpoint, URLHost, Scheme, UpstreamHost, UpstreamURI string
		Attempts                                             int
	}
	got := result{r.Endpoint, r.HTTP.URL.Host, r.HTTP.URL.Scheme, gotHost.Load().(string), gotURI.Load().(string), r.Attempts}
	want := result{hostOf(t, ts.URL), hostOf(t, ts.URL), "http", "api.example.com", "/path?q=1", 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request mismatch (-want +got):\n%s", diff)
	}
}

func TestKeepAliveReusesConnection(t *testing.T) {
	tests := []struct {
		name  string
		proto Protocol
	}{
		{"http1", HTTP1},
		{"h2c", HTTP2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			}))
			if tt.proto == HTTP2 {
				ts.Config.Protocols = new(http.Protocols)
				ts.Config.Protocols.SetUnencryptedHTTP2(true)
			}
			ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			ts.Start()
			defer ts.Close()
			c := newTestCluster(t, Config{Protocol: tt.proto, Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}})
			for range 200 {
				get(t, c)
			}
			if got, want := conns.Load(), int32(1); got != want {
				t.Errorf("connections opened = %d, want %d", got, want)
			}
		})
	}
}

func TestProtocols(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s tls=%t", r.Proto, r.TLS != nil)
	})
	tests := []struct {
		name  string
		proto Protocol
		tls   bool
		h2    bool // server enables HTTP/2
		want  string
	}{
		{name: "http1", proto: HTTP1, want: "HTTP/1.1 tls=false"},
		{name: "h2c prior knowledge", proto: HTTP2, h2: true, want: "HTTP/2.0 tls=false"},
		{name: "http1 over tls", proto: HTTP1, tls: true, h2: true, want: "HTTP/1.1 tls=true"},
		{name: "h2 over tls", proto: HTTP2, tls: true, h2: true, want: "HTTP/2.0 tls=true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewUnstartedServer(handler)
			cfg := Config{Protocol: tt.proto}
			if tt.tls {
				ts.EnableHTTP2 = tt.h2
				ts.StartTLS()
				cfg.TLS = &TLSConfig{RootCAs: certPEM(ts)}
			} else {
				if tt.h2 {
					ts.Config.Protocols = new(http.Protocols)
					ts.Config.Protocols.SetUnencryptedHTTP2(true)
				}
				ts.Start()
			}
			defer ts.Close()
			cfg.Endpoints = []Endpoint{{Address: hostOf(t, ts.URL)}}
			c := newTestCluster(t, cfg)
			got, _ := get(t, c)
			if got != tt.want {
				t.Errorf("upstream saw %q, want %q", got, tt.want)
			}
		})
	}
}

func certPEM(ts *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
}

func TestTLSServerNameAndFile(t *testing.T) {
	var sni atomic.Value
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ts.TLS = &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni.Store(h.ServerName)
		return nil, nil
	}}
	ts.StartTLS()
	defer ts.Close()
	file := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(file, certPEM(ts), 0o600); err != nil {
		t.Fatal(err)
	}
	// httptest's certificate is valid for example.com.
	c := newTestCluster(t, Config{
		TLS:       &TLSConfig{ServerName: "example.com", RootCAFile: file},
		Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}},
	})
	get(t, c)
	if got, want := sni.Load(), "example.com"; got != want {
		t.Errorf("SNI = %v, want %q", got, want)
	}
}

func TestErrorKinds(t *testing.T) {
	stall := make(chan struct{})
	defer close(stall)
	stalling := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer stalling.Close()

	resetting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer resetting.Close()

	garbage := rawServer(t, func(conn net.Conn) {
		bufio.NewReader(conn).ReadString('\n')
		io.WriteString(conn, "HTTP/1.1 abc nonsense\r\n\r\n")
	})

	closedAddr := closedPort(t)

	untrusted := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshake is expected
	untrusted.StartTLS()
	defer untrusted.Close()

	blockingDialer := func(ctx context.Context, network, address string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}

	tests := []struct {
		name      string
		cfg       Config
		ctx       func() (context.Context, context.CancelFunc)
		wantKind  ErrorKind
		wantIs    []error
		wantNotIs []error
		maxTime   time.Duration
	}{
		{
			name:     "no endpoints",
			cfg:      Config{},
			wantKind: NoHealthyUpstream,
			wantIs:   []error{lb.ErrNoEndpoint},
		},
		{
			name:     "connect refused",
			cfg:      Config{Endpoints: []Endpoint{{Address: closedAddr}}},
			wantKind: ConnectFailure,
		},
		{
			name:      "connect timeout",
			cfg:       Config{ConnectTimeout: 100 * time.Millisecond, Dialer: blockingDialer, Endpoints: []Endpoint{{Address: "127.0.0.1:9"}}},
			wantKind:  ConnectFailure,
			wantNotIs: []error{context.DeadlineExceeded},
			maxTime:   2 * time.Second,
		},
		{
			name:     "tls handshake untrusted",
			cfg:      Config{TLS: &TLSConfig{}, Endpoints: []Endpoint{{Address: hostOf(t, untrusted.URL)}}},
			wantKind: ConnectFailure,
		},
		{
			name: "request deadline while upstream stalls",
			cfg:  Config{Endpoints: []Endpoint{{Address: hostOf(t, stalling.URL)}}},
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			},
			wantKind: Timeout,
			wantIs:   []error{context.DeadlineExceeded},
			maxTime:  2 * time.Second,
		},
		{
			name: "request canceled while upstream stalls",
			cfg:  Config{Endpoints: []Endpoint{{Address: hostOf(t, stalling.URL)}}},
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantKind: Canceled,
			wantIs:   []error{context.Canceled},
			maxTime:  2 * time.Second,
		},
		{
			name:     "connection closed before headers",
			cfg:      Config{Endpoints: []Endpoint{{Address: hostOf(t, resetting.URL)}}},
			wantKind: Reset,
		},
		{
			name:     "malformed response",
			cfg:      Config{Endpoints: []Endpoint{{Address: garbage}}},
			wantKind: ProtocolError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, tt.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			start := time.Now()
			ue := sendErr(t, c, ctx)
			elapsed := time.Since(start)
			if ue.Kind != tt.wantKind {
				t.Errorf("Kind = %v (%v), want %v", ue.Kind, ue, tt.wantKind)
			}
			if ue.Cluster != "test" {
				t.Errorf("Cluster = %q, want %q", ue.Cluster, "test")
			}
			for _, target := range tt.wantIs {
				if !errors.Is(ue, target) {
					t.Errorf("errors.Is(%v, %v) = false, want true", ue, target)
				}
			}
			for _, target := range tt.wantNotIs {
				if errors.Is(ue, target) {
					t.Errorf("errors.Is(%v, %v) = true, want false", ue, target)
				}
			}
			if tt.maxTime > 0 && elapsed > tt.maxTime {
				t.Errorf("Send took %v, want at most %v", elapsed, tt.maxTime)
			}
		})
	}
}

// rawServer serves each accepted loopback connection with fn and returns
// the listener's address.
func rawServer(t *testing.T, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(testTimeout))
				fn(conn)
			})
		}
	})
	return ln.Addr().String()
}

// closedPort returns a loopback address whose listener was just closed.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUpdateEndpointsRemovesAll(t *testing.T) {
	ts := nameServer(t, "a")
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}})
	get(t, c)
	if err := c.UpdateEndpoints(nil); err != nil {
		t.Fatalf("UpdateEndpoints(nil) error = %v", err)
	}
	ue := sendErr(t, c, context.Background())
	if ue.Kind != NoHealthyUpstream || !errors.Is(ue, lb.ErrNoEndpoint) {
		t.Errorf("Send() error = %v (kind %v), want NoHealthyUpstream wrapping lb.ErrNoEndpoint", ue, ue.Kind)
	}
	if got := c.Endpoints(); len(got) != 0 {
		t.Errorf("Endpoints() = %v, want none", got)
	}
}

func TestUpdateEndpointsHealth(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, a.URL)}, {Address: hostOf(t, b.URL)}}})
	tests := []struct {
		health HealthStatus
		want   map[string]int
	}{
		{Unknown, map[string]int{"a": 5, "b": 5}},
		{Healthy, map[string]int{"a": 5, "b": 5}},
		{Unhealthy, map[string]int{"a": 10}},
		{Draining, map[string]int{"a": 10}},
		{HealthCheckTimeout, map[string]int{"a": 10}},
		// Degraded takes a share of the load here (one healthy of two is
		// 70 % available); see TestDegradedEDS.
	}
	for _, tt := range tests {
		t.Run(tt.health.String(), func(t *testing.T) {
			err := c.UpdateEndpoints([]Endpoint{{Address: hostOf(t, a.URL)}, {Address: hostOf(t, b.URL), Health: tt.health}})
			if err != nil {
				t.Fatalf("UpdateEndpoints() error = %v", err)
			}
			got := map[string]int{}
			for range 10 {
				body, _ := get(t, c)
				got[body]++
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("responses mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateEndpointsUnderLoad(t *testing.T) {
	var addrs []string
	for _, name := range []string{"a", "b", "c"} {
		addrs = append(addrs, hostOf(t, nameServer(t, name).URL))
	}
	sets := [][]Endpoint{
		{{Address: addrs[0]}},
		{{Address: addrs[1]}, {Address: addrs[2]}},
		{{Address: addrs[0]}, {Address: addrs[1]}, {Address: addrs[2], Weight: 3}},
		{{Address: addrs[2], Priority: 1}, {Address: addrs[0], Health: Unhealthy}},
	}
	c := newTestCluster(t, Config{Endpoints: sets[0]})

	const workers, perWorker = 4, 150
	var ok atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := c.UpdateEndpoints(sets[i%len(sets)]); err != nil {
				t.Errorf("UpdateEndpoints() error = %v", err)
				return
			}
			_ = c.Endpoints()
		}
	})
	var senders sync.WaitGroup
	for range workers {
		senders.Go(func() {
			for range perWorker {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				resp, err := c.Send(newReq(t, ctx, http.MethodGet, nil))
				if err != nil {
					cancel()
					t.Errorf("Send() error = %v", err)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				cancel()
				if err != nil {
					t.Errorf("read body: %v", err)
					return
				}
				ok.Add(1)
			}
		})
	}
	senders.Wait()
	close(done)
	wg.Wait()
	if got, want := ok.Load(), int64(workers*perWorker); got != want {
		t.Errorf("successful requests = %d, want %d", got, want)
	}
}

func TestTrailers(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte{0, 0, 0, 0, 0})
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "ok")
	})
	for _, proto := range []Protocol{HTTP1, HTTP2} {
		t.Run(proto.String(), func(t *testing.T) {
			ts := httptest.NewUnstartedServer(handler)
			if proto == HTTP2 {
				ts.Config.Protocols = new(http.Protocols)
				ts.Config.Protocols.SetUnencryptedHTTP2(true)
			}
			ts.Start()
			defer ts.Close()
			c := newTestCluster(t, Config{Protocol: proto, Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}})
			_, resp := get(t, c)
			got := map[string]string{"grpc-status": resp.Trailer.Get("Grpc-Status"), "grpc-message": resp.Trailer.Get("Grpc-Message")}
			want := map[string]string{"grpc-status": "0", "grpc-message": "ok"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("trailers mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpgradeEcho(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(testTimeout))
		io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	defer ts.Close()
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}})

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r := newReq(t, ctx, http.MethodGet, nil)
	r.HTTP.Header.Set("Connection", "Upgrade")
	r.HTTP.Header.Set("Upgrade", "echo")
	resp, err := c.Send(r)
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("body is %T, want io.ReadWriteCloser", resp.Body)
	}
	for _, msg := range []string{"hello", "world"} {
		if _, err := io.WriteString(rw, msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(rw, buf); err != nil {
			t.Fatalf("read: %v", err)
		}
		if got := string(buf); got != msg {
			t.Errorf("echo = %q, want %q", got, msg)
		}
	}
}

// doneBalancer wraps round robin and attaches a Done callback.
type doneBalancer struct {
	lb.Balancer
	infos chan lb.DoneInfo
}

func (b *doneBalancer) Picker() lb.Picker {
	p := b.Balancer.Picker()
	return lb.PickerFunc(func(info lb.PickInfo) (lb.PickResult, error) {
		res, err := p.Pick(info)
		res.Done = b.done
		return res, err
	})
}

func (b *doneBalancer) done(info lb.DoneInfo) { b.infos <- info }

func TestDoneCallback(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "body")
	}))
	defer ts.Close()
	bal := &doneBalancer{Balancer: lb.NewRoundRobin(), infos: make(chan lb.DoneInfo, 10)}
	c := newTestCluster(t, Config{
		Balancer:  func() lb.Balancer { return bal },
		Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}},
	})
	resp, err := c.Send(newReq(t, context.Background(), http.MethodGet, nil))
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	select {
	case info := <-bal.infos:
		t.Fatalf("Done(%+v) before the body was read", info)
	default:
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp.Body.Close()
	select {
	case info := <-bal.infos:
		if info.Status != http.StatusTeapot || info.Err != nil || info.Duration <= 0 {
			t.Errorf("Done(%+v), want status 418, nil error, positive duration", info)
		}
	case <-time.After(testTimeout):
		t.Fatal("Done not called")
	}
	select {
	case info := <-bal.infos:
		t.Errorf("Done called twice, second %+v", info)
	default:
	}

	// Errors reach Done too.
	if err := c.UpdateEndpoints([]Endpoint{{Address: closedPort(t)}}); err != nil {
		t.Fatal(err)
	}
	ue := sendErr(t, c, context.Background())
	select {
	case info := <-bal.infos:
		if !errors.Is(info.Err, ue) || info.Status != 0 {
			t.Errorf("Done(%+v), want Err %v and status 0", info, ue)
		}
	case <-time.After(testTimeout):
		t.Fatal("Done not called on error")
	}
}

func TestClose(t *testing.T) {
	ts := nameServer(t, "a")
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}})
	get(t, c)
	for i := range 3 {
		if err := c.Close(); err != nil {
			t.Errorf("Close() #%d error = %v, want nil", i+1, err)
		}
	}
	ue := sendErr(t, c, context.Background())
	if !errors.Is(ue, ErrClosed) || ue.Kind != NoHealthyUpstream {
		t.Errorf("Send() after Close error = %v (kind %v), want NoHealthyUpstream wrapping ErrClosed", ue, ue.Kind)
	}
}

func TestCloseLetsInFlightFinish(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	}))
	defer ts.Close()
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}})
	result := make(chan string, 1)
	go func() {
		body, _ := get(t, c)
		result <- body
	}()
	<-entered
	c.Close()
	close(release)
	select {
	case got := <-result:
		if got != "done" {
			t.Errorf("in-flight body = %q, want %q", got, "done")
		}
	case <-time.After(testTimeout):
		t.Fatal("in-flight request did not finish")
	}
}

func TestConfigAccessors(t *testing.T) {
	eps := []Endpoint{{Address: "127.0.0.1:1", Weight: 2, Priority: 1, Locality: "z", Metadata: map[string]string{"k": "v"}}}
	c := newTestCluster(t, Config{Name: "api", Endpoints: eps, TLS: &TLSConfig{ServerName: "x"}})
	eps[0].Metadata["k"] = "mutated"

	got := c.Config()
	got.Balancer, got.Dialer = nil, nil
	want := Config{
		Name:                    "api",
		Endpoints:               []Endpoint{{Address: "127.0.0.1:1", Weight: 2, Priority: 1, Locality: "z", Metadata: map[string]string{"k": "v"}}},
		ConnectTimeout:          DefaultConnectTimeout,
		IdleTimeout:             DefaultIdleTimeout,
		MaxIdleConnsPerEndpoint: DefaultMaxIdleConnsPerEndpoint,
		TLS:                     &TLSConfig{ServerName: "x"},
		CircuitBreakers: CircuitBreakers{
			Default: Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3},
			High:    Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Config() mismatch (-want +got):\n%s", diff)
	}
	if c.Name() != "api" {
		t.Errorf("Name() = %q, want %q", c.Name(), "api")
	}
	c.Endpoints()[0].Metadata["k"] = "mutated"
	if got := c.Endpoints()[0].Metadata["k"]; got != "v" {
		t.Errorf("Endpoints() metadata = %q after caller mutation, want %q", got, "v")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, in order, of the error; nil for valid
	}{
		{name: "minimal", cfg: Config{Name: "a"}},
		{name: "full", cfg: Config{Name: "a", Protocol: HTTP2, ConnectTimeout: time.Second,
			Endpoints: []Endpoint{{Address: "127.0.0.1:80"}, {Address: "[::1]:443", Health: Degraded}, {Address: "svc.local:8080"}}}},
		{name: "no name", cfg: Config{}, want: []string{"name: must not be empty"}},
		{name: "bad protocol", cfg: Config{Name: "a", Protocol: 7}, want: []string{"protocol: unknown Protocol(7)"}},
		{name: "negative durations", cfg: Config{Name: "a", ConnectTimeout: -1, IdleTimeout: -1, MaxIdleConnsPerEndpoint: -1},
			want: []string{"connect_timeout: negative", "idle_timeout: negative", "max_idle_conns_per_endpoint: negative"}},
		{name: "bad root PEM", cfg: Config{Name: "a", TLS: &TLSConfig{RootCAs: []byte("nope")}}, want: []string{"tls.root_cas: no PEM"}},
		{name: "bad endpoints", cfg: Config{Name: "a", Endpoints: []Endpoint{
			{Address: "127.0.0.1:80"},
			{Address: "127.0.0.1"},
			{Address: ":80"},
			{Address: "h:0"},
			{Address: "h:http"},
			{Address: "127.0.0.1:80"},
			{Address: "h:1", Health: 42},
		}}, want: []string{
			"endpoints[1].address: address 127.0.0.1: missing port",
			"endpoints[2].address: \":80\": missing host",
			"endpoints[3].address: \"h:0\": port must be 1-65535",
			"endpoints[4].address: \"h:http\": port must be 1-65535",
			"endpoints[5].address: \"127.0.0.1:80\" duplicates endpoints[0]",
			"endpoints[6].health: unknown HealthStatus(42)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %q, want %d errors like %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"invalid config", Config{Name: "api", Endpoints: []Endpoint{{Address: "x"}}}, `cluster "api": endpoints[0].address:`},
		{"missing root file", Config{Name: "api", TLS: &TLSConfig{RootCAFile: "/nonexistent/ca.pem"}}, `cluster "api": tls.root_ca_file:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want prefix %q", err, tt.want)
			}
		})
	}
	c := newTestCluster(t, Config{})
	if err := c.UpdateEndpoints([]Endpoint{{Address: "nope"}}); err == nil || !strings.Contains(err.Error(), "endpoints[0].address") {
		t.Errorf("UpdateEndpoints(invalid) error = %v, want endpoints[0].address", err)
	}
}

func TestStrings(t *testing.T) {
	got := []string{
		HTTP1.String(), HTTP2.String(), Protocol(9).String(),
		Unknown.String(), Healthy.String(), Unhealthy.String(), Draining.String(),
		HealthCheckTimeout.String(), Degraded.String(), HealthStatus(-1).String(),
		NoHealthyUpstream.String(), ConnectFailure.String(), Timeout.String(), Reset.String(),
		Overflow.String(), ProtocolError.String(), Canceled.String(), ErrorKind(0).String(),
		(&UpstreamError{Cluster: "c", Endpoint: "h:1", Kind: Reset, Err: io.EOF}).Error(),
		(&UpstreamError{Cluster: "c", Kind: NoHealthyUpstream, Err: lb.ErrNoEndpoint}).Error(),
	}
	want := []string{
		"HTTP1", "HTTP2", "Protocol(9)",
		"Unknown", "Healthy", "Unhealthy", "Draining",
		"HealthCheckTimeout", "Degraded", "HealthStatus(-1)",
		"NoHealthyUpstream", "ConnectFailure", "Timeout", "Reset",
		"Overflow", "ProtocolError", "Canceled", "ErrorKind(0)",
		`cluster "c": endpoint h:1: Reset: EOF`,
		`cluster "c": NoHealthyUpstream: lb: no endpoint available`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("String() mismatch (-want +got):\n%s", diff)
	}
}
