package listener

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

func TestUnderscoreHeaders(t *testing.T) {
	tests := []struct {
		action     UnderscoreAction
		wantStatus int
		wantSeen   string // the X_user value the handler saw
	}{
		{AllowUnderscores, 200, "alice"},
		{RejectUnderscores, 400, ""},
		{DropUnderscores, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.action.String(), func(t *testing.T) {
			var seen string
			cfg := HTTPConfig{HeadersWithUnderscores: tt.action, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = r.Header.Get("X_user")
			})}
			r := httptest.NewRequest("GET", "/", nil)
			r.Header["X_user"] = []string{"alice"}
			r.Header.Set("X-Other", "kept")
			w := httptest.NewRecorder()
			newHCM(&cfg).ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Errorf("status: got %d, want %d", w.Code, tt.wantStatus)
			}
			if seen != tt.wantSeen {
				t.Errorf("handler saw X_user %q, want %q", seen, tt.wantSeen)
			}
			if tt.action == RejectUnderscores && w.Header().Get("Connection") != "close" {
				t.Errorf("rejected HTTP/1 request: Connection %q, want close", w.Header().Get("Connection"))
			}
		})
	}
}

// TestUnderscoreRejectOverTheWire checks Envoy's REJECT_REQUEST on both
// protocols: HTTP/1 gets 400 and the connection closed, HTTP/2 gets its
// stream reset while the connection keeps serving.
func TestUnderscoreRejectOverTheWire(t *testing.T) {
	l := startListener(t, Config{
		Name:    "u",
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{{HTTP: &HTTPConfig{
			HeadersWithUnderscores: RejectUnderscores,
			Handler:                chainHandler("c"),
		}}},
	})
	addr := l.Addr().String()

	resp := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX_user: a\r\n\r\n")
	if resp.StatusCode != 400 || !resp.Close {
		t.Errorf("HTTP/1: got %d (close %v), want 400 and the connection closed", resp.StatusCode, resp.Close)
	}
	resp = rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-User: a\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("HTTP/1 without underscores: got %d, want 200", resp.StatusCode)
	}

	h := dialH2C(t, addr)
	h.request(1, "/", hpack.HeaderField{Name: "x_user", Value: "a"})
	var reset bool
	for {
		ev, err := h.next()
		if err != nil {
			reset = strings.Contains(err.Error(), "stream 1 reset")
			break
		}
		if ev.stream == 1 && ev.status != "" {
			t.Fatalf("HTTP/2: stream 1 answered %s, want a reset", ev.status)
		}
	}
	if !reset {
		t.Fatal("HTTP/2: stream 1 was not reset")
	}
	h.request(3, "/")
	if got := h.status(3); got != "200" {
		t.Errorf("HTTP/2 after the reset: stream 3 got %s, want 200", got)
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in               string
		normalize, merge bool
		wantRaw          string // EscapedPath after cleaning
		wantPath         string
	}{
		{"/a/b", true, true, "/a/b", "/a/b"},
		{"/a/./b/../c", true, false, "/a/c", "/a/c"},
		{"/a/b/..", true, false, "/a/", "/a/"},
		{"/../../etc/passwd", true, false, "/etc/passwd", "/etc/passwd"},
		{"/a/%2e%2E/b", true, false, "/b", "/b"},
		{"/%7euser/%2fx", true, false, "/~user/%2Fx", "/~user//x"},
		{"/a//b///c", false, true, "/a/b/c", "/a/b/c"},
		{"/a//b/../c", true, true, "/a/c", "/a/c"},
		{"/a//b", true, false, "/a//b", "/a//b"},
		{"/a/..b/.c", true, false, "/a/..b/.c", "/a/..b/.c"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.in, nil)
		cleanPath(r, tt.normalize, tt.merge)
		if got := r.URL.EscapedPath(); got != tt.wantRaw {
			t.Errorf("%q (normalize %v, merge %v): escaped path %q, want %q", tt.in, tt.normalize, tt.merge, got, tt.wantRaw)
		}
		if r.URL.Path != tt.wantPath {
			t.Errorf("%q: path %q, want %q", tt.in, r.URL.Path, tt.wantPath)
		}
		if want := tt.wantRaw; r.RequestURI != want {
			t.Errorf("%q: request URI %q, want %q", tt.in, r.RequestURI, want)
		}
	}
}

func TestCleanPathAllocs(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/v1/items?x=1", nil)
	if n := testing.AllocsPerRun(100, func() { cleanPath(r, true, true) }); n != 0 {
		t.Errorf("clean path: %v allocations, want 0", n)
	}
}

// TestRequestTimeout checks that a body still arriving when
// RequestTimeout expires fails to read, on the HTTP/1 fast path and on
// net/http's.
func TestRequestTimeout(t *testing.T) {
	for _, stdlib := range []bool{false, true} {
		name := "fast path"
		if stdlib {
			name = "net/http"
		}
		t.Run(name, func(t *testing.T) {
			readErr := make(chan error, 1)
			l := startListener(t, Config{
				Name:    "rt",
				Address: "127.0.0.1:0",
				FilterChains: []FilterChain{{HTTP: &HTTPConfig{
					RequestTimeout: 200 * time.Millisecond,
					StdlibHTTP1:    stdlib,
					Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						_, err := io.ReadAll(r.Body)
						readErr <- err
						if err != nil {
							w.WriteHeader(http.StatusRequestTimeout)
						}
					}),
				}}},
			})
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Promise 10 bytes, send 2.
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
			select {
			case err := <-readErr:
				if err == nil {
					t.Fatal("body read succeeded; want a timeout")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("body read still blocked 5 s after a 200 ms request timeout")
			}
		})
	}
}

func TestRequestTimeoutLetsFastRequestsThrough(t *testing.T) {
	l := startListener(t, Config{
		Name:    "rt",
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{{HTTP: &HTTPConfig{
			RequestTimeout: time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Write(b)
			}),
		}}},
	})
	c := newClient(t, h1, nil)
	for i := range 3 {
		resp, err := c.Post("http://"+l.Addr().String()+"/", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" {
			t.Fatalf("request %d: body %q, want hello", i, b)
		}
		if i < 2 {
			time.Sleep(600 * time.Millisecond) // keep-alive past the first request's deadline
		}
	}
}

func TestValidateHygiene(t *testing.T) {
	h := http.NotFoundHandler()
	for _, c := range []struct {
		cfg  HTTPConfig
		want string
	}{
		{HTTPConfig{Handler: h, HeadersWithUnderscores: 7}, "headers_with_underscores"},
		{HTTPConfig{Handler: h, RequestTimeout: -1}, "request_timeout"},
		{HTTPConfig{Handler: h, HTTP2StreamWindow: -1}, "http2_stream_window"},
	} {
		cfg := Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{HTTP: &c.cfg}}}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate: got %v, want an error naming %s", err, c.want)
		}
	}
}

func TestHTTP2Windows(t *testing.T) {
	l, err := New(Config{
		Name:    "w",
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{{HTTP: &HTTPConfig{
			HTTP2StreamWindow:     65536,
			HTTP2ConnectionWindow: 1 << 30, // above net/http's limit: lowered
			MaxConcurrentStreams:  100,
			Handler:               http.NotFoundHandler(),
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := l.tab.Load().chains[0].srv.HTTP2
	if got.MaxReceiveBufferPerStream != 65536 || got.MaxReceiveBufferPerConnection != maxHTTP2Window || got.MaxConcurrentStreams != 100 {
		t.Errorf("HTTP2Config: got %+v, want stream window 65536, connection window %d, 100 streams", *got, maxHTTP2Window)
	}
}

// TestRequestTimeoutEndsWithTheRequest checks that the request timeout
// stops once a request without body is in: a response that streams
// longer keeps its request context (net/http cancels it when a read
// deadline expires under its background read).
func TestRequestTimeoutEndsWithTheRequest(t *testing.T) {
	for _, stdlib := range []bool{false, true} {
		l := startListener(t, Config{
			Name:    "stream",
			Address: "127.0.0.1:0",
			FilterChains: []FilterChain{{HTTP: &HTTPConfig{
				RequestTimeout: 100 * time.Millisecond,
				StdlibHTTP1:    stdlib,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, "start\n")
					http.NewResponseController(w).Flush()
					select {
					case <-r.Context().Done():
						io.WriteString(w, "cancelled\n")
					case <-time.After(300 * time.Millisecond):
						io.WriteString(w, "done\n")
					}
				}),
			}}},
		})
		resp, err := newClient(t, h1, nil).Get("http://" + l.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "start\ndone\n" {
			t.Errorf("stdlib %v: got %q, want the stream to outlive the request timeout", stdlib, b)
		}
	}
}

// TestRequestTimeoutSparesUpgrades checks that a connection hijacked for
// an upgrade outlives the request timeout, which ends with the request.
func TestRequestTimeoutSparesUpgrades(t *testing.T) {
	for _, stdlib := range []bool{false, true} {
		l := startListener(t, Config{
			Name:    "up",
			Address: "127.0.0.1:0",
			FilterChains: []FilterChain{{HTTP: &HTTPConfig{
				RequestTimeout: 100 * time.Millisecond,
				StdlibHTTP1:    stdlib,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					conn, brw, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					defer conn.Close()
					brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
					brw.Flush()
					line, err := brw.ReadString('\n')
					if err != nil {
						brw.WriteString("read error: " + err.Error() + "\n")
					} else {
						brw.WriteString("echo " + line)
					}
					brw.Flush()
				}),
			}}},
		})
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
		time.Sleep(300 * time.Millisecond)
		io.WriteString(c, "hi\n")
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.Contains(string(b), "echo hi") {
			t.Errorf("stdlib %v: upgraded stream got %q, want the echo after the request timeout", stdlib, b)
		}
	}
}
