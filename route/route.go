package route

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Route is a compiled Rule of a Table. It is immutable and safe for
// concurrent use; everything it returns (Rule, Retry, HashPolicy, Mirrors,
// FilterConfig, response bodies) is shared and must be treated as
// read-only.
type Route struct {
	index int
	vhost string
	rule  *Rule

	// Match.
	pathKind uint8
	lit      string // path literal; lower-cased when ci
	ci       bool
	re       *regexp.Regexp
	headers  []headerMatcher
	queries  []queryMatcher
	methods  []string
	grpc     bool

	// Action.
	cluster       string
	weighted      []WeightedCluster
	totalWeight   uint64
	clusterHeader string // canonical
	redirect      *Redirect
	direct        *DirectResponse
	directHeader  http.Header
	directBody    []byte

	// Rewrites and header mutations.
	needRewrite   bool
	pathRewrite   uint8
	prefixRewrite string
	rewriteRe     *regexp.Regexp
	rewriteTmpl   string
	hostRewrite   string
	hostHeader    string // canonical
	reqOwn        mutations
	respOwn       mutations
	reqLevels     []*mutations
	respLevels    []*mutations
	hostname      string

	// Upstream options.
	timeout time.Duration
	retry   *RetryPolicy
	mirrors []MirrorPolicy
	hashes  []hashMethod
}

// Path match kinds.
const (
	pathAny uint8 = iota
	pathPrefix
	pathExact
	pathRegex
	pathSeparated
)

// Path rewrite kinds.
const (
	rewriteNone uint8 = iota
	rewritePrefix
	rewriteRegex
)

func compileRoute(rule *Rule, vh *VirtualHost, index int, hostname string) *Route {
	m := &rule.Match
	r := &Route{index: index, vhost: vh.Name, rule: rule, ci: m.CaseInsensitive, grpc: m.GRPC, hostname: hostname}
	switch {
	case m.Prefix != "":
		r.pathKind, r.lit = pathPrefix, m.Prefix
	case m.Path != "":
		r.pathKind, r.lit = pathExact, m.Path
	case m.PathSeparatedPrefix != "":
		r.pathKind, r.lit = pathSeparated, m.PathSeparatedPrefix
	case m.Regex != "":
		r.pathKind = pathRegex
		r.re, _ = compileFull(m.Regex) // validated
		r.ci = false
	}
	if r.ci {
		r.lit = lowerASCII(r.lit)
	}
	for i := range m.Headers {
		r.headers = append(r.headers, newHeaderMatcher(&m.Headers[i]))
	}
	for i := range m.QueryParameters {
		r.queries = append(r.queries, newQueryMatcher(&m.QueryParameters[i]))
	}
	r.methods = m.Methods

	r.cluster = rule.Cluster
	r.weighted = rule.WeightedClusters
	for _, wc := range r.weighted {
		r.totalWeight += uint64(wc.Weight)
	}
	if rule.ClusterHeader != "" {
		r.clusterHeader = http.CanonicalHeaderKey(rule.ClusterHeader)
	}
	r.redirect = rule.Redirect
	if d := rule.DirectResponse; d != nil {
		r.direct = d
		r.directHeader = d.Header.Clone()
		if r.directHeader == nil {
			r.directHeader = make(http.Header)
		}
		if d.Body != "" {
			r.directBody = []byte(d.Body)
			if r.directHeader.Get("Content-Type") == "" {
				r.directHeader.Set("Content-Type", "text/plain")
			}
		}
	}

	switch {
	case rule.PrefixRewrite != "":
		r.pathRewrite, r.prefixRewrite = rewritePrefix, rule.PrefixRewrite
	case rule.RegexRewrite != nil:
		r.pathRewrite = rewriteRegex
		r.rewriteRe = regexp.MustCompile(rule.RegexRewrite.Pattern) // validated
		r.rewriteTmpl, _ = goTemplate(rule.RegexRewrite.Substitution, r.rewriteRe.NumSubexp())
	}
	r.hostRewrite = rule.HostRewrite
	if rule.HostRewriteHeader != "" {
		r.hostHeader = http.CanonicalHeaderKey(rule.HostRewriteHeader)
	}
	r.reqOwn = compileMutations(rule.RequestHeadersToAdd, rule.RequestHeadersToRemove)
	r.respOwn = compileMutations(rule.ResponseHeadersToAdd, rule.ResponseHeadersToRemove)

	switch {
	case rule.Timeout == 0:
		r.timeout = DefaultTimeout
	case rule.Timeout > 0:
		r.timeout = rule.Timeout
	}
	r.retry = rule.Retry
	if r.retry == nil {
		r.retry = vh.RetryPolicy
	}
	r.hashes = compileHashPolicies(rule.HashPolicy)
	r.mirrors = cloneSlice(rule.Mirrors)
	for i := range r.mirrors {
		if r.mirrors[i].Fraction == 0 {
			r.mirrors[i].Fraction = 1
		}
	}
	return r
}

// indexKey is the literal every path this route matches starts with.
func (r *Route) indexKey() string {
	switch {
	case r.ci:
		return ""
	case r.pathKind == pathRegex:
		return regexLiteralPrefix(r.rule.Match.Regex)
	}
	return r.lit
}

// matches reports whether the route's match holds for req with path path.
func (r *Route) matches(req *http.Request, path string) bool {
	if !r.matchPath(path) {
		return false
	}
	if len(r.methods) > 0 {
		ok := false
		for _, m := range r.methods {
			if m == req.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if r.grpc && !isGRPC(req) {
		return false
	}
	for i := range r.headers {
		if !r.headers[i].match(req) {
			return false
		}
	}
	if len(r.queries) > 0 {
		var raw string
		if req.URL != nil {
			raw = req.URL.RawQuery
		}
		for i := range r.queries {
			if !r.queries[i].match(raw) {
				return false
			}
		}
	}
	return true
}

func (r *Route) matchPath(path string) bool {
	switch r.pathKind {
	case pathAny:
		return true
	case pathPrefix:
		if len(path) < len(r.lit) {
			return false
		}
		if r.ci {
			return equalFoldASCII(path[:len(r.lit)], r.lit)
		}
		return path[:len(r.lit)] == r.lit
	case pathExact:
		if len(path) != len(r.lit) {
			return false
		}
		if r.ci {
			return equalFoldASCII(path, r.lit)
		}
		return path == r.lit
	case pathSeparated:
		if len(path) < len(r.lit) || len(path) > len(r.lit) && path[len(r.lit)] != '/' {
			return false
		}
		if r.ci {
			return equalFoldASCII(path[:len(r.lit)], r.lit)
		}
		return path[:len(r.lit)] == r.lit
	default:
		return r.re.MatchString(path)
	}
}

// Name returns the rule's name.
func (r *Route) Name() string { return r.rule.Name }

// Index returns the route's position in its Table's Routes.
func (r *Route) Index() int { return r.index }

// VirtualHost returns the name of the route's virtual host.
func (r *Route) VirtualHost() string { return r.vhost }

// Rule returns the configuration the route was compiled from; it belongs
// to the Table and must not be modified.
func (r *Route) Rule() *Rule { return r.rule }

// ClusterFor returns the upstream cluster for req: the rule's cluster, a
// weighted pick, or the value of the cluster header. It returns "" for
// redirect and direct-response routes and when the cluster header is
// absent.
func (r *Route) ClusterFor(req *http.Request) string {
	switch {
	case r.cluster != "":
		return r.cluster
	case r.totalWeight > 0:
		return r.pickWeighted(rand.Uint64N(r.totalWeight))
	case r.clusterHeader != "":
		return firstHeader(req.Header, r.clusterHeader)
	}
	return ""
}

// pickWeighted returns the weighted cluster owning point n in
// [0, totalWeight).
func (r *Route) pickWeighted(n uint64) string {
	for _, wc := range r.weighted {
		if n < uint64(wc.Weight) {
			return wc.Name
		}
		n -= uint64(wc.Weight)
	}
	return r.weighted[len(r.weighted)-1].Name
}

// Respond returns the local response of a redirect or direct-response
// route, with ok true; ok is false for cluster routes. The header is a new
// map the caller owns; body is shared and must not be modified. Response
// header mutations are not applied; call RewriteResponse for them.
func (r *Route) Respond(req *http.Request) (status int, header http.Header, body []byte, ok bool) {
	switch {
	case r.direct != nil:
		return r.direct.Status, r.directHeader.Clone(), r.directBody, true
	case r.redirect != nil:
		code := r.redirect.ResponseCode
		if code == 0 {
			code = http.StatusMovedPermanently
		}
		return code, http.Header{"Location": {r.location(req)}}, nil, true
	}
	return 0, nil, nil, false
}

// location composes a redirect's Location from the request, as Envoy does.
func (r *Route) location(req *http.Request) string {
	rd := r.redirect
	origScheme := requestScheme(req)
	scheme := origScheme
	switch {
	case rd.HTTPSRedirect:
		scheme = "https"
	case rd.Scheme != "":
		scheme = lowerASCII(rd.Scheme)
	}
	host := req.Host
	if rd.Host != "" {
		host = rd.Host
	}
	if rd.Port != 0 {
		host = stripPort(host) + ":" + strconv.Itoa(rd.Port)
	} else if scheme != origScheme {
		if bare := stripPort(host); bare != host {
			if p := host[len(bare)+1:]; p == "80" || p == "443" {
				host = bare
			}
		}
	}
	var path, query string
	var u *url.URL
	if req.URL != nil {
		u = req.URL
	} else {
		u = &url.URL{}
	}
	switch {
	case rd.Path != "":
		p, q, hasQ := strings.Cut(rd.Path, "?")
		path = p
		if hasQ {
			query = q
		} else if !rd.StripQuery {
			query = u.RawQuery
		}
	default:
		if rd.PrefixRewrite != "" {
			p, raw := r.rewritePrefix(u, rd.PrefixRewrite)
			path = (&url.URL{Path: p, RawPath: raw}).EscapedPath()
		} else {
			path = u.EscapedPath()
		}
		if !rd.StripQuery {
			query = u.RawQuery
		}
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + len(path) + 1 + len(query))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(path)
	if query != "" {
		b.WriteByte('?')
		b.WriteString(query)
	}
	return b.String()
}

// matchedLen returns how many leading bytes of p the route's path match
// covers: the literal for prefix matches, all of p otherwise.
func (r *Route) matchedLen(p string) (int, bool) {
	switch r.pathKind {
	case pathAny:
		return 0, true
	case pathPrefix, pathSeparated:
		if len(p) < len(r.lit) {
			return 0, false
		}
		if r.ci {
			return len(r.lit), equalFoldASCII(p[:len(r.lit)], r.lit)
		}
		return len(r.lit), p[:len(r.lit)] == r.lit
	}
	return len(p), true
}

// rewritePrefix replaces the matched prefix of u's path with repl. It
// returns the new path and, when u has a distinct escaped form, the new
// escaped form (so that escapes such as %2F survive).
func (r *Route) rewritePrefix(u *url.URL, repl string) (path, raw string) {
	if u.RawPath != "" {
		if rp := u.EscapedPath(); rp == u.RawPath {
			if n, ok := r.matchedLen(rp); ok {
				raw = repl + rp[n:]
				if p, err := url.PathUnescape(raw); err == nil {
					return p, raw
				}
			}
		}
	}
	n, ok := r.matchedLen(u.Path)
	if !ok {
		return u.Path, ""
	}
	return repl + u.Path[n:], ""
}

func (r *Route) rewriteRegex(u *url.URL) (path, raw string) {
	if u.RawPath != "" {
		if rp := u.EscapedPath(); rp == u.RawPath {
			raw = r.rewriteRe.ReplaceAllString(rp, r.rewriteTmpl)
			if p, err := url.PathUnescape(raw); err == nil {
				return p, raw
			}
		}
	}
	return r.rewriteRe.ReplaceAllString(u.Path, r.rewriteTmpl), ""
}

// RewriteRequest applies the route's request rewrites to out, computing
// them from in (the request as received, which is not modified): the path
// rewrite (prefix or regex, keeping out.URL.RawPath consistent), the host
// rewrite (literal or from a header; sets out.Host) and the request header
// mutations of the route, its virtual host and the table, in Envoy's order
// (see Config.MostSpecificHeaderMutationsWins). Operators in header values
// are evaluated against in. AutoHostRewrite is left to the cluster.
//
// out.Header must be out's own map, not shared with in.Header. It costs
// one branch and allocates nothing when the route has neither rewrites nor
// request header mutations. RewriteRequest is safe for concurrent use on
// distinct out requests.
func (r *Route) RewriteRequest(out, in *http.Request) {
	if !r.needRewrite {
		return
	}
	if r.pathRewrite != rewriteNone && in.URL != nil && out.URL != nil {
		var p, raw string
		if r.pathRewrite == rewritePrefix {
			p, raw = r.rewritePrefix(in.URL, r.prefixRewrite)
		} else {
			p, raw = r.rewriteRegex(in.URL)
		}
		out.URL.Path, out.URL.RawPath = p, raw
	}
	switch {
	case r.hostRewrite != "":
		out.Host = r.hostRewrite
	case r.hostHeader != "":
		if v := firstHeader(in.Header, r.hostHeader); v != "" {
			out.Host = v
		}
	}
	if len(r.reqLevels) > 0 {
		if out.Header == nil {
			out.Header = make(http.Header)
		}
		env := evalEnv{req: in, hostname: r.hostname}
		for _, m := range r.reqLevels {
			m.apply(out.Header, &env)
		}
	}
}

// RewriteResponse applies the response header mutations of the route, its
// virtual host and the table to h. Operators are evaluated against in, the
// request as received; upstreamHost is the value of %UPSTREAM_HOST%.
func (r *Route) RewriteResponse(h http.Header, in *http.Request, upstreamHost string) {
	if len(r.respLevels) == 0 {
		return
	}
	env := evalEnv{req: in, upstreamHost: upstreamHost, hostname: r.hostname}
	for _, m := range r.respLevels {
		m.apply(h, &env)
	}
}

// AutoHostRewrite reports whether the upstream Host should be set to the
// chosen endpoint's host name (Envoy's auto_host_rewrite).
func (r *Route) AutoHostRewrite() bool { return r.rule.AutoHostRewrite }

// Timeout returns the route's upstream timeout: DefaultTimeout (15 s)
// unless configured; 0 means disabled.
func (r *Route) Timeout() time.Duration { return r.timeout }

// IdleTimeout returns the rule's IdleTimeout: 0 when unset (the connection
// manager's stream idle timeout applies), negative when disabled.
func (r *Route) IdleTimeout() time.Duration { return r.rule.IdleTimeout }

// Retry returns the rule's retry policy, else its virtual host's, else nil.
func (r *Route) Retry() *RetryPolicy { return r.retry }

// HighPriority reports whether the rule routes at Envoy's HIGH routing
// priority.
func (r *Route) HighPriority() bool { return r.rule.HighPriority }

// HashPolicy returns the rule's hash policies; RequestHash evaluates
// them.
func (r *Route) HashPolicy() []HashPolicy { return r.rule.HashPolicy }

// Mirrors returns the rule's mirror policies with Fraction normalised: an
// unset (zero) fraction is reported as 1.
func (r *Route) Mirrors() []MirrorPolicy { return r.mirrors }

// FilterConfig returns the rule's per-filter configuration keyed by filter
// name; nil when there is none.
func (r *Route) FilterConfig() map[string]any { return r.rule.FilterConfig }

// BufferLimit returns the rule's buffer limit; 0 means the connection
// manager's default.
func (r *Route) BufferLimit() int64 { return r.rule.BufferLimit }
