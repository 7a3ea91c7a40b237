package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// h1Server is a raw HTTP/1.1 loopback upstream. For each request head read
// on a connection it calls respond with the connection's index (in accept
// order) and the parsed request; respond writes the raw response and
// returns false to close the connection.
type h1Server struct {
	addr  string
	conns atomic.Int32
}

func newH1Server(t *testing.T, respond func(conn int, r *http.Request, w io.Writer) bool) *h1Server {
	t.Helper()
	s := &h1Server{}
	s.addr = rawServer(t, func(conn net.Conn) {
		idx := int(s.conns.Add(1)) - 1
		br := bufio.NewReader(conn)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			// respond sees the body as read whole before the response.
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if !respond(idx, r, conn) {
				return
			}
		}
	})
	return s
}

// send sends a request with method and path over c with a bounded
// context and returns the response with its body read.
func send(t *testing.T, c *Cluster, method, path string) (*http.Response, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://upstream.test"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Send(&Request{HTTP: req})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestH1RequestHead(t *testing.T) {
	heads := make(chan string, 10)
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		var b strings.Builder
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(&b, "%s %s host=%s ua=%q cl=%q x=%q", r.Method, r.RequestURI, r.Host,
			r.Header.Values("User-Agent"), r.Header.Values("Content-Length"), r.Header.Values("X-Test"))
		if len(body) > 0 {
			fmt.Fprintf(&b, " body=%.8q(%d)", body, len(body))
		}
		heads <- b.String()
		io.WriteString(w, "HTTP/1.1 204 No Content\r\n\r\n")
		return true
	})
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})

	tests := []struct {
		name   string
		method string
		url    string
		host   string
		header http.Header
		body   io.Reader
		want   string
	}{
		{name: "get", method: "GET", url: "http://u/a%20b/c?x=1&y", header: http.Header{"X-Test": {"1", "2"}},
			want: `GET /a%20b/c?x=1&y host=` + s.addr + ` ua=[] cl=[] x=["1" "2"]`},
		{name: "host and empty path", method: "GET", url: "http://u", host: "api.example.com",
			want: `GET / host=api.example.com ua=[] cl=[] x=[]`},
		{name: "caller user agent", method: "GET", url: "http://u/", header: http.Header{"User-Agent": {"curl/8"}},
			want: `GET / host=` + s.addr + ` ua=["curl/8"] cl=[] x=[]`},
		{name: "stale framing headers skipped", method: "DELETE", url: "http://u/", header: http.Header{"Content-Length": {"5"}, "Host": {"evil"}},
			want: `DELETE / host=` + s.addr + ` ua=[] cl=[] x=[]`},
		{name: "empty post", method: "POST", url: "http://u/p", body: http.NoBody,
			want: `POST /p host=` + s.addr + ` ua=[] cl=["0"] x=[]`},
		// A body in memory (GetBody set) stays on the synchronous path.
		{name: "buffered body", method: "PUT", url: "http://u/p", body: strings.NewReader("hi"),
			want: `PUT /p host=` + s.addr + ` ua=[] cl=["2"] x=[] body="hi"(2)`},
		// The Transport path adds its User-Agent: proof the request left
		// the synchronous path.
		{name: "streamed body goes to transport", method: "POST", url: "http://u/p", body: struct{ io.Reader }{strings.NewReader("hi")},
			want: `POST /p host=` + s.addr + ` ua=["Go-http-client/1.1"] cl=[] x=[] body="hi"(2)`},
		{name: "large buffered body goes to transport", method: "POST", url: "http://u/p", body: strings.NewReader(strings.Repeat("x", h1MaxBody+1)),
			want: `POST /p host=` + s.addr + ` ua=["Go-http-client/1.1"] cl=["16385"] x=[] body="xxxxxxxx"(16385)`},
		{name: "expect continue goes to transport", method: "POST", url: "http://u/p", body: strings.NewReader("hi"), header: http.Header{"Expect": {"100-continue"}},
			want: `POST /p host=` + s.addr + ` ua=["Go-http-client/1.1"] cl=["2"] x=[] body="hi"(2)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, tt.method, tt.url, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := c.Send(&Request{HTTP: req})
			if err != nil {
				t.Fatalf("Send() error = %v", err)
			}
			resp.Body.Close()
			if got := <-heads; got != tt.want {
				t.Errorf("upstream saw %s, want %s", got, tt.want)
			}
		})
	}
}

func TestH1Responses(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		response  string
		wantCode  int
		wantBody  string
		wantTrail http.Header
		wantConns int32 // after three requests
	}{
		{name: "content-length", response: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
			wantCode: 200, wantBody: "hello", wantConns: 1},
		{name: "chunked with trailers", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n" +
			"3\r\nhel\r\n2\r\nlo\r\n0\r\nGrpc-Status: 0\r\n\r\n",
			wantCode: 200, wantBody: "hello", wantTrail: http.Header{"Grpc-Status": {"0"}}, wantConns: 1},
		{name: "head", method: "HEAD", response: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
			wantCode: 200, wantConns: 1},
		{name: "204", response: "HTTP/1.1 204 No Content\r\n\r\n", wantCode: 204, wantConns: 1},
		{name: "304", response: "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\n", wantCode: 304, wantConns: 1},
		{name: "empty content-length", response: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", wantCode: 200, wantConns: 1},
		{name: "interim responses skipped", response: "HTTP/1.1 100 Continue\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			wantCode: 200, wantBody: "ok", wantConns: 1},
		{name: "connection close", response: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
			wantCode: 200, wantBody: "ok", wantConns: 3},
		{name: "http/1.0 read to close", response: "HTTP/1.0 200 OK\r\n\r\nold",
			wantCode: 200, wantBody: "old", wantConns: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
				io.WriteString(w, tt.response)
				return !strings.Contains(tt.response, "close") && !strings.HasPrefix(tt.response, "HTTP/1.0")
			})
			c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
			method := tt.method
			if method == "" {
				method = "GET"
			}
			for i := range 3 {
				resp, body, err := send(t, c, method, "/")
				if err != nil {
					t.Fatalf("request %d: error = %v", i, err)
				}
				if resp.StatusCode != tt.wantCode || body != tt.wantBody {
					t.Errorf("request %d: got %d %q, want %d %q", i, resp.StatusCode, body, tt.wantCode, tt.wantBody)
				}
				if diff := cmp.Diff(tt.wantTrail, resp.Trailer); tt.wantTrail != nil && diff != "" {
					t.Errorf("request %d: trailers mismatch (-want +got):\n%s", i, diff)
				}
			}
			if got := s.conns.Load(); got != tt.wantConns {
				t.Errorf("connections = %d, want %d", got, tt.wantConns)
			}
		})
	}
}

// TestH1StaleConnRetry has the server close each connection after one
// response, as an upstream's idle timeout does, without saying so: every
// later request finds a dead pooled connection and must be retried on a
// fresh one without surfacing an error.
func TestH1StaleConnRetry(t *testing.T) {
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	// rawServer closes the connection after respond returns. Sleeping
	// after some requests lets the FIN arrive before the next one, others
	// race it: the write-fails and read-EOF cases must both retry.
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
	for i := range 5 {
		_, body, err := send(t, c, "GET", "/")
		if err != nil || body != "ok" {
			t.Fatalf("request %d: body %q, error %v; want ok", i, body, err)
		}
		if i%2 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got, want := s.conns.Load(), int32(5); got != want {
		t.Errorf("connections = %d, want %d", got, want)
	}
}

// TestH1Idle408 has the server answer the second request on each
// connection with a 408 and close, as HAProxy does to idle clients: the
// request is retried on a fresh connection.
func TestH1Idle408(t *testing.T) {
	var n atomic.Int32
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		if n.Add(1) == 2 {
			io.WriteString(w, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			return false
		}
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
	for i := range 3 {
		resp, body, err := send(t, c, "GET", "/")
		if err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: error %v, body %q; want 200 ok", i, err, body)
		}
	}
	if got, want := s.conns.Load(), int32(2); got != want {
		t.Errorf("connections = %d, want %d", got, want)
	}
}

func TestH1CloseMidBody(t *testing.T) {
	s := newH1Server(t, func(conn int, r *http.Request, w io.Writer) bool {
		if conn == 0 {
			io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			return false
		}
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfull")
		return true
	})
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
	_, body, err := send(t, c, "GET", "/")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("body read error = %v (body %q), want io.ErrUnexpectedEOF", err, body)
	}
	_, body, err = send(t, c, "GET", "/")
	if err != nil || body != "full" {
		t.Errorf("next request: body %q, error %v; want %q", body, err, "full")
	}
	if got, want := s.conns.Load(), int32(2); got != want {
		t.Errorf("connections = %d, want %d", got, want)
	}
}

// TestH1BodyDeadline checks that a route deadline passing while the body
// streams surfaces as a body read error wrapping DeadlineExceeded, and
// that a cancel does the same with Canceled.
func TestH1BodyDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart")
		select {
		case <-release:
		case <-time.After(testTimeout):
		}
		return false
	})
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			resp, err := c.Send(newReq(t, ctx, http.MethodGet, nil))
			if err != nil {
				t.Fatalf("Send() error = %v", err)
			}
			defer resp.Body.Close()
			start := time.Now()
			_, err = io.ReadAll(resp.Body)
			if !errors.Is(err, tt.want) {
				t.Errorf("body read error = %v, want it to wrap %v", err, tt.want)
			}
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("body read took %v, want the context to end it", elapsed)
			}
		})
	}
}

// TestH1PooledConnTimeout checks that a deadline set on a pooled
// connection by one request does not leak into the next, and that a
// request after a canceled one gets a working connection.
func TestH1PooledConnTimeout(t *testing.T) {
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		if r.URL.Path == "/slow" {
			time.Sleep(200 * time.Millisecond)
		}
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	resp, err := c.Send(newReq(t, ctx, http.MethodGet, nil))
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	time.Sleep(100 * time.Millisecond) // past the first request's deadline
	_, body, err := send(t, c, "GET", "/slow")
	if err != nil || body != "ok" {
		t.Errorf("request on the pooled connection: body %q, error %v; want ok", body, err)
	}
	if got, want := s.conns.Load(), int32(1); got != want {
		t.Errorf("connections = %d, want %d", got, want)
	}
}

func TestH1IdleTimeout(t *testing.T) {
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	c := newTestCluster(t, Config{IdleTimeout: 50 * time.Millisecond, Endpoints: []Endpoint{{Address: s.addr}}})
	send(t, c, "GET", "/")
	send(t, c, "GET", "/")
	time.Sleep(100 * time.Millisecond)
	if _, _, err := send(t, c, "GET", "/"); err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	if got, want := s.conns.Load(), int32(2); got != want {
		t.Errorf("connections = %d, want %d", got, want)
	}
}

func TestH1Concurrent(t *testing.T) {
	var addrs []Endpoint
	for _, name := range []string{"a", "b"} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ua := r.Header.Get("User-Agent"); ua != "" {
				http.Error(w, "took the Transport path", http.StatusBadRequest)
				return
			}
			io.WriteString(w, name+r.URL.Path)
		}))
		t.Cleanup(ts.Close)
		addrs = append(addrs, Endpoint{Address: hostOf(t, ts.URL)})
	}
	c := newTestCluster(t, Config{MaxIdleConnsPerEndpoint: 4, Endpoints: addrs})
	const workers, perWorker = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				path := fmt.Sprintf("/%d/%d", w, i)
				resp, body, err := send(t, c, "GET", path)
				if err != nil {
					t.Errorf("GET %s: error = %v", path, err)
					return
				}
				if resp.StatusCode != 200 || (body != "a"+path && body != "b"+path) {
					t.Errorf("GET %s = %d %q", path, resp.StatusCode, body)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, ep := range addrs {
		if n := idleConns(c, ep.Address); n > 4 {
			t.Errorf("idle connections to %s = %d, want at most MaxIdleConnsPerEndpoint 4", ep.Address, n)
		}
	}
}

// idleConns returns how many connections the synchronous path holds idle
// for addr.
func idleConns(c *Cluster, addr string) int {
	e, ok := c.h1.endpoints.Load(addr)
	if !ok {
		return 0
	}
	ep := e.(*h1Endpoint)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return len(ep.idle)
}

func TestH1CloseAndCloseIdle(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
	send(t, c, "GET", "/")
	if got := idleConns(c, s.addr); got != 1 {
		t.Fatalf("idle connections = %d, want 1", got)
	}
	c.CloseIdleConnections()
	if got := idleConns(c, s.addr); got != 0 {
		t.Errorf("idle connections after CloseIdleConnections = %d, want 0", got)
	}
	if _, body, err := send(t, c, "GET", "/"); err != nil || body != "ok" {
		t.Fatalf("Send() after CloseIdleConnections: body %q, error %v; want ok", body, err)
	}

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		_, body, err := send(t, c, "GET", "/block")
		done <- result{body, err}
	}()
	<-entered
	c.Close()
	close(release)
	select {
	case r := <-done:
		if r.err != nil || r.body != "ok" {
			t.Errorf("in-flight request: body %q, error %v; want ok", r.body, r.err)
		}
	case <-time.After(testTimeout):
		t.Fatal("in-flight request did not finish")
	}
	if got := idleConns(c, s.addr); got != 0 {
		t.Errorf("idle connections after Close = %d, want 0: released connections must close", got)
	}
}

func TestH1UpdateEndpointsClosesRemoved(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	addrA, addrB := hostOf(t, a.URL), hostOf(t, b.URL)
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: addrA}}})
	get(t, c)
	if got := idleConns(c, addrA); got != 1 {
		t.Fatalf("idle connections to a = %d, want 1", got)
	}
	if err := c.UpdateEndpoints([]Endpoint{{Address: addrB}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.h1.endpoints.Load(addrA); ok {
		t.Errorf("removed endpoint a still has an idle stack")
	}
	if body, _ := get(t, c); body != "b" {
		t.Errorf("body = %q, want b", body)
	}
}

// TestH1Allocs pins the synchronous path's allocations against an
// upstream that allocates nothing: http.ReadResponse's own plus the
// per-response body handle. http.Transport needs 36 for the same.
func TestH1Allocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: cannedServer(t, 128)}}})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://upstream/", nil)
	r := &Request{HTTP: req}
	buf := make([]byte, 512)
	allocs := testing.AllocsPerRun(200, func() {
		resp, err := c.Send(r)
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
	})
	if allocs > 12 {
		t.Errorf("allocations per Send = %v, want at most 12", allocs)
	}
}

// A buffered body is sent again, from GetBody, when a pooled connection
// turns out stale; the server must see it whole every time.
func TestH1StaleConnRetryBody(t *testing.T) {
	bodies := make(chan string, 10)
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		r := newReq(t, ctx, http.MethodPost, strings.NewReader("payload"))
		r.HTTP.Header.Set("Idempotency-Key", "k") // replayable once sent
		resp, err := c.Send(r)
		if err != nil {
			cancel()
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cancel()
		if got := <-bodies; got != "payload" {
			t.Fatalf("request %d: server saw body %q, want payload", i, got)
		}
		if i%2 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// A buffered body shorter than its Content-Length fails the request
// without sending it, with net/http's message.
func TestH1BodyLengthMismatch(t *testing.T) {
	s := newH1Server(t, func(_ int, r *http.Request, w io.Writer) bool {
		t.Errorf("server got a request: %s %s", r.Method, r.URL)
		return false
	})
	c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: s.addr}}})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r := newReq(t, ctx, http.MethodPost, strings.NewReader("abc"))
	r.HTTP.ContentLength = 5
	_, err := c.Send(r)
	if err == nil || !strings.Contains(err.Error(), "ContentLength=5 with Body length 3") {
		t.Fatalf("Send() error = %v, want the length mismatch", err)
	}
}
