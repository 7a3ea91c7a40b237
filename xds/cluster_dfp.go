package xds

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	dfpcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/dynamic_forward_proxy/v3"

	"github.com/porticoproxy/portico/cluster"
)

// dnsCachesMu guards every Translator's dnsCaches map, which it also
// creates on first use. A package-level lock keeps Translator free of
// lock values, so that copying one stays legal; it is taken only while
// translating dynamic forward proxy clusters.
var dnsCachesMu sync.Mutex

// sharedDNSCache is a DNS cache named by dns_cache_config.name.
type sharedDNSCache struct {
	cfg   cluster.DNSCacheConfig
	cache *cluster.DNSCache
}

// dnsCacheConfig translates a dynamic forward proxy cluster's
// dns_cache_config and attaches the Translator's cache of that name.
// Envoy's defaults (dns_refresh_rate 60 s, dns_min_refresh_rate 5 s,
// host_ttl 5 min, max_hosts 1024, lookup family AUTO) are
// cluster.DNSCacheConfig's.
func (x *clusterTx) dnsCacheConfig(cfg *cluster.Config, dc *dfpcommonv3.DnsCacheConfig, path string) error {
	cc := cluster.DNSCacheConfig{Resolver: x.t.Resolver}
	var err error
	if cc.LookupFamily, err = lookupFamily(dc.GetDnsLookupFamily(), path+".dns_lookup_family"); err != nil {
		return err
	}
	if cc.RefreshRate, err = duration(dc.GetDnsRefreshRate(), path+".dns_refresh_rate"); err != nil {
		return err
	}
	if cc.MinRefreshRate, err = duration(dc.GetDnsMinRefreshRate(), path+".dns_min_refresh_rate"); err != nil {
		return err
	}
	if cc.HostTTL, err = duration(dc.GetHostTtl(), path+".host_ttl"); err != nil {
		return err
	}
	if r := dc.GetDnsFailureRefreshRate(); r != nil {
		if cc.FailureRefreshRate, err = refreshRate(r.GetBaseInterval(), r.GetMaxInterval(), path+".dns_failure_refresh_rate"); err != nil {
			return err
		}
	}
	if m := dc.GetMaxHosts(); m != nil {
		n, err := explicitCount(m, path+".max_hosts")
		if err != nil {
			return err
		}
		cc.MaxHosts = int(n)
	}
	if err := cc.Validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	cfg.DNSCache, err = x.t.dnsCache(dc.GetName(), cc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// dnsCache returns the cache named name, creating it with cfg. As in
// Envoy, every cluster naming a cache must configure it the same way.
func (t *Translator) dnsCache(name string, cfg cluster.DNSCacheConfig) (*cluster.DNSCache, error) {
	dnsCachesMu.Lock()
	defer dnsCachesMu.Unlock()
	if e, ok := t.dnsCaches[name]; ok {
		a, b := e.cfg, cfg
		// Resolvers need not be comparable; both are t.Resolver.
		a.Resolver, b.Resolver = nil, nil
		if a != b {
			return nil, fmt.Errorf("cache %q: settings differ from those of the clusters already using it", name)
		}
		return e.cache, nil
	}
	cache, err := cluster.NewDNSCache(cfg)
	if err != nil {
		return nil, err
	}
	if t.dnsCaches == nil {
		t.dnsCaches = make(map[string]*sharedDNSCache)
	}
	t.dnsCaches[name] = &sharedDNSCache{cfg: cfg, cache: cache}
	return cache, nil
}

// CloseDNSCaches closes the DNS caches that translated dynamic forward
// proxy clusters share (see Cluster) and forgets them; clusters using
// them fail to resolve new hosts afterwards, so call it once those
// clusters are closed. A later translation creates new caches.
func (t *Translator) CloseDNSCaches() error {
	dnsCachesMu.Lock()
	caches := t.dnsCaches
	t.dnsCaches = nil
	dnsCachesMu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(caches)) {
		if err := caches[name].cache.Close(); err != nil {
			errs = append(errs, fmt.Errorf("dns cache %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
