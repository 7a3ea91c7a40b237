package portico

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// Config is a whole gateway configuration: the snapshot that Apply swaps in
// atomically. Each HTTP filter chain of a listener names its route
// configuration in HTTP.RouteConfig; the gateway sets HTTP.Handler itself.
type Config struct {
	Listeners []listener.Config
	Routes    []route.Config
	Clusters  []cluster.Config
}

// Options configure a Gateway's process-level parts.
type Options struct {
	// Admin is the admin listener's address; default "127.0.0.1:9901".
	// "-" disables the admin listener (the handler stays available through
	// Gateway.AdminHandler).
	Admin string
	// AdminToken, when set, makes every admin endpoint but /ready require
	// the header "Authorization: Bearer <AdminToken>"; other requests get
	// 401. Set it whenever Admin is not a loopback address.
	AdminToken string
	// StatsPrefix prefixes every metric name and label; default "portico".
	// "envoy" gives Envoy's own names.
	StatsPrefix string
	// EndpointStats turns on Envoy's per-endpoint stats
	// (cluster.<name>.endpoint.<address>.rq_total and the like, Envoy's
	// per_endpoint_stats) for every cluster. They are read from the
	// clusters when scraped, so they cost the request path nothing, but
	// they add a set of series per endpoint.
	EndpointStats bool
	// RouteStats turns on Envoy's per-route stats
	// (vhost.<virtual host>.route.<route name>.upstream_rq_*) for every
	// named route, the route's name standing in for Envoy's per-route
	// stat_prefix. Off by default: they cost a few atomic adds per request
	// and a set of series per route.
	RouteStats bool
	// Logger receives control-path events; default discards. Records pass
	// through LogLevel first.
	Logger *slog.Logger
	// LogLevel is the minimum level of records the gateway hands to
	// Logger; the admin endpoint /logging changes it at run time. Nil
	// means a level of its own, starting at Info. Share it with Logger's
	// handler (slog.HandlerOptions.Level) so that /logging can also lower
	// the handler's threshold.
	LogLevel *slog.LevelVar
	// DrainTime is how long POST /drain_listeners?graceful keeps serving
	// after it starts failing readiness before it stops the listeners
	// (Envoy's --drain-time-s); default 600 s.
	DrainTime time.Duration
	// NodeID and NodeCluster identify this gateway (Envoy's --service-node
	// and --service-cluster); they are shown by /server_info.
	NodeID, NodeCluster string
}

// Gateway assembles listeners, route tables and clusters from a config
// snapshot and serves them. Its methods are safe for concurrent use: updates
// are serialised on the control path, and requests read immutable snapshots
// through atomic pointers, so an update never blocks a request and a request
// never sees half an update.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu        sync.Mutex // serialises updates; never taken by requests
	listeners map[string]*liveListener
	routes    map[string]*route.Table
	hcms      map[*hcm]struct{}
	clusters  atomic.Pointer[clusterSet]

	admin     *http.Server
	adminLn   net.Listener
	hcFailed  atomic.Bool
	draining  atomic.Bool
	serving   atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup
	// shadows counts the shadow (mirror) requests in flight; Close
	// cancels and joins them, and no shadow starts once it began.
	shadows   shadowGroup
	serveCtx  context.Context
	stopServe context.CancelFunc
	versions  map[string]resourceInfo

	level     *slog.LevelVar // the minimum level of g.log; /logging sets it
	rejected  rejections     // last rejected update per resource (xDS)
	discovery discoveryState // discovery client's per-resource state and stats (discovery.go)
}

type resourceInfo struct {
	Version     int       `json:"version"`
	LastUpdated time.Time `json:"last_updated"`
}

// clusterSet is an immutable map of live clusters.
type clusterSet struct {
	byName map[string]*liveCluster
}

type liveCluster struct {
	c     *cluster.Cluster
	stats *clusterStats
	// given is the configuration the cluster was built from, as given
	// (no defaults filled in), deep-copied, without the endpoints that
	// change in place: what UpsertCluster compares an update with.
	given cluster.Config
}

type liveListener struct {
	cfg  listener.Config
	l    *listener.Listener
	hcms map[string]*hcm // by filter chain name
}

// New builds a gateway from cfg and binds its listeners; it serves nothing
// until Serve is called. Any invalid part of cfg fails the whole call.
func New(cfg Config, opts Options) (*Gateway, error) {
	g := &Gateway{
		opts:      opts,
		listeners: map[string]*liveListener{},
		routes:    map[string]*route.Table{},
		hcms:      map[*hcm]struct{}{},
		versions:  map[string]resourceInfo{},
		level:     opts.LogLevel,
	}
	if g.level == nil {
		g.level = new(slog.LevelVar)
	}
	g.log = newLogger(opts.Logger, g.level)
	g.clusters.Store(&clusterSet{byName: map[string]*liveCluster{}})
	g.metrics = newMetrics(opts.StatsPrefix)
	g.metrics.reg.MustRegister(newGatewayCollector(g))
	g.serveCtx, g.stopServe = context.WithCancel(context.Background())
	g.shadows.idle = make(chan struct{})
	if err := g.Apply(cfg); err != nil {
		g.Close()
		return nil, err
	}
	if opts.Admin != "-" {
		addr := opts.Admin
		if addr == "" {
			addr = "127.0.0.1:9901"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("admin: %w", err)
		}
		g.adminLn = ln
		g.admin = &http.Server{Handler: g.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		if opts.AdminToken == "" && !isLoopback(ln.Addr()) {
			g.log.Warn("admin listener is not on a loopback address and has no AdminToken", "address", ln.Addr().String())
		}
	}
	return g, nil
}

// Serve serves every listener and the admin endpoint until ctx is done or
// Shutdown or Close is called, then shuts down gracefully (bounded by the
// drain timeout) and returns.
func (g *Gateway) Serve(ctx context.Context) error {
	if !g.serving.CompareAndSwap(false, true) {
		return errors.New("portico: Serve called twice")
	}
	g.mu.Lock()
	for _, ll := range g.listeners {
		g.startListener(ll)
	}
	g.mu.Unlock()
	if g.admin != nil {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.admin.Serve(g.adminLn)
		}()
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return g.Shutdown(sctx)
	case <-g.serveCtx.Done():
		return nil
	}
}

func (g *Gateway) startListener(ll *liveListener) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := ll.l.Serve(g.serveCtx); err != nil {
			g.log.Error("listener stopped", "listener", ll.cfg.Name, "err", err)
		}
	}()
}

// Shutdown stops accepting connections, drains in-flight requests
// (HTTP/1.1 gets Connection: close, h2 gets GOAWAY) and then the shadow
// (mirror) requests they started, until ctx is done, and releases upstream
// connections. Whatever is still in flight when ctx is done is cancelled,
// as by Close.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	g.mu.Lock()
	lls := make([]*liveListener, 0, len(g.listeners))
	for _, ll := range g.listeners {
		lls = append(lls, ll)
	}
	g.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, ll := range lls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ll.l.Shutdown(ctx); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("listener %q: %w", ll.cfg.Name, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Shadows get what is left of the drain time; the requests that could
	// start more are done, or are cut off by Close below.
	select {
	case <-g.shadows.close():
	case <-ctx.Done():
	}
	if g.admin != nil {
		g.admin.Shutdown(ctx)
	}
	errs = append(errs, g.Close())
	return errors.Join(errs...)
}

// Close stops everything at once: listeners and their connections, the
// admin listener, and the shadow (mirror) requests in flight, which are
// cancelled and waited for, so that none runs once Close has returned;
// then it closes the clusters. It is idempotent.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		shadowsDone := g.shadows.close() // no shadow starts from here on
		g.stopServe()                    // shadows run under serveCtx: this cancels them
		g.mu.Lock()
		for _, ll := range g.listeners {
			ll.l.Close()
		}
		g.mu.Unlock()
		// Join the shadows before their clusters close, so that none
		// sends on a closed cluster.
		<-shadowsDone
		g.mu.Lock()
		for _, lc := range g.clusters.Load().byName {
			lc.c.Close()
		}
		g.mu.Unlock()
		if g.admin != nil {
			g.admin.Close()
		} else if g.adminLn != nil {
			g.adminLn.Close()
		}
		g.wg.Wait()
	})
	return nil
}

// ListenerAddr returns the bound address of the named listener, or nil.
func (g *Gateway) ListenerAddr(name string) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ll, ok := g.listeners[name]; ok {
		return ll.l.Addr()
	}
	return nil
}

// AdminAddr returns the admin listener's address, or nil when disabled.
func (g *Gateway) AdminAddr() net.Addr {
	if g.adminLn == nil {
		return nil
	}
	return g.adminLn.Addr()
}

// Cluster returns the live cluster with the given name, or nil.
func (g *Gateway) Cluster(name string) *cluster.Cluster {
	if lc := g.clusters.Load().byName[name]; lc != nil {
		return lc.c
	}
	return nil
}

// Apply validates a whole new configuration and swaps it in. Requests in
// flight finish on the snapshot they started on. Everything that can fail
// is checked before anything changes — route tables compiled, clusters
// built, every connection manager's chains compiled against its route
// table, new listener addresses test-bound — so an invalid update is
// rejected whole, with an error naming what is wrong, and the running
// configuration keeps serving. Clusters are published before the routes
// that use them and retired after, so no request sees a route whose
// cluster is missing.
func (g *Gateway) Apply(cfg Config) error {
	if err := cfg.validateNames(); err != nil {
		return err
	}
	tables := make(map[string]*route.Table, len(cfg.Routes))
	for i, rc := range cfg.Routes {
		t, err := route.New(rc)
		if err != nil {
			return fmt.Errorf("routes[%d]: %w", i, err)
		}
		tables[rc.Name] = t
	}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		if err := g.checkListener(lc); err != nil {
			return fmt.Errorf("listeners[%d] %q: %w", i, lc.Name, err)
		}
		if err := precompileChains(lc, tables); err != nil {
			return fmt.Errorf("listeners[%d] %q: %w", i, lc.Name, err)
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	prepared := make([]preparedCluster, 0, len(cfg.Clusters))
	discard := func() {
		for _, pc := range prepared {
			if pc.fresh != nil {
				pc.fresh.Close()
			}
		}
	}
	for i := range cfg.Clusters {
		pc, err := g.prepareClusterLocked(cfg.Clusters[i])
		if err != nil {
			discard()
			return fmt.Errorf("clusters[%d] %q: %w", i, cfg.Clusters[i].Name, err)
		}
		prepared = append(prepared, pc)
	}
	for i := range cfg.Listeners {
		if err := g.checkBindLocked(&cfg.Listeners[i]); err != nil {
			discard()
			return fmt.Errorf("listeners[%d] %q: %w", i, cfg.Listeners[i].Name, err)
		}
	}

	// Clusters: add and update first (removal last).
	keep := map[string]bool{}
	for _, pc := range prepared {
		keep[pc.cfg.Name] = true
		if err := g.commitClusterLocked(pc); err != nil {
			return err
		}
	}
	// Routes.
	for name, t := range tables {
		g.routes[name] = t
		g.bump("route:" + name)
	}
	for name := range g.routes {
		if _, ok := tables[name]; !ok {
			delete(g.routes, name)
			delete(g.versions, "route:"+name)
		}
	}
	if err := g.refreshHCMsLocked(""); err != nil {
		return err
	}
	// Listeners.
	keepL := map[string]bool{}
	for _, lc := range cfg.Listeners {
		keepL[lc.Name] = true
		if err := g.upsertListenerLocked(lc); err != nil {
			return err
		}
	}
	for name := range g.listeners {
		if !keepL[name] {
			g.removeListenerLocked(name)
		}
	}
	for name := range g.clusters.Load().byName {
		if !keep[name] {
			g.removeClusterLocked(name)
		}
	}
	return nil
}

// precompileChains compiles the chains of every HTTP filter chain of lc
// against the route table it names, so that a per-route filter
// configuration error rejects the update before anything changes.
func precompileChains(lc *listener.Config, tables map[string]*route.Table) error {
	chains := lc.FilterChains
	if lc.DefaultFilterChain != nil {
		chains = append(slices.Clone(chains), *lc.DefaultFilterChain)
	}
	for i, fc := range chains {
		if fc.HTTP == nil {
			continue
		}
		if _, err := compileState(fc.HTTP, tables[fc.HTTP.RouteConfig]); err != nil {
			return fmt.Errorf("filter_chains[%d]: %w", i, err)
		}
	}
	return nil
}

// checkBindLocked makes sure a listener that needs a new socket can have
// one, so that Apply does not fail half way on an address in use.
func (g *Gateway) checkBindLocked(lc *listener.Config) error {
	if old := g.listeners[lc.Name]; old != nil && old.cfg.Address == lc.Address {
		return nil
	}
	if _, port, err := net.SplitHostPort(lc.Address); err == nil && port == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", lc.Address)
	if err != nil {
		return fmt.Errorf("address: %w", err)
	}
	return ln.Close()
}

func (c *Config) validateNames() error {
	seen := map[string]bool{}
	for i, l := range c.Listeners {
		if l.Name == "" {
			return fmt.Errorf("listeners[%d]: name is required", i)
		}
		if seen["l:"+l.Name] {
			return fmt.Errorf("listeners[%d]: duplicate name %q", i, l.Name)
		}
		seen["l:"+l.Name] = true
	}
	for i, r := range c.Routes {
		if r.Name == "" {
			return fmt.Errorf("routes[%d]: name is required", i)
		}
		if seen["r:"+r.Name] {
			return fmt.Errorf("routes[%d]: duplicate name %q", i, r.Name)
		}
		seen["r:"+r.Name] = true
	}
	for i, cl := range c.Clusters {
		if seen["c:"+cl.Name] {
			return fmt.Errorf("clusters[%d]: duplicate name %q", i, cl.Name)
		}
		seen["c:"+cl.Name] = true
	}
	return nil
}

func (g *Gateway) bump(key string) {
	v := g.versions[key]
	v.Version++
	v.LastUpdated = time.Now()
	g.versions[key] = v
}

// UpsertRoutes adds or replaces one route configuration. Connection
// managers that use it switch to it atomically.
func (g *Gateway) UpsertRoutes(cfg route.Config) error {
	t, err := route.New(cfg) // its errors name the configuration
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old, had := g.routes[cfg.Name]
	g.routes[cfg.Name] = t
	if err := g.refreshHCMsLocked(cfg.Name); err != nil {
		if had {
			g.routes[cfg.Name] = old
		} else {
			delete(g.routes, cfg.Name)
		}
		return err
	}
	g.bump("route:" + cfg.Name)
	return nil
}

// RemoveRoutes removes a route configuration; connection managers that use
// it answer 404 (NR) until it comes back.
func (g *Gateway) RemoveRoutes(name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.routes[name]; !ok {
		return fmt.Errorf("route configuration %q: not found", name)
	}
	delete(g.routes, name)
	delete(g.versions, "route:"+name)
	return g.refreshHCMsLocked(name)
}

// UpsertCluster adds a cluster or updates one in place. A change of
// endpoints only is applied to the live cluster, which keeps its
// connection pools, outlier-detection and health-check state and its
// per-endpoint counters for the endpoints that stay; any other change
// builds a new cluster, and the old one finishes its in-flight requests.
//
// What counts as a change: cfg is compared with the configuration the live
// cluster was built from, as given (defaults are not filled in, so a zero
// ConnectTimeout and an explicit 5 s differ), field by field:
//   - func values (Balancer, Dialer, each Middleware, a health check's
//     OnCheck, a CheckerFunc …) are the same only when they are the very
//     same func value. A func literal or method value evaluated anew —
//     a closure re-created on every call — is a change, even with the
//     same code and the same captured values: keep the func value and
//     pass it again.
//   - pointers to objects with state of their own (a type with unexported
//     fields: a *health.HTTP checker, a *net.Resolver, a *cluster.DNSCache,
//     a *slog.Logger) are the same only when they point to the same
//     object; pointers to plain data (*TLSConfig, *OutlierDetection,
//     *health.TCP …) are compared by what they point to.
//   - everything else is compared by value, a nil and an empty slice or
//     map alike.
//
// Only Static and EDS clusters take new endpoints in place. The endpoints
// of StrictDNS and LogicalDNS clusters are the names they resolve, so a
// change of them builds a new cluster; a configuration equal in every field
// leaves a cluster of any type as it is.
//
// The gateway keeps its own copy of cfg; the caller may reuse it.
func (g *Gateway) UpsertCluster(cfg cluster.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.upsertClusterLocked(cfg)
}

// preparedCluster is a cluster update checked and built but not yet
// published: either an update of the live cluster (fresh == nil) or a
// new cluster, with the copy of its configuration it keeps (given).
type preparedCluster struct {
	cfg   cluster.Config
	fresh *cluster.Cluster
	given cluster.Config
}

func (g *Gateway) prepareClusterLocked(cfg cluster.Config) (preparedCluster, error) {
	if err := cfg.Validate(); err != nil {
		return preparedCluster{}, err
	}
	if lc, ok := g.clusters.Load().byName[cfg.Name]; ok && sameCluster(lc.given, cfg) {
		return preparedCluster{cfg: cfg}, nil
	}
	given := givenCluster(cfg) // before New starts health checks on what cfg points to
	c, err := cluster.New(cfg)
	if err != nil {
		return preparedCluster{}, err
	}
	return preparedCluster{cfg: cfg, fresh: c, given: given}, nil
}

func (g *Gateway) commitClusterLocked(pc preparedCluster) error {
	cur := g.clusters.Load()
	if pc.fresh == nil {
		return g.updateLiveClusterLocked(pc.cfg)
	}
	next := &clusterSet{byName: make(map[string]*liveCluster, len(cur.byName)+1)}
	for k, v := range cur.byName {
		next.byName[k] = v
	}
	old := cur.byName[pc.cfg.Name]
	next.byName[pc.cfg.Name] = &liveCluster{c: pc.fresh, stats: g.metrics.cluster(pc.cfg.Name), given: pc.given}
	g.clusters.Store(next)
	if old != nil {
		g.metrics.cmModified.Inc()
		g.retire(old.c)
	} else {
		g.metrics.cmAdded.Inc()
	}
	g.bump("cluster:" + pc.cfg.Name)
	return nil
}

func (g *Gateway) upsertClusterLocked(cfg cluster.Config) error {
	pc, err := g.prepareClusterLocked(cfg)
	if err != nil {
		return fmt.Errorf("cluster %q: %w", cfg.Name, err)
	}
	return g.commitClusterLocked(pc)
}

// retire closes a replaced cluster's idle connections now, while requests
// that loaded the old cluster set may still send on it, and closes the
// cluster for good once those have had time to finish and return their
// connections to the pool.
func (g *Gateway) retire(c *cluster.Cluster) {
	c.CloseIdleConnections()
	time.AfterFunc(30*time.Second, func() { c.Close() })
}

// updateLiveClusterLocked applies cfg, which sameCluster found equal to
// the live cluster's configuration but for its endpoints, to the live
// cluster: the endpoints of a Static or EDS cluster are replaced in place;
// for other types the configuration is the same in every field and there
// is nothing to do.
func (g *Gateway) updateLiveClusterLocked(cfg cluster.Config) error {
	if !endpointsInPlace(cfg.Type) {
		return nil
	}
	if err := g.clusters.Load().byName[cfg.Name].c.UpdateEndpoints(cfg.Endpoints); err != nil {
		return fmt.Errorf("cluster %q: %w", cfg.Name, err)
	}
	g.metrics.cmUpdated.Inc()
	g.bump("cluster:" + cfg.Name)
	return nil
}

// endpointsInPlace reports whether a cluster of type t takes new
// Config.Endpoints through Cluster.UpdateEndpoints. DNS clusters take the
// names they resolve from Config.Endpoints once, when built (Cluster's
// UpdateEndpoints would replace their resolved addresses with the names);
// OriginalDst and DynamicForwardProxy clusters have none.
func endpointsInPlace(t cluster.Type) bool { return t == cluster.Static || t == cluster.EDS }

// givenCluster returns the copy of cfg that a live cluster keeps to compare
// updates with (liveCluster.given): deep, so that the caller may change
// what cfg points to afterwards, and without the endpoints that change in
// place.
func givenCluster(cfg cluster.Config) cluster.Config {
	if endpointsInPlace(cfg.Type) {
		cfg.Endpoints = nil
	}
	var out cluster.Config
	deepCopy(reflect.ValueOf(&out).Elem(), reflect.ValueOf(&cfg).Elem(), 0)
	return out
}

// sameCluster reports whether cfg differs from given, a live cluster's
// givenCluster copy, in nothing but endpoints that change in place. The
// rules are UpsertCluster's.
func sameCluster(given, cfg cluster.Config) bool {
	if endpointsInPlace(cfg.Type) {
		cfg.Endpoints = nil
	}
	return sameValue(reflect.ValueOf(&given).Elem(), reflect.ValueOf(&cfg).Elem(), 0)
}

// maxConfigDepth bounds the recursion of sameValue and deepCopy through
// configuration values, which are trees; a deeper (or cyclic) value
// compares unequal, and is copied shallowly below the bound.
const maxConfigDepth = 64

// sameValue reports whether a and b, addressable values of one type, are
// the same configuration by UpsertCluster's rules: funcs by identity,
// pointers to stateful objects (see opaque) by identity, everything else
// by value, nil and empty slices and maps alike.
func sameValue(a, b reflect.Value, depth int) bool {
	if depth > maxConfigDepth {
		return false
	}
	depth++
	a, b = readable(a), readable(b)
	switch a.Kind() {
	case reflect.Func:
		return funcIdentity(a) == funcIdentity(b)
	case reflect.Pointer:
		if a.Pointer() == b.Pointer() {
			return true
		}
		if a.IsNil() || b.IsNil() || opaque(a.Type().Elem()) {
			return false
		}
		return sameValue(a.Elem(), b.Elem(), depth)
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		if a.Elem().Type() != b.Elem().Type() {
			return false
		}
		return sameValue(a.Elem(), b.Elem(), depth)
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameValue(a.Field(i), b.Field(i), depth) {
				return false
			}
		}
		return true
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameValue(a.Index(i), b.Index(i), depth) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !sameValue(it.Value(), bv, depth) {
				return false
			}
		}
		return true
	case reflect.Chan, reflect.UnsafePointer:
		return a.Pointer() == b.Pointer()
	}
	return a.Equal(b) // booleans, numbers, strings
}

// deepCopy sets dst, addressable and zero, to a copy of src that shares
// with it nothing sameValue compares by value: slices, maps and pointers
// to plain data are copied; funcs, channels and pointers to stateful
// objects are shared.
func deepCopy(dst, src reflect.Value, depth int) {
	dst, src = readable(dst), readable(src)
	if depth > maxConfigDepth {
		dst.Set(src)
		return
	}
	depth++
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() || opaque(src.Type().Elem()) {
			dst.Set(src)
			return
		}
		p := reflect.New(src.Type().Elem())
		deepCopy(p.Elem(), src.Elem(), depth)
		dst.Set(p)
	case reflect.Interface:
		if src.IsNil() {
			return
		}
		e := reflect.New(src.Elem().Type()).Elem()
		deepCopy(e, src.Elem(), depth)
		dst.Set(e)
	case reflect.Struct:
		for i := range src.NumField() {
			deepCopy(dst.Field(i), src.Field(i), depth)
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			deepCopy(s.Index(i), src.Index(i), depth)
		}
		dst.Set(s)
	case reflect.Array:
		for i := range src.Len() {
			deepCopy(dst.Index(i), src.Index(i), depth)
		}
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		for it := src.MapRange(); it.Next(); {
			v := reflect.New(src.Type().Elem()).Elem()
			deepCopy(v, it.Value(), depth)
			m.SetMapIndex(it.Key(), v)
		}
		dst.Set(m)
	default:
		dst.Set(src)
	}
}

// readable returns v as an addressable value that reflect lets the
// comparison read and set through unexported fields too: funcs there are
// compared by identity like any others. A value that is not addressable
// (a map element, an interface's dynamic value) is copied.
func readable(v reflect.Value) reflect.Value {
	if !v.CanAddr() {
		c := reflect.New(v.Type()).Elem()
		c.Set(v) // v comes from a readable value, so it is not read-only
		return c
	}
	return reflect.NewAt(v.Type(), v.Addr().UnsafePointer()).Elem()
}

// funcIdentity returns the func value f, addressable, as a pointer: Go
// represents a func value as a pointer to its closure (the code pointer
// and the captured variables), which is the same for every use of one
// top-level function and new for each evaluation of a func literal that
// captures variables. reflect.Value.Pointer returns the code pointer
// instead, which closures of one literal share whatever they captured.
func funcIdentity(f reflect.Value) unsafe.Pointer {
	return *(*unsafe.Pointer)(f.Addr().UnsafePointer())
}

// opaque reports whether t holds state of its own, which configurations
// share by pointer and compare by identity: a struct with an unexported
// field, directly or in a struct or array field. A checker's connection
// pool or a resolver's in-flight lookups are not configuration, and
// reading them while their owner writes them would race.
func opaque(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); !f.IsExported() || opaque(f.Type) {
				return true
			}
		}
	case reflect.Array:
		return opaque(t.Elem())
	}
	return false
}

// RemoveCluster removes a cluster; routes that target it answer 503 (NC).
func (g *Gateway) RemoveCluster(name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.clusters.Load().byName[name] == nil {
		return fmt.Errorf("cluster %q: not found", name)
	}
	g.removeClusterLocked(name)
	return nil
}

func (g *Gateway) removeClusterLocked(name string) {
	cur := g.clusters.Load()
	next := &clusterSet{byName: make(map[string]*liveCluster, len(cur.byName))}
	for k, v := range cur.byName {
		if k != name {
			next.byName[k] = v
		}
	}
	g.clusters.Store(next)
	if old := cur.byName[name]; old != nil {
		g.metrics.cmRemoved.Inc()
		g.retire(old.c)
	}
	delete(g.versions, "cluster:"+name)
}

// UpdateEndpoints replaces a cluster's endpoints in place (EDS).
func (g *Gateway) UpdateEndpoints(clusterName string, eps []cluster.Endpoint) error {
	lc := g.clusters.Load().byName[clusterName]
	if lc == nil {
		return fmt.Errorf("cluster %q: not found", clusterName)
	}
	if err := lc.c.UpdateEndpoints(eps); err != nil {
		return fmt.Errorf("cluster %q: %w", clusterName, err)
	}
	g.metrics.cmUpdated.Inc()
	g.mu.Lock()
	g.bump("cluster:" + clusterName)
	g.mu.Unlock()
	return nil
}

// UpsertListener adds a listener, or updates one in place: new connections
// use the new filter chains, existing connections finish on theirs. A new
// address replaces the listener (the old one drains).
func (g *Gateway) UpsertListener(cfg listener.Config) error {
	if err := g.checkListener(&cfg); err != nil {
		return fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := precompileChains(&cfg, g.routes); err != nil {
		return fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	if err := g.checkBindLocked(&cfg); err != nil {
		return fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	return g.upsertListenerLocked(cfg)
}

// RemoveListener stops a listener and drains its connections.
func (g *Gateway) RemoveListener(name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.listeners[name]; !ok {
		return fmt.Errorf("listener %q: not found", name)
	}
	g.removeListenerLocked(name)
	return nil
}

func (g *Gateway) removeListenerLocked(name string) {
	ll := g.listeners[name]
	g.metrics.lmRemoved.Inc()
	delete(g.listeners, name)
	delete(g.versions, "listener:"+name)
	for _, h := range ll.hcms {
		delete(g.hcms, h)
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ll.l.Shutdown(ctx)
	}()
}

// checkListener validates what the gateway adds to listener validation.
func (g *Gateway) checkListener(cfg *listener.Config) error {
	chains := slices.Clone(cfg.FilterChains)
	if cfg.DefaultFilterChain != nil {
		chains = append(chains, *cfg.DefaultFilterChain)
	}
	for i, fc := range chains {
		if fc.TCP != nil {
			if err := checkTCPProxy(fc.TCP); err != nil {
				return fmt.Errorf("filter_chains[%d].tcp.%w", i, err)
			}
		}
		if fc.HTTP == nil {
			continue
		}
		if fc.HTTP.Handler != nil {
			return fmt.Errorf("filter_chains[%d].http.handler: set by the gateway, must be nil", i)
		}
		if _, err := filter.NewChain(fc.HTTP.Filters...); err != nil {
			return fmt.Errorf("filter_chains[%d].http.filters: %w", i, err)
		}
	}
	return nil
}

func (g *Gateway) upsertListenerLocked(cfg listener.Config) error {
	old := g.listeners[cfg.Name]
	ll := &liveListener{cfg: cfg, hcms: map[string]*hcm{}}
	// Give every HTTP filter chain its connection manager, reusing the
	// live one for a chain of the same name so route updates keep reaching
	// connections accepted before this update.
	obs := g.metrics.connObserver(cfg.Address)
	bind := func(fc *listener.FilterChain, name string) error {
		if fc.TCP != nil {
			fc.TCP = g.bindTCPProxy(fc.TCP)
		}
		if fc.HTTP == nil {
			return nil
		}
		h := (*hcm)(nil)
		if old != nil {
			h = old.hcms[name]
		}
		if h == nil {
			h = &hcm{g: g}
		}
		if err := h.configure(fc.HTTP); err != nil {
			return err
		}
		ll.hcms[name] = h
		obs.bind(name, fc, h.stats)
		fcHTTP := *fc.HTTP
		fcHTTP.Handler = h
		fc.HTTP = &fcHTTP
		return nil
	}
	cfg.FilterChains = slices.Clone(cfg.FilterChains)
	for i := range cfg.FilterChains {
		name := cfg.FilterChains[i].Name
		if name == "" {
			name = fmt.Sprintf("filter_chains[%d]", i)
		}
		if err := bind(&cfg.FilterChains[i], name); err != nil {
			return fmt.Errorf("listener %q: filter_chains[%d]: %w", cfg.Name, i, err)
		}
	}
	if cfg.DefaultFilterChain != nil {
		d := *cfg.DefaultFilterChain
		name := d.Name
		if name == "" {
			name = "default_filter_chain"
		}
		if err := bind(&d, name); err != nil {
			return fmt.Errorf("listener %q: default_filter_chain: %w", cfg.Name, err)
		}
		cfg.DefaultFilterChain = &d
	}
	cfg.Observer = obs
	if old != nil && old.cfg.Address == cfg.Address {
		if err := old.l.Update(cfg); err != nil {
			return fmt.Errorf("listener %q: %w", cfg.Name, err)
		}
		ll.l = old.l
	} else {
		l, err := listener.New(cfg)
		if err != nil {
			return fmt.Errorf("listener %q: %w", cfg.Name, err)
		}
		ll.l = l
		if old != nil {
			g.removeListenerLocked(cfg.Name)
		}
		if g.serving.Load() {
			g.startListener(ll)
		}
	}
	if old != nil {
		for _, h := range old.hcms {
			delete(g.hcms, h)
		}
	}
	for _, h := range ll.hcms {
		g.hcms[h] = struct{}{}
		if err := h.refresh(); err != nil {
			return err
		}
	}
	g.listeners[cfg.Name] = ll
	if old != nil {
		g.metrics.lmModified.Inc()
	} else {
		g.metrics.lmAdded.Inc()
	}
	g.bump("listener:" + cfg.Name)
	return nil
}

// refreshHCMsLocked recompiles the per-route chains of every connection
// manager using route configuration name ("" = all).
func (g *Gateway) refreshHCMsLocked(name string) error {
	for h := range g.hcms {
		if name != "" && h.routeName() != name {
			continue
		}
		if err := h.refresh(); err != nil {
			return err
		}
	}
	return nil
}

// errNoRoute answers requests no route matches.
var errNoRoute = &filter.ReplyError{Status: http.StatusNotFound, Flags: filter.FlagNoRouteFound, Details: "route_not_found"}

func discardBody(b io.ReadCloser) {
	if b != nil {
		b.Close()
	}
}
