package route

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultTimeout is the upstream timeout of a route whose Rule.Timeout is
// zero: 15 s, Envoy's documented default for RouteAction.timeout.
const DefaultTimeout = 15 * time.Second

// Config is a route configuration: Envoy's RouteConfiguration. It is plain
// data; New validates and compiles it into an immutable *Table.
//
// A Config is not safe for concurrent mutation; New copies it, so the
// caller may reuse or change it after New returns.
type Config struct {
	// Name is the route configuration name (Envoy's name, the RDS resource
	// name). It may be empty for a statically configured table.
	Name string
	// VirtualHosts are the virtual hosts; a request is served by the one
	// whose domains best match its host (see Table.Match).
	VirtualHosts []VirtualHost

	// RequestHeadersToAdd are added to every request routed by this table,
	// after (or, with MostSpecificHeaderMutationsWins, before) the virtual
	// host's and route's own mutations.
	RequestHeadersToAdd []HeaderValue
	// RequestHeadersToRemove are removed from every request routed by this
	// table, just before RequestHeadersToAdd are applied.
	RequestHeadersToRemove []string
	// ResponseHeadersToAdd are added to every response of a request routed
	// by this table.
	ResponseHeadersToAdd []HeaderValue
	// ResponseHeadersToRemove are removed from every response of a request
	// routed by this table, just before ResponseHeadersToAdd are applied.
	ResponseHeadersToRemove []string

	// MostSpecificHeaderMutationsWins reverses the order in which header
	// mutations are applied (Envoy's most_specific_header_mutations_wins).
	// By default (false) route-level mutations are applied first, then the
	// virtual host's, then the table's, so outer levels win when they
	// overwrite the same header; when true the table's are applied first
	// and the route's last.
	MostSpecificHeaderMutationsWins bool
}

// VirtualHost is a set of routing rules served for a set of domains:
// Envoy's VirtualHost.
//
// A VirtualHost is plain data and is not safe for concurrent mutation.
type VirtualHost struct {
	// Name is the virtual host's name, used in logs and stats. Required.
	Name string
	// Domains are the host names served by this virtual host (Envoy's
	// domains). Each is an exact host ("example.com", "example.com:8080"),
	// a suffix wildcard ("*.example.com", "*-bar.example.com"), a prefix
	// wildcard ("example.*") or "*" for the default virtual host. A domain
	// may appear in at most one virtual host of a table. Matching is
	// case-insensitive. At least one domain is required.
	Domains []string
	// Rules are the routes of the virtual host (Envoy's routes), matched
	// first-match in declaration order.
	Rules []Rule

	// RequestHeadersToAdd are added to every request routed by this
	// virtual host.
	RequestHeadersToAdd []HeaderValue
	// RequestHeadersToRemove are removed from every request routed by this
	// virtual host.
	RequestHeadersToRemove []string
	// ResponseHeadersToAdd are added to every response of this virtual host.
	ResponseHeadersToAdd []HeaderValue
	// ResponseHeadersToRemove are removed from every response of this
	// virtual host.
	ResponseHeadersToRemove []string

	// RetryPolicy is the retry policy of every rule of this virtual host
	// that has none of its own (Envoy's VirtualHost.retry_policy). Nil
	// means no retries unless the rule sets some.
	RetryPolicy *RetryPolicy
}

// Rule is one route: a match and an action, Envoy's Route with its
// RouteAction, RedirectAction or DirectResponseAction.
//
// Exactly one action must be set: Cluster, WeightedClusters, ClusterHeader,
// Redirect or DirectResponse. The upstream options (rewrites, timeouts,
// retry, hash and mirror policies) apply only to the three cluster
// actions.
//
// A Rule is plain data and is not safe for concurrent mutation.
type Rule struct {
	// Name is the route's name, used in logs and stats. Optional.
	Name string
	// StatPrefix names the route's stats (Envoy's Route.stat_prefix:
	// vhost.<virtual host>.route.<stat_prefix>.upstream_rq_*); when empty
	// the gateway uses Name. Optional.
	StatPrefix string
	// Match selects the requests this rule serves.
	Match Match

	// Cluster is the upstream cluster (Envoy's cluster).
	Cluster string
	// WeightedClusters spreads requests over several clusters by weight
	// (Envoy's weighted_clusters).
	WeightedClusters []WeightedCluster
	// ClusterHeader names a request header whose value is the cluster
	// (Envoy's cluster_header). A request without the header gets no
	// cluster (Envoy answers 503).
	ClusterHeader string
	// Redirect answers with a redirect (Envoy's redirect).
	Redirect *Redirect
	// DirectResponse answers locally (Envoy's direct_response).
	DirectResponse *DirectResponse

	// PrefixRewrite replaces the matched path prefix (the whole path for
	// path and regex matches) before forwarding (Envoy's prefix_rewrite).
	PrefixRewrite string
	// RegexRewrite rewrites the path with a regular expression (Envoy's
	// regex_rewrite). At most one of PrefixRewrite and RegexRewrite.
	RegexRewrite *RegexRewrite
	// HostRewrite sets the upstream Host to a literal (Envoy's
	// host_rewrite_literal).
	HostRewrite string
	// AutoHostRewrite sets the upstream Host to the chosen endpoint's
	// host name (Envoy's auto_host_rewrite); applied by the cluster.
	AutoHostRewrite bool
	// HostRewriteHeader sets the upstream Host to the value of this request
	// header when present (Envoy's host_rewrite_header). At most one of
	// HostRewrite, AutoHostRewrite and HostRewriteHeader.
	HostRewriteHeader string

	// RequestHeadersToAdd are added to requests served by this rule.
	RequestHeadersToAdd []HeaderValue
	// RequestHeadersToRemove are removed from requests served by this rule.
	RequestHeadersToRemove []string
	// ResponseHeadersToAdd are added to responses of this rule.
	ResponseHeadersToAdd []HeaderValue
	// ResponseHeadersToRemove are removed from responses of this rule.
	ResponseHeadersToRemove []string

	// Timeout bounds the whole upstream exchange, retries included, until
	// the response is complete (Envoy's RouteAction.timeout). Zero means
	// DefaultTimeout (15 s); a negative value disables the timeout (Envoy's
	// explicit 0).
	Timeout time.Duration
	// IdleTimeout is the route's stream idle timeout (Envoy's
	// RouteAction.idle_timeout). Zero means unset: the connection
	// manager's stream idle timeout applies. A negative value disables
	// the idle timeout for this route. The gateway's router enforces it
	// (see listener.HTTPConfig.StreamIdleTimeout).
	IdleTimeout time.Duration
	// Retry is the rule's retry policy. Nil means the virtual host's.
	Retry *RetryPolicy
	// HashPolicy feeds consistent-hash load balancers (Envoy's
	// hash_policy), evaluated in order.
	HashPolicy []HashPolicy
	// Mirrors are shadow clusters that receive a copy of the request
	// (Envoy's request_mirror_policies).
	Mirrors []MirrorPolicy
	// HighPriority sends the rule's requests at Envoy's HIGH routing
	// priority (RouteAction.priority): they count against the cluster's
	// high-priority circuit-breaker thresholds instead of the default ones.
	HighPriority bool
	// FilterConfig holds per-filter overrides keyed by filter name (Envoy's
	// typed_per_filter_config). The values are opaque to this package and
	// are handed to filters when a route's chain is compiled.
	FilterConfig map[string]any
	// BufferLimit bounds buffered request or held-back response bytes for
	// this route (Envoy's per_request_buffer_limit_bytes). Zero means the
	// connection manager's default.
	BufferLimit int64
}

// Validate reports whether the configuration is well formed. Errors name
// the offending field by its Envoy path, e.g.
// "virtual_hosts[0].routes[3].match: ...".
func (c *Config) Validate() error {
	if err := validateMutations(c.RequestHeadersToAdd, c.RequestHeadersToRemove, "request_headers_to_add", "request_headers_to_remove"); err != nil {
		return err
	}
	if err := validateMutations(c.ResponseHeadersToAdd, c.ResponseHeadersToRemove, "response_headers_to_add", "response_headers_to_remove"); err != nil {
		return err
	}
	seenDomain := make(map[string]int)
	seenName := make(map[string]int)
	for i := range c.VirtualHosts {
		vh := &c.VirtualHosts[i]
		if err := vh.Validate(); err != nil {
			return fmt.Errorf("virtual_hosts[%d].%w", i, err)
		}
		if j, ok := seenName[vh.Name]; ok {
			return fmt.Errorf("virtual_hosts[%d].name: %q already used by virtual_hosts[%d]", i, vh.Name, j)
		}
		seenName[vh.Name] = i
		for k, d := range vh.Domains {
			d = lowerASCII(d)
			if j, ok := seenDomain[d]; ok {
				return fmt.Errorf("virtual_hosts[%d].domains[%d]: %q already used by virtual_hosts[%d]", i, k, d, j)
			}
			seenDomain[d] = i
		}
	}
	return nil
}

// Validate reports whether the virtual host is well formed. Errors name
// the field path relative to the virtual host, e.g. "routes[3].match: ...".
func (v *VirtualHost) Validate() error {
	if v.Name == "" {
		return errors.New("name: must not be empty")
	}
	if len(v.Domains) == 0 {
		return errors.New("domains: must not be empty")
	}
	seen := make(map[string]int, len(v.Domains))
	for i, d := range v.Domains {
		if err := validateDomain(d); err != nil {
			return fmt.Errorf("domains[%d]: %w", i, err)
		}
		ld := lowerASCII(d)
		if j, ok := seen[ld]; ok {
			return fmt.Errorf("domains[%d]: %q duplicates domains[%d]", i, d, j)
		}
		seen[ld] = i
	}
	for i := range v.Rules {
		if err := v.Rules[i].Validate(); err != nil {
			return fmt.Errorf("routes[%d].%w", i, err)
		}
	}
	if err := validateMutations(v.RequestHeadersToAdd, v.RequestHeadersToRemove, "request_headers_to_add", "request_headers_to_remove"); err != nil {
		return err
	}
	if err := validateMutations(v.ResponseHeadersToAdd, v.ResponseHeadersToRemove, "response_headers_to_add", "response_headers_to_remove"); err != nil {
		return err
	}
	if v.RetryPolicy != nil {
		if err := v.RetryPolicy.Validate(); err != nil {
			return fmt.Errorf("retry_policy.%w", err)
		}
	}
	return nil
}

func validateDomain(d string) error {
	if d == "" {
		return errors.New("must not be empty")
	}
	if d == "*" {
		return nil
	}
	if strings.Count(d, "*") > 1 {
		return fmt.Errorf("%q: at most one wildcard", d)
	}
	if i := strings.IndexByte(d, '*'); i > 0 && i < len(d)-1 {
		return fmt.Errorf("%q: wildcard must be the first or last character", d)
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; c <= ' ' || c == '/' || c == 0x7f {
			return fmt.Errorf("%q: invalid character %q", d, c)
		}
	}
	return nil
}

// Validate reports whether the rule is well formed. Errors name the field
// path relative to the rule, e.g. "match.regex: ...".
func (r *Rule) Validate() error {
	if err := r.Match.Validate(); err != nil {
		return fmt.Errorf("match.%w", err)
	}
	actions := 0
	if r.Cluster != "" {
		actions++
	}
	if len(r.WeightedClusters) > 0 {
		actions++
	}
	if r.ClusterHeader != "" {
		actions++
	}
	if r.Redirect != nil {
		actions++
	}
	if r.DirectResponse != nil {
		actions++
	}
	if actions != 1 {
		return fmt.Errorf("action: exactly one of cluster, weighted_clusters, cluster_header, redirect, direct_response must be set, got %d", actions)
	}
	if len(r.WeightedClusters) > 0 {
		var total uint64
		for i, wc := range r.WeightedClusters {
			if wc.Name == "" {
				return fmt.Errorf("weighted_clusters.clusters[%d].name: must not be empty", i)
			}
			total += uint64(wc.Weight)
		}
		if total == 0 {
			return errors.New("weighted_clusters: total weight must be positive")
		}
	}
	if r.ClusterHeader != "" && !validHeaderName(r.ClusterHeader) {
		return fmt.Errorf("cluster_header: invalid header name %q", r.ClusterHeader)
	}
	if r.Redirect != nil {
		if err := r.Redirect.Validate(); err != nil {
			return fmt.Errorf("redirect.%w", err)
		}
	}
	if r.DirectResponse != nil {
		if err := r.DirectResponse.Validate(); err != nil {
			return fmt.Errorf("direct_response.%w", err)
		}
	}
	upstream := r.Redirect == nil && r.DirectResponse == nil
	if !upstream {
		switch {
		case r.PrefixRewrite != "", r.RegexRewrite != nil:
			return errors.New("prefix_rewrite: path rewrites need a cluster action")
		case r.HostRewrite != "", r.AutoHostRewrite, r.HostRewriteHeader != "":
			return errors.New("host_rewrite: host rewrites need a cluster action")
		}
	}
	if r.PrefixRewrite != "" && r.RegexRewrite != nil {
		return errors.New("regex_rewrite: at most one of prefix_rewrite and regex_rewrite")
	}
	if r.PrefixRewrite != "" {
		if err := validPathPart(r.PrefixRewrite); err != nil {
			return fmt.Errorf("prefix_rewrite: %w", err)
		}
	}
	if r.RegexRewrite != nil {
		if err := r.RegexRewrite.Validate(); err != nil {
			return fmt.Errorf("regex_rewrite.%w", err)
		}
	}
	hostRewrites := 0
	if r.HostRewrite != "" {
		hostRewrites++
		for i := 0; i < len(r.HostRewrite); i++ {
			if c := r.HostRewrite[i]; c <= ' ' || c == '/' || c == 0x7f {
				return fmt.Errorf("host_rewrite_literal: invalid character %q", c)
			}
		}
	}
	if r.AutoHostRewrite {
		hostRewrites++
	}
	if r.HostRewriteHeader != "" {
		hostRewrites++
		if !validHeaderName(r.HostRewriteHeader) {
			return fmt.Errorf("host_rewrite_header: invalid header name %q", r.HostRewriteHeader)
		}
	}
	if hostRewrites > 1 {
		return errors.New("host_rewrite_specifier: at most one of host_rewrite_literal, auto_host_rewrite, host_rewrite_header")
	}
	if err := validateMutations(r.RequestHeadersToAdd, r.RequestHeadersToRemove, "request_headers_to_add", "request_headers_to_remove"); err != nil {
		return err
	}
	if err := validateMutations(r.ResponseHeadersToAdd, r.ResponseHeadersToRemove, "response_headers_to_add", "response_headers_to_remove"); err != nil {
		return err
	}
	if r.Retry != nil {
		if err := r.Retry.Validate(); err != nil {
			return fmt.Errorf("retry_policy.%w", err)
		}
	}
	for i := range r.HashPolicy {
		if err := r.HashPolicy[i].Validate(); err != nil {
			return fmt.Errorf("hash_policy[%d].%w", i, err)
		}
	}
	for i := range r.Mirrors {
		if err := r.Mirrors[i].Validate(); err != nil {
			return fmt.Errorf("request_mirror_policies[%d].%w", i, err)
		}
	}
	if r.BufferLimit < 0 {
		return fmt.Errorf("per_request_buffer_limit_bytes: %d is negative", r.BufferLimit)
	}
	for name := range r.FilterConfig {
		if name == "" {
			return errors.New("typed_per_filter_config: empty filter name")
		}
	}
	return nil
}

func validPathPart(p string) error {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < ' ' || c == 0x7f || c == '#' {
			return fmt.Errorf("invalid character %q", c)
		}
	}
	return nil
}

// clone returns a deep copy of c: slices and pointed-to structs are copied;
// FilterConfig maps are copied but their values are shared.
func (c *Config) clone() *Config {
	out := *c
	out.RequestHeadersToAdd = cloneSlice(c.RequestHeadersToAdd)
	out.RequestHeadersToRemove = cloneSlice(c.RequestHeadersToRemove)
	out.ResponseHeadersToAdd = cloneSlice(c.ResponseHeadersToAdd)
	out.ResponseHeadersToRemove = cloneSlice(c.ResponseHeadersToRemove)
	out.VirtualHosts = make([]VirtualHost, len(c.VirtualHosts))
	for i := range c.VirtualHosts {
		v := c.VirtualHosts[i]
		v.Domains = cloneSlice(v.Domains)
		v.RequestHeadersToAdd = cloneSlice(v.RequestHeadersToAdd)
		v.RequestHeadersToRemove = cloneSlice(v.RequestHeadersToRemove)
		v.ResponseHeadersToAdd = cloneSlice(v.ResponseHeadersToAdd)
		v.ResponseHeadersToRemove = cloneSlice(v.ResponseHeadersToRemove)
		v.RetryPolicy = v.RetryPolicy.clone()
		rules := make([]Rule, len(v.Rules))
		for j := range v.Rules {
			rules[j] = v.Rules[j].clone()
		}
		v.Rules = rules
		out.VirtualHosts[i] = v
	}
	return &out
}

func (r *Rule) clone() Rule {
	o := *r
	o.Match = r.Match.clone()
	o.WeightedClusters = cloneSlice(r.WeightedClusters)
	if r.Redirect != nil {
		rd := *r.Redirect
		o.Redirect = &rd
	}
	if r.DirectResponse != nil {
		dr := *r.DirectResponse
		dr.Header = dr.Header.Clone()
		o.DirectResponse = &dr
	}
	if r.RegexRewrite != nil {
		rr := *r.RegexRewrite
		o.RegexRewrite = &rr
	}
	o.RequestHeadersToAdd = cloneSlice(r.RequestHeadersToAdd)
	o.RequestHeadersToRemove = cloneSlice(r.RequestHeadersToRemove)
	o.ResponseHeadersToAdd = cloneSlice(r.ResponseHeadersToAdd)
	o.ResponseHeadersToRemove = cloneSlice(r.ResponseHeadersToRemove)
	o.Retry = r.Retry.clone()
	o.HashPolicy = cloneSlice(r.HashPolicy)
	for i := range o.HashPolicy {
		if c := o.HashPolicy[i].Cookie; c != nil {
			cc := *c
			o.HashPolicy[i].Cookie = &cc
		}
	}
	o.Mirrors = cloneSlice(r.Mirrors)
	if r.FilterConfig != nil {
		o.FilterConfig = make(map[string]any, len(r.FilterConfig))
		for k, v := range r.FilterConfig {
			o.FilterConfig[k] = v
		}
	}
	return o
}

func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}
