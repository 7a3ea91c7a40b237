package listener

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"
)

// h1Echo answers with the method, path and body it received, and obeys a
// few query switches used by the tests below.
func h1Echo(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Query().Get("do") {
	case "status":
		var code int
		fmt.Sscan(r.URL.Query().Get("code"), &code)
		w.WriteHeader(code)
		return
	case "close":
		w.Header().Set("Connection", "close")
	case "trailers":
		w.Header().Set("Trailer", "X-Declared")
		w.WriteHeader(200)
		io.WriteString(w, "part1,")
		http.NewResponseController(w).Flush()
		io.WriteString(w, "part2")
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Late", "l")
		return
	case "big":
		io.WriteString(w, strings.Repeat("b", 10000))
		return
	case "nobody":
		return
	case "abort":
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "0123456789")
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	case "panic":
		panic("boom")
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
}

// rawConn is a test client speaking raw HTTP/1.1 on one connection.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRawConn(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response to method and returns it with its body.
func (rc *rawConn) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection.
func (rc *rawConn) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.br.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func startH1(t *testing.T, h http.HandlerFunc, mod ...func(*Config)) string {
	t.Helper()
	cfg := Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{HTTP: &HTTPConfig{Handler: h, DisableRequestID: true}}}}
	for _, m := range mod {
		m(&cfg)
	}
	return startListener(t, cfg).Addr().String()
}

func TestH1KeepAliveAndPipelining(t *testing.T) {
	checkLeaks(t)
	addr := startH1(t, h1Echo)
	rc := dialRawConn(t, addr)
	for i := range 50 {
		rc.send(fmt.Sprintf("GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		resp, body := rc.read("GET")
		if want := fmt.Sprintf("GET /k%d ", i); body != want || resp.StatusCode != 200 {
			t.Fatalf("request %d: got %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("Content-Length: got %d, want %d", resp.ContentLength, len(body))
		}
	}
	// Pipelined: three requests in one write, answered in order.
	rc.send("GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /p3 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"GET /p1 ", "POST /p2 abc", "GET /p3 "} {
		if _, got := rc.read("GET"); got != want {
			t.Errorf("pipelined: got %q, want %q", got, want)
		}
	}

	// The stdlib client reuses the connection.
	client := newClient(t, h1, nil)
	reused := 0
	for range 20 {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+addr+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if reused != 19 {
		t.Errorf("reused connections: got %d, want 19", reused)
	}
}

func TestH1Bodies(t *testing.T) {
	checkLeaks(t)
	addr := startH1(t, h1Echo)
	rc := dialRawConn(t, addr)

	// Chunked request body.
	rc.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
	if _, got := rc.read("POST"); got != "POST /c abcde" {
		t.Errorf("chunked body: got %q", got)
	}

	// Expect: 100-continue: 100 first, then the body is read.
	rc.send("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	line, err := rc.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim response: got %q, %v", line, err)
	}
	if l2, _ := rc.br.ReadString('\n'); l2 != "\r\n" {
		t.Fatalf("interim response end: got %q", l2)
	}
	rc.send("hello")
	if _, got := rc.read("POST"); got != "POST /e hello" {
		t.Errorf("body after 100 Continue: got %q", got)
	}

	// HEAD, 204 and 304 carry no body: the next response parses.
	rc.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /?do=status&code=204 HTTP/1.1\r\nHost: x\r\n\r\nGET /?do=status&code=304 HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := rc.read("HEAD"); resp.StatusCode != 200 || got != "" {
		t.Errorf("HEAD: got %d %q", resp.StatusCode, got)
	}
	if resp, got := rc.read("GET"); resp.StatusCode != 204 || got != "" || resp.Header.Get("Content-Length") != "" {
		t.Errorf("204: got %d %q %v", resp.StatusCode, got, resp.Header)
	}
	if resp, got := rc.read("GET"); resp.StatusCode != 304 || got != "" {
		t.Errorf("304: got %d %q", resp.StatusCode, got)
	}
	if _, got := rc.read("GET"); got != "GET /after " {
		t.Errorf("after bodiless responses: got %q", got)
	}

	// A large body without Content-Length is chunked; a small one is not.
	rc.send("GET /?do=big HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := rc.read("GET"); len(got) != 10000 || len(resp.TransferEncoding) != 1 {
		t.Errorf("big: got %d bytes, transfer encoding %v", len(got), resp.TransferEncoding)
	}
	rc.send("GET /?do=nobody HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := rc.read("GET"); got != "" || resp.ContentLength != 0 {
		t.Errorf("empty: got %q, Content-Length %d", got, resp.ContentLength)
	}

	// An unread body is drained so the connection stays usable.
	rc.send("POST /?do=nobody HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcdGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	rc.read("POST")
	if _, got := rc.read("GET"); got != "GET /next " {
		t.Errorf("after unread body: got %q", got)
	}
}

func TestH1ExpectContinueNotRead(t *testing.T) {
	checkLeaks(t)
	addr := startH1(t, h1Echo)
	rc := dialRawConn(t, addr)
	rc.send("POST /?do=nobody HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	resp, _ := rc.read("POST")
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("got %d close=%v, want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
}

func TestH1Trailers(t *testing.T) {
	checkLeaks(t)
	addr := startH1(t, h1Echo)
	rc := dialRawConn(t, addr)
	rc.send("GET /?do=trailers HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := rc.read("GET")
	if body != "part1,part2" {
		t.Errorf("body: got %q", body)
	}
	if got := resp.Trailer.Get("X-Declared"); got != "d" {
		t.Errorf("declared trailer: got %q, want d (trailer %v)", got, resp.Trailer)
	}
	if got := resp.Trailer.Get("X-Late"); got != "l" {
		t.Errorf("prefix trailer: got %q, want l (trailer %v)", got, resp.Trailer)
	}

	client := newClient(t, h1, nil)
	cresp, err := client.Get("http://" + addr + "/?do=trailers")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(cresp.Body)
	cresp.Body.Close()
	if string(b) != "part1,part2" || cresp.Trailer.Get("X-Declared") != "d" || cresp.Trailer.Get("X-Late") != "l" {
		t.Errorf("net/http client: got %q trailers %v", b, cresp.Trailer)
	}
}

func TestH1ConnectionClose(t *testing.T) {
	checkLeaks(t)
	addr := startH1(t, h1Echo)
	tests := []struct {
		name, req string
	}{
		{"request", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"handler", "GET /?do=close HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"http/1.0", "GET / HTTP/1.0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialRawConn(t, addr)
			rc.send(tt.req)
			resp, _ := rc.read("GET")
			if resp.StatusCode != 200 || !resp.Close {
				t.Errorf("got %d close=%v, want 200 and close", resp.StatusCode, resp.Close)
			}
			if !rc.closed() {
				t.Error("connection: got open, want closed by the server")
			}
		})
	}
	t.Run("http/1.0 keep-alive", func(t *testing.T) {
		rc := dialRawConn(t, addr)
		for range 2 {
			rc.send("GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, body := rc.read("GET")
			if body != "GET /ka " || resp.Close {
				t.Fatalf("got %q close=%v, want a kept-alive response", body, resp.Close)
			}
		}
	})
}

func TestH1Errors(t *testing.T) {
	checkLeaks(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	addr := startH1(t, h1Echo, func(c *Config) { c.Logger = logger })
	tests := []struct {
		req    string
		status int
	}{
		{"GET / HTTP/1.1\r\n\r\n", 400}, // no Host
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
	}
	for _, tt := range tests {
		rc := dialRawConn(t, addr)
		rc.send(tt.req)
		if resp, _ := rc.read("GET"); resp.StatusCode != tt.status {
			t.Errorf("%.40q: got %d, want %d", tt.req, resp.StatusCode, tt.status)
		}
	}

	// ErrAbortHandler cuts the response short and closes, silently.
	rc := dialRawConn(t, addr)
	rc.send("GET /?do=abort HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if string(b) != "0123456789" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("aborted body: got %q, %v; want the first 10 bytes and unexpected EOF", b, err)
	}
	rc = dialRawConn(t, addr)
	rc.send("GET /?do=panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if !rc.closed() {
		t.Error("after panic: got open connection, want closed")
	}
	mu.Lock()
	got := logs.String()
	mu.Unlock()
	if testStdlibHTTP1 {
		return // net/http logs through its ErrorLog at Debug
	}
	if !strings.Contains(got, "boom") || strings.Contains(got, "abort") {
		t.Errorf("log: got %q, want the panic logged and the abort not", got)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestH1Hijack(t *testing.T) {
	checkLeaks(t)
	addr := startH1(t, func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo " + line)
		rw.Flush()
	})
	rc := dialRawConn(t, addr)
	rc.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\nhello\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("got %v %v, want 101", resp, err)
	}
	if line, _ := rc.br.ReadString('\n'); line != "echo hello\n" {
		t.Errorf("after hijack: got %q", line)
	}
}

func TestH1ShutdownDrain(t *testing.T) {
	checkLeaks(t)
	h := &slowHandler{entered: make(chan struct{}), release: make(chan struct{})}
	l := startListener(t, Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{HTTP: &HTTPConfig{Handler: h}}}})
	idle := dialRawConn(t, l.Addr().String())
	idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.read("GET")
	active := dialRawConn(t, l.Addr().String())
	active.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-h.entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- l.Shutdown(ctx)
	}()
	start := time.Now()
	if !idle.closed() {
		t.Error("idle connection: got open, want closed by Shutdown")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle connection closed after %v, want promptly", d)
	}
	close(h.release)
	resp, body := active.read("GET")
	if body != "done" || !resp.Close {
		t.Errorf("active: got %q close=%v, want done with Connection: close", body, resp.Close)
	}
	if !active.closed() {
		t.Error("active connection: got open after its response, want closed")
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: got %v, want nil", err)
	}
	if got := l.Stats().DownstreamCxActive; got != 0 {
		t.Errorf("DownstreamCxActive: got %d, want 0", got)
	}
}

func TestH1H2CPrefaceSplit(t *testing.T) {
	checkLeaks(t)
	addr := startH1(t, h1Echo)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The preface in small pieces: the peek must wait for all of it.
	for _, part := range []string{"P", "RI * HT", "TP/2.0\r\n\r\nSM\r\n\r\n"} {
		io.WriteString(c, part)
		time.Sleep(20 * time.Millisecond) // let each piece arrive alone
	}
	// The server's SETTINGS frame proves net/http's HTTP/2 took over.
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	if hdr[3] != 0x4 { // SETTINGS
		t.Errorf("first frame type: got %d, want SETTINGS (4)", hdr[3])
	}
	// A short HTTP/1.0 request that shares the preface's first letter.
	rc := dialRawConn(t, addr)
	rc.send("PUT / HTTP/1.0\r\n\r\n")
	if resp, _ := rc.read("PUT"); resp.StatusCode != 200 {
		t.Errorf("PUT: got %d, want 200", resp.StatusCode)
	}
}

func TestH1Concurrency(t *testing.T) {
	checkLeaks(t)
	addr := startH1(t, h1Echo)
	tr := &http.Transport{MaxIdleConnsPerHost: 16, Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 100 {
				body := fmt.Sprintf("g%d-%d", g, i)
				resp, err := client.Post("http://"+addr+"/x", "text/plain", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := "POST /x " + body; err != nil || string(b) != want {
					errs <- fmt.Errorf("got %q, %v; want %q", b, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestH1AllocsPerRequest(t *testing.T) {
	if testStdlibHTTP1 {
		t.Skip("fast path only")
	}
	for _, counted := range []bool{false, true} {
		l := benchListener(t, false, counted)
		rc := dialRaw(t, l.Addr().String())
		rc.get()
		// Client and server together: ReadRequest's own allocations (Request,
		// URL, header map and strings), WithContext's copy, the header values.
		got := testing.AllocsPerRun(200, func() {
			if err := rc.get(); err != nil {
				t.Fatal(err)
			}
		})
		if got > 14 {
			t.Errorf("allocations per request (connection counters %v): got %v, want <= 14", counted, got)
		}
	}
}
