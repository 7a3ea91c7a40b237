package xds

import (
	"fmt"
	"slices"
	"strings"

	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/porticoproxy/portico/cluster"
)

// transportSocket translates transport_socket: envoy.transport_sockets.tls
// (UpstreamTlsContext) or envoy.transport_sockets.raw_buffer (plain TCP,
// the default). Any other transport socket is an error in lenient mode
// too: dropping it would change what goes on the wire.
func (x *clusterTx) transportSocket(cfg *cluster.Config) error {
	ts := x.c.GetTransportSocket()
	if ts == nil {
		return nil
	}
	if ts.GetTypedConfig() == nil {
		if ts.GetName() == "envoy.transport_sockets.raw_buffer" {
			return nil
		}
		return fmt.Errorf("transport_socket: %q without typed_config: %w", ts.GetName(), ErrUnsupported)
	}
	const path = "transport_socket.typed_config"
	m, err := x.unpack(ts.GetTypedConfig(), path, &tlsv3.UpstreamTlsContext{}, &rawbufferv3.RawBuffer{})
	if err != nil {
		return err
	}
	u, ok := m.(*tlsv3.UpstreamTlsContext)
	if !ok {
		return nil
	}
	cfg.TLS, err = x.upstreamTLS(u, path, cfg.Protocol)
	return err
}

// addSecretRef records an SDS dependency once.
func (x *clusterTx) addSecretRef(name string) {
	if !slices.Contains(x.refs.Secrets, name) {
		x.refs.Secrets = append(x.refs.Secrets, name)
	}
}

// upstreamTLS translates an UpstreamTlsContext.
func (x *clusterTx) upstreamTLS(u *tlsv3.UpstreamTlsContext, path string, proto cluster.Protocol) (*cluster.TLSConfig, error) {
	tc := &cluster.TLSConfig{ServerName: u.GetSni()}
	if u.GetAutoHostSni() {
		// Portico's default SNI is the endpoint's host name (for DNS
		// clusters, the name resolved), which is what auto_host_sni asks.
		tc.ServerName = ""
	}
	// auto_sni_san_validation checks the certificate against the SNI,
	// which Go's verification does whenever no SAN matchers are set.

	ctx := u.GetCommonTlsContext()
	path += ".common_tls_context"
	if err := x.tlsParams(ctx.GetTlsParams(), path+".tls_params"); err != nil {
		return nil, err
	}

	// Record every SDS dependency before resolving any, so that Refs are
	// complete when a secret is missing.
	certSDS := ctx.GetTlsCertificateSdsSecretConfigs()
	for _, s := range certSDS {
		x.addSecretRef(s.GetName())
	}
	var valSDS *tlsv3.SdsSecretConfig
	switch vt := ctx.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		valSDS = vt.ValidationContextSdsSecretConfig
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		valSDS = vt.CombinedValidationContext.GetValidationContextSdsSecretConfig()
	}
	if valSDS != nil {
		x.addSecretRef(valSDS.GetName())
	}

	certs := ctx.GetTlsCertificates()
	if n := len(certs) + len(certSDS); n > 1 {
		return nil, fmt.Errorf("%s: %d client certificates; an upstream connection presents one", path, n)
	}
	if len(certs) == 1 {
		certPEM, keyPEM, _, err := certificate(certs[0], path+".tls_certificates[0]")
		if err != nil {
			return nil, err
		}
		tc.Certificate, tc.Key = certPEM, keyPEM
	}
	if len(certSDS) == 1 {
		s, err := x.t.resolveSecret(certSDS[0].GetName())
		if err != nil {
			return nil, fmt.Errorf("%s.tls_certificate_sds_secret_configs[0]: %w", path, err)
		}
		if len(s.CertPEM) == 0 || len(s.KeyPEM) == 0 {
			return nil, fmt.Errorf("%s.tls_certificate_sds_secret_configs[0]: secret %q has no tls_certificate", path, s.Name)
		}
		tc.Certificate, tc.Key = s.CertPEM, s.KeyPEM
	}

	var v validation
	var err error
	switch vt := ctx.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContext:
		p := path + ".validation_context"
		if v, err = validationContext(vt.ValidationContext, p); err == nil {
			err = v.checkSANs(p)
		}
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		var s *Secret
		if s, err = x.validationSecret(valSDS, path+".validation_context_sds_secret_config"); err == nil {
			v = validation{caPEM: s.CAPEM, sans: s.MatchSubjectAltNames}
		}
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		p := path + ".combined_validation_context"
		if v, err = validationContext(vt.CombinedValidationContext.GetDefaultValidationContext(), p+".default_validation_context"); err != nil {
			break
		}
		if valSDS != nil {
			var s *Secret
			if s, err = x.validationSecret(valSDS, p+".validation_context_sds_secret_config"); err != nil {
				break
			}
			v = v.merge(s)
		}
		err = v.checkSANs(p)
	}
	if err != nil {
		return nil, err
	}
	tc.RootCAs = v.caPEM
	tc.MatchSubjectAltNames = slices.Clone(v.sans) // not the secret's

	if alpn := ctx.GetAlpnProtocols(); len(alpn) > 0 {
		want := "http/1.1"
		if proto == cluster.HTTP2 {
			want = "h2"
		}
		// Portico offers the one protocol the cluster speaks.
		if !slices.Contains(alpn, want) {
			return nil, fmt.Errorf("%s.alpn_protocols: [%s] lacks %q, the protocol the cluster speaks: %w", path, strings.Join(alpn, ", "), want, ErrUnsupported)
		}
	}
	return tc, nil
}

// validationSecret resolves an SDS validation context.
func (x *clusterTx) validationSecret(ref *tlsv3.SdsSecretConfig, path string) (*Secret, error) {
	s, err := x.t.resolveSecret(ref.GetName())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.CertPEM) > 0 && len(s.CAPEM) == 0 && len(s.MatchSubjectAltNames) == 0 {
		return nil, fmt.Errorf("%s: secret %q is a tls_certificate, not a validation_context", path, s.Name)
	}
	return s, nil
}

// tlsParams checks the protocol versions against Portico's: TLS 1.2 to
// 1.3, Envoy's upstream default too. Other TlsParameters fields are not
// in the allow-list.
func (x *clusterTx) tlsParams(tp *tlsv3.TlsParameters, path string) error {
	if tp == nil {
		return nil
	}
	switch v := tp.GetTlsMinimumProtocolVersion(); v {
	case tlsv3.TlsParameters_TLS_AUTO, tlsv3.TlsParameters_TLSv1_2:
	case tlsv3.TlsParameters_TLSv1_0, tlsv3.TlsParameters_TLSv1_1:
		x.report(path+".tls_minimum_protocol_version", v.String()+": Portico requires TLS 1.2 or later")
	default:
		// Dropping a higher floor would accept weaker connections.
		return fmt.Errorf("%s.tls_minimum_protocol_version: %v: %w", path, v, ErrUnsupported)
	}
	switch v := tp.GetTlsMaximumProtocolVersion(); v {
	case tlsv3.TlsParameters_TLS_AUTO, tlsv3.TlsParameters_TLSv1_3:
	case tlsv3.TlsParameters_TLSv1_2:
		x.report(path+".tls_maximum_protocol_version", v.String()+": Portico negotiates up to TLS 1.3")
	default:
		return fmt.Errorf("%s.tls_maximum_protocol_version: %v is below Portico's TLS 1.2 minimum: %w", path, v, ErrUnsupported)
	}
	return nil
}
