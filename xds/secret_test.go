package xds

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/porticoproxy/portico/cluster"
)

func tlsCertSecret(name string, certPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
	}}}
}

// caSecret is a validation context trusting caPEM and, if uri is set,
// requiring that URI SAN.
func caSecret(name string, caPEM []byte, uri string) *tlsv3.Secret {
	vc := &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: caPEM}},
	}
	if uri != "" {
		vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: uri}},
		}}
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc}}
}

func TestSecretCertificate(t *testing.T) {
	pki := testCerts(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pki.serverCert, 0o600)
	os.WriteFile(keyFile, pki.serverKey, 0o600)

	for _, tt := range []struct {
		name string
		json string
	}{
		{"inline strings", `{"name": "s", "tls_certificate": {"certificate_chain": {"inline_string": ` + quote(pki.serverCert) + `}, "private_key": {"inline_string": ` + quote(pki.serverKey) + `}}}`},
		{"inline bytes", `{"name": "s", "tls_certificate": {"certificate_chain": {"inline_bytes": "` + b64(pki.serverCert) + `"}, "private_key": {"inline_bytes": "` + b64(pki.serverKey) + `"}}}`},
		{"files", `{"name": "s", "tls_certificate": {"certificate_chain": {"filename": "` + certFile + `"}, "private_key": {"filename": "` + keyFile + `"}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s tlsv3.Secret
			if err := protojson.Unmarshal([]byte(tt.json), &s); err != nil {
				t.Fatal(err)
			}
			got, err := (&Translator{}).Secret(&s)
			if err != nil {
				t.Fatalf("Secret() error = %v", err)
			}
			if got.Name != "s" || string(got.CertPEM) != string(pki.serverCert) || string(got.KeyPEM) != string(pki.serverKey) {
				t.Errorf("Secret() = %+v, want the server certificate and key", got)
			}
			if got.Certificate == nil || got.Certificate.Leaf == nil || got.Certificate.Leaf.Subject.CommonName != "backend.test" {
				t.Errorf("Secret().Certificate = %+v, want the parsed backend.test pair", got.Certificate)
			}
			if got.CAPEM != nil || got.Roots != nil {
				t.Errorf("Secret() has a validation context: %+v", got)
			}
		})
	}
}

func TestSecretValidationContext(t *testing.T) {
	pki := testCerts(t)
	var s tlsv3.Secret
	err := protojson.Unmarshal([]byte(`{"name": "ca", "validation_context": {"trusted_ca": {"inline_string": `+quote(pki.caPEM)+`},
		"match_typed_subject_alt_names": [{"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}]}}`), &s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&Translator{}).Secret(&s)
	if err != nil {
		t.Fatalf("Secret() error = %v", err)
	}
	if string(got.CAPEM) != string(pki.caPEM) || got.Roots == nil {
		t.Errorf("Secret() CA = %q, roots %v; want the test CA", got.CAPEM, got.Roots)
	}
	want := []cluster.SANMatcher{{Type: cluster.SANIP, Exact: "127.0.0.1"}}
	if diff := cmp.Diff(want, got.MatchSubjectAltNames); diff != "" {
		t.Errorf("MatchSubjectAltNames mismatch (-want +got):\n%s", diff)
	}
	if got.CertPEM != nil || got.Certificate != nil {
		t.Errorf("Secret() has a certificate")
	}
}

func TestSecretErrors(t *testing.T) {
	pki := testCerts(t)
	tests := []struct {
		name    string
		secret  *tlsv3.Secret
		lenient bool
		want    string
	}{
		{"key does not match", tlsCertSecret("s", pki.serverCert, pki.otherKey), false,
			`secret "s": tls_certificate: tls: private key does not match public key`},
		{"not a certificate", tlsCertSecret("s", []byte("junk"), pki.serverKey), false,
			`secret "s": tls_certificate: tls: failed to find any PEM data in certificate input`},
		{"missing key", &tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pki.serverCert}},
		}}}, false, `secret "s": tls_certificate.private_key: missing`},
		{"bad ca", caSecret("ca", []byte("junk"), ""), false, `secret "ca": validation_context.trusted_ca: no PEM certificates found`},
		{"unsupported field", &tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{}}}, false,
			`secret "s": generic_secret: not supported`},
		{"ocsp staple", func() *tlsv3.Secret {
			s := tlsCertSecret("s", pki.serverCert, pki.serverKey)
			s.GetTlsCertificate().OcspStaple = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte{1}}}
			return s
		}(), false, `secret "s": tls_certificate.ocsp_staple: not supported`},
		{"environment variable, even lenient", &tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: "CERT"}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pki.serverKey}},
		}}}, true, `secret "s": tls_certificate.certificate_chain: missing`},
		{"proto validation", &tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS}},
		}}}, false, `secret "s": invalid:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&Translator{Options: TranslateOptions{Lenient: tt.lenient}}).Secret(tt.secret)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Secret() error = %v, want one starting with %q", err, tt.want)
			}
		})
	}
	if _, err := (&Translator{}).Secret(nil); err == nil {
		t.Errorf("Secret(nil) error = nil")
	}
	_, err := (&Translator{}).Secret(&tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{}}})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("Secret(generic_secret) error = %v, want ErrUnsupported", err)
	}
}

func parseSecret(t testing.TB, js string) *tlsv3.Secret {
	t.Helper()
	var s tlsv3.Secret
	if err := protojson.Unmarshal([]byte(js), &s); err != nil {
		t.Fatalf("protojson.Unmarshal(%s): %v", js, err)
	}
	return &s
}
