package cluster

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkSend measures one proxied request over a pooled loopback
// connection; Transport is the bare http.Transport baseline Send must
// match in allocations.
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
				for b.Loop() {
					resp, err := c.Send(r)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.Run(name+"/Transport", func(b *testing.B) {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, ts.URL, nil)
				b.ReportAllocs()
				for b.Loop() {
					resp, err := c.transport.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
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
