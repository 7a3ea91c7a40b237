package accesslog

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/porticoproxy/portico/filter"
)

// DefaultFormat is Envoy's default access log format line.
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// op is one compiled piece of a format string: a literal or an operator.
// fn appends the value for x to b; numeric marks operators whose value is a
// number (or "-"), which typed JSON emits unquoted.
type op struct {
	fn      func(b []byte, x *filter.Exchange) []byte
	numeric bool
}

// appendOps runs ops in order, appending the formatted line to b.
func appendOps(b []byte, x *filter.Exchange, ops []op) []byte {
	for i := range ops {
		b = ops[i].fn(b, x)
	}
	return b
}

// parseFormat compiles an Envoy format string into ops, once.
func parseFormat(s string) ([]op, error) { return parseFormatWith(s, nil) }

// parseFormatWith is parseFormat with custom operators (Config.Operators).
func parseFormatWith(s string, custom map[string]Operator) ([]op, error) {
	var ops []op
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			ops = append(ops, literal(string(lit)))
			lit = lit[:0]
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			lit = append(lit, c)
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			lit = append(lit, '%')
			i += 2
			continue
		}
		start := i
		j := i + 1
		for j < len(s) && isNameByte(s[j]) {
			j++
		}
		name := s[i+1 : j]
		if name == "" {
			return nil, fmt.Errorf("accesslog: position %d: %% not followed by an operator name (use %%%% for a literal %%)", start)
		}
		var arg string
		hasArg := false
		if j < len(s) && s[j] == '(' {
			k := strings.IndexByte(s[j:], ')')
			if k < 0 {
				return nil, fmt.Errorf("accesslog: position %d: operator %s: missing )", start, name)
			}
			arg, hasArg = s[j+1:j+k], true
			j += k + 1
		}
		maxLen := -1
		if j < len(s) && s[j] == ':' {
			k := j + 1
			for k < len(s) && s[k] >= '0' && s[k] <= '9' {
				k++
			}
			n, err := strconv.Atoi(s[j+1 : k])
			if err != nil {
				return nil, fmt.Errorf("accesslog: position %d: operator %s: bad length after ':'", start, name)
			}
			maxLen, j = n, k
		}
		if j >= len(s) || s[j] != '%' {
			return nil, fmt.Errorf("accesslog: position %d: operator %s: missing closing %%", start, name)
		}
		o, err := compileOp(name, arg, hasArg)
		if c, ok := custom[name]; ok && errors.Is(err, errUnknown) {
			if hasArg {
				err = errors.New("takes no argument")
			} else {
				o, err = op{fn: c.Append, numeric: c.Numeric}, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("accesslog: position %d: operator %s: %w", start, s[start:j+1], err)
		}
		if maxLen >= 0 {
			o = truncate(o, maxLen)
		}
		flush()
		ops = append(ops, o)
		i = j + 1
	}
	flush()
	return ops, nil
}

func isNameByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func literal(s string) op {
	return op{fn: func(b []byte, _ *filter.Exchange) []byte { return append(b, s...) }}
}

func truncate(o op, n int) op {
	fn := o.fn
	o.fn = func(b []byte, x *filter.Exchange) []byte {
		start := len(b)
		b = fn(b, x)
		if len(b)-start > n {
			b = b[:start+n]
		}
		return b
	}
	return o
}

// errUnknown reports an operator this package does not implement.
var errUnknown = errors.New("unknown operator")

func compileOp(name, arg string, hasArg bool) (op, error) {
	switch name {
	case "REQ", "RESP", "TRAILER":
		if arg == "" {
			return op{}, fmt.Errorf("needs a header name argument")
		}
		return headerOp(name, arg)
	case "START_TIME":
		layout := defaultTimeLayout
		if hasArg && arg != "" {
			var err error
			if layout, err = parseTimeFormat(arg); err != nil {
				return op{}, err
			}
		}
		return op{fn: func(b []byte, x *filter.Exchange) []byte {
			if x.Start.IsZero() {
				return append(b, '-')
			}
			return appendTime(b, x.Start.UTC(), layout)
		}}, nil
	}
	o, ok := simpleOps[name]
	switch {
	case !ok:
		return op{}, errUnknown
	case hasArg:
		return op{}, errors.New("takes no argument")
	}
	return o, nil
}

// simpleOps are the operators without arguments. It is read only at
// compile time.
var simpleOps = map[string]op{
	"PROTOCOL": {fn: func(b []byte, x *filter.Exchange) []byte {
		r := x.In
		switch {
		case r.ProtoMajor == 2:
			return append(b, "HTTP/2"...)
		case r.ProtoMajor == 3:
			return append(b, "HTTP/3"...)
		case r.Proto != "":
			return append(b, r.Proto...)
		}
		return append(b, '-')
	}},
	"RESPONSE_CODE": {numeric: true, fn: func(b []byte, x *filter.Exchange) []byte {
		return strconv.AppendInt(b, int64(x.Status), 10)
	}},
	"RESPONSE_CODE_DETAILS": {fn: func(b []byte, x *filter.Exchange) []byte {
		if x.Details == "" && x.Err == nil && x.Endpoint != "" && x.Resp != nil {
			// An upstream's response, passed on unchanged.
			return append(b, "via_upstream"...)
		}
		return appendOrDash(b, x.Details)
	}},
	"RESPONSE_FLAGS": {fn: func(b []byte, x *filter.Exchange) []byte {
		return append(b, x.Flags.String()...)
	}},
	"BYTES_RECEIVED": {numeric: true, fn: func(b []byte, x *filter.Exchange) []byte {
		return strconv.AppendInt(b, x.BytesReceived, 10)
	}},
	"BYTES_SENT": {numeric: true, fn: func(b []byte, x *filter.Exchange) []byte {
		return strconv.AppendInt(b, x.BytesSent, 10)
	}},
	"DURATION": {numeric: true, fn: func(b []byte, x *filter.Exchange) []byte {
		return appendMillis(b, x.Start, x.End)
	}},
	"REQUEST_DURATION": {numeric: true, fn: func(b []byte, x *filter.Exchange) []byte {
		return appendMillis(b, x.Start, x.RequestEnd)
	}},
	"RESPONSE_DURATION": {numeric: true, fn: func(b []byte, x *filter.Exchange) []byte {
		return appendMillis(b, x.Start, x.ResponseStart)
	}},
	"UPSTREAM_HOST": {fn: func(b []byte, x *filter.Exchange) []byte {
		return appendOrDash(b, x.Endpoint)
	}},
	"UPSTREAM_CLUSTER": {fn: func(b []byte, x *filter.Exchange) []byte {
		return appendOrDash(b, x.Cluster)
	}},
	"UPSTREAM_TRANSPORT_FAILURE_REASON": {fn: appendTransportFailure},
	"DOWNSTREAM_REMOTE_ADDRESS": {fn: func(b []byte, x *filter.Exchange) []byte {
		return appendOrDash(b, x.In.RemoteAddr)
	}},
	"DOWNSTREAM_LOCAL_ADDRESS": {fn: func(b []byte, x *filter.Exchange) []byte {
		if a, ok := x.In.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a != nil {
			return appendOrDash(b, a.String())
		}
		return append(b, '-')
	}},
	"REQUESTED_SERVER_NAME": {fn: func(b []byte, x *filter.Exchange) []byte {
		if x.In.TLS == nil {
			return append(b, '-')
		}
		return appendOrDash(b, x.In.TLS.ServerName)
	}},
	"ROUTE_NAME": {fn: func(b []byte, x *filter.Exchange) []byte {
		if x.Route == nil {
			return append(b, '-')
		}
		return appendOrDash(b, x.Route.Name())
	}},
	"UPSTREAM_REQUEST_ATTEMPT_COUNT": {numeric: true, fn: func(b []byte, x *filter.Exchange) []byte {
		return strconv.AppendInt(b, int64(x.Attempts), 10)
	}},
}

// appendTransportFailure appends why the upstream connection failed, for
// exchanges flagged UF or UC: the message of the first error in x.Err's
// chain that is not a local reply or, when the local reply hides the
// cause, the reason in its details ("connection_failure" from
// "upstream_reset_before_response_started{connection_failure}"). As in
// Envoy, spaces become underscores.
func appendTransportFailure(b []byte, x *filter.Exchange) []byte {
	if x.Err == nil || x.Flags&(filter.FlagUpstreamConnectionFailure|filter.FlagUpstreamConnectionTermination) == 0 {
		return append(b, '-')
	}
	var reason string
	for err := x.Err; err != nil; err = errors.Unwrap(err) {
		if _, local := err.(*filter.ReplyError); !local {
			reason = err.Error()
			break
		}
	}
	if reason == "" {
		if i := strings.IndexByte(x.Details, '{'); i >= 0 && strings.HasSuffix(x.Details, "}") {
			reason = x.Details[i+1 : len(x.Details)-1]
		}
	}
	if reason == "" {
		return append(b, '-')
	}
	for i := 0; i < len(reason); i++ {
		c := reason[i]
		if c == ' ' || c == '\t' || c == '\n' {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

func appendOrDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return append(b, s...)
}

// appendMillis appends to-from in whole milliseconds (truncated, as Envoy
// does), or "-" when either time is unset.
func appendMillis(b []byte, from, to time.Time) []byte {
	if from.IsZero() || to.IsZero() {
		return append(b, '-')
	}
	return strconv.AppendInt(b, to.Sub(from).Milliseconds(), 10)
}

// getter reads one header-like value from an exchange; ok is false when
// the value is absent.
type getter func(x *filter.Exchange) (v string, ok bool)

// headerOp compiles REQ(X?Y), RESP(X?Y) and TRAILER(X?Y).
func headerOp(kind, arg string) (op, error) {
	main, alt, hasAlt := strings.Cut(arg, "?")
	g1, err := headerGetter(kind, main)
	if err != nil {
		return op{}, err
	}
	var g2 getter
	if hasAlt {
		if g2, err = headerGetter(kind, alt); err != nil {
			return op{}, err
		}
	}
	return op{fn: func(b []byte, x *filter.Exchange) []byte {
		v, ok := g1(x)
		if !ok && g2 != nil {
			v, ok = g2(x)
		}
		if !ok {
			return append(b, '-')
		}
		return append(b, v...)
	}}, nil
}

func headerGetter(kind, name string) (getter, error) {
	if name == "" {
		return nil, fmt.Errorf("empty header name")
	}
	lower := strings.ToLower(name)
	if kind == "REQ" {
		switch lower {
		case ":method":
			return func(x *filter.Exchange) (string, bool) { return x.In.Method, x.In.Method != "" }, nil
		case ":path":
			return func(x *filter.Exchange) (string, bool) {
				if x.In.RequestURI != "" {
					return x.In.RequestURI, true
				}
				if x.In.URL == nil {
					return "", false
				}
				return x.In.URL.RequestURI(), true
			}, nil
		case ":authority", "host":
			return func(x *filter.Exchange) (string, bool) { return x.In.Host, x.In.Host != "" }, nil
		case ":scheme":
			return func(x *filter.Exchange) (string, bool) {
				if x.In.URL != nil && x.In.URL.Scheme != "" {
					return x.In.URL.Scheme, true
				}
				if x.In.TLS != nil {
					return "https", true
				}
				return "http", true
			}, nil
		}
	}
	if strings.HasPrefix(lower, ":") {
		return nil, fmt.Errorf("unknown pseudo-header %s", name)
	}
	key := http.CanonicalHeaderKey(name)
	switch kind {
	case "REQ":
		return func(x *filter.Exchange) (string, bool) { return first(x.In.Header[key]) }, nil
	case "RESP":
		return func(x *filter.Exchange) (string, bool) {
			if x.Resp == nil {
				return "", false
			}
			return first(x.Resp.Header[key])
		}, nil
	default: // TRAILER
		return func(x *filter.Exchange) (string, bool) {
			if x.Resp == nil {
				return "", false
			}
			return first(x.Resp.Trailer[key])
		}, nil
	}
}

func first(vs []string) (string, bool) {
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}
