package portico

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/internal/testcert"
	"github.com/porticoproxy/portico/listener"
)

// startEchoOrigin serves TCP connections that echo what they read and,
// once the client half-closes, write "bye" and close.
func startEchoOrigin(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if _, err := io.Copy(c, c); err != nil {
					return
				}
				c.Write([]byte("bye"))
			})
		}
	})
	return ln.Addr().String()
}

// deadAddr returns an address that refuses connections.
func deadAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func tcpConfig(tp listener.TCPProxyConfig, tlsCfg *listener.TLSConfig, eps ...string) Config {
	var endpoints []cluster.Endpoint
	for _, a := range eps {
		endpoints = append(endpoints, cluster.Endpoint{Address: a})
	}
	return Config{
		Listeners: []listener.Config{{
			Name:         "ingress",
			Address:      "127.0.0.1:0",
			FilterChains: []listener.FilterChain{{Name: "tcp", TLS: tlsCfg, TCP: &tp}},
		}},
		Clusters: []cluster.Config{{Name: "echo", Endpoints: endpoints}},
	}
}

// roundTrip writes msg, half-closes and reads everything back.
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestTCPProxyRoundTripAndHalfClose(t *testing.T) {
	origin := startEchoOrigin(t)
	g, addr := startGateway(t, tcpConfig(listener.TCPProxyConfig{StatPrefix: "echo_tcp", Cluster: "echo"}, nil, origin), Options{Admin: "-"})
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// The origin's "bye" follows our half-close: it must still arrive.
		if got, want := roundTrip(t, c, "hello"), "hellobye"; got != want {
			t.Errorf("conn %d: got %q, want %q", i, got, want)
		}
		c.Close()
	}
	s := g.metrics.tcp("echo_tcp")
	if got := s.CxTotal.Load(); got != 3 {
		t.Errorf("downstream_cx_total: got %d, want 3", got)
	}
	if got := s.RxBytes.Load(); got != 15 {
		t.Errorf("downstream_cx_rx_bytes_total: got %d, want 15", got)
	}
	deadline := time.Now().Add(2 * time.Second) // the last tx count may trail the client's read
	for s.TxBytes.Load() != 24 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.TxBytes.Load(); got != 24 {
		t.Errorf("downstream_cx_tx_bytes_total: got %d, want 24", got)
	}
}

func TestTCPProxyIdleTimeout(t *testing.T) {
	origin := startEchoOrigin(t)
	g, addr := startGateway(t, tcpConfig(listener.TCPProxyConfig{StatPrefix: "idle", Cluster: "echo", IdleTimeout: 500 * time.Millisecond}, nil, origin), Options{Admin: "-"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Traffic keeps the connection open past the timeout.
	for range 4 {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatalf("read while active: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // 800ms in all: past the timeout
	}
	start := time.Now()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read: got %d bytes, want the connection closed by the idle timeout", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v, want about 500ms", d)
	}
	if got := g.metrics.tcp("idle").IdleTimeout.Load(); got != 1 {
		t.Errorf("idle_timeout: got %d, want 1", got)
	}
}

func TestTCPProxyConnectRetry(t *testing.T) {
	origin := startEchoOrigin(t)
	dead := deadAddr(t)
	_, addr := startGateway(t, tcpConfig(listener.TCPProxyConfig{StatPrefix: "retry", Cluster: "echo", MaxConnectAttempts: 2}, nil, dead, origin), Options{Admin: "-"})
	for i := range 6 { // round robin starts on either endpoint
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := roundTrip(t, c, "hi"), "hibye"; got != want {
			t.Errorf("conn %d: got %q, want %q", i, got, want)
		}
		c.Close()
	}
}

func TestTCPProxyNoCluster(t *testing.T) {
	cfg := tcpConfig(listener.TCPProxyConfig{StatPrefix: "nc", Cluster: "missing"}, nil, deadAddr(t))
	g, addr := startGateway(t, cfg, Options{Admin: "-"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read: want the connection closed")
	}
	if got := g.metrics.tcp("nc").NoRoute.Load(); got != 1 {
		t.Errorf("downstream_cx_no_route: got %d, want 1", got)
	}
}

func TestTCPProxyTLSTermination(t *testing.T) {
	origin := startEchoOrigin(t)
	ca := testcert.NewCA()
	cert, key := ca.Leaf("tcp.test")
	tlsCfg := &listener.TLSConfig{Certificates: []listener.Certificate{{CertPEM: cert, KeyPEM: key}}}
	_, addr := startGateway(t, tcpConfig(listener.TCPProxyConfig{StatPrefix: "tls", Cluster: "echo"}, tlsCfg, origin), Options{Admin: "-"})
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "tcp.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := roundTrip(t, c, "secret"), "secretbye"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestTCPProxyConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		tp   listener.TCPProxyConfig
		want string
	}{
		{"no cluster", listener.TCPProxyConfig{}, `listeners[0] "ingress": filter_chains[0].tcp.cluster: required`},
		{"upstream set", listener.TCPProxyConfig{Cluster: "echo", Upstream: noopUpstream}, `filter_chains[0].tcp.upstream: set by the gateway, must be nil`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(tcpConfig(tc.tp, nil, deadAddr(t)), Options{Admin: "-"})
			if err == nil {
				g.Close()
				t.Fatalf("New: got no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func noopUpstream(context.Context) (net.Conn, error) { return nil, net.ErrClosed }
