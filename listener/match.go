package listener

import (
	"net"
	"net/netip"
	"slices"
	"strings"
)

// selectChain picks the chain for a connection by Envoy's FilterChainMatch
// order: at each criterion only the most specific matches survive, and a
// chain that leaves the criterion empty survives only when no chain matches
// it specifically. The default chain (possibly nil) is the fallback.
func (t *table) selectChain(ci *connInfo) *chain {
	var buf [16]*chain
	c := append(buf[:0], t.chains...)
	c = keepBest(c, ci, portScore)
	c = keepBest(c, ci, sniScore)
	c = keepBest(c, ci, transportScore)
	c = keepBest(c, ci, alpnScore)
	c = keepBest(c, ci, sourceScore)
	if len(c) == 0 {
		return t.def
	}
	return c[0]
}

// keepBest keeps the chains with the highest non-negative score.
func keepBest(c []*chain, ci *connInfo, score func(*chain, *connInfo) int) []*chain {
	best := -1
	for _, ch := range c {
		best = max(best, score(ch, ci))
	}
	if best < 0 {
		return c[:0]
	}
	out := c[:0]
	for _, ch := range c {
		if score(ch, ci) == best {
			out = append(out, ch)
		}
	}
	return out
}

// Scores: -1 no match, 0 criterion empty (wildcard), >0 specific match,
// higher is more specific.

func portScore(ch *chain, ci *connInfo) int {
	ports := ch.match.DestinationPorts
	if len(ports) == 0 {
		return 0
	}
	if slices.Contains(ports, ci.port) {
		return 1
	}
	return -1
}

func sniScore(ch *chain, ci *connInfo) int {
	names := ch.match.ServerNames
	if len(names) == 0 {
		return 0
	}
	if ci.sni == "" {
		return -1
	}
	sni := strings.ToLower(ci.sni)
	best := -1
	for _, n := range names {
		if suffix, ok := strings.CutPrefix(n, "*."); ok {
			// "*.example.com" matches any name below example.com; a longer
			// suffix is more specific.
			if len(sni) > len(suffix)+1 && sni[len(sni)-len(suffix)-1] == '.' && strings.EqualFold(sni[len(sni)-len(suffix):], suffix) {
				best = max(best, 1+len(suffix))
			}
		} else if strings.EqualFold(n, sni) {
			return 1 << 16 // exact beats any wildcard
		}
	}
	return best
}

func transportScore(ch *chain, ci *connInfo) int {
	switch ch.match.TransportProtocol {
	case "":
		return 0
	case ci.transport:
		return 1
	}
	return -1
}

func alpnScore(ch *chain, ci *connInfo) int {
	protos := ch.match.ApplicationProtocols
	if len(protos) == 0 {
		return 0
	}
	for _, p := range ci.alpn {
		if slices.Contains(protos, p) {
			return 1
		}
	}
	return -1
}

func sourceScore(ch *chain, ci *connInfo) int {
	prefixes := ch.match.SourcePrefixes
	if len(prefixes) == 0 {
		return 0
	}
	ip := addrIP(ci.src)
	if !ip.IsValid() {
		return -1
	}
	best := -1
	for _, p := range prefixes {
		if p.Contains(ip) {
			best = max(best, 1+p.Bits())
		}
	}
	return best
}

// addrIP returns the IP of a TCP address, unmapping IPv4-in-IPv6.
func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func addrPort(a net.Addr) uint16 {
	if ta, ok := a.(*net.TCPAddr); ok {
		return uint16(ta.Port)
	}
	if a == nil {
		return 0
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return 0
	}
	return ap.Port()
}
