package listener

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
)

// tls12Suites are the TLS 1.2 cipher suites offered: ECDHE key exchange
// with AEAD ciphers only. TLS 1.3 suites are not configurable.
func tls12Suites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// certStore picks a certificate by SNI: exact name, then the single-label
// wildcard covering it, then the first certificate. Immutable once built.
type certStore struct {
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // key: suffix after "*."
	def      *tls.Certificate
}

func (s *certStore) getCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(h.ServerName, "."))
	if name != "" {
		if c, ok := s.exact[name]; ok {
			return c, nil
		}
		if _, rest, ok := strings.Cut(name, "."); ok {
			if c, ok := s.wildcard[rest]; ok {
				return c, nil
			}
		}
	}
	return s.def, nil
}

// buildTLS loads the certificates of t and returns the server tls.Config.
func buildTLS(t *TLSConfig, path string) (*tls.Config, error) {
	s := &certStore{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for i, c := range t.Certificates {
		var (
			cert tls.Certificate
			err  error
		)
		if len(c.CertPEM) > 0 {
			cert, err = tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		} else {
			cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		}
		if err != nil {
			return nil, fmt.Errorf("%s.certificates[%d]: %w", path, i, err)
		}
		leaf := cert.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("%s.certificates[%d]: %w", path, i, err)
			}
		}
		p := &cert
		if s.def == nil {
			s.def = p
		}
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if suffix, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := s.wildcard[suffix]; !dup {
					s.wildcard[suffix] = p
				}
			} else if _, dup := s.exact[n]; !dup {
				s.exact[n] = p
			}
		}
	}
	minVersion := t.MinVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	alpn := t.ALPN
	if alpn == nil {
		alpn = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		MinVersion:     minVersion,
		CipherSuites:   tls12Suites(),
		NextProtos:     append([]string(nil), alpn...),
		GetCertificate: s.getCertificate,
	}, nil
}
