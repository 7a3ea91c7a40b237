package listener

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6.
const ip6tSOOriginalDst = 80

// originalDst reads the destination a connection had before iptables
// REDIRECT or DNAT rewrote it (getsockopt SO_ORIGINAL_DST, or
// IP6T_SO_ORIGINAL_DST on IPv6 sockets), as Envoy's original_dst filter
// does. It fails when conntrack has no NAT entry for the connection.
func originalDst(c net.Conn) (netip.AddrPort, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, false
	}
	la, _ := tc.LocalAddr().(*net.TCPAddr)
	rc, err := tc.SyscallConn()
	if err != nil || la == nil {
		return netip.AddrPort{}, false
	}
	var dst netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		if la.IP.To4() != nil {
			// sockaddr_in fits the 16 bytes of an ipv6_mreq.
			var m *unix.IPv6Mreq
			if m, serr = unix.GetsockoptIPv6Mreq(int(fd), syscall.SOL_IP, unix.SO_ORIGINAL_DST); serr == nil {
				b := m.Multiaddr // family(2) port(2, big endian) addr(4)
				dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
			}
			return
		}
		// sockaddr_in6 fits in an ip6_mtuinfo.
		var mi *unix.IPv6MTUInfo
		if mi, serr = unix.GetsockoptIPv6MTUInfo(int(fd), syscall.SOL_IPV6, ip6tSOOriginalDst); serr == nil {
			a := mi.Addr
			port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:]) // network order in memory
			dst = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), port)
		}
	})
	if err != nil || serr != nil || !dst.IsValid() {
		return netip.AddrPort{}, false
	}
	return dst, true
}
