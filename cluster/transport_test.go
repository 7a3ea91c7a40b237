package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connServer counts the connections it accepts and closes. Requests to
// /hold block until release is closed.
type connServer struct {
	*httptest.Server
	opened, closed atomic.Int32
	held           chan struct{}
	release        chan struct{}
}

func newConnServer(t *testing.T, h2c bool) *connServer {
	t.Helper()
	s := &connServer{held: make(chan struct{}, 16), release: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/hold" {
			s.held <- struct{}{}
			<-s.release
		}
		io.WriteString(w, "ok")
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	if h2c {
		s.Config.Protocols = new(http.Protocols)
		s.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	s.Start()
	t.Cleanup(func() {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
		s.Close()
	})
	return s
}

// do sends one request with method (a body for POST) to path.
// postBuffered is a method for do: a POST whose body is in memory
// (GetBody set), which takes the synchronous path; a plain POST's body is
// streamed, which takes the Transport.
const postBuffered = "POST (buffered)"

func do(t *testing.T, c *Cluster, method, path string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var body io.Reader
	switch method {
	case http.MethodPost:
		body = struct{ io.Reader }{strings.NewReader("payload")} // no GetBody
	case postBuffered:
		method, body = http.MethodPost, strings.NewReader("payload")
	}
	r := newReq(t, ctx, method, body)
	r.HTTP.URL.Path = path
	resp, err := c.Send(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	tests := []struct {
		name   string
		method string // GET and postBuffered take the synchronous path, POST the Transport
		h2c    bool
	}{
		{"h1 sync", http.MethodGet, false},
		{"h1 sync body", postBuffered, false},
		{"h1 transport", http.MethodPost, false},
		{"h2c no body", http.MethodGet, true},
		{"h2c body", http.MethodPost, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newConnServer(t, tt.h2c)
			cfg := Config{Endpoints: []Endpoint{{Address: hostOf(t, s.URL)}}, MaxRequestsPerConnection: 2}
			if tt.h2c {
				cfg.Protocol = HTTP2
			}
			c := newTestCluster(t, cfg)
			for i := range 5 {
				if err := do(t, c, tt.method, "/"); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
			}
			if got := s.opened.Load(); got != 3 {
				t.Errorf("server saw %d connections for 5 requests at 2 per connection, want 3", got)
			}
			waitFor(t, "retired connections to close", func() bool { return s.closed.Load() == 2 })
			if st := c.ConnStats(); st.MaxRequests != 2 || st.Total != 3 {
				t.Errorf("ConnStats = %+v, want MaxRequests 2, Total 3", st)
			}
		})
	}
}

func TestMaxConnectionDuration(t *testing.T) {
	for _, method := range []string{http.MethodGet, postBuffered, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			s := newConnServer(t, false)
			const d = 150 * time.Millisecond
			c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, s.URL)}}, MaxConnectionDuration: d})
			start := time.Now()
			for time.Since(start) < d/2 {
				if err := do(t, c, method, "/"); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.opened.Load(); got != 1 {
				t.Fatalf("%d connections before the duration passed, want 1", got)
			}
			if method == http.MethodPost {
				// The Transport's idle connection is closed when it expires.
				waitFor(t, "the expired idle connection to close", func() bool { return s.closed.Load() == 1 })
			} else {
				time.Sleep(d)
			}
			if err := do(t, c, method, "/"); err != nil {
				t.Fatal(err)
			}
			if got := s.opened.Load(); got != 2 {
				t.Errorf("%d connections, want a new one after the duration", got)
			}
			if st := c.ConnStats(); st.MaxDurationReached != 1 {
				t.Errorf("ConnStats().MaxDurationReached = %d, want 1", st.MaxDurationReached)
			}
		})
	}

	t.Run("busy connection", func(t *testing.T) {
		s := newConnServer(t, false)
		c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, s.URL)}}, MaxConnectionDuration: 50 * time.Millisecond})
		errc := make(chan error, 1)
		go func() { errc <- do(t, c, http.MethodPost, "/hold") }()
		<-s.held
		time.Sleep(100 * time.Millisecond) // expires while busy
		close(s.release)
		if err := <-errc; err != nil {
			t.Fatalf("request in flight at expiry: %v", err)
		}
		waitFor(t, "the expired connection to close once idle", func() bool { return s.closed.Load() == 1 })
	})
}

func TestMaxConnectionsOverflow(t *testing.T) {
	for _, method := range []string{http.MethodGet, postBuffered, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			s := newConnServer(t, false)
			c := newTestCluster(t, Config{
				Endpoints:       []Endpoint{{Address: hostOf(t, s.URL)}},
				CircuitBreakers: CircuitBreakers{Default: Thresholds{MaxConnections: 1}},
			})
			errc := make(chan error, 1)
			go func() { errc <- do(t, c, method, "/hold") }()
			<-s.held
			err := do(t, c, method, "/")
			var ue *UpstreamError
			if !errors.As(err, &ue) || ue.Kind != Overflow {
				t.Fatalf("second connection: error = %v, want Kind Overflow", err)
			}
			if st := c.ConnStats(); st.Overflow != 1 || st.Active != 1 {
				t.Errorf("ConnStats = %+v, want Overflow 1, Active 1", st)
			}
			close(s.release)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if err := do(t, c, method, "/"); err != nil {
				t.Errorf("request after the connection freed up: %v", err)
			}
			c.Close()
			waitFor(t, "connections to close", func() bool { return c.ConnStats().Active == 0 })
			if st := c.ConnStats(); st.Total != st.Destroy {
				t.Errorf("ConnStats = %+v, want Total = Destroy once all are closed", st)
			}
		})
	}
}

func TestMiddleware(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	record := func(name string) func(http.RoundTripper) http.RoundTripper {
		return func(next http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(req *http.Request) (*http.Response, error) {
				_, hasDeadline := req.Context().Deadline()
				mu.Lock()
				calls = append(calls, name+" "+req.Method+" "+req.URL.Host+" deadline="+boolString(hasDeadline))
				mu.Unlock()
				req.Header.Set("X-Signed", name)
				return next.RoundTrip(req)
			})
		}
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Signed"))
	}))
	defer ts.Close()
	addr := hostOf(t, ts.URL)
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: addr}}, Middleware: []func(http.RoundTripper) http.RoundTripper{record("outer"), record("inner")}})

	body, _ := get(t, c)
	if body != "inner" {
		t.Errorf("upstream saw X-Signed %q, want the inner middleware's", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r := newReq(t, ctx, http.MethodPost, strings.NewReader("x"))
	r.Deadline = time.Now().Add(testTimeout)
	resp, err := c.Send(r)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	want := []string{
		"outer GET " + addr + " deadline=true", "inner GET " + addr + " deadline=true",
		"outer POST " + addr + " deadline=true", "inner POST " + addr + " deadline=true",
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("middleware calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}

	// A middleware's *UpstreamError keeps its kind; other errors are
	// classified.
	refuse := func(http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, &UpstreamError{Kind: Overflow, Err: errors.New("quota")}
		})
	}
	c2 := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: addr}}, Middleware: []func(http.RoundTripper) http.RoundTripper{refuse}})
	if ue := sendErr(t, c2, ctx); ue.Kind != Overflow {
		t.Errorf("kind = %v, want the middleware's Overflow", ue.Kind)
	}
	if _, err := New(Config{Name: "nil", Middleware: []func(http.RoundTripper) http.RoundTripper{
		func(http.RoundTripper) http.RoundTripper { return nil },
	}}); err == nil || !strings.Contains(err.Error(), "middleware[0]") {
		t.Errorf("New with a middleware returning nil: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestTCPKeepalive(t *testing.T) {
	kc := (&TCPKeepalive{Probes: 3, Time: 30 * time.Second}).dialerConfig()
	if !kc.Enable || kc.Count != 3 || kc.Idle != 30*time.Second || kc.Interval != -1 {
		t.Errorf("dialer keep-alive = %+v, want probes 3, time 30s, OS interval", kc)
	}
	if kc := (*TCPKeepalive)(nil).dialerConfig(); kc.Enable {
		t.Errorf("nil TCPKeepalive changes Go's default: %+v", kc)
	}
	ts := nameServer(t, "ka")
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}, TCPKeepalive: &TCPKeepalive{Probes: 2, Time: time.Minute, Interval: 10 * time.Second}})
	if body, _ := get(t, c); body != "ka" {
		t.Errorf("body = %q", body)
	}
}

// TestConnStatsLifecycle checks the counters over a connection's life on
// the synchronous path, with no limits configured.
func TestConnStatsLifecycle(t *testing.T) {
	ts := nameServer(t, "x")
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}, {Address: closedPort(t)}}})
	for range 4 {
		do(t, c, http.MethodGet, "/")
	}
	st := c.ConnStats()
	if st.Total != 3 || st.Active != 1 || st.ConnectFail != 2 || st.Destroy != 2 {
		t.Errorf("ConnStats = %+v, want Total 3, Active 1, ConnectFail 2, Destroy 2", st)
	}
	c.Close()
	if st := c.ConnStats(); st.Active != 0 || st.Destroy != 3 {
		t.Errorf("ConnStats after Close = %+v", st)
	}
}
