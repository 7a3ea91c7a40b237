package cluster

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// SANType is the kind of subject alternative name a SANMatcher matches
// (Envoy's SubjectAltNameMatcher.SanType).
type SANType int

const (
	// SANDNS matches DNS names. A certificate's wildcard name
	// (*.example.com) matches one label, as in Envoy.
	SANDNS SANType = iota + 1
	// SANURI matches URIs, such as SPIFFE IDs
	// (spiffe://cluster.local/ns/default/sa/api).
	SANURI
	// SANIP matches IP addresses, compared as addresses.
	SANIP
)

// String returns Envoy's name for t, e.g. "DNS".
func (t SANType) String() string {
	switch t {
	case SANDNS:
		return "DNS"
	case SANURI:
		return "URI"
	case SANIP:
		return "IP_ADDRESS"
	}
	return "SANType(" + strconv.Itoa(int(t)) + ")"
}

// SANMatcher matches one subject alternative name of an endpoint's
// certificate exactly.
type SANMatcher struct {
	Type  SANType
	Exact string
}

// match reports whether cert carries a SAN m matches.
func (m *SANMatcher) match(cert *x509.Certificate) bool {
	switch m.Type {
	case SANDNS:
		for _, n := range cert.DNSNames {
			if dnsNameMatch(n, m.Exact) {
				return true
			}
		}
	case SANURI:
		for _, u := range cert.URIs {
			if u.String() == m.Exact {
				return true
			}
		}
	case SANIP:
		want, err := netip.ParseAddr(m.Exact)
		if err != nil {
			return false
		}
		for _, ip := range cert.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == want.Unmap() {
				return true
			}
		}
	}
	return false
}

// dnsNameMatch reports whether the certificate name san covers name,
// case-insensitively; a leading "*." in san stands for one label.
func dnsNameMatch(san, name string) bool {
	san = strings.TrimSuffix(san, ".")
	name = strings.TrimSuffix(name, ".")
	if strings.EqualFold(san, name) {
		return true
	}
	rest, ok := strings.CutPrefix(san, "*.")
	if !ok {
		return false
	}
	i := strings.IndexByte(name, '.')
	return i > 0 && strings.EqualFold(name[i+1:], rest)
}

// clone returns a deep copy of t, or nil.
func (t *TLSConfig) clone() *TLSConfig {
	if t == nil {
		return nil
	}
	c := *t
	c.RootCAs = bytes.Clone(t.RootCAs)
	c.Certificate = bytes.Clone(t.Certificate)
	c.Key = bytes.Clone(t.Key)
	c.MatchSubjectAltNames = slices.Clone(t.MatchSubjectAltNames)
	return &c
}

// appendErrors checks the client certificate and SAN matchers. Files are
// not read.
func (t *TLSConfig) appendErrors(errs []error) []error {
	if t == nil {
		return errs
	}
	if len(t.Certificate) > 0 && t.CertificateFile != "" {
		errs = append(errs, errors.New("tls.certificate_file: set together with tls.certificate"))
	}
	if len(t.Key) > 0 && t.KeyFile != "" {
		errs = append(errs, errors.New("tls.key_file: set together with tls.key"))
	}
	hasCert := len(t.Certificate) > 0 || t.CertificateFile != ""
	hasKey := len(t.Key) > 0 || t.KeyFile != ""
	switch {
	case hasCert && !hasKey:
		errs = append(errs, errors.New("tls.key: required with a client certificate"))
	case hasKey && !hasCert:
		errs = append(errs, errors.New("tls.certificate: required with a client key"))
	case len(t.Certificate) > 0 && len(t.Key) > 0:
		if _, err := tls.X509KeyPair(t.Certificate, t.Key); err != nil {
			errs = append(errs, fmt.Errorf("tls.certificate: %w", err))
		}
	}
	for i, m := range t.MatchSubjectAltNames {
		path := "tls.match_subject_alt_names[" + strconv.Itoa(i) + "]"
		switch m.Type {
		case SANDNS, SANURI:
		case SANIP:
			if _, err := netip.ParseAddr(m.Exact); err != nil && m.Exact != "" {
				errs = append(errs, fmt.Errorf("%s.exact: %q is not an IP address", path, m.Exact))
			}
		default:
			errs = append(errs, fmt.Errorf("%s.type: unknown %v", path, m.Type))
		}
		if m.Exact == "" {
			errs = append(errs, fmt.Errorf("%s.exact: must not be empty", path))
		}
	}
	return errs
}

// clientCertificate loads the client certificate, or returns nil.
func (t *TLSConfig) clientCertificate() (*tls.Certificate, error) {
	certPEM, keyPEM := t.Certificate, t.Key
	if len(certPEM) == 0 && t.CertificateFile == "" {
		return nil, nil
	}
	if t.CertificateFile != "" {
		b, err := os.ReadFile(t.CertificateFile)
		if err != nil {
			return nil, fmt.Errorf("tls.certificate_file: %w", err)
		}
		certPEM = b
	}
	if t.KeyFile != "" {
		b, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.key_file: %w", err)
		}
		keyPEM = b
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.certificate: %w", err)
	}
	return &cert, nil
}

// clientConfig builds the tls.Config for connections to endpoints,
// reading the files t names.
func (t *TLSConfig) clientConfig(p Protocol) (*tls.Config, error) {
	roots, err := t.rootPool()
	if err != nil {
		return nil, err
	}
	alpn := []string{"http/1.1"}
	if p == HTTP2 {
		alpn = []string{"h2"}
	}
	cfg := &tls.Config{
		ServerName:         t.ServerName,
		RootCAs:            roots,
		InsecureSkipVerify: t.InsecureSkipVerify,
		NextProtos:         alpn,
		MinVersion:         tls.VersionTLS12,
	}
	cert, err := t.clientCertificate()
	if err != nil {
		return nil, err
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	if len(t.MatchSubjectAltNames) > 0 {
		// The SAN list replaces the host name check, so Go's own
		// verification, which includes it, is off and VerifyConnection
		// verifies the chain itself.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = sanVerifier(roots, t.InsecureSkipVerify, slices.Clone(t.MatchSubjectAltNames))
	}
	return cfg, nil
}

// sanVerifier returns a VerifyConnection callback that verifies the
// peer's chain against roots (unless skipChain) and requires a SAN
// matched by one of matchers.
func sanVerifier(roots *x509.CertPool, skipChain bool, matchers []SANMatcher) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: endpoint sent no certificate")
		}
		leaf := cs.PeerCertificates[0]
		if !skipChain {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}); err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
			}
		}
		for i := range matchers {
			if matchers[i].match(leaf) {
				return nil
			}
		}
		return &tls.CertificateVerificationError{
			UnverifiedCertificates: cs.PeerCertificates,
			Err:                    errors.New("certificate matches none of match_subject_alt_names"),
		}
	}
}
