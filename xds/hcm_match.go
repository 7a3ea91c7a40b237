package xds

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/route"
)

// logPredicate is a compiled AccessLogFilter: Envoy's access log filters,
// also used by local reply mappers. status is the response status to
// test. It is immutable and safe for concurrent use.
type logPredicate func(x *filter.Exchange, status int) bool

// compileLogFilter compiles the access log filters Portico implements:
// status_code_filter, duration_filter, response_flag_filter,
// header_filter, runtime_filter (its percent_sampled: Portico has no
// runtime, so runtime keys are never looked up), and_filter and
// or_filter. The allow-list rejects the others before this runs.
func compileLogFilter(f *accesslogv3.AccessLogFilter, path string) (logPredicate, error) {
	switch s := f.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_StatusCodeFilter:
		cmp, err := comparison(s.StatusCodeFilter.GetComparison(), path+".status_code_filter.comparison")
		if err != nil {
			return nil, err
		}
		return func(_ *filter.Exchange, status int) bool { return cmp(uint64(status)) }, nil
	case *accesslogv3.AccessLogFilter_DurationFilter:
		cmp, err := comparison(s.DurationFilter.GetComparison(), path+".duration_filter.comparison")
		if err != nil {
			return nil, err
		}
		return func(x *filter.Exchange, _ int) bool {
			end := x.End
			if end.IsZero() {
				end = time.Now()
			}
			return cmp(uint64(end.Sub(x.Start).Milliseconds()))
		}, nil
	case *accesslogv3.AccessLogFilter_ResponseFlagFilter:
		var want filter.Flags
		for i, code := range s.ResponseFlagFilter.GetFlags() {
			fl, ok := parseFlag(code)
			if !ok {
				return nil, fmt.Errorf("%s.response_flag_filter.flags[%d]: %q is not a response flag Portico sets: %w", path, i, code, ErrUnsupported)
			}
			want |= fl
		}
		if want == 0 {
			return func(x *filter.Exchange, _ int) bool { return x.Flags != 0 }, nil
		}
		return func(x *filter.Exchange, _ int) bool { return x.Flags&want != 0 }, nil
	case *accesslogv3.AccessLogFilter_HeaderFilter:
		m, err := headerPredicate(s.HeaderFilter, path+".header_filter.header")
		if err != nil {
			return nil, err
		}
		return func(x *filter.Exchange, _ int) bool { return m(requestOf(x)) }, nil
	case *accesslogv3.AccessLogFilter_RuntimeFilter:
		frac := 0.0
		if fp := s.RuntimeFilter.GetPercentSampled(); fp != nil {
			frac = fraction(fp)
		}
		return func(*filter.Exchange, int) bool { return rand.Float64() < frac }, nil
	case *accesslogv3.AccessLogFilter_AndFilter:
		ps, err := compileLogFilters(s.AndFilter.GetFilters(), path+".and_filter.filters")
		if err != nil {
			return nil, err
		}
		return func(x *filter.Exchange, status int) bool {
			for _, p := range ps {
				if !p(x, status) {
					return false
				}
			}
			return true
		}, nil
	case *accesslogv3.AccessLogFilter_OrFilter:
		ps, err := compileLogFilters(s.OrFilter.GetFilters(), path+".or_filter.filters")
		if err != nil {
			return nil, err
		}
		return func(x *filter.Exchange, status int) bool {
			for _, p := range ps {
				if p(x, status) {
					return true
				}
			}
			return false
		}, nil
	case nil:
		return nil, fmt.Errorf("%s: no filter specifier", path)
	}
	// Reported by the allow-list; reached only in lenient mode.
	return func(*filter.Exchange, int) bool { return true }, nil
}

func compileLogFilters(fs []*accesslogv3.AccessLogFilter, path string) ([]logPredicate, error) {
	out := make([]logPredicate, 0, len(fs))
	for i, f := range fs {
		p, err := compileLogFilter(f, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func comparison(c *accesslogv3.ComparisonFilter, path string) (func(uint64) bool, error) {
	// Portico has no runtime: the value is always default_value.
	v := uint64(c.GetValue().GetDefaultValue())
	switch c.GetOp() {
	case accesslogv3.ComparisonFilter_EQ:
		return func(n uint64) bool { return n == v }, nil
	case accesslogv3.ComparisonFilter_GE:
		return func(n uint64) bool { return n >= v }, nil
	case accesslogv3.ComparisonFilter_LE:
		return func(n uint64) bool { return n <= v }, nil
	case accesslogv3.ComparisonFilter_NE:
		return func(n uint64) bool { return n != v }, nil
	}
	return nil, fmt.Errorf("%s.op: unknown value %d", path, c.GetOp())
}

// parseFlag returns the flag with Envoy's short code.
func parseFlag(code string) (filter.Flags, bool) {
	// Each single flag prints as its code; past the last one, as "".
	for f := filter.Flags(1); f != 0; f <<= 1 {
		switch f.String() {
		case code:
			return f, true
		case "":
			return 0, false
		}
	}
	return 0, false
}

// requestOf returns the request as the filters left it.
func requestOf(x *filter.Exchange) *http.Request {
	if x.Out != nil {
		return x.Out
	}
	return x.In
}

// headerPredicate compiles a HeaderMatcher with the route package's own
// matcher, by way of a one-rule table, so that local reply and access log
// header filters match exactly as routes do (pseudo-headers included).
func headerPredicate(hf *accesslogv3.HeaderFilter, path string) (func(*http.Request) bool, error) {
	hm, err := headerMatcher(hf.GetHeader(), path)
	if err != nil {
		return nil, err
	}
	t, err := route.New(route.Config{
		Name: "header_filter",
		VirtualHosts: []route.VirtualHost{{
			Name:    "any",
			Domains: []string{"*"},
			Rules: []route.Rule{{
				Match:          route.Match{Regex: ".*", Headers: []route.HeaderMatcher{hm}},
				DirectResponse: &route.DirectResponse{Status: http.StatusOK},
			}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return func(r *http.Request) bool { return r != nil && t.Match(r) != nil }, nil
}

// replyFormat is a compiled SubstitutionFormatString for local reply
// bodies: text with operators, or a JSON object whose string values are
// formats. It is immutable and safe for concurrent use.
type replyFormat struct {
	text        []fmtOp
	json        map[string]any // values: []fmtOp, or literal JSON values
	contentType string
}

// fmtOp is a literal (op == "") or an operator.
type fmtOp struct {
	lit string
	op  string // LOCAL_REPLY_BODY, RESPONSE_CODE, RESPONSE_CODE_DETAILS, RESPONSE_FLAGS, REQ
	arg string // REQ's header name
}

// replyEnv is what a local reply format is evaluated against.
type replyEnv struct {
	x      *filter.Exchange
	status int
	body   string
}

func compileReplyFormat(sf *corev3.SubstitutionFormatString, path string) (*replyFormat, error) {
	out := &replyFormat{contentType: sf.GetContentType()}
	var err error
	switch f := sf.GetFormat().(type) {
	case *corev3.SubstitutionFormatString_TextFormat:
		out.text, err = compileFmt(f.TextFormat, path+".text_format")
	case *corev3.SubstitutionFormatString_TextFormatSource:
		var b []byte
		if b, err = dataSourceBytes(f.TextFormatSource, path+".text_format_source"); err == nil {
			out.text, err = compileFmt(string(b), path+".text_format_source")
		}
	case *corev3.SubstitutionFormatString_JsonFormat:
		out.json, err = compileJSONFmt(f.JsonFormat, path+".json_format")
		if out.contentType == "" {
			out.contentType = "application/json"
		}
	default:
		return nil, fmt.Errorf("%s: no format", path)
	}
	if err != nil {
		return nil, err
	}
	if out.contentType == "" {
		out.contentType = "text/plain"
	}
	return out, nil
}

func compileJSONFmt(s *structpb.Struct, path string) (map[string]any, error) {
	out := make(map[string]any, len(s.GetFields()))
	for k, v := range s.GetFields() {
		p := path + "." + k
		switch v := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			ops, err := compileFmt(v.StringValue, p)
			if err != nil {
				return nil, err
			}
			out[k] = ops
		case *structpb.Value_StructValue:
			m, err := compileJSONFmt(v.StructValue, p)
			if err != nil {
				return nil, err
			}
			out[k] = m
		default:
			out[k] = v
		}
	}
	return out, nil
}

// compileFmt parses an Envoy format string with the operators a local
// reply body can use.
func compileFmt(s, path string) ([]fmtOp, error) {
	var ops []fmtOp
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			lit.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			lit.WriteByte('%')
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], '%')
		if end < 0 {
			return nil, fmt.Errorf("%s: unterminated operator at byte %d", path, i)
		}
		name := s[i+1 : i+1+end]
		op := fmtOp{op: name}
		switch {
		case name == "LOCAL_REPLY_BODY", name == "RESPONSE_CODE", name == "RESPONSE_CODE_DETAILS", name == "RESPONSE_FLAGS":
		case strings.HasPrefix(name, "REQ(") && strings.HasSuffix(name, ")"):
			op.op, op.arg = "REQ", name[4:len(name)-1]
			main, alt, _ := strings.Cut(op.arg, "?")
			if main == "" || strings.Contains(main[1:], ":") || strings.Contains(alt, ":") {
				return nil, fmt.Errorf("%s: operator %%%s%% at byte %d: only %%REQ(header)%% and %%REQ(header?alternative)%% are supported: %w", path, name, i, ErrUnsupported)
			}
		default:
			return nil, fmt.Errorf("%s: operator %%%s%% at byte %d: %w (local replies support %%LOCAL_REPLY_BODY%%, %%RESPONSE_CODE%%, %%RESPONSE_CODE_DETAILS%%, %%RESPONSE_FLAGS%% and %%REQ(header)%%)", path, name, i, ErrUnsupported)
		}
		if lit.Len() > 0 {
			ops = append(ops, fmtOp{lit: lit.String()})
			lit.Reset()
		}
		ops = append(ops, op)
		i += end + 1
	}
	if lit.Len() > 0 {
		ops = append(ops, fmtOp{lit: lit.String()})
	}
	return ops, nil
}

func (o *fmtOp) eval(e *replyEnv) string {
	switch o.op {
	case "":
		return o.lit
	case "LOCAL_REPLY_BODY":
		return e.body
	case "RESPONSE_CODE":
		return strconv.Itoa(e.status)
	case "RESPONSE_CODE_DETAILS":
		return e.x.Details
	case "RESPONSE_FLAGS":
		return e.x.Flags.String()
	case "REQ":
		r := requestOf(e.x)
		if r == nil {
			return ""
		}
		main, alt, _ := strings.Cut(o.arg, "?")
		if v := requestValue(r, main); v != "" || alt == "" {
			return v
		}
		return requestValue(r, alt)
	}
	return ""
}

func evalOps(ops []fmtOp, e *replyEnv) string {
	if len(ops) == 1 {
		return ops[0].eval(e)
	}
	var b strings.Builder
	for i := range ops {
		b.WriteString(ops[i].eval(e))
	}
	return b.String()
}

// render formats the reply body.
func (f *replyFormat) render(e *replyEnv) []byte {
	if f.json == nil {
		return []byte(evalOps(f.text, e))
	}
	b, err := json.Marshal(evalJSON(f.json, e))
	if err != nil {
		return []byte(e.body)
	}
	return append(b, '\n')
}

func evalJSON(m map[string]any, e *replyEnv) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case []fmtOp:
			s := evalOps(v, e)
			if len(v) == 1 && v[0].op == "RESPONSE_CODE" {
				out[k] = e.status // a number, as in Envoy
			} else {
				out[k] = s
			}
		case map[string]any:
			out[k] = evalJSON(v, e)
		case *structpb.Value_NumberValue:
			out[k] = v.NumberValue
		case *structpb.Value_BoolValue:
			out[k] = v.BoolValue
		case *structpb.Value_ListValue:
			out[k] = v.ListValue.AsSlice()
		default:
			out[k] = nil
		}
	}
	return out
}

// requestValue returns a request header, or a pseudo-header's value.
func requestValue(r *http.Request, name string) string {
	switch strings.ToLower(name) {
	case ":path":
		return r.URL.RequestURI()
	case ":method":
		return r.Method
	case ":authority":
		return r.Host
	case ":scheme":
		if r.TLS != nil {
			return "https"
		}
		return "http"
	}
	return r.Header.Get(name)
}
