package listener

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestHCMHeaders(t *testing.T) {
	tests := []struct {
		name   string
		cfg    HTTPConfig
		https  bool
		remote string
		in     http.Header
		want   http.Header // every header the handler sees; "<uuid>" stands for a generated id
	}{
		{
			name: "hop-by-hop stripped",
			in: http.Header{
				"Connection": {"keep-alive, X-Foo", "x-bar"}, "X-Foo": {"1"}, "X-Bar": {"2"},
				"Keep-Alive": {"timeout=5"}, "Proxy-Connection": {"keep-alive"}, "Transfer-Encoding": {"chunked"},
				"Upgrade": {"foo"}, "X-Keep": {"yes"}, "X-Request-Id": {"id-1"}, "X-Forwarded-Proto": {"https"},
			},
			want: http.Header{"X-Keep": {"yes"}, "X-Request-Id": {"id-1"}, "X-Forwarded-Proto": {"https"}},
		},
		{
			name: "te trailers kept",
			in:   http.Header{"Te": {"trailers"}, "Connection": {"TE"}, "X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
			want: http.Header{"Te": {"trailers"}, "X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name: "te reduced to trailers",
			in:   http.Header{"Te": {"gzip, trailers;q=1"}, "X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
			want: http.Header{"Te": {"trailers"}, "X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name: "te without trailers removed",
			in:   http.Header{"Te": {"gzip"}, "X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
			want: http.Header{"X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name: "websocket upgrade kept",
			in: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"k"},
				"X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
			want: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"k"},
				"X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name: "h2c upgrade stripped",
			in: http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAA"},
				"X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
			want: http.Header{"X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name: "upgrade header without connection token stripped",
			in:   http.Header{"Upgrade": {"websocket"}, "X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
			want: http.Header{"X-Request-Id": {"id"}, "X-Forwarded-Proto": {"http"}},
		},
		{
			name:   "use_remote_address appends peer and overwrites proto",
			cfg:    HTTPConfig{UseRemoteAddress: true},
			https:  true,
			remote: "10.0.0.9:5555",
			in:     http.Header{"X-Forwarded-For": {"1.1.1.1"}, "X-Forwarded-Proto": {"http"}, "X-Request-Id": {"id"}},
			want:   http.Header{"X-Forwarded-For": {"1.1.1.1, 10.0.0.9"}, "X-Forwarded-Proto": {"https"}, "X-Request-Id": {"id"}},
		},
		{
			name:   "use_remote_address without xff",
			cfg:    HTTPConfig{UseRemoteAddress: true},
			remote: "[2001:db8::1]:443",
			in:     http.Header{"X-Request-Id": {"id"}},
			want:   http.Header{"X-Forwarded-For": {"2001:db8::1"}, "X-Forwarded-Proto": {"http"}, "X-Request-Id": {"id"}},
		},
		{
			name:   "trusted xff kept and proto preserved",
			remote: "10.0.0.9:5555",
			in:     http.Header{"X-Forwarded-For": {"1.1.1.1, 2.2.2.2"}, "X-Forwarded-Proto": {"https"}, "X-Request-Id": {"id"}},
			want:   http.Header{"X-Forwarded-For": {"1.1.1.1, 2.2.2.2"}, "X-Forwarded-Proto": {"https"}, "X-Request-Id": {"id"}},
		},
		{
			name:  "request id and proto generated",
			https: true,
			in:    http.Header{"Accept": {"*/*"}},
			want:  http.Header{"Accept": {"*/*"}, "X-Forwarded-Proto": {"https"}, "X-Request-Id": {"<uuid>"}},
		},
		{
			name: "request id disabled",
			cfg:  HTTPConfig{DisableRequestID: true},
			in:   http.Header{},
			want: http.Header{"X-Forwarded-Proto": {"http"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got http.Header
			tt.cfg.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() })
			r := httptest.NewRequest("GET", "http://example.test/", nil)
			if tt.https {
				r.TLS = &tls.ConnectionState{}
			}
			if tt.remote != "" {
				r.RemoteAddr = tt.remote
			}
			r.Header = tt.in
			w := httptest.NewRecorder()
			newHCM(&tt.cfg).ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Fatalf("status: got %d, want 200", w.Code)
			}
			if ids := got["X-Request-Id"]; len(ids) == 1 && uuidRE.MatchString(ids[0]) {
				got["X-Request-Id"] = []string{"<uuid>"}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHCMLocalReplies(t *testing.T) {
	tests := []struct {
		name string
		cfg  HTTPConfig
		req  func() *http.Request
		want int
	}{
		{"header count", HTTPConfig{MaxRequestHeaders: 3}, func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header = http.Header{"A": {"1"}, "B": {"1", "2"}}
			return r
		}, 431},
		{"header count at limit", HTTPConfig{MaxRequestHeaders: 4}, func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header = http.Header{"A": {"1"}, "B": {"1", "2"}}
			return r
		}, 200},
		{"header bytes", HTTPConfig{MaxRequestHeadersBytes: 100}, func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("X", strings.Repeat("v", 100))
			return r
		}, 431},
		{"content-length over", HTTPConfig{MaxRequestBodyBytes: 3}, func() *http.Request {
			return httptest.NewRequest("POST", "/", strings.NewReader("abcd"))
		}, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
			w := httptest.NewRecorder()
			newHCM(&tt.cfg).ServeHTTP(w, tt.req())
			if w.Code != tt.want {
				t.Errorf("status: got %d, want %d", w.Code, tt.want)
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	tests := []struct {
		name   string
		xff    []string
		remote string
		hops   int
		want   string
	}{
		{"no xff", nil, "10.0.0.1:80", 0, "10.0.0.1"},
		{"last xff", []string{"1.1.1.1, 2.2.2.2"}, "10.0.0.1:80", 0, "2.2.2.2"},
		{"one trusted hop", []string{"1.1.1.1, 2.2.2.2"}, "10.0.0.1:80", 1, "1.1.1.1"},
		{"too few addresses", []string{"1.1.1.1"}, "10.0.0.1:80", 1, "10.0.0.1"},
		{"several header lines", []string{"1.1.1.1", "2.2.2.2, 3.3.3.3"}, "10.0.0.1:80", 2, "1.1.1.1"},
		{"ipv6 peer", nil, "[2001:db8::1]:443", 0, "2001:db8::1"},
		{"spaces", []string{" 1.1.1.1 ,2.2.2.2 "}, "10.0.0.1:80", 1, "1.1.1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{Header: http.Header{}, RemoteAddr: tt.remote}
			if tt.xff != nil {
				r.Header["X-Forwarded-For"] = tt.xff
			}
			if got := ClientIP(r, tt.hops); got != tt.want {
				t.Errorf("ClientIP: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	h := http.NotFoundHandler()
	ok := func() Config {
		return Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{
			{Name: "a", Match: ChainMatch{ServerNames: []string{"a.test"}}, TLS: &TLSConfig{Certificates: []Certificate{{CertFile: "c", KeyFile: "k"}}}, HTTP: &HTTPConfig{Handler: h}},
			{Name: "b", HTTP: &HTTPConfig{Handler: h}},
		}}
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no address", func(c *Config) { c.Address = "" }, "address: required"},
		{"bad port", func(c *Config) { c.Address = "127.0.0.1:http" }, "address: port"},
		{"no chains", func(c *Config) { c.FilterChains = nil }, "filter_chains: at least one"},
		{"missing http", func(c *Config) { c.FilterChains[1].HTTP = nil }, "filter_chains[1].http: required"},
		{"missing handler", func(c *Config) { c.FilterChains[1].HTTP.Handler = nil }, "filter_chains[1].http.handler: required"},
		{"no certificates", func(c *Config) { c.FilterChains[0].TLS.Certificates = nil }, "filter_chains[0].tls.certificates: at least one"},
		{"half certificate", func(c *Config) { c.FilterChains[0].TLS.Certificates[0].KeyFile = "" }, "filter_chains[0].tls.certificates[0]: cert_file and key_file"},
		{"tls 1.1", func(c *Config) { c.FilterChains[0].TLS.MinVersion = tls.VersionTLS11 }, "filter_chains[0].tls.min_version: TLS 1.1 is below TLS 1.2"},
		{"bad transport", func(c *Config) { c.FilterChains[1].Match.TransportProtocol = "quic" }, "filter_chains[1].match.transport_protocol"},
		{"bad server name", func(c *Config) { c.FilterChains[0].Match.ServerNames = []string{"a.*.test"} }, "filter_chains[0].match.server_names[0]"},
		{"invalid prefix", func(c *Config) { c.FilterChains[1].Match.SourcePrefixes = []netip.Prefix{{}} }, "filter_chains[1].match.source_prefixes[0]"},
		{"duplicate name", func(c *Config) { c.FilterChains[1].Name = "a" }, `filter_chains[1].name: "a" already used by filter_chains[0]`},
		{"duplicate match", func(c *Config) { c.FilterChains[1].Match = c.FilterChains[0].Match }, "filter_chains[1].match: same match as filter_chains[0]"},
		{"negative body limit", func(c *Config) { c.FilterChains[1].HTTP.MaxRequestBodyBytes = -1 }, "filter_chains[1].http.max_request_body_bytes"},
		{"default chain checked", func(c *Config) { c.DefaultFilterChain = &FilterChain{} }, "default_filter_chain.http: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestNewCertificateErrorNamesPath(t *testing.T) {
	_, err := New(Config{Address: "127.0.0.1:0", FilterChains: []FilterChain{{
		TLS:  &TLSConfig{Certificates: []Certificate{{CertPEM: []byte("x"), KeyPEM: []byte("y")}}},
		HTTP: &HTTPConfig{Handler: http.NotFoundHandler()},
	}}})
	if err == nil || !strings.Contains(err.Error(), "filter_chains[0].tls.certificates[0]") {
		t.Errorf("New: got %v, want an error naming filter_chains[0].tls.certificates[0]", err)
	}
}

// nopWriter is a ResponseWriter that discards everything.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

func benchRequest() *http.Request {
	r := httptest.NewRequest("GET", "http://example.test/api/v1/items?id=7", nil)
	r.RemoteAddr = "10.1.2.3:40000"
	r.Header = http.Header{
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip, br"},
		"User-Agent":      {"bench/1.0"},
		"Authorization":   {"Bearer abcdefghijklmnopqrstuvwxyz"},
		"Cookie":          {"session=0123456789"},
		"Te":              {"trailers"},
	}
	return r
}

func TestHCMAllocs(t *testing.T) {
	tests := []struct {
		name    string
		cfg     HTTPConfig
		present bool // request carries x-request-id and x-forwarded-proto
		want    float64
	}{
		{"ids present", HTTPConfig{}, true, 0},
		{"request id and proto generated", HTTPConfig{}, false, 1},
		{"request id disabled", HTTPConfig{DisableRequestID: true}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
			h := newHCM(&tt.cfg)
			r := benchRequest()
			w := &nopWriter{h: http.Header{}}
			got := testing.AllocsPerRun(200, func() {
				if tt.present {
					r.Header["X-Request-Id"] = r.Header["Te"]
					r.Header["X-Forwarded-Proto"] = r.Header["Te"]
				} else {
					delete(r.Header, "X-Request-Id")
					delete(r.Header, "X-Forwarded-Proto")
				}
				h.ServeHTTP(w, r)
			})
			if got > tt.want {
				t.Errorf("allocs per request: got %v, want <= %v", got, tt.want)
			}
		})
	}
}

func BenchmarkHCM(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  HTTPConfig
	}{
		{"generate-id", HTTPConfig{}},
		{"use-remote-address", HTTPConfig{UseRemoteAddress: true}},
		{"no-id", HTTPConfig{DisableRequestID: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.cfg.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
			h := newHCM(&bc.cfg)
			r := benchRequest()
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				delete(r.Header, "X-Request-Id")
				delete(r.Header, "X-Forwarded-Proto")
				delete(r.Header, "X-Forwarded-For")
				h.ServeHTTP(w, r)
			}
		})
	}
}
