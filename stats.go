package portico

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// DefaultStatsPrefix is the metric name prefix when Options.StatsPrefix is
// empty. With the prefix "envoy" metric names and labels are Envoy's own.
const DefaultStatsPrefix = "portico"

// rqTimeBuckets are Envoy's default histogram buckets, in milliseconds.
var rqTimeBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// metrics holds the gateway's Prometheus collectors, named after Envoy's
// stats with Envoy's tag extraction turned into labels, exactly as Envoy's
// /stats/prometheus prints them when the prefix is "envoy":
//
//	<prefix>_http_downstream_rq_xx{<prefix>_response_code_class, <prefix>_http_conn_manager_prefix}
//	<prefix>_cluster_upstream_rq{<prefix>_response_code, <prefix>_cluster_name}
//	<prefix>_listener_downstream_cx_length_ms{<prefix>_listener_address}
//	<prefix>_listener_http_downstream_rq_xx{<prefix>_response_code_class, <prefix>_listener_address, <prefix>_http_conn_manager_prefix}
//	<prefix>_vhost_route_upstream_rq_total{<prefix>_virtual_host, <prefix>_route}
//
// The families below are the ones the request path updates. Children are
// bound once per listener, connection manager, cluster and route, so the
// request path only does atomic adds; per-code children are bound on first
// use. Stats that already live somewhere as lock-free counters (listener
// connections, cluster membership, the server) are read at scrape time by
// gatewayCollector instead.
type metrics struct {
	reg    *prometheus.Registry
	prefix string
	start  time.Time

	// http.<stat_prefix>.*
	hcmRqTotal     *prometheus.CounterVec
	hcmRqXX        *prometheus.CounterVec
	hcmRqCompleted *prometheus.CounterVec
	hcmRqHTTP1     *prometheus.CounterVec
	hcmRqHTTP2     *prometheus.CounterVec
	hcmRqActive    *prometheus.GaugeVec
	hcmRqTime      *prometheus.HistogramVec
	hcmRqNR        *prometheus.CounterVec
	hcmRqNC        *prometheus.CounterVec
	hcmCxTotal     *prometheus.CounterVec
	hcmCxDestroy   *prometheus.CounterVec
	hcmCxSSLTotal  *prometheus.CounterVec
	hcmCxActive    *prometheus.GaugeVec
	hcmCxSSLActive *prometheus.GaugeVec
	hcmCxLength    *prometheus.HistogramVec
	hcmRqRedirect  *prometheus.CounterVec
	hcmRqDirect    *prometheus.CounterVec
	hcmRqIdle      *prometheus.CounterVec
	// http.<stat_prefix>.downstream_cx_http1_* / _http2_* / _rx_bytes_total
	// / _tx_bytes_total: kept by the listeners, one ConnCounters per stat
	// prefix shared by every connection manager with that prefix, read at
	// scrape time.
	connMu sync.Mutex
	conns  map[string]*listener.ConnCounters
	// tcp.<stat_prefix>.*: kept by the listeners' TCP proxies, one
	// TCPStats per stat prefix, read at scrape time. Guarded by connMu.
	tcps map[string]*listener.TCPStats
	// listener.<address>.* kept by the gateway; the counters are the
	// listener's own, read at scrape time.
	lisCxLength *prometheus.HistogramVec
	// listener.<address>.http.<stat_prefix>.*: Envoy's per-listener copies
	// of the connection manager's response stats.
	lisHTTPRqXX        *prometheus.CounterVec
	lisHTTPRqCompleted *prometheus.CounterVec
	// cluster.<name>.*
	cluRqTotal   *prometheus.CounterVec
	cluRqXX      *prometheus.CounterVec
	cluRqCode    *prometheus.CounterVec
	cluRqDone    *prometheus.CounterVec
	cluRqTime    *prometheus.HistogramVec
	cluRqActive  *prometheus.GaugeVec
	cluRqTimeout *prometheus.CounterVec
	cluNoHealthy *prometheus.CounterVec
	cluRetry     retryVecs // retry and shadow counters (retry.go)
	// vhost.<virtual_host>.route.<route>.* (Options.RouteStats)
	rtRqTotal   *prometheus.CounterVec
	rtRqXX      *prometheus.CounterVec
	rtRqCode    *prometheus.CounterVec
	rtRqTime    *prometheus.HistogramVec
	rtRqTimeout *prometheus.CounterVec
	// cluster_manager.* and listener_manager.*, counted on the control
	// path.
	cmAdded    prometheus.Counter
	cmModified prometheus.Counter
	cmRemoved  prometheus.Counter
	cmUpdated  prometheus.Counter
	lmAdded    prometheus.Counter
	lmModified prometheus.Counter
	lmRemoved  prometheus.Counter
}

func newMetrics(prefix string) *metrics {
	if prefix == "" {
		prefix = DefaultStatsPrefix
	}
	m := &metrics{reg: prometheus.NewRegistry(), prefix: prefix, start: time.Now(), conns: map[string]*listener.ConnCounters{}, tcps: map[string]*listener.TCPStats{}}
	p := func(s string) string { return prefix + "_" + s }
	hcm := p("http_conn_manager_prefix")
	class := p("response_code_class")
	code := p("response_code")
	cl := p("cluster_name")
	lis := p("listener_address")
	vh, rt := p("virtual_host"), p("route")
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: p(name), Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p(name), Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	hist := func(name, help string, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p(name), Help: help, Buckets: rqTimeBuckets}, labels)
		m.reg.MustRegister(v)
		return v
	}
	single := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: p(name), Help: help})
		m.reg.MustRegister(c)
		return c
	}
	m.hcmRqTotal = counter("http_downstream_rq_total", "Total requests.", hcm)
	m.hcmRqXX = counter("http_downstream_rq_xx", "Requests by response code class.", class, hcm)
	m.hcmRqCompleted = counter("http_downstream_rq_completed", "Requests that got a whole response (aborted streams excluded).", hcm)
	m.hcmRqHTTP1 = counter("http_downstream_rq_http1_total", "HTTP/1.x requests.", hcm)
	m.hcmRqHTTP2 = counter("http_downstream_rq_http2_total", "HTTP/2 requests.", hcm)
	m.hcmRqActive = gauge("http_downstream_rq_active", "Active requests.", hcm)
	m.hcmRqTime = hist("http_downstream_rq_time", "Request time, headers received to response done, milliseconds.", hcm)
	m.hcmRqNR = counter("http_no_route", "Requests with no matching route.", hcm)
	m.hcmRqNC = counter("http_no_cluster", "Requests whose route names a cluster that does not exist.", hcm)
	m.hcmCxTotal = counter("http_downstream_cx_total", "Total connections.", hcm)
	m.hcmCxDestroy = counter("http_downstream_cx_destroy", "Connections closed.", hcm)
	m.hcmCxSSLTotal = counter("http_downstream_cx_ssl_total", "Total TLS connections.", hcm)
	m.hcmCxActive = gauge("http_downstream_cx_active", "Active connections.", hcm)
	m.hcmCxSSLActive = gauge("http_downstream_cx_ssl_active", "Active TLS connections.", hcm)
	m.hcmCxLength = hist("http_downstream_cx_length_ms", "Connection length, milliseconds.", hcm)
	m.hcmRqRedirect = counter("http_rq_redirect", "Requests answered with a route's redirect.", hcm)
	m.hcmRqDirect = counter("http_rq_direct_response", "Requests answered with a route's direct response.", hcm)
	m.hcmRqIdle = counter("http_downstream_rq_idle_timeout", "Requests ended by the stream idle timeout.", hcm)
	m.lisCxLength = hist("listener_downstream_cx_length_ms", "Connection length, milliseconds.", lis)
	m.lisHTTPRqXX = counter("listener_http_downstream_rq_xx", "Responses by code class, per listener and connection manager.", class, lis, hcm)
	m.lisHTTPRqCompleted = counter("listener_http_downstream_rq_completed", "Responses, per listener and connection manager.", lis, hcm)
	m.cluRqTotal = counter("cluster_upstream_rq_total", "Total upstream requests.", cl)
	m.cluRqXX = counter("cluster_upstream_rq_xx", "Upstream requests by response code class.", class, cl)
	m.cluRqCode = counter("cluster_upstream_rq", "Upstream requests by response code.", code, cl)
	m.cluRqDone = counter("cluster_upstream_rq_completed", "Upstream requests completed with a response.", cl)
	m.cluRqTime = hist("cluster_upstream_rq_time", "Upstream request time to response headers, milliseconds.", cl)
	m.cluRqActive = gauge("cluster_upstream_rq_active", "Active upstream requests.", cl)
	m.cluRqTimeout = counter("cluster_upstream_rq_timeout", "Upstream requests that timed out.", cl)
	m.cluNoHealthy = counter("cluster_upstream_cx_none_healthy", "Requests with no healthy endpoint.", cl)
	m.cluRetry = newRetryVecs(counter, cl)
	m.rtRqTotal = counter("vhost_route_upstream_rq_total", "Upstream requests of the route.", vh, rt)
	m.rtRqXX = counter("vhost_route_upstream_rq_xx", "Upstream requests of the route by response code class.", class, vh, rt)
	m.rtRqCode = counter("vhost_route_upstream_rq", "Upstream requests of the route by response code.", code, vh, rt)
	m.rtRqTime = hist("vhost_route_upstream_rq_time", "Upstream request time of the route to response headers, milliseconds.", vh, rt)
	m.rtRqTimeout = counter("vhost_route_upstream_rq_timeout", "Upstream requests of the route that timed out.", vh, rt)
	m.cmAdded = single("cluster_manager_cluster_added", "Clusters added.")
	m.cmModified = single("cluster_manager_cluster_modified", "Clusters replaced by a changed configuration.")
	m.cmRemoved = single("cluster_manager_cluster_removed", "Clusters removed.")
	m.cmUpdated = single("cluster_manager_cluster_updated", "Cluster endpoint (membership) updates.")
	m.lmAdded = single("listener_manager_listener_added", "Listeners added.")
	m.lmModified = single("listener_manager_listener_modified", "Listeners updated.")
	m.lmRemoved = single("listener_manager_listener_removed", "Listeners removed.")
	m.reg.MustRegister(collectors.NewGoCollector())
	return m
}

// classStats are counters bound per response code class (1xx..5xx).
type classStats [6]prometheus.Counter

func (c *classStats) inc(status int) {
	i := status / 100
	if i < 1 || i > 5 {
		return
	}
	c[i].Inc()
}

func bindClasses(v *prometheus.CounterVec, labels ...string) classStats {
	var c classStats
	for i := 1; i <= 5; i++ {
		c[i] = v.WithLabelValues(append([]string{string(rune('0' + i))}, labels...)...)
	}
	return c
}

// codeStats are counters per response code (100..599), each bound on its
// first use: binding all 500 up front would publish 500 zero series per
// cluster. After a code's first use counting it is lock-free and
// allocation-free.
type codeStats struct {
	vec    *prometheus.CounterVec
	labels []string // the labels after the response code
	codes  [500]atomic.Pointer[prometheus.Counter]
}

func (s *codeStats) inc(status int) {
	if status < 100 || status > 599 {
		return
	}
	slot := &s.codes[status-100]
	c := slot.Load()
	if c == nil {
		bound := s.vec.WithLabelValues(append([]string{strconv.Itoa(status)}, s.labels...)...)
		if slot.CompareAndSwap(nil, &bound) {
			c = &bound
		} else {
			c = slot.Load()
		}
	}
	(*c).Inc()
}

// hcmStats are one connection manager's stats, keyed by its stat prefix.
type hcmStats struct {
	prefix      string
	rqTotal     prometheus.Counter
	rqCompleted prometheus.Counter
	rqHTTP1     prometheus.Counter
	rqHTTP2     prometheus.Counter
	rqActive    prometheus.Gauge
	rqTime      prometheus.Observer
	rqNR        prometheus.Counter
	rqNC        prometheus.Counter
	rqXX        classStats
	cxTotal     prometheus.Counter
	cxDestroy   prometheus.Counter
	cxSSLTotal  prometheus.Counter
	cxActive    prometheus.Gauge
	cxSSLActive prometheus.Gauge
	cxLength    prometheus.Observer
	rqRedirect  prometheus.Counter
	rqDirect    prometheus.Counter
	rqIdle      prometheus.Counter // downstream_rq_idle_timeout (idle.go)
	// conn are the listener-kept connection counters of the prefix.
	conn *listener.ConnCounters
	// lis are the per-listener copies, bound with the listener's address
	// (connObserver.bind) before the manager serves.
	lis *lisHTTPStats
}

// tcp returns the stats of the TCP proxies with the given stat prefix,
// registering Envoy's tcp.<stat_prefix>.* counters on first use.
func (m *metrics) tcp(prefix string) *listener.TCPStats {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if s := m.tcps[prefix]; s != nil {
		return s
	}
	s := new(listener.TCPStats)
	m.tcps[prefix] = s
	label := prometheus.Labels{m.prefix + "_tcp_prefix": prefix}
	for _, c := range []struct {
		name, help string
		v          func() uint64
	}{
		{"tcp_downstream_cx_total", "Connections handled by the TCP proxy.", s.CxTotal.Load},
		{"tcp_downstream_cx_no_route", "Connections whose cluster was not found.", s.NoRoute.Load},
		{"tcp_downstream_cx_rx_bytes_total", "Bytes read from downstream.", s.RxBytes.Load},
		{"tcp_downstream_cx_tx_bytes_total", "Bytes written to downstream.", s.TxBytes.Load},
		{"tcp_idle_timeout", "Connections closed by the idle timeout.", s.IdleTimeout.Load},
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: m.prefix + "_" + c.name, Help: c.help, ConstLabels: label,
		}, func() float64 { return float64(c.v()) }))
	}
	return s
}

// lisHTTPStats are listener.<address>.http.<stat_prefix>.*.
type lisHTTPStats struct {
	rqXX        classStats
	rqCompleted prometheus.Counter
}

func (m *metrics) hcm(prefix string) *hcmStats {
	m.connMu.Lock()
	conn := m.conns[prefix]
	if conn == nil {
		conn = new(listener.ConnCounters)
		m.conns[prefix] = conn
	}
	m.connMu.Unlock()
	return &hcmStats{
		prefix:      prefix,
		rqTotal:     m.hcmRqTotal.WithLabelValues(prefix),
		rqCompleted: m.hcmRqCompleted.WithLabelValues(prefix),
		rqHTTP1:     m.hcmRqHTTP1.WithLabelValues(prefix),
		rqHTTP2:     m.hcmRqHTTP2.WithLabelValues(prefix),
		rqActive:    m.hcmRqActive.WithLabelValues(prefix),
		rqTime:      m.hcmRqTime.WithLabelValues(prefix),
		rqNR:        m.hcmRqNR.WithLabelValues(prefix),
		rqNC:        m.hcmRqNC.WithLabelValues(prefix),
		rqXX:        bindClasses(m.hcmRqXX, prefix),
		cxTotal:     m.hcmCxTotal.WithLabelValues(prefix),
		cxDestroy:   m.hcmCxDestroy.WithLabelValues(prefix),
		cxSSLTotal:  m.hcmCxSSLTotal.WithLabelValues(prefix),
		cxActive:    m.hcmCxActive.WithLabelValues(prefix),
		cxSSLActive: m.hcmCxSSLActive.WithLabelValues(prefix),
		cxLength:    m.hcmCxLength.WithLabelValues(prefix),
		rqRedirect:  m.hcmRqRedirect.WithLabelValues(prefix),
		rqDirect:    m.hcmRqDirect.WithLabelValues(prefix),
		rqIdle:      m.hcmRqIdle.WithLabelValues(prefix),
		conn:        conn,
	}
}

// lisHTTP binds the per-listener copies of a connection manager's stats.
func (m *metrics) lisHTTP(address, prefix string) *lisHTTPStats {
	lis := listenerLabel(address)
	return &lisHTTPStats{
		rqXX:        bindClasses(m.lisHTTPRqXX, lis, prefix),
		rqCompleted: m.lisHTTPRqCompleted.WithLabelValues(lis, prefix),
	}
}

// completed counts a request that got a whole response.
func (s *hcmStats) completed() {
	s.rqCompleted.Inc()
	if s.lis != nil {
		s.lis.rqCompleted.Inc()
	}
}

// local counts a request answered by its route's redirect or direct
// response (Envoy's router rq_redirect, rq_direct_response).
func (s *hcmStats) local(r *route.Route) {
	if r.Rule().Redirect != nil {
		s.rqRedirect.Inc()
	} else {
		s.rqDirect.Inc()
	}
}

// finish counts a request that is over: its response class and time, and
// its route's stats when route stats are on. It runs even when the chain
// aborts the stream (by panicking with http.ErrAbortHandler).
func (st *hcmState) finish(x *filter.Exchange) {
	s := st.stats
	s.rqActive.Dec()
	s.rqXX.inc(x.Status)
	if s.lis != nil {
		s.lis.rqXX.inc(x.Status)
	}
	end := x.End // set by the chain when the exchange finished
	if end.IsZero() {
		end = time.Now()
	}
	s.rqTime.Observe(millis(end.Sub(x.Start)))
	if x.Flags.Has(filter.FlagNoClusterFound) {
		s.rqNC.Inc()
	}
	if st.routeStats != nil && x.Route != nil && !x.UpstreamStart.IsZero() {
		if rs := st.routeStats[x.Route.Index()]; rs != nil {
			rs.charge(x)
		}
	}
}

// millis converts d to fractional milliseconds, Envoy's histogram unit.
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// clusterStats are one cluster's stats.
type clusterStats struct {
	rqTotal   prometheus.Counter
	rqActive  prometheus.Gauge
	rqTime    prometheus.Observer
	rqTimeout prometheus.Counter
	noHealthy prometheus.Counter
	retry     retryStats // retry.go
	rqXX      classStats
	rqDone    prometheus.Counter

	name  string
	codes codeStats
}

// charge counts one upstream response: its class, its code and completion.
// After a code's first use this is lock-free and allocation-free.
func (s *clusterStats) charge(status int) {
	s.rqXX.inc(status)
	s.rqDone.Inc()
	s.codes.inc(status)
}

func (m *metrics) cluster(name string) *clusterStats {
	return &clusterStats{
		rqTotal:   m.cluRqTotal.WithLabelValues(name),
		rqActive:  m.cluRqActive.WithLabelValues(name),
		rqTime:    m.cluRqTime.WithLabelValues(name),
		rqTimeout: m.cluRqTimeout.WithLabelValues(name),
		noHealthy: m.cluNoHealthy.WithLabelValues(name),
		retry:     m.cluRetry.bind(name),
		rqXX:      bindClasses(m.cluRqXX, name),
		rqDone:    m.cluRqDone.WithLabelValues(name),
		name:      name,
		codes:     codeStats{vec: m.cluRqCode, labels: []string{name}},
	}
}

// routeStats are one route's stats: Envoy's per-route stats
// (vhost.<virtual host>.route.<stat_prefix>.*), which have the virtual
// cluster stats' names. The stat prefix is the rule's StatPrefix, else its
// name.
type routeStats struct {
	rqTotal   prometheus.Counter
	rqTimeout prometheus.Counter
	rqTime    prometheus.Observer
	rqXX      classStats
	codes     codeStats
}

// routeStats binds the stats of every route of t with a stat prefix or a
// name, by route index; the others get none, as Envoy routes without a
// stat_prefix.
func (m *metrics) routeStats(t *route.Table) []*routeStats {
	if t == nil {
		return nil
	}
	routes := t.Routes()
	out := make([]*routeStats, len(routes))
	for i, r := range routes {
		name := r.Rule().StatPrefix
		if name == "" {
			name = r.Name()
		}
		if name == "" {
			continue
		}
		vh := r.VirtualHost()
		out[i] = &routeStats{
			rqTotal:   m.rtRqTotal.WithLabelValues(vh, name),
			rqTimeout: m.rtRqTimeout.WithLabelValues(vh, name),
			rqTime:    m.rtRqTime.WithLabelValues(vh, name),
			rqXX:      bindClasses(m.rtRqXX, vh, name),
			codes:     codeStats{vec: m.rtRqCode, labels: []string{vh, name}},
		}
	}
	return out
}

// charge counts an exchange that reached the upstream: the status sent
// downstream and the time to the response headers.
func (s *routeStats) charge(x *filter.Exchange) {
	s.rqTotal.Inc()
	if x.Flags.Has(filter.FlagUpstreamRequestTimeout) {
		s.rqTimeout.Inc()
	}
	s.rqXX.inc(x.Status)
	s.codes.inc(x.Status)
	if !x.ResponseStart.IsZero() {
		s.rqTime.Observe(millis(x.ResponseStart.Sub(x.UpstreamStart)))
	}
}

// listenerLabel renders an address the way Envoy names listener stats:
// "0.0.0.0_8080", "[__1]_8080" (Envoy turns every ':' of a stat name into
// '_').
func listenerLabel(addr string) string {
	return strings.ReplaceAll(addr, ":", "_")
}
