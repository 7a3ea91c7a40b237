package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/porticoproxy/portico/lb"
)

// OriginalDstConfig configures an OriginalDst cluster (Envoy's
// original_dst_lb_config and cleanup_interval).
type OriginalDstConfig struct {
	// UseHTTPHeader makes a request's HTTPHeaderName header, an IP
	// address with port, its destination; a request without the header
	// falls back to its connection's original destination, and one with
	// an unusable value fails.
	UseHTTPHeader bool
	// HTTPHeaderName is the header read with UseHTTPHeader; default
	// DefaultOriginalDstHeader (x-envoy-original-dst-host).
	HTTPHeaderName string
	// CleanupInterval is how often hosts that no request used since the
	// last cleanup are removed; default DefaultCleanupInterval (5 s).
	CleanupInterval time.Duration
}

func (o *OriginalDstConfig) appendErrors(errs []error) []error {
	if o.HTTPHeaderName != "" && !httpguts.ValidHeaderFieldName(o.HTTPHeaderName) {
		errs = append(errs, fmt.Errorf("original_dst.http_header_name: %q is not a valid header name", o.HTTPHeaderName))
	}
	if d := o.CleanupInterval; d < 0 || d > 0 && d < time.Millisecond {
		errs = append(errs, fmt.Errorf("original_dst.cleanup_interval: %v is less than 1ms", d))
	}
	return errs
}

func (o OriginalDstConfig) withDefaults() OriginalDstConfig {
	if o.HTTPHeaderName == "" {
		o.HTTPHeaderName = DefaultOriginalDstHeader
	}
	if o.CleanupInterval == 0 {
		o.CleanupInterval = DefaultCleanupInterval
	}
	return o
}

type origDstKey struct{}

// WithOriginalDestination returns a copy of ctx carrying addr, the
// original destination of the downstream connection a request arrived
// on. Listeners set it (after SO_ORIGINAL_DST, TPROXY or PROXY protocol)
// on the requests they serve; OriginalDst clusters send them there.
func WithOriginalDestination(ctx context.Context, addr netip.AddrPort) context.Context {
	return context.WithValue(ctx, origDstKey{}, addr)
}

// OriginalDestination returns the original destination set on ctx by
// WithOriginalDestination.
func OriginalDestination(ctx context.Context) (netip.AddrPort, bool) {
	addr, ok := ctx.Value(origDstKey{}).(netip.AddrPort)
	return addr, ok && addr.IsValid()
}

var (
	errNoOriginalDst  = fmt.Errorf("%w: request has no original destination", lb.ErrNoEndpoint)
	errBadOriginalDst = fmt.Errorf("%w: original destination header is not an IP address with port", lb.ErrNoEndpoint)
)

// origDstBalancer is an OriginalDst cluster's load balancer and picker
// in one. Hosts are kept per destination in a copy-on-write table, so a
// pick of a known destination reads a header or a context value, parses
// it and loads a map entry, without locking or allocating.
type origDstBalancer struct {
	c       *Cluster
	header  string // canonical header name; empty without UseHTTPHeader
	cleanup time.Duration
	hosts   hostTable[netip.AddrPort]
}

var (
	_ lb.Balancer = (*origDstBalancer)(nil)
	_ lb.Picker   = (*origDstBalancer)(nil)
)

func newOrigDstBalancer(c *Cluster) *origDstBalancer {
	o := c.cfg.OriginalDst
	b := &origDstBalancer{c: c, cleanup: o.CleanupInterval}
	if o.UseHTTPHeader {
		b.header = textproto.CanonicalMIMEHeaderKey(o.HTTPHeaderName)
	}
	return b
}

// Update ignores endpoint updates: requests define the endpoints.
func (b *origDstBalancer) Update([]lb.Endpoint) {}

// Picker returns b, which never changes.
func (b *origDstBalancer) Picker() lb.Picker { return b }

// Pick returns the endpoint of the request's original destination.
func (b *origDstBalancer) Pick(info lb.PickInfo) (lb.PickResult, error) {
	dst, err := b.destination(info.Request)
	if err != nil {
		return lb.PickResult{}, err
	}
	h := b.hosts.get(dst)
	if h == nil {
		h = b.hosts.add(dst, func() *tableHost {
			return &tableHost{ep: lb.Endpoint{Address: dst.String(), Healthy: true}}
		})
	}
	h.touch()
	return lb.PickResult{Endpoint: &h.ep}, nil
}

func (b *origDstBalancer) destination(req *http.Request) (netip.AddrPort, error) {
	if req == nil {
		return netip.AddrPort{}, errNoOriginalDst
	}
	if b.header != "" {
		if vs := req.Header[b.header]; len(vs) > 0 {
			dst, err := netip.ParseAddrPort(vs[0])
			if err != nil || dst.Port() == 0 || !dst.Addr().IsValid() {
				return netip.AddrPort{}, errBadOriginalDst
			}
			return netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), nil
		}
	}
	dst, ok := OriginalDestination(req.Context())
	if !ok || dst.Port() == 0 {
		return netip.AddrPort{}, errNoOriginalDst
	}
	return netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), nil
}

// sweep removes the hosts no request used since the last sweep.
func (b *origDstBalancer) sweep() {
	removed, _ := b.hosts.sweep(1)
	for _, h := range removed {
		b.c.forgetEndpoint(h.ep.Address)
	}
}
