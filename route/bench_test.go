package route

import (
	"fmt"
	"net/http/httptest"
	"testing"
)

// buildBenchTable builds a realistic table: a few virtual hosts, a handful
// of routes that cannot be indexed (case-insensitive, regex without a
// literal prefix) at the top, n distinct /svcN/ services (some exact paths,
// some header-gated, some regex with a literal prefix), and a catch-all.
func buildBenchTable(n int) *Table {
	rules := []Rule{
		{Name: "health", Match: Match{Path: "/healthz", CaseInsensitive: true}, DirectResponse: &DirectResponse{Status: 200}},
		{Name: "admin", Match: Match{Regex: "(?i)/admin/.*"}, Cluster: "admin"},
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc%d", i)
		switch i % 10 {
		case 3:
			rules = append(rules, Rule{Name: name + "-canary", Match: Match{Prefix: "/" + name + "/", Headers: []HeaderMatcher{{Name: "x-canary", Present: true}}}, Cluster: name + "-canary"})
		case 7:
			rules = append(rules, Rule{Name: name + "-exact", Match: Match{Path: "/" + name + "/status"}, Cluster: name})
		case 9:
			rules = append(rules, Rule{Name: name + "-v", Match: Match{Regex: "/" + name + "/v[0-9]+/.*"}, Cluster: name})
		}
		rules = append(rules, Rule{Name: name, Match: Match{Prefix: "/" + name + "/"}, Cluster: name})
	}
	rules = append(rules, Rule{Name: "catch-all", Match: Match{Prefix: "/"}, Cluster: "default"})
	tb, err := New(Config{VirtualHosts: []VirtualHost{
		{Name: "other", Domains: []string{"other.example.com"}, Rules: []Rule{{Cluster: "o"}}},
		{Name: "wild", Domains: []string{"*.wild.example.com"}, Rules: []Rule{{Cluster: "w"}}},
		{Name: "svc", Domains: []string{"svc.example.com", "svc.example.com:8443"}, Rules: rules},
	}})
	if err != nil {
		panic(err)
	}
	return tb
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			tb := buildBenchTable(n)
			r := httptest.NewRequest("GET", fmt.Sprintf("http://svc.example.com/svc%d/items/42", n-2), nil)
			r.Header.Set("X-Tenant", "t1")
			if rt := tb.Match(r); rt == nil || rt.Name() != fmt.Sprintf("svc%d", n-2) {
				b.Fatalf("Match() = %v", rt)
			}
			b.ReportAllocs()
			for b.Loop() {
				tb.Match(r)
			}
		})
	}
}

func BenchmarkMatchQuery(b *testing.B) {
	tb, err := New(Config{VirtualHosts: []VirtualHost{{Name: "v", Domains: []string{"*"}, Rules: []Rule{
		{Match: Match{Prefix: "/", QueryParameters: []QueryParameterMatcher{{Name: "debug", String: &StringMatcher{Exact: "1"}}}}, Cluster: "debug"},
		{Match: Match{Prefix: "/"}, Cluster: "c"},
	}}}})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "http://h/a?x=1&y=2&debug=1", nil)
	b.ReportAllocs()
	for b.Loop() {
		tb.Match(r)
	}
}

func BenchmarkRewriteRequest(b *testing.B) {
	tb, err := New(Config{
		RequestHeadersToAdd: []HeaderValue{{Key: "x-gw", Value: "portico", Append: OverwriteIfExistsOrAdd}},
		VirtualHosts: []VirtualHost{{Name: "v", Domains: []string{"*"}, Rules: []Rule{
			{Match: Match{Prefix: "/api/"}, PrefixRewrite: "/", Cluster: "c", HostRewrite: "up"},
			{Match: Match{Prefix: "/"}, Cluster: "c"},
		}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	in := httptest.NewRequest("GET", "http://h/api/items", nil)
	out := in.Clone(in.Context())
	rt := tb.Match(in)
	b.Run("rewrite", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rt.RewriteRequest(out, in)
		}
	})
	plain, _ := New(Config{VirtualHosts: []VirtualHost{{Name: "v", Domains: []string{"*"}, Rules: []Rule{{Cluster: "c"}}}}})
	prt := plain.Match(in)
	b.Run("none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			prt.RewriteRequest(out, in)
		}
	})
}
