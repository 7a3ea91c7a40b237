package route

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// AppendAction says how a HeaderValue combines with existing values:
// Envoy's HeaderValueOption.HeaderAppendAction.
type AppendAction uint8

const (
	// AppendIfExistsOrAdd adds the value as one more value of the header,
	// creating it if absent. It is the zero value and Envoy's default.
	AppendIfExistsOrAdd AppendAction = iota
	// AddIfAbsent sets the header only when it is absent.
	AddIfAbsent
	// OverwriteIfExistsOrAdd replaces any existing values.
	OverwriteIfExistsOrAdd
	// OverwriteIfExists replaces existing values and does nothing when the
	// header is absent.
	OverwriteIfExists
)

// String returns Envoy's name of the action.
func (a AppendAction) String() string {
	switch a {
	case AppendIfExistsOrAdd:
		return "APPEND_IF_EXISTS_OR_ADD"
	case AddIfAbsent:
		return "ADD_IF_ABSENT"
	case OverwriteIfExistsOrAdd:
		return "OVERWRITE_IF_EXISTS_OR_ADD"
	case OverwriteIfExists:
		return "OVERWRITE_IF_EXISTS"
	}
	return "AppendAction(" + strconv.Itoa(int(a)) + ")"
}

// HeaderValue is a header to add: Envoy's HeaderValueOption.
//
// Value may contain Envoy command operators, evaluated per request
// against the incoming (downstream) request:
//
//	%DOWNSTREAM_REMOTE_ADDRESS%               r.RemoteAddr
//	%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%  r.RemoteAddr without port
//	%DOWNSTREAM_LOCAL_ADDRESS%                the http.LocalAddrContextKey address
//	%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%   the same without port
//	%PROTOCOL%                                HTTP/1.0, HTTP/1.1, HTTP/2 or HTTP/3
//	%REQ(name)%, %REQ(name?alt)%, %REQ(name):N%  a request header (first value; pseudo-headers
//	                                          and host allowed), truncated to N bytes
//	%HOSTNAME%                                the host name of this machine
//	%REQUESTED_SERVER_NAME%                   the TLS SNI (r.TLS.ServerName)
//	%START_TIME%                              now, RFC 3339 UTC with milliseconds
//	%UPSTREAM_HOST%                           the upstream endpoint (responses only; empty on requests)
//	%%                                        a literal "%"
//
// An unknown operator is a validation error. A value that evaluates to the
// empty string is not added (Envoy's keep_empty_value false).
//
// A HeaderValue is plain data.
type HeaderValue struct {
	// Key is the header name. Pseudo-headers and Host cannot be set.
	Key string
	// Value is the value, with operators.
	Value string
	// Append is how the value combines with existing values.
	Append AppendAction
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func validateMutations(add []HeaderValue, remove []string, addField, removeField string) error {
	for i, hv := range add {
		if !validHeaderName(hv.Key) || strings.EqualFold(hv.Key, "host") {
			return fmt.Errorf("%s[%d].header.key: invalid or unmodifiable header name %q", addField, i, hv.Key)
		}
		if hv.Append > OverwriteIfExists {
			return fmt.Errorf("%s[%d].append_action: unknown action %d", addField, i, hv.Append)
		}
		if strings.ContainsAny(hv.Value, "\r\n\x00") {
			return fmt.Errorf("%s[%d].header.value: contains CR, LF or NUL", addField, i)
		}
		if _, err := parseFormat(hv.Value); err != nil {
			return fmt.Errorf("%s[%d].header.value: %w", addField, i, err)
		}
	}
	for i, k := range remove {
		if !validHeaderName(k) || strings.EqualFold(k, "host") {
			return fmt.Errorf("%s[%d]: invalid or unmodifiable header name %q", removeField, i, k)
		}
	}
	return nil
}

// Variable kinds.
const (
	varLiteral uint8 = iota
	varRemoteAddr
	varRemoteAddrNoPort
	varLocalAddr
	varLocalAddrNoPort
	varProtocol
	varReq
	varHostname
	varSNI
	varStartTime
	varUpstreamHost
)

// segment is one literal or operator of a compiled header value.
type segment struct {
	kind   uint8
	lit    string // literal text, or the header key for varReq
	alt    string // varReq alternative header key
	maxLen int    // varReq truncation; 0 means none
}

// format is a compiled header value.
type format struct {
	literal string // the whole value when it has no operators
	segs    []segment
}

func parseFormat(v string) (format, error) {
	if !strings.Contains(v, "%") {
		return format{literal: v}, nil
	}
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{kind: varLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		end := strings.IndexByte(v[i+1:], '%')
		if end < 0 {
			return format{}, fmt.Errorf("unterminated operator at offset %d", i)
		}
		op := v[i+1 : i+1+end]
		seg, err := parseOperator(op)
		if err != nil {
			return format{}, err
		}
		flush()
		segs = append(segs, seg)
		i += end + 2
	}
	flush()
	if len(segs) == 1 && segs[0].kind == varLiteral {
		return format{literal: segs[0].lit}, nil
	}
	if len(segs) == 0 {
		return format{}, nil
	}
	return format{segs: segs}, nil
}

func parseOperator(op string) (segment, error) {
	switch op {
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return segment{kind: varRemoteAddr}, nil
	case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
		return segment{kind: varRemoteAddrNoPort}, nil
	case "DOWNSTREAM_LOCAL_ADDRESS":
		return segment{kind: varLocalAddr}, nil
	case "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
		return segment{kind: varLocalAddrNoPort}, nil
	case "PROTOCOL":
		return segment{kind: varProtocol}, nil
	case "HOSTNAME":
		return segment{kind: varHostname}, nil
	case "REQUESTED_SERVER_NAME":
		return segment{kind: varSNI}, nil
	case "START_TIME":
		return segment{kind: varStartTime}, nil
	case "UPSTREAM_HOST":
		return segment{kind: varUpstreamHost}, nil
	}
	if rest, ok := strings.CutPrefix(op, "REQ("); ok {
		closeIdx := strings.IndexByte(rest, ')')
		if closeIdx < 0 {
			return segment{}, fmt.Errorf("operator %%%s%%: missing \")\"", op)
		}
		arg, tail := rest[:closeIdx], rest[closeIdx+1:]
		name, alt, hasAlt := strings.Cut(arg, "?")
		valid := func(n string) bool { return validHeaderName(n) || isPseudo(n) }
		if !valid(name) || hasAlt && !valid(alt) {
			return segment{}, fmt.Errorf("operator %%%s%%: invalid header name", op)
		}
		seg := segment{kind: varReq}
		seg.lit, _ = headerKey(name)
		if hasAlt {
			seg.alt, _ = headerKey(alt)
		}
		if tail != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(tail, ":"))
			if tail[0] != ':' || err != nil || n <= 0 {
				return segment{}, fmt.Errorf("operator %%%s%%: invalid length %q", op, tail)
			}
			seg.maxLen = n
		}
		return seg, nil
	}
	return segment{}, fmt.Errorf("unknown operator %%%s%%", op)
}

// evalEnv is what header values are evaluated against.
type evalEnv struct {
	req          *http.Request
	upstreamHost string
	hostname     string
}

func (f *format) eval(env *evalEnv) string {
	if f.segs == nil {
		return f.literal
	}
	var b strings.Builder
	for i := range f.segs {
		s := &f.segs[i]
		r := env.req
		switch s.kind {
		case varLiteral:
			b.WriteString(s.lit)
		case varRemoteAddr:
			b.WriteString(r.RemoteAddr)
		case varRemoteAddrNoPort:
			b.WriteString(stripAddrPort(r.RemoteAddr))
		case varLocalAddr, varLocalAddrNoPort:
			if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a != nil {
				if s.kind == varLocalAddr {
					b.WriteString(a.String())
				} else {
					b.WriteString(stripAddrPort(a.String()))
				}
			}
		case varProtocol:
			b.WriteString(protocol(r))
		case varReq:
			v := reqValue(r, s.lit)
			if v == "" && s.alt != "" {
				v = reqValue(r, s.alt)
			}
			if s.maxLen > 0 && len(v) > s.maxLen {
				v = v[:s.maxLen]
			}
			b.WriteString(v)
		case varHostname:
			b.WriteString(env.hostname)
		case varSNI:
			if r.TLS != nil {
				b.WriteString(r.TLS.ServerName)
			}
		case varStartTime:
			b.WriteString(time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
		case varUpstreamHost:
			b.WriteString(env.upstreamHost)
		}
	}
	return b.String()
}

// reqValue returns the first value of a request header or pseudo-header
// (a key produced by headerKey).
func reqValue(r *http.Request, key string) string {
	if key[0] == ':' {
		return pseudoValue(r, key)
	}
	return firstHeader(r.Header, key)
}

func firstHeader(h http.Header, key string) string {
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func stripAddrPort(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

func protocol(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "HTTP/2"
	case 3:
		return "HTTP/3"
	}
	if r.Proto != "" {
		return r.Proto
	}
	return "HTTP/1.1"
}

// headerAdd is a compiled HeaderValue.
type headerAdd struct {
	key    string // canonical
	value  format
	append AppendAction
}

// mutations is the compiled header add/remove set of one level.
type mutations struct {
	remove []string // canonical keys
	add    []headerAdd
}

func compileMutations(add []HeaderValue, remove []string) mutations {
	var m mutations
	for _, k := range remove {
		m.remove = append(m.remove, http.CanonicalHeaderKey(k))
	}
	for _, hv := range add {
		f, _ := parseFormat(hv.Value) // validated
		m.add = append(m.add, headerAdd{key: http.CanonicalHeaderKey(hv.Key), value: f, append: hv.Append})
	}
	return m
}

func (m *mutations) empty() bool { return len(m.remove) == 0 && len(m.add) == 0 }

func (m *mutations) apply(h http.Header, env *evalEnv) {
	for _, k := range m.remove {
		delete(h, k)
	}
	for i := range m.add {
		a := &m.add[i]
		v := a.value.eval(env)
		if v == "" {
			continue
		}
		switch a.append {
		case AppendIfExistsOrAdd:
			h[a.key] = append(h[a.key], v)
		case AddIfAbsent:
			if len(h[a.key]) == 0 {
				h[a.key] = []string{v}
			}
		case OverwriteIfExistsOrAdd:
			h[a.key] = []string{v}
		case OverwriteIfExists:
			if len(h[a.key]) > 0 {
				h[a.key] = []string{v}
			}
		}
	}
}
