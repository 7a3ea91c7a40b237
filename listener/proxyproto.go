package listener

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/porticoproxy/portico/cluster"
)

// ProxyProtocolConfig is Envoy's proxy_protocol listener filter: every
// connection must start with an HAProxy PROXY protocol header, version 1
// (text) or 2 (binary), read within ListenerFiltersTimeout. The header's
// source and destination become the connection's remote and local
// addresses, so X-Forwarded-For (with UseRemoteAddress), access logs'
// %DOWNSTREAM_REMOTE_ADDRESS% and %DOWNSTREAM_LOCAL_ADDRESS%, and filter
// chain SourcePrefixes and DestinationPorts see the client behind the
// proxy. A malformed header closes the connection (a listener filter
// error). A LOCAL command (v2) or an UNKNOWN family keeps the socket's
// addresses, as in Envoy.
type ProxyProtocolConfig struct {
	// AllowRequestsWithoutProxyProtocol is Envoy's
	// allow_requests_without_proxy_protocol: a connection whose first
	// bytes are not a PROXY signature is served as is, with the socket's
	// addresses, instead of being closed.
	AllowRequestsWithoutProxyProtocol bool
}

// ProxyHeader is a PROXY protocol header read from a connection. It is
// immutable once read; get it with ProxyHeaderFrom.
type ProxyHeader struct {
	// Version is 1 or 2.
	Version int
	// Local is true for a v2 LOCAL command (a health check from the
	// proxy itself); Source and Destination are then invalid.
	Local bool
	// Source and Destination are the client and the address it
	// connected to; invalid for LOCAL and UNKNOWN.
	Source, Destination netip.AddrPort
	// TLVs are the v2 type-length-value extensions, in header order
	// (Envoy keeps them all, as with pass_through_tlvs INCLUDE_ALL).
	TLVs []TLV
}

// TLV is one PROXY protocol v2 type-length-value extension.
type TLV struct {
	Type  byte
	Value []byte
}

type proxyHeaderKey struct{}

// ProxyHeaderFrom returns the PROXY protocol header of the connection a
// request arrived on, if its listener has a ProxyProtocol filter and the
// connection sent one.
func ProxyHeaderFrom(ctx context.Context) (*ProxyHeader, bool) {
	h, ok := ctx.Value(proxyHeaderKey{}).(*ProxyHeader)
	return h, ok
}

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Limits from the PROXY protocol spec: a v1 line is at most 107 bytes; a
// v2 header is its 16-byte preamble plus a 16-bit length.
const (
	proxyV1Max = 107
	proxyV2Pre = 16
)

var (
	errProxyMalformed = errors.New("listener: malformed PROXY protocol header")
	errProxyMissing   = errors.New("listener: no PROXY protocol header")
)

// filteredConn is a connection whose listener filters (original_dst,
// proxy_protocol) restored its addresses. It replays the bytes read past
// the PROXY header. Reads are serialized by whoever owns the connection.
type filteredConn struct {
	net.Conn
	rest          []byte
	remote, local net.Addr
	dst           netip.AddrPort // restored destination; invalid: none
	hdr           *ProxyHeader
}

func (c *filteredConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *filteredConn) RemoteAddr() net.Addr { return c.remote }
func (c *filteredConn) LocalAddr() net.Addr  { return c.local }

// CloseWrite lets net/http half-close the connection before closing it.
func (c *filteredConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// context adds what the listener filters found to a connection's base
// context: the original destination for OriginalDst clusters and the
// PROXY header.
func (c *filteredConn) context(ctx context.Context) context.Context {
	if c.dst.IsValid() {
		ctx = cluster.WithOriginalDestination(ctx, c.dst)
	}
	if c.hdr != nil {
		ctx = context.WithValue(ctx, proxyHeaderKey{}, c.hdr)
	}
	return ctx
}

// connContext is the chains' http.Server.ConnContext when the listener has
// listener filters or the chain a request timeout.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		c = tc.NetConn()
	}
	if tc, ok := c.(*trackedConn); ok {
		if fc, ok := tc.Conn.(*filteredConn); ok {
			ctx = fc.context(ctx)
		}
		if tc.cs.timed {
			ctx = context.WithValue(ctx, trackedConnKey{}, tc)
		}
	}
	return ctx
}

// runListenerFilters runs original_dst then proxy_protocol on c (bounded
// by the read deadline already set) and returns the connection to use.
func runListenerFilters(t *table, c net.Conn) (net.Conn, error) {
	fc := &filteredConn{Conn: c, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if t.origDst {
		if dst, ok := originalDst(c); ok {
			fc.dst = dst
			fc.local = net.TCPAddrFromAddrPort(dst)
		} else if ap, ok := netAddrPort(c.LocalAddr()); ok {
			fc.dst = ap // no NAT entry: the local address
		}
	}
	if t.proxy != nil {
		hdr, rest, err := readProxyHeader(c, t.proxy.AllowRequestsWithoutProxyProtocol)
		if err != nil {
			return nil, err
		}
		fc.rest = rest
		if hdr != nil {
			fc.hdr = hdr
			if hdr.Source.IsValid() {
				fc.remote = net.TCPAddrFromAddrPort(hdr.Source)
				fc.local = net.TCPAddrFromAddrPort(hdr.Destination)
				fc.dst = hdr.Destination
			}
		}
	}
	return fc, nil
}

func netAddrPort(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	return netip.AddrPort{}, false
}

// readProxyHeader reads a PROXY header from c, tolerating a header split
// across any number of reads. It returns the bytes read past the header
// (or, without a header when allowed, all bytes read) for replay.
func readProxyHeader(c net.Conn, allowMissing bool) (*ProxyHeader, []byte, error) {
	buf := make([]byte, 0, 256)
	need := 1
	for {
		for len(buf) < need {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := c.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil && len(buf) < need {
				return nil, nil, err
			}
		}
		switch {
		case isPrefix(buf, proxyV2Sig):
			if len(buf) < proxyV2Pre {
				need = proxyV2Pre
				continue
			}
			total := proxyV2Pre + int(binary.BigEndian.Uint16(buf[14:16]))
			if len(buf) < total {
				need = total
				if cap(buf) < total {
					buf = append(make([]byte, 0, total), buf...)
				}
				continue
			}
			h, err := parseProxyV2(buf[:total])
			if err != nil {
				return nil, nil, err
			}
			return h, buf[total:], nil
		case isPrefix(buf, proxyV1Sig):
			if len(buf) < len(proxyV1Sig) {
				need = len(proxyV1Sig)
				continue
			}
			i := bytes.Index(buf, []byte("\r\n"))
			if i < 0 {
				if len(buf) >= proxyV1Max {
					return nil, nil, errProxyMalformed
				}
				need = len(buf) + 1
				continue
			}
			if i+2 > proxyV1Max {
				return nil, nil, errProxyMalformed
			}
			h, err := parseProxyV1(string(buf[:i]))
			if err != nil {
				return nil, nil, err
			}
			return h, buf[i+2:], nil
		case allowMissing:
			return nil, buf, nil
		default:
			return nil, nil, errProxyMissing
		}
	}
}

// isPrefix reports whether b and sig agree on their common length.
func isPrefix(b, sig []byte) bool {
	n := min(len(b), len(sig))
	return bytes.Equal(b[:n], sig[:n])
}

// parseProxyV1 parses "PROXY TCP4|TCP6 src dst sport dport" or
// "PROXY UNKNOWN ...", without the CRLF.
func parseProxyV1(line string) (*ProxyHeader, error) {
	f := strings.Split(line, " ")
	h := &ProxyHeader{Version: 1}
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return h, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, errProxyMalformed
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sp, err3 := parsePort(f[4])
	dp, err4 := parsePort(f[5])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, errProxyMalformed
	}
	if src.Is4() != (f[1] == "TCP4") || dst.Is4() != src.Is4() || src.Zone() != "" || dst.Zone() != "" {
		return nil, errProxyMalformed
	}
	h.Source, h.Destination = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, errProxyMalformed
	}
	p, err := strconv.ParseUint(s, 10, 16)
	return uint16(p), err
}

// parseProxyV2 parses a whole v2 header (preamble included).
func parseProxyV2(b []byte) (*ProxyHeader, error) {
	if b[12]>>4 != 2 {
		return nil, errProxyMalformed
	}
	h := &ProxyHeader{Version: 2}
	body := b[proxyV2Pre:]
	switch b[12] & 0x0f {
	case 0: // LOCAL: addresses and TLVs are ignored
		h.Local = true
		return h, nil
	case 1: // PROXY
	default:
		return nil, errProxyMalformed
	}
	var alen int
	switch fam, proto := b[13]>>4, b[13]&0x0f; {
	case fam == 0 && proto == 0: // UNSPEC: keep the socket's addresses
		return h, nil
	case proto != 1 && proto != 2: // STREAM or DGRAM
		return nil, errProxyMalformed
	case fam == 1:
		alen = 12
		if len(body) < alen {
			return nil, errProxyMalformed
		}
		src, dst := netip.AddrFrom4([4]byte(body[0:4])), netip.AddrFrom4([4]byte(body[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))
	case fam == 2:
		alen = 36
		if len(body) < alen {
			return nil, errProxyMalformed
		}
		src, dst := netip.AddrFrom16([16]byte(body[0:16])), netip.AddrFrom16([16]byte(body[16:32]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36]))
	default: // AF_UNIX and unknown families: not an IP connection
		return nil, errProxyMalformed
	}
	for rest := body[alen:]; len(rest) > 0; {
		if len(rest) < 3 {
			return nil, errProxyMalformed
		}
		n := int(binary.BigEndian.Uint16(rest[1:3]))
		if len(rest) < 3+n {
			return nil, errProxyMalformed
		}
		h.TLVs = append(h.TLVs, TLV{Type: rest[0], Value: bytes.Clone(rest[3 : 3+n])})
		rest = rest[3+n:]
	}
	return h, nil
}
