package portico

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/porticoproxy/portico/cluster"
)

// Resource kinds a discovery (xDS) client reports on through
// RecordResourceState, RecordRejection and ForgetResource. Listeners,
// routes and clusters are shown next to their configuration in
// /config_dump; endpoint assignments and secrets in lists of their own
// (endpoint_configs, secrets), by name and state only.
const (
	KindListener  = kindListener
	KindRoute     = kindRoute
	KindCluster   = kindCluster
	KindEndpoints = "endpoints"
	KindSecret    = "secret"
)

// ClientStatus is a discovery client's view of one resource: Envoy's
// ClientResourceStatus, shown as client_status in /config_dump.
type ClientStatus int

const (
	// StatusUnknown means the client has said nothing about the resource.
	StatusUnknown ClientStatus = iota
	// StatusRequested means the resource was requested and has not
	// arrived.
	StatusRequested
	// StatusDoesNotExist means the server did not send the resource in
	// time, or removed it.
	StatusDoesNotExist
	// StatusAcked means the resource's last update was accepted.
	StatusAcked
	// StatusNacked means the resource's last update was rejected; the
	// previous accepted version, if any, keeps serving.
	StatusNacked
	// StatusWarming means the resource was accepted and waits for the
	// resources it depends on (a cluster for its endpoints, a listener for
	// its routes) before it serves.
	StatusWarming
)

// String returns Envoy's name for s ("ACKED", "DOES_NOT_EXIST", ...).
func (s ClientStatus) String() string {
	switch s {
	case StatusRequested:
		return "REQUESTED"
	case StatusDoesNotExist:
		return "DOES_NOT_EXIST"
	case StatusAcked:
		return "ACKED"
	case StatusNacked:
		return "NACKED"
	case StatusWarming:
		return "WARMING"
	}
	return "UNKNOWN"
}

// ResourceState is what a discovery client records of one resource for
// /config_dump. It is plain data.
type ResourceState struct {
	// Version is the xDS version of the last accepted update, shown as
	// the resource's version_info instead of the gateway's own counter.
	Version string
	// Status is the client status.
	Status ClientStatus
	// LastUpdated is when the state was recorded; zero means now.
	LastUpdated time.Time
}

// discoveryState holds what discovery clients recorded, keyed by
// "<kind>:<name>". It has its own lock: clients record from their own
// goroutine, whether or not an update holds the gateway's lock.
type discoveryState struct {
	mu    sync.Mutex
	byKey map[string]ResourceState

	statsOnce sync.Once
	stats     *DiscoveryStats
}

// RecordResourceState records a discovery client's state of the resource
// kind/name (one of the Kind constants). An accepted state (StatusAcked)
// clears the resource's error_state: the rejection it recorded is over.
// Safe for concurrent use.
func (g *Gateway) RecordResourceState(kind, name string, s ResourceState) {
	if s.LastUpdated.IsZero() {
		s.LastUpdated = time.Now()
	}
	d := &g.discovery
	d.mu.Lock()
	if d.byKey == nil {
		d.byKey = map[string]ResourceState{}
	}
	key := kind + ":" + name
	if old, ok := d.byKey[key]; ok && s.Version == "" && s.Status != StatusDoesNotExist {
		s.Version = old.Version // a state change keeps the version it serves
	}
	d.byKey[key] = s
	d.mu.Unlock()
	if s.Status == StatusAcked {
		r := &g.rejected
		r.mu.Lock()
		delete(r.byKey, key)
		r.mu.Unlock()
	}
}

// RecordRejection records that an update of the resource kind/name at
// version was rejected with err (an xDS NACK); failed is the rejected
// configuration, marshalled as JSON, or nil. The resource keeps serving
// its last accepted version; /config_dump shows the rejection as its
// error_state, and client_status NACKED, until an update is accepted.
// Safe for concurrent use.
func (g *Gateway) RecordRejection(kind, name, version string, failed any, err error) {
	g.recordRejection(kind, name, version, failed, err)
	d := &g.discovery
	d.mu.Lock()
	if d.byKey == nil {
		d.byKey = map[string]ResourceState{}
	}
	key := kind + ":" + name
	s := d.byKey[key]
	s.Status, s.LastUpdated = StatusNacked, time.Now()
	d.byKey[key] = s
	d.mu.Unlock()
}

// ForgetResource drops what was recorded of a resource the discovery
// client no longer holds. Safe for concurrent use.
func (g *Gateway) ForgetResource(kind, name string) {
	key := kind + ":" + name
	d := &g.discovery
	d.mu.Lock()
	delete(d.byKey, key)
	d.mu.Unlock()
	r := &g.rejected
	r.mu.Lock()
	delete(r.byKey, key)
	r.mu.Unlock()
}

// snapshot returns a copy of the recorded states.
func (d *discoveryState) snapshot() map[string]ResourceState {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]ResourceState, len(d.byKey))
	for k, v := range d.byKey {
		out[k] = v
	}
	return out
}

// UpdateStat names one of a discovery subscription's counters (Envoy's
// subscription stats).
type UpdateStat int

const (
	// UpdateAttempt counts updates received (and fetches attempted).
	UpdateAttempt UpdateStat = iota
	// UpdateSuccess counts updates accepted.
	UpdateSuccess
	// UpdateRejected counts updates rejected (NACKed).
	UpdateRejected
	// UpdateFailure counts streams that failed (network errors).
	UpdateFailure
	// UpdateEmpty counts endpoint assignments without endpoints (EDS
	// only, as in Envoy).
	UpdateEmpty
	// InitFetchTimeout counts resources that did not arrive within the
	// initial fetch timeout.
	InitFetchTimeout
	numUpdateStats
)

var updateStatNames = [numUpdateStats]string{
	"update_attempt", "update_success", "update_rejected", "update_failure", "update_empty", "init_fetch_timeout",
}

// String returns the stat's Envoy name, e.g. "update_rejected".
func (s UpdateStat) String() string {
	if s < 0 || s >= numUpdateStats {
		return "unknown"
	}
	return updateStatNames[s]
}

// DiscoveryStats are a discovery client's stats, under Envoy's names:
//
//	control_plane.connected_state                 <prefix>_control_plane_connected_state
//	listener_manager.lds.<stat>                   <prefix>_listener_manager_lds_<stat>
//	cluster_manager.cds.<stat>                    <prefix>_cluster_manager_cds_<stat>
//	http.rds.<route config>.<stat>                <prefix>_http_rds_<stat>{<prefix>_rds_route_config}
//	cluster.<cluster>.<stat> (EDS)                <prefix>_cluster_<stat>{<prefix>_cluster_name}
//	sds.<secret>.<stat>                           <prefix>_sds_<stat>{<prefix>_sds_secret_name}
//
// where <stat> is one of the UpdateStat names. Its methods are safe for
// concurrent use.
type DiscoveryStats struct {
	connected prometheus.Gauge
	lds, cds  [numUpdateStats]prometheus.Counter
	perName   map[string]*prometheus.CounterVec // "rds", "eds", "sds" + stat name
}

// DiscoveryStats returns the gateway's discovery stats, registering them
// with its metrics on first use.
func (g *Gateway) DiscoveryStats() *DiscoveryStats {
	d := &g.discovery
	d.statsOnce.Do(func() { d.stats = newDiscoveryStats(g.metrics) })
	return d.stats
}

func newDiscoveryStats(m *metrics) *DiscoveryStats {
	p := func(s string) string { return m.prefix + "_" + s }
	s := &DiscoveryStats{perName: map[string]*prometheus.CounterVec{}}
	s.connected = prometheus.NewGauge(prometheus.GaugeOpts{Name: p("control_plane_connected_state"),
		Help: "1 while the discovery client has a stream to the management server, else 0."})
	m.reg.MustRegister(s.connected)
	for i := UpdateStat(0); i < numUpdateStats; i++ {
		if i == UpdateEmpty {
			continue
		}
		s.lds[i] = prometheus.NewCounter(prometheus.CounterOpts{Name: p("listener_manager_lds_" + i.String()), Help: "LDS " + i.String() + "."})
		s.cds[i] = prometheus.NewCounter(prometheus.CounterOpts{Name: p("cluster_manager_cds_" + i.String()), Help: "CDS " + i.String() + "."})
		m.reg.MustRegister(s.lds[i], s.cds[i])
	}
	for _, api := range []struct{ api, family, label string }{
		{"rds", "http_rds_", "rds_route_config"},
		{"eds", "cluster_", "cluster_name"},
		{"sds", "sds_", "sds_secret_name"},
	} {
		for i := UpdateStat(0); i < numUpdateStats; i++ {
			if i == UpdateEmpty && api.api != "eds" {
				continue
			}
			v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: p(api.family + i.String()),
				Help: api.api + " " + i.String() + "."}, []string{p(api.label)})
			m.reg.MustRegister(v)
			s.perName[api.api+i.String()] = v
		}
	}
	return s
}

// SetConnected sets control_plane.connected_state.
func (s *DiscoveryStats) SetConnected(connected bool) {
	v := 0.0
	if connected {
		v = 1
	}
	s.connected.Set(v)
}

// Count adds one to a subscription counter. api is "lds" or "cds" (name
// is ignored), or "rds", "eds" or "sds" with name the route
// configuration, cluster or secret. Unknown combinations are ignored.
func (s *DiscoveryStats) Count(api, name string, stat UpdateStat) {
	if stat < 0 || stat >= numUpdateStats {
		return
	}
	switch api {
	case "lds":
		if c := s.lds[stat]; c != nil {
			c.Inc()
		}
	case "cds":
		if c := s.cds[stat]; c != nil {
			c.Inc()
		}
	default:
		if v := s.perName[api+stat.String()]; v != nil {
			v.WithLabelValues(name).Inc()
		}
	}
}

// dumpDiscovered is an endpoint assignment or a secret in /config_dump:
// its name and what the discovery client recorded, never secret material.
type dumpDiscovered struct {
	Name string `json:"name"`
	resourceMeta
}

// discovered overlays a discovery client's state on a resource's
// metadata: the xDS version instead of the gateway's counter, the client
// status, and the last rejection until an update is accepted (an accepted
// update clears it; see RecordResourceState).
func (m *resourceMeta) discovered(st ResourceState, f updateFailure, failed bool) {
	if st.Version != "" {
		m.VersionInfo = st.Version
	}
	if st.Status != StatusUnknown {
		m.ClientStatus = st.Status.String()
	}
	if m.LastUpdated == nil && !st.LastUpdated.IsZero() {
		t := st.LastUpdated
		m.LastUpdated = &t
	}
	if failed {
		m.ErrorState = &f
	}
}

// addUnlisted adds the resources that are not live but were rejected or
// reported by a discovery client (warming, requested, does not exist),
// and every endpoint assignment and secret a client reported.
func (out *configDump) addUnlisted(fails map[string]updateFailure, states map[string]ResourceState) {
	keys := make(map[string]bool, len(fails)+len(states))
	for k := range fails {
		keys[k] = true
	}
	for k := range states {
		keys[k] = true
	}
	for key := range keys {
		f, failed := fails[key]
		m := meta(resourceInfo{}, false, f, failed)
		if st, ok := states[key]; ok {
			m.discovered(st, f, failed)
		}
		kind, name, _ := strings.Cut(key, ":")
		switch kind {
		case kindListener:
			out.Listeners = append(out.Listeners, dumpListener{Name: name, resourceMeta: m})
		case kindRoute:
			out.Routes = append(out.Routes, dumpRoutes{Name: name, resourceMeta: m})
		case kindCluster:
			out.Clusters = append(out.Clusters, dumpCluster{Name: name, resourceMeta: m})
		case KindEndpoints:
			out.EndpointConfigs = append(out.EndpointConfigs, dumpDiscovered{Name: name, resourceMeta: m})
		case KindSecret:
			out.Secrets = append(out.Secrets, dumpDiscovered{Name: name, resourceMeta: m})
		}
	}
}

// UpsertClusters adds or updates clusters as UpsertCluster does each, in
// one step: every one is checked and built before any is published, and
// the new clusters are published together, so that a discovery update of
// many clusters costs one copy of the cluster set rather than one per
// cluster. An invalid configuration fails the call and leaves every
// cluster as it was. A name given twice takes the last configuration.
func (g *Gateway) UpsertClusters(cfgs []cluster.Config) error {
	last := make(map[string]int, len(cfgs))
	for i, cfg := range cfgs {
		last[cfg.Name] = i
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	prepared := make([]preparedCluster, 0, len(cfgs))
	for i, cfg := range cfgs {
		if last[cfg.Name] != i {
			continue
		}
		pc, err := g.prepareClusterLocked(cfg)
		if err != nil {
			for _, p := range prepared {
				if p.fresh != nil {
					p.fresh.Close()
				}
			}
			return fmt.Errorf("cluster %q: %w", cfg.Name, err)
		}
		prepared = append(prepared, pc)
	}
	cur := g.clusters.Load()
	var next *clusterSet
	var retired []*cluster.Cluster
	for _, pc := range prepared {
		if pc.fresh == nil {
			continue
		}
		if next == nil {
			next = &clusterSet{byName: make(map[string]*liveCluster, len(cur.byName)+len(prepared))}
			for k, v := range cur.byName {
				next.byName[k] = v
			}
		}
		if old := next.byName[pc.cfg.Name]; old != nil {
			retired = append(retired, old.c)
			g.metrics.cmModified.Inc()
		} else {
			g.metrics.cmAdded.Inc()
		}
		next.byName[pc.cfg.Name] = &liveCluster{c: pc.fresh, stats: g.metrics.cluster(pc.cfg.Name), given: pc.given}
		g.bump("cluster:" + pc.cfg.Name)
	}
	if next != nil {
		g.clusters.Store(next)
		for _, c := range retired {
			g.retire(c)
		}
	}
	// Endpoint-only changes go to the live clusters, last: their
	// configurations were validated above.
	for _, pc := range prepared {
		if pc.fresh != nil {
			continue
		}
		if err := g.updateLiveClusterLocked(pc.cfg); err != nil {
			return err
		}
	}
	return nil
}
