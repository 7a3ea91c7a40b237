package route

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Match selects the requests a Rule serves: Envoy's RouteMatch. All the
// conditions that are set must hold.
//
// At most one path specifier may be set: Prefix, Path, Regex or
// PathSeparatedPrefix. When none is set the rule matches every path
// (Envoy's prefix "" / "/"). Paths are matched against the request's
// URL.Path, without the query.
//
// A Match is plain data and is not safe for concurrent mutation.
type Match struct {
	// Prefix matches paths that begin with it (Envoy's prefix).
	Prefix string
	// Path matches exactly this path (Envoy's path).
	Path string
	// Regex matches paths that the RE2 expression matches in full (Envoy's
	// safe_regex). It is not affected by CaseInsensitive; use (?i).
	Regex string
	// PathSeparatedPrefix matches the path itself or paths that continue it
	// with "/" (Envoy's path_separated_prefix): "/api" matches "/api" and
	// "/api/x" but not "/apix". It must start with "/" and must not end
	// with "/".
	PathSeparatedPrefix string
	// CaseInsensitive makes Prefix, Path and PathSeparatedPrefix match
	// ASCII case-insensitively. The zero value is Envoy's default
	// case_sensitive: true.
	CaseInsensitive bool

	// Headers must all match (Envoy's headers).
	Headers []HeaderMatcher
	// QueryParameters must all match (Envoy's query_parameters).
	QueryParameters []QueryParameterMatcher
	// Methods, when not empty, restricts the rule to these request methods
	// (a convenience for Envoy's ":method" header matcher). Methods are
	// compared case-sensitively.
	Methods []string
	// GRPC restricts the rule to gRPC requests, i.e. content-type
	// "application/grpc" or "application/grpc+..." / "application/grpc;..."
	// (Envoy's grpc match).
	GRPC bool
}

// StringMatcher matches a string: Envoy's type.matcher.v3.StringMatcher.
//
// At most one of Prefix, Suffix, Contains and Regex may be set; when none is
// set the matcher is an exact match against Exact (which may be empty, to
// match an empty string). Exact must be empty when another one is set.
//
// A StringMatcher is plain data and is not safe for concurrent mutation.
type StringMatcher struct {
	// Exact matches the string itself.
	Exact string
	// Prefix matches strings that begin with it.
	Prefix string
	// Suffix matches strings that end with it.
	Suffix string
	// Contains matches strings that contain it.
	Contains string
	// Regex matches strings that the RE2 expression matches in full
	// (Envoy's safe_regex). IgnoreCase does not apply; use (?i).
	Regex string
	// IgnoreCase makes Exact, Prefix, Suffix and Contains ASCII
	// case-insensitive (Envoy's ignore_case).
	IgnoreCase bool
}

// Validate reports whether the matcher is well formed.
func (m *StringMatcher) Validate() error {
	n := 0
	for _, s := range [...]string{m.Prefix, m.Suffix, m.Contains, m.Regex} {
		if s != "" {
			n++
		}
	}
	if n > 1 || (n == 1 && m.Exact != "") {
		return errors.New("match_pattern: at most one of exact, prefix, suffix, contains, safe_regex")
	}
	if m.Regex != "" {
		if _, err := compileFull(m.Regex); err != nil {
			return fmt.Errorf("safe_regex: %w", err)
		}
	}
	return nil
}

// Int64Range is the half-open range [Start, End) of Envoy's
// type.v3.Int64Range. It is plain data, not safe for concurrent mutation.
type Int64Range struct {
	Start, End int64
}

// HeaderMatcher matches a request header: Envoy's HeaderMatcher.
//
// At most one of String, Range and Present may be set; a matcher with none
// of them is a presence match, as in Envoy. A header with several values is
// matched against its values joined with ",". Name may be a pseudo-header:
// ":method", ":authority" (also reachable as "host"), ":path" (with query)
// or ":scheme".
//
// A HeaderMatcher is plain data and is not safe for concurrent mutation.
type HeaderMatcher struct {
	// Name is the header name, case-insensitive. Required.
	Name string
	// String matches the header value (Envoy's string_match).
	String *StringMatcher
	// Range matches a header value that is a decimal integer within the
	// range (Envoy's range_match).
	Range *Int64Range
	// Present matches when the header is present (Envoy's present_match).
	Present bool
	// Invert inverts the result (Envoy's invert_match). An inverted
	// presence match matches requests without the header.
	Invert bool
}

// Validate reports whether the matcher is well formed.
func (m *HeaderMatcher) Validate() error {
	if m.Name == "" || (!validHeaderName(m.Name) && !isPseudo(m.Name)) {
		return fmt.Errorf("name: invalid header name %q", m.Name)
	}
	n := 0
	if m.String != nil {
		n++
		if err := m.String.Validate(); err != nil {
			return fmt.Errorf("string_match.%w", err)
		}
	}
	if m.Range != nil {
		n++
		if m.Range.Start >= m.Range.End {
			return fmt.Errorf("range_match: start %d must be below end %d", m.Range.Start, m.Range.End)
		}
	}
	if m.Present {
		n++
	}
	if n > 1 {
		return errors.New("header_match_specifier: at most one of string_match, range_match, present_match")
	}
	return nil
}

func isPseudo(name string) bool {
	switch name {
	case ":method", ":authority", ":path", ":scheme":
		return true
	}
	return false
}

// QueryParameterMatcher matches a query parameter: Envoy's
// QueryParameterMatcher. Parameter names and values are URL-decoded before
// matching; the first occurrence of the name is used.
//
// With String nil it is a presence match (the name appears, with or without
// a value).
//
// A QueryParameterMatcher is plain data and is not safe for concurrent
// mutation.
type QueryParameterMatcher struct {
	// Name is the parameter name, case-sensitive. Required.
	Name string
	// String matches the parameter's value (Envoy's string_match).
	String *StringMatcher
	// Present matches when the parameter is present (Envoy's
	// present_match). It must not be combined with String.
	Present bool
}

// Validate reports whether the matcher is well formed.
func (m *QueryParameterMatcher) Validate() error {
	if m.Name == "" {
		return errors.New("name: must not be empty")
	}
	if m.String != nil && m.Present {
		return errors.New("query_parameter_match_specifier: at most one of string_match, present_match")
	}
	if m.String != nil {
		if err := m.String.Validate(); err != nil {
			return fmt.Errorf("string_match.%w", err)
		}
	}
	return nil
}

// Validate reports whether the match is well formed. Errors name the field
// path relative to the match, e.g. "headers[1].name: ...".
func (m *Match) Validate() error {
	n := 0
	for _, s := range [...]string{m.Prefix, m.Path, m.Regex, m.PathSeparatedPrefix} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return errors.New("path_specifier: at most one of prefix, path, safe_regex, path_separated_prefix")
	}
	if err := validPathPart(m.Prefix); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	if err := validPathPart(m.Path); err != nil {
		return fmt.Errorf("path: %w", err)
	}
	if m.Regex != "" {
		if _, err := compileFull(m.Regex); err != nil {
			return fmt.Errorf("safe_regex: %w", err)
		}
	}
	if p := m.PathSeparatedPrefix; p != "" {
		if p[0] != '/' || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#") {
			return fmt.Errorf("path_separated_prefix: %q must start with \"/\", must not end with \"/\" nor contain \"?\" or \"#\"", p)
		}
		if err := validPathPart(p); err != nil {
			return fmt.Errorf("path_separated_prefix: %w", err)
		}
	}
	for i := range m.Headers {
		if err := m.Headers[i].Validate(); err != nil {
			return fmt.Errorf("headers[%d].%w", i, err)
		}
	}
	for i := range m.QueryParameters {
		if err := m.QueryParameters[i].Validate(); err != nil {
			return fmt.Errorf("query_parameters[%d].%w", i, err)
		}
	}
	for i, meth := range m.Methods {
		if !validHeaderName(meth) {
			return fmt.Errorf("methods[%d]: invalid method %q", i, meth)
		}
	}
	return nil
}

func (m Match) clone() Match {
	m.Headers = cloneSlice(m.Headers)
	for i := range m.Headers {
		if s := m.Headers[i].String; s != nil {
			c := *s
			m.Headers[i].String = &c
		}
		if r := m.Headers[i].Range; r != nil {
			c := *r
			m.Headers[i].Range = &c
		}
	}
	m.QueryParameters = cloneSlice(m.QueryParameters)
	for i := range m.QueryParameters {
		if s := m.QueryParameters[i].String; s != nil {
			c := *s
			m.QueryParameters[i].String = &c
		}
	}
	m.Methods = cloneSlice(m.Methods)
	return m
}

// compileFull compiles an RE2 expression anchored at both ends, as
// Envoy's safe_regex matches the whole string.
func compileFull(expr string) (*regexp.Regexp, error) {
	if _, err := syntax.Parse(expr, syntax.Perl); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// regexLiteralPrefix returns a literal every full match of expr starts
// with ("" when unknown). It is used only to index routes.
func regexLiteralPrefix(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	var b strings.Builder
	literalPrefix(re, &b)
	p := b.String()
	// Invalid UTF-8 in a path matches U+FFFD, so the literal is only
	// required up to the first replacement character.
	if i := strings.IndexRune(p, utf8.RuneError); i >= 0 {
		p = p[:i]
	}
	return p
}

// literalPrefix appends the required literal prefix of re to b and reports
// whether re is entirely that literal (so a following sibling may extend it).
func literalPrefix(re *syntax.Regexp, b *strings.Builder) bool {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return false
		}
		b.WriteString(string(re.Rune))
		return true
	case syntax.OpCapture:
		return literalPrefix(re.Sub[0], b)
	case syntax.OpEmptyMatch:
		return true
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !literalPrefix(s, b) {
				return false
			}
		}
		return true
	}
	return false
}

// stringMatcher is a compiled StringMatcher.
type stringMatcher struct {
	kind       uint8
	value      string // lower-cased when ignoreCase
	ignoreCase bool
	re         *regexp.Regexp
}

const (
	smExact uint8 = iota
	smPrefix
	smSuffix
	smContains
	smRegex
)

func newStringMatcher(m *StringMatcher) stringMatcher {
	sm := stringMatcher{ignoreCase: m.IgnoreCase}
	switch {
	case m.Prefix != "":
		sm.kind, sm.value = smPrefix, m.Prefix
	case m.Suffix != "":
		sm.kind, sm.value = smSuffix, m.Suffix
	case m.Contains != "":
		sm.kind, sm.value = smContains, m.Contains
	case m.Regex != "":
		sm.kind = smRegex
		sm.re, _ = compileFull(m.Regex) // validated
		sm.ignoreCase = false
	default:
		sm.kind, sm.value = smExact, m.Exact
	}
	if sm.ignoreCase {
		sm.value = lowerASCII(sm.value)
	}
	return sm
}

func (m *stringMatcher) match(s string) bool {
	switch m.kind {
	case smExact:
		if m.ignoreCase {
			return len(s) == len(m.value) && equalFoldASCII(s, m.value)
		}
		return s == m.value
	case smPrefix:
		if m.ignoreCase {
			return len(s) >= len(m.value) && equalFoldASCII(s[:len(m.value)], m.value)
		}
		return strings.HasPrefix(s, m.value)
	case smSuffix:
		if m.ignoreCase {
			return len(s) >= len(m.value) && equalFoldASCII(s[len(s)-len(m.value):], m.value)
		}
		return strings.HasSuffix(s, m.value)
	case smContains:
		if m.ignoreCase {
			return containsFoldASCII(s, m.value)
		}
		return strings.Contains(s, m.value)
	default:
		return m.re.MatchString(s)
	}
}

// equalFoldASCII reports whether s equals lower (already lower case) under
// ASCII case folding; len(s) must equal len(lower).
func equalFoldASCII(s, lower string) bool {
	for i := 0; i < len(lower); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func containsFoldASCII(s, lower string) bool {
	for i := 0; i+len(lower) <= len(s); i++ {
		if equalFoldASCII(s[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}

// headerMatcher is a compiled HeaderMatcher.
type headerMatcher struct {
	key    string // canonical header key, or a pseudo-header name
	pseudo bool
	kind   uint8 // hmPresent, hmString, hmRange
	str    stringMatcher
	rng    Int64Range
	invert bool
}

const (
	hmPresent uint8 = iota
	hmString
	hmRange
)

func newHeaderMatcher(m *HeaderMatcher) headerMatcher {
	hm := headerMatcher{invert: m.Invert}
	hm.key, hm.pseudo = headerKey(m.Name)
	switch {
	case m.String != nil:
		hm.kind, hm.str = hmString, newStringMatcher(m.String)
	case m.Range != nil:
		hm.kind, hm.rng = hmRange, *m.Range
	default:
		hm.kind = hmPresent
	}
	return hm
}

// headerKey returns the key under which name is looked up: a pseudo-header
// name (Host is :authority, as net/http moves it to Request.Host) or a
// canonical header key.
func headerKey(name string) (key string, pseudo bool) {
	if isPseudo(name) {
		return name, true
	}
	key = http.CanonicalHeaderKey(name)
	if key == "Host" {
		return ":authority", true
	}
	return key, false
}

// pseudoValue returns the value of a pseudo-header of r.
func pseudoValue(r *http.Request, name string) string {
	switch name {
	case ":method":
		return r.Method
	case ":authority":
		return r.Host
	case ":scheme":
		return requestScheme(r)
	case ":path":
		// Origin form, as Envoy's :path; RequestURI may be absolute.
		v := r.RequestURI
		if (v == "" || v[0] != '/') && r.URL != nil {
			v = r.URL.RequestURI()
		}
		return v
	}
	return ""
}

func (m *headerMatcher) match(r *http.Request) bool {
	var v string
	present := true
	if m.pseudo {
		v = pseudoValue(r, m.key)
	} else {
		vs := r.Header[m.key]
		switch len(vs) {
		case 0:
			present = false
		case 1:
			v = vs[0]
		default:
			v = strings.Join(vs, ",")
		}
	}
	var ok bool
	switch m.kind {
	case hmPresent:
		ok = present
	case hmString:
		ok = present && m.str.match(v)
	default:
		if present {
			n, err := strconv.ParseInt(v, 10, 64)
			ok = err == nil && n >= m.rng.Start && n < m.rng.End
		}
	}
	return ok != m.invert
}

func requestScheme(r *http.Request) string {
	if r.URL != nil && r.URL.Scheme != "" {
		return r.URL.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// queryMatcher is a compiled QueryParameterMatcher.
type queryMatcher struct {
	name    string
	present bool
	str     stringMatcher
}

func newQueryMatcher(m *QueryParameterMatcher) queryMatcher {
	q := queryMatcher{name: m.Name, present: m.String == nil}
	if m.String != nil {
		q.str = newStringMatcher(m.String)
	}
	return q
}

// match scans the raw query for the first parameter named q.name, without
// building a url.Values map.
func (q *queryMatcher) match(rawQuery string) bool {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			dk, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			k = dk
		}
		if k != q.name {
			continue
		}
		if q.present {
			return true
		}
		if strings.ContainsAny(v, "%+") {
			dv, err := url.QueryUnescape(v)
			if err != nil {
				return false
			}
			v = dv
		}
		return q.str.match(v)
	}
	return false
}

// isGRPC reports whether the request carries a gRPC content type.
func isGRPC(r *http.Request) bool {
	vs := r.Header["Content-Type"]
	if len(vs) == 0 {
		return false
	}
	ct := vs[0]
	const g = "application/grpc"
	if !strings.HasPrefix(ct, g) {
		return false
	}
	return len(ct) == len(g) || ct[len(g)] == '+' || ct[len(g)] == ';'
}
