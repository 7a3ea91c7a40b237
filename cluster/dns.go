package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsQueryTimeout bounds one resolution, as Envoy's c-ares query timeout
// (5 s) does, so a resolver that never answers cannot stall refreshes.
const dnsQueryTimeout = 5 * time.Second

// dnsLookup resolves names for one address-family policy.
type dnsLookup struct {
	r      Resolver
	ttl    TTLResolver // nil when TTLs are not wanted or not known
	family DNSLookupFamily
}

// newDNSLookup returns a lookup through r (nil means
// net.DefaultResolver); with wantTTL it reads TTLs where it can.
func newDNSLookup(r Resolver, family DNSLookupFamily, wantTTL bool) *dnsLookup {
	if r == nil {
		r = net.DefaultResolver
	}
	l := &dnsLookup{r: r, family: family}
	if wantTTL {
		switch r := r.(type) {
		case TTLResolver:
			l.ttl = r
		case *net.Resolver:
			l.ttl = newNetTTLResolver(r)
		}
	}
	return l
}

// lookup resolves host under the family policy. An IP address resolves
// to itself. The TTL is the smallest of the answers', zero if unknown.
func (l *dnsLookup) lookup(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, dnsQueryTimeout)
	defer cancel()
	switch l.family {
	case DNSV4Only:
		return l.query(ctx, "ip4", host)
	case DNSV6Only:
		return l.query(ctx, "ip6", host)
	case DNSAll:
		return l.query(ctx, "ip", host)
	}
	first, second := "ip6", "ip4"
	if l.family == DNSV4Preferred {
		first, second = "ip4", "ip6"
	}
	addrs, ttl, err := l.query(ctx, first, host)
	if err == nil && len(addrs) > 0 || ctx.Err() != nil {
		return addrs, ttl, err
	}
	return l.query(ctx, second, host)
}

// query runs one lookup and keeps the addresses of network's families.
func (l *dnsLookup) query(ctx context.Context, network, host string) ([]netip.Addr, time.Duration, error) {
	var (
		addrs []netip.Addr
		ttl   time.Duration
		err   error
	)
	if l.ttl != nil {
		addrs, ttl, err = l.ttl.LookupNetIPTTL(ctx, network, host)
	} else {
		addrs, err = l.r.LookupNetIP(ctx, network, host)
	}
	if err != nil {
		return nil, 0, err
	}
	out := addrs[:0:0]
	for _, a := range addrs {
		a = a.Unmap()
		if network == "ip4" && !a.Is4() || network == "ip6" && !a.Is6() || slices.Contains(out, a) {
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, 0, &net.DNSError{Err: "no suitable address", Name: host, IsNotFound: true}
	}
	return out, ttl, nil
}

// notFound reports whether err says the name has no addresses (NXDOMAIN
// or no records of the family): a definite answer, unlike a failure.
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// backoff returns the wait before retry number n (from 1) under r:
// uniformly jittered in the upper half of BaseInterval·2ⁿ⁻¹, capped at
// MaxInterval, like Envoy's jittered exponential backoff; exactly
// BaseInterval when it equals MaxInterval.
func (r RefreshRate) backoff(n int) time.Duration {
	if r.BaseInterval == r.MaxInterval {
		return r.BaseInterval // a plain refresh rate: no backoff
	}
	d := r.BaseInterval
	for i := 1; i < n && d < r.MaxInterval; i++ {
		d *= 2
	}
	d = min(d, r.MaxInterval)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// dnsDiscovery runs StrictDNS and LogicalDNS resolution: one goroutine
// per configured endpoint, each with its own refresh timer and failure
// backoff, as Envoy's per-target resolution.
type dnsDiscovery struct {
	c       *Cluster
	lookup  *dnsLookup
	logical bool
	refresh time.Duration
	failure RefreshRate
	ttl     bool

	mu      sync.Mutex     // serializes publishing
	results [][]netip.Addr // per target, the last good answer
}

func newDNSDiscovery(c *Cluster) *dnsDiscovery {
	cfg := &c.cfg
	return &dnsDiscovery{
		c:       c,
		lookup:  newDNSLookup(cfg.Resolver, cfg.DNSLookupFamily, cfg.RespectDNSTTL),
		logical: cfg.Type == LogicalDNS,
		refresh: cfg.DNSRefreshRate,
		failure: cfg.DNSFailureRefreshRate.withDefaults(cfg.DNSRefreshRate),
		ttl:     cfg.RespectDNSTTL,
		results: make([][]netip.Addr, len(c.disc.targets)),
	}
}

func (d *dnsDiscovery) start(ctx context.Context, wg *sync.WaitGroup) {
	for i := range d.c.disc.targets {
		wg.Go(func() { d.run(ctx, i) })
	}
}

// run resolves target i until ctx is done.
func (d *dnsDiscovery) run(ctx context.Context, i int) {
	host, _, _ := net.SplitHostPort(d.c.disc.targets[i].Address)
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		addrs, ttl, err := d.lookup.lookup(ctx, host)
		if ctx.Err() != nil {
			return
		}
		wait := d.refresh
		switch {
		case err != nil && !notFound(err):
			failures++
			wait = d.failure.backoff(failures)
		default:
			failures = 0
			if d.ttl && ttl > 0 {
				wait = ttl
			}
			if d.logical && len(addrs) == 0 {
				break // keep the last address, as Envoy does
			}
			d.set(i, addrs)
		}
		timer.Reset(wait)
	}
}

// set records target i's answer and, when it changed, publishes the
// cluster's new endpoint set.
func (d *dnsDiscovery) set(i int, addrs []netip.Addr) {
	if d.logical && len(addrs) > 1 {
		addrs = addrs[:1]
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if slices.Equal(d.results[i], addrs) {
		return
	}
	d.results[i] = addrs
	targets := d.c.disc.targets
	var eps []Endpoint
	names := make(map[string]string)
	for j, res := range d.results {
		host, port, _ := net.SplitHostPort(targets[j].Address)
		p, _ := strconv.ParseUint(port, 10, 16)
		for _, a := range res {
			addr := netip.AddrPortFrom(a, uint16(p)).String()
			if _, dup := names[addr]; dup {
				continue // an address two names share is one endpoint
			}
			names[addr] = strings.TrimSuffix(host, ".")
			ep := targets[j]
			ep.Address = addr
			eps = append(eps, ep)
		}
	}
	// Names first: a connection to a new address must find its SNI.
	d.c.disc.hostnames.Store(&names)
	// The set is valid by construction: IP addresses, no duplicates, and
	// the rest of each endpoint was validated by New.
	_ = d.c.UpdateEndpoints(eps)
}

// netTTLResolver reads TTLs out of the DNS responses a *net.Resolver
// receives: it resolves with a copy of the resolver forced to Go's
// built-in client, whose connections it wraps. A lookup finds its
// recorder in its context, which Go's resolver passes to Dial.
type netTTLResolver struct {
	r *net.Resolver
}

type ttlRecorderKey struct{}

// ttlRecorder keeps the smallest answer TTL seen during one lookup.
type ttlRecorder struct {
	mu  sync.Mutex
	ttl uint32
	set bool
}

func (rec *ttlRecorder) record(ttl uint32) {
	rec.mu.Lock()
	if !rec.set || ttl < rec.ttl {
		rec.ttl, rec.set = ttl, true
	}
	rec.mu.Unlock()
}

func newNetTTLResolver(r *net.Resolver) *netTTLResolver {
	dial := r.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return &netTTLResolver{r: &net.Resolver{
		PreferGo:     true,
		StrictErrors: r.StrictErrors,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			conn, err := dial(ctx, network, address)
			if err != nil {
				return nil, err
			}
			rec, _ := ctx.Value(ttlRecorderKey{}).(*ttlRecorder)
			if rec == nil {
				return conn, nil
			}
			tc := &ttlConn{Conn: conn, rec: rec}
			if pc, ok := conn.(net.PacketConn); ok {
				return &ttlPacketConn{ttlConn: tc, pc: pc}, nil
			}
			tc.stream = true
			return tc, nil
		},
	}}
}

// LookupNetIPTTL implements TTLResolver.
func (n *netTTLResolver) LookupNetIPTTL(ctx context.Context, network, host string) ([]netip.Addr, time.Duration, error) {
	rec := &ttlRecorder{}
	addrs, err := n.r.LookupNetIP(context.WithValue(ctx, ttlRecorderKey{}, rec), network, host)
	if err != nil {
		return nil, 0, err
	}
	rec.mu.Lock()
	ttl := time.Duration(rec.ttl) * time.Second
	rec.mu.Unlock()
	return addrs, ttl, nil
}

// ttlConn records the answer TTLs of the DNS messages read through it.
// Go's resolver uses a connection from one goroutine at a time.
type ttlConn struct {
	net.Conn
	rec    *ttlRecorder
	stream bool   // TCP: messages carry a 2-byte length prefix
	buf    []byte // TCP: the message read so far
}

func (c *ttlConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.observe(p[:n])
	}
	return n, err
}

func (c *ttlConn) observe(b []byte) {
	if !c.stream {
		c.parse(b)
		return
	}
	c.buf = append(c.buf, b...)
	for len(c.buf) >= 2 {
		l := int(c.buf[0])<<8 | int(c.buf[1])
		if len(c.buf) < 2+l {
			return
		}
		c.parse(c.buf[2 : 2+l])
		c.buf = c.buf[2+l:]
	}
}

// parse records the smallest TTL of msg's address and alias answers.
func (c *ttlConn) parse(msg []byte) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response || h.RCode != dnsmessage.RCodeSuccess {
		return
	}
	if p.SkipAllQuestions() != nil {
		return
	}
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			return
		}
		switch rh.Type {
		case dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeCNAME:
			c.rec.record(rh.TTL)
		}
		if p.SkipAnswer() != nil {
			return
		}
	}
}

// ttlPacketConn keeps a UDP connection a net.PacketConn, which tells Go's
// resolver to use datagram framing.
type ttlPacketConn struct {
	*ttlConn
	pc net.PacketConn
}

func (c *ttlPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.pc.ReadFrom(p)
	if n > 0 {
		c.observe(p[:n])
	}
	return n, addr, err
}

func (c *ttlPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.pc.WriteTo(p, addr) }

var (
	_ net.PacketConn = (*ttlPacketConn)(nil)
	_ TTLResolver    = (*netTTLResolver)(nil)
)
