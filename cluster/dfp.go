package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/porticoproxy/portico/lb"
)

var (
	errNoAuthority  = fmt.Errorf("%w: request has no authority", lb.ErrNoEndpoint)
	errBadAuthority = fmt.Errorf("%w: request authority is not a host name", lb.ErrNoEndpoint)
)

// dfpBalancer is a DynamicForwardProxy cluster's load balancer and
// picker in one: a request's endpoint is its authority. Endpoints are
// kept per authority as written, so a pick of a known one is a lock-free
// map read; the DNS cache is consulted only when a connection is made.
type dfpBalancer struct {
	c           *Cluster
	cache       *DNSCache
	defaultPort string
	hosts       hostTable[string]
	sweepEvery  time.Duration
}

var (
	_ lb.Balancer = (*dfpBalancer)(nil)
	_ lb.Picker   = (*dfpBalancer)(nil)
)

func newDFPBalancer(c *Cluster, cache *DNSCache) *dfpBalancer {
	b := &dfpBalancer{c: c, cache: cache, defaultPort: "80", sweepEvery: cache.cfg.HostTTL / 2}
	if c.cfg.TLS != nil {
		b.defaultPort = "443"
	}
	b.hosts.max = cache.cfg.MaxHosts
	return b
}

// Update ignores endpoint updates: requests define the endpoints.
func (b *dfpBalancer) Update([]lb.Endpoint) {}

// Picker returns b, which never changes.
func (b *dfpBalancer) Picker() lb.Picker { return b }

// Pick returns the endpoint of the request's authority.
func (b *dfpBalancer) Pick(info lb.PickInfo) (lb.PickResult, error) {
	req := info.Request
	if req == nil {
		return lb.PickResult{}, errNoAuthority
	}
	authority := req.Host
	if authority == "" && req.URL != nil {
		authority = req.URL.Host
	}
	if authority == "" {
		return lb.PickResult{}, errNoAuthority
	}
	if h := b.hosts.get(authority); h != nil {
		h.touch()
		return lb.PickResult{Endpoint: &h.ep}, nil
	}
	name, addr, ok := b.endpointOf(authority)
	if !ok {
		return lb.PickResult{}, errBadAuthority
	}
	h := b.hosts.add(authority, func() *tableHost {
		return &tableHost{ep: lb.Endpoint{Address: addr, Healthy: true}, name: name}
	})
	if h == nil {
		// The table is full: serve the request without remembering the
		// host. Connecting asks the DNS cache, which reports overflow if
		// it is full too.
		return lb.PickResult{Endpoint: &lb.Endpoint{Address: addr, Healthy: true}}, nil
	}
	h.touch()
	return lb.PickResult{Endpoint: &h.ep}, nil
}

// endpointOf splits an authority into the host name and the endpoint
// address host:port, with the default port when it has none.
func (b *dfpBalancer) endpointOf(authority string) (name, addr string, ok bool) {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		host, port = authority, b.defaultPort
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || host == "" || !validHostName(host) {
		return "", "", false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return "", net.JoinHostPort(a.Unmap().String(), port), true
	}
	name = strings.ToLower(strings.TrimSuffix(host, "."))
	return name, net.JoinHostPort(name, port), true
}

// sweep drops hosts no request picked for two sweeps (HostTTL) and tells
// the DNS cache which were used, so that hosts served over pooled
// connections stay cached.
func (b *dfpBalancer) sweep() {
	removed, used := b.hosts.sweep(2)
	for _, h := range used {
		if h.name != "" {
			b.cache.touch(h.name)
		}
	}
	for _, h := range removed {
		b.c.forgetEndpoint(h.ep.Address)
	}
}

// resolve returns the addresses to dial for addr, a host:port whose
// host is resolved through the DNS cache. A full cache is an overflow.
func (b *dfpBalancer) resolve(ctx context.Context, addr string) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{addr}, nil
	}
	ips, err := b.cache.Resolve(ctx, host)
	if err != nil {
		if errors.Is(err, ErrDNSCacheOverflow) {
			return nil, &kindError{kind: Overflow, err: err}
		}
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	addrs := make([]string, len(ips))
	for i, ip := range ips {
		addrs[i] = net.JoinHostPort(ip.String(), port)
	}
	return addrs, nil
}
