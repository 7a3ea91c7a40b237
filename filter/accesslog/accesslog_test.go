package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/porticoproxy/portico/filter"
)

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger(t *testing.T, cfg Config) *Logger {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// logOne logs x through a fresh Logger and returns everything written.
func logOne(t *testing.T, cfg Config, x *filter.Exchange) string {
	t.Helper()
	var buf syncBuffer
	cfg.Output = &buf
	l := newLogger(t, cfg)
	l.OnDone(context.Background(), x)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.String()
}

func TestDefaultFormatLine(t *testing.T) {
	x := fullExchange(t)
	x.In.Header.Set("X-Envoy-Original-Path", "/orig?q=1")
	got := logOne(t, Config{}, x)
	want := `[2024-05-06T07:08:09.123Z] "POST /orig?q=1 HTTP/1.1" 503 UF,URX 17 1234 42 12 "10.0.0.1" "curl/8.0" "req-1" "example.com" "10.1.2.3:9000"` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	got = logOne(t, Config{}, bareExchange())
	want = `[-] "GET / -" 0 - 0 0 - - "-" "-" "-" "-" "-"` + "\n"
	if got != want {
		t.Errorf("bare: got  %q\nwant %q", got, want)
	}
}

func TestCustomFormatGetsNewline(t *testing.T) {
	got := logOne(t, Config{Format: "%RESPONSE_CODE%"}, fullExchange(t))
	if got != "503\n" {
		t.Errorf("got %q, want %q", got, "503\n")
	}
	got = logOne(t, Config{Format: "%RESPONSE_CODE%\n"}, fullExchange(t))
	if got != "503\n" {
		t.Errorf("with newline: got %q, want %q", got, "503\n")
	}
}

var testJSON = map[string]string{
	"status":   "%RESPONSE_CODE%",
	"duration": "%DURATION%",
	"req_dur":  "%REQUEST_DURATION%",
	"attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
	"method":   "%REQ(:METHOD)%",
	"line":     "%REQ(:METHOD)% %RESPONSE_CODE%",
	"ua":       "%REQ(USER-AGENT)%",
	"quote":    `"%REQ(X-ODD)%"`,
	"start":    "%START_TIME%",
	"literal":  "const",
}

func TestJSONOutput(t *testing.T) {
	x := fullExchange(t)
	x.In.Header.Set("X-Odd", "a\"b\\c\x01ü")
	x.RequestEnd = time.Time{}
	line := logOne(t, Config{JSON: testJSON}, x)
	if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("got %q, want one JSON line", line)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("unmarshal %q: %v", line, err)
	}
	want := map[string]any{
		"status":   float64(503),
		"duration": float64(42),
		"req_dur":  nil,
		"attempts": float64(2),
		"method":   "POST",
		"line":     "POST 503",
		"ua":       "curl/8.0",
		"quote":    "\"a\"b\\c\x01ü\"",
		"start":    "2024-05-06T07:08:09.123Z",
		"literal":  "const",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON mismatch (-want +got):\n%s", diff)
	}
	// Keys are sorted, so the output is stable.
	if !strings.HasPrefix(line, `{"attempts":2,"duration":42,`) {
		t.Errorf("got %q, want sorted keys", line)
	}
}

func TestSlogText(t *testing.T) {
	var buf syncBuffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime})
	l := newLogger(t, Config{Format: "%REQ(:METHOD)% %RESPONSE_CODE%", Slog: slog.New(h)})
	l.OnDone(context.Background(), fullExchange(t))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := `{"level":"INFO","msg":"POST 503"}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSlogJSON(t *testing.T) {
	var buf syncBuffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime})
	l := newLogger(t, Config{JSON: testJSON, Slog: slog.New(h)})
	x := fullExchange(t)
	x.In.Header.Set("X-Odd", "q")
	x.RequestEnd = time.Time{}
	l.OnDone(context.Background(), x)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &got); err != nil {
		t.Fatalf("unmarshal %q: %v", buf.String(), err)
	}
	want := map[string]any{
		"level": "INFO", "msg": "access",
		"status": float64(503), "duration": float64(42), "req_dur": nil, "attempts": float64(2),
		"method": "POST", "line": "POST 503", "ua": "curl/8.0", "quote": `"q"`,
		"start": "2024-05-06T07:08:09.123Z", "literal": "const",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("slog attributes mismatch (-want +got):\n%s", diff)
	}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func TestConfigValidate(t *testing.T) {
	w := discard{}
	sl := slog.New(slog.DiscardHandler)
	tests := []struct {
		name string
		cfg  Config
		want string // substring; "" means valid
	}{
		{"output", Config{Output: w}, ""},
		{"slog", Config{Slog: sl}, ""},
		{"neither", Config{}, "exactly one"},
		{"both", Config{Output: w, Slog: sl}, "exactly one"},
		{"format and json", Config{Output: w, Format: "x", JSON: map[string]string{"a": "b"}}, "mutually exclusive"},
		{"buffer", Config{Output: w, BufferSize: -1}, "BufferSize"},
		{"fraction high", Config{Output: w, Fraction: 1.5}, "Fraction"},
		{"fraction negative", Config{Output: w, Fraction: -0.1}, "Fraction"},
		{"duration", Config{Output: w, MinDuration: -time.Second}, "MinDuration"},
		{"status codes", Config{Output: w, StatusCodes: []int{42}}, "StatusCodes"},
		{"status at least", Config{Output: w, StatusAtLeast: -1}, "StatusAtLeast"},
		{"bad json value", Config{Output: w, JSON: map[string]string{"a": "%NOPE%"}}, "%NOPE%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.cfg)
			if err == nil {
				l.Close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("New: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	mk := func(status int, d time.Duration, flags filter.Flags) *filter.Exchange {
		x := bareExchange()
		x.Status = status
		x.Start = testStart
		x.End = testStart.Add(d)
		x.Flags = flags
		return x
	}
	tests := []struct {
		name string
		cfg  Config
		x    *filter.Exchange
		want bool
	}{
		{"no filters", Config{}, mk(200, 0, 0), true},
		{"status at least: below", Config{StatusAtLeast: 400}, mk(399, 0, 0), false},
		{"status at least: equal", Config{StatusAtLeast: 400}, mk(400, 0, 0), true},
		{"status at least: unset status", Config{StatusAtLeast: 400}, mk(0, 0, 0), false},
		{"status codes: in", Config{StatusCodes: []int{404, 503}}, mk(503, 0, 0), true},
		{"status codes: out", Config{StatusCodes: []int{404, 503}}, mk(500, 0, 0), false},
		{"duration: short", Config{MinDuration: 100 * time.Millisecond}, mk(200, 99*time.Millisecond, 0), false},
		{"duration: long", Config{MinDuration: 100 * time.Millisecond}, mk(200, 100*time.Millisecond, 0), true},
		{"flags: none", Config{Flags: filter.FlagNoHealthyUpstream | filter.FlagUpstreamRequestTimeout}, mk(503, 0, 0), false},
		{"flags: other", Config{Flags: filter.FlagNoHealthyUpstream}, mk(503, 0, filter.FlagRateLimited), false},
		{"flags: any", Config{Flags: filter.FlagNoHealthyUpstream | filter.FlagUpstreamRequestTimeout}, mk(504, 0, filter.FlagUpstreamRequestTimeout|filter.FlagRateLimited), true},
		{"all: pass", Config{StatusAtLeast: 500, MinDuration: time.Second, Flags: filter.FlagUpstreamRequestTimeout}, mk(504, 2*time.Second, filter.FlagUpstreamRequestTimeout), true},
		{"all: one fails", Config{StatusAtLeast: 500, MinDuration: time.Second, Flags: filter.FlagUpstreamRequestTimeout}, mk(504, 2*time.Second, 0), false},
		{"fraction one", Config{Fraction: 1}, mk(200, 0, 0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := logOne(t, tt.cfg, tt.x)
			if got := out != ""; got != tt.want {
				t.Errorf("logged %v (%q), want %v", got, out, tt.want)
			}
		})
	}
}

func TestSampling(t *testing.T) {
	const n = 4000
	for _, fraction := range []float64{0, 0.1, 0.5, 1} {
		var buf syncBuffer
		l := newLogger(t, Config{Format: "x", Output: &buf, Fraction: fraction, BufferSize: n})
		x := bareExchange()
		for range n {
			l.OnDone(context.Background(), x)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		got := strings.Count(buf.String(), "\n")
		want := n
		if fraction > 0 {
			want = int(fraction * n)
		}
		// Binomial: 6 standard deviations is well beyond flakiness.
		tol := 6 * int(1+sqrt(float64(n)*fraction*(1-fraction)))
		if got < want-tol || got > want+tol {
			t.Errorf("fraction %v: logged %d of %d, want %d±%d", fraction, got, n, want, tol)
		}
		if d := l.Dropped(); d != 0 {
			t.Errorf("fraction %v: dropped %d, want 0", fraction, d)
		}
	}
}

func sqrt(v float64) float64 {
	r := v
	for range 50 {
		if r == 0 {
			return 0
		}
		r = (r + v/r) / 2
	}
	return r
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	n       int
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	w.n += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

func TestNonBlocking(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	const size = 4
	l, err := New(Config{Format: "%RESPONSE_CODE%", Output: w, BufferSize: size})
	if err != nil {
		t.Fatal(err)
	}
	x := fullExchange(t)
	l.OnDone(context.Background(), x)
	select {
	case <-w.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("writer goroutine never wrote")
	}
	// The writer is stuck: size entries fit the queue, the rest drop.
	const extra = 100
	start := time.Now()
	for range size + extra {
		l.OnDone(context.Background(), x)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("OnDone took %v with a stuck writer, want it not to block", d)
	}
	if got := l.Dropped(); got != extra {
		t.Errorf("Dropped() = %d, want %d", got, extra)
	}

	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while the writer was still blocked")
	case <-time.After(50 * time.Millisecond):
	}
	close(w.release)
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not join the writer goroutine")
	}
	// Close joined the goroutine, so reading w.n is race-free.
	if w.n != 1+size {
		t.Errorf("wrote %d lines, want %d", w.n, 1+size)
	}
	// After Close, entries are dropped, not queued, and Close is idempotent.
	l.OnDone(context.Background(), x)
	if got := l.Dropped(); got != extra+1 {
		t.Errorf("after Close: Dropped() = %d, want %d", got, extra+1)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

type errWriter struct{}

func (errWriter) Write(p []byte) (int, error) { return 0, io.ErrClosedPipe }

func TestCloseReportsWriteError(t *testing.T) {
	l, err := New(Config{Output: errWriter{}})
	if err != nil {
		t.Fatal(err)
	}
	l.OnDone(context.Background(), bareExchange())
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), io.ErrClosedPipe.Error()) {
		t.Errorf("Close: %v, want %v", err, io.ErrClosedPipe)
	}
}

func TestConcurrent(t *testing.T) {
	const goroutines, each = 8, 500
	var buf syncBuffer
	l := newLogger(t, Config{JSON: testJSON, Output: &buf, BufferSize: 64})
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			x := fullExchange(t)
			for range each {
				l.OnDone(context.Background(), x)
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if got := uint64(len(lines)) + l.Dropped(); got != goroutines*each {
		t.Errorf("written %d + dropped %d = %d, want %d", len(lines), l.Dropped(), got, goroutines*each)
	}
	for _, line := range lines {
		if !json.Valid([]byte(line)) {
			t.Fatalf("invalid JSON line %q", line)
		}
	}
}

func TestFormatAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race")
	}
	x := fullExchange(t)
	x.Flags = 0 // Flags.String allocates for non-empty sets
	for _, cfg := range []Config{{Output: discard{}}, {Output: discard{}, JSON: testJSON}} {
		l := newLogger(t, cfg)
		// OnDone formats and queues; the writer goroutine returns buffers to
		// the pool, so measure the same-goroutine cycle deterministically.
		allocs := testing.AllocsPerRun(1000, func() {
			p := getBuf()
			*p = l.format((*p)[:0], x)
			putBuf(p)
		})
		if allocs != 0 {
			t.Errorf("JSON %v: formatting allocates %v times per entry, want 0", cfg.JSON != nil, allocs)
		}
	}
}

func TestChainEndToEnd(t *testing.T) {
	var buf syncBuffer
	l := newLogger(t, Config{
		Format: `%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %BYTES_SENT% %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %RESP(X-UP)% %DOWNSTREAM_LOCAL_ADDRESS%`,
		Output: &buf,
	})
	up := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		x.Cluster, x.Endpoint, x.Attempts = "backend", "10.9.9.9:80", 1
		return &http.Response{
			StatusCode: http.StatusTeapot,
			Header:     http.Header{"X-Up": {"yes"}},
			Body:       io.NopCloser(strings.NewReader("hello")),
		}, nil
	})
	chain, err := filter.NewChain(l)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chain.Serve(w, filter.NewExchange(r), up)
	}))
	defer srv.Close()

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(srv.URL + "/tea?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || string(body) != "hello" {
		t.Fatalf("response %d %q, want 418 hello", resp.StatusCode, body)
	}
	// OnDone may run just after the client has the body; Close writes it.
	srv.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	local := strings.TrimPrefix(srv.URL, "http://")
	want := "GET /tea?x=1 HTTP/1.1 418 5 backend 10.9.9.9:80 1 yes " + local + "\n"
	if got := buf.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
