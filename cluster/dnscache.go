package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// DNS cache defaults, Envoy's documented DnsCacheConfig values.
const (
	// DefaultDNSCacheRefreshRate is Envoy's dns_refresh_rate default for
	// the DNS cache: how often a host whose TTL is unknown is re-resolved.
	DefaultDNSCacheRefreshRate = 60 * time.Second
	// DefaultDNSCacheMinRefreshRate is Envoy's dns_min_refresh_rate
	// default: the floor under a TTL-driven refresh.
	DefaultDNSCacheMinRefreshRate = 5 * time.Second
	// DefaultDNSCacheHostTTL is Envoy's host_ttl default: a host unused
	// this long is removed.
	DefaultDNSCacheHostTTL = 5 * time.Minute
	// DefaultDNSCacheMaxHosts is Envoy's max_hosts default.
	DefaultDNSCacheMaxHosts = 1024
)

// ErrDNSCacheOverflow is the error of a lookup that would add a host to
// a full DNSCache. A DynamicForwardProxy cluster reports it with Kind
// Overflow.
var ErrDNSCacheOverflow = errors.New("dns cache overflow")

// errDNSCacheClosed is the error of lookups after Close.
var errDNSCacheClosed = errors.New("dns cache closed")

// DNSCacheConfig configures a DNSCache (Envoy's DnsCacheConfig). Zero
// values mean the documented defaults.
type DNSCacheConfig struct {
	// Resolver resolves host names; default net.DefaultResolver.
	Resolver Resolver
	// LookupFamily selects the address families; default DNSAuto.
	LookupFamily DNSLookupFamily
	// RefreshRate is how often a host is re-resolved when its answer's TTL
	// is unknown; default DefaultDNSCacheRefreshRate (60 s). A known TTL
	// sets the refresh instead, but never below MinRefreshRate.
	RefreshRate time.Duration
	// MinRefreshRate is the floor under TTL-driven refreshes; default
	// DefaultDNSCacheMinRefreshRate (5 s).
	MinRefreshRate time.Duration
	// FailureRefreshRate is the backoff after a failed resolution; the
	// zero value retries at RefreshRate, as Envoy does.
	FailureRefreshRate RefreshRate
	// HostTTL removes a host no request used for this long; default
	// DefaultDNSCacheHostTTL (5 min). Removal is checked at each refresh.
	HostTTL time.Duration
	// MaxHosts bounds the number of hosts; default
	// DefaultDNSCacheMaxHosts (1024).
	MaxHosts int
}

// Validate reports every problem with c, each naming its field path.
func (c *DNSCacheConfig) Validate() error {
	var errs []error
	if c.LookupFamily < DNSAuto || c.LookupFamily > DNSAll {
		errs = append(errs, fmt.Errorf("dns_lookup_family: unknown %v", c.LookupFamily))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"dns_refresh_rate", c.RefreshRate}, {"dns_min_refresh_rate", c.MinRefreshRate}, {"host_ttl", c.HostTTL}} {
		if f.d < 0 || f.d > 0 && f.d < time.Millisecond {
			errs = append(errs, fmt.Errorf("%s: %v is less than 1ms", f.name, f.d))
		}
	}
	errs = c.FailureRefreshRate.appendErrors(errs, "dns_failure_refresh_rate")
	if c.MaxHosts < 0 {
		errs = append(errs, fmt.Errorf("max_hosts: negative %d", c.MaxHosts))
	}
	return errors.Join(errs...)
}

func (c DNSCacheConfig) withDefaults() DNSCacheConfig {
	if c.RefreshRate == 0 {
		c.RefreshRate = DefaultDNSCacheRefreshRate
	}
	if c.MinRefreshRate == 0 {
		c.MinRefreshRate = DefaultDNSCacheMinRefreshRate
	}
	if c.HostTTL == 0 {
		c.HostTTL = DefaultDNSCacheHostTTL
	}
	if c.MaxHosts == 0 {
		c.MaxHosts = DefaultDNSCacheMaxHosts
	}
	c.FailureRefreshRate = c.FailureRefreshRate.withDefaults(c.RefreshRate)
	return c
}

// DNSCache resolves and caches host names for DynamicForwardProxy
// clusters; several clusters may share one (Envoy's DNS cache). A host
// enters on its first lookup, is re-resolved in the background from then
// on, keeps its last good addresses when a refresh fails, and leaves
// after HostTTL without use. It is safe for concurrent use. Its
// goroutines run until Close.
type DNSCache struct {
	cfg    DNSCacheConfig
	lookup *dnsLookup
	ctx    context.Context // done at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	hosts map[string]*dnsCacheEntry
}

// dnsCacheEntry is one host. Fields below ready are guarded by the
// cache's mutex.
type dnsCacheEntry struct {
	host  string
	ready chan struct{} // closed after the first resolution

	addrs    []netip.Addr // never modified once set, only replaced
	err      error        // the last resolution's error when addrs is nil
	lastUsed time.Time
}

// NewDNSCache validates cfg and returns an empty cache.
func NewDNSCache(cfg DNSCacheConfig) (*DNSCache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dns cache: %w", err)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &DNSCache{
		cfg:    cfg,
		lookup: newDNSLookup(cfg.Resolver, cfg.LookupFamily, true),
		ctx:    ctx,
		cancel: cancel,
		hosts:  make(map[string]*dnsCacheEntry),
	}, nil
}

// Resolve returns host's addresses, adding host to the cache and waiting
// for its first resolution (bounded by ctx) when it is new. An IP address
// resolves to itself without entering the cache. A new host that would
// exceed MaxHosts fails with ErrDNSCacheOverflow. The result is the
// caller's.
func (c *DNSCache) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return nil, errDNSCacheClosed
	}
	e := c.hosts[host]
	if e == nil {
		if len(c.hosts) >= c.cfg.MaxHosts {
			c.mu.Unlock()
			return nil, ErrDNSCacheOverflow
		}
		e = &dnsCacheEntry{host: host, ready: make(chan struct{})}
		c.hosts[host] = e
		c.wg.Go(func() { c.run(e) })
	}
	e.lastUsed = time.Now()
	c.mu.Unlock()

	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, errDNSCacheClosed
	}
	c.mu.Lock()
	addrs, err := e.addrs, e.err
	c.mu.Unlock()
	if len(addrs) == 0 {
		return nil, err
	}
	return slices.Clone(addrs), nil
}

// touch marks host used now, if it is cached.
func (c *DNSCache) touch(host string) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	c.mu.Lock()
	if e := c.hosts[host]; e != nil {
		e.lastUsed = time.Now()
	}
	c.mu.Unlock()
}

// Hosts returns the cached host names, sorted.
func (c *DNSCache) Hosts() []string {
	c.mu.Lock()
	hosts := make([]string, 0, len(c.hosts))
	for h := range c.hosts {
		hosts = append(hosts, h)
	}
	c.mu.Unlock()
	slices.Sort(hosts)
	return hosts
}

// Close stops the cache's goroutines and waits for them; lookups waiting
// for a first resolution and later ones fail. It is idempotent and
// returns nil.
func (c *DNSCache) Close() error {
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// run resolves e until the cache closes or e goes unused for HostTTL.
func (c *DNSCache) run(e *dnsCacheEntry) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	first := true
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-timer.C:
		}
		if !first {
			c.mu.Lock()
			if time.Since(e.lastUsed) > c.cfg.HostTTL {
				delete(c.hosts, e.host)
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
		}
		addrs, ttl, err := c.lookup.lookup(c.ctx, e.host)
		if c.ctx.Err() != nil {
			return
		}
		wait := c.cfg.RefreshRate
		c.mu.Lock()
		switch {
		case err == nil:
			e.addrs, e.err = addrs, nil
			failures = 0
			if ttl > 0 {
				wait = max(ttl, c.cfg.MinRefreshRate)
			}
		case notFound(err):
			e.addrs, e.err = nil, err
			failures = 0
		default:
			if e.addrs == nil {
				e.err = err
			}
			failures++
			wait = c.cfg.FailureRefreshRate.backoff(failures)
		}
		c.mu.Unlock()
		if first {
			first = false
			close(e.ready)
		}
		timer.Reset(wait)
	}
}
