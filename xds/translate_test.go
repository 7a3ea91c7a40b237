package xds

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/porticoproxy/portico/route"
)

// oneRoute wraps a route in a RouteConfiguration with one catch-all
// virtual host.
func oneRoute(r *routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: "rc",
		VirtualHosts: []*routev3.VirtualHost{{
			Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{r},
		}},
	}
}

// oneRule is the route.Config oneRoute translates to.
func oneRule(r route.Rule) route.Config {
	return route.Config{
		Name:         "rc",
		VirtualHosts: []route.VirtualHost{{Name: "vh", Domains: []string{"*"}, Rules: []route.Rule{r}}},
	}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func toCluster(name string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
	}}
}

// withAction returns a prefix "/" route with the given RouteAction, whose
// cluster defaults to "c".
func withAction(a *routev3.RouteAction) *routev3.Route {
	if a.ClusterSpecifier == nil {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "c"}
	}
	return &routev3.Route{Match: prefix("/"), Action: &routev3.Route_Route{Route: a}}
}

func withMatch(m *routev3.RouteMatch) *routev3.Route {
	return &routev3.Route{Match: m, Action: toCluster("c")}
}

func strMatch(m *matcherv3.StringMatcher) *routev3.HeaderMatcher_StringMatch {
	return &routev3.HeaderMatcher_StringMatch{StringMatch: m}
}

func hdr(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}}
}

func TestTranslateRouteConfiguration(t *testing.T) {
	perFilter, err := anypb.New(wrapperspb.String("opaque"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rc   *routev3.RouteConfiguration
		want route.Config
	}{
		{
			name: "cluster",
			rc:   oneRoute(&routev3.Route{Name: "r", Match: prefix("/api"), Action: toCluster("api")}),
			want: oneRule(route.Rule{Name: "r", Match: route.Match{Prefix: "/api"}, Cluster: "api"}),
		},
		{
			name: "path",
			rc:   oneRoute(withMatch(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}})),
			want: oneRule(route.Rule{Match: route.Match{Path: "/exact"}, Cluster: "c"}),
		},
		{
			name: "safe_regex",
			rc: oneRoute(withMatch(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{
				SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+/.*"},
			}})),
			want: oneRule(route.Rule{Match: route.Match{Regex: "/v[0-9]+/.*"}, Cluster: "c"}),
		},
		{
			name: "safe_regex with google_re2 and case_sensitive false",
			rc: oneRoute(withMatch(&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
					EngineType: &matcherv3.RegexMatcher_GoogleRe2{GoogleRe2: &matcherv3.RegexMatcher_GoogleRE2{}},
					Regex:      "/x",
				}},
				CaseSensitive: wrapperspb.Bool(false),
			})),
			want: oneRule(route.Rule{Match: route.Match{Regex: "/x"}, Cluster: "c"}),
		},
		{
			name: "path_separated_prefix case insensitive",
			rc: oneRoute(withMatch(&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"},
				CaseSensitive: wrapperspb.Bool(false),
			})),
			want: oneRule(route.Rule{Match: route.Match{PathSeparatedPrefix: "/api", CaseInsensitive: true}, Cluster: "c"}),
		},
		{
			name: "case_sensitive true",
			rc: oneRoute(withMatch(&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/A"},
				CaseSensitive: wrapperspb.Bool(true),
			})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/A"}, Cluster: "c"}),
		},
		{
			name: "header matchers",
			rc: oneRoute(withMatch(&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{
					{Name: "a", HeaderMatchSpecifier: strMatch(&matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "x"}, IgnoreCase: true,
					})},
					{Name: "b", HeaderMatchSpecifier: strMatch(&matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "p"},
					})},
					{Name: "c", HeaderMatchSpecifier: strMatch(&matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "s"},
					})},
					{Name: "d", HeaderMatchSpecifier: strMatch(&matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "in"},
					}), InvertMatch: true},
					{Name: "e", HeaderMatchSpecifier: strMatch(&matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "[a-z]+"}},
					})},
					{Name: "f", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
					{Name: "g", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}},
					{Name: "h", HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 1, End: 10}}},
					{Name: "i"},
				},
			})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/", Headers: []route.HeaderMatcher{
				{Name: "a", String: &route.StringMatcher{Exact: "x", IgnoreCase: true}},
				{Name: "b", String: &route.StringMatcher{Prefix: "p"}},
				{Name: "c", String: &route.StringMatcher{Suffix: "s"}},
				{Name: "d", String: &route.StringMatcher{Contains: "in"}, Invert: true},
				{Name: "e", String: &route.StringMatcher{Regex: "[a-z]+"}},
				{Name: "f", Present: true},
				{Name: "g", Present: true, Invert: true},
				{Name: "h", Range: &route.Int64Range{Start: 1, End: 10}},
				{Name: "i", Present: true},
			}}, Cluster: "c"}),
		},
		{
			name: "deprecated header matchers",
			rc: oneRoute(withMatch(&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{
					{Name: "a", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "x"}},
					{Name: "b", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "p"}},
					{Name: "c", HeaderMatchSpecifier: &routev3.HeaderMatcher_SuffixMatch{SuffixMatch: "s"}},
					{Name: "d", HeaderMatchSpecifier: &routev3.HeaderMatcher_ContainsMatch{ContainsMatch: "in"}},
					{Name: "e", HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{
						SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "r"},
					}},
				},
			})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/", Headers: []route.HeaderMatcher{
				{Name: "a", String: &route.StringMatcher{Exact: "x"}},
				{Name: "b", String: &route.StringMatcher{Prefix: "p"}},
				{Name: "c", String: &route.StringMatcher{Suffix: "s"}},
				{Name: "d", String: &route.StringMatcher{Contains: "in"}},
				{Name: "e", String: &route.StringMatcher{Regex: "r"}},
			}}, Cluster: "c"}),
		},
		{
			name: "query parameters and grpc",
			rc: oneRoute(withMatch(&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				QueryParameters: []*routev3.QueryParameterMatcher{
					{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}},
					{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{
						StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "2"}},
					}},
				},
				Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{},
			})),
			want: oneRule(route.Rule{Match: route.Match{
				Prefix: "/",
				QueryParameters: []route.QueryParameterMatcher{
					{Name: "debug", Present: true},
					{Name: "v", String: &route.StringMatcher{Exact: "2"}},
				},
				GRPC: true,
			}, Cluster: "c"}),
		},
		{
			name: "weighted clusters",
			rc: oneRoute(withAction(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
				WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
					{Name: "a", Weight: wrapperspb.UInt32(90)},
					{Name: "b", Weight: wrapperspb.UInt32(10)},
				}},
			}})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, WeightedClusters: []route.WeightedCluster{
				{Name: "a", Weight: 90}, {Name: "b", Weight: 10},
			}}),
		},
		{
			name: "cluster_header and host_rewrite_header",
			rc: oneRoute(withAction(&routev3.RouteAction{
				ClusterSpecifier:     &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"},
				HostRewriteSpecifier: &routev3.RouteAction_HostRewriteHeader{HostRewriteHeader: "x-host"},
			})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, ClusterHeader: "x-cluster", HostRewriteHeader: "x-host"}),
		},
		{
			name: "prefix_rewrite and host_rewrite_literal",
			rc: oneRoute(withAction(&routev3.RouteAction{
				PrefixRewrite:        "/v2/",
				HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "upstream.internal"},
			})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Cluster: "c", PrefixRewrite: "/v2/", HostRewrite: "upstream.internal"}),
		},
		{
			name: "regex_rewrite and auto_host_rewrite",
			rc: oneRoute(withAction(&routev3.RouteAction{
				RegexRewrite: &matcherv3.RegexMatchAndSubstitute{
					Pattern:      &matcherv3.RegexMatcher{Regex: "^/service/([^/]+)(/.*)$"},
					Substitution: `\2/instance/\1`,
				},
				HostRewriteSpecifier: &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)},
			})),
			want: oneRule(route.Rule{
				Match: route.Match{Prefix: "/"}, Cluster: "c",
				RegexRewrite:    &route.RegexRewrite{Pattern: "^/service/([^/]+)(/.*)$", Substitution: `\2/instance/\1`},
				AutoHostRewrite: true,
			}),
		},
		{
			name: "timeouts set",
			rc: oneRoute(withAction(&routev3.RouteAction{
				Timeout:     durationpb.New(3 * time.Second),
				IdleTimeout: durationpb.New(time.Minute),
			})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Cluster: "c", Timeout: 3 * time.Second, IdleTimeout: time.Minute}),
		},
		{
			name: "timeouts explicit zero disable",
			rc: oneRoute(withAction(&routev3.RouteAction{
				Timeout:     durationpb.New(0),
				IdleTimeout: durationpb.New(0),
			})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Cluster: "c", Timeout: -1, IdleTimeout: -1}),
		},
		{
			name: "retry policy",
			rc: oneRoute(withAction(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{
				RetryOn:              "5xx, reset,retriable-status-codes,retriable-headers",
				NumRetries:           wrapperspb.UInt32(3),
				PerTryTimeout:        durationpb.New(time.Second),
				PerTryIdleTimeout:    durationpb.New(500 * time.Millisecond),
				RetriableStatusCodes: []uint32{409, 429},
				RetriableHeaders: []*routev3.HeaderMatcher{
					{Name: "x-retry", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
				},
				RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
					BaseInterval: durationpb.New(50 * time.Millisecond),
					MaxInterval:  durationpb.New(time.Second),
				},
			}})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Cluster: "c", Retry: &route.RetryPolicy{
				RetryOn:              []string{"5xx", "reset", "retriable-status-codes", "retriable-headers"},
				NumRetries:           3,
				PerTryTimeout:        time.Second,
				PerTryIdleTimeout:    500 * time.Millisecond,
				RetriableStatusCodes: []int{409, 429},
				RetriableHeaders:     []route.HeaderMatcher{{Name: "x-retry", Present: true}},
				BaseInterval:         50 * time.Millisecond,
				MaxInterval:          time.Second,
			}}),
		},
		{
			name: "retry policy num_retries explicit zero",
			rc: oneRoute(withAction(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{
				RetryOn: "5xx", NumRetries: wrapperspb.UInt32(0),
			}})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Cluster: "c", Retry: &route.RetryPolicy{
				RetryOn: []string{"5xx"}, NumRetries: -1,
			}}),
		},
		{
			name: "hash policy",
			rc: oneRoute(withAction(&routev3.RouteAction{HashPolicy: []*routev3.RouteAction_HashPolicy{
				{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
					Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"},
				}, Terminal: true},
				{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
					Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "sid", Ttl: durationpb.New(time.Hour), Path: "/"},
				}},
				{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
					ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
				}},
				{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
					QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "u"},
				}},
			}})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Cluster: "c", HashPolicy: []route.HashPolicy{
				{Header: "x-user", Terminal: true},
				{Cookie: &route.CookieHash{Name: "sid", TTL: time.Hour, Path: "/"}},
				{SourceIP: true},
				{QueryParameter: "u"},
			}}),
		},
		{
			name: "mirror policies",
			rc: oneRoute(withAction(&routev3.RouteAction{RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{
				{Cluster: "all"},
				{Cluster: "quarter", RuntimeFraction: &corev3.RuntimeFractionalPercent{
					DefaultValue: &typev3.FractionalPercent{Numerator: 25},
				}},
				{Cluster: "tiny", RuntimeFraction: &corev3.RuntimeFractionalPercent{
					DefaultValue: &typev3.FractionalPercent{Numerator: 5, Denominator: typev3.FractionalPercent_TEN_THOUSAND},
				}},
				{Cluster: "micro", RuntimeFraction: &corev3.RuntimeFractionalPercent{
					DefaultValue: &typev3.FractionalPercent{Numerator: 10, Denominator: typev3.FractionalPercent_MILLION},
				}},
				{Cluster: "capped", RuntimeFraction: &corev3.RuntimeFractionalPercent{
					DefaultValue: &typev3.FractionalPercent{Numerator: 200},
				}},
				{Cluster: "never", RuntimeFraction: &corev3.RuntimeFractionalPercent{
					DefaultValue: &typev3.FractionalPercent{Numerator: 0},
				}},
			}})),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Cluster: "c", Mirrors: []route.MirrorPolicy{
				{Cluster: "all"},
				{Cluster: "quarter", Fraction: 0.25},
				{Cluster: "tiny", Fraction: 0.0005},
				{Cluster: "micro", Fraction: 0.00001},
				{Cluster: "capped", Fraction: 1},
			}}),
		},
		{
			name: "redirect",
			rc: oneRoute(&routev3.Route{Match: prefix("/old"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"},
				HostRedirect:           "new.example.com",
				PortRedirect:           8443,
				PathRewriteSpecifier:   &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new"},
				ResponseCode:           routev3.RedirectAction_PERMANENT_REDIRECT,
				StripQuery:             true,
			}}}),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/old"}, Redirect: &route.Redirect{
				Scheme: "https", Host: "new.example.com", Port: 8443, PrefixRewrite: "/new",
				ResponseCode: 308, StripQuery: true,
			}}),
		},
		{
			name: "https redirect path",
			rc: oneRoute(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
				PathRewriteSpecifier:   &routev3.RedirectAction_PathRedirect{PathRedirect: "/moved"},
				ResponseCode:           routev3.RedirectAction_FOUND,
			}}}),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Redirect: &route.Redirect{
				HTTPSRedirect: true, Path: "/moved", ResponseCode: 302,
			}}),
		},
		{
			name: "direct response inline_string",
			rc: oneRoute(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 403,
				Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "denied\n"}},
			}}}),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, DirectResponse: &route.DirectResponse{Status: 403, Body: "denied\n"}}),
		},
		{
			name: "direct response inline_bytes",
			rc: oneRoute(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 200,
				Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("ok")}},
			}}}),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, DirectResponse: &route.DirectResponse{Status: 200, Body: "ok"}}),
		},
		{
			name: "direct response without body",
			rc: oneRoute(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_DirectResponse{
				DirectResponse: &routev3.DirectResponseAction{Status: 204},
			}}),
			want: oneRule(route.Rule{Match: route.Match{Prefix: "/"}, DirectResponse: &route.DirectResponse{Status: 204}}),
		},
		{
			name: "typed_per_filter_config and buffer limit",
			rc: oneRoute(&routev3.Route{
				Match: prefix("/"), Action: toCluster("c"),
				TypedPerFilterConfig:       map[string]*anypb.Any{"envoy.filters.http.buffer": perFilter},
				PerRequestBufferLimitBytes: wrapperspb.UInt32(1 << 20),
			}),
			want: oneRule(route.Rule{
				Match: route.Match{Prefix: "/"}, Cluster: "c",
				FilterConfig: map[string]any{"envoy.filters.http.buffer": perFilter},
				BufferLimit:  1 << 20,
			}),
		},
		{
			name: "header mutations at every level",
			rc: &routev3.RouteConfiguration{
				Name:                            "rc",
				MostSpecificHeaderMutationsWins: true,
				RequestHeadersToAdd:             []*corev3.HeaderValueOption{hdr("x-rc", "%HOSTNAME%")},
				RequestHeadersToRemove:          []string{"x-rc-drop"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "x-legacy-append", Value: "1"}, Append: wrapperspb.Bool(true)},
					{Header: &corev3.HeaderValue{Key: "x-legacy-set", Value: "1"}, Append: wrapperspb.Bool(false)},
				},
				ResponseHeadersToRemove: []string{"server"},
				VirtualHosts: []*routev3.VirtualHost{{
					Name:    "vh",
					Domains: []string{"example.com", "*.example.com"},
					RequestHeadersToAdd: []*corev3.HeaderValueOption{
						{Header: &corev3.HeaderValue{Key: "x-a", Value: "1"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
						{Header: &corev3.HeaderValue{Key: "x-b", Value: "1"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
						{Header: &corev3.HeaderValue{Key: "x-c", Value: "1"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS},
					},
					RequestHeadersToRemove:  []string{"x-vh-drop"},
					ResponseHeadersToAdd:    []*corev3.HeaderValueOption{hdr("x-vh", "%UPSTREAM_HOST%")},
					ResponseHeadersToRemove: []string{"x-vh-resp-drop"},
					RetryPolicy:             &routev3.RetryPolicy{RetryOn: "connect-failure"},
					Routes: []*routev3.Route{{
						Match:                   prefix("/"),
						Action:                  toCluster("c"),
						RequestHeadersToAdd:     []*corev3.HeaderValueOption{hdr("x-client", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")},
						RequestHeadersToRemove:  []string{"x-route-drop"},
						ResponseHeadersToAdd:    []*corev3.HeaderValueOption{hdr("x-route", "r")},
						ResponseHeadersToRemove: []string{"x-route-resp-drop"},
					}},
				}},
			},
			want: route.Config{
				Name:                            "rc",
				MostSpecificHeaderMutationsWins: true,
				RequestHeadersToAdd:             []route.HeaderValue{{Key: "x-rc", Value: "%HOSTNAME%"}},
				RequestHeadersToRemove:          []string{"x-rc-drop"},
				ResponseHeadersToAdd: []route.HeaderValue{
					{Key: "x-legacy-append", Value: "1", Append: route.AppendIfExistsOrAdd},
					{Key: "x-legacy-set", Value: "1", Append: route.OverwriteIfExistsOrAdd},
				},
				ResponseHeadersToRemove: []string{"server"},
				VirtualHosts: []route.VirtualHost{{
					Name:    "vh",
					Domains: []string{"example.com", "*.example.com"},
					RequestHeadersToAdd: []route.HeaderValue{
						{Key: "x-a", Value: "1", Append: route.AddIfAbsent},
						{Key: "x-b", Value: "1", Append: route.OverwriteIfExistsOrAdd},
						{Key: "x-c", Value: "1", Append: route.OverwriteIfExists},
					},
					RequestHeadersToRemove:  []string{"x-vh-drop"},
					ResponseHeadersToAdd:    []route.HeaderValue{{Key: "x-vh", Value: "%UPSTREAM_HOST%"}},
					ResponseHeadersToRemove: []string{"x-vh-resp-drop"},
					RetryPolicy:             &route.RetryPolicy{RetryOn: []string{"connect-failure"}},
					Rules: []route.Rule{{
						Match:                   route.Match{Prefix: "/"},
						Cluster:                 "c",
						RequestHeadersToAdd:     []route.HeaderValue{{Key: "x-client", Value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
						RequestHeadersToRemove:  []string{"x-route-drop"},
						ResponseHeadersToAdd:    []route.HeaderValue{{Key: "x-route", Value: "r"}},
						ResponseHeadersToRemove: []string{"x-route-resp-drop"},
					}},
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TranslateRouteConfiguration(tt.rc, TranslateOptions{})
			if err != nil {
				t.Fatalf("TranslateRouteConfiguration: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("TranslateRouteConfiguration mismatch (-want +got):\n%s", diff)
			}
			if _, err := route.New(got); err != nil {
				t.Errorf("route.New(translated config) = %v, want nil", err)
			}
		})
	}
}

func TestTranslateRouteConfigurationErrors(t *testing.T) {
	tests := []struct {
		name string
		rc   *routev3.RouteConfiguration
		want string // substring of the error
		// unsupported says whether the error must wrap ErrUnsupported.
		unsupported bool
	}{
		{
			name: "nil",
			want: "nil",
		},
		{
			name: "route without match fails PGV",
			rc:   oneRoute(&routev3.Route{Action: toCluster("c")}),
			want: `route configuration "rc": invalid: `,
		},
		{
			name: "PGV error names the field",
			rc:   oneRoute(&routev3.Route{Action: toCluster("c")}),
			want: "Route.Match: value is required",
		},
		{
			name: "route without action fails PGV",
			rc:   oneRoute(&routev3.Route{Match: prefix("/")}),
			want: "invalid",
		},
		{
			name: "cluster_specifier_plugin",
			rc: &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{
				Name: "vh", Domains: []string{"*"},
				Routes: []*routev3.Route{
					{Match: prefix("/a"), Action: toCluster("a")},
					{Match: prefix("/b"), Action: toCluster("b")},
					{Match: prefix("/c"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_ClusterSpecifierPlugin{ClusterSpecifierPlugin: "p"},
					}}},
				},
			}}},
			want:        `route configuration "rc": virtual_hosts[0].routes[2].route.cluster_specifier_plugin: not supported`,
			unsupported: true,
		},
		{
			name: "nested unsupported field",
			rc: oneRoute(withAction(&routev3.RouteAction{RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{{
				Cluster: "m",
				RuntimeFraction: &corev3.RuntimeFractionalPercent{
					DefaultValue: &typev3.FractionalPercent{Numerator: 1}, RuntimeKey: "k",
				},
			}}})),
			want:        "virtual_hosts[0].routes[0].route.request_mirror_policies[0].runtime_fraction.runtime_key: not supported",
			unsupported: true,
		},
		{
			name: "top-level unsupported field",
			rc: &routev3.RouteConfiguration{
				Name: "rc", ValidateClusters: wrapperspb.Bool(true),
			},
			want:        `route configuration "rc": validate_clusters: not supported`,
			unsupported: true,
		},
		{
			name: "several unsupported fields are all listed",
			rc: &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{
				Name: "vh", Domains: []string{"*"}, RequireTls: routev3.VirtualHost_ALL,
				Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("c"), Decorator: &routev3.Decorator{Operation: "op"}}},
			}}},
			want:        "virtual_hosts[0].routes[0].decorator: not supported\nvirtual_hosts[0].require_tls: not supported",
			unsupported: true,
		},
		{
			name: "header matcher treat_missing_header_as_empty",
			rc: oneRoute(withMatch(&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{Name: "a", TreatMissingHeaderAsEmpty: true, HeaderMatchSpecifier: strMatch(&matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ""},
				})}},
			})),
			want:        "virtual_hosts[0].routes[0].match.headers[0].treat_missing_header_as_empty: not supported",
			unsupported: true,
		},
		{
			name: "query present_match false",
			rc: oneRoute(withMatch(&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				QueryParameters: []*routev3.QueryParameterMatcher{{
					Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: false},
				}},
			})),
			want:        "virtual_hosts[0].routes[0].match.query_parameters[0].present_match: false: not supported",
			unsupported: true,
		},
		{
			name: "append and append_action",
			rc: oneRoute(&routev3.Route{Match: prefix("/"), Action: toCluster("c"), RequestHeadersToAdd: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: "k", Value: "v"}, Append: wrapperspb.Bool(true),
				AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT,
			}}}),
			want: "virtual_hosts[0].routes[0].request_headers_to_add[0]: append and append_action are mutually exclusive",
		},
		{
			name: "route package validation",
			rc: oneRoute(withAction(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{
				RetryOn: "5xx,bogus",
			}})),
			want: `route configuration "rc": virtual_hosts[0].routes[0]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TranslateRouteConfiguration(tt.rc, TranslateOptions{})
			if err == nil {
				t.Fatalf("TranslateRouteConfiguration = nil error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("TranslateRouteConfiguration error = %q, want it to contain %q", err, tt.want)
			}
			if got := errors.Is(err, ErrUnsupported); got != tt.unsupported {
				t.Errorf("errors.Is(%q, ErrUnsupported) = %v, want %v", err, got, tt.unsupported)
			}
		})
	}
}

func TestTranslateLenient(t *testing.T) {
	rc := &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{
		Name: "vh", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:     &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 50}}},
			Action:    toCluster("c"),
			Decorator: &routev3.Decorator{Operation: "op"},
		}},
		IncludeRequestAttemptCount: true,
	}}}
	var got []Warning
	cfg, err := TranslateRouteConfiguration(rc, TranslateOptions{
		Lenient:       true,
		OnUnsupported: func(w Warning) { got = append(got, w) },
	})
	if err != nil {
		t.Fatalf("TranslateRouteConfiguration(lenient) = %v, want nil", err)
	}
	want := []Warning{
		{Path: "virtual_hosts[0].routes[0].match.runtime_fraction", Message: "not supported"},
		{Path: "virtual_hosts[0].routes[0].decorator", Message: "not supported"},
		{Path: "virtual_hosts[0].include_request_attempt_count", Message: "not supported"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(oneRule(route.Rule{Match: route.Match{Prefix: "/"}, Cluster: "c"}), cfg); diff != "" {
		t.Errorf("config mismatch (-want +got):\n%s", diff)
	}

	// Values that cannot be represented fail even in lenient mode.
	bad := oneRoute(withMatch(&routev3.RouteMatch{
		PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
		QueryParameters: []*routev3.QueryParameterMatcher{{
			Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: false},
		}},
	}))
	if _, err := TranslateRouteConfiguration(bad, TranslateOptions{Lenient: true}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("TranslateRouteConfiguration(lenient, present_match false) = %v, want ErrUnsupported", err)
	}

	// A nil OnUnsupported drops warnings silently but still succeeds.
	if _, err := TranslateRouteConfiguration(rc, TranslateOptions{Lenient: true}); err != nil {
		t.Errorf("TranslateRouteConfiguration(lenient, no callback) = %v, want nil", err)
	}
}

func TestTranslateUnknownFields(t *testing.T) {
	rc := oneRoute(&routev3.Route{Match: prefix("/"), Action: toCluster("c")})
	// Field 1000 of Route, varint 1: what a newer control plane might send.
	rc.VirtualHosts[0].Routes[0].ProtoReflect().SetUnknown(protoreflect.RawFields{0xc0, 0x3e, 0x01})
	_, err := TranslateRouteConfiguration(rc, TranslateOptions{})
	want := "virtual_hosts[0].routes[0]: unknown fields: not supported"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("TranslateRouteConfiguration error = %v, want it to contain %q", err, want)
	}
}

// TestTranslateJSON loads route configurations written as protojson, the
// inline route_config of the conformance configs front-proxy.yaml and
// edge.yaml converted to JSON (the module has no YAML library).
func TestTranslateJSON(t *testing.T) {
	tests := []struct {
		name string
		json string
		want route.Config
	}{
		{
			name: "front-proxy",
			json: `{
  "name": "local_route",
  "virtual_hosts": [{
    "name": "backend",
    "domains": ["*"],
    "routes": [
      {"match": {"prefix": "/service/1"}, "route": {"cluster": "service1"}},
      {"match": {"prefix": "/service/2"}, "route": {"cluster": "service2"}}
    ]
  }]
}`,
			want: route.Config{Name: "local_route", VirtualHosts: []route.VirtualHost{{
				Name: "backend", Domains: []string{"*"},
				Rules: []route.Rule{
					{Match: route.Match{Prefix: "/service/1"}, Cluster: "service1"},
					{Match: route.Match{Prefix: "/service/2"}, Cluster: "service2"},
				},
			}}},
		},
		{
			name: "edge",
			json: `{
  "name": "local_route",
  "virtual_hosts": [{
    "name": "local_service",
    "domains": ["*"],
    "routes": [
      {"match": {"prefix": "/content"}, "route": {"cluster": "service_foo", "idle_timeout": "15s"}},
      {"match": {"prefix": "/"}, "direct_response": {"status": 403, "body": {"inline_string": "denied\n"}}}
    ]
  }]
}`,
			want: route.Config{Name: "local_route", VirtualHosts: []route.VirtualHost{{
				Name: "local_service", Domains: []string{"*"},
				Rules: []route.Rule{
					{Match: route.Match{Prefix: "/content"}, Cluster: "service_foo", IdleTimeout: 15 * time.Second},
					{Match: route.Match{Prefix: "/"}, DirectResponse: &route.DirectResponse{Status: 403, Body: "denied\n"}},
				},
			}}},
		},
		{
			name: "typed_per_filter_config",
			json: `{
  "virtual_hosts": [{
    "name": "vh",
    "domains": ["*"],
    "routes": [{
      "match": {"path": "/x", "case_sensitive": false},
      "route": {"cluster": "c", "timeout": "0s"},
      "typed_per_filter_config": {
        "envoy.filters.http.fault": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "cfg"}
      },
      "request_headers_to_add": [{"header": {"key": "x-peer", "value": "%DOWNSTREAM_REMOTE_ADDRESS%"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    }]
  }]
}`,
			want: route.Config{VirtualHosts: []route.VirtualHost{{
				Name: "vh", Domains: []string{"*"},
				Rules: []route.Rule{{
					Match:               route.Match{Path: "/x", CaseInsensitive: true},
					Cluster:             "c",
					Timeout:             -1,
					FilterConfig:        map[string]any{"envoy.filters.http.fault": mustAnyString(t, "cfg")},
					RequestHeadersToAdd: []route.HeaderValue{{Key: "x-peer", Value: "%DOWNSTREAM_REMOTE_ADDRESS%", Append: route.OverwriteIfExistsOrAdd}},
				}},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rc routev3.RouteConfiguration
			if err := protojson.Unmarshal([]byte(tt.json), &rc); err != nil {
				t.Fatalf("protojson.Unmarshal: %v", err)
			}
			got, err := TranslateRouteConfiguration(&rc, TranslateOptions{})
			if err != nil {
				t.Fatalf("TranslateRouteConfiguration: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			if _, err := route.New(got); err != nil {
				t.Errorf("route.New(translated config) = %v, want nil", err)
			}
		})
	}
}

func mustAnyString(t *testing.T, s string) *anypb.Any {
	t.Helper()
	a, err := anypb.New(wrapperspb.String(s))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSupportedComplete checks the allow-list against the descriptors: every
// listed field exists, and every message reachable through a listed field is
// either listed itself (so the walk descends into it) or a well-known leaf.
// Without it a typo would reject a supported field, and a missing message
// type would let its unsupported fields through unchecked.
func TestSupportedComplete(t *testing.T) {
	for name, fields := range supported {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Errorf("supported[%q]: %v", name, err)
			continue
		}
		md, ok := d.(protoreflect.MessageDescriptor)
		if !ok {
			t.Errorf("supported[%q]: not a message", name)
			continue
		}
		for _, f := range fields {
			fd := md.Fields().ByName(f)
			if fd == nil {
				t.Errorf("supported[%q]: no field %q", name, f)
				continue
			}
			msg := fd.Message()
			if fd.IsMap() {
				msg = fd.MapValue().Message()
			}
			if msg == nil {
				continue
			}
			if _, listed := supported[msg.FullName()]; !listed && !strings.HasPrefix(string(msg.FullName()), "google.protobuf.") {
				t.Errorf("supported[%q].%s: message %s is neither listed nor a well-known type", name, f, msg.FullName())
			}
		}
	}
}
