package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	proxyprotocolv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/proxy_protocol/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// Well-known extension names the listener translation recognises.
const (
	tlsInspectorName  = "envoy.filters.listener.tls_inspector"
	originalDstName   = "envoy.filters.listener.original_dst"
	proxyProtocolName = "envoy.filters.listener.proxy_protocol"
	hcmName           = "envoy.filters.network.http_connection_manager"
	tcpProxyName      = "envoy.filters.network.tcp_proxy"
	tlsSocketName     = "envoy.transport_sockets.tls"
	rawBufferName     = "envoy.transport_sockets.raw_buffer"
)

// Listener translates a Listener into a listener.Config whose HTTP filter
// chains name their route configurations. Inline route configurations
// (HCM route_config) come back as route.Configs named
// "<listener>/<filter chain>" (the chain's name, or filter_chains[i] /
// default_filter_chain), so that inline tables of different listeners
// never collide with each other or with RDS names; RDS references
// (rds.route_config_name) and SDS certificate references come back in
// Refs.Routes and Refs.Secrets.
//
// Like TranslateRouteConfiguration it runs the protos' ValidateAll first
// (the Listener's, then each typed_config's once unpacked), rejects every
// set field Portico does not implement with its path (or reports it to
// Options.OnUnsupported when Options.Lenient is set), and returns errors
// prefixed with the listener's name, e.g.
//
//	listener "l": filter_chains[0].filters[0].typed_config.http2_protocol_options.allow_connect: not supported
//
// Listener filters, network filters and HTTP filters are resolved by
// name and typed_config: the TLS inspector is accepted (Portico inspects
// ClientHellos whenever a chain needs it), original_dst and proxy_protocol
// set listener.Config's OriginalDst and ProxyProtocol; any other listener
// filter, and every network filter but the HTTP
// connection manager and tcp_proxy, are rejected even in lenient
// mode, since dropping them would change how connections are read. HTTP
// filters go through t.Filters: an unknown one that is is_optional is
// skipped with a Warning (to OnUnsupported, in strict mode too, and to
// FactoryContext.Logger); any other unknown one rejects the listener.
//
// Listener does not retain or modify l. It is safe for concurrent use if
// the registry's factories are.
func (t *Translator) Listener(l *listenerv3.Listener) (listener.Config, []route.Config, Refs, error) {
	if l == nil {
		return listener.Config{}, nil, Refs{}, errors.New("listener: nil")
	}
	wrap := func(err error) error { return fmt.Errorf("listener %q: %w", l.GetName(), err) }
	if err := l.ValidateAll(); err != nil {
		return listener.Config{}, nil, Refs{}, wrap(fmt.Errorf("invalid: %w", err))
	}
	x := &ltx{t: t, name: l.GetName()}
	x.checkSupported(l, "")
	cfg, err := x.listener(l)
	if err != nil {
		return listener.Config{}, nil, Refs{}, wrap(err)
	}
	if len(x.unsupported) > 0 {
		return listener.Config{}, nil, Refs{}, wrap(errors.Join(x.unsupported...))
	}
	if err := validateListener(cfg); err != nil {
		return listener.Config{}, nil, Refs{}, wrap(err)
	}
	return cfg, x.routes, x.refs, nil
}

// validateListener runs listener.Config.Validate on a copy whose HTTP
// configs have the handler, and TCP proxies the upstream, the gateway
// will set.
func validateListener(cfg listener.Config) error {
	h := http.NotFoundHandler()
	withHandler := func(fc listener.FilterChain) listener.FilterChain {
		if fc.HTTP != nil {
			hc := *fc.HTTP
			hc.Handler = h
			fc.HTTP = &hc
		}
		if fc.TCP != nil {
			tc := *fc.TCP
			tc.Upstream = noUpstream
			fc.TCP = &tc
		}
		return fc
	}
	cfg.FilterChains = slices.Clone(cfg.FilterChains)
	for i := range cfg.FilterChains {
		cfg.FilterChains[i] = withHandler(cfg.FilterChains[i])
	}
	if cfg.DefaultFilterChain != nil {
		d := withHandler(*cfg.DefaultFilterChain)
		cfg.DefaultFilterChain = &d
	}
	return cfg.Validate()
}

func noUpstream(context.Context) (net.Conn, error) { return nil, errors.New("no upstream") }

// ltx is the state of one listener translation.
type ltx struct {
	t           *Translator
	name        string
	unsupported []error // strict-mode reports
	routes      []route.Config
	refs        Refs
	bufferLimit int64 // per_connection_buffer_limit_bytes
}

// report records an unsupported field: an error in strict mode, a Warning
// in lenient mode.
func (x *ltx) report(path, msg string) {
	if x.t.Options.Lenient {
		x.warn(path, msg)
		return
	}
	if msg == ErrUnsupported.Error() {
		x.unsupported = append(x.unsupported, fmt.Errorf("%s: %w", path, ErrUnsupported))
	} else {
		x.unsupported = append(x.unsupported, fmt.Errorf("%s: %s: %w", path, msg, ErrUnsupported))
	}
}

// warn reports something dropped, whatever the mode.
func (x *ltx) warn(path, msg string) {
	if f := x.t.Options.OnUnsupported; f != nil {
		f(Warning{Path: path, Message: msg})
	}
	x.t.FactoryContext.logger().Warn("xds: dropped from listener", "listener", x.name, "path", path, "reason", msg)
}

func (x *ltx) checkSupported(m proto.Message, path string) {
	walkAllowed(listenerSupportedSet, m.ProtoReflect(), path, x.report)
}

// unpack resolves a typed_config, unmarshals it, validates it and checks
// its fields against the allow-list. An unknown type is an error.
func (x *ltx) unpack(a *anypb.Any, path string) (proto.Message, error) {
	m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
	if err != nil {
		if errors.Is(err, protoregistry.NotFound) {
			return nil, fmt.Errorf("%s: unknown type %q", path, a.GetTypeUrl())
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%s: invalid: %w", path, err)
		}
	}
	x.checkSupported(m, path)
	return m, nil
}

func (x *ltx) listener(l *listenerv3.Listener) (listener.Config, error) {
	cfg := listener.Config{Name: l.GetName(), Logger: x.t.FactoryContext.Logger}
	if cfg.Name == "" {
		return cfg, errors.New("name: required")
	}
	var err error
	if cfg.Address, err = socketAddress(l.GetAddress(), "address"); err != nil {
		return cfg, err
	}
	if d := l.GetListenerFiltersTimeout(); d != nil {
		if cfg.ListenerFiltersTimeout, err = duration(d, "listener_filters_timeout"); err != nil {
			return cfg, err
		}
		if cfg.ListenerFiltersTimeout == 0 {
			return cfg, fmt.Errorf("listener_filters_timeout: 0 (no timeout): %w", ErrUnsupported)
		}
	}
	if b := l.GetPerConnectionBufferLimitBytes(); b != nil {
		x.bufferLimit = int64(b.GetValue())
		if x.bufferLimit == 0 {
			return cfg, fmt.Errorf("per_connection_buffer_limit_bytes: 0: %w", ErrUnsupported)
		}
	}
	for i, lf := range l.GetListenerFilters() {
		if err := x.listenerFilter(&cfg, lf, fmt.Sprintf("listener_filters[%d]", i)); err != nil {
			return cfg, err
		}
	}
	for i, fc := range l.GetFilterChains() {
		path := fmt.Sprintf("filter_chains[%d]", i)
		chain, err := x.filterChain(fc, path, path)
		if err != nil {
			return cfg, err
		}
		cfg.FilterChains = append(cfg.FilterChains, chain)
	}
	if fc := l.GetDefaultFilterChain(); fc != nil {
		chain, err := x.filterChain(fc, "default_filter_chain", "default_filter_chain")
		if err != nil {
			return cfg, err
		}
		cfg.DefaultFilterChain = &chain
	}
	return cfg, nil
}

// socketAddress returns host:port for a TCP socket address.
func socketAddress(a *corev3.Address, path string) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", fmt.Errorf("%s.socket_address: required (pipes and internal addresses are not supported)", path)
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", fmt.Errorf("%s.socket_address.protocol: %s: %w", path, sa.GetProtocol(), ErrUnsupported)
	}
	host := sa.GetAddress()
	if _, err := netip.ParseAddr(host); err != nil {
		// Envoy binds listeners to IP addresses only.
		return "", fmt.Errorf("%s.socket_address.address: %q is not an IP address", path, host)
	}
	return net.JoinHostPort(host, strconv.FormatUint(uint64(sa.GetPortValue()), 10)), nil
}

// listenerFilter accepts the TLS inspector (implicit in Portico) and
// turns original_dst and proxy_protocol into cfg.OriginalDst and
// cfg.ProxyProtocol; their fields Portico does not implement (proxy
// protocol rules, pass_through_tlvs other than empty, which keeps every
// TLV) were reported by unpack with their path. Every other listener filter
// is rejected, lenient or not, since dropping it would misread
// connections.
func (x *ltx) listenerFilter(cfg *listener.Config, lf *listenerv3.ListenerFilter, path string) error {
	name := lf.GetName()
	var m proto.Message
	if a := lf.GetTypedConfig(); a != nil {
		var err error
		if m, err = x.unpack(a, path+".typed_config"); err != nil {
			return err
		}
		name = messageName(a.GetTypeUrl())
	}
	switch name {
	case tlsInspectorName, "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector":
		return nil // implicit: the listener inspects whenever a chain needs it
	case originalDstName, "envoy.extensions.filters.listener.original_dst.v3.OriginalDst":
		cfg.OriginalDst = true
		return nil
	case proxyProtocolName, "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol":
		pp, _ := m.(*proxyprotocolv3.ProxyProtocol) // nil without typed_config: defaults
		// Lenient mode too: these change what reaches the chains.
		if len(pp.GetRules()) > 0 {
			return fmt.Errorf("%s.typed_config.rules: %w", path, ErrUnsupported)
		}
		if t := pp.GetPassThroughTlvs(); t != nil && (t.GetMatchType() != 0 || len(t.GetTlvType()) > 0) {
			return fmt.Errorf("%s.typed_config.pass_through_tlvs: only empty (all TLVs kept): %w", path, ErrUnsupported)
		}
		cfg.ProxyProtocol = &listener.ProxyProtocolConfig{
			AllowRequestsWithoutProxyProtocol: pp.GetAllowRequestsWithoutProxyProtocol(),
		}
		return nil
	}
	return fmt.Errorf("%s: listener filter %q: %w", path, lf.GetName(), ErrUnsupported)
}

// filterChain translates one filter chain; defName is the chain's name in
// Portico when it has none.
func (x *ltx) filterChain(fc *listenerv3.FilterChain, path, defName string) (listener.FilterChain, error) {
	out := listener.FilterChain{Name: fc.GetName()}
	chainName := out.Name
	if chainName == "" {
		chainName = defName
	}
	var err error
	if m := fc.GetFilterChainMatch(); m != nil {
		if out.Match, err = chainMatch(m, path+".filter_chain_match"); err != nil {
			return out, err
		}
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		if out.TLS, err = x.transportSocket(ts, path+".transport_socket"); err != nil {
			return out, err
		}
	}
	filters := fc.GetFilters()
	if len(filters) == 0 {
		return out, fmt.Errorf("%s.filters: empty: an %s is required", path, hcmName)
	}
	for i, f := range filters {
		fpath := fmt.Sprintf("%s.filters[%d]", path, i)
		a := f.GetTypedConfig()
		if a == nil {
			return out, fmt.Errorf("%s.typed_config: required (filter %q)", fpath, f.GetName())
		}
		switch messageName(a.GetTypeUrl()) {
		case "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
			if i != len(filters)-1 {
				return out, fmt.Errorf("%s: %s is terminal and must be the last filter", fpath, hcmName)
			}
			m, err := x.unpack(a, fpath+".typed_config")
			if err != nil {
				return out, err
			}
			if out.HTTP, err = x.hcm(m.(*hcmv3.HttpConnectionManager), fpath+".typed_config", x.name+"/"+chainName); err != nil {
				return out, err
			}
		case "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":
			if i != len(filters)-1 {
				return out, fmt.Errorf("%s: %s is terminal and must be the last filter", fpath, tcpProxyName)
			}
			m, err := x.unpack(a, fpath+".typed_config")
			if err != nil {
				return out, err
			}
			if out.TCP, err = tcpProxy(m.(*tcpv3.TcpProxy), fpath+".typed_config"); err != nil {
				return out, err
			}
		default:
			return out, fmt.Errorf("%s: network filter %q (%s): %w", fpath, f.GetName(), a.GetTypeUrl(), ErrUnsupported)
		}
	}
	return out, nil
}

// tcpProxy translates a TCP proxy. Fields beyond stat_prefix, cluster,
// idle_timeout and max_connect_attempts (weighted_clusters, on_demand,
// tunneling_config, access_log...) are rejected by the allow-list before
// it runs, with their path.
func tcpProxy(m *tcpv3.TcpProxy, path string) (*listener.TCPProxyConfig, error) {
	out := &listener.TCPProxyConfig{StatPrefix: m.GetStatPrefix(), Cluster: m.GetCluster()}
	if m.GetWeightedClusters() != nil {
		return nil, fmt.Errorf("%s.weighted_clusters: %w", path, ErrUnsupported)
	}
	if out.Cluster == "" {
		return nil, fmt.Errorf("%s.cluster: required", path)
	}
	if d := m.GetIdleTimeout(); d != nil {
		var err error
		if out.IdleTimeout, err = duration(d, path+".idle_timeout"); err != nil {
			return nil, err
		}
		if out.IdleTimeout == 0 {
			out.IdleTimeout = -1 // Envoy: 0s disables it
		}
	}
	if a := m.GetMaxConnectAttempts(); a != nil {
		out.MaxConnectAttempts = int(a.GetValue())
	}
	return out, nil
}

func chainMatch(m *listenerv3.FilterChainMatch, path string) (listener.ChainMatch, error) {
	out := listener.ChainMatch{
		ServerNames:          slices.Clone(m.GetServerNames()),
		ApplicationProtocols: slices.Clone(m.GetApplicationProtocols()),
		TransportProtocol:    m.GetTransportProtocol(),
	}
	if p := m.GetDestinationPort(); p != nil {
		if p.GetValue() == 0 || p.GetValue() > 65535 {
			return out, fmt.Errorf("%s.destination_port: %d is not a port", path, p.GetValue())
		}
		out.DestinationPorts = []uint16{uint16(p.GetValue())}
	}
	// Without the PROXY protocol the source is the direct peer, so both
	// fields match the same address; Portico holds one list.
	src, direct := m.GetSourcePrefixRanges(), m.GetDirectSourcePrefixRanges()
	if len(src) > 0 && len(direct) > 0 {
		return out, fmt.Errorf("%s: source_prefix_ranges and direct_source_prefix_ranges together: %w", path, ErrUnsupported)
	}
	field := "source_prefix_ranges"
	if len(direct) > 0 {
		src, field = direct, "direct_source_prefix_ranges"
	}
	for i, r := range src {
		p, err := cidr(r)
		if err != nil {
			return out, fmt.Errorf("%s.%s[%d]: %w", path, field, i, err)
		}
		out.SourcePrefixes = append(out.SourcePrefixes, p)
	}
	return out, nil
}

func cidr(r *corev3.CidrRange) (netip.Prefix, error) {
	a, err := netip.ParseAddr(r.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, err
	}
	bits := a.BitLen()
	if pl := r.GetPrefixLen(); pl != nil {
		bits = int(pl.GetValue())
	}
	return a.Prefix(bits)
}

// transportSocket translates a downstream transport socket: TLS, or raw
// buffer (plaintext, nil).
func (x *ltx) transportSocket(ts *corev3.TransportSocket, path string) (*listener.TLSConfig, error) {
	a := ts.GetTypedConfig()
	if a == nil {
		if ts.GetName() == rawBufferName {
			return nil, nil
		}
		return nil, fmt.Errorf("%s.typed_config: required (transport socket %q)", path, ts.GetName())
	}
	m, err := x.unpack(a, path+".typed_config")
	if err != nil {
		return nil, err
	}
	switch c := m.(type) {
	case *tlsv3.DownstreamTlsContext:
		return x.downstreamTLS(c, path+".typed_config")
	}
	if messageName(a.GetTypeUrl()) == "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" {
		return nil, nil
	}
	return nil, fmt.Errorf("%s: transport socket %q (%s): %w", path, ts.GetName(), a.GetTypeUrl(), ErrUnsupported)
}

func (x *ltx) downstreamTLS(c *tlsv3.DownstreamTlsContext, path string) (*listener.TLSConfig, error) {
	if c.GetRequireClientCertificate().GetValue() {
		// A value error even in lenient mode: dropping it would accept
		// clients without certificates.
		return nil, fmt.Errorf("%s.require_client_certificate: true: the listener does not verify client certificates: %w", path, ErrUnsupported)
	}
	ctx := c.GetCommonTlsContext()
	cpath := path + ".common_tls_context"
	out := &listener.TLSConfig{ALPN: slices.Clone(ctx.GetAlpnProtocols())}
	if p := ctx.GetTlsParams(); p != nil {
		switch v := p.GetTlsMinimumProtocolVersion(); v {
		case tlsv3.TlsParameters_TLS_AUTO, tlsv3.TlsParameters_TLSv1_2:
			out.MinVersion = tls.VersionTLS12
		case tlsv3.TlsParameters_TLSv1_3:
			out.MinVersion = tls.VersionTLS13
		default:
			return nil, fmt.Errorf("%s.tls_params.tls_minimum_protocol_version: %s: Portico accepts TLS 1.2 and 1.3 only: %w", cpath, v, ErrUnsupported)
		}
	}
	for i, tc := range ctx.GetTlsCertificates() {
		cert, err := tlsCertificate(tc, fmt.Sprintf("%s.tls_certificates[%d]", cpath, i))
		if err != nil {
			return nil, err
		}
		out.Certificates = append(out.Certificates, cert)
	}
	for i, sds := range ctx.GetTlsCertificateSdsSecretConfigs() {
		spath := fmt.Sprintf("%s.tls_certificate_sds_secret_configs[%d]", cpath, i)
		if err := sdsConfigSource(sds.GetSdsConfig(), spath+".sds_config"); err != nil {
			return nil, err
		}
		name := sds.GetName()
		x.addRef(&x.refs.Secrets, name)
		var s *Secret
		ok := false
		if x.t.Secrets != nil {
			s, ok = x.t.Secrets(name)
		}
		if !ok {
			return nil, fmt.Errorf("%s: secret %q: not known (yet)", spath, name)
		}
		if len(s.CertPEM) == 0 || len(s.KeyPEM) == 0 {
			return nil, fmt.Errorf("%s: secret %q: not a tls_certificate", spath, name)
		}
		out.Certificates = append(out.Certificates, listener.Certificate{CertPEM: s.CertPEM, KeyPEM: s.KeyPEM})
	}
	if len(out.Certificates) == 0 {
		return nil, fmt.Errorf("%s: no tls_certificates or tls_certificate_sds_secret_configs", cpath)
	}
	return out, nil
}

// tlsCertificate translates an inline TLS certificate: files, or PEM.
func tlsCertificate(tc *tlsv3.TlsCertificate, path string) (listener.Certificate, error) {
	chain, key := tc.GetCertificateChain(), tc.GetPrivateKey()
	if chain == nil || key == nil {
		return listener.Certificate{}, fmt.Errorf("%s: certificate_chain and private_key are required", path)
	}
	cf, cfile := chain.GetSpecifier().(*corev3.DataSource_Filename)
	kf, kfile := key.GetSpecifier().(*corev3.DataSource_Filename)
	if cfile && kfile {
		// Files are read by the listener when it is built, as Envoy reads
		// them when the listener is created.
		return listener.Certificate{CertFile: cf.Filename, KeyFile: kf.Filename}, nil
	}
	var out listener.Certificate
	var err error
	if out.CertPEM, err = dataSourceBytes(chain, path+".certificate_chain"); err != nil {
		return out, err
	}
	if out.KeyPEM, err = dataSourceBytes(key, path+".private_key"); err != nil {
		return out, err
	}
	return out, nil
}

// sdsConfigSource checks that an SDS secret comes from where the xDS
// client can fetch it: the ADS stream or the management server itself.
func sdsConfigSource(cs *corev3.ConfigSource, path string) error {
	if cs == nil {
		// A secret without sds_config is one from static_resources.secrets.
		return nil
	}
	return xdsConfigSource(cs, path)
}

// xdsConfigSource accepts the config sources an xDS client serves from its
// management server: ads, self and api_config_source.
func xdsConfigSource(cs *corev3.ConfigSource, path string) error {
	switch cs.GetConfigSourceSpecifier().(type) {
	case *corev3.ConfigSource_Ads, *corev3.ConfigSource_Self, *corev3.ConfigSource_ApiConfigSource:
		return nil
	case *corev3.ConfigSource_PathConfigSource, *corev3.ConfigSource_Path:
		return fmt.Errorf("%s.path_config_source: files are supported for the bootstrap's lds_config and cds_config only: %w", path, ErrUnsupported)
	}
	return fmt.Errorf("%s: no config source specifier", path)
}

func (x *ltx) addRef(list *[]string, name string) {
	if !slices.Contains(*list, name) {
		*list = append(*list, name)
	}
}

// dataSourceBytes reads a DataSource: a file (read now, as Envoy reads it
// when the resource is loaded), inline bytes or an inline string.
func dataSourceBytes(ds *corev3.DataSource, path string) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		b, err := os.ReadFile(s.Filename)
		if err != nil {
			return nil, fmt.Errorf("%s.filename: %w", path, err)
		}
		return b, nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case nil:
		return nil, fmt.Errorf("%s: empty data source", path)
	}
	return nil, fmt.Errorf("%s: %w", path, ErrUnsupported)
}
