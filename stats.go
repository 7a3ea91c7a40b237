package portico

import (
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// DefaultStatsPrefix is the metric name prefix when Options.StatsPrefix is
// empty. With the prefix "envoy" metric names and labels are Envoy's own.
const DefaultStatsPrefix = "portico"

// rqTimeBuckets are Envoy's default histogram buckets, in milliseconds.
var rqTimeBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// metrics holds the gateway's Prometheus collectors, named after Envoy's
// stats with Envoy's tag extraction turned into labels:
//
//	<prefix>_http_downstream_rq_total{<prefix>_http_conn_manager_prefix}
//	<prefix>_http_downstream_rq_xx{<prefix>_response_code_class, <prefix>_http_conn_manager_prefix}
//	<prefix>_cluster_upstream_rq_total{<prefix>_cluster_name}
//	<prefix>_cluster_upstream_rq{<prefix>_response_code, <prefix>_cluster_name}
//	<prefix>_cluster_upstream_rq_completed{<prefix>_cluster_name}
//	<prefix>_listener_downstream_cx_total{<prefix>_listener_address}
//
// Children are bound once per listener, connection manager and cluster, so
// the request path only does atomic adds.
type metrics struct {
	reg    *prometheus.Registry
	prefix string

	hcmRqTotal   *prometheus.CounterVec
	hcmRqXX      *prometheus.CounterVec
	hcmRqActive  *prometheus.GaugeVec
	hcmRqTime    *prometheus.HistogramVec
	hcmCxTotal   *prometheus.CounterVec
	hcmCxActive  *prometheus.GaugeVec
	hcmRqNR      *prometheus.CounterVec
	lisCxTotal   *prometheus.CounterVec
	lisCxActive  *prometheus.GaugeVec
	cluRqTotal   *prometheus.CounterVec
	cluRqXX      *prometheus.CounterVec
	cluRqCode    *prometheus.CounterVec
	cluRqDone    *prometheus.CounterVec
	cluRqTime    *prometheus.HistogramVec
	cluRqActive  *prometheus.GaugeVec
	cluRqTimeout *prometheus.CounterVec
	cluCxFail    *prometheus.CounterVec
	cluNoHealthy *prometheus.CounterVec
	cmClusters   prometheus.GaugeFunc
	uptime       prometheus.GaugeFunc
}

func newMetrics(prefix string, clusters func() float64, draining *atomic.Bool) *metrics {
	if prefix == "" {
		prefix = DefaultStatsPrefix
	}
	m := &metrics{reg: prometheus.NewRegistry(), prefix: prefix}
	p := func(s string) string { return prefix + "_" + s }
	hcm := p("http_conn_manager_prefix")
	class := p("response_code_class")
	cl := p("cluster_name")
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
	m.hcmRqTotal = counter("http_downstream_rq_total", "Total requests.", hcm)
	m.hcmRqXX = counter("http_downstream_rq_xx", "Requests by response code class.", class, hcm)
	m.hcmRqActive = gauge("http_downstream_rq_active", "Active requests.", hcm)
	m.hcmRqTime = hist("http_downstream_rq_time", "Request time, milliseconds.", hcm)
	m.hcmCxTotal = counter("http_downstream_cx_total", "Total connections.", hcm)
	m.hcmCxActive = gauge("http_downstream_cx_active", "Active connections.", hcm)
	m.hcmRqNR = counter("http_no_route", "Requests with no matching route.", hcm)
	m.lisCxTotal = counter("listener_downstream_cx_total", "Total connections.", p("listener_address"))
	m.lisCxActive = gauge("listener_downstream_cx_active", "Active connections.", p("listener_address"))
	m.cluRqTotal = counter("cluster_upstream_rq_total", "Total upstream requests.", cl)
	m.cluRqXX = counter("cluster_upstream_rq_xx", "Upstream requests by response code class.", class, cl)
	m.cluRqCode = counter("cluster_upstream_rq", "Upstream requests by response code.", p("response_code"), cl)
	m.cluRqDone = counter("cluster_upstream_rq_completed", "Upstream requests completed with a response.", cl)
	m.cluRqTime = hist("cluster_upstream_rq_time", "Upstream request time to response headers, milliseconds.", cl)
	m.cluRqActive = gauge("cluster_upstream_rq_active", "Active upstream requests.", cl)
	m.cluRqTimeout = counter("cluster_upstream_rq_timeout", "Upstream requests that timed out.", cl)
	m.cluCxFail = counter("cluster_upstream_cx_connect_fail", "Upstream connection failures.", cl)
	m.cluNoHealthy = counter("cluster_upstream_cx_none_healthy", "Requests with no healthy endpoint.", cl)
	m.cmClusters = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p("cluster_manager_active_clusters"), Help: "Active clusters."}, clusters)
	m.reg.MustRegister(m.cmClusters)
	start := time.Now()
	m.uptime = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p("server_uptime"), Help: "Seconds since start."},
		func() float64 { return time.Since(start).Seconds() })
	m.reg.MustRegister(m.uptime)
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p("server_concurrency"), Help: "GOMAXPROCS."},
		func() float64 { return float64(runtime.GOMAXPROCS(0)) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p("server_live"), Help: "1 while the server is not draining."},
		func() float64 {
			if draining.Load() {
				return 0
			}
			return 1
		}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p("server_memory_allocated"), Help: "Bytes of allocated heap objects."},
		heapObjectBytes))
	m.reg.MustRegister(collectors.NewGoCollector())
	return m
}

// heapObjectBytes reads the bytes of live and not yet swept heap objects,
// the Go counterpart of Envoy's server.memory_allocated.
func heapObjectBytes() float64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return float64(s[0].Value.Uint64())
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

func bindClasses(v *prometheus.CounterVec, label string) classStats {
	var c classStats
	for i := 1; i <= 5; i++ {
		c[i] = v.WithLabelValues(string(rune('0'+i)), label)
	}
	return c
}

// hcmStats are one connection manager's stats, keyed by its stat prefix.
type hcmStats struct {
	rqTotal  prometheus.Counter
	rqActive prometheus.Gauge
	rqTime   prometheus.Observer
	rqNR     prometheus.Counter
	cxTotal  prometheus.Counter
	cxActive prometheus.Gauge
	rqXX     classStats
}

func (m *metrics) hcm(prefix string) *hcmStats {
	return &hcmStats{
		rqTotal:  m.hcmRqTotal.WithLabelValues(prefix),
		rqActive: m.hcmRqActive.WithLabelValues(prefix),
		rqTime:   m.hcmRqTime.WithLabelValues(prefix),
		rqNR:     m.hcmRqNR.WithLabelValues(prefix),
		cxTotal:  m.hcmCxTotal.WithLabelValues(prefix),
		cxActive: m.hcmCxActive.WithLabelValues(prefix),
		rqXX:     bindClasses(m.hcmRqXX, prefix),
	}
}

// clusterStats are one cluster's stats.
type clusterStats struct {
	rqTotal   prometheus.Counter
	rqActive  prometheus.Gauge
	rqTime    prometheus.Observer
	rqTimeout prometheus.Counter
	cxFail    prometheus.Counter
	noHealthy prometheus.Counter
	rqXX      classStats
	rqDone    prometheus.Counter

	name   string
	byCode *prometheus.CounterVec
	codes  [500]atomic.Pointer[prometheus.Counter] // status 100..599, bound on first use
}

// charge counts one upstream response: its class, its code and completion.
// After a code's first use this is lock-free and allocation-free.
func (s *clusterStats) charge(status int) {
	s.rqXX.inc(status)
	s.rqDone.Inc()
	if status < 100 || status > 599 {
		return
	}
	slot := &s.codes[status-100]
	c := slot.Load()
	if c == nil {
		bound := s.byCode.WithLabelValues(strconv.Itoa(status), s.name)
		if !slot.CompareAndSwap(nil, &bound) {
			c = slot.Load()
		} else {
			c = &bound
		}
	}
	(*c).Inc()
}

func (m *metrics) cluster(name string) *clusterStats {
	return &clusterStats{
		rqTotal:   m.cluRqTotal.WithLabelValues(name),
		rqActive:  m.cluRqActive.WithLabelValues(name),
		rqTime:    m.cluRqTime.WithLabelValues(name),
		rqTimeout: m.cluRqTimeout.WithLabelValues(name),
		cxFail:    m.cluCxFail.WithLabelValues(name),
		noHealthy: m.cluNoHealthy.WithLabelValues(name),
		rqXX:      bindClasses(m.cluRqXX, name),
		rqDone:    m.cluRqDone.WithLabelValues(name),
		name:      name,
		byCode:    m.cluRqCode,
	}
}

// listenerLabel renders an address the way Envoy tags listener stats:
// "0.0.0.0_8080".
func listenerLabel(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	return strings.Trim(addr[:i], "[]") + "_" + addr[i+1:]
}
