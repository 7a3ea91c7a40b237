package route

import (
	"encoding/hex"
	"math/bits"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Hash policies are evaluated the way Envoy's HashPolicyImpl does
// (source/common/http/hash_policy.cc), so that a key lands on the same
// ring or Maglev slot as it would behind Envoy with the same endpoints:
// every input is hashed with xxHash64 (seed 0), and the hashes of the
// policies that produce one combine as hash = rotl(hash, 1) ^ next. This
// is the one place the package goes beyond the standard library, for
// github.com/cespare/xxhash/v2, the xxHash64 the lb package uses too.

// Hash method kinds.
const (
	hashHeader uint8 = iota
	hashAuthority
	hashCookie
	hashSourceIP
	hashQuery
)

// hashMethod is a compiled HashPolicy.
type hashMethod struct {
	kind     uint8
	terminal bool
	name     string // canonical header key, cookie name or query parameter
	ttl      time.Duration
	path     string
}

func compileHashPolicies(ps []HashPolicy) []hashMethod {
	if len(ps) == 0 {
		return nil
	}
	ms := make([]hashMethod, 0, len(ps))
	for i := range ps {
		p := &ps[i]
		m := hashMethod{terminal: p.Terminal}
		switch {
		case p.Header != "":
			m.kind, m.name = hashHeader, http.CanonicalHeaderKey(p.Header)
			if m.name == "Host" {
				// Envoy's host header is :authority, which net/http keeps
				// in Request.Host.
				m.kind = hashAuthority
			}
		case p.Cookie != nil:
			m.kind, m.name, m.ttl, m.path = hashCookie, p.Cookie.Name, p.Cookie.TTL, p.Cookie.Path
		case p.SourceIP:
			m.kind = hashSourceIP
		default:
			m.kind, m.name = hashQuery, p.QueryParameter
		}
		ms = append(ms, m)
	}
	return ms
}

// RequestHash computes the request's hash from the route's hash policies
// for consistent-hash load balancers (lb.PickInfo.Hash), as Envoy does.
// source is the downstream address for SourceIP policies (the zero Addr
// when unknown).
//
// Policies are evaluated in order; those whose input is absent are
// skipped, and the hashes of the others combine as rotl(hash, 1) ^ next.
// A Terminal policy stops the evaluation once a hash exists, whether it
// produced one itself or an earlier policy did. ok is false when no
// policy produced a hash; the balancer then picks at random.
//
//   - Header: xxHash64 of the value; with several header lines, the values
//     are sorted and hashed in a chain, each seeding the next, so their
//     order does not matter. "host" hashes Request.Host (:authority).
//   - Cookie: xxHash64 of the first cookie of that name (surrounding
//     double quotes removed). When it is absent or empty and the policy
//     has a TTL, a cookie is minted: its value is the hex xxHash64 of the
//     downstream remote and local addresses, so requests of one
//     connection agree; the request hashes on that value and mint is the
//     cookie to set on the response (Max-Age from the TTL in whole
//     seconds, Path, HttpOnly, quoted value, as Envoy sets it). Only the
//     first minted cookie is returned when several policies mint.
//   - SourceIP: xxHash64 of source's text form, without zone.
//   - QueryParameter: xxHash64 of the first value of that parameter in
//     the raw query, not unescaped, as Envoy does; a parameter without
//     '=' hashes the empty value.
//
// Filter-state policies and the header policy's regex_rewrite are not
// supported. RequestHash is safe for concurrent use and does not allocate
// for header, source IP and query policies, nor for cookies that are
// present.
func (r *Route) RequestHash(req *http.Request, source netip.Addr) (hash uint64, ok bool, mint *http.Cookie) {
	for i := range r.hashes {
		m := &r.hashes[i]
		var h uint64
		var got bool
		switch m.kind {
		case hashHeader:
			h, got = hashHeaderValues(req.Header[m.name])
		case hashAuthority:
			if req.Host != "" {
				h, got = xxhash.Sum64String(req.Host), true
			} else {
				h, got = hashHeaderValues(req.Header["Host"])
			}
		case hashCookie:
			if v := cookieValue(req.Header["Cookie"], m.name); v != "" {
				h, got = xxhash.Sum64String(v), true
			} else if m.ttl > 0 {
				c := m.mintCookie(req, source)
				h, got = xxhash.Sum64String(c.Value), true
				if mint == nil {
					mint = c
				}
			}
		case hashSourceIP:
			h, got = hashAddr(source)
		case hashQuery:
			if req.URL != nil {
				var v string
				if v, got = queryValue(req.URL.RawQuery, m.name); got {
					h = xxhash.Sum64String(v)
				}
			}
		}
		if got {
			if ok {
				hash = bits.RotateLeft64(hash, 1) ^ h
			} else {
				hash, ok = h, true
			}
		}
		if m.terminal && ok {
			break
		}
	}
	return hash, ok, mint
}

// hashHeaderValues is Envoy's header hash: the values sorted, then
// hashed in a chain where each hash seeds the next.
func hashHeaderValues(vs []string) (uint64, bool) {
	switch len(vs) {
	case 0:
		return 0, false
	case 1:
		return xxhash.Sum64String(vs[0]), true
	}
	var buf [8]string
	var sorted []string
	if len(vs) <= len(buf) {
		sorted = buf[:len(vs)]
	} else {
		sorted = make([]string, len(vs))
	}
	copy(sorted, vs)
	// Insertion sort: a handful of values, and no closure or allocation.
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j] < sorted[j-1]; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	var d xxhash.Digest
	var h uint64
	for _, v := range sorted {
		d.ResetWithSeed(h)
		d.WriteString(v)
		h = d.Sum64()
	}
	return h, true
}

// hashAddr hashes the address's text form without a zone, as Envoy's
// addressAsString.
func hashAddr(a netip.Addr) (uint64, bool) {
	if !a.IsValid() {
		return 0, false
	}
	var buf [64]byte
	return xxhash.Sum64(a.WithZone("").AppendTo(buf[:0])), true
}

// cookieValue returns the value of the first cookie named name in the
// Cookie header lines, parsed as Envoy's forEachCookie does: pairs split
// on ';' and trimmed, the name up to the first '=', surrounding double
// quotes removed from the value.
func cookieValue(lines []string, name string) string {
	for _, line := range lines {
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			pair = strings.Trim(pair, " \t")
			k, v, found := strings.Cut(pair, "=")
			if !found || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// queryValue returns the first value of parameter name in a raw query,
// not unescaped (Envoy's QueryParamsMulti::parseQueryString).
func queryValue(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

// mintCookie builds the cookie Envoy's router sets for a cookie policy
// with a TTL when the request has none (addDownstreamSetCookie): the
// value is the hex xxHash64 of the remote address followed by the local
// address, so concurrent requests of one connection agree.
func (m *hashMethod) mintCookie(req *http.Request, source netip.Addr) *http.Cookie {
	remote := req.RemoteAddr
	if remote == "" && source.IsValid() {
		remote = source.String()
	}
	var local string
	if a, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	}
	var d xxhash.Digest
	d.Reset()
	d.WriteString(remote)
	d.WriteString(local)
	var sum [8]byte
	return &http.Cookie{
		Name:     m.name,
		Value:    hex.EncodeToString(d.Sum(sum[:0])),
		Quoted:   true,
		Path:     m.path,
		MaxAge:   int(m.ttl / time.Second),
		HttpOnly: true,
	}
}
