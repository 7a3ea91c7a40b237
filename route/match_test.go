package route

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// oneRule compiles a table with a single catch-all virtual host holding m.
func oneRule(t *testing.T, m Match) *Table {
	t.Helper()
	tb, err := New(Config{VirtualHosts: []VirtualHost{{
		Name: "vh", Domains: []string{"*"},
		Rules: []Rule{{Name: "r", Match: m, Cluster: "c"}},
	}}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb
}

func TestMatchPath(t *testing.T) {
	tests := []struct {
		name  string
		match Match
		path  string
		want  bool
	}{
		{"empty matches all", Match{}, "/anything", true},
		{"empty matches empty", Match{}, "", true},
		{"prefix", Match{Prefix: "/api"}, "/api/x", true},
		{"prefix not segment", Match{Prefix: "/api"}, "/apix", true},
		{"prefix miss", Match{Prefix: "/api"}, "/ap", false},
		{"prefix case", Match{Prefix: "/api"}, "/API/x", false},
		{"prefix ci", Match{Prefix: "/Api", CaseInsensitive: true}, "/aPI/x", true},
		{"prefix ci miss", Match{Prefix: "/api", CaseInsensitive: true}, "/apb", false},
		{"prefix ci non-ascii kept", Match{Prefix: "/É", CaseInsensitive: true}, "/É/x", true},
		{"prefix ci folds ascii only", Match{Prefix: "/É", CaseInsensitive: true}, "/é/x", false},
		{"regex replacement char matches invalid utf8", Match{Regex: "/\ufffd.*"}, "/\xff/x", true},
		{"exact", Match{Path: "/a/b"}, "/a/b", true},
		{"exact longer", Match{Path: "/a/b"}, "/a/b/", false},
		{"exact ci", Match{Path: "/A/b", CaseInsensitive: true}, "/a/B", true},
		{"exact query ignored", Match{Path: "/a"}, "/a", true},
		{"regex full", Match{Regex: "/v[0-9]+/.*"}, "/v12/users", true},
		{"regex partial is miss", Match{Regex: "/v[0-9]+"}, "/v12/users", false},
		{"regex not ci", Match{Regex: "/abc", CaseInsensitive: true}, "/ABC", false},
		{"regex inline ci", Match{Regex: "(?i)/abc"}, "/ABC", true},
		{"sep prefix exact", Match{PathSeparatedPrefix: "/api"}, "/api", true},
		{"sep prefix child", Match{PathSeparatedPrefix: "/api"}, "/api/x", true},
		{"sep prefix sibling", Match{PathSeparatedPrefix: "/api"}, "/apix", false},
		{"sep prefix ci", Match{PathSeparatedPrefix: "/API", CaseInsensitive: true}, "/api/x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := oneRule(t, tt.match)
			r := httptest.NewRequest("GET", "http://h/", nil)
			r.URL.Path = tt.path
			r.URL.RawQuery = "q=1"
			if got := tb.Match(r) != nil; got != tt.want {
				t.Errorf("Match(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestMatchHeaders(t *testing.T) {
	sm := func(s StringMatcher) *StringMatcher { return &s }
	tests := []struct {
		name   string
		hm     HeaderMatcher
		header http.Header
		method string
		want   bool
	}{
		{"exact", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Exact: "v"})}, http.Header{"X-A": {"v"}}, "", true},
		{"exact miss", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Exact: "v"})}, http.Header{"X-A": {"V"}}, "", false},
		{"exact ignore case", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Exact: "v", IgnoreCase: true})}, http.Header{"X-A": {"V"}}, "", true},
		{"exact empty", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{})}, http.Header{"X-A": {""}}, "", true},
		{"exact absent", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{})}, http.Header{}, "", false},
		{"prefix", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Prefix: "ab"})}, http.Header{"X-A": {"abc"}}, "", true},
		{"prefix ci", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Prefix: "AB", IgnoreCase: true})}, http.Header{"X-A": {"abc"}}, "", true},
		{"suffix", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Suffix: "bc"})}, http.Header{"X-A": {"abc"}}, "", true},
		{"suffix miss", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Suffix: "bd"})}, http.Header{"X-A": {"abc"}}, "", false},
		{"suffix ci", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Suffix: "BC", IgnoreCase: true})}, http.Header{"X-A": {"abc"}}, "", true},
		{"contains", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Contains: "b"})}, http.Header{"X-A": {"abc"}}, "", true},
		{"contains ci", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Contains: "B", IgnoreCase: true})}, http.Header{"X-A": {"abc"}}, "", true},
		{"contains miss", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Contains: "z"})}, http.Header{"X-A": {"abc"}}, "", false},
		{"regex", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Regex: "a.c"})}, http.Header{"X-A": {"abc"}}, "", true},
		{"regex full only", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Regex: "b"})}, http.Header{"X-A": {"abc"}}, "", false},
		{"multi values joined", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Exact: "a,b"})}, http.Header{"X-A": {"a", "b"}}, "", true},
		{"present", HeaderMatcher{Name: "x-a", Present: true}, http.Header{"X-A": {""}}, "", true},
		{"present implicit", HeaderMatcher{Name: "x-a"}, http.Header{"X-A": {"x"}}, "", true},
		{"present miss", HeaderMatcher{Name: "x-a", Present: true}, http.Header{}, "", false},
		{"absent via invert", HeaderMatcher{Name: "x-a", Invert: true}, http.Header{}, "", true},
		{"invert exact", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Exact: "v"}), Invert: true}, http.Header{"X-A": {"w"}}, "", true},
		{"invert exact hit", HeaderMatcher{Name: "x-a", String: sm(StringMatcher{Exact: "v"}), Invert: true}, http.Header{"X-A": {"v"}}, "", false},
		{"range in", HeaderMatcher{Name: "x-n", Range: &Int64Range{Start: -5, End: 10}}, http.Header{"X-N": {"-5"}}, "", true},
		{"range end excluded", HeaderMatcher{Name: "x-n", Range: &Int64Range{Start: -5, End: 10}}, http.Header{"X-N": {"10"}}, "", false},
		{"range not int", HeaderMatcher{Name: "x-n", Range: &Int64Range{Start: 0, End: 10}}, http.Header{"X-N": {"1.5"}}, "", false},
		{"range absent", HeaderMatcher{Name: "x-n", Range: &Int64Range{Start: 0, End: 10}}, http.Header{}, "", false},
		{"name case-insensitive", HeaderMatcher{Name: "X-a", Present: true}, http.Header{"X-A": {"v"}}, "", true},
		{":method", HeaderMatcher{Name: ":method", String: sm(StringMatcher{Exact: "POST"})}, http.Header{}, "POST", true},
		{":method miss", HeaderMatcher{Name: ":method", String: sm(StringMatcher{Exact: "POST"})}, http.Header{}, "GET", false},
		{":authority", HeaderMatcher{Name: ":authority", String: sm(StringMatcher{Exact: "h"})}, http.Header{}, "", true},
		{":path with query", HeaderMatcher{Name: ":path", String: sm(StringMatcher{Exact: "/p?q=1"})}, http.Header{}, "", true},
		{"host is :authority", HeaderMatcher{Name: "Host", String: sm(StringMatcher{Exact: "h"})}, http.Header{}, "", true},
		{":scheme", HeaderMatcher{Name: ":scheme", String: sm(StringMatcher{Exact: "http"})}, http.Header{}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := oneRule(t, Match{Headers: []HeaderMatcher{tt.hm}})
			r := httptest.NewRequest("GET", "http://h/p?q=1", nil)
			if tt.method != "" {
				r.Method = tt.method
			}
			r.Header = tt.header
			if got := tb.Match(r) != nil; got != tt.want {
				t.Errorf("Match(header %v) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func TestMatchQueryMethodGRPC(t *testing.T) {
	sm := func(s StringMatcher) *StringMatcher { return &s }
	tests := []struct {
		name   string
		match  Match
		query  string
		method string
		ct     string
		want   bool
	}{
		{"query exact", Match{QueryParameters: []QueryParameterMatcher{{Name: "a", String: sm(StringMatcher{Exact: "1"})}}}, "b=2&a=1", "", "", true},
		{"query first occurrence", Match{QueryParameters: []QueryParameterMatcher{{Name: "a", String: sm(StringMatcher{Exact: "1"})}}}, "a=2&a=1", "", "", false},
		{"query decoded", Match{QueryParameters: []QueryParameterMatcher{{Name: "a b", String: sm(StringMatcher{Exact: "x/y z"})}}}, "a+b=x%2Fy%20z", "", "", true},
		{"query prefix ci", Match{QueryParameters: []QueryParameterMatcher{{Name: "a", String: sm(StringMatcher{Prefix: "AB", IgnoreCase: true})}}}, "a=abc", "", "", true},
		{"query regex", Match{QueryParameters: []QueryParameterMatcher{{Name: "a", String: sm(StringMatcher{Regex: "[0-9]+"})}}}, "a=123", "", "", true},
		{"query present", Match{QueryParameters: []QueryParameterMatcher{{Name: "debug", Present: true}}}, "x=1&debug", "", "", true},
		{"query present implicit", Match{QueryParameters: []QueryParameterMatcher{{Name: "debug"}}}, "debug=", "", "", true},
		{"query absent", Match{QueryParameters: []QueryParameterMatcher{{Name: "debug"}}}, "debugx=1", "", "", false},
		{"query empty", Match{QueryParameters: []QueryParameterMatcher{{Name: "a"}}}, "", "", "", false},
		{"query bad escape", Match{QueryParameters: []QueryParameterMatcher{{Name: "a", String: sm(StringMatcher{Exact: "1"})}}}, "a=%zz", "", "", false},
		{"method", Match{Methods: []string{"PUT", "POST"}}, "", "POST", "", true},
		{"method miss", Match{Methods: []string{"PUT", "POST"}}, "", "GET", "", false},
		{"grpc", Match{GRPC: true}, "", "POST", "application/grpc", true},
		{"grpc proto", Match{GRPC: true}, "", "POST", "application/grpc+proto", true},
		{"grpc web is not grpc", Match{GRPC: true}, "", "POST", "application/grpc-web", false},
		{"grpc missing", Match{GRPC: true}, "", "POST", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := oneRule(t, tt.match)
			r := httptest.NewRequest("GET", "http://h/p", nil)
			r.URL.RawQuery = tt.query
			if tt.method != "" {
				r.Method = tt.method
			}
			if tt.ct != "" {
				r.Header.Set("Content-Type", tt.ct)
			}
			if got := tb.Match(r) != nil; got != tt.want {
				t.Errorf("Match(query %q, method %q, content-type %q) = %v, want %v", tt.query, tt.method, tt.ct, got, tt.want)
			}
		})
	}
}

func TestFirstMatchOrder(t *testing.T) {
	tb, err := New(Config{VirtualHosts: []VirtualHost{{
		Name: "vh", Domains: []string{"*"},
		Rules: []Rule{
			{Name: "regex-first", Match: Match{Regex: "/a/b/[0-9]+"}, Cluster: "c"},
			{Name: "exact", Match: Match{Path: "/a/b/c"}, Cluster: "c"},
			{Name: "long", Match: Match{Prefix: "/a/b/"}, Cluster: "c"},
			{Name: "short", Match: Match{Prefix: "/a/"}, Cluster: "c"},
			{Name: "longer-after-shorter", Match: Match{Prefix: "/a/z/"}, Cluster: "c"},
			{Name: "ci", Match: Match{Prefix: "/X", CaseInsensitive: true}, Cluster: "c"},
			{Name: "hdr", Match: Match{Prefix: "/h", Headers: []HeaderMatcher{{Name: "x"}}}, Cluster: "c"},
			{Name: "h", Match: Match{Prefix: "/h"}, Cluster: "c"},
			{Name: "root", Match: Match{Prefix: "/"}, Cluster: "c"},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		header string
		want   string
	}{
		{"/a/b/12", "", "regex-first"},
		{"/a/b/c", "", "exact"},
		{"/a/b/d", "", "long"},
		{"/a/z/d", "", "short"},
		{"/x/1", "", "ci"},
		{"/h", "", "h"},
		{"/h", "x", "hdr"},
		{"/zzz", "", "root"},
		{"", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path+tt.header, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://h/", nil)
			r.URL.Path = tt.path
			if tt.header != "" {
				r.Header.Set(tt.header, "1")
			}
			got := ""
			if rt := tb.Match(r); rt != nil {
				got = rt.Name()
			}
			if got != tt.want {
				t.Errorf("Match(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestVirtualHostSelection(t *testing.T) {
	vh := func(name string, domains ...string) VirtualHost {
		return VirtualHost{Name: name, Domains: domains, Rules: []Rule{{Cluster: name}}}
	}
	tb, err := New(Config{VirtualHosts: []VirtualHost{
		vh("default", "*"),
		vh("prefix-short", "api.*"),
		vh("prefix-long", "api.example.*"),
		vh("suffix-short", "*.com"),
		vh("suffix-long", "*.example.com"),
		vh("suffix-nodot", "*-bar.foo.org"),
		vh("exact", "www.example.com"),
		vh("exact-port", "www.example.com:8443"),
		vh("ipv6", "[::1]"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, want string }{
		{"www.example.com", "exact"},
		{"WWW.Example.COM", "exact"},
		{"www.example.com:8080", "exact"},
		{"www.example.com:8443", "exact-port"},
		{"a.example.com", "suffix-long"},
		{"a.example.com:9", "suffix-long"},
		{"example.com", "suffix-short"},
		{".example.com", "suffix-short"},
		{"baz-bar.foo.org", "suffix-nodot"},
		{"-bar.foo.org", "default"},
		{"api.example.net", "prefix-long"},
		{"api.other", "prefix-short"},
		{"api.example.com", "suffix-long"},
		{"other", "default"},
		{"[::1]:80", "ipv6"},
		{"", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://x/", nil)
			r.Host = tt.host
			rt := tb.Match(r)
			if rt == nil {
				t.Fatalf("Match(host %q) = nil, want %q", tt.host, tt.want)
			}
			if got := rt.VirtualHost(); got != tt.want {
				t.Errorf("Match(host %q).VirtualHost() = %q, want %q", tt.host, got, tt.want)
			}
		})
	}

	noDefault, err := New(Config{VirtualHosts: []VirtualHost{vh("only", "a.com")}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "http://b.com/", nil)
	if rt := noDefault.Match(r); rt != nil {
		t.Errorf("Match(unknown host) = %q, want nil", rt.VirtualHost())
	}
}

func TestStripPort(t *testing.T) {
	for in, want := range map[string]string{
		"a": "a", "a:80": "a", "[::1]:80": "[::1]", "[::1]": "[::1]", "::1": "::1", "": "",
	} {
		if got := stripPort(in); got != want {
			t.Errorf("stripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRegexLiteralPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"/svc1/.*":     "/svc1/",
		"/a(b|c)":      "/a",
		"(/x)/y[0-9]":  "/x/y",
		"(?i)/abc":     "",
		"^/a":          "",
		"/a?":          "/",
		"/v[0-9]+/.*":  "/v",
		"/exact":       "/exact",
		"(/p(q))r.*":   "/pqr",
		"/a|/b":        "/",
		`\Q/lit\E.*`:   "/lit",
		"/caf\u00e9/x": "/caf\u00e9/x",
		"/a\ufffdb":    "/a",
	} {
		if got := regexLiteralPrefix(in); got != want {
			t.Errorf("regexLiteralPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}
