package portico

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/porticoproxy/portico/listener"
)

// connObserver keeps one listener's connection stats that the listener
// does not keep itself: the connection length per listener address, and
// the per connection manager connection stats (http.<prefix>.downstream_cx_*).
// It is immutable once built.
type connObserver struct {
	m       *metrics
	address string
	length  prometheus.Observer   // listener.<address>.downstream_cx_length_ms
	chains  map[string]chainStats // by filter chain name
}

// chainStats are the connection stats of one filter chain's manager.
type chainStats struct {
	hcm *hcmStats
	tls bool
}

var _ listener.CountingObserver = (*connObserver)(nil)

func (m *metrics) connObserver(address string) *connObserver {
	return &connObserver{
		m:       m,
		address: address,
		length:  m.lisCxLength.WithLabelValues(listenerLabel(address)),
		chains:  map[string]chainStats{},
	}
}

// bind attaches a filter chain's connection manager stats, and binds the
// manager's per-listener stats (listener.<address>.http.<prefix>.*) into
// s, which must not be serving yet.
func (o *connObserver) bind(chain string, fc *listener.FilterChain, s *hcmStats) {
	s.lis = o.m.lisHTTP(o.address, s.prefix)
	o.chains[chain] = chainStats{hcm: s, tls: fc.TLS != nil}
}

// ConnCounters implements listener.CountingObserver: the listener keeps
// the chain's connection manager's downstream_cx_http1_*, _http2_* and
// byte counters.
func (o *connObserver) ConnCounters(chain string) *listener.ConnCounters {
	if c, ok := o.chains[chain]; ok {
		return c.hcm.conn
	}
	return nil
}

// OnConnOpen implements listener.Observer.
func (o *connObserver) OnConnOpen(chain string) {
	c, ok := o.chains[chain]
	if !ok {
		return
	}
	c.hcm.cxTotal.Inc()
	c.hcm.cxActive.Inc()
	if c.tls {
		c.hcm.cxSSLTotal.Inc()
		c.hcm.cxSSLActive.Inc()
	}
}

// OnConnClose implements listener.Observer.
func (o *connObserver) OnConnClose(chain string, open time.Duration) {
	ms := millis(open)
	o.length.Observe(ms)
	c, ok := o.chains[chain]
	if !ok {
		return
	}
	c.hcm.cxActive.Dec()
	c.hcm.cxDestroy.Inc()
	c.hcm.cxLength.Observe(ms)
	if c.tls {
		c.hcm.cxSSLActive.Dec()
	}
}
