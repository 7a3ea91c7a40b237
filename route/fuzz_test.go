package route

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// refVirtualHost selects a virtual host by scanning every domain, the
// straightforward way.
func refVirtualHost(cfg *Config, host string) int {
	h := strings.ToLower(host)
	bare := stripPort(h)
	cands := []string{h, bare}
	best, bestLen, bestClass := -1, -1, 5
	consider := func(vh, class, n int) {
		if class < bestClass || class == bestClass && n > bestLen {
			best, bestLen, bestClass = vh, n, class
		}
	}
	for i, vh := range cfg.VirtualHosts {
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			for _, c := range cands {
				switch {
				case d == "*":
					consider(i, 4, 0)
				case strings.HasPrefix(d, "*"):
					if s := d[1:]; len(c) > len(s) && strings.HasSuffix(c, s) {
						consider(i, 2, len(s))
					}
				case strings.HasSuffix(d, "*"):
					if p := d[:len(d)-1]; len(c) > len(p) && strings.HasPrefix(c, p) {
						consider(i, 3, len(p))
					}
				case d == c:
					consider(i, 1, 0)
				}
			}
		}
	}
	return best
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// refPathMatch is an independent, unoptimised path matcher.
func refPathMatch(m *Match, path string) bool {
	p, lit := path, ""
	switch {
	case m.Regex != "":
		return regexp.MustCompile("^(?:" + m.Regex + ")$").MatchString(path)
	case m.Prefix != "":
		lit = m.Prefix
	case m.Path != "":
		lit = m.Path
	case m.PathSeparatedPrefix != "":
		lit = m.PathSeparatedPrefix
	}
	if m.CaseInsensitive {
		p, lit = asciiLower(p), asciiLower(lit)
	}
	switch {
	case m.Path != "":
		return p == lit
	case m.PathSeparatedPrefix != "":
		return p == lit || strings.HasPrefix(p, lit+"/")
	}
	return strings.HasPrefix(p, lit)
}

// refMatch is a naive linear first-match over the chosen virtual host.
func refMatch(tb *Table, r *http.Request) *Route {
	vi := refVirtualHost(tb.cfg, r.Host)
	if vi < 0 {
		return nil
	}
	for _, rt := range tb.routes {
		if rt.vhost != tb.cfg.VirtualHosts[vi].Name {
			continue
		}
		if !refPathMatch(&rt.rule.Match, r.URL.Path) {
			continue
		}
		ok := true
		for i := range rt.headers {
			ok = ok && rt.headers[i].match(r)
		}
		for i := range rt.queries {
			ok = ok && rt.queries[i].match(r.URL.RawQuery)
		}
		if ok {
			return rt
		}
	}
	return nil
}

// fuzzConfig builds rules from spec: one per line, the first byte picks the
// path specifier and the rest is its literal.
func fuzzConfig(spec string) Config {
	var rules []Rule
	for i, line := range strings.Split(spec, "\n") {
		if i >= 24 || line == "" {
			break
		}
		lit := line[1:]
		var m Match
		switch line[0] % 8 {
		case 0:
			m.Prefix = lit
		case 1:
			m.Path = lit
		case 2:
			m.Regex = lit
		case 3:
			m.PathSeparatedPrefix = lit
		case 4:
			m.Prefix, m.CaseInsensitive = lit, true
		case 5:
			m.Path, m.CaseInsensitive = lit, true
		case 6:
			m.Prefix = lit
			m.Headers = []HeaderMatcher{{Name: "x-h", String: &StringMatcher{Prefix: "a"}}}
		case 7:
			m.Prefix = lit
			m.QueryParameters = []QueryParameterMatcher{{Name: "q"}}
		}
		rules = append(rules, Rule{Name: line, Match: m, Cluster: "c"})
	}
	return Config{VirtualHosts: []VirtualHost{
		{Name: "exact", Domains: []string{"a.example.com", "a.example.com:81"}, Rules: rules},
		{Name: "suffix", Domains: []string{"*.example.com", "*e.com"}, Rules: rules},
		{Name: "prefix", Domains: []string{"api.*", "api.ex*"}, Rules: rules[:len(rules)/2]},
		{Name: "default", Domains: []string{"*"}, Rules: rules[len(rules)/2:]},
	}}
}

func FuzzMatch(f *testing.F) {
	f.Add("\x00/api\n\x00/api/v1\n\x01/api/v1/x\n\x02/api/v[0-9]+/.*\n\x03/svc\n\x04/ADM\n\x00/", "a.example.com", "/api/v1/x", "a", "q=1")
	f.Add("\x00/\n\x06/h\n\x07/q", "API.EXAMPLE.COM:80", "/h/x", "abc", "q")
	f.Add("\x02(?i)/x.*\n\x02/a|/b\n\x05/Exact", "b.example.com:81", "/exact", "", "")
	f.Add("\x03/a\n\x03/a/b\n\x00/a/", "api.other", "/a/bc", "", "")
	f.Fuzz(func(t *testing.T, spec, host, path, hval, query string) {
		cfg := fuzzConfig(spec)
		tb, err := New(cfg)
		if err != nil {
			return
		}
		r := &http.Request{Method: "GET", Host: host, URL: &url.URL{Path: path, RawQuery: query}, Header: http.Header{}}
		if hval != "" {
			r.Header.Set("X-H", hval)
		}
		got, want := tb.Match(r), refMatch(tb, r)
		if got != want {
			name := func(rt *Route) string {
				if rt == nil {
					return "<nil>"
				}
				return rt.VirtualHost() + "/" + rt.Name()
			}
			t.Fatalf("Match(host %q, path %q) = %q, want %q", host, path, name(got), name(want))
		}
		if got != nil {
			out := r.Clone(r.Context())
			got.RewriteRequest(out, r)
			got.Respond(r)
			got.ClusterFor(r)
		}
	})
}
