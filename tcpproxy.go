package portico

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
)

// checkTCPProxy validates what the gateway reads of a TCP proxy; the error
// starts with the field name, for the caller to prefix with the path.
func checkTCPProxy(t *listener.TCPProxyConfig) error {
	switch {
	case t.Upstream != nil:
		return errors.New("upstream: set by the gateway, must be nil")
	case t.Cluster == "":
		return errors.New("cluster: required")
	}
	return nil
}

// bindTCPProxy returns a copy of t whose Upstream connects through the
// cluster t names, resolved per connection so that cluster updates (and a
// cluster that arrives after the listener) apply to new connections.
func (g *Gateway) bindTCPProxy(t *listener.TCPProxyConfig) *listener.TCPProxyConfig {
	b := *t
	b.Stats = g.metrics.tcp(t.StatPrefix)
	b.Upstream = (&tcpUpstream{g: g, cluster: t.Cluster, attempts: max(t.MaxConnectAttempts, 1), stats: b.Stats}).dial
	return &b
}

// tcpUpstream connects a TCP proxy's connections to its cluster. It is
// immutable and used concurrently.
type tcpUpstream struct {
	g        *Gateway
	cluster  string
	attempts int
	stats    *listener.TCPStats
}

// errTCPNoCluster is what a TCP proxy's Upstream returns when its cluster
// does not exist (downstream_cx_no_route).
var errTCPNoCluster = errors.New("cluster not found")

// dial makes up to u.attempts connect attempts (Envoy's
// max_connect_attempts), each avoiding the previous attempt's endpoint;
// only connect failures are retried.
func (u *tcpUpstream) dial(ctx context.Context) (net.Conn, error) {
	var exclude string
	var err error
	for range u.attempts {
		lc := u.g.clusters.Load().byName[u.cluster]
		if lc == nil {
			u.stats.NoRoute.Add(1)
			return nil, fmt.Errorf("cluster %q: %w", u.cluster, errTCPNoCluster)
		}
		var conn net.Conn
		conn, exclude, err = lc.c.Dial(ctx, exclude)
		if err == nil {
			return conn, nil
		}
		if ue, ok := errors.AsType[*cluster.UpstreamError](err); !ok || ue.Kind != cluster.ConnectFailure {
			break
		}
	}
	return nil, err
}
