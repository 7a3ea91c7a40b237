package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/porticoproxy/portico/internal/testcert"
)

// tlsTestCA signs the certificates of this package's TLS tests.
var tlsTestCA = testcert.NewCA()

// tlsServerFor starts a TLS server whose certificate names names (plus
// 127.0.0.1) and which answers "SNI|Host". With clientCA set it requires
// a client certificate signed by it and answers with its common name.
func tlsServerFor(t *testing.T, names ...string) *httptest.Server {
	t.Helper()
	return startTLSServer(t, nil, names...)
}

func startTLSServer(t *testing.T, clientCA *x509.CertPool, names ...string) *httptest.Server {
	t.Helper()
	certPEM, keyPEM := tlsTestCA.Leaf(append(names, "127.0.0.1")...)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if clientCA != nil {
			io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
			return
		}
		io.WriteString(w, r.TLS.ServerName+"|"+r.Host)
	}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.EnableHTTP2 = true
	if clientCA != nil {
		ts.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		ts.TLS.ClientCAs = clientCA
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

func TestMutualTLS(t *testing.T) {
	ts := startTLSServer(t, tlsTestCA.Pool(), "api.portico.test")
	clientCert, clientKey := tlsTestCA.Leaf("client.portico.test")
	dir := t.TempDir()
	certFile, keyFile := tlsTestCA.WriteLeaf(dir, "client", "file-client.portico.test")

	tests := []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{"PEM", TLSConfig{Certificate: clientCert, Key: clientKey}, "client.portico.test"},
		{"files", TLSConfig{CertificateFile: certFile, KeyFile: keyFile}, "file-client.portico.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.tls
			cfg.RootCAs = tlsTestCA.CertPEM
			for _, proto := range []Protocol{HTTP1, HTTP2} {
				c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}, TLS: &cfg, Protocol: proto})
				body, resp := get(t, c)
				if body != tt.want {
					t.Errorf("%v: server saw client %q, want %q", proto, body, tt.want)
				}
				if resp.ProtoMajor != int(proto)+1 {
					t.Errorf("%v: response over HTTP/%d", proto, resp.ProtoMajor)
				}
			}
		})
	}

	t.Run("no client certificate", func(t *testing.T) {
		c := newTestCluster(t, Config{Endpoints: []Endpoint{{Address: hostOf(t, ts.URL)}}, TLS: &TLSConfig{RootCAs: tlsTestCA.CertPEM}})
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		// With TLS 1.3 the server's refusal arrives after the client's
		// handshake, so the kind depends on timing; the request fails.
		if ue := sendErr(t, c, ctx); ue.Kind != ConnectFailure && ue.Kind != Reset {
			t.Errorf("kind = %v, want ConnectFailure or Reset", ue.Kind)
		}
	})
}

func TestSubjectAltNameMatch(t *testing.T) {
	ts := tlsServerFor(t, "api.portico.test")
	addr := hostOf(t, ts.URL) // 127.0.0.1:port: SNI and host check would use the IP
	tests := []struct {
		name    string
		match   []SANMatcher
		wantErr bool
	}{
		{"DNS", []SANMatcher{{Type: SANDNS, Exact: "API.portico.test"}}, false},
		{"IP", []SANMatcher{{Type: SANIP, Exact: "127.0.0.1"}}, false},
		{"any of", []SANMatcher{{Type: SANURI, Exact: "spiffe://x/y"}, {Type: SANDNS, Exact: "api.portico.test"}}, false},
		{"mismatch", []SANMatcher{{Type: SANDNS, Exact: "other.portico.test"}}, true},
		{"wrong type", []SANMatcher{{Type: SANURI, Exact: "api.portico.test"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, Config{
				Endpoints: []Endpoint{{Address: addr}},
				TLS:       &TLSConfig{RootCAs: tlsTestCA.CertPEM, ServerName: "whatever.invalid", MatchSubjectAltNames: tt.match},
			})
			if !tt.wantErr {
				get(t, c)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			ue := sendErr(t, c, ctx)
			if ue.Kind != ConnectFailure {
				t.Errorf("kind = %v, want ConnectFailure (%v)", ue.Kind, ue)
			}
			var cv *tls.CertificateVerificationError
			if !errors.As(ue, &cv) || !strings.Contains(ue.Error(), "match_subject_alt_names") {
				t.Errorf("error = %v, want a certificate verification error naming the SAN list", ue)
			}
			if s := c.ConnStats(); s.ConnectFail == 0 {
				t.Errorf("ConnStats().ConnectFail = 0 after a rejected certificate")
			}
		})
	}

	t.Run("untrusted chain", func(t *testing.T) {
		other := testcert.NewCA()
		c := newTestCluster(t, Config{
			Endpoints: []Endpoint{{Address: addr}},
			TLS:       &TLSConfig{RootCAs: other.CertPEM, MatchSubjectAltNames: []SANMatcher{{Type: SANDNS, Exact: "api.portico.test"}}},
		})
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if ue := sendErr(t, c, ctx); ue.Kind != ConnectFailure {
			t.Errorf("kind = %v, want ConnectFailure", ue.Kind)
		}
	})
}

func TestSANMatcher(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/default/sa/api")
	cert := &x509.Certificate{
		DNSNames:    []string{"*.example.com", "exact.test"},
		URIs:        []*url.URL{spiffe},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("2001:db8::1")},
	}
	tests := []struct {
		m    SANMatcher
		want bool
	}{
		{SANMatcher{SANDNS, "exact.test"}, true},
		{SANMatcher{SANDNS, "EXACT.test."}, true},
		{SANMatcher{SANDNS, "a.example.com"}, true},
		{SANMatcher{SANDNS, "a.b.example.com"}, false},
		{SANMatcher{SANDNS, "example.com"}, false},
		{SANMatcher{SANURI, "spiffe://cluster.local/ns/default/sa/api"}, true},
		{SANMatcher{SANURI, "spiffe://cluster.local/ns/default/sa/other"}, false},
		{SANMatcher{SANIP, "10.0.0.1"}, true},
		{SANMatcher{SANIP, "2001:db8:0::1"}, true},
		{SANMatcher{SANIP, "10.0.0.2"}, false},
		{SANMatcher{SANDNS, "10.0.0.1"}, false},
	}
	for _, tt := range tests {
		if got := tt.m.match(cert); got != tt.want {
			t.Errorf("%v %q: match = %v, want %v", tt.m.Type, tt.m.Exact, got, tt.want)
		}
	}
}
