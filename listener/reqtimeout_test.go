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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// rqTimeout is the request timeout of these tests; rqSlack bounds how late
// its 408 may come (the race detector slows everything down).
const (
	rqTimeout = 300 * time.Millisecond
	rqSlack   = 1500 * time.Millisecond
)

// rqResult is what a handler saw of its request.
type rqResult struct {
	err   error // of reading the whole body
	n     int64 // bytes read
	cause error // of the request's context, after the read
}

// timedListener starts a listener with one chain "c" under the request
// timeout, serving h, with ConnCounters kept; tlsOn terminates TLS with a
// certificate for a.test.
func timedListener(t *testing.T, p *pki, stdlib bool, h http.Handler) (*Listener, *ConnCounters) {
	t.Helper()
	ctr := new(ConnCounters)
	fc := FilterChain{Name: "c", HTTP: &HTTPConfig{
		RequestTimeout:        rqTimeout,
		RequestHeadersTimeout: 30 * time.Second, // the request timeout must bound headers by itself
		StdlibHTTP1:           stdlib,
		Handler:               h,
	}}
	if p != nil {
		fc.TLS = &TLSConfig{Certificates: []Certificate{p.cert(t, "a.test")}}
	}
	l := startListener(t, Config{
		Name:         "rq",
		Address:      "127.0.0.1:0",
		FilterChains: []FilterChain{fc},
		Observer: &ctrObserver{
			countObserver: &countObserver{open: map[string]int{}, closed: map[string]int{}},
			ctrs:          map[string]*ConnCounters{"c": ctr},
		},
	})
	return l, ctr
}

// readingHandler reads the whole body, reports it on got, and answers as a
// proxy would after an upstream failure: the 408 must replace that.
func readingHandler(got chan<- rqResult) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		got <- rqResult{err: err, n: n, cause: context.Cause(r.Context())}
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "upstream failed")
			return
		}
		fmt.Fprintf(w, "got %d", n)
	})
}

// dialRq opens a plaintext or TLS (HTTP/1.1 by ALPN) connection.
func dialRq(t *testing.T, addr string, p *pki) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if p != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: p.pool, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return c
}

// within fails t unless a 408 that took elapsed came when the timeout
// expired: not before it, and at most rqSlack after.
func within(t *testing.T, elapsed time.Duration) {
	t.Helper()
	if elapsed < rqTimeout-50*time.Millisecond || elapsed > rqTimeout+rqSlack {
		t.Errorf("408 after %v, want it when the %v request timeout expires (slack %v)", elapsed, rqTimeout, rqSlack)
	}
}

// expectClosed fails t unless the server closes c (EOF) without sending
// anything more.
func expectClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("read %q after the 408; want the connection closed", append([]byte{b}, rest...))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after the 408: %v", err)
	}
}

// expectTimedOut checks what the handler saw of a request the timeout
// ended.
func expectTimedOut(t *testing.T, got <-chan rqResult) {
	t.Helper()
	select {
	case r := <-got:
		if !errors.Is(r.err, ErrRequestTimeout) {
			t.Errorf("body read error: got %v, want ErrRequestTimeout", r.err)
		}
		if r.cause != ErrRequestTimeout {
			t.Errorf("request context cause: got %v, want ErrRequestTimeout", r.cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler still reading the body 5 s after the request timeout")
	}
}

func expectCount(t *testing.T, ctr *ConnCounters, want uint64) {
	t.Helper()
	if got := ctr.RequestTimeouts.Load(); got != want {
		t.Errorf("RequestTimeouts (downstream_rq_timeout): got %d, want %d", got, want)
	}
}

// TestRequestTimeoutLateBody sends headers and part of the body, then
// stalls: on every HTTP/1.1 server path the client gets a 408 when the
// timeout expires, then the connection is closed; the handler's body read
// fails with ErrRequestTimeout, its context is cancelled with that cause,
// and the timeout is counted once.
func TestRequestTimeoutLateBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stdlib bool
		tls    bool
	}{
		{"fast path", false, false},
		{"net/http", true, false},
		{"net/http tls", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			var p *pki
			if tc.tls {
				p = newPKI(t)
			}
			got := make(chan rqResult, 1)
			l, ctr := timedListener(t, p, tc.stdlib, readingHandler(got))
			c := dialRq(t, l.Addr().String(), p)
			start := time.Now()
			io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			within(t, time.Since(start))
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || string(b) != "request timeout" || !resp.Close {
				t.Errorf("got %d %q (close %v), want 408 \"request timeout\" with Connection: close", resp.StatusCode, b, resp.Close)
			}
			expectClosed(t, br)
			expectTimedOut(t, got)
			expectCount(t, ctr, 1)
		})
	}
}

// TestRequestTimeoutHandlerNotReading checks that the 408 does not wait for
// the handler to read the body: a handler busy elsewhere sees its context
// end, and what it answers then is dropped.
func TestRequestTimeoutHandlerNotReading(t *testing.T) {
	for _, stdlib := range []bool{false, true} {
		t.Run(fmt.Sprint("stdlib=", stdlib), func(t *testing.T) {
			checkLeaks(t)
			cause := make(chan error, 1)
			l, ctr := timedListener(t, nil, stdlib, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done() // e.g. waiting for an upstream
				cause <- context.Cause(r.Context())
				io.WriteString(w, "too late")
			}))
			c := dialRq(t, l.Addr().String(), nil)
			start := time.Now()
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			within(t, time.Since(start))
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || string(b) != "request timeout" {
				t.Errorf("got %d %q, want 408 \"request timeout\"", resp.StatusCode, b)
			}
			expectClosed(t, br)
			if got := <-cause; got != ErrRequestTimeout {
				t.Errorf("request context cause: got %v, want ErrRequestTimeout", got)
			}
			expectCount(t, ctr, 1)
		})
	}
}

// TestRequestTimeoutLateHeaders checks that the request timeout bounds
// headers that trickle in (slowloris) even when the headers timeout is
// much longer: the fast path answers 408 and counts it, as Envoy does;
// net/http closes the connection without a response.
func TestRequestTimeoutLateHeaders(t *testing.T) {
	for _, stdlib := range []bool{false, true} {
		t.Run(fmt.Sprint("stdlib=", stdlib), func(t *testing.T) {
			checkLeaks(t)
			var called atomic.Bool
			l, ctr := timedListener(t, nil, stdlib, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called.Store(true)
			}))
			c := dialRq(t, l.Addr().String(), nil)
			start := time.Now()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			br := bufio.NewReader(c)
			if stdlib || testStdlibHTTP1 {
				expectClosed(t, br)
				within(t, time.Since(start))
				expectCount(t, ctr, 0)
			} else {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("read response: %v", err)
				}
				within(t, time.Since(start))
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusRequestTimeout || string(b) != "request timeout" {
					t.Errorf("got %d %q, want 408 \"request timeout\"", resp.StatusCode, b)
				}
				expectClosed(t, br)
				expectCount(t, ctr, 1)
			}
			if called.Load() {
				t.Error("handler called for a request whose headers never ended")
			}
		})
	}
}

// TestRequestTimeoutSparesSlowResponses checks that a request received
// within the timeout is not bound by it while its response takes longer,
// on HTTP/1.1 (both paths, keep-alive across requests) and h2c.
func TestRequestTimeoutSparesSlowResponses(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(2 * rqTimeout):
		case <-r.Context().Done():
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "got %s", b)
	})
	for _, tc := range []struct {
		name   string
		stdlib bool
		proto  func(*http.Protocols)
	}{
		{"fast path", false, h1},
		{"net/http", true, h1},
		{"h2c", false, h2c},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			l, ctr := timedListener(t, nil, tc.stdlib, h)
			c := newClient(t, tc.proto, nil)
			for i := range 2 {
				resp, err := c.Post("http://"+l.Addr().String()+"/", "text/plain", strings.NewReader("hello"))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "got hello" {
					t.Errorf("request %d: got %d %q, want 200 \"got hello\"", i, resp.StatusCode, b)
				}
			}
			expectCount(t, ctr, 0)
		})
	}
}

// TestRequestTimeoutDisarmedByResponse checks Envoy's rule that the
// response starting disarms the request timeout: a handler that answers
// first and then reads a body arriving over several timeouts gets it all.
func TestRequestTimeoutDisarmedByResponse(t *testing.T) {
	for _, stdlib := range []bool{false, true} {
		t.Run(fmt.Sprint("stdlib=", stdlib), func(t *testing.T) {
			checkLeaks(t)
			l, ctr := timedListener(t, nil, stdlib, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.NewResponseController(w).EnableFullDuplex()
				w.WriteHeader(http.StatusOK)
				http.NewResponseController(w).Flush()
				n, err := io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "got %d %v", n, err)
			}))
			c := dialRq(t, l.Addr().String(), nil)
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n0")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			for _, s := range []string{"1", "2", "3"} {
				time.Sleep(rqTimeout / 2) // the body takes twice the timeout
				io.WriteString(c, s)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "got 4 <nil>" {
				t.Errorf("got %d %q, want 200 \"got 4 <nil>\"", resp.StatusCode, b)
			}
			expectCount(t, ctr, 0)
		})
	}
}

// TestRequestTimeoutHTTP2 checks HTTP/2, h2c and TLS: a stream whose body
// stalls gets a 408 when the timeout expires, while another stream of the
// same connection, open across it, completes, and the connection carries
// a third request afterwards.
func TestRequestTimeoutHTTP2(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := "h2c"
		if tlsOn {
			name = "h2 tls"
		}
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			var p *pki
			tr := &http2.Transport{}
			if tlsOn {
				p = newPKI(t)
				tr.TLSClientConfig = &tls.Config{ServerName: "a.test", RootCAs: p.pool}
			} else {
				tr.AllowHTTP = true
				tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				}
			}
			t.Cleanup(tr.CloseIdleConnections)
			got := make(chan rqResult, 1)
			upload := readingHandler(got)
			l, ctr := timedListener(t, p, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/upload":
					upload.ServeHTTP(w, r)
				case "/slow":
					time.Sleep(2 * rqTimeout)
					io.WriteString(w, "slow ok")
				default:
					io.WriteString(w, "ok")
				}
			}))
			scheme := "http://"
			if tlsOn {
				scheme = "https://"
			}
			base := scheme + l.Addr().String()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			get := func(path string) (int, string, error) {
				resp, err := client.Get(base + path)
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), err
			}
			// Open the connection first, so that both streams share it.
			if code, _, err := get("/warm"); err != nil || code != 200 {
				t.Fatalf("warm-up: got %d, %v", code, err)
			}
			slow := make(chan string, 1)
			go func() {
				code, body, err := get("/slow")
				slow <- fmt.Sprint(code, " ", body, " ", err)
			}()

			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
			go pw.Write([]byte("partial")) // then the body stalls
			req, _ := http.NewRequest("POST", base+"/upload", pr)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			within(t, time.Since(start))
			if resp.StatusCode != http.StatusRequestTimeout || string(b) != "request timeout" || resp.ProtoMajor != 2 {
				t.Errorf("got %s %d %q, want HTTP/2 408 \"request timeout\"", resp.Proto, resp.StatusCode, b)
			}
			expectTimedOut(t, got)

			if s := <-slow; s != "200 slow ok <nil>" {
				t.Errorf("other stream: got %q, want \"200 slow ok <nil>\"", s)
			}
			if code, body, err := get("/after"); err != nil || code != 200 {
				t.Errorf("request after the 408: got %d %q %v, want 200", code, body, err)
			}
			if n := ctr.HTTP2Total.Load(); n != 1 {
				t.Errorf("HTTP/2 connections: got %d, want 1 (the 408 must not cost the connection)", n)
			}
			expectCount(t, ctr, 1)
		})
	}
}
