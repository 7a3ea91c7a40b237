package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/lb"
)

// Discovery defaults, Envoy's documented values.
const (
	// DefaultDNSRefreshRate is Envoy's dns_refresh_rate default.
	DefaultDNSRefreshRate = 5 * time.Second
	// DefaultCleanupInterval is Envoy's cleanup_interval default: how
	// often an OriginalDst cluster removes hosts no request used.
	DefaultCleanupInterval = 5 * time.Second
	// DefaultOriginalDstHeader is Envoy's header naming an OriginalDst
	// request's destination when OriginalDstConfig.UseHTTPHeader is set.
	DefaultOriginalDstHeader = "x-envoy-original-dst-host"
)

// Type is a cluster's discovery source: where its endpoints come from
// (Envoy's cluster type).
type Type int

const (
	// Static clusters serve Config.Endpoints, replaced only through
	// Cluster.UpdateEndpoints. Host names in them are resolved by the
	// dialer at connect time.
	Static Type = iota
	// StrictDNS clusters resolve the host of every configured endpoint
	// and serve every address found, each inheriting its endpoint's
	// weight, priority, locality, health and metadata. Names are
	// re-resolved every DNSRefreshRate (or TTL, with RespectDNSTTL); a
	// failed resolution keeps the name's last addresses and retries with
	// DNSFailureRefreshRate's backoff, while an answer that the name does
	// not exist removes them. TLS connections to a resolved address send
	// the name as SNI, and AutoHostRewrite writes the name to Host.
	StrictDNS
	// LogicalDNS clusters have exactly one configured endpoint and serve
	// one endpoint at the first address its host resolves to, re-resolved
	// like StrictDNS. When the address changes, new connections go to the
	// new one; requests in flight finish on theirs. An empty answer keeps
	// the last address, as in Envoy.
	LogicalDNS
	// EDS clusters take their endpoints from an outside source (xDS)
	// through Cluster.UpdateEndpoints; Config.Endpoints, if any, is the
	// initial set.
	EDS
	// OriginalDst clusters send each request to its downstream
	// connection's original destination, set by the listener with
	// WithOriginalDestination, or with OriginalDstConfig.UseHTTPHeader to
	// the address in a request header. Hosts are created on first use and
	// removed after an OriginalDstConfig.CleanupInterval in which no
	// request used them. A request without a usable destination fails
	// with Kind NoHealthyUpstream. The cluster provides its own load
	// balancer: Config.Endpoints and Config.Balancer must be unset.
	OriginalDst
	// DynamicForwardProxy clusters send each request to its authority
	// (the Host, port 443 with TLS or 80 without by default), resolved
	// through Config.DNSCache at connect time; connections go to the
	// resolved address while SNI and the Host header stay the name. A
	// full cache fails new hosts with Kind Overflow ("dns cache
	// overflow"); a failed resolution is a connect failure. Like
	// OriginalDst it provides its own load balancer.
	DynamicForwardProxy
)

// String returns the type name, e.g. "StrictDNS".
func (t Type) String() string {
	switch t {
	case Static:
		return "Static"
	case StrictDNS:
		return "StrictDNS"
	case LogicalDNS:
		return "LogicalDNS"
	case EDS:
		return "EDS"
	case OriginalDst:
		return "OriginalDst"
	case DynamicForwardProxy:
		return "DynamicForwardProxy"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// providesBalancer reports whether clusters of type t pick endpoints
// themselves (Envoy's CLUSTER_PROVIDED load balancing).
func (t Type) providesBalancer() bool { return t == OriginalDst || t == DynamicForwardProxy }

// resolvesDNS reports whether t resolves its configured endpoints.
func (t Type) resolvesDNS() bool { return t == StrictDNS || t == LogicalDNS }

// Resolver resolves host names for DNS discovery and the DNS cache.
// network is "ip", "ip4" or "ip6". A *net.Resolver satisfies it.
// Implementations must be safe for concurrent use and return when ctx
// is done.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// LookupNetIP implements Resolver.
func (f ResolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// TTLResolver is an optional Resolver capability: resolution that also
// reports the answer's time to live, which RespectDNSTTL and the DNS
// cache use. A zero TTL means unknown. Without it, a *net.Resolver's TTLs
// are read from the DNS responses of Go's built-in client.
type TTLResolver interface {
	LookupNetIPTTL(ctx context.Context, network, host string) ([]netip.Addr, time.Duration, error)
}

var _ Resolver = (*net.Resolver)(nil)

// DNSLookupFamily selects the address families a name resolves to
// (Envoy's DnsLookupFamily).
type DNSLookupFamily int

const (
	// DNSAuto looks up IPv6 addresses and falls back to IPv4 when there
	// are none. It is Envoy's default.
	DNSAuto DNSLookupFamily = iota
	// DNSV4Only looks up IPv4 addresses only.
	DNSV4Only
	// DNSV6Only looks up IPv6 addresses only.
	DNSV6Only
	// DNSV4Preferred looks up IPv4 addresses and falls back to IPv6 when
	// there are none.
	DNSV4Preferred
	// DNSAll looks up both families and uses every address.
	DNSAll
)

// String returns Envoy's name for f, e.g. "V4_ONLY".
func (f DNSLookupFamily) String() string {
	switch f {
	case DNSAuto:
		return "AUTO"
	case DNSV4Only:
		return "V4_ONLY"
	case DNSV6Only:
		return "V6_ONLY"
	case DNSV4Preferred:
		return "V4_PREFERRED"
	case DNSAll:
		return "ALL"
	}
	return "DNSLookupFamily(" + strconv.Itoa(int(f)) + ")"
}

// RefreshRate is a jittered exponential backoff between BaseInterval
// and MaxInterval (Envoy's Cluster.RefreshRate). The zero value means
// the owner's plain refresh rate, without backoff.
type RefreshRate struct {
	// BaseInterval is the first retry's upper bound.
	BaseInterval time.Duration
	// MaxInterval caps the backoff; default ten times BaseInterval, as in
	// Envoy.
	MaxInterval time.Duration
}

func (r RefreshRate) withDefaults(fallback time.Duration) RefreshRate {
	if r.BaseInterval == 0 {
		return RefreshRate{BaseInterval: fallback, MaxInterval: fallback}
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = 10 * r.BaseInterval
	}
	return r
}

func (r RefreshRate) appendErrors(errs []error, path string) []error {
	if r.BaseInterval < 0 || r.BaseInterval > 0 && r.BaseInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("%s.base_interval: %v is less than 1ms", path, r.BaseInterval))
	}
	if r.MaxInterval < 0 || r.MaxInterval > 0 && r.MaxInterval < r.BaseInterval {
		errs = append(errs, fmt.Errorf("%s.max_interval: %v is less than base_interval", path, r.MaxInterval))
	}
	if r.BaseInterval == 0 && r.MaxInterval != 0 {
		errs = append(errs, fmt.Errorf("%s.max_interval: set without base_interval", path))
	}
	return errs
}

// appendDiscoveryErrors checks the fields of the discovery sources.
func (c *Config) appendDiscoveryErrors(errs []error) []error {
	switch c.Type {
	case Static, EDS:
	case StrictDNS:
		if len(c.Endpoints) == 0 {
			errs = append(errs, errors.New("endpoints: type StrictDNS needs at least one endpoint"))
		}
	case LogicalDNS:
		if len(c.Endpoints) != 1 {
			errs = append(errs, fmt.Errorf("endpoints: type LogicalDNS needs exactly one endpoint, got %d", len(c.Endpoints)))
		}
	case OriginalDst, DynamicForwardProxy:
		if len(c.Endpoints) != 0 {
			errs = append(errs, fmt.Errorf("endpoints: must be empty for type %v", c.Type))
		}
		if c.Balancer != nil {
			errs = append(errs, fmt.Errorf("balancer: must be unset for type %v, which picks endpoints itself", c.Type))
		}
	default:
		errs = append(errs, fmt.Errorf("type: unknown %v", c.Type))
	}
	if c.DNSLookupFamily < DNSAuto || c.DNSLookupFamily > DNSAll {
		errs = append(errs, fmt.Errorf("dns_lookup_family: unknown %v", c.DNSLookupFamily))
	}
	if r := c.DNSRefreshRate; r < 0 || r > 0 && r < time.Millisecond {
		errs = append(errs, fmt.Errorf("dns_refresh_rate: %v is less than 1ms", r))
	}
	errs = c.DNSFailureRefreshRate.appendErrors(errs, "dns_failure_refresh_rate")
	if c.Type.resolvesDNS() {
		for i := range c.Endpoints {
			if host, _, err := net.SplitHostPort(c.Endpoints[i].Address); err == nil && host != "" && !validHostName(host) {
				errs = append(errs, fmt.Errorf("endpoints[%d].address: %q is neither an IP address nor a DNS name", i, host))
			}
		}
	}
	errs = c.OriginalDst.appendErrors(errs)
	return errs
}

// discoveryDefaults sets the defaults of the discovery fields c.Type
// uses; the others stay as given.
func (c *Config) discoveryDefaults() {
	if c.Type.resolvesDNS() && c.DNSRefreshRate == 0 {
		c.DNSRefreshRate = DefaultDNSRefreshRate
	}
	if c.Type == OriginalDst {
		c.OriginalDst = c.OriginalDst.withDefaults()
	}
}

// validHostName reports whether s is an IP address or a plausible DNS
// name: dot-separated labels of letters, digits, '-' and '_', at most 63
// bytes each and 253 in all, with an optional final dot.
func validHostName(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if s == "" || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

// discovery is a cluster's discovery-source state. The goroutines it
// starts (DNS resolution, host cleanup) belong to the cluster and stop
// in Close.
type discovery struct {
	// hostnames maps the address of an endpoint found by DNS to the host
	// name it came from (without port), for SNI and AutoHostRewrite; nil
	// when there are none. Replaced whole, read lock-free.
	hostnames atomic.Pointer[map[string]string]
	// targets are the configured endpoints of a DNS cluster, owned.
	targets []Endpoint

	dns  *dnsDiscovery
	orig *origDstBalancer
	dfp  *dfpBalancer
	// ownCache is the DNS cache a DynamicForwardProxy cluster made for
	// itself because Config.DNSCache was nil; Close closes it.
	ownCache *DNSCache

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// initDiscovery sets up the discovery source before the first endpoint
// update: it returns the balancer to use and the initial endpoint set.
func (c *Cluster) initDiscovery(eps []Endpoint) (lb.Balancer, []Endpoint, error) {
	d := &c.disc
	switch c.cfg.Type {
	case StrictDNS, LogicalDNS:
		d.targets = eps
		d.dns = newDNSDiscovery(c)
		return c.cfg.Balancer(), nil, nil
	case OriginalDst:
		d.orig = newOrigDstBalancer(c)
		return d.orig, nil, nil
	case DynamicForwardProxy:
		cache := c.cfg.DNSCache
		if cache == nil {
			var err error
			if cache, err = NewDNSCache(DNSCacheConfig{}); err != nil {
				return nil, nil, err
			}
			d.ownCache = cache
		}
		d.dfp = newDFPBalancer(c, cache)
		return d.dfp, nil, nil
	}
	return c.cfg.Balancer(), eps, nil
}

// startDiscovery starts the discovery source's goroutines.
func (c *Cluster) startDiscovery() {
	d := &c.disc
	if d.dns == nil && d.orig == nil && d.dfp == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	switch {
	case d.dns != nil:
		d.dns.start(ctx, &d.wg)
	case d.orig != nil:
		d.wg.Go(func() { c.sweepHosts(ctx, d.orig.cleanup, d.orig.sweep) })
	case d.dfp != nil:
		d.wg.Go(func() { c.sweepHosts(ctx, d.dfp.sweepEvery, d.dfp.sweep) })
	}
}

// stopDiscovery stops the discovery goroutines and waits for them. It is
// idempotent.
func (c *Cluster) stopDiscovery() {
	d := &c.disc
	d.once.Do(func() {
		if d.cancel != nil {
			d.cancel()
		}
		d.wg.Wait()
		if d.ownCache != nil {
			d.ownCache.Close()
		}
	})
}

// configEndpoints returns the endpoints Config reports: the configured
// names of a DNS cluster, the current set otherwise.
func (c *Cluster) configEndpoints() []Endpoint {
	if c.cfg.Type.resolvesDNS() {
		return cloneEndpoints(c.disc.targets)
	}
	return c.Endpoints()
}

// rewriteHost returns the Host to write for AutoHostRewrite to addr: the name
// a DNS-discovered address came from, else addr itself.
func (c *Cluster) rewriteHost(addr string) string {
	if m := c.disc.hostnames.Load(); m != nil {
		if h, ok := (*m)[addr]; ok {
			return h
		}
	}
	return addr
}

// serverName returns the SNI for a connection to addr: the name a
// DNS-discovered address came from, else addr's host.
func (c *Cluster) serverName(addr string) (string, error) {
	if m := c.disc.hostnames.Load(); m != nil {
		if h, ok := (*m)[addr]; ok {
			return h, nil
		}
	}
	host, _, err := net.SplitHostPort(addr)
	return host, err
}

// sweepHosts calls sweep every interval until ctx is done.
func (c *Cluster) sweepHosts(ctx context.Context, every time.Duration, sweep func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sweep()
		}
	}
}

// forgetEndpoint closes the synchronous pool's idle connections to addr
// and drops its stack, for hosts a discovery source removed.
func (c *Cluster) forgetEndpoint(addr string) {
	if c.h1 == nil {
		return
	}
	if e, ok := c.h1.endpoints.LoadAndDelete(addr); ok {
		e.(*h1Endpoint).drain(true)
	}
}

// tableHost is a host created on demand by OriginalDst and
// DynamicForwardProxy clusters. Its Endpoint is handed out by pointer
// and never changes.
type tableHost struct {
	ep   lb.Endpoint
	name string // DynamicForwardProxy: the host name to resolve
	used atomic.Bool
	idle int // sweeps in a row without use; owned by the sweeper
}

// touch marks h used, writing only when it was not, so that picks of a
// busy host do not bounce its cache line between cores.
func (h *tableHost) touch() {
	if !h.used.Load() {
		h.used.Store(true)
	}
}

// hostTable is a copy-on-write map of on-demand hosts: lookups are a
// lock-free atomic load, additions and sweeps copy the map under a mutex.
// Adding is O(hosts), which suits the rate at which new destinations
// appear.
type hostTable[K comparable] struct {
	m   atomic.Pointer[map[K]*tableHost]
	mu  sync.Mutex // serializes writers
	max int        // 0 for no bound
}

func (t *hostTable[K]) get(k K) *tableHost {
	if m := t.m.Load(); m != nil {
		return (*m)[k]
	}
	return nil
}

// add returns the host for k, creating it with mk; nil when the table is
// full.
func (t *hostTable[K]) add(k K, mk func() *tableHost) *tableHost {
	t.mu.Lock()
	defer t.mu.Unlock()
	var old map[K]*tableHost
	if p := t.m.Load(); p != nil {
		old = *p
	}
	if h := old[k]; h != nil {
		return h
	}
	if t.max > 0 && len(old) >= t.max {
		return nil
	}
	m := make(map[K]*tableHost, len(old)+1)
	for kk, h := range old {
		m[kk] = h
	}
	h := mk()
	m[k] = h
	t.m.Store(&m)
	return h
}

// sweep clears the used marks, removes hosts unused for maxIdle sweeps in
// a row and returns the removed hosts and those used since the last sweep.
func (t *hostTable[K]) sweep(maxIdle int) (removed, used []*tableHost) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.m.Load()
	if p == nil {
		return nil, nil
	}
	var keep map[K]*tableHost
	for k, h := range *p {
		if h.used.Swap(false) {
			h.idle = 0
			used = append(used, h)
			continue
		}
		h.idle++
		if h.idle < maxIdle {
			continue
		}
		if keep == nil {
			keep = make(map[K]*tableHost, len(*p))
			for kk, hh := range *p {
				keep[kk] = hh
			}
		}
		delete(keep, k)
		removed = append(removed, h)
	}
	if keep != nil {
		t.m.Store(&keep)
	}
	return removed, used
}

func (t *hostTable[K]) len() int {
	if p := t.m.Load(); p != nil {
		return len(*p)
	}
	return 0
}
