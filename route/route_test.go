package route

import (
	"context"
	"crypto/tls"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// single compiles a catch-all table holding one rule and returns its route.
func single(t *testing.T, r Rule) *Route {
	t.Helper()
	tb, err := New(Config{VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Rules: []Rule{r}}}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb.Routes()[0]
}

func TestClusterFor(t *testing.T) {
	tests := []struct {
		name   string
		rule   Rule
		header http.Header
		want   string
	}{
		{"cluster", Rule{Cluster: "a"}, nil, "a"},
		{"single weighted", Rule{WeightedClusters: []WeightedCluster{{Name: "w", Weight: 3}, {Name: "z", Weight: 0}}}, nil, "w"},
		{"cluster header", Rule{ClusterHeader: "x-cluster"}, http.Header{"X-Cluster": {"from-header"}}, "from-header"},
		{"cluster header missing", Rule{ClusterHeader: "x-cluster"}, http.Header{}, ""},
		{"redirect", Rule{Redirect: &Redirect{}}, nil, ""},
		{"direct", Rule{DirectResponse: &DirectResponse{Status: 200}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := single(t, tt.rule)
			r := httptest.NewRequest("GET", "http://h/", nil)
			r.Header = tt.header
			if got := rt.ClusterFor(r); got != tt.want {
				t.Errorf("ClusterFor() = %q, want %q", got, tt.want)
			}
			if _, _, _, ok := rt.Respond(r); ok != (tt.want == "" && tt.rule.ClusterHeader == "") {
				t.Errorf("Respond() ok = %v for %s", ok, tt.name)
			}
		})
	}
}

func TestWeightedDistribution(t *testing.T) {
	rt := single(t, Rule{WeightedClusters: []WeightedCluster{
		{Name: "a", Weight: 10}, {Name: "b", Weight: 30}, {Name: "c", Weight: 60}, {Name: "never", Weight: 0},
	}})
	r := httptest.NewRequest("GET", "http://h/", nil)
	const n = 60000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[rt.ClusterFor(r)]++
	}
	want := map[string]float64{"a": 0.1, "b": 0.3, "c": 0.6}
	for name, p := range want {
		// 6 standard deviations of a binomial: flaky with probability < 1e-8.
		sd := math.Sqrt(n * p * (1 - p))
		if got := float64(counts[name]); math.Abs(got-n*p) > 6*sd {
			t.Errorf("cluster %q picked %v times, want %v ± %.0f", name, got, n*p, 6*sd)
		}
	}
	if counts["never"] != 0 {
		t.Errorf("zero-weight cluster picked %d times, want 0", counts["never"])
	}
	// Exact boundaries of the cumulative pick.
	for point, want := range map[uint64]string{0: "a", 9: "a", 10: "b", 39: "b", 40: "c", 99: "c"} {
		if got := rt.pickWeighted(point); got != want {
			t.Errorf("pickWeighted(%d) = %q, want %q", point, got, want)
		}
	}
}

func TestRedirect(t *testing.T) {
	tests := []struct {
		name   string
		match  Match
		rd     Redirect
		target string
		tls    bool
		status int
		want   string
	}{
		{"defaults keep everything", Match{}, Redirect{}, "http://h.com/a/b?x=1", false, 301, "http://h.com/a/b?x=1"},
		{"https redirect drops :80", Match{}, Redirect{HTTPSRedirect: true}, "http://h.com:80/a", false, 301, "https://h.com/a"},
		{"https redirect keeps other port", Match{}, Redirect{HTTPSRedirect: true}, "http://h.com:8080/a", false, 301, "https://h.com:8080/a"},
		{"scheme from tls", Match{}, Redirect{Scheme: "HTTP"}, "https://h.com:443/a", true, 301, "http://h.com/a"},
		{"host", Match{}, Redirect{Host: "new.com"}, "http://h.com/a", false, 301, "http://new.com/a"},
		{"port", Match{}, Redirect{Port: 8443}, "http://h.com:80/a", false, 301, "http://h.com:8443/a"},
		{"host and port", Match{}, Redirect{Host: "n.com:1", Port: 2}, "http://h.com/a", false, 301, "http://n.com:2/a"},
		{"path keeps query", Match{}, Redirect{Path: "/new"}, "http://h.com/a?x=1", false, 301, "http://h.com/new?x=1"},
		{"path with query replaces", Match{}, Redirect{Path: "/new?y=2"}, "http://h.com/a?x=1", false, 301, "http://h.com/new?y=2"},
		{"path strip query", Match{}, Redirect{Path: "/new", StripQuery: true}, "http://h.com/a?x=1", false, 301, "http://h.com/new"},
		{"strip query", Match{}, Redirect{StripQuery: true}, "http://h.com/a?x=1", false, 301, "http://h.com/a"},
		{"prefix rewrite", Match{Prefix: "/old/"}, Redirect{PrefixRewrite: "/new/"}, "http://h.com/old/x?q", false, 301, "http://h.com/new/x?q"},
		{"prefix rewrite exact replaces all", Match{Path: "/old"}, Redirect{PrefixRewrite: "/new"}, "http://h.com/old", false, 301, "http://h.com/new"},
		{"prefix rewrite keeps escapes", Match{Prefix: "/old/"}, Redirect{PrefixRewrite: "/new/"}, "http://h.com/old/a%2Fb", false, 301, "http://h.com/new/a%2Fb"},
		{"302", Match{}, Redirect{ResponseCode: 302}, "http://h.com/", false, 302, "http://h.com/"},
		{"303", Match{}, Redirect{ResponseCode: 303}, "http://h.com/", false, 303, "http://h.com/"},
		{"307", Match{}, Redirect{ResponseCode: 307}, "http://h.com/", false, 307, "http://h.com/"},
		{"308 all fields", Match{Prefix: "/p"}, Redirect{ResponseCode: 308, HTTPSRedirect: true, Host: "x.org", Port: 9443, PrefixRewrite: "/q", StripQuery: true}, "http://h.com/p/z?a=b", false, 308, "https://x.org:9443/q/z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := tt.rd
			rt := single(t, Rule{Match: tt.match, Redirect: &rd})
			r := httptest.NewRequest("GET", tt.target, nil)
			r.URL.Scheme, r.URL.Host = "", "" // as a server sees an origin-form request
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			status, h, body, ok := rt.Respond(r)
			if !ok || status != tt.status || body != nil {
				t.Errorf("Respond() = %d, body %q, ok %v; want %d, nil, true", status, body, ok, tt.status)
			}
			if got := h.Get("Location"); got != tt.want {
				t.Errorf("Location = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDirectResponse(t *testing.T) {
	rt := single(t, Rule{DirectResponse: &DirectResponse{Status: 418, Body: "teapot", Header: http.Header{"X-A": {"1"}}}})
	r := httptest.NewRequest("GET", "http://h/", nil)
	status, h, body, ok := rt.Respond(r)
	if !ok || status != 418 || string(body) != "teapot" {
		t.Errorf("Respond() = %d, %q, %v; want 418, \"teapot\", true", status, body, ok)
	}
	want := http.Header{"X-A": {"1"}, "Content-Type": {"text/plain"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	h.Set("X-A", "mutated")
	if _, h2, _, _ := rt.Respond(r); h2.Get("X-A") != "1" {
		t.Errorf("second Respond header X-A = %q, want %q (headers must not be shared)", h2.Get("X-A"), "1")
	}
	if _, _, _, ok := single(t, Rule{Cluster: "c"}).Respond(r); ok {
		t.Error("Respond() on a cluster route: ok = true, want false")
	}
}

func TestRewritePath(t *testing.T) {
	tests := []struct {
		name     string
		rule     Rule
		target   string
		wantPath string
		wantRaw  string
		wantURI  string
	}{
		{"prefix", Rule{Match: Match{Prefix: "/api/"}, PrefixRewrite: "/"}, "/api/v1/x?q=1", "/v1/x", "", "/v1/x?q=1"},
		{"prefix to longer", Rule{Match: Match{Prefix: "/a"}, PrefixRewrite: "/b/c"}, "/a/x", "/b/c/x", "", "/b/c/x"},
		{"prefix ci", Rule{Match: Match{Prefix: "/API", CaseInsensitive: true}, PrefixRewrite: "/x"}, "/Api/y", "/x/y", "", "/x/y"},
		{"sep prefix", Rule{Match: Match{PathSeparatedPrefix: "/api"}, PrefixRewrite: "/v2"}, "/api/x", "/v2/x", "", "/v2/x"},
		{"exact replaces whole", Rule{Match: Match{Path: "/old"}, PrefixRewrite: "/new"}, "/old", "/new", "", "/new"},
		{"regex match replaces whole", Rule{Match: Match{Regex: "/o.*"}, PrefixRewrite: "/n"}, "/old/x", "/n", "", "/n"},
		{"match all prepends", Rule{PrefixRewrite: "/pre"}, "/x", "/pre/x", "", "/pre/x"},
		{"prefix keeps escaped slash", Rule{Match: Match{Prefix: "/api/"}, PrefixRewrite: "/v/"}, "/api/a%2Fb", "/v/a/b", "/v/a%2Fb", "/v/a%2Fb"},
		{"regex rewrite groups", Rule{Match: Match{Prefix: "/"}, RegexRewrite: &RegexRewrite{Pattern: "^/service/([^/]+)(/.*)$", Substitution: `\2/instance/\1`}}, "/service/foo/v1/api", "/v1/api/instance/foo", "", "/v1/api/instance/foo"},
		{"regex rewrite all matches", Rule{RegexRewrite: &RegexRewrite{Pattern: "one", Substitution: "two"}}, "/xxx/one/yyy/one/zzz", "/xxx/two/yyy/two/zzz", "", "/xxx/two/yyy/two/zzz"},
		{"regex rewrite literal dollar and backslash", Rule{RegexRewrite: &RegexRewrite{Pattern: "a", Substitution: `$\\`}}, "/a", `/$\`, "", `/$%5C`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rule.Cluster = "c"
			rt := single(t, tt.rule)
			in := httptest.NewRequest("GET", "http://h"+tt.target, nil)
			out := in.Clone(context.Background())
			rt.RewriteRequest(out, in)
			got := []string{out.URL.Path, out.URL.RawPath, out.URL.RequestURI()}
			want := []string{tt.wantPath, tt.wantRaw, tt.wantURI}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("[Path RawPath RequestURI] (-want +got):\n%s", diff)
			}
			if in.URL.Path == out.URL.Path && tt.wantPath != in.URL.Path {
				t.Errorf("in.URL.Path changed to %q", in.URL.Path)
			}
		})
	}
}

func TestRewriteHost(t *testing.T) {
	tests := []struct {
		name   string
		rule   Rule
		header http.Header
		want   string
	}{
		{"none", Rule{}, nil, "orig"},
		{"literal", Rule{HostRewrite: "up.internal:8080"}, nil, "up.internal:8080"},
		{"header", Rule{HostRewriteHeader: "x-host"}, http.Header{"X-Host": {"from-hdr"}}, "from-hdr"},
		{"header missing", Rule{HostRewriteHeader: "x-host"}, http.Header{}, "orig"},
		{"auto is left to the cluster", Rule{AutoHostRewrite: true}, nil, "orig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rule.Cluster = "c"
			rt := single(t, tt.rule)
			in := httptest.NewRequest("GET", "http://orig/", nil)
			in.Header = tt.header
			out := in.Clone(context.Background())
			rt.RewriteRequest(out, in)
			if out.Host != tt.want {
				t.Errorf("out.Host = %q, want %q", out.Host, tt.want)
			}
			if got, want := rt.AutoHostRewrite(), tt.rule.AutoHostRewrite; got != want {
				t.Errorf("AutoHostRewrite() = %v, want %v", got, want)
			}
		})
	}
}

func TestHeaderMutationLevels(t *testing.T) {
	cfg := func(mostSpecific bool) Config {
		return Config{
			MostSpecificHeaderMutationsWins: mostSpecific,
			RequestHeadersToAdd: []HeaderValue{
				{Key: "x-level", Value: "table", Append: OverwriteIfExistsOrAdd},
				{Key: "x-trace", Value: "table"},
			},
			RequestHeadersToRemove:  []string{"x-secret"},
			ResponseHeadersToAdd:    []HeaderValue{{Key: "x-level", Value: "table", Append: OverwriteIfExistsOrAdd}},
			ResponseHeadersToRemove: []string{"server"},
			VirtualHosts: []VirtualHost{{
				Name: "vh", Domains: []string{"*"},
				RequestHeadersToAdd: []HeaderValue{
					{Key: "x-level", Value: "vhost", Append: OverwriteIfExistsOrAdd},
					{Key: "x-trace", Value: "vhost"},
				},
				ResponseHeadersToAdd: []HeaderValue{{Key: "x-vh", Value: "1"}},
				Rules: []Rule{{
					Cluster: "c",
					RequestHeadersToAdd: []HeaderValue{
						{Key: "x-level", Value: "route", Append: OverwriteIfExistsOrAdd},
						{Key: "x-trace", Value: "route"},
						{Key: "x-secret", Value: "route-adds-secret"},
					},
					RequestHeadersToRemove:  []string{"x-drop"},
					ResponseHeadersToAdd:    []HeaderValue{{Key: "x-level", Value: "route", Append: OverwriteIfExistsOrAdd}},
					ResponseHeadersToRemove: []string{"x-internal"},
				}},
			}},
		}
	}
	tests := []struct {
		name         string
		mostSpecific bool
		wantReq      http.Header
		wantResp     http.Header
	}{
		{
			name: "outer levels win",
			wantReq: http.Header{
				"X-Level": {"table"},
				"X-Trace": {"in", "route", "vhost", "table"},
			},
			wantResp: http.Header{"X-Level": {"table"}, "X-Vh": {"1"}},
		},
		{
			name:         "most specific wins",
			mostSpecific: true,
			wantReq: http.Header{
				"X-Level":  {"route"},
				"X-Trace":  {"in", "table", "vhost", "route"},
				"X-Secret": {"route-adds-secret"},
			},
			wantResp: http.Header{"X-Level": {"route"}, "X-Vh": {"1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := New(cfg(tt.mostSpecific))
			if err != nil {
				t.Fatal(err)
			}
			in := httptest.NewRequest("GET", "http://h/", nil)
			in.Header = http.Header{"X-Trace": {"in"}, "X-Secret": {"s"}, "X-Drop": {"d"}}
			rt := tb.Match(in)
			out := in.Clone(context.Background())
			rt.RewriteRequest(out, in)
			if diff := cmp.Diff(tt.wantReq, out.Header); diff != "" {
				t.Errorf("request header (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(http.Header{"X-Trace": {"in"}, "X-Secret": {"s"}, "X-Drop": {"d"}}, in.Header); diff != "" {
				t.Errorf("in.Header modified (-want +got):\n%s", diff)
			}
			resp := http.Header{"Server": {"up"}, "X-Internal": {"1"}}
			rt.RewriteResponse(resp, in, "10.0.0.1:80")
			if diff := cmp.Diff(tt.wantResp, resp); diff != "" {
				t.Errorf("response header (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendActions(t *testing.T) {
	tests := []struct {
		action AppendAction
		start  http.Header
		want   http.Header
	}{
		{AppendIfExistsOrAdd, http.Header{"X-A": {"old"}}, http.Header{"X-A": {"old", "new"}}},
		{AppendIfExistsOrAdd, http.Header{}, http.Header{"X-A": {"new"}}},
		{AddIfAbsent, http.Header{"X-A": {"old"}}, http.Header{"X-A": {"old"}}},
		{AddIfAbsent, http.Header{}, http.Header{"X-A": {"new"}}},
		{OverwriteIfExistsOrAdd, http.Header{"X-A": {"old", "older"}}, http.Header{"X-A": {"new"}}},
		{OverwriteIfExistsOrAdd, http.Header{}, http.Header{"X-A": {"new"}}},
		{OverwriteIfExists, http.Header{"X-A": {"old"}}, http.Header{"X-A": {"new"}}},
		{OverwriteIfExists, http.Header{}, http.Header{}},
	}
	for _, tt := range tests {
		t.Run(tt.action.String(), func(t *testing.T) {
			rt := single(t, Rule{Cluster: "c", ResponseHeadersToAdd: []HeaderValue{{Key: "x-a", Value: "new", Append: tt.action}}})
			rt.RewriteResponse(tt.start, httptest.NewRequest("GET", "http://h/", nil), "")
			if diff := cmp.Diff(tt.want, tt.start); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeaderVariables(t *testing.T) {
	host, _ := os.Hostname()
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	tests := []struct {
		value string
		want  string
	}{
		{"plain", "plain"},
		{"%DOWNSTREAM_REMOTE_ADDRESS%", "192.0.2.7:4321"},
		{"ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;", "ip=192.0.2.7;"},
		{"%DOWNSTREAM_LOCAL_ADDRESS%", "127.0.0.1:8080"},
		{"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "127.0.0.1"},
		{"%PROTOCOL%", "HTTP/2"},
		{"%REQ(x-user)%", "alice"},
		{"%REQ(x-none?x-user)%", "alice"},
		{"%REQ(x-user):3%", "ali"},
		{"[%REQ(x-none)%]", "[]"},
		{"%REQ(:authority)%|%REQ(host)%|%REQ(:method)%|%REQ(:path)%", "h|h|GET|/p?q=1"},
		{"%HOSTNAME%", host},
		{"%REQUESTED_SERVER_NAME%", "sni.example"},
		{"%UPSTREAM_HOST%", "10.1.1.1:443"},
		{"100%% sure", "100% sure"},
		{"%%%PROTOCOL%%%", "%HTTP/2%"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			rt := single(t, Rule{Cluster: "c", ResponseHeadersToAdd: []HeaderValue{{Key: "x-v", Value: tt.value}}})
			in := httptest.NewRequest("GET", "http://h/p?q=1", nil)
			in = in.WithContext(context.WithValue(in.Context(), http.LocalAddrContextKey, local))
			in.RemoteAddr = "192.0.2.7:4321"
			in.ProtoMajor, in.Proto = 2, "HTTP/2.0"
			in.Header.Set("X-User", "alice")
			in.TLS = &tls.ConnectionState{ServerName: "sni.example"}
			h := http.Header{}
			rt.RewriteResponse(h, in, "10.1.1.1:443")
			if got := h.Get("X-V"); got != tt.want {
				t.Errorf("%q evaluated to %q, want %q", tt.value, got, tt.want)
			}
		})
	}

	t.Run("START_TIME", func(t *testing.T) {
		rt := single(t, Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: "x-t", Value: "%START_TIME%"}}})
		in := httptest.NewRequest("GET", "http://h/", nil)
		out := in.Clone(context.Background())
		rt.RewriteRequest(out, in)
		got := out.Header.Get("X-T")
		ts, err := time.Parse(time.RFC3339Nano, got)
		if err != nil || time.Since(ts).Abs() > time.Minute {
			t.Errorf("%%START_TIME%% = %q (%v), want a current RFC 3339 time", got, err)
		}
	})

	t.Run("UPSTREAM_HOST on request is empty and skipped", func(t *testing.T) {
		rt := single(t, Rule{Cluster: "c", RequestHeadersToAdd: []HeaderValue{{Key: "x-u", Value: "%UPSTREAM_HOST%"}}})
		in := httptest.NewRequest("GET", "http://h/", nil)
		out := in.Clone(context.Background())
		rt.RewriteRequest(out, in)
		if vs, ok := out.Header["X-U"]; ok {
			t.Errorf("X-U = %q, want absent", vs)
		}
	})
}

func TestDefaultsAndPolicies(t *testing.T) {
	vhRetry := &RetryPolicy{RetryOn: []string{Retry5xx}}
	tb, err := New(Config{VirtualHosts: []VirtualHost{{
		Name: "vh", Domains: []string{"*"}, RetryPolicy: vhRetry,
		Rules: []Rule{
			{Name: "defaults", Match: Match{Path: "/d"}, Cluster: "c"},
			{
				Name: "set", Match: Match{Path: "/s"}, Cluster: "c",
				Timeout: 3 * time.Second, IdleTimeout: time.Minute,
				Retry:        &RetryPolicy{RetryOn: []string{RetryReset}, NumRetries: 4, BaseInterval: time.Second},
				HashPolicy:   []HashPolicy{{Header: "x-user", Terminal: true}, {Cookie: &CookieHash{Name: "s", TTL: time.Hour, Path: "/"}}},
				Mirrors:      []MirrorPolicy{{Cluster: "shadow"}, {Cluster: "half", Fraction: 0.5}},
				FilterConfig: map[string]any{"cors": "cfg"},
				BufferLimit:  4096,
			},
			{Name: "disabled", Match: Match{Path: "/x"}, Cluster: "c", Timeout: -1, IdleTimeout: -1},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	rs := tb.Routes()
	d, s, x := rs[0], rs[1], rs[2]
	if got := d.Timeout(); got != 15*time.Second {
		t.Errorf("default Timeout() = %v, want 15s", got)
	}
	if got := s.Timeout(); got != 3*time.Second {
		t.Errorf("Timeout() = %v, want 3s", got)
	}
	if got := x.Timeout(); got != 0 {
		t.Errorf("disabled Timeout() = %v, want 0", got)
	}
	if got := d.IdleTimeout(); got != 0 {
		t.Errorf("default IdleTimeout() = %v, want 0", got)
	}
	if got := x.IdleTimeout(); got >= 0 {
		t.Errorf("disabled IdleTimeout() = %v, want negative", got)
	}
	if got := d.Retry(); got == nil || !cmp.Equal(got.RetryOn, []string{Retry5xx}) {
		t.Errorf("default Retry() = %+v, want the virtual host's", got)
	}
	vhRetry.RetryOn[0] = "mutated"
	if got := d.Retry().RetryOn[0]; got != Retry5xx {
		t.Errorf("Retry().RetryOn[0] = %q after caller mutation, want %q (config must be copied)", got, Retry5xx)
	}
	if got := d.Retry().Retries(); got != 1 {
		t.Errorf("default Retries() = %d, want 1", got)
	}
	if base, max := d.Retry().Backoff(); base != 25*time.Millisecond || max != 250*time.Millisecond {
		t.Errorf("default Backoff() = %v, %v; want 25ms, 250ms", base, max)
	}
	if got := s.Retry(); got.Retries() != 4 {
		t.Errorf("Retries() = %d, want 4", got.Retries())
	}
	if base, max := s.Retry().Backoff(); base != time.Second || max != 10*time.Second {
		t.Errorf("Backoff() = %v, %v; want 1s, 10s", base, max)
	}
	if got := (&RetryPolicy{NumRetries: -1}).Retries(); got != 0 {
		t.Errorf("Retries() with NumRetries -1 = %d, want 0", got)
	}
	wantMirrors := []MirrorPolicy{{Cluster: "shadow", Fraction: 1}, {Cluster: "half", Fraction: 0.5}}
	if diff := cmp.Diff(wantMirrors, s.Mirrors()); diff != "" {
		t.Errorf("Mirrors() (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(tb.Config().VirtualHosts[0].Rules[1].HashPolicy, s.HashPolicy()); diff != "" || len(s.HashPolicy()) != 2 {
		t.Errorf("HashPolicy() (-want +got):\n%s", diff)
	}
	if got := s.FilterConfig()["cors"]; got != "cfg" {
		t.Errorf("FilterConfig()[cors] = %v, want cfg", got)
	}
	if got := s.BufferLimit(); got != 4096 {
		t.Errorf("BufferLimit() = %d, want 4096", got)
	}
	if got := d.BufferLimit(); got != 0 {
		t.Errorf("default BufferLimit() = %d, want 0", got)
	}
	for i, r := range rs {
		if r.Index() != i || r.VirtualHost() != "vh" || r.Rule() != &tb.Config().VirtualHosts[0].Rules[i] {
			t.Errorf("Routes()[%d]: Index %d, VirtualHost %q, Rule %p; want %d, vh, %p", i, r.Index(), r.VirtualHost(), r.Rule(), i, &tb.Config().VirtualHosts[0].Rules[i])
		}
	}
}

func TestTableAccessors(t *testing.T) {
	cfg := Config{Name: "rc", VirtualHosts: []VirtualHost{
		{Name: "a", Domains: []string{"a"}, Rules: []Rule{{Cluster: "1"}, {Cluster: "2"}}},
		{Name: "b", Domains: []string{"b"}, Rules: []Rule{{Cluster: "3"}}},
	}}
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.VirtualHosts[0].Rules[0].Cluster = "changed"
	if got := tb.Name(); got != "rc" {
		t.Errorf("Name() = %q, want rc", got)
	}
	if got := tb.Config().VirtualHosts[0].Rules[0].Cluster; got != "1" {
		t.Errorf("Config() cluster = %q after caller mutation, want 1", got)
	}
	var got []string
	for i, r := range tb.Routes() {
		if r.Index() != i {
			t.Errorf("Routes()[%d].Index() = %d", i, r.Index())
		}
		got = append(got, r.VirtualHost()+"/"+r.ClusterFor(nil))
	}
	if diff := cmp.Diff([]string{"a/1", "a/2", "b/3"}, got); diff != "" {
		t.Errorf("Routes() (-want +got):\n%s", diff)
	}
}

func TestNoAllocs(t *testing.T) {
	tb := buildBenchTable(1000)
	r := httptest.NewRequest("GET", "http://svc.example.com/svc998/items/42", nil)
	r.Header.Set("X-Tenant", "t1")
	rt := tb.Match(r)
	if rt == nil || rt.Name() != "svc998" {
		t.Fatalf("Match() = %v, want svc998", rt)
	}
	if n := testing.AllocsPerRun(100, func() { tb.Match(r) }); n != 0 {
		t.Errorf("Match allocs = %v, want 0", n)
	}
	out := r.Clone(context.Background())
	if n := testing.AllocsPerRun(100, func() { rt.RewriteRequest(out, r) }); n != 0 {
		t.Errorf("RewriteRequest allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { rt.ClusterFor(r) }); n != 0 {
		t.Errorf("ClusterFor allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { lowerASCII("already.lower:80") }); n != 0 {
		t.Errorf("lowerASCII allocs = %v, want 0", n)
	}
}

func TestConcurrentMatch(t *testing.T) {
	tb := buildBenchTable(100)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			r := httptest.NewRequest("GET", "http://svc.example.com/svc50/x", nil)
			for i := 0; i < 1000; i++ {
				rt := tb.Match(r)
				if rt == nil || rt.ClusterFor(r) == "" {
					t.Error("Match() = nil or empty cluster")
					return
				}
				out := r.Clone(context.Background())
				rt.RewriteRequest(out, r)
			}
		}()
	}
	timeout := time.After(30 * time.Second)
	for g := 0; g < 4; g++ {
		select {
		case <-done:
		case <-timeout:
			t.Fatal("timed out")
		}
	}
}
