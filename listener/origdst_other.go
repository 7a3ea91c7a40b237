//go:build !linux

package listener

import (
	"net"
	"net/netip"
)

// originalDst is only implemented on Linux; elsewhere the OriginalDst
// filter falls back to the local address.
func originalDst(net.Conn) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
