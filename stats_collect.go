package portico

import (
	"maps"
	"math"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
)

// gatewayCollector exports, at scrape time, the stats whose source of
// truth already lives elsewhere: the listeners' lock-free connection
// counters, cluster membership, the cluster and listener managers' gauges
// and the server's state. Reading them when scraped keeps them off the
// request path entirely. It takes the gateway's update lock briefly, never
// a lock the request path takes.
//
// It is an unchecked collector (Describe sends nothing) because its label
// values come and go with the configuration.
type gatewayCollector struct {
	g *Gateway

	lisCxTotal, lisCxActive, lisCxDestroy *prometheus.Desc
	lisNoChain, lisFilterErr, lisSSLErr   *prometheus.Desc
	lmActive, cmActive, cmWarming         *prometheus.Desc
	memDegraded                           *prometheus.Desc
	hcmConn                               []hcmConnStat
	clusterStats                          []clusterStat
	epStats                               []endpointStat // nil unless Options.EndpointStats
	srvUptime, srvLive, srvState, srvConc *prometheus.Desc
	srvMemAlloc, srvMemHeap, srvMemPhys   *prometheus.Desc
	srvConns, srvVersion, srvCertDays     *prometheus.Desc
	srvHotRestartEpoch                    *prometheus.Desc
}

var _ prometheus.Collector = (*gatewayCollector)(nil)

func newGatewayCollector(g *Gateway) *gatewayCollector {
	p := g.metrics.prefix + "_"
	lis := []string{p + "listener_address"}
	cl := []string{p + "cluster_name"}
	hcm := []string{p + "http_conn_manager_prefix"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(p+name, help, labels, nil)
	}
	return &gatewayCollector{
		g:                  g,
		lisCxTotal:         d("listener_downstream_cx_total", "Total connections accepted.", lis),
		lisCxActive:        d("listener_downstream_cx_active", "Open connections.", lis),
		lisCxDestroy:       d("listener_downstream_cx_destroy", "Connections closed.", lis),
		lisNoChain:         d("listener_no_filter_chain_match", "Connections no filter chain matched.", lis),
		lisFilterErr:       d("listener_downstream_listener_filter_error", "Connections closed by the TLS inspector.", lis),
		lisSSLErr:          d("listener_ssl_connection_error", "Failed downstream TLS handshakes.", lis),
		lmActive:           d("listener_manager_total_listeners_active", "Listeners serving.", nil),
		cmActive:           d("cluster_manager_active_clusters", "Active clusters.", nil),
		cmWarming:          d("cluster_manager_warming_clusters", "Clusters warming (always 0: clusters are ready when built).", nil),
		memDegraded:        d("cluster_membership_degraded", "Degraded endpoints of the cluster.", cl),
		hcmConn:            newHCMConnStats(d, hcm),
		clusterStats:       newClusterStats(d, cl),
		epStats:            newEndpointStats(d, p, g.opts.EndpointStats),
		srvUptime:          d("server_uptime", "Seconds since the gateway started.", nil),
		srvLive:            d("server_live", "1 while the server is not draining.", nil),
		srvState:           d("server_state", "0 live, 1 draining (Envoy's server.state).", nil),
		srvConc:            d("server_concurrency", "GOMAXPROCS.", nil),
		srvMemAlloc:        d("server_memory_allocated", "Bytes of allocated heap objects.", nil),
		srvMemHeap:         d("server_memory_heap_size", "Bytes of heap reserved from the OS, in use or not.", nil),
		srvMemPhys:         d("server_memory_physical_size", "Bytes of memory mapped by the Go runtime and not released.", nil),
		srvConns:           d("server_total_connections", "Open downstream connections on all listeners.", nil),
		srvVersion:         d("server_version", "Integer made of the first 6 hex digits of the build's VCS revision (Envoy's server.version).", nil),
		srvCertDays:        d("server_days_until_first_cert_expiring", "Days until the first certificate in use expires.", nil),
		srvHotRestartEpoch: d("server_hot_restart_epoch", "Always 0: there is no hot restart.", nil),
	}
}

// Describe implements prometheus.Collector; it sends nothing, making the
// collector unchecked.
func (c *gatewayCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	type lisStats struct {
		total, destroy, noChain, filterErr, sslErr uint64
		active                                     int64
	}
	byAddr := map[string]*lisStats{}
	g.mu.Lock()
	nListeners := len(g.listeners)
	for _, ll := range g.listeners {
		st := ll.l.Stats()
		label := listenerLabel(ll.cfg.Address)
		a := byAddr[label]
		if a == nil {
			a = &lisStats{}
			byAddr[label] = a
		}
		a.total += st.DownstreamCxTotal
		a.active += st.DownstreamCxActive
		a.destroy += st.DownstreamCxDestroy
		a.noChain += st.NoFilterChainMatch
		a.filterErr += st.ListenerFilterErrors
		a.sslErr += st.TLSHandshakeErrors
	}
	certs := g.certsLocked(time.Now())
	g.mu.Unlock()

	var conns int64
	for label, a := range byAddr {
		ch <- prometheus.MustNewConstMetric(c.lisCxTotal, prometheus.CounterValue, float64(a.total), label)
		ch <- prometheus.MustNewConstMetric(c.lisCxActive, prometheus.GaugeValue, float64(a.active), label)
		ch <- prometheus.MustNewConstMetric(c.lisCxDestroy, prometheus.CounterValue, float64(a.destroy), label)
		ch <- prometheus.MustNewConstMetric(c.lisNoChain, prometheus.CounterValue, float64(a.noChain), label)
		ch <- prometheus.MustNewConstMetric(c.lisFilterErr, prometheus.CounterValue, float64(a.filterErr), label)
		ch <- prometheus.MustNewConstMetric(c.lisSSLErr, prometheus.CounterValue, float64(a.sslErr), label)
		conns += a.active
	}
	ch <- prometheus.MustNewConstMetric(c.lmActive, prometheus.GaugeValue, float64(nListeners))

	g.metrics.connMu.Lock()
	hcmConns := maps.Clone(g.metrics.conns)
	g.metrics.connMu.Unlock()
	for prefix, cc := range hcmConns {
		for _, st := range c.hcmConn {
			ch <- prometheus.MustNewConstMetric(st.desc, st.typ, st.value(cc), prefix)
		}
	}

	set := g.clusters.Load()
	ch <- prometheus.MustNewConstMetric(c.cmActive, prometheus.GaugeValue, float64(len(set.byName)))
	ch <- prometheus.MustNewConstMetric(c.cmWarming, prometheus.GaugeValue, 0)
	for name, lc := range set.byName {
		snap := clusterSnapshot{s: lc.c.Stats(), cx: lc.c.ConnStats()}
		for _, st := range c.clusterStats {
			ch <- prometheus.MustNewConstMetric(st.desc, st.typ, st.value(&snap), name)
		}
		// Degraded by EDS or by an active check, and not failed.
		ch <- prometheus.MustNewConstMetric(c.memDegraded, prometheus.GaugeValue, float64(snap.s.MembershipDegraded), name)
		if c.epStats == nil {
			continue
		}
		for _, es := range lc.c.EndpointStates() {
			for _, st := range c.epStats {
				ch <- prometheus.MustNewConstMetric(st.desc, st.typ, st.value(&es), name, es.Address)
			}
		}
	}

	live, state := 1.0, 0.0
	if g.draining.Load() {
		live, state = 0, 1
	}
	mem := readMemory()
	ch <- prometheus.MustNewConstMetric(c.srvUptime, prometheus.GaugeValue, math.Floor(time.Since(g.metrics.start).Seconds()))
	ch <- prometheus.MustNewConstMetric(c.srvLive, prometheus.GaugeValue, live)
	ch <- prometheus.MustNewConstMetric(c.srvState, prometheus.GaugeValue, state)
	ch <- prometheus.MustNewConstMetric(c.srvConc, prometheus.GaugeValue, float64(runtime.GOMAXPROCS(0)))
	ch <- prometheus.MustNewConstMetric(c.srvMemAlloc, prometheus.GaugeValue, float64(mem.allocated))
	ch <- prometheus.MustNewConstMetric(c.srvMemHeap, prometheus.GaugeValue, float64(mem.heapSize))
	ch <- prometheus.MustNewConstMetric(c.srvMemPhys, prometheus.GaugeValue, float64(mem.physical))
	ch <- prometheus.MustNewConstMetric(c.srvConns, prometheus.GaugeValue, float64(conns))
	ch <- prometheus.MustNewConstMetric(c.srvVersion, prometheus.GaugeValue, float64(buildVersion().number))
	ch <- prometheus.MustNewConstMetric(c.srvHotRestartEpoch, prometheus.GaugeValue, 0)
	if days, ok := firstExpiry(certs); ok {
		ch <- prometheus.MustNewConstMetric(c.srvCertDays, prometheus.GaugeValue, float64(days))
	}
}

// clusterSnapshot is what the cluster package reports of one cluster.
type clusterSnapshot struct {
	s  cluster.Stats
	cx cluster.ConnStats
}

// clusterStat is one cluster.<name>.* stat read from the cluster's own
// lock-free counters at scrape time.
type clusterStat struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*clusterSnapshot) float64
}

func newClusterStats(d func(name, help string, labels []string) *prometheus.Desc, cl []string) []clusterStat {
	C, G := prometheus.CounterValue, prometheus.GaugeValue
	u := func(v uint64) float64 { return float64(v) }
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	defs := []struct {
		name string
		typ  prometheus.ValueType
		help string
		v    func(*clusterSnapshot) float64
	}{
		{"upstream_cx_total", C, "Upstream connections opened or attempted.", func(s *clusterSnapshot) float64 { return u(s.cx.Total) }},
		{"upstream_cx_active", G, "Upstream connections open or opening.", func(s *clusterSnapshot) float64 { return float64(s.cx.Active) }},
		{"upstream_cx_connect_fail", C, "Upstream connections that failed to connect.", func(s *clusterSnapshot) float64 { return u(s.cx.ConnectFail) }},
		{"upstream_cx_overflow", C, "Upstream connections refused by the connections circuit breaker.", func(s *clusterSnapshot) float64 { return u(s.cx.Overflow) }},
		{"upstream_cx_max_requests", C, "Upstream connections closed at max requests per connection.", func(s *clusterSnapshot) float64 { return u(s.cx.MaxRequests) }},
		{"upstream_cx_max_duration_reached", C, "Upstream connections retired at max connection duration.", func(s *clusterSnapshot) float64 { return u(s.cx.MaxDurationReached) }},
		{"upstream_cx_destroy", C, "Upstream connections closed.", func(s *clusterSnapshot) float64 { return u(s.cx.Destroy) }},
		{"upstream_cx_rx_bytes_total", C, "Bytes received on upstream connections, TLS records included.", func(s *clusterSnapshot) float64 { return u(s.cx.RxBytes) }},
		{"upstream_cx_tx_bytes_total", C, "Bytes sent on upstream connections, TLS records included.", func(s *clusterSnapshot) float64 { return u(s.cx.TxBytes) }},
		{"upstream_rq_pending_active", G, "Requests waiting for response headers.", func(s *clusterSnapshot) float64 { return u(s.s.UpstreamRqPendingActive) }},
		{"upstream_rq_pending_overflow", C, "Requests refused by the pending requests or requests circuit breaker.", func(s *clusterSnapshot) float64 { return u(s.s.UpstreamRqPendingOverflow) }},
		{"membership_total", G, "Endpoints of the cluster.", func(s *clusterSnapshot) float64 { return u(s.s.MembershipTotal) }},
		{"membership_healthy", G, "Endpoints healthy by discovery, health checks and outlier detection.", func(s *clusterSnapshot) float64 { return u(s.s.MembershipHealthy) }},
		{"health_check_attempt", C, "Health check attempts.", func(s *clusterSnapshot) float64 { return u(s.s.HealthCheck.Attempt) }},
		{"health_check_success", C, "Health check successes.", func(s *clusterSnapshot) float64 { return u(s.s.HealthCheck.Success) }},
		{"health_check_failure", C, "Health check failures.", func(s *clusterSnapshot) float64 { return u(s.s.HealthCheck.Failure) }},
		{"health_check_network_failure", C, "Health check network failures.", func(s *clusterSnapshot) float64 { return u(s.s.HealthCheck.NetworkFailure) }},
		{"health_check_healthy", G, "Endpoints passing every health check.", func(s *clusterSnapshot) float64 { return u(s.s.HealthCheck.Healthy) }},
		{"outlier_detection_ejections_active", G, "Endpoints ejected.", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EjectionsActive) }},
		{"outlier_detection_ejections_overflow", C, "Ejections refused by max_ejection_percent.", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EjectionsOverflow) }},
		{"outlier_detection_ejections_enforced_total", C, "Ejections enforced.", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EjectionsEnforcedTotal) }},
		{"outlier_detection_ejections_total", C, "Outliers found (deprecated in Envoy).", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EjectionsTotal) }},
		{"outlier_detection_ejections_consecutive_5xx", C, "Consecutive 5xx ejections (deprecated in Envoy).", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EjectionsConsecutive5xx) }},
		{"outlier_detection_ejections_success_rate", C, "Success rate ejections (deprecated in Envoy).", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EjectionsSuccessRate) }},
		{"outlier_detection_ejections_enforced_consecutive_5xx", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EnforcedConsecutive5xx) }},
		{"outlier_detection_ejections_detected_consecutive_5xx", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.DetectedConsecutive5xx) }},
		{"outlier_detection_ejections_enforced_consecutive_gateway_failure", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EnforcedGatewayFailure) }},
		{"outlier_detection_ejections_detected_consecutive_gateway_failure", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.DetectedGatewayFailure) }},
		{"outlier_detection_ejections_enforced_consecutive_local_origin_failure", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EnforcedLocalOrigin) }},
		{"outlier_detection_ejections_detected_consecutive_local_origin_failure", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.DetectedLocalOrigin) }},
		{"outlier_detection_ejections_enforced_success_rate", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EnforcedSuccessRate) }},
		{"outlier_detection_ejections_detected_success_rate", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.DetectedSuccessRate) }},
		{"outlier_detection_ejections_enforced_local_origin_success_rate", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EnforcedLocalOriginSR) }},
		{"outlier_detection_ejections_detected_local_origin_success_rate", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.DetectedLocalOriginSR) }},
		{"outlier_detection_ejections_enforced_failure_percentage", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EnforcedFailurePct) }},
		{"outlier_detection_ejections_detected_failure_percentage", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.DetectedFailurePct) }},
		{"outlier_detection_ejections_enforced_failure_percentage_local_origin", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.EnforcedFailurePctLocal) }},
		{"outlier_detection_ejections_detected_failure_percentage_local_origin", C, "", func(s *clusterSnapshot) float64 { return u(s.s.OutlierDetection.DetectedFailurePctLocal) }},
	}
	for _, prio := range []string{"default", "high"} {
		br := func(s *clusterSnapshot) *cluster.BreakerStats {
			if prio == "high" {
				return &s.s.CircuitBreakers.High
			}
			return &s.s.CircuitBreakers.Default
		}
		p := "circuit_breakers_" + prio + "_"
		defs = append(defs, []struct {
			name string
			typ  prometheus.ValueType
			help string
			v    func(*clusterSnapshot) float64
		}{
			{p + "rq_pending_open", G, "1 while the pending requests breaker is open.", func(s *clusterSnapshot) float64 { return b(br(s).RqPendingOpen) }},
			{p + "rq_open", G, "1 while the requests breaker is open.", func(s *clusterSnapshot) float64 { return b(br(s).RqOpen) }},
			{p + "rq_retry_open", G, "1 while the retries breaker is open.", func(s *clusterSnapshot) float64 { return b(br(s).RqRetryOpen) }},
			{p + "remaining_pending", G, "Pending requests left before the breaker opens.", func(s *clusterSnapshot) float64 { return u(br(s).RemainingPending) }},
			{p + "remaining_rq", G, "Requests left before the breaker opens.", func(s *clusterSnapshot) float64 { return u(br(s).RemainingRq) }},
			{p + "remaining_retries", G, "Retries left before the breaker opens.", func(s *clusterSnapshot) float64 { return u(br(s).RemainingRetries) }},
		}...)
	}
	out := make([]clusterStat, len(defs))
	for i, def := range defs {
		help := def.help
		if help == "" {
			help = "Envoy's cluster." + strings.ReplaceAll(def.name, "outlier_detection_", "outlier_detection.") + "."
		}
		out[i] = clusterStat{desc: d("cluster_"+def.name, help, cl), typ: def.typ, value: def.v}
	}
	return out
}

// hcmConnStat is one http.<stat_prefix>.* stat kept by the listeners in
// the prefix's listener.ConnCounters, read at scrape time.
type hcmConnStat struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*listener.ConnCounters) float64
}

func newHCMConnStats(d func(name, help string, labels []string) *prometheus.Desc, hcm []string) []hcmConnStat {
	C, G := prometheus.CounterValue, prometheus.GaugeValue
	st := func(name string, typ prometheus.ValueType, help string, v func(*listener.ConnCounters) float64) hcmConnStat {
		return hcmConnStat{desc: d("http_"+name, help, hcm), typ: typ, value: v}
	}
	return []hcmConnStat{
		st("downstream_cx_http1_total", C, "HTTP/1.x connections.", func(c *listener.ConnCounters) float64 { return float64(c.HTTP1Total.Load()) }),
		st("downstream_cx_http2_total", C, "HTTP/2 connections.", func(c *listener.ConnCounters) float64 { return float64(c.HTTP2Total.Load()) }),
		st("downstream_cx_http1_active", G, "Active HTTP/1.x connections.", func(c *listener.ConnCounters) float64 { return float64(c.HTTP1Active.Load()) }),
		st("downstream_cx_http2_active", G, "Active HTTP/2 connections.", func(c *listener.ConnCounters) float64 { return float64(c.HTTP2Active.Load()) }),
		st("downstream_cx_rx_bytes_total", C, "Bytes received, TLS records included.", func(c *listener.ConnCounters) float64 { return float64(c.RxBytes.Load()) }),
		st("downstream_cx_tx_bytes_total", C, "Bytes sent, TLS records included.", func(c *listener.ConnCounters) float64 { return float64(c.TxBytes.Load()) }),
		st("downstream_rq_timeout", C, "Requests ended by the request timeout before they were received whole.", func(c *listener.ConnCounters) float64 { return float64(c.RequestTimeouts.Load()) }),
	}
}

// endpointStat is one per-endpoint stat (Envoy's per_endpoint_stats:
// cluster.<name>.endpoint.<address>.*), read from the cluster's endpoint
// snapshots at scrape time.
type endpointStat struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*cluster.EndpointState) float64
}

func newEndpointStats(d func(name, help string, labels []string) *prometheus.Desc, p string, on bool) []endpointStat {
	if !on {
		return nil
	}
	labels := []string{p + "cluster_name", p + "endpoint_address"}
	C, G := prometheus.CounterValue, prometheus.GaugeValue
	st := func(name string, typ prometheus.ValueType, help string, v func(*cluster.EndpointState) float64) endpointStat {
		return endpointStat{desc: d("cluster_endpoint_"+name, help, labels), typ: typ, value: v}
	}
	return []endpointStat{
		st("rq_total", C, "Requests sent to the endpoint.", func(e *cluster.EndpointState) float64 { return float64(e.TotalRequests) }),
		st("rq_success", C, "Requests to the endpoint that got a non-5xx response.", func(e *cluster.EndpointState) float64 { return float64(e.SuccessRequests) }),
		st("rq_error", C, "Requests to the endpoint that failed or got a 5xx.", func(e *cluster.EndpointState) float64 { return float64(e.ErrorRequests) }),
		st("rq_timeout", C, "Requests to the endpoint that timed out.", func(e *cluster.EndpointState) float64 { return float64(e.TimeoutRequests) }),
		st("rq_active", G, "Requests in flight to the endpoint.", func(e *cluster.EndpointState) float64 { return float64(e.ActiveRequests) }),
		st("healthy", G, "1 when the endpoint takes traffic.", func(e *cluster.EndpointState) float64 {
			if e.Healthy {
				return 1
			}
			return 0
		}),
	}
}

// memoryStats are the Go runtime's memory figures in Envoy's terms.
type memoryStats struct {
	allocated   uint64 // live and unswept heap objects (tcmalloc's allocated)
	heapSize    uint64 // all heap memory, including free and released spans
	free        uint64 // free heap spans still mapped (pageheap_free)
	unmapped    uint64 // heap spans released to the OS (pageheap_unmapped)
	threadCache uint64 // per-P allocation caches (total_thread_cache)
	physical    uint64 // all memory mapped by the runtime, minus released
}

var memorySamples = [...]string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/total:bytes",
}

func readMemory() memoryStats {
	var s [len(memorySamples)]rtmetrics.Sample
	for i, name := range memorySamples {
		s[i].Name = name
	}
	rtmetrics.Read(s[:])
	v := func(i int) uint64 {
		if s[i].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return memoryStats{
		allocated:   v(0),
		heapSize:    v(0) + v(1) + v(2) + v(3) + v(4),
		free:        v(2),
		unmapped:    v(3),
		threadCache: v(5),
		physical:    v(6) - v(3),
	}
}

// firstExpiry returns the whole days until the first of certs expires.
func firstExpiry(certs []certInfo) (int64, bool) {
	var days int64
	found := false
	for _, c := range certs {
		if c.err != nil {
			continue
		}
		if !found || c.days < days {
			days, found = c.days, true
		}
	}
	return days, found
}

// versionNumber is Envoy's server.version: the first 6 hex digits of the
// VCS revision as an integer, or 0.
func versionNumber(revision string) int64 {
	if len(revision) < 6 {
		return 0
	}
	n, err := strconv.ParseInt(revision[:6], 16, 64)
	if err != nil {
		return 0
	}
	return n
}
