package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2/hpack"
)

func TestProtocolsOnOnePort(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t)
	l := startListener(t, Config{
		Name:    "one-port",
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{
			{Name: "tls", Match: ChainMatch{TransportProtocol: TransportTLS},
				TLS:  &TLSConfig{Certificates: []Certificate{p.cert(t, "a.test")}},
				HTTP: &HTTPConfig{Handler: chainHandler("tls")}},
			{Name: "plain", Match: ChainMatch{TransportProtocol: TransportRawBuffer},
				HTTP: &HTTPConfig{Handler: chainHandler("plain")}},
		},
	})
	addr := l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	tlsConf := &tls.Config{RootCAs: p.pool, ServerName: "a.test"}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, p.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	get := func(c *http.Client, url string) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	curl := func(args ...string) (string, error) {
		if _, err := exec.LookPath("curl"); err != nil {
			return "", fmt.Errorf("curl is required for this subtest and was not found in PATH: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		args = append([]string{"-sS", "--noproxy", "*", "--max-time", "10"}, args...)
		out, err := exec.CommandContext(ctx, "curl", args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("curl %v: %w: %s", args, err, out)
		}
		return string(out), nil
	}
	tests := []struct {
		name string
		do   func() (string, error)
		want string
	}{
		{"http1 plaintext", func() (string, error) { return get(newClient(t, h1, nil), "http://"+addr+"/") }, "plain HTTP/1.1"},
		{"h2c prior knowledge", func() (string, error) { return get(newClient(t, h2c, nil), "http://"+addr+"/") }, "plain HTTP/2.0"},
		{"http1 over tls", func() (string, error) { return get(newClient(t, h1, tlsConf), "https://"+addr+"/") }, "tls HTTP/1.1"},
		{"h2 over tls alpn", func() (string, error) { return get(newClient(t, h2, tlsConf), "https://"+addr+"/") }, "tls HTTP/2.0"},
		{"curl http1", func() (string, error) { return curl("--http1.1", "http://"+addr+"/") }, "plain HTTP/1.1"},
		{"curl h2c prior knowledge", func() (string, error) { return curl("--http2-prior-knowledge", "http://"+addr+"/") }, "plain HTTP/2.0"},
		{"curl h2 over tls", func() (string, error) {
			return curl("--http2", "--cacert", caFile, "--resolve", "a.test:"+port+":127.0.0.1", "https://a.test:"+port+"/")
		}, "tls HTTP/2.0"},
		{"curl http1 over tls", func() (string, error) {
			return curl("--http1.1", "--cacert", caFile, "--resolve", "a.test:"+port+":127.0.0.1", "https://a.test:"+port+"/")
		}, "tls HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.do()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("body: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSNICertificate(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t)
	l := startListener(t, Config{
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{{
			TLS: &TLSConfig{Certificates: []Certificate{
				p.cert(t, "a.test"), p.cert(t, "b.test"), p.cert(t, "*.c.test"),
			}},
			HTTP: &HTTPConfig{Handler: chainHandler("tls")},
		}},
	})
	tests := []struct {
		sni  string
		want string // first DNS name of the served certificate
	}{
		{"a.test", "a.test"},
		{"b.test", "b.test"},
		{"x.c.test", "*.c.test"},
		{"B.TEST", "b.test"},
		{"unknown.test", "a.test"}, // first certificate is the default
		{"", "a.test"},
	}
	for _, tt := range tests {
		t.Run("sni="+tt.sni, func(t *testing.T) {
			d := &net.Dialer{Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), &tls.Config{
				ServerName:         tt.sni,
				InsecureSkipVerify: true, // the served name is what is under test
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := c.ConnectionState().PeerCertificates[0].DNSNames[0]
			if got != tt.want {
				t.Errorf("certificate: got %q, want %q", got, tt.want)
			}
			if tt.sni != "" && tt.want != "a.test" || tt.sni == "a.test" {
				if err := c.ConnectionState().PeerCertificates[0].VerifyHostname(tt.sni); err != nil {
					t.Errorf("verify %q: %v", tt.sni, err)
				}
			}
		})
	}
}

func TestChainSelection(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t)
	cert := p.cert(t, "a.test", "b.test", "*.c.test", "*.b.c.test")
	tc := func(name string, m ChainMatch) FilterChain {
		return FilterChain{Name: name, Match: m, TLS: &TLSConfig{Certificates: []Certificate{cert}},
			HTTP: &HTTPConfig{Handler: chainHandler(name)}}
	}
	pc := func(name string, m ChainMatch) FilterChain {
		return FilterChain{Name: name, Match: m, HTTP: &HTTPConfig{Handler: chainHandler(name)}}
	}
	pfx := netip.MustParsePrefix
	type client struct {
		plaintext bool
		sni       string
		protos    func(*http.Protocols)
		alpn      []string
	}
	tests := []struct {
		name   string
		chains func(port uint16) []FilterChain
		def    *FilterChain
		client client
		want   string // "" = connection refused by the listener
	}{
		{"sni exact beats wildcard", func(uint16) []FilterChain {
			return []FilterChain{tc("wild", ChainMatch{ServerNames: []string{"*.c.test"}}), tc("exact", ChainMatch{ServerNames: []string{"x.c.test"}})}
		}, nil, client{sni: "x.c.test"}, "exact"},
		{"sni wildcard", func(uint16) []FilterChain {
			return []FilterChain{tc("wild", ChainMatch{ServerNames: []string{"*.c.test"}}), tc("exact", ChainMatch{ServerNames: []string{"x.c.test"}})}
		}, nil, client{sni: "y.c.test"}, "wild"},
		{"sni longest wildcard", func(uint16) []FilterChain {
			return []FilterChain{tc("short", ChainMatch{ServerNames: []string{"*.c.test"}}), tc("long", ChainMatch{ServerNames: []string{"*.b.c.test"}})}
		}, nil, client{sni: "z.b.c.test"}, "long"},
		{"sni unmatched falls to chain without names", func(uint16) []FilterChain {
			return []FilterChain{tc("a", ChainMatch{ServerNames: []string{"a.test"}}), tc("any", ChainMatch{})}
		}, nil, client{sni: "b.test"}, "any"},
		{"no match and no default closes", func(uint16) []FilterChain {
			return []FilterChain{tc("a", ChainMatch{ServerNames: []string{"a.test"}})}
		}, nil, client{sni: "b.test"}, ""},
		{"default chain", func(uint16) []FilterChain {
			return []FilterChain{tc("a", ChainMatch{ServerNames: []string{"a.test"}})}
		}, &FilterChain{Name: "def", TLS: &TLSConfig{Certificates: []Certificate{cert}}, HTTP: &HTTPConfig{Handler: chainHandler("def")}},
			client{sni: "b.test"}, "def"},
		{"alpn h2", func(uint16) []FilterChain {
			return []FilterChain{tc("h2", ChainMatch{ApplicationProtocols: []string{"h2"}}), tc("h1", ChainMatch{ApplicationProtocols: []string{"http/1.1"}})}
		}, nil, client{sni: "a.test", protos: h2}, "h2"},
		{"alpn http/1.1", func(uint16) []FilterChain {
			return []FilterChain{tc("h2", ChainMatch{ApplicationProtocols: []string{"h2"}}), tc("h1", ChainMatch{ApplicationProtocols: []string{"http/1.1"}})}
		}, nil, client{sni: "a.test", protos: h1, alpn: []string{"http/1.1"}}, "h1"},
		{"transport raw_buffer", func(uint16) []FilterChain {
			return []FilterChain{tc("tls", ChainMatch{TransportProtocol: TransportTLS}), pc("raw", ChainMatch{TransportProtocol: TransportRawBuffer})}
		}, nil, client{plaintext: true}, "raw"},
		{"source prefix most specific", func(uint16) []FilterChain {
			return []FilterChain{pc("wide", ChainMatch{SourcePrefixes: []netip.Prefix{pfx("127.0.0.0/8")}}), pc("narrow", ChainMatch{SourcePrefixes: []netip.Prefix{pfx("127.0.0.1/32")}})}
		}, nil, client{plaintext: true}, "narrow"},
		{"source prefix mismatch", func(uint16) []FilterChain {
			return []FilterChain{pc("ten", ChainMatch{SourcePrefixes: []netip.Prefix{pfx("10.0.0.0/8")}}), pc("any", ChainMatch{})}
		}, nil, client{plaintext: true}, "any"},
		{"destination port", func(port uint16) []FilterChain {
			return []FilterChain{pc("other", ChainMatch{DestinationPorts: []uint16{port + 1}}), pc("own", ChainMatch{DestinationPorts: []uint16{port}})}
		}, nil, client{plaintext: true}, "own"},
		{"port decides before sni", func(port uint16) []FilterChain {
			return []FilterChain{tc("sni", ChainMatch{ServerNames: []string{"a.test"}}), tc("port", ChainMatch{DestinationPorts: []uint16{port}})}
		}, nil, client{sni: "a.test"}, "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := startListener(t, Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{pc("placeholder", ChainMatch{})}})
			port := uint16(l.Addr().(*net.TCPAddr).Port)
			if err := l.Update(Config{Address: "127.0.0.1:0", FilterChains: tt.chains(port), DefaultFilterChain: tt.def}); err != nil {
				t.Fatalf("Update: %v", err)
			}
			protos, scheme := tt.client.protos, "https"
			if protos == nil {
				protos = h1
			}
			if tt.client.plaintext {
				scheme = "http"
			}
			c := newClient(t, protos, &tls.Config{ServerName: tt.client.sni, InsecureSkipVerify: true, NextProtos: tt.client.alpn})
			resp, err := c.Get(scheme + "://" + l.Addr().String() + "/")
			if tt.want == "" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got chain %q, want the connection closed", resp.Header.Get("X-Chain"))
				}
				if got := l.Stats().NoFilterChainMatch; got == 0 {
					t.Errorf("NoFilterChainMatch: got %d, want > 0", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Chain"); got != tt.want {
				t.Errorf("chain: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTLSVersions(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t)
	l := startListener(t, Config{
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{{
			TLS:  &TLSConfig{Certificates: []Certificate{p.cert(t, "a.test")}},
			HTTP: &HTTPConfig{Handler: chainHandler("tls")},
		}},
	})
	tests := []struct {
		name   string
		max    uint16
		suites []uint16
		ok     bool
	}{
		{"tls1.0 refused", tls.VersionTLS10, nil, false},
		{"tls1.1 refused", tls.VersionTLS11, nil, false},
		{"tls1.2 cbc refused", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, false},
		{"tls1.2 aead", tls.VersionTLS12, nil, true},
		{"tls1.3", tls.VersionTLS13, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &net.Dialer{Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), &tls.Config{
				ServerName: "a.test", RootCAs: p.pool, MinVersion: tls.VersionTLS10, MaxVersion: tt.max, CipherSuites: tt.suites,
			})
			if err == nil {
				c.Close()
			}
			if got := err == nil; got != tt.ok {
				t.Errorf("handshake ok: got %v (err %v), want %v", got, err, tt.ok)
			}
		})
	}
	// The server counts a failed handshake after the client has seen it
	// fail: wait for the count rather than race it.
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().TLSHandshakeErrors < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := l.Stats().TLSHandshakeErrors; got != 3 {
		t.Errorf("TLSHandshakeErrors: got %d, want 3", got)
	}
}

// bodyHandler reads the body and maps the HCM's limit error to 413, as the
// gateway does.
func bodyHandler(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	io.WriteString(w, "ok")
}

// hideLength makes the client send a chunked body.
type hideLength struct{ io.Reader }

func TestLimits(t *testing.T) {
	checkLeaks(t)
	l := startListener(t, Config{
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{{HTTP: &HTTPConfig{
			MaxRequestHeadersBytes: 1024,
			MaxRequestHeaders:      10,
			MaxRequestBodyBytes:    100,
			Handler:                http.HandlerFunc(bodyHandler),
		}}},
	})
	addr := l.Addr().String()
	client := newClient(t, h1, nil)
	do := func(method string, body io.Reader, hdr map[string]string) (int, error) {
		req, err := http.NewRequest(method, "http://"+addr+"/", body)
		if err != nil {
			return 0, err
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	h2do := func(t *testing.T, extra ...hpack.HeaderField) (int, error) {
		c := dialH2C(t, addr)
		c.request(1, "/", extra...)
		return strconv.Atoi(c.status(1))
	}
	// Two 1000-byte fields: over net/http's HTTP/2 header list limit
	// (1024+320), which answers 431. (A header block more than twice over
	// the limit makes net/http close the connection instead.)
	var bigFields []hpack.HeaderField
	for i := range 2 {
		bigFields = append(bigFields, hpack.HeaderField{Name: "x-big-" + strconv.Itoa(i), Value: strings.Repeat("a", 1000)})
	}
	many := map[string]string{}
	for i := range 12 {
		many["X-H"+strconv.Itoa(i)] = "v"
	}
	tests := []struct {
		name string
		do   func(t *testing.T) (int, error)
		want int
	}{
		{"h1 ok", func(t *testing.T) (int, error) { return do("GET", nil, nil) }, 200},
		{"h1 header bytes just over (hcm)", func(t *testing.T) (int, error) {
			return do("GET", nil, map[string]string{"X-Big": strings.Repeat("a", 1050)})
		}, 431},
		{"h1 header bytes far over (net/http)", func(t *testing.T) (int, error) {
			return do("GET", nil, map[string]string{"X-Big": strings.Repeat("a", 8000)})
		}, 431},
		{"h1 header count", func(t *testing.T) (int, error) { return do("GET", nil, many) }, 431},
		{"h2 ok", func(t *testing.T) (int, error) { return h2do(t) }, 200},
		{"h2 header bytes just over (hcm)", func(t *testing.T) (int, error) {
			return h2do(t, hpack.HeaderField{Name: "x-big", Value: strings.Repeat("a", 1050)})
		}, 431},
		{"h2 header list over (net/http)", func(t *testing.T) (int, error) { return h2do(t, bigFields...) }, 431},
		{"body content-length within", func(t *testing.T) (int, error) { return do("POST", strings.NewReader(strings.Repeat("b", 100)), nil) }, 200},
		{"body content-length over", func(t *testing.T) (int, error) { return do("POST", strings.NewReader(strings.Repeat("b", 101)), nil) }, 413},
		{"body chunked within", func(t *testing.T) (int, error) {
			return do("POST", hideLength{strings.NewReader(strings.Repeat("b", 100))}, nil)
		}, 200},
		{"body chunked over", func(t *testing.T) (int, error) {
			return do("POST", hideLength{strings.NewReader(strings.Repeat("b", 500))}, nil)
		}, 413},
		{"malformed request line", func(t *testing.T) (int, error) {
			return rawRequest(t, addr, "GARBAGE-REQUEST-LINE\r\n\r\n").StatusCode, nil
		}, 400},
		{"still serving after malformed", func(t *testing.T) (int, error) {
			return rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").StatusCode, nil
		}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.do(t)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("status: got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestHopByHopEndToEnd(t *testing.T) {
	checkLeaks(t)
	l := startListener(t, Config{
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{{HTTP: &HTTPConfig{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, k := range []string{"Connection", "X-Foo", "Keep-Alive", "Te", "Upgrade", "X-Keep"} {
				fmt.Fprintf(w, "%s=%s;", k, strings.Join(r.Header[k], ","))
			}
		})}}},
	})
	resp := rawRequest(t, l.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Foo, TE\r\n"+
		"X-Foo: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: foo\r\nX-Keep: yes\r\n\r\n")
	b, _ := io.ReadAll(resp.Body)
	want := "Connection=;X-Foo=;Keep-Alive=;Te=trailers;Upgrade=;X-Keep=yes;"
	if got := string(b); got != want {
		t.Errorf("headers seen by handler: got %q, want %q", got, want)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	checkLeaks(t)
	l := startListener(t, Config{
		Address: "127.0.0.1:0",
		FilterChains: []FilterChain{{HTTP: &HTTPConfig{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, append([]byte("echo "), msg...))
			c.Close(websocket.StatusNormalClosure, "")
		})}}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c, _, err := websocket.Dial(ctx, "ws://"+l.Addr().String()+"/", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("dial through the HCM: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "echo hi" {
		t.Errorf("message: got %q, want %q", got, "echo hi")
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// slowHandler blocks /slow until release is closed.
type slowHandler struct {
	entered chan struct{}
	release chan struct{}
}

func (h *slowHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/slow" {
		close(h.entered)
		<-h.release
	}
	io.WriteString(w, "done")
}

func TestGracefulDrainHTTP1(t *testing.T) {
	checkLeaks(t)
	h := &slowHandler{entered: make(chan struct{}), release: make(chan struct{})}
	l := startListener(t, Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{HTTP: &HTTPConfig{Handler: h}}}})
	draining := make(chan struct{})
	l.tab.Load().all[0].srv.RegisterOnShutdown(func() { close(draining) })

	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-h.entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- l.Shutdown(ctx)
	}()
	<-draining
	close(h.release)

	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if got, want := string(body), "done"; got != want {
		t.Errorf("body: got %q, want %q", got, want)
	}
	// ReadResponse moves "Connection: close" into resp.Close.
	if !resp.Close {
		t.Errorf("Connection: close: got %v (header %q), want true", resp.Close, resp.Header.Get("Connection"))
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: got %v, want nil", err)
	}
}

func TestGracefulDrainH2(t *testing.T) {
	checkLeaks(t)
	h := &slowHandler{entered: make(chan struct{}), release: make(chan struct{})}
	l := startListener(t, Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{HTTP: &HTTPConfig{Handler: h}}}})

	c := dialH2C(t, l.Addr().String())
	c.request(1, "/slow")
	<-h.entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- l.Shutdown(ctx)
	}()
	var got []event
	released := false
	for {
		ev, err := c.next()
		if err != nil {
			t.Fatalf("reading frames after %+v: %v", got, err)
		}
		got = append(got, ev)
		if ev.goAway && !released {
			released = true
			close(h.release) // the in-flight stream may complete now
		}
		if ev.stream == 1 && ev.endStream {
			break
		}
	}
	want := []event{{goAway: true, lastStream: 1}, {stream: 1, status: "200"}, {stream: 1, data: "done"}, {stream: 1, endStream: true}}
	if len(got) == 3 { // data and end of stream in one frame
		want = []event{{goAway: true, lastStream: 1}, {stream: 1, status: "200"}, {stream: 1, data: "done", endStream: true}}
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(event{})); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: got %v, want nil", err)
	}
}

// countObserver counts connection events per chain.
type countObserver struct {
	mu     sync.Mutex
	open   map[string]int
	closed map[string]int
}

func (o *countObserver) OnConnOpen(chain string) {
	o.mu.Lock()
	o.open[chain]++
	o.mu.Unlock()
}

func (o *countObserver) OnConnClose(chain string, open time.Duration) {
	o.mu.Lock()
	o.closed[chain]++
	o.mu.Unlock()
}

func TestUpdate(t *testing.T) {
	checkLeaks(t)
	obs := &countObserver{open: map[string]int{}, closed: map[string]int{}}
	cfg := func(name string) Config {
		return Config{Name: "l", Address: "127.0.0.1:0", Observer: obs,
			FilterChains: []FilterChain{{Name: name, HTTP: &HTTPConfig{Handler: chainHandler(name)}}}}
	}
	l := startListener(t, cfg("v1"))
	addr := l.Addr().String()

	old, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(old)
	ask := func() string {
		t.Helper()
		io.WriteString(old, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Header.Get("X-Chain")
	}
	if got := ask(); got != "v1" {
		t.Fatalf("before Update: got %q, want v1", got)
	}
	if err := l.Update(cfg("v2")); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := ask(); got != "v1" {
		t.Errorf("old keep-alive connection after Update: got %q, want v1", got)
	}
	if got := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").Header.Get("X-Chain"); got != "v2" {
		t.Errorf("new connection after Update: got %q, want v2", got)
	}

	bad := cfg("v3")
	bad.Address = "127.0.0.1:1"
	if err := l.Update(bad); err == nil {
		t.Error("Update with another address: got nil error, want one")
	}
	bad = cfg("v3")
	bad.FilterChains[0].HTTP.Handler = nil
	if err := l.Update(bad); err == nil || !strings.Contains(err.Error(), "filter_chains[0].http.handler") {
		t.Errorf("invalid Update: got %v, want an error naming filter_chains[0].http.handler", err)
	}

	// Once its last connection closes, the retired chain's server stops.
	old.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(l.liveChains()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("live chains: got %d, want 1", len(l.liveChains()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.Close()
	// net/http reports a closed connection from the connection's own
	// goroutine, which may run just after Close returns.
	want := map[string]int{"v1": 1, "v2": 1}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		obs.mu.Lock()
		done := cmp.Equal(want, obs.closed)
		obs.mu.Unlock()
		if done && l.Stats().DownstreamCxDestroy == 2 {
			break
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if diff := cmp.Diff(want, obs.open); diff != "" {
		t.Errorf("OnConnOpen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, obs.closed); diff != "" {
		t.Errorf("OnConnClose (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{DownstreamCxTotal: 2, DownstreamCxDestroy: 2}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestServeContextCancelDrains(t *testing.T) {
	checkLeaks(t)
	l, err := New(Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{HTTP: &HTTPConfig{Handler: chainHandler("c")}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	if got := rawRequest(t, l.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n").StatusCode; got != 200 {
		t.Fatalf("status: got %d, want 200", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if err := l.Serve(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after stop: got %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: got %v, want nil", err)
	}
}

func TestInspectorTimeout(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t)
	l := startListener(t, Config{
		Address:                "127.0.0.1:0",
		ListenerFiltersTimeout: 50 * time.Millisecond,
		FilterChains: []FilterChain{{
			TLS:  &TLSConfig{Certificates: []Certificate{p.cert(t, "a.test")}},
			HTTP: &HTTPConfig{Handler: chainHandler("tls")},
		}},
	})
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// A silent client is closed by the listener once the timeout passes.
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("read: got data, want the connection closed")
	}
	if got := l.Stats().ListenerFilterErrors; got != 1 {
		t.Errorf("ListenerFilterErrors: got %d, want 1", got)
	}
}
