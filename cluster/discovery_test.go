package cluster

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/porticoproxy/portico/lb"
)

func TestValidateDiscoveryAndTransport(t *testing.T) {
	cert, key := tlsTestCA.Leaf("client")
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"strict dns", Config{Type: StrictDNS, Endpoints: []Endpoint{{Address: "api.internal:80"}, {Address: "10.0.0.1:80"}}}, nil},
		{"strict dns without endpoints", Config{Type: StrictDNS}, []string{"endpoints: type StrictDNS needs at least one endpoint"}},
		{"strict dns bad name", Config{Type: StrictDNS, Endpoints: []Endpoint{{Address: "a..b:80"}, {Address: "x_y.z:1"}}},
			[]string{`endpoints[0].address: "a..b" is neither an IP address nor a DNS name`}},
		{"logical dns two endpoints", Config{Type: LogicalDNS, Endpoints: []Endpoint{{Address: "a:1"}, {Address: "b:1"}}},
			[]string{"endpoints: type LogicalDNS needs exactly one endpoint, got 2"}},
		{"eds empty", Config{Type: EDS}, nil},
		{"original dst", Config{Type: OriginalDst, OriginalDst: OriginalDstConfig{UseHTTPHeader: true, HTTPHeaderName: "x-dst"}}, nil},
		{"original dst with endpoints and balancer", Config{Type: OriginalDst, Endpoints: []Endpoint{{Address: "a:1"}}, Balancer: func() lb.Balancer { return nil }},
			[]string{"endpoints: must be empty for type OriginalDst", "balancer: must be unset for type OriginalDst"}},
		{"original dst bad header", Config{Type: OriginalDst, OriginalDst: OriginalDstConfig{HTTPHeaderName: "bad header", CleanupInterval: -1}},
			[]string{`original_dst.http_header_name: "bad header" is not a valid header name`, "original_dst.cleanup_interval: -1ns is less than 1ms"}},
		{"dfp with endpoints", Config{Type: DynamicForwardProxy, Endpoints: []Endpoint{{Address: "a:1"}}}, []string{"endpoints: must be empty for type DynamicForwardProxy"}},
		{"unknown type", Config{Type: 42}, []string{"type: unknown Type(42)"}},
		{"dns fields", Config{DNSLookupFamily: 9, DNSRefreshRate: time.Microsecond, DNSFailureRefreshRate: RefreshRate{BaseInterval: time.Second, MaxInterval: time.Millisecond}},
			[]string{"dns_lookup_family: unknown DNSLookupFamily(9)", "dns_refresh_rate: 1µs is less than 1ms", "dns_failure_refresh_rate.max_interval: 1ms is less than base_interval"}},
		{"transport fields", Config{MaxConnectionDuration: -1, TCPKeepalive: &TCPKeepalive{Time: -1, Interval: -1}, Middleware: []func(http.RoundTripper) http.RoundTripper{nil}},
			[]string{"max_connection_duration: negative", "tcp_keepalive.keepalive_time: negative", "tcp_keepalive.keepalive_interval: negative", "middleware[0]: must not be nil"}},
		{"mtls", Config{TLS: &TLSConfig{Certificate: cert, Key: key, MatchSubjectAltNames: []SANMatcher{{Type: SANURI, Exact: "spiffe://td/x"}}}}, nil},
		{"mtls missing key", Config{TLS: &TLSConfig{Certificate: cert}}, []string{"tls.key: required with a client certificate"}},
		{"mtls missing cert", Config{TLS: &TLSConfig{KeyFile: "k.pem"}}, []string{"tls.certificate: required with a client key"}},
		{"mtls both forms", Config{TLS: &TLSConfig{Certificate: cert, CertificateFile: "c.pem", Key: key}}, []string{"tls.certificate_file: set together with tls.certificate"}},
		{"mtls bad pair", Config{TLS: &TLSConfig{Certificate: cert, Key: []byte("junk")}}, []string{"tls.certificate: tls: failed to find any PEM data in key input"}},
		{"san matchers", Config{TLS: &TLSConfig{MatchSubjectAltNames: []SANMatcher{{Type: SANIP, Exact: "nope"}, {Type: 7, Exact: "x"}, {Type: SANDNS}}}},
			[]string{`tls.match_subject_alt_names[0].exact: "nope" is not an IP address`, "tls.match_subject_alt_names[1].type: unknown SANType(7)", "tls.match_subject_alt_names[2].exact: must not be empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Name = "v"
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDNSCacheConfigValidate(t *testing.T) {
	err := (&DNSCacheConfig{LookupFamily: -1, HostTTL: time.Nanosecond, MaxHosts: -1}).Validate()
	for _, w := range []string{"dns_lookup_family: unknown", "host_ttl: 1ns is less than 1ms", "max_hosts: negative -1"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to contain %q", err, w)
		}
	}
	if _, err := NewDNSCache(DNSCacheConfig{RefreshRate: -time.Second}); err == nil || !strings.HasPrefix(err.Error(), "dns cache: dns_refresh_rate") {
		t.Errorf("NewDNSCache() error = %v", err)
	}
}

// TestConfigRoundTrip checks that a cluster's Config builds an equal
// cluster, as a gateway rebuilding a cluster relies on.
func TestConfigRoundTrip(t *testing.T) {
	for _, cfg := range []Config{
		{Name: "od", Type: OriginalDst},
		{Name: "dfp", Type: DynamicForwardProxy},
		{Name: "dns", Type: StrictDNS, Resolver: newFakeResolver(), Endpoints: []Endpoint{{Address: "svc:80"}}},
		{Name: "mw", Middleware: []func(http.RoundTripper) http.RoundTripper{func(rt http.RoundTripper) http.RoundTripper { return rt }}},
	} {
		c := newTestCluster(t, cfg)
		got := c.Config()
		if got.Type != cfg.Type ||
			cfg.Type == StrictDNS && got.DNSRefreshRate != DefaultDNSRefreshRate ||
			cfg.Type == OriginalDst && got.OriginalDst.CleanupInterval != DefaultCleanupInterval {
			t.Errorf("%s: Config() = %+v", cfg.Name, got)
		}
		if cfg.Type == StrictDNS && (len(got.Endpoints) != 1 || got.Endpoints[0].Address != "svc:80") {
			t.Errorf("%s: Config().Endpoints = %v, want the configured names", cfg.Name, got.Endpoints)
		}
		c2, err := New(got)
		if err != nil {
			t.Errorf("%s: New(Config()) error = %v", cfg.Name, err)
			continue
		}
		c2.Close()
	}
}

func TestDiscoveryStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{Static.String(), "Static"},
		{StrictDNS.String(), "StrictDNS"},
		{LogicalDNS.String(), "LogicalDNS"},
		{EDS.String(), "EDS"},
		{OriginalDst.String(), "OriginalDst"},
		{DynamicForwardProxy.String(), "DynamicForwardProxy"},
		{DNSAuto.String(), "AUTO"},
		{DNSV4Preferred.String(), "V4_PREFERRED"},
		{DNSAll.String(), "ALL"},
		{SANIP.String(), "IP_ADDRESS"},
		{SANURI.String(), "URI"},
	} {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}

func TestValidHostName(t *testing.T) {
	for s, want := range map[string]bool{
		"example.com": true, "a-b_c.d": true, "example.com.": true, "10.0.0.1": true, "::1": true,
		"": false, ".": false, "a..b": false, ".a": false, "a b": false, "ex*ample": false,
		strings.Repeat("a", 64): false, strings.Repeat("a.", 127) + "a": false,
	} {
		if got := validHostName(s); got != want {
			t.Errorf("validHostName(%q) = %v, want %v", s, got, want)
		}
	}
}
