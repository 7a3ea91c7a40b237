package cluster

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSend measures one proxied request over a pooled loopback
// connection; Transport is the bare http.Transport baseline Send must
// match in allocations. On HTTP1 Send takes the synchronous path.
// cpu-ns/op is process CPU per request, the in-process server included.
func BenchmarkSend(b *testing.B) {
	for _, size := range []int{0, 64 << 10} {
		payload := strings.Repeat("x", size)
		for _, proto := range []Protocol{HTTP1, HTTP2} {
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, payload)
			}))
			if proto == HTTP2 {
				ts.Config.Protocols = new(http.Protocols)
				ts.Config.Protocols.SetUnencryptedHTTP2(true)
			}
			ts.Start()
			c := newTestCluster(b, Config{Name: "bench", Protocol: proto, Endpoints: []Endpoint{{Address: hostOf(b, ts.URL)}}})
			name := proto.String() + "/body=" + strconv.Itoa(size)

			b.Run(name+"/Send", func(b *testing.B) {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://upstream/", nil)
				r := &Request{HTTP: req}
				b.ReportAllocs()
				start := cpuTime()
				for b.Loop() {
					resp, err := c.Send(r)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
			})
			b.Run(name+"/Transport", func(b *testing.B) {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, ts.URL, nil)
				b.ReportAllocs()
				start := cpuTime()
				for b.Loop() {
					resp, err := c.transport.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
			})
			b.Run(name+"/Parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://upstream/", nil)
					r := &Request{HTTP: req}
					for pb.Next() {
						resp, err := c.Send(r)
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				})
			})
			ts.Close()
		}
	}
}

// BenchmarkSendH1 isolates the client side of a small HTTP/1.1 GET: the
// upstream is a raw loopback server that answers every request head with
// a canned response, so allocations and CPU are mostly the client's.
// Send takes the synchronous path; Transport is http.Transport.RoundTrip
// on the same cluster. cpu-ns/op is the process's user+system CPU time
// per request, server included.
func BenchmarkSendH1(b *testing.B) {
	for _, size := range []int{0, 128, 16 << 10} {
		addr := cannedServer(b, size)
		c := newTestCluster(b, Config{Name: "bench", Endpoints: []Endpoint{{Address: addr}}})
		name := "body=" + strconv.Itoa(size)
		run := func(b *testing.B, rt func(*http.Request) (*http.Response, error), req *http.Request) {
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				resp, err := rt(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		}
		b.Run(name+"/Send", func(b *testing.B) {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://upstream/", nil)
			r := &Request{HTTP: req}
			run(b, func(*http.Request) (*http.Response, error) { return c.Send(r) }, req)
		})
		b.Run(name+"/SendWithTimeout", func(b *testing.B) {
			// The gateway's case: a cancelable context with a route deadline.
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream/", nil)
			r := &Request{HTTP: req}
			run(b, func(*http.Request) (*http.Response, error) { return c.Send(r) }, req)
		})
		b.Run(name+"/Transport", func(b *testing.B) {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/", nil)
			run(b, c.transport.RoundTrip, req)
		})
		b.Run(name+"/TransportWithTimeout", func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
			run(b, c.transport.RoundTrip, req)
		})
	}
}

// cannedServer answers each request head on each connection with a 200
// carrying size bytes, allocating nothing per request.
func cannedServer(b testing.TB, size int) string {
	b.Helper()
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + strings.Repeat("x", size))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
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
				buf := make([]byte, 4096)
				var have int
				for {
					n, err := conn.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := conn.Write(resp); err != nil {
							return
						}
						have = copy(buf, buf[i+4:have])
					}
					if have == len(buf) {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// cpuTime returns the process's user plus system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
