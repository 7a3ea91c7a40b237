package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTCPIdleTimeout is Envoy's tcp_proxy idle_timeout, 1 h.
const DefaultTCPIdleTimeout = time.Hour

// TCPProxyConfig is Envoy's TCP proxy (envoy.filters.network.tcp_proxy) as
// the terminal filter of a chain: each connection, after the chain's TLS
// termination if any, is spliced both ways with a connection from Upstream.
// Zero values mean Envoy's defaults.
type TCPProxyConfig struct {
	// StatPrefix names the proxy in stats (tcp.<prefix>.…); opaque here.
	StatPrefix string
	// Cluster names the upstream cluster; opaque here, the gateway uses it
	// to build Upstream.
	Cluster string
	// IdleTimeout closes a connection when no byte has moved in either
	// direction for that long; zero means DefaultTCPIdleTimeout, negative
	// disables.
	IdleTimeout time.Duration
	// MaxConnectAttempts is how many upstream connects Upstream may try,
	// each avoiding the endpoint of the previous one; zero means 1. Opaque
	// here: Upstream honours it.
	MaxConnectAttempts int
	// Upstream opens the upstream connection of a downstream connection;
	// required. ctx ends when the listener closes. An error closes the
	// downstream connection. The connection it returns should have a
	// CloseWrite method, so that half-closes propagate. It is called
	// concurrently.
	Upstream func(ctx context.Context) (net.Conn, error)
	// Stats, if set, is kept up to date by the listener. Proxies of one or
	// several listeners may share one TCPStats.
	Stats *TCPStats
}

// TCPStats are counters of TCP proxies, Envoy's tcp.<stat_prefix>.*
// stats, updated with atomic adds and readable at any time.
type TCPStats struct {
	// CxTotal counts connections handled (downstream_cx_total).
	CxTotal atomic.Uint64
	// NoRoute counts connections closed because their cluster does not
	// exist (downstream_cx_no_route); Upstream counts it.
	NoRoute atomic.Uint64
	// RxBytes counts bytes read from downstream, TxBytes bytes written to
	// it, after TLS (downstream_cx_rx_bytes_total, _tx_bytes_total).
	RxBytes atomic.Uint64
	TxBytes atomic.Uint64
	// IdleTimeout counts connections closed by the idle timeout
	// (idle_timeout).
	IdleTimeout atomic.Uint64
}

func (t *TCPProxyConfig) validate(path string) error {
	switch {
	case t.Upstream == nil:
		return fmt.Errorf("%s.upstream: required", path)
	case t.MaxConnectAttempts < 0:
		return fmt.Errorf("%s.max_connect_attempts: negative", path)
	}
	return nil
}

// tcpProxy is a chain's compiled TCP proxy.
type tcpProxy struct {
	upstream func(ctx context.Context) (net.Conn, error)
	idle     time.Duration // 0: none
	stats    *TCPStats     // never nil
}

func newTCPProxy(t *TCPProxyConfig) *tcpProxy {
	p := &tcpProxy{upstream: t.Upstream, idle: orDefault(t.IdleTimeout, DefaultTCPIdleTimeout), stats: t.Stats}
	if p.idle < 0 {
		p.idle = 0
	}
	if p.stats == nil {
		p.stats = new(TCPStats)
	}
	return p
}

// tcpConns is the listener's registry of proxied connections, so that
// Shutdown can wait for them and Close can close them.
type tcpConns struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // one per serveTCP goroutine
}

// add registers c; false means the listener is closing and c must go.
func (r *tcpConns) add(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.m == nil {
		r.m = make(map[net.Conn]struct{})
	}
	r.m[c] = struct{}{}
	return true
}

func (r *tcpConns) remove(c net.Conn) {
	r.mu.Lock()
	delete(r.m, c)
	r.mu.Unlock()
}

// closeAll closes every downstream connection, which ends its splice.
func (r *tcpConns) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for c := range r.m {
		c.Close()
	}
}

// wait waits for every proxied connection to end, or for ctx, when it
// closes the rest.
func (r *tcpConns) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.closeAll()
		<-done
	}
}

// serveTCP proxies one downstream connection until both directions end.
func (l *Listener) serveTCP(ch *chain, c net.Conn) {
	defer l.tcp.wg.Done()
	p := ch.tcp
	p.stats.CxTotal.Add(1)
	if !l.tcp.add(c) {
		c.Close()
		return
	}
	defer l.tcp.remove(c)
	ctx, cancel := context.WithCancel(l.ctx)
	stop := context.AfterFunc(ctx, func() { c.Close() }) // Close during the connect
	up, err := p.upstream(ctx)
	stopped := stop()
	cancel()
	if err != nil || !stopped {
		if up != nil {
			up.Close()
		}
		c.Close()
		return
	}
	splice(c, up, p)
}

// splice copies both ways between down and up, propagating half-closes,
// until both directions end; an error in either direction, or the idle
// timeout, closes both connections.
func splice(down, up net.Conn, p *tcpProxy) {
	var last atomic.Int64 // UnixNano of the last byte moved
	last.Store(time.Now().UnixNano())
	var closeOnce sync.Once
	closeBoth := func() {
		closeOnce.Do(func() {
			down.Close()
			up.Close()
		})
	}
	if p.idle > 0 {
		var t *time.Timer
		t = time.AfterFunc(p.idle, func() {
			if d := time.Since(time.Unix(0, last.Load())); d < p.idle {
				t.Reset(p.idle - d)
				return
			}
			p.stats.IdleTimeout.Add(1)
			closeBoth()
		})
		defer t.Stop()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		pipe(down, up, &last, &p.stats.TxBytes, closeBoth) // upstream → downstream
	})
	pipe(up, down, &last, &p.stats.RxBytes, closeBoth) // downstream → upstream
	wg.Wait()
	closeBoth()
}

// pipe copies src to dst, counting the bytes in n (read from src or
// written to dst, whichever is the downstream side: equal on success),
// then half-closes dst on EOF or closes both on an error.
func pipe(dst, src net.Conn, last *atomic.Int64, n *atomic.Uint64, closeBoth func()) {
	bp := tcpBufPool.Get().(*[]byte)
	defer tcpBufPool.Put(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			last.Store(time.Now().UnixNano())
			nw, werr := dst.Write(buf[:nr])
			n.Add(uint64(nw))
			if werr != nil {
				closeBoth()
				return
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				closeBoth()
				return
			}
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				if cw.CloseWrite() == nil {
					return
				}
			}
			closeBoth()
			return
		}
	}
}

var tcpBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
