package listener

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var body128 = bytes.Repeat([]byte("x"), 128)

// tinyHandler answers every request with 128 bytes, as a small proxied
// response would arrive: Content-Length known.
var tinyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Length"] = []string{"128"}
	w.Write(body128)
})

// benchListener serves tinyHandler; with counted, its chain's connections
// keep ConnCounters, as the gateway's do.
func benchListener(tb testing.TB, stdlib, counted bool) *Listener {
	tb.Helper()
	hc := &HTTPConfig{Handler: tinyHandler, DisableRequestID: true}
	setStdlibHTTP1(hc, stdlib)
	cfg := Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{Name: "c", HTTP: hc}}}
	if counted {
		cfg.Observer = &ctrObserver{
			countObserver: &countObserver{open: map[string]int{}, closed: map[string]int{}},
			ctrs:          map[string]*ConnCounters{"c": {}},
		}
	}
	l, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { l.Serve(context.Background()); close(done) }()
	tb.Cleanup(func() { l.Close(); <-done })
	return l
}

// rawClient is an allocation-free keep-alive HTTP/1.1 client for GETs whose
// responses carry Content-Length, so benchmarks count the server's work.
type rawClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func dialRaw(tb testing.TB, addr string) *rawClient {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &rawClient{c: c, br: bufio.NewReaderSize(c, 8192), req: []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")}
}

func (rc *rawClient) get() error {
	if _, err := rc.c.Write(rc.req); err != nil {
		return err
	}
	cl := -1
	for {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		const p = "Content-Length: "
		if len(line) > len(p) && string(line[:len(p)]) == p {
			n, err := strconv.Atoi(string(bytes.TrimSpace(line[len(p):])))
			if err != nil {
				return err
			}
			cl = n
		}
	}
	if cl < 0 {
		return io.ErrUnexpectedEOF
	}
	_, err := rc.br.Discard(cl)
	return err
}

func BenchmarkServeHTTP1(b *testing.B) {
	for _, path := range []struct {
		name            string
		stdlib, counted bool
	}{{"fast", false, false}, {"fast+counters", false, true}, {"stdlib", true, false}} {
		b.Run(path.name, func(b *testing.B) {
			l := benchListener(b, path.stdlib, path.counted)
			rc := dialRaw(b, l.Addr().String())
			if err := rc.get(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := rc.get(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWrkCPUPerRequest drives the listener with wrk (a separate process)
// and reports requests per CPU-second of this process. It runs only when
// PORTICO_WRK is set, e.g. PORTICO_WRK=5s.
func TestWrkCPUPerRequest(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("PORTICO_WRK"))
	if err != nil {
		t.Skip("set PORTICO_WRK=5s to run wrk")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed")
	}
	for _, path := range []struct {
		name   string
		stdlib bool
	}{{"fast", false}, {"stdlib", true}} {
		t.Run(path.name, func(t *testing.T) {
			l := benchListener(t, path.stdlib, false)
			var before, after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "wrk", "-t1", "-c64", "-d"+d.String(), "http://"+l.Addr().String()+"/").CombinedOutput()
			if err != nil {
				t.Fatalf("wrk: %v: %s", err, out)
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
			var reqs float64
			for _, line := range bytes.Split(out, []byte("\n")) {
				f := bytes.Fields(line)
				if len(f) >= 2 && string(f[1]) == "requests" {
					reqs, _ = strconv.ParseFloat(string(f[0]), 64)
				}
			}
			t.Logf("%s: %.0f requests, server CPU %v, %.0f req per CPU-second, %.2f µs CPU/req\n%s",
				path.name, reqs, cpu, reqs/cpu.Seconds(), cpu.Seconds()*1e6/reqs, out)
		})
	}
}
