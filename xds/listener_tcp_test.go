package xds

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
)

// TestListenerTCPProxyServed translates a listener whose chain is a
// tcp_proxy and serves it through a Gateway to a TCP echo origin.
func TestListenerTCPProxyServed(t *testing.T) {
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
				io.Copy(c, c)
				c.Write([]byte("!"))
			})
		}
	})

	cfg, routes, _, err := (&Translator{}).Listener(ltListener(t, `
name: tcp
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: echo
      cluster: echo
      idle_timeout: 0s
      max_connect_attempts: 3
`))
	if err != nil {
		t.Fatalf("Listener: %v", err)
	}
	want := &listener.TCPProxyConfig{StatPrefix: "echo", Cluster: "echo", IdleTimeout: -1, MaxConnectAttempts: 3}
	if d := cmp.Diff(want, cfg.FilterChains[0].TCP); d != "" || len(routes) != 0 || cfg.FilterChains[0].HTTP != nil {
		t.Fatalf("tcp proxy (-want +got):\n%s\nroutes: %v", d, routes)
	}

	g, err := portico.New(portico.Config{
		Listeners: []listener.Config{cfg},
		Clusters:  []cluster.Config{{Name: "echo", Endpoints: []cluster.Endpoint{{Address: ln.Addr().String()}}}},
	}, portico.Options{Admin: "-"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	c, err := net.Dial("tcp", g.ListenerAddr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if got, want := string(b), "ping!"; err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
}
