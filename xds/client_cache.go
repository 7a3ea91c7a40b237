package xds

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// subState is the client's state of one resource type: its cache, its
// subscription and its protocol state. Run's goroutine owns it.
type subState struct {
	t       rtype
	entries map[string]*cacheEntry
	enabled bool            // LDS, CDS: subscribed (wildcard)
	names   map[string]bool // RDS, EDS, SDS: the names subscribed

	// Stream state, reset on reconnect: nonces are stream-scoped.
	started    bool                 // a request went out on this stream
	nonce      string               // of the last response
	sent       map[string]bool      // delta: the subscription the server holds
	pendingAck bool                 // delta: a response awaits its ACK or NACK
	requested  map[string]time.Time // names not received yet, since when

	acked     string    // SotW: the last ACKed version_info, kept across reconnects
	nack      error     // the last response's error while it stands NACKed
	dirty     bool      // a request is due
	notBefore time.Time // ... but not before (NACK pacing)
	nackCount int       // consecutive NACKs of the same update
	lastNACK  uint64    // hash of the update last NACKed
}

// wants reports whether the type has anything to subscribe to.
func (ts *subState) wants() bool {
	if rtInfo[ts.t].wildcard {
		return ts.enabled
	}
	return len(ts.names) > 0
}

func (ts *subState) resetStream() {
	ts.started, ts.nonce, ts.sent, ts.pendingAck, ts.requested = false, "", nil, false, nil
	ts.nack, ts.notBefore, ts.nackCount, ts.lastNACK = nil, time.Time{}, 0, 0
}

// entry returns name's cache entry, creating it.
func (ts *subState) entry(name string) *cacheEntry {
	e := ts.entries[name]
	if e == nil {
		e = &cacheEntry{}
		ts.entries[name] = e
	}
	return e
}

// cacheEntry is one resource: its accepted version and what became of the
// updates that followed.
type cacheEntry struct {
	cur       *cachedResource // the accepted version, translated; nil if none
	pending   *cachedResource // an accepted update waiting for SDS secrets to translate
	bad       []byte          // payload of the last rejected update, to know its resends
	badErr    error
	missing   bool      // taken not to exist
	warmSince time.Time // when cur started waiting for its dependencies
}

// cachedResource is one version of a resource and its translation. It is
// never modified once cached, but for version, which a delta or SotW
// resend of identical content updates.
type cachedResource struct {
	version string
	raw     []byte // the serialised resource, decoded again when needed

	listener listener.Config
	inline   []route.Config // a listener's inline route configurations
	route    route.Config
	cluster  cluster.Config
	eps      []cluster.Endpoint
	secret   *Secret
	refs     Refs

	missingSecrets []string // a pending resource's secrets not yet received
}

// received is one resource of a response.
type received struct {
	name, version string
	payload       []byte // nil for a TTL heartbeat: keep what is cached
}

// resourceError is one rejected resource; name is empty when the whole
// response is rejected.
type resourceError struct {
	name, version string
	err           error
}

// liveCluster is what a cluster serves: its version and the endpoint
// assignments (nil: taken not to exist) its endpoints came from.
type liveCluster struct {
	res *cachedResource
	cla []*cachedResource
}

// liveState is what the client applied to the gateway; it removes only
// what it added.
type liveState struct {
	clusters  map[string]liveCluster
	routes    map[string]*cachedResource
	listeners map[string]*cachedResource
	// clustersReady is set once the first cluster update has warmed:
	// listeners wait for it, as Envoy's initialise after clusters.
	clustersReady bool
	cdsReceived   bool
	// removing holds the clusters removed while routes still send to
	// them, since when.
	removing map[string]time.Time
}

func newLiveState() liveState {
	return liveState{
		clusters:  map[string]liveCluster{},
		routes:    map[string]*cachedResource{},
		listeners: map[string]*cachedResource{},
		removing:  map[string]time.Time{},
	}
}

// kindName names a resource type in errors.
var kindName = [numRT]string{
	rtCluster: "cluster", rtEndpoints: "cluster load assignment", rtListener: "listener",
	rtRoute: "route configuration", rtSecret: "secret",
}

func newMessage(t rtype) proto.Message {
	switch t {
	case rtCluster:
		return new(clusterv3.Cluster)
	case rtEndpoints:
		return new(endpointv3.ClusterLoadAssignment)
	case rtListener:
		return new(listenerv3.Listener)
	case rtRoute:
		return new(routev3.RouteConfiguration)
	}
	return new(tlsv3.Secret)
}

// resourceName reads field 1 of a serialised resource, which is the name
// of all five types (cluster_name for a ClusterLoadAssignment), without
// decoding the rest.
func resourceName(b []byte) (string, error) {
	name := ""
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return "", protowire.ParseError(m)
			}
			name = string(v) // the last one wins, as in proto decoding
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return "", protowire.ParseError(m)
		}
		b = b[m:]
	}
	return name, nil
}

// translate decodes and translates one resource. When translation fails
// for want of SDS secrets not received yet, missing names them and the
// resource is to wait for them rather than be rejected.
func (c *Client) translate(t rtype, name, version string, raw []byte) (res *cachedResource, missing []string, err error) {
	res = &cachedResource{version: version, raw: raw}
	msg := newMessage(t)
	if err := proto.Unmarshal(raw, msg); err != nil {
		return res, nil, fmt.Errorf("%s %q: decode: %w", kindName[t], name, err)
	}
	switch m := msg.(type) {
	case *listenerv3.Listener:
		res.listener, res.inline, res.refs, err = c.tr.Listener(m)
	case *routev3.RouteConfiguration:
		res.route, err = c.tr.RouteConfiguration(m)
	case *clusterv3.Cluster:
		res.cluster, res.refs, err = c.tr.Cluster(m)
		if err == nil && res.cluster.Type == cluster.EDS && len(res.refs.Endpoints) == 0 {
			n := m.GetEdsClusterConfig().GetServiceName()
			if n == "" {
				n = m.GetName()
			}
			res.refs.Endpoints = []string{n}
		}
	case *endpointv3.ClusterLoadAssignment:
		res.eps, err = c.tr.Endpoints(m)
	case *tlsv3.Secret:
		res.secret, err = c.tr.Secret(m)
	}
	if t == rtListener || t == rtCluster {
		res.refs.Secrets = union(res.refs.Secrets, sdsRefs(msg))
	}
	if err != nil {
		for _, s := range res.refs.Secrets {
			if _, ok := c.tr.Secrets(s); !ok {
				missing = append(missing, s)
			}
		}
		if !strings.Contains(err.Error(), strconv.Quote(name)) {
			err = fmt.Errorf("%s %q: %w", kindName[t], name, err)
		}
		return res, missing, err
	}
	return res, nil, nil
}

func union(a, b []string) []string {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}

const sdsSecretConfig protoreflect.FullName = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig"

// sdsRefs returns the names of the SDS secrets m references anywhere,
// inside typed_config Anys too (transport sockets are Anys). It does not
// need the translation to succeed, so a resource whose secrets have not
// arrived still subscribes to them.
func sdsRefs(m proto.Message) []string {
	var names []string
	var walk func(pm protoreflect.Message, depth int)
	walk = func(pm protoreflect.Message, depth int) {
		if depth > 64 {
			return
		}
		switch pm.Descriptor().FullName() {
		case sdsSecretConfig:
			if n := pm.Get(pm.Descriptor().Fields().ByName("name")).String(); n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
			return
		case "google.protobuf.Any":
			a, ok := pm.Interface().(*anypb.Any)
			if !ok {
				return
			}
			inner, err := a.UnmarshalNew()
			if err == nil {
				walk(inner.ProtoReflect(), depth+1)
			}
			return
		}
		pm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				l := v.List()
				for i := range l.Len() {
					walk(l.Get(i).Message(), depth+1)
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), depth+1)
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message(), depth+1)
			}
			return true
		})
	}
	walk(m.ProtoReflect(), 0)
	return names
}

// failedJSON renders a rejected resource for /config_dump.
func failedJSON(t rtype, res *cachedResource) any {
	m := newMessage(t)
	if proto.Unmarshal(res.raw, m) != nil {
		return nil
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil
	}
	return json.RawMessage(b)
}

// update applies one response's resources of type t to the cache, then
// the cache to the gateway, and returns what it rejected. full is set for
// a state-of-the-world LDS or CDS response, in which absence is removal;
// removed lists a delta response's removals.
func (c *Client) update(t rtype, in []received, removed []string, full bool, now time.Time) []resourceError {
	ts := c.types[t]
	info := rtInfo[t]
	var errs []resourceError
	var changedSecrets map[string]bool
	for _, r := range in {
		if !info.wildcard && !ts.names[r.name] {
			continue // not requested: ignored, as the protocol says
		}
		delete(ts.requested, r.name)
		if !info.wildcard {
			c.stats.Count(info.api, r.name, portico.UpdateAttempt)
		}
		if r.payload == nil {
			continue // heartbeat
		}
		e := ts.entry(r.name)
		e.missing = false
		switch {
		case e.pending == nil && e.cur != nil && bytes.Equal(e.cur.raw, r.payload):
			e.cur.version = r.version
			if !info.wildcard {
				c.stats.Count(info.api, r.name, portico.UpdateSuccess)
			}
			continue
		case e.pending != nil && bytes.Equal(e.pending.raw, r.payload):
			e.pending.version = r.version
			continue
		case e.bad != nil && bytes.Equal(e.bad, r.payload):
			errs = append(errs, resourceError{r.name, r.version, e.badErr})
			if !info.wildcard {
				c.stats.Count(info.api, r.name, portico.UpdateRejected)
			}
			continue
		}
		res, missing, err := c.translate(t, r.name, r.version, r.payload)
		switch {
		case err != nil && len(missing) > 0:
			res.missingSecrets = missing
			e.pending, e.bad, e.badErr = res, nil, nil
			c.log.Debug("xds: resource waits for secrets", "type", info.api, "resource", r.name, "secrets", missing)
			c.gw.RecordResourceState(info.kind, r.name, portico.ResourceState{Status: portico.StatusWarming})
		case err != nil:
			e.bad, e.badErr = r.payload, err
			errs = append(errs, resourceError{r.name, r.version, err})
			c.gw.RecordRejection(info.kind, r.name, r.version, failedJSON(t, res), err)
			if !info.wildcard {
				c.stats.Count(info.api, r.name, portico.UpdateRejected)
			}
		default:
			e.cur, e.pending, e.bad, e.badErr = res, nil, nil, nil
			switch t {
			case rtSecret:
				c.secrets.set(r.name, res.secret)
				if changedSecrets == nil {
					changedSecrets = map[string]bool{}
				}
				changedSecrets[r.name] = true
			case rtEndpoints:
				if len(res.eps) == 0 {
					c.stats.Count(info.api, r.name, portico.UpdateEmpty)
				}
			}
			if t == rtSecret || t == rtEndpoints {
				// Nothing to apply by itself: accepted now.
				c.gw.RecordResourceState(info.kind, r.name, portico.ResourceState{Version: r.version, Status: portico.StatusAcked})
			}
			if !info.wildcard {
				c.stats.Count(info.api, r.name, portico.UpdateSuccess)
			}
		}
	}
	if full {
		seen := make(map[string]bool, len(in))
		for _, r := range in {
			seen[r.name] = true
		}
		for name := range ts.entries {
			if !seen[name] {
				c.drop(t, name)
			}
		}
	}
	for _, name := range removed {
		if info.wildcard {
			c.drop(t, name)
			continue
		}
		if !ts.names[name] {
			continue
		}
		c.drop(t, name)
		ts.entry(name).missing = true
		delete(ts.requested, name)
		c.gw.RecordResourceState(info.kind, name, portico.ResourceState{Status: portico.StatusDoesNotExist})
	}
	if changedSecrets != nil {
		c.retranslate(changedSecrets)
	}
	for _, te := range c.sync(now) {
		if te.t == t {
			errs = append(errs, te.resourceError)
		}
	}
	return errs
}

// sync brings the subscriptions and the gateway in line with the cache.
// Applying may change what serves, hence what is referenced: a listener
// that finished warming releases the routes of its previous version, so
// the subscriptions are updated again, and what they dropped removed.
func (c *Client) sync(now time.Time) []typedError {
	c.resubscribe()
	errs := c.reconcile(now)
	if c.resubscribe() {
		errs = append(errs, c.reconcile(now)...)
	}
	return errs
}

// drop forgets a resource: removed by the server, or no longer
// subscribed. What it served is removed from the gateway by reconcile.
func (c *Client) drop(t rtype, name string) {
	delete(c.types[t].entries, name)
	if t == rtSecret {
		c.secrets.set(name, nil)
	}
	c.gw.ForgetResource(rtInfo[t].kind, name)
}

// retranslate translates again the listeners and clusters that use the
// changed secrets (certificate rotation), or wait for them.
func (c *Client) retranslate(changed map[string]bool) {
	for _, t := range []rtype{rtCluster, rtListener} {
		info := rtInfo[t]
		for name, e := range c.types[t].entries {
			src := e.pending
			if src == nil {
				src = e.cur
			}
			if src == nil || !slices.ContainsFunc(src.refs.Secrets, func(s string) bool { return changed[s] }) {
				continue
			}
			res, missing, err := c.translate(t, name, src.version, src.raw)
			switch {
			case err != nil && len(missing) > 0:
				res.missingSecrets = missing
				e.pending = res
			case err != nil:
				// The resource was ACKed; its secret makes it fail now.
				e.pending = nil
				c.log.Warn("xds: resource rejected with its new secret", "type", info.api, "resource", name, "err", err)
				c.gw.RecordRejection(info.kind, name, src.version, failedJSON(t, res), err)
			default:
				e.cur, e.pending = res, nil
			}
		}
	}
}

// resubscribe sets the route configurations, endpoint assignments and
// secrets subscribed to what the listeners and clusters reference, those
// serving and those waiting to, and forgets what is no longer referenced.
// It reports whether a subscription changed.
func (c *Client) resubscribe() bool {
	changed := false
	want := [numRT]map[string]bool{rtRoute: {}, rtEndpoints: {}, rtSecret: {}}
	add := func(r *cachedResource) {
		if r == nil {
			return
		}
		for _, n := range r.refs.Routes {
			want[rtRoute][n] = true
		}
		for _, n := range r.refs.Endpoints {
			want[rtEndpoints][n] = true
		}
		for _, n := range r.refs.Secrets {
			want[rtSecret][n] = true
		}
	}
	for _, t := range []rtype{rtListener, rtCluster} {
		for _, e := range c.types[t].entries {
			add(e.cur)
			add(e.pending)
		}
	}
	for _, r := range c.live.listeners {
		add(r)
	}
	for _, lc := range c.live.clusters {
		add(lc.res)
	}
	for _, t := range []rtype{rtRoute, rtEndpoints, rtSecret} {
		ts := c.types[t]
		if maps.Equal(ts.names, want[t]) {
			continue
		}
		for name := range ts.names {
			if !want[t][name] {
				c.drop(t, name)
				delete(ts.requested, name)
			}
		}
		// Entries cached for names no longer wanted (taken not to
		// exist, say) go too.
		for name := range ts.entries {
			if !want[t][name] {
				c.drop(t, name)
			}
		}
		ts.names = want[t]
		ts.dirty = true
		ts.notBefore = time.Time{} // a subscription change goes out at once
		changed = true
	}
	return changed
}

// typedError is a resource the gateway refused.
type typedError struct {
	t rtype
	resourceError
}

// reconcile applies the cache to the gateway, make-before-break: clusters
// with their endpoints first, then route configurations, then listeners
// (each once what it depends on has arrived, or its warming timed out),
// then removals: listeners, routes, clusters. A resource the gateway
// refuses keeps its previous version serving; reconcile returns it.
func (c *Client) reconcile(now time.Time) []typedError {
	var errs []typedError
	ct, et := c.types[rtCluster], c.types[rtEndpoints]
	lt, rt := c.types[rtListener], c.types[rtRoute]
	c.nextWarm = time.Time{}

	fail := func(t rtype, name string, res *cachedResource, revert *cachedResource, err error) {
		info := rtInfo[t]
		errs = append(errs, typedError{t, resourceError{name, res.version, err}})
		c.log.Warn("xds: resource rejected", "type", info.api, "resource", name, "version", res.version, "err", err)
		c.gw.RecordRejection(info.kind, name, res.version, failedJSON(t, res), err)
		if e := c.types[t].entries[name]; e != nil && e.cur == res {
			e.bad, e.badErr, e.cur = res.raw, err, revert
		}
	}
	// warming reports whether e must keep waiting for what it depends on.
	warming := func(t rtype, name string, e *cacheEntry) bool {
		if e.warmSince.IsZero() {
			e.warmSince = now
			c.gw.RecordResourceState(rtInfo[t].kind, name, portico.ResourceState{Status: portico.StatusWarming})
		}
		if c.fetchWait <= 0 {
			return true
		}
		deadline := e.warmSince.Add(c.fetchWait)
		if now.Before(deadline) {
			if c.nextWarm.IsZero() || deadline.Before(c.nextWarm) {
				c.nextWarm = deadline
			}
			return true
		}
		return false
	}
	timedOut := func(t rtype, name string, dep rtype, waiting []string) {
		c.log.Warn("xds: warming timed out", "type", rtInfo[t].api, "resource", name, "waiting_for", waiting)
		for _, n := range waiting {
			c.stats.Count(rtInfo[dep].api, n, portico.InitFetchTimeout)
		}
	}
	curOf := func(ts *subState, name string) (res *cachedResource, ready bool) {
		e := ts.entries[name]
		if e == nil {
			return nil, false
		}
		return e.cur, e.cur != nil || e.missing
	}

	// Clusters and their endpoints.
	type pendingCluster struct {
		name string
		cfg  cluster.Config
		live liveCluster
		prev *cachedResource
	}
	var upserts []pendingCluster
	warmingClusters := 0
	for name, e := range ct.entries {
		res := e.cur
		if res == nil {
			continue
		}
		lc, isLive := c.live.clusters[name]
		if isLive && lc.res == res && len(lc.cla) == len(res.refs.Endpoints) {
			same := true
			for i, n := range res.refs.Endpoints {
				if cur, _ := curOf(et, n); cur != lc.cla[i] {
					same = false
					break
				}
			}
			if same {
				e.warmSince = time.Time{}
				continue
			}
		}
		var waiting []string
		for _, n := range res.refs.Endpoints {
			if _, ready := curOf(et, n); !ready {
				waiting = append(waiting, n)
			}
		}
		if len(waiting) > 0 {
			if warming(rtCluster, name, e) {
				warmingClusters++
				continue
			}
			timedOut(rtCluster, name, rtEndpoints, waiting)
		}
		e.warmSince = time.Time{}
		cla := make([]*cachedResource, len(res.refs.Endpoints))
		var eps []cluster.Endpoint
		for i, n := range res.refs.Endpoints {
			cla[i], _ = curOf(et, n)
			if cla[i] != nil {
				if eps == nil {
					eps = cla[i].eps
				} else {
					eps = append(slices.Clip(eps), cla[i].eps...)
				}
			}
		}
		if isLive && lc.res == res {
			if err := c.gw.UpdateEndpoints(name, eps); err != nil {
				for i, r := range cla {
					if r != nil && (i >= len(lc.cla) || lc.cla[i] != r) {
						var prev *cachedResource
						if i < len(lc.cla) {
							prev = lc.cla[i]
						}
						fail(rtEndpoints, res.refs.Endpoints[i], r, prev, err)
					}
				}
				continue
			}
			c.live.clusters[name] = liveCluster{res: res, cla: cla}
			continue
		}
		cfg := res.cluster
		if len(res.refs.Endpoints) > 0 {
			cfg.Endpoints = eps
		}
		upserts = append(upserts, pendingCluster{name: name, cfg: cfg, live: liveCluster{res: res, cla: cla}, prev: lc.res})
	}
	// New and changed clusters are published together; if the gateway
	// refuses the batch, one by one to tell which it refuses.
	if len(upserts) > 0 {
		cfgs := make([]cluster.Config, len(upserts))
		for i, u := range upserts {
			cfgs[i] = u.cfg
		}
		batchErr := c.gw.UpsertClusters(cfgs)
		for _, u := range upserts {
			if batchErr != nil {
				if err := c.gw.UpsertCluster(u.cfg); err != nil {
					fail(rtCluster, u.name, u.live.res, u.prev, err)
					continue
				}
			}
			c.live.clusters[u.name] = u.live
			c.gw.RecordResourceState(rtInfo[rtCluster].kind, u.name, portico.ResourceState{Version: u.live.res.version, Status: portico.StatusAcked})
		}
	}
	if !c.live.clustersReady && (!ct.enabled || (c.live.cdsReceived && warmingClusters == 0)) {
		c.live.clustersReady = true
	}

	// Route configurations, once the clusters they send to that are
	// known have warmed (Envoy does not warm routes; waiting for a
	// cluster that is on its way avoids answering 503 meanwhile).
	for name, e := range rt.entries {
		res := e.cur
		if res == nil || c.live.routes[name] == res {
			e.warmSince = time.Time{}
			continue
		}
		if waiting := c.warmingClusters(&res.route); len(waiting) > 0 {
			if warming(rtRoute, name, e) {
				continue
			}
			timedOut(rtRoute, name, rtCluster, waiting)
		}
		e.warmSince = time.Time{}
		if err := c.gw.UpsertRoutes(res.route); err != nil {
			fail(rtRoute, name, res, c.live.routes[name], err)
			continue
		}
		c.live.routes[name] = res
		c.gw.RecordResourceState(rtInfo[rtRoute].kind, name, portico.ResourceState{Version: res.version, Status: portico.StatusAcked})
	}

	// Listeners, once clusters have warmed and their routes arrived.
	for name, e := range lt.entries {
		res := e.cur
		old := c.live.listeners[name]
		if res == nil || old == res {
			e.warmSince = time.Time{}
			continue
		}
		var waiting []string
		for _, n := range res.refs.Routes {
			// A version of the route configuration serves, or none
			// exists.
			if re := rt.entries[n]; c.live.routes[n] == nil && (re == nil || !re.missing) {
				waiting = append(waiting, n)
			}
		}
		waitDep := rtRoute
		for i := range res.inline {
			if w := c.warmingClusters(&res.inline[i]); len(w) > 0 {
				waiting, waitDep = append(waiting, w...), rtCluster
			}
		}
		if len(waiting) > 0 || !c.live.clustersReady {
			if warming(rtListener, name, e) {
				continue
			}
			timedOut(rtListener, name, waitDep, waiting)
		}
		e.warmSince = time.Time{}
		var err error
		for _, rc := range res.inline {
			if err = c.gw.UpsertRoutes(rc); err != nil {
				break
			}
		}
		if err == nil {
			err = c.gw.UpsertListener(res.listener)
		}
		if err != nil {
			c.replaceInline(res, old, true)
			fail(rtListener, name, res, old, err)
			continue
		}
		if old != nil {
			c.replaceInline(old, res, false)
		}
		c.live.listeners[name] = res
		c.gw.RecordResourceState(rtInfo[rtListener].kind, name, portico.ResourceState{Version: res.version, Status: portico.StatusAcked})
	}

	// Removals, last.
	for name, old := range c.live.listeners {
		if e := lt.entries[name]; e != nil && e.cur != nil {
			continue
		}
		if err := c.gw.RemoveListener(name); err != nil {
			c.log.Warn("xds: remove listener", "listener", name, "err", err)
		}
		c.replaceInline(old, nil, false)
		delete(c.live.listeners, name)
		c.gw.ForgetResource(rtInfo[rtListener].kind, name)
	}
	for name := range c.live.routes {
		if e := rt.entries[name]; e != nil && e.cur != nil {
			continue
		}
		if err := c.gw.RemoveRoutes(name); err != nil {
			c.log.Warn("xds: remove route configuration", "route_config", name, "err", err)
		}
		delete(c.live.routes, name)
		c.gw.ForgetResource(rtInfo[rtRoute].kind, name)
	}
	var routed map[string]bool
	for name := range c.live.clusters {
		if e := ct.entries[name]; e != nil && e.cur != nil {
			delete(c.live.removing, name)
			continue
		}
		// A cluster that serving routes still send to stays until they
		// stop (the route update usually follows the cluster update it
		// goes with), for a bounded time: make before break.
		if routed == nil {
			routed = c.routedClusters()
		}
		if routed[name] {
			since, ok := c.live.removing[name]
			if !ok {
				since = now
				c.live.removing[name] = now
			}
			if deadline := since.Add(cmp.Or(c.fetchWait, DefaultInitialFetchTimeout)); now.Before(deadline) {
				if c.nextWarm.IsZero() || deadline.Before(c.nextWarm) {
					c.nextWarm = deadline
				}
				continue
			}
		}
		delete(c.live.removing, name)
		if err := c.gw.RemoveCluster(name); err != nil {
			c.log.Warn("xds: remove cluster", "cluster", name, "err", err)
		}
		delete(c.live.clusters, name)
		c.gw.ForgetResource(rtInfo[rtCluster].kind, name)
	}
	return errs
}

// warmingClusters returns the clusters rc sends to that are accepted but
// not serving yet.
func (c *Client) warmingClusters(rc *route.Config) []string {
	var out []string
	ct := c.types[rtCluster]
	check := func(name string) {
		if e := ct.entries[name]; e != nil && e.cur != nil && c.live.clusters[name].res == nil && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Rules {
			if r.Cluster != "" {
				check(r.Cluster)
			}
			for _, w := range r.WeightedClusters {
				check(w.Name)
			}
		}
	}
	return out
}

// routedClusters returns the clusters the serving route configurations
// send to.
func (c *Client) routedClusters() map[string]bool {
	out := map[string]bool{}
	add := func(rc *route.Config) {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Rules {
				if r.Cluster != "" {
					out[r.Cluster] = true
				}
				for _, w := range r.WeightedClusters {
					out[w.Name] = true
				}
			}
		}
	}
	for _, r := range c.live.routes {
		add(&r.route)
	}
	for _, l := range c.live.listeners {
		for i := range l.inline {
			add(&l.inline[i])
		}
	}
	return out
}

// replaceInline removes the inline route configurations of from that to
// (nil: none) lacks, and with restore upserts to's again.
func (c *Client) replaceInline(from, to *cachedResource, restore bool) {
	var keep []route.Config
	if to != nil {
		keep = to.inline
	}
	for _, rc := range from.inline {
		if !slices.ContainsFunc(keep, func(k route.Config) bool { return k.Name == rc.Name }) {
			c.gw.RemoveRoutes(rc.Name)
		}
	}
	if restore && to != nil {
		for _, rc := range to.inline {
			if err := c.gw.UpsertRoutes(rc); err != nil {
				c.log.Warn("xds: restore inline route configuration", "route_config", rc.Name, "err", err)
			}
		}
	}
}

// joinErrors makes one error of a response's rejections, for the NACK's
// error_detail.
func joinErrors(errs []resourceError) error {
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e.err
	}
	return errors.Join(list...)
}
