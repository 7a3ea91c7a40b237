package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/porticoproxy/portico/lb"
)

// Dial picks an endpoint, avoiding exclude (the endpoint of a previous
// attempt) when another can be picked, and opens a connection to it for a
// TCP proxy: through the cluster's dialer within ConnectTimeout, with the
// TLS handshake when the cluster has TLS, counted and limited like the
// connections of the HTTP pools. It returns the connection and the
// endpoint's address (empty when none was picked).
//
// Dial makes one attempt; a TCP proxy's max_connect_attempts builds on it.
// On failure the error is an *UpstreamError: NoHealthyUpstream when no
// endpoint could be picked, ConnectFailure (or Overflow at the cluster's
// connection limit) when connecting failed, Canceled or Timeout when ctx
// ended. A connect failure counts against the endpoint's outlier
// detection. The balancer's Done callback, if any, runs when the
// connection is closed, so least-request balancing sees open
// connections. The connection has a CloseWrite method; the caller must
// close it.
func (c *Cluster) Dial(ctx context.Context, exclude string) (net.Conn, string, error) {
	if c.closed.Load() {
		return nil, "", &UpstreamError{Cluster: c.cfg.Name, Kind: NoHealthyUpstream, Err: ErrClosed}
	}
	var info lb.PickInfo
	if exclude != "" {
		info.Exclude = &lb.Endpoint{Address: exclude}
	}
	picked, err := c.balancer.Picker().Pick(info)
	if err != nil {
		return nil, "", &UpstreamError{Cluster: c.cfg.Name, Kind: NoHealthyUpstream, Err: err}
	}
	addr := picked.Endpoint.Address
	start := time.Now()
	var conn net.Conn
	if c.tlsConfig != nil {
		conn, err = c.dialTLSContext(ctx, "tcp", addr)
	} else {
		conn, err = c.dialContext(ctx, "tcp", addr)
	}
	if err != nil {
		ue := &UpstreamError{Cluster: c.cfg.Name, Endpoint: addr, Kind: classify(err, ctx.Err()), Err: err}
		if h := c.hostFor(addr); h != nil {
			h.recordError(c.outlier, ue.Kind)
		}
		if picked.Done != nil {
			picked.Done(lb.DoneInfo{Err: ue, Duration: time.Since(start)})
		}
		return nil, addr, ue
	}
	if picked.Done == nil {
		return conn, addr, nil
	}
	return &dialedConn{Conn: conn, done: picked.Done, start: start}, addr, nil
}

// dialedConn reports the end of a proxied connection to the balancer.
type dialedConn struct {
	net.Conn
	done  func(lb.DoneInfo)
	start time.Time
	once  sync.Once
}

func (d *dialedConn) Close() error {
	err := d.Conn.Close()
	d.once.Do(func() { d.done(lb.DoneInfo{Duration: time.Since(d.start)}) })
	return err
}

// CloseWrite half-closes the connection: a TCP FIN, or a TLS
// close_notify.
func (d *dialedConn) CloseWrite() error {
	if cw, ok := d.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("CloseWrite: %w", http.ErrNotSupported)
}
