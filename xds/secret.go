package xds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/porticoproxy/portico/cluster"
)

// ErrSecretNotFound is wrapped by the error of a translation that refers
// to an SDS secret which the Translator's SecretLookup does not know
// (yet). The resource's Refs.Secrets name the secret, so an xDS client
// can wait for it (warming) rather than reject the resource.
var ErrSecretNotFound = errors.New("secret not found")

// Secret translates an SDS Secret: a tls_certificate (certificate_chain
// and private_key) or a validation_context (trusted_ca and subject
// alternative name matchers). DataSources may be inline_bytes,
// inline_string or filename; files are read once, now (Envoy's watching
// of files and directories is not supported). The certificate is parsed
// and must match its key; the CA bundle must hold at least one
// certificate; SAN matchers must be exact (DNS, URI or IP_ADDRESS) and,
// as in Envoy, come with a trusted_ca or system_root_certs.
//
// Validation and the allow-list work as in Cluster; errors are prefixed
// with the secret's name. Secret does not retain or modify s and is safe
// for concurrent use.
func (t *Translator) Secret(s *tlsv3.Secret) (*Secret, error) {
	if s == nil {
		return nil, errors.New("secret: nil")
	}
	x := &upstreamTx{opts: t.Options}
	out, err := x.secret(s)
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", s.GetName(), err)
	}
	return out, nil
}

func (x *upstreamTx) secret(s *tlsv3.Secret) (*Secret, error) {
	if err := s.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid: %w", err)
	}
	x.check(s.ProtoReflect(), "")
	out, err := secretContent(s)
	if err := errors.Join(x.unsupported(), err); err != nil {
		return nil, err
	}
	return out, nil
}

func secretContent(s *tlsv3.Secret) (*Secret, error) {
	out := &Secret{Name: s.GetName()}
	if tc := s.GetTlsCertificate(); tc != nil {
		certPEM, keyPEM, pair, err := certificate(tc, "tls_certificate")
		if err != nil {
			return nil, err
		}
		out.CertPEM, out.KeyPEM, out.Certificate = certPEM, keyPEM, pair
	}
	if vc := s.GetValidationContext(); vc != nil {
		v, err := validationContext(vc, "validation_context")
		if err != nil {
			return nil, err
		}
		if err := v.checkSANs("validation_context"); err != nil {
			return nil, err
		}
		out.CAPEM, out.Roots, out.MatchSubjectAltNames = v.caPEM, v.roots, v.sans
	}
	return out, nil
}

// resolveSecret returns the named SDS secret from t.Secrets.
func (t *Translator) resolveSecret(name string) (*Secret, error) {
	if t.Secrets != nil {
		if s, ok := t.Secrets(name); ok && s != nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("secret %q: %w", name, ErrSecretNotFound)
}

// upstreamData returns a DataSource's content, reading a file now.
func upstreamData(ds *corev3.DataSource, path string) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_Filename:
		b, err := os.ReadFile(s.Filename)
		if err != nil {
			return nil, fmt.Errorf("%s.filename: %w", path, err)
		}
		return b, nil
	}
	return nil, nil
}

// certificate reads and parses a TlsCertificate.
func certificate(tc *tlsv3.TlsCertificate, path string) (certPEM, keyPEM []byte, pair *tls.Certificate, err error) {
	if certPEM, err = upstreamData(tc.GetCertificateChain(), path+".certificate_chain"); err != nil {
		return nil, nil, nil, err
	}
	if keyPEM, err = upstreamData(tc.GetPrivateKey(), path+".private_key"); err != nil {
		return nil, nil, nil, err
	}
	if len(certPEM) == 0 {
		return nil, nil, nil, fmt.Errorf("%s.certificate_chain: missing", path)
	}
	if len(keyPEM) == 0 {
		return nil, nil, nil, fmt.Errorf("%s.private_key: missing", path)
	}
	// X509KeyPair fails when the key does not match the certificate.
	p, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return certPEM, keyPEM, &p, nil
}

// validation is a translated CertificateValidationContext.
type validation struct {
	caPEM       []byte
	roots       *x509.CertPool
	systemRoots bool
	sans        []cluster.SANMatcher
}

// checkSANs rejects SAN matchers without trusted CAs, as Envoy does:
// matching names on an unverified certificate proves nothing.
func (v *validation) checkSANs(path string) error {
	if len(v.sans) > 0 && len(v.caPEM) == 0 && !v.systemRoots {
		return fmt.Errorf("%s: subject alt name matchers without trusted_ca or system_root_certs", path)
	}
	return nil
}

func validationContext(vc *tlsv3.CertificateValidationContext, path string) (validation, error) {
	var v validation
	var err error
	if v.caPEM, err = upstreamData(vc.GetTrustedCa(), path+".trusted_ca"); err != nil {
		return v, err
	}
	v.systemRoots = vc.GetSystemRootCerts() != nil
	if len(v.caPEM) > 0 {
		if v.systemRoots {
			return v, fmt.Errorf("%s.system_root_certs: set together with trusted_ca: %w", path, ErrUnsupported)
		}
		v.roots = x509.NewCertPool()
		if !v.roots.AppendCertsFromPEM(v.caPEM) {
			return v, fmt.Errorf("%s.trusted_ca: no PEM certificates found", path)
		}
	}
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		p := fmt.Sprintf("%s.match_typed_subject_alt_names[%d]", path, i)
		var typ cluster.SANType
		switch st := m.GetSanType(); st {
		case tlsv3.SubjectAltNameMatcher_DNS:
			typ = cluster.SANDNS
		case tlsv3.SubjectAltNameMatcher_URI:
			typ = cluster.SANURI
		case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			typ = cluster.SANIP
		default:
			// Dropping a matcher would accept more certificates.
			return v, fmt.Errorf("%s.san_type: %v: %w", p, st, ErrUnsupported)
		}
		exact, err := exactName(m.GetMatcher(), p+".matcher", typ == cluster.SANDNS)
		if err != nil {
			return v, err
		}
		v.sans = append(v.sans, cluster.SANMatcher{Type: typ, Exact: exact})
	}
	for i, m := range vc.GetMatchSubjectAltNames() {
		// The deprecated untyped form matches a SAN of any type.
		exact, err := exactName(m, fmt.Sprintf("%s.match_subject_alt_names[%d]", path, i), false)
		if err != nil {
			return v, err
		}
		v.sans = append(v.sans, cluster.SANMatcher{Type: cluster.SANDNS, Exact: exact}, cluster.SANMatcher{Type: cluster.SANURI, Exact: exact})
		if _, err := netip.ParseAddr(exact); err == nil {
			v.sans = append(v.sans, cluster.SANMatcher{Type: cluster.SANIP, Exact: exact})
		}
	}
	return v, nil
}

// exactName returns the name of an exact StringMatcher; other patterns
// cannot be represented, and dropping them would accept more
// certificates. ignore_case is accepted for DNS names, which cluster
// compares case-insensitively anyway.
func exactName(m *matcherv3.StringMatcher, path string, dns bool) (string, error) {
	e, ok := m.GetMatchPattern().(*matcherv3.StringMatcher_Exact)
	if !ok {
		return "", fmt.Errorf("%s: only exact matches are supported: %w", path, ErrUnsupported)
	}
	if m.GetIgnoreCase() && !dns {
		return "", fmt.Errorf("%s.ignore_case: %w", path, ErrUnsupported)
	}
	return e.Exact, nil
}

// merge applies an SDS validation context over a combined context's
// default one, as Envoy's proto merge does: a CA set in the secret
// replaces the default's, SAN matchers add up.
func (v validation) merge(s *Secret) validation {
	if len(s.CAPEM) > 0 {
		v.caPEM, v.roots, v.systemRoots = s.CAPEM, s.Roots, false
	}
	v.sans = append(slices.Clip(v.sans), s.MatchSubjectAltNames...)
	return v
}
