package listener

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTCPProxyValidate(t *testing.T) {
	up := func(context.Context) (net.Conn, error) { return nil, net.ErrClosed }
	h := &HTTPConfig{Handler: http.NotFoundHandler()}
	for _, tc := range []struct {
		name string
		fc   FilterChain
		want string // "" for valid
	}{
		{"tcp", FilterChain{TCP: &TCPProxyConfig{Upstream: up, IdleTimeout: -1}}, ""},
		{"both", FilterChain{HTTP: h, TCP: &TCPProxyConfig{Upstream: up}}, "filter_chains[0].tcp: set with http: exactly one terminal filter allowed"},
		{"neither", FilterChain{}, "filter_chains[0].http: required, or tcp"},
		{"no upstream", FilterChain{TCP: &TCPProxyConfig{}}, "filter_chains[0].tcp.upstream: required"},
		{"attempts", FilterChain{TCP: &TCPProxyConfig{Upstream: up, MaxConnectAttempts: -1}}, "filter_chains[0].tcp.max_connect_attempts: negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{tc.fc}}
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: got %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestTCPProxyCloseEndsConnections checks that Close ends proxied
// connections and waits for their goroutines.
func TestTCPProxyCloseEndsConnections(t *testing.T) {
	origin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()
	go func() {
		for {
			c, err := origin.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	var d net.Dialer
	up := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", origin.Addr().String()) }
	stats := new(TCPStats)
	l, err := New(Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{TCP: &TCPProxyConfig{Upstream: up, Stats: stats}}}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve(context.Background())
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for stats.CxTotal.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	l.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read: want the connection closed by Close")
	}
}
