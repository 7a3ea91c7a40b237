package listener

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// ctrObserver is a CountingObserver with one ConnCounters per chain.
type ctrObserver struct {
	*countObserver
	ctrs map[string]*ConnCounters
}

func (o *ctrObserver) ConnCounters(chain string) *ConnCounters { return o.ctrs[chain] }

// countingConn counts the bytes a client reads and writes.
type countingConn struct {
	net.Conn
	rx, tx *atomic.Uint64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rx.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.tx.Add(uint64(n))
	return n, err
}

// TestConnCounters checks the per-chain counters a CountingObserver gets:
// connections by protocol (HTTP/1 and h2c told from the first bytes, by
// the fast path or by sniffing on net/http's path; TLS by ALPN) and bytes,
// against what the clients sent and received. TestMain runs it on both
// HTTP/1 paths.
func TestConnCounters(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t)
	for _, inspect := range []bool{false, true} {
		name := "plaintext only"
		if inspect {
			name = "with tls inspector"
		}
		t.Run(name, func(t *testing.T) {
			obs := &ctrObserver{
				countObserver: &countObserver{open: map[string]int{}, closed: map[string]int{}},
				ctrs:          map[string]*ConnCounters{"plain": {}, "tls": {}},
			}
			cfg := Config{Name: "l", Address: "127.0.0.1:0", Observer: obs,
				FilterChains: []FilterChain{{Name: "plain", Match: ChainMatch{TransportProtocol: TransportRawBuffer},
					HTTP: &HTTPConfig{Handler: chainHandler("plain")}}}}
			if inspect {
				cfg.FilterChains = append(cfg.FilterChains, FilterChain{Name: "tls", Match: ChainMatch{TransportProtocol: TransportTLS},
					TLS:  &TLSConfig{Certificates: []Certificate{p.cert(t, "a.test")}},
					HTTP: &HTTPConfig{Handler: chainHandler("tls")}})
			}
			l := startListener(t, cfg)
			addr := l.Addr().String()

			type side struct{ rx, tx atomic.Uint64 }
			clients := map[string]*side{"plain": {}, "tls": {}}
			get := func(chain string, proto func(*http.Protocols), n int) {
				t.Helper()
				var protos http.Protocols
				proto(&protos)
				s := clients[chain]
				tr := &http.Transport{Protocols: &protos, Proxy: nil,
					TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "a.test"},
					DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
						c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
						if err != nil {
							return nil, err
						}
						return &countingConn{Conn: c, rx: &s.rx, tx: &s.tx}, nil
					}}
				defer tr.CloseIdleConnections()
				client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
				scheme := "http://"
				if chain == "tls" {
					scheme = "https://"
				}
				for range n {
					resp, err := client.Get(scheme + addr + "/")
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			get("plain", h1, 2) // two requests, one connection
			get("plain", h2c, 1)
			if inspect {
				get("tls", h1, 1)
				get("tls", h2, 2)
			}

			deadline := time.Now().Add(5 * time.Second)
			for l.Stats().DownstreamCxActive != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("connections still open: %+v", l.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			for _, chain := range []string{"plain", "tls"} {
				c, s := obs.ctrs[chain], clients[chain]
				want := uint64(1)
				if chain == "tls" && !inspect {
					want = 0
				}
				if got := [4]int64{int64(c.HTTP1Total.Load()), int64(c.HTTP2Total.Load()), c.HTTP1Active.Load(), c.HTTP2Active.Load()}; got != [4]int64{int64(want), int64(want), 0, 0} {
					t.Errorf("%s: http1 total, http2 total, http1 active, http2 active = %v, want [%d %d 0 0]", chain, got, want, want)
				}
				if got, want := c.RxBytes.Load(), s.tx.Load(); got != want {
					t.Errorf("%s: rx bytes %d, want %d (what the clients wrote)", chain, got, want)
				}
				// A TLS server's Close writes a close_notify alert (24 bytes
				// in TLS 1.3) that a client gone first never reads.
				got, sent := c.TxBytes.Load(), s.rx.Load()
				if slack := map[string]uint64{"plain": 0, "tls": 2 * 24}[chain]; got < sent || got > sent+slack {
					t.Errorf("%s: tx bytes %d, want %d (what the clients read), up to %d more", chain, got, sent, slack)
				}
				if sent == 0 && want > 0 {
					t.Errorf("%s: clients read nothing", chain)
				}
			}
		})
	}
}
