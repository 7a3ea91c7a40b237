package route

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// WeightedCluster is one cluster of a Rule's WeightedClusters: Envoy's
// WeightedCluster.ClusterWeight. It is plain data.
type WeightedCluster struct {
	// Name is the cluster name. Required.
	Name string
	// Weight is the cluster's share relative to the sum of the weights of
	// the rule's clusters. A zero weight never receives traffic; the sum
	// must be positive.
	Weight uint32
}

// Redirect answers with an HTTP redirect built from the request: Envoy's
// RedirectAction. Every field that is not set keeps the request's value.
//
// A Redirect is plain data and is not safe for concurrent mutation.
type Redirect struct {
	// Scheme replaces the scheme (Envoy's scheme_redirect).
	Scheme string
	// HTTPSRedirect replaces the scheme with "https" (Envoy's
	// https_redirect). At most one of Scheme and HTTPSRedirect.
	HTTPSRedirect bool
	// Host replaces the host (Envoy's host_redirect); it may carry a port.
	Host string
	// Port replaces the port (Envoy's port_redirect); 0 keeps it. When the
	// scheme changes and Port is 0, a port that is the default of either
	// scheme (80, 443) is dropped.
	Port int
	// Path replaces the path (Envoy's path_redirect); it is used as given,
	// so it must already be escaped. It may carry a query, which then
	// replaces the request's.
	Path string
	// PrefixRewrite replaces the matched prefix of the path (Envoy's
	// prefix_rewrite); with a path or regex match, the whole path. At most
	// one of Path and PrefixRewrite.
	PrefixRewrite string
	// ResponseCode is the status code: 301 (the default, Envoy's
	// MOVED_PERMANENTLY), 302, 303, 307 or 308.
	ResponseCode int
	// StripQuery drops the request's query (Envoy's strip_query).
	StripQuery bool
}

// Validate reports whether the redirect is well formed.
func (r *Redirect) Validate() error {
	if r.Scheme != "" && r.HTTPSRedirect {
		return errors.New("scheme_rewrite_specifier: at most one of scheme_redirect and https_redirect")
	}
	if r.Scheme != "" {
		for i := 0; i < len(r.Scheme); i++ {
			c := r.Scheme[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
				return fmt.Errorf("scheme_redirect: invalid scheme %q", r.Scheme)
			}
		}
	}
	if strings.ContainsAny(r.Host, "/?# \t") {
		return fmt.Errorf("host_redirect: invalid host %q", r.Host)
	}
	if r.Port < 0 || r.Port > 65535 {
		return fmt.Errorf("port_redirect: %d out of range", r.Port)
	}
	if r.Path != "" && r.PrefixRewrite != "" {
		return errors.New("path_rewrite_specifier: at most one of path_redirect and prefix_rewrite")
	}
	if r.Path != "" && r.Path[0] != '/' {
		return fmt.Errorf("path_redirect: %q must start with \"/\"", r.Path)
	}
	if err := validPathPart(r.Path); err != nil {
		return fmt.Errorf("path_redirect: %w", err)
	}
	if err := validPathPart(r.PrefixRewrite); err != nil {
		return fmt.Errorf("prefix_rewrite: %w", err)
	}
	switch r.ResponseCode {
	case 0, http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return fmt.Errorf("response_code: %d is not one of 301, 302, 303, 307, 308", r.ResponseCode)
	}
	return nil
}

// DirectResponse answers locally: Envoy's DirectResponseAction. It is
// plain data.
type DirectResponse struct {
	// Status is the status code, 100 to 599. Required.
	Status int
	// Body is the response body; may be empty.
	Body string
	// Header holds extra response headers; may be nil. Response header
	// mutations of the route still apply on top.
	Header http.Header
}

// Validate reports whether the direct response is well formed.
func (d *DirectResponse) Validate() error {
	if d.Status < 100 || d.Status > 599 {
		return fmt.Errorf("status: %d out of range [100, 599]", d.Status)
	}
	for k := range d.Header {
		if !validHeaderName(k) {
			return fmt.Errorf("header: invalid header name %q", k)
		}
	}
	return nil
}

// RegexRewrite rewrites the path by regular expression: Envoy's
// RegexMatchAndSubstitute. Every non-overlapping match of Pattern in the
// path (without query) is replaced by Substitution.
//
// A RegexRewrite is plain data.
type RegexRewrite struct {
	// Pattern is an RE2 expression. Required.
	Pattern string
	// Substitution uses Envoy's (RE2) syntax: \0 to \9 insert capture
	// groups and \\ a backslash; every other character is literal.
	Substitution string
}

// Validate reports whether the rewrite is well formed.
func (r *RegexRewrite) Validate() error {
	if r.Pattern == "" {
		return errors.New("pattern: must not be empty")
	}
	re, err := regexp.Compile(r.Pattern)
	if err != nil {
		return fmt.Errorf("pattern: %w", err)
	}
	if _, err := goTemplate(r.Substitution, re.NumSubexp()); err != nil {
		return fmt.Errorf("substitution: %w", err)
	}
	return nil
}

// goTemplate converts an RE2 substitution (\1) to a regexp.Expand template
// (${1}).
func goTemplate(sub string, groups int) (string, error) {
	var b strings.Builder
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		switch c {
		case '$':
			b.WriteString("$$")
		case '\\':
			if i+1 == len(sub) {
				return "", errors.New("trailing backslash")
			}
			i++
			n := sub[i]
			switch {
			case n == '\\':
				b.WriteByte('\\')
			case '0' <= n && n <= '9':
				if int(n-'0') > groups {
					return "", fmt.Errorf("\\%c: no such group", n)
				}
				fmt.Fprintf(&b, "${%c}", n)
			default:
				return "", fmt.Errorf("invalid escape \\%c", n)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// Retry conditions of RetryPolicy.RetryOn, with Envoy's names
// (x-envoy-retry-on and x-envoy-retry-grpc-on).
const (
	Retry5xx                  = "5xx"
	RetryGatewayError         = "gateway-error"
	RetryReset                = "reset"
	RetryConnectFailure       = "connect-failure"
	RetryRetriable4xx         = "retriable-4xx"
	RetryRefusedStream        = "refused-stream"
	RetryRetriableStatusCodes = "retriable-status-codes"
	RetryRetriableHeaders     = "retriable-headers"
	RetryEnvoyRateLimited     = "envoy-ratelimited"
	RetryCancelled            = "cancelled"
	RetryDeadlineExceeded     = "deadline-exceeded"
	RetryInternal             = "internal"
	RetryResourceExhausted    = "resource-exhausted"
	RetryUnavailable          = "unavailable"
)

func knownRetryOn(s string) bool {
	switch s {
	case Retry5xx, RetryGatewayError, RetryReset, RetryConnectFailure, RetryRetriable4xx,
		RetryRefusedStream, RetryRetriableStatusCodes, RetryRetriableHeaders, RetryEnvoyRateLimited,
		RetryCancelled, RetryDeadlineExceeded, RetryInternal, RetryResourceExhausted, RetryUnavailable:
		return true
	}
	return false
}

// Retry policy defaults, Envoy's documented values.
const (
	// DefaultNumRetries is the retry count when RetryPolicy.NumRetries is 0.
	DefaultNumRetries = 1
	// DefaultRetryBaseInterval is the backoff base when
	// RetryPolicy.BaseInterval is 0: 25 ms.
	DefaultRetryBaseInterval = 25 * time.Millisecond
)

// RetryPolicy says when and how often an upstream request is retried:
// Envoy's RetryPolicy. This package only validates and carries it; the
// cluster's request loop applies it.
//
// A RetryPolicy is plain data; a compiled Route hands out a pointer to
// its own copy, which must be treated as read-only.
type RetryPolicy struct {
	// RetryOn lists the retry conditions by Envoy name (Retry5xx ...).
	RetryOn []string
	// NumRetries is the maximum number of retries. Zero means unset and
	// gives Envoy's default of 1 (DefaultNumRetries); a negative value
	// means no retries (Envoy's explicit 0). Use Retries for the
	// effective count.
	NumRetries int
	// PerTryTimeout bounds each attempt (Envoy's per_try_timeout); zero
	// means only the route timeout applies.
	PerTryTimeout time.Duration
	// PerTryIdleTimeout bounds the idle time of each attempt (Envoy's
	// per_try_idle_timeout); zero means none.
	PerTryIdleTimeout time.Duration
	// RetriableStatusCodes are retried under "retriable-status-codes".
	RetriableStatusCodes []int
	// RetriableHeaders are response header matchers retried under
	// "retriable-headers".
	RetriableHeaders []HeaderMatcher
	// BaseInterval is the backoff base interval; zero means 25 ms
	// (DefaultRetryBaseInterval).
	BaseInterval time.Duration
	// MaxInterval caps the backoff; zero means 10 times the base interval.
	MaxInterval time.Duration
}

// Retries returns the effective maximum number of retries.
func (p *RetryPolicy) Retries() int {
	switch {
	case p.NumRetries == 0:
		return DefaultNumRetries
	case p.NumRetries < 0:
		return 0
	}
	return p.NumRetries
}

// Backoff returns the effective base and maximum backoff intervals.
func (p *RetryPolicy) Backoff() (base, max time.Duration) {
	base = p.BaseInterval
	if base == 0 {
		base = DefaultRetryBaseInterval
	}
	max = p.MaxInterval
	if max == 0 {
		max = 10 * base
	}
	return base, max
}

// Validate reports whether the policy is well formed.
func (p *RetryPolicy) Validate() error {
	for i, s := range p.RetryOn {
		if !knownRetryOn(s) {
			return fmt.Errorf("retry_on[%d]: unknown retry condition %q", i, s)
		}
	}
	if p.PerTryTimeout < 0 {
		return fmt.Errorf("per_try_timeout: %v is negative", p.PerTryTimeout)
	}
	if p.PerTryIdleTimeout < 0 {
		return fmt.Errorf("per_try_idle_timeout: %v is negative", p.PerTryIdleTimeout)
	}
	for i, c := range p.RetriableStatusCodes {
		if c < 100 || c > 599 {
			return fmt.Errorf("retriable_status_codes[%d]: %d out of range [100, 599]", i, c)
		}
	}
	for i := range p.RetriableHeaders {
		if err := p.RetriableHeaders[i].Validate(); err != nil {
			return fmt.Errorf("retriable_headers[%d].%w", i, err)
		}
	}
	if p.BaseInterval < 0 {
		return fmt.Errorf("retry_back_off.base_interval: %v is negative", p.BaseInterval)
	}
	if p.MaxInterval < 0 {
		return fmt.Errorf("retry_back_off.max_interval: %v is negative", p.MaxInterval)
	}
	if base, max := p.Backoff(); max < base {
		return fmt.Errorf("retry_back_off.max_interval: %v is below base_interval %v", max, base)
	}
	return nil
}

func (p *RetryPolicy) clone() *RetryPolicy {
	if p == nil {
		return nil
	}
	c := *p
	c.RetryOn = cloneSlice(p.RetryOn)
	c.RetriableStatusCodes = cloneSlice(p.RetriableStatusCodes)
	c.RetriableHeaders = Match{Headers: p.RetriableHeaders}.clone().Headers
	return &c
}

// ResponseHeaderMatcher is a compiled list of HeaderMatchers applied to
// response headers: a RetryPolicy's RetriableHeaders as the router
// evaluates them. It is immutable and safe for concurrent use.
type ResponseHeaderMatcher struct {
	ms []headerMatcher
}

// NewResponseHeaderMatcher compiles ms, which must be valid (see
// HeaderMatcher.Validate; RetryPolicy.Validate checks RetriableHeaders).
// Pseudo-header names (":method" ...) do not apply to responses; they
// see the values of an empty request.
func NewResponseHeaderMatcher(ms []HeaderMatcher) *ResponseHeaderMatcher {
	m := &ResponseHeaderMatcher{ms: make([]headerMatcher, len(ms))}
	for i := range ms {
		m.ms[i] = newHeaderMatcher(&ms[i])
	}
	return m
}

// MatchAny reports whether any matcher matches h, which is how Envoy's
// retriable_headers decide: one match makes the response retriable.
func (m *ResponseHeaderMatcher) MatchAny(h http.Header) bool {
	r := http.Request{Header: h}
	for i := range m.ms {
		if m.ms[i].match(&r) {
			return true
		}
	}
	return false
}

// CookieHash hashes on a cookie: Envoy's HashPolicy.Cookie. When TTL is
// set and the cookie is absent, the proxy mints one with Name, TTL and Path.
// It is plain data, not safe for concurrent mutation.
type CookieHash struct {
	// Name is the cookie name. Required.
	Name string
	// TTL is the lifetime of a minted cookie; zero means no cookie is
	// minted (a session cookie is not generated either, as in Envoy).
	TTL time.Duration
	// Path is the Path attribute of a minted cookie.
	Path string
}

// HashPolicy is one input of a consistent-hash load balancer: Envoy's
// RouteAction.HashPolicy. Exactly one of Header, Cookie, SourceIP and
// QueryParameter must be set. It is plain data.
type HashPolicy struct {
	// Header hashes on a request header's value.
	Header string
	// Cookie hashes on a cookie.
	Cookie *CookieHash
	// SourceIP hashes on the downstream address (Envoy's
	// connection_properties.source_ip).
	SourceIP bool
	// QueryParameter hashes on a query parameter's value.
	QueryParameter string
	// Terminal stops evaluating further policies when this one produced a
	// hash (Envoy's terminal).
	Terminal bool
}

// Validate reports whether the policy is well formed.
func (h *HashPolicy) Validate() error {
	n := 0
	if h.Header != "" {
		n++
		if !validHeaderName(h.Header) {
			return fmt.Errorf("header.header_name: invalid header name %q", h.Header)
		}
	}
	if h.Cookie != nil {
		n++
		if h.Cookie.Name == "" {
			return errors.New("cookie.name: must not be empty")
		}
		if h.Cookie.TTL < 0 {
			return fmt.Errorf("cookie.ttl: %v is negative", h.Cookie.TTL)
		}
	}
	if h.SourceIP {
		n++
	}
	if h.QueryParameter != "" {
		n++
	}
	if n != 1 {
		return errors.New("policy_specifier: exactly one of header, cookie, connection_properties, query_parameter must be set")
	}
	return nil
}

// MirrorPolicy sends a copy of requests to a shadow cluster, fire and
// forget: Envoy's RequestMirrorPolicy. It is plain data.
type MirrorPolicy struct {
	// Cluster is the shadow cluster. Required.
	Cluster string
	// Fraction of requests mirrored, in [0, 1]. Zero means unset and
	// mirrors every request, Envoy's default when runtime_fraction is
	// absent; Route.Mirrors reports it as 1.
	Fraction float64
}

// Validate reports whether the policy is well formed.
func (m *MirrorPolicy) Validate() error {
	if m.Cluster == "" {
		return errors.New("cluster: must not be empty")
	}
	if math.IsNaN(m.Fraction) || m.Fraction < 0 || m.Fraction > 1 {
		return fmt.Errorf("runtime_fraction: %v out of range [0, 1]", m.Fraction)
	}
	return nil
}
