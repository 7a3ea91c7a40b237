package route

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	base := func(r Rule) Config {
		return Config{VirtualHosts: []VirtualHost{
			{Name: "a", Domains: []string{"a.com"}, Rules: []Rule{{Cluster: "c"}}},
			{Name: "b", Domains: []string{"b.com"}, Rules: []Rule{{Cluster: "c"}, r}},
		}}
	}
	sm := func(s StringMatcher) *StringMatcher { return &s }
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{"valid", base(Rule{Cluster: "c"}), ""},
		{"no action", base(Rule{}), "virtual_hosts[1].routes[1].action: exactly one"},
		{"two actions", base(Rule{Cluster: "c", Redirect: &Redirect{}}), "virtual_hosts[1].routes[1].action: exactly one"},
		{"two path specifiers", base(Rule{Cluster: "c", Match: Match{Prefix: "/a", Path: "/b"}}), "virtual_hosts[1].routes[1].match.path_specifier"},
		{"bad regex", base(Rule{Cluster: "c", Match: Match{Regex: "(("}}), "virtual_hosts[1].routes[1].match.safe_regex"},
		{"bad sep prefix", base(Rule{Cluster: "c", Match: Match{PathSeparatedPrefix: "/a/"}}), "routes[1].match.path_separated_prefix"},
		{"sep prefix no slash", base(Rule{Cluster: "c", Match: Match{PathSeparatedPrefix: "a"}}), "routes[1].match.path_separated_prefix"},
		{"header name", base(Rule{Cluster: "c", Match: Match{Headers: []HeaderMatcher{{Name: ""}}}}), "routes[1].match.headers[0].name"},
		{"header two specifiers", base(Rule{Cluster: "c", Match: Match{Headers: []HeaderMatcher{{Name: "x", Present: true, Range: &Int64Range{0, 1}}}}}), "match.headers[0].header_match_specifier"},
		{"header range", base(Rule{Cluster: "c", Match: Match{Headers: []HeaderMatcher{{Name: "x"}, {Name: "y", Range: &Int64Range{5, 5}}}}}), "match.headers[1].range_match"},
		{"string matcher two", base(Rule{Cluster: "c", Match: Match{Headers: []HeaderMatcher{{Name: "x", String: sm(StringMatcher{Exact: "a", Prefix: "b"})}}}}), "match.headers[0].string_match.match_pattern"},
		{"string matcher regex", base(Rule{Cluster: "c", Match: Match{Headers: []HeaderMatcher{{Name: "x", String: sm(StringMatcher{Regex: "["})}}}}), "match.headers[0].string_match.safe_regex"},
		{"query name", base(Rule{Cluster: "c", Match: Match{QueryParameters: []QueryParameterMatcher{{}}}}), "match.query_parameters[0].name"},
		{"query both", base(Rule{Cluster: "c", Match: Match{QueryParameters: []QueryParameterMatcher{{Name: "q", Present: true, String: sm(StringMatcher{})}}}}), "match.query_parameters[0].query_parameter_match_specifier"},
		{"method", base(Rule{Cluster: "c", Match: Match{Methods: []string{"G T"}}}), "match.methods[0]"},
		{"weights zero", base(Rule{WeightedClusters: []WeightedCluster{{Name: "x"}}}), "routes[1].weighted_clusters: total weight"},
		{"weighted name", base(Rule{WeightedClusters: []WeightedCluster{{Weight: 1}}}), "routes[1].weighted_clusters.clusters[0].name"},
		{"cluster header", base(Rule{ClusterHeader: "bad header"}), "routes[1].cluster_header"},
		{"redirect code", base(Rule{Redirect: &Redirect{ResponseCode: 200}}), "routes[1].redirect.response_code"},
		{"redirect scheme both", base(Rule{Redirect: &Redirect{Scheme: "http", HTTPSRedirect: true}}), "routes[1].redirect.scheme_rewrite_specifier"},
		{"redirect scheme", base(Rule{Redirect: &Redirect{Scheme: "ht tp"}}), "routes[1].redirect.scheme_redirect"},
		{"redirect port", base(Rule{Redirect: &Redirect{Port: 70000}}), "routes[1].redirect.port_redirect"},
		{"redirect path", base(Rule{Redirect: &Redirect{Path: "x"}}), "routes[1].redirect.path_redirect"},
		{"redirect path and prefix", base(Rule{Redirect: &Redirect{Path: "/x", PrefixRewrite: "/y"}}), "routes[1].redirect.path_rewrite_specifier"},
		{"redirect host", base(Rule{Redirect: &Redirect{Host: "a/b"}}), "routes[1].redirect.host_redirect"},
		{"direct status", base(Rule{DirectResponse: &DirectResponse{Status: 99}}), "routes[1].direct_response.status"},
		{"direct header", base(Rule{DirectResponse: &DirectResponse{Status: 200, Header: http.Header{"a b": {"1"}}}}), "routes[1].direct_response.header"},
		{"rewrite on redirect", base(Rule{Redirect: &Redirect{}, PrefixRewrite: "/"}), "routes[1].prefix_rewrite"},
		{"host rewrite on direct", base(Rule{DirectResponse: &DirectResponse{Status: 200}, HostRewrite: "x"}), "routes[1].host_rewrite"},
		{"both rewrites", base(Rule{Cluster: "c", PrefixRewrite: "/", RegexRewrite: &RegexRewrite{Pattern: "a"}}), "routes[1].regex_rewrite"},
		{"regex rewrite pattern", base(Rule{Cluster: "c", RegexRewrite: &RegexRewrite{Pattern: "("}}), "routes[1].regex_rewrite.pattern"},
		{"regex rewrite group", base(Rule{Cluster: "c", RegexRewrite: &RegexRewrite{Pattern: "(a)", Substitution: `\2`}}), "routes[1].regex_rewrite.substitution"},
		{"regex rewrite escape", base(Rule{Cluster: "c", RegexRewrite: &RegexRewrite{Pattern: "a", Substitution: `\q`}}), "routes[1].regex_rewrite.substitution"},
		{"two host rewrites", base(Rule{Cluster: "c", HostRewrite: "x", AutoHostRewrite: true}), "routes[1].host_rewrite_specifier"},
		{"host rewrite header", base(Rule{Cluster: "c", HostRewriteHeader: ":x"}), "routes[1].host_rewrite_header"},
		{"unknown variable", base(Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: "x", Value: "%NOPE%"}}}), "routes[1].request_headers_to_add[0].header.value: unknown operator %NOPE%"},
		{"unterminated variable", base(Rule{Cluster: "c", ResponseHeadersToAdd: []HeaderValue{{Key: "x", Value: "50%"}}}), "routes[1].response_headers_to_add[0].header.value: unterminated"},
		{"bad REQ", base(Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: "x", Value: "%REQ(a b)%"}}}), "request_headers_to_add[0].header.value"},
		{"bad REQ length", base(Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: "x", Value: "%REQ(a):x%"}}}), "request_headers_to_add[0].header.value"},
		{"header key host", base(Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: "Host", Value: "x"}}}), "request_headers_to_add[0].header.key"},
		{"header key pseudo", base(Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: ":path", Value: "x"}}}), "request_headers_to_add[0].header.key"},
		{"header value CRLF", base(Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: "x", Value: "a\r\nb"}}}), "request_headers_to_add[0].header.value"},
		{"append action", base(Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: "x", Append: 9}}}), "request_headers_to_add[0].append_action"},
		{"remove host", base(Rule{Cluster: "c", RequestHeadersToRemove: []string{"host"}}), "routes[1].request_headers_to_remove[0]"},
		{"retry on", base(Rule{Cluster: "c", Retry: &RetryPolicy{RetryOn: []string{"5xx", "sometimes"}}}), "routes[1].retry_policy.retry_on[1]"},
		{"retry codes", base(Rule{Cluster: "c", Retry: &RetryPolicy{RetriableStatusCodes: []int{503, 42}}}), "routes[1].retry_policy.retriable_status_codes[1]"},
		{"retry headers", base(Rule{Cluster: "c", Retry: &RetryPolicy{RetriableHeaders: []HeaderMatcher{{}}}}), "routes[1].retry_policy.retriable_headers[0].name"},
		{"retry backoff", base(Rule{Cluster: "c", Retry: &RetryPolicy{BaseInterval: time.Second, MaxInterval: time.Millisecond}}), "routes[1].retry_policy.retry_back_off.max_interval"},
		{"retry per try", base(Rule{Cluster: "c", Retry: &RetryPolicy{PerTryTimeout: -1}}), "routes[1].retry_policy.per_try_timeout"},
		{"hash none", base(Rule{Cluster: "c", HashPolicy: []HashPolicy{{Terminal: true}}}), "routes[1].hash_policy[0].policy_specifier"},
		{"hash two", base(Rule{Cluster: "c", HashPolicy: []HashPolicy{{Header: "x", SourceIP: true}}}), "routes[1].hash_policy[0].policy_specifier"},
		{"hash cookie", base(Rule{Cluster: "c", HashPolicy: []HashPolicy{{SourceIP: true}, {Cookie: &CookieHash{}}}}), "routes[1].hash_policy[1].cookie.name"},
		{"mirror cluster", base(Rule{Cluster: "c", Mirrors: []MirrorPolicy{{}}}), "routes[1].request_mirror_policies[0].cluster"},
		{"mirror fraction", base(Rule{Cluster: "c", Mirrors: []MirrorPolicy{{Cluster: "m", Fraction: 1.5}}}), "routes[1].request_mirror_policies[0].runtime_fraction"},
		{"mirror NaN", base(Rule{Cluster: "c", Mirrors: []MirrorPolicy{{Cluster: "m", Fraction: math.NaN()}}}), "request_mirror_policies[0].runtime_fraction"},
		{"buffer limit", base(Rule{Cluster: "c", BufferLimit: -1}), "routes[1].per_request_buffer_limit_bytes"},
		{"filter config name", base(Rule{Cluster: "c", FilterConfig: map[string]any{"": 1}}), "routes[1].typed_per_filter_config"},
		{"duplicate domain across vhosts", Config{VirtualHosts: []VirtualHost{
			{Name: "a", Domains: []string{"x.com"}}, {Name: "b", Domains: []string{"y.com", "X.com"}},
		}}, `virtual_hosts[1].domains[1]: "x.com" already used by virtual_hosts[0]`},
		{"duplicate domain in vhost", Config{VirtualHosts: []VirtualHost{{Name: "a", Domains: []string{"*", "*"}}}}, "virtual_hosts[0].domains[1]"},
		{"duplicate vhost name", Config{VirtualHosts: []VirtualHost{{Name: "a", Domains: []string{"a"}}, {Name: "a", Domains: []string{"b"}}}}, "virtual_hosts[1].name"},
		{"vhost name", Config{VirtualHosts: []VirtualHost{{Domains: []string{"a"}}}}, "virtual_hosts[0].name"},
		{"vhost domains", Config{VirtualHosts: []VirtualHost{{Name: "a"}}}, "virtual_hosts[0].domains: must not be empty"},
		{"domain wildcard middle", Config{VirtualHosts: []VirtualHost{{Name: "a", Domains: []string{"a.*.com"}}}}, "virtual_hosts[0].domains[0]"},
		{"domain two wildcards", Config{VirtualHosts: []VirtualHost{{Name: "a", Domains: []string{"*.a.*"}}}}, "virtual_hosts[0].domains[0]"},
		{"vhost retry", Config{VirtualHosts: []VirtualHost{{Name: "a", Domains: []string{"a"}, RetryPolicy: &RetryPolicy{RetryOn: []string{"x"}}}}}, "virtual_hosts[0].retry_policy.retry_on[0]"},
		{"vhost headers", Config{VirtualHosts: []VirtualHost{{Name: "a", Domains: []string{"a"}, ResponseHeadersToAdd: []HeaderValue{{Key: ""}}}}}, "virtual_hosts[0].response_headers_to_add[0]"},
		{"table headers", Config{RequestHeadersToRemove: []string{":authority"}}, "request_headers_to_remove[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if _, nerr := New(tt.cfg); (nerr == nil) != (err == nil) {
				t.Errorf("New() error = %v, Validate() error = %v; want both nil or both set", nerr, err)
			}
		})
	}
}

func TestValidateErrorPrefix(t *testing.T) {
	_, err := New(Config{Name: "rc", VirtualHosts: []VirtualHost{{Name: "a", Domains: []string{"a"}, Rules: []Rule{{}, {}, {}, {Cluster: "c", Match: Match{Regex: "("}}}}}})
	want := `route configuration "rc": virtual_hosts[0].routes[0].action`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("New() = %v, want prefix %q", err, want)
	}
}
