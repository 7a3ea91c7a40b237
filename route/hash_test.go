package route

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/google/go-cmp/cmp"
)

func sum(s string) uint64 { return xxhash.Sum64String(s) }

// chain is Envoy's HashUtil::xxHash64 over several values: each hash
// seeds the next.
func chain(vs ...string) uint64 {
	var h uint64
	for _, v := range vs {
		d := xxhash.NewWithSeed(h)
		d.WriteString(v)
		h = d.Sum64()
	}
	return h
}

func TestRequestHashKinds(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		name   string
		policy HashPolicy
		target string
		header http.Header
		host   string
		source netip.Addr
		want   uint64
		wantOK bool
	}{
		{name: "header", policy: HashPolicy{Header: "x-user"}, header: http.Header{"X-User": {"alice"}}, want: sum("alice"), wantOK: true},
		{name: "header name in any case", policy: HashPolicy{Header: "X-USER"}, header: http.Header{"X-User": {"alice"}}, want: sum("alice"), wantOK: true},
		{name: "header absent", policy: HashPolicy{Header: "x-user"}, header: http.Header{"X-Other": {"alice"}}},
		{name: "header empty value", policy: HashPolicy{Header: "x-user"}, header: http.Header{"X-User": {""}}, want: sum(""), wantOK: true},
		// Several header lines hash sorted, in a chain.
		{name: "header lines sorted", policy: HashPolicy{Header: "x-user"}, header: http.Header{"X-User": {"b", "c", "a"}}, want: chain("a", "b", "c"), wantOK: true},
		{name: "many header lines", policy: HashPolicy{Header: "x-user"}, header: http.Header{"X-User": strings.Split("j,i,h,g,f,e,d,c,b,a", ",")}, want: chain(strings.Split("a,b,c,d,e,f,g,h,i,j", ",")...), wantOK: true},
		{name: "host is the authority", policy: HashPolicy{Header: "host"}, host: "api.example.com", want: sum("api.example.com"), wantOK: true},
		{name: "cookie", policy: HashPolicy{Cookie: &CookieHash{Name: "sess"}}, header: http.Header{"Cookie": {"a=1; sess=abc; b=2"}}, want: sum("abc"), wantOK: true},
		{name: "cookie quoted", policy: HashPolicy{Cookie: &CookieHash{Name: "sess"}}, header: http.Header{"Cookie": {`sess="abc"`}}, want: sum("abc"), wantOK: true},
		{name: "cookie first wins", policy: HashPolicy{Cookie: &CookieHash{Name: "sess"}}, header: http.Header{"Cookie": {"x=1", "sess=one;sess=two"}}, want: sum("one"), wantOK: true},
		{name: "cookie name is exact", policy: HashPolicy{Cookie: &CookieHash{Name: "sess"}}, header: http.Header{"Cookie": {"Sess=abc; session=x"}}},
		{name: "cookie absent without ttl", policy: HashPolicy{Cookie: &CookieHash{Name: "sess"}}, header: http.Header{"Cookie": {"other=1"}}},
		{name: "source ip v4", policy: HashPolicy{SourceIP: true}, source: v4, want: sum("192.0.2.7"), wantOK: true},
		{name: "source ip v6", policy: HashPolicy{SourceIP: true}, source: netip.MustParseAddr("2001:db8::1"), want: sum("2001:db8::1"), wantOK: true},
		{name: "source ip zone dropped", policy: HashPolicy{SourceIP: true}, source: netip.MustParseAddr("fe80::1%eth0"), want: sum("fe80::1"), wantOK: true},
		{name: "source ip unknown", policy: HashPolicy{SourceIP: true}},
		{name: "query", policy: HashPolicy{QueryParameter: "u"}, target: "/p?a=1&u=bob&u=eve", want: sum("bob"), wantOK: true},
		// Envoy hashes the raw value, not unescaped.
		{name: "query not unescaped", policy: HashPolicy{QueryParameter: "u"}, target: "/p?u=a%20b", want: sum("a%20b"), wantOK: true},
		{name: "query without value", policy: HashPolicy{QueryParameter: "flag"}, target: "/p?x=1&flag", want: sum(""), wantOK: true},
		{name: "query absent", policy: HashPolicy{QueryParameter: "u"}, target: "/p?user=bob"},
		{name: "query name not unescaped", policy: HashPolicy{QueryParameter: "a b"}, target: "/p?a%20b=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := single(t, Rule{Cluster: "c", HashPolicy: []HashPolicy{tt.policy}})
			target := tt.target
			if target == "" {
				target = "/"
			}
			req := httptest.NewRequest("GET", "http://h"+target, nil)
			req.Header = tt.header
			if req.Header == nil {
				req.Header = http.Header{}
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			got, ok, mint := rt.RequestHash(req, tt.source)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("RequestHash() = %#x, %t, want %#x, %t", got, ok, tt.want, tt.wantOK)
			}
			if mint != nil {
				t.Errorf("RequestHash() minted %v, want none", mint)
			}
		})
	}
}

func TestRequestHashCombine(t *testing.T) {
	rotl := func(h uint64) uint64 { return bits.RotateLeft64(h, 1) }
	a, b, c := sum("A"), sum("B"), sum("C")
	headers := http.Header{"X-A": {"A"}, "X-B": {"B"}, "X-C": {"C"}}
	tests := []struct {
		name     string
		policies []HashPolicy
		want     uint64
		wantOK   bool
	}{
		{name: "none", policies: nil},
		{name: "two combine", policies: []HashPolicy{{Header: "x-a"}, {Header: "x-b"}}, want: rotl(a) ^ b, wantOK: true},
		{name: "three combine", policies: []HashPolicy{{Header: "x-a"}, {Header: "x-b"}, {Header: "x-c"}}, want: rotl(rotl(a)^b) ^ c, wantOK: true},
		// A duplicated rule does not cancel out.
		{name: "duplicate does not cancel", policies: []HashPolicy{{Header: "x-a"}, {Header: "x-a"}}, want: rotl(a) ^ a, wantOK: true},
		{name: "absent skipped", policies: []HashPolicy{{Header: "x-a"}, {Header: "x-none"}, {Header: "x-c"}}, want: rotl(a) ^ c, wantOK: true},
		{name: "leading absent", policies: []HashPolicy{{Header: "x-none"}, {Header: "x-b"}}, want: b, wantOK: true},
		{name: "terminal stops", policies: []HashPolicy{{Header: "x-a", Terminal: true}, {Header: "x-b"}}, want: a, wantOK: true},
		{name: "terminal without input continues", policies: []HashPolicy{{Header: "x-none", Terminal: true}, {Header: "x-b"}}, want: b, wantOK: true},
		// Envoy checks the accumulated hash: an earlier policy's hash
		// is enough for a terminal policy to stop evaluation.
		{name: "terminal after a hash stops", policies: []HashPolicy{{Header: "x-a"}, {Header: "x-none", Terminal: true}, {Header: "x-c"}}, want: a, wantOK: true},
		{name: "all absent", policies: []HashPolicy{{Header: "x-none"}, {QueryParameter: "q"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := single(t, Rule{Cluster: "c", HashPolicy: tt.policies})
			req := httptest.NewRequest("GET", "http://h/", nil)
			req.Header = headers
			got, ok, _ := rt.RequestHash(req, netip.Addr{})
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("RequestHash() = %#x, %t, want %#x, %t", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestRequestHashCookieMint(t *testing.T) {
	rt := single(t, Rule{Cluster: "c", HashPolicy: []HashPolicy{
		{Cookie: &CookieHash{Name: "sess", TTL: 90*time.Minute + 500*time.Millisecond, Path: "/app"}},
	}})
	req := httptest.NewRequest("GET", "http://h/", nil)
	req.RemoteAddr = "192.0.2.7:5555"
	local := &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 8080}
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))

	got, ok, mint := rt.RequestHash(req, netip.MustParseAddr("192.0.2.7"))
	// Envoy: hex of xxHash64(remote address + local address).
	value := fmt.Sprintf("%016x", sum("192.0.2.7:5555"+"10.0.0.1:8080"))
	want := &http.Cookie{Name: "sess", Value: value, Quoted: true, Path: "/app", MaxAge: 5400, HttpOnly: true}
	if diff := cmp.Diff(want, mint); diff != "" {
		t.Fatalf("minted cookie (-want +got):\n%s", diff)
	}
	if !ok || got != sum(value) {
		t.Errorf("RequestHash() = %#x, %t, want hash of the minted value %#x", got, ok, sum(value))
	}
	if got, want := mint.String(), `sess="`+value+`"; Path=/app; Max-Age=5400; HttpOnly`; got != want {
		t.Errorf("Set-Cookie = %s, want %s", got, want)
	}

	// An empty cookie counts as absent.
	req.Header.Set("Cookie", "sess=")
	if _, _, mint := rt.RequestHash(req, netip.Addr{}); mint == nil || mint.Value != value {
		t.Errorf("empty cookie: minted %v, want value %s", mint, value)
	}

	// A sub-second TTL rounds to 0 s: a session cookie, as in Envoy.
	short := single(t, Rule{Cluster: "c", HashPolicy: []HashPolicy{{Cookie: &CookieHash{Name: "s", TTL: time.Millisecond}}}})
	if _, _, mint := short.RequestHash(req, netip.Addr{}); mint == nil || mint.MaxAge != 0 || mint.String() != `s="`+value+`"; HttpOnly` {
		t.Errorf("sub-second TTL: minted %v, want a session cookie", mint)
	}

	// Only the first minting policy's cookie is returned; both hash.
	two := single(t, Rule{Cluster: "c", HashPolicy: []HashPolicy{
		{Cookie: &CookieHash{Name: "one", TTL: time.Hour}},
		{Cookie: &CookieHash{Name: "two", TTL: time.Hour}},
	}})
	h, _, mint := two.RequestHash(req, netip.Addr{})
	if mint == nil || mint.Name != "one" || h != bits.RotateLeft64(sum(value), 1)^sum(value) {
		t.Errorf("two minting policies: hash %#x, cookie %v", h, mint)
	}

	// A terminal header policy that hashes stops before the cookie
	// policy could mint.
	term := single(t, Rule{Cluster: "c", HashPolicy: []HashPolicy{
		{Header: "x-user", Terminal: true},
		{Cookie: &CookieHash{Name: "sess", TTL: time.Hour}},
	}})
	req.Header.Set("X-User", "alice")
	if h, _, mint := term.RequestHash(req, netip.Addr{}); mint != nil || h != sum("alice") {
		t.Errorf("terminal before cookie: hash %#x, minted %v; want hash of alice and no cookie", h, mint)
	}
}

// TestRequestHashCookieOverHTTP drives cookie minting through a real
// server and client: the client keeps the minted cookie and is then
// hashed on it; another connection gets its own cookie.
func TestRequestHashCookieOverHTTP(t *testing.T) {
	rt := single(t, Rule{Cluster: "c", HashPolicy: []HashPolicy{
		{Cookie: &CookieHash{Name: "sess", TTL: time.Hour, Path: "/"}},
	}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src, _ := netip.ParseAddrPort(r.RemoteAddr)
		h, ok, mint := rt.RequestHash(r, src.Addr())
		if mint != nil {
			http.SetCookie(w, mint)
		}
		fmt.Fprintf(w, "%x %t %t", h, ok, mint != nil)
	}))
	defer srv.Close()

	get := func(c *http.Client) (hash string, minted bool) {
		t.Helper()
		resp, err := c.Get(srv.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		if len(f) != 3 || f[1] != "true" {
			t.Fatalf("response %q, want a hash", b)
		}
		return f[0], f[2] == "true"
	}
	newClient := func() *http.Client {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		// Separate transports: separate connections, hence cookies.
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Jar: jar, Transport: tr}
	}

	alice := newClient()
	first, minted := get(alice)
	if !minted {
		t.Fatal("first request: no cookie minted")
	}
	for range 3 {
		again, minted := get(alice)
		if minted || again != first {
			t.Errorf("with the cookie: hash %s (minted %t), want %s and no new cookie", again, minted, first)
		}
	}
	cookies := alice.Jar.Cookies(mustURL(t, srv.URL))
	if len(cookies) != 1 || cookies[0].Name != "sess" || len(cookies[0].Value) != 16 {
		t.Fatalf("client cookies = %v, want one 16-hex-digit sess cookie", cookies)
	}
	if _, err := hex.DecodeString(cookies[0].Value); err != nil {
		t.Errorf("cookie value %q is not hex: %v", cookies[0].Value, err)
	}

	bob := newClient()
	if other, minted := get(bob); !minted || other == first {
		t.Errorf("second client: hash %s (minted %t), want a different minted cookie", other, minted)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func ExampleRoute_RequestHash() {
	t, err := New(Config{VirtualHosts: []VirtualHost{{
		Name:    "shop",
		Domains: []string{"*"},
		Rules: []Rule{{
			Cluster: "carts",
			// Hash on the user header when present, else on a session
			// cookie, minted for an hour when the client has none.
			HashPolicy: []HashPolicy{
				{Header: "x-user", Terminal: true},
				{Cookie: &CookieHash{Name: "cart", TTL: time.Hour, Path: "/"}},
			},
		}},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	req := httptest.NewRequest("GET", "http://shop/cart", nil)
	req.RemoteAddr = "192.0.2.7:5555"
	rt := t.Match(req)

	_, ok, mint := rt.RequestHash(req, netip.MustParseAddr("192.0.2.7"))
	fmt.Println(ok, mint.Name, mint.MaxAge, mint.HttpOnly) // set mint on the response

	req.Header.Set("X-User", "alice")
	h, ok, mint := rt.RequestHash(req, netip.Addr{})
	fmt.Println(ok, h == xxhash.Sum64String("alice"), mint == nil) // feeds lb.PickInfo.Hash
	// Output:
	// true cart 3600 true
	// true true true
}

func TestRequestHashAllocs(t *testing.T) {
	rt := single(t, Rule{Cluster: "c", HashPolicy: []HashPolicy{
		{Header: "x-user"},
		{Header: "x-multi"},
		{Header: "host"},
		{SourceIP: true},
		{QueryParameter: "u"},
		{Cookie: &CookieHash{Name: "sess", TTL: time.Hour}},
	}})
	req := httptest.NewRequest("GET", "http://h/p?a=1&u=bob", nil)
	req.Header.Set("X-User", "alice")
	req.Header["X-Multi"] = []string{"b", "a", "c"}
	req.Header.Set("Cookie", "sess=abc")
	src := netip.MustParseAddr("2001:db8::1")
	got := testing.AllocsPerRun(1000, func() {
		if _, ok, mint := rt.RequestHash(req, src); !ok || mint != nil {
			t.Fatal("RequestHash() produced no hash or minted")
		}
	})
	if got != 0 {
		t.Errorf("RequestHash allocs = %v, want 0", got)
	}
}

func BenchmarkRequestHash(b *testing.B) {
	cases := []struct {
		name   string
		policy HashPolicy
	}{
		{"header", HashPolicy{Header: "x-user"}},
		{"cookie", HashPolicy{Cookie: &CookieHash{Name: "sess"}}},
		{"source_ip", HashPolicy{SourceIP: true}},
		{"query", HashPolicy{QueryParameter: "u"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			tb, err := New(Config{VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Rules: []Rule{{Cluster: "c", HashPolicy: []HashPolicy{c.policy}}}}}})
			if err != nil {
				b.Fatal(err)
			}
			rt := tb.Routes()[0]
			req := httptest.NewRequest("GET", "http://h/p?a=1&u=bob", nil)
			req.Header.Set("X-User", "alice")
			req.Header.Set("Cookie", "theme=dark; sess="+strconv.Itoa(42))
			src := netip.MustParseAddr("192.0.2.7")
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, _ := rt.RequestHash(req, src); !ok {
					b.Fatal("no hash")
				}
			}
		})
	}
}
