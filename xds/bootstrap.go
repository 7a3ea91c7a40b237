package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// DefaultBootstrapStatsPrefix is the stats prefix of a gateway built from
// a bootstrap: Envoy's stat names.
const DefaultBootstrapStatsPrefix = "envoy"

// BootstrapOptions tune LoadBootstrap and ParseBootstrap. The zero value
// is strict, with the default HTTP filters and the system resolver.
type BootstrapOptions struct {
	// Translate is the strict/lenient setting for the bootstrap's own
	// fields and every resource in it. Warnings also land in
	// Bootstrap.Warnings.
	Translate TranslateOptions
	// Filters resolves HCM http_filters; nil means DefaultFilters().
	Filters *FilterRegistry
	// Resolver resolves the clusters' DNS names; nil means the system
	// resolver.
	Resolver cluster.Resolver
	// ListenerAddress, if set, rewrites the address of every listener the
	// bootstrap defines (static ones and those of path_config_source
	// files): it is given the listener's name and configured host:port
	// and returns the address to bind, e.g. "127.0.0.1:0" in tests.
	ListenerAddress func(name, address string) string
	// AdminAddress, if set, replaces admin.address; "-" disables the admin
	// listener.
	AdminAddress string
	// StatsPrefix prefixes metric names; "" means
	// DefaultBootstrapStatsPrefix. Envoy's bootstrap has no such setting.
	StatsPrefix string
	// Stdout and Stderr receive the stdout and stderr access logs; nil
	// means os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Logger receives the gateway's, the client's and the bootstrap's
	// events; nil discards them.
	Logger *slog.Logger
}

// Bootstrap is an Envoy v3 bootstrap (envoy.config.bootstrap.v3.Bootstrap)
// translated for Portico: the gateway configuration of its
// static_resources (and of the files its dynamic_resources name), the
// gateway options of admin, node and the stats prefix, and the xDS client
// configuration of its dynamic_resources.
//
// Supported: static_resources (listeners, clusters, secrets, through
// Translator); dynamic_resources with ads_config (GRPC or DELTA_GRPC) and
// lds_config / cds_config from ads, an api_config_source (GRPC or
// DELTA_GRPC, one stream per type) or a path_config_source file (a
// DiscoveryResponse in YAML or JSON, polled for changes); node; admin
// address; overload_manager with the fixed_heap monitor and the
// shrink_heap and stop_accepting_requests actions. Everything else is
// rejected with its path, as resources are.
//
// A Bootstrap is built once; NewGateway and Run are called once each, in
// that order. Its fields are read-only after LoadBootstrap returns.
type Bootstrap struct {
	// Proto is the parsed bootstrap.
	Proto *bootstrapv3.Bootstrap
	// Config is the initial gateway configuration: static_resources and
	// the resources of path_config_source files.
	Config portico.Config
	// Options are the gateway options: Admin from admin.address ("-"
	// without an admin section, as Envoy has no admin listener then),
	// NodeID and NodeCluster from node, StatsPrefix, Logger.
	Options portico.Options
	// Client configures the xDS client for dynamic_resources served over
	// gRPC; nil when there are none. Run starts it.
	Client *ClientConfig
	// Warnings are what the loading dropped or bent: unsupported fields in
	// lenient mode, optional filters skipped, YAML forms read as Envoy
	// reads them.
	Warnings []Warning

	translator *Translator
	secrets    map[string]*Secret
	files      []*fileSource
	overload   *overloadManager
	logs       *AccessLogs
	log        *slog.Logger
	opts       BootstrapOptions
	gw         atomic.Pointer[portico.Gateway]
	wmu        sync.Mutex // guards Warnings while loading
}

// LoadBootstrap reads and translates the bootstrap file at path (YAML or
// JSON). Relative paths inside it (certificates, access logs, dynamic
// resource files) are relative to the working directory, as in Envoy.
func LoadBootstrap(path string, opts BootstrapOptions) (*Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	b, err := ParseBootstrap(data, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// ParseBootstrap translates a bootstrap document (YAML or JSON). Errors
// name the offending field by its path from the document's root, e.g.
//
//	bootstrap: static_resources.listeners[0]: listener "l": filter_chains[0].filters[0].typed_config.tracing: not supported
func ParseBootstrap(data []byte, opts BootstrapOptions) (*Bootstrap, error) {
	b := &Bootstrap{opts: opts, log: opts.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if err := b.parse(data); err != nil {
		if b.logs != nil {
			b.logs.Close()
		}
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

func (b *Bootstrap) warn(w Warning) {
	b.wmu.Lock()
	b.Warnings = append(b.Warnings, w)
	b.wmu.Unlock()
	b.log.Warn("bootstrap: "+w.Message, "path", w.Path)
	if f := b.opts.Translate.OnUnsupported; f != nil {
		f(w)
	}
}

// prefixed returns translate options whose warnings carry prefix.
func (b *Bootstrap) prefixed(prefix string) TranslateOptions {
	o := b.opts.Translate
	o.OnUnsupported = func(w Warning) {
		w.Path = join(prefix, w.Path)
		b.wmu.Lock()
		b.Warnings = append(b.Warnings, w)
		b.wmu.Unlock()
		b.log.Warn("bootstrap: "+w.Message, "path", w.Path)
		if f := b.opts.Translate.OnUnsupported; f != nil {
			f(w)
		}
	}
	return o
}

func (b *Bootstrap) parse(data []byte) error {
	bs := &bootstrapv3.Bootstrap{}
	if err := unmarshalConfig(data, bs, b.warn); err != nil {
		return err
	}
	b.Proto = bs
	if err := bs.ValidateAll(); err != nil {
		return fmt.Errorf("invalid: %w", err)
	}
	if err := b.checkOwnFields(bs); err != nil {
		return err
	}
	if om := bs.GetOverloadManager(); om != nil {
		m, err := newOverloadManager(om, "overload_manager", b.log)
		if err != nil {
			return err
		}
		b.overload = m
	}

	b.logs = &AccessLogs{Stdout: b.opts.Stdout, Stderr: b.opts.Stderr}
	b.secrets = map[string]*Secret{}
	fc := FactoryContext{
		HealthCheckFailed: func() bool {
			g := b.gw.Load()
			return g != nil && g.HealthCheckFailed()
		},
		AccessLogs: b.logs,
		Logger:     b.opts.Logger,
	}
	if b.overload != nil {
		fc.Overloaded = b.overload.stopAccepting.Load
	}
	b.translator = &Translator{
		Options:        b.opts.Translate,
		Filters:        b.opts.Filters,
		Resolver:       b.opts.Resolver,
		FactoryContext: fc,
		Secrets: func(name string) (*Secret, bool) {
			s, ok := b.secrets[name]
			return s, ok
		},
	}

	// dynamic_resources first: whether there is a client decides whether
	// static resources may reference RDS and EDS.
	if err := b.dynamic(bs.GetDynamicResources(), bs.GetStaticResources().GetClusters()); err != nil {
		return err
	}
	sr := bs.GetStaticResources()
	for i, s := range sr.GetSecrets() {
		t := *b.translator
		t.Options = b.prefixed(fmt.Sprintf("static_resources.secrets[%d]", i))
		sec, err := t.Secret(s)
		if err != nil {
			return fmt.Errorf("static_resources.secrets[%d]: %w", i, err)
		}
		b.secrets[sec.Name] = sec
	}
	for i, c := range sr.GetClusters() {
		path := fmt.Sprintf("static_resources.clusters[%d]", i)
		cc, err := b.cluster(c, path)
		if err != nil {
			return err
		}
		b.Config.Clusters = append(b.Config.Clusters, cc)
	}
	for i, l := range sr.GetListeners() {
		path := fmt.Sprintf("static_resources.listeners[%d]", i)
		lc, routes, err := b.listener(l, path)
		if err != nil {
			return err
		}
		b.Config.Listeners = append(b.Config.Listeners, lc)
		b.Config.Routes = append(b.Config.Routes, routes...)
	}
	for _, f := range b.files {
		if err := f.loadInitial(b); err != nil {
			return err
		}
	}

	b.Options = portico.Options{
		Admin:       "-",
		StatsPrefix: b.opts.StatsPrefix,
		Logger:      b.opts.Logger,
		NodeID:      bs.GetNode().GetId(),
		NodeCluster: bs.GetNode().GetCluster(),
	}
	if b.Options.StatsPrefix == "" {
		b.Options.StatsPrefix = DefaultBootstrapStatsPrefix
	}
	if a := bs.GetAdmin(); a != nil && a.GetAddress() != nil {
		addr, err := socketAddress(a.GetAddress(), "admin.address")
		if err != nil {
			return err
		}
		b.Options.Admin = addr
	}
	if b.opts.AdminAddress != "" {
		b.Options.Admin = b.opts.AdminAddress
	}
	return nil
}

// checkOwnFields walks the bootstrap's own fields against
// bootstrapSupported; the resources in static_resources are left to their
// translators.
func (b *Bootstrap) checkOwnFields(bs *bootstrapv3.Bootstrap) error {
	c := proto.Clone(bs).(*bootstrapv3.Bootstrap)
	if sr := c.GetStaticResources(); sr != nil {
		sr.Listeners, sr.Clusters, sr.Secrets = nil, nil, nil
	}
	var errs []error
	walkAllowed(bootstrapSupportedSet, c.ProtoReflect(), "", func(path, msg string) {
		if b.opts.Translate.Lenient {
			b.warn(Warning{Path: path, Message: msg})
			return
		}
		if msg == ErrUnsupported.Error() {
			errs = append(errs, fmt.Errorf("%s: %w", path, ErrUnsupported))
		} else {
			errs = append(errs, fmt.Errorf("%s: %s: %w", path, msg, ErrUnsupported))
		}
	})
	return errors.Join(errs...)
}

// cluster translates one cluster of the bootstrap or of a CDS file.
func (b *Bootstrap) cluster(c *clusterv3.Cluster, path string) (cluster.Config, error) {
	t := *b.translator
	t.Options = b.prefixed(path)
	cc, refs, err := t.Cluster(c)
	if err != nil {
		return cc, fmt.Errorf("%s: %w", path, err)
	}
	if len(refs.Endpoints) > 0 && b.Client == nil {
		return cc, fmt.Errorf("%s: cluster %q: EDS needs an xDS client: dynamic_resources has none", path, c.GetName())
	}
	return cc, nil
}

// listener translates one listener of the bootstrap or of an LDS file.
func (b *Bootstrap) listener(l *listenerv3.Listener, path string) (listener.Config, []route.Config, error) {
	if l.GetName() == "" {
		// Envoy names an unnamed static listener with a UUID; Portico uses
		// its path, which is as unique and says where it comes from.
		l = proto.Clone(l).(*listenerv3.Listener)
		l.Name = path
	}
	t := *b.translator
	t.Options = b.prefixed(path)
	lc, routes, refs, err := t.Listener(l)
	if err != nil {
		return lc, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(refs.Routes) > 0 && b.Client == nil {
		return lc, nil, fmt.Errorf("%s: listener %q: RDS route configuration %q needs an xDS client: dynamic_resources has none", path, lc.Name, refs.Routes[0])
	}
	if f := b.opts.ListenerAddress; f != nil {
		lc.Address = f(lc.Name, lc.Address)
	}
	return lc, routes, nil
}

// dynamic reads dynamic_resources: the xDS client configuration and the
// file sources.
func (b *Bootstrap) dynamic(dr *bootstrapv3.Bootstrap_DynamicResources, clusters []*clusterv3.Cluster) error {
	if dr == nil {
		return nil
	}
	var ads *apiSource
	if a := dr.GetAdsConfig(); a != nil {
		src, err := b.apiSource(a, "dynamic_resources.ads_config", clusters)
		if err != nil {
			return err
		}
		ads = &src
	}
	var node *corev3.Node
	if n := b.Proto.GetNode(); n != nil {
		node = proto.Clone(n).(*corev3.Node)
	}
	cfg := &ClientConfig{
		Node:       node,
		Translator: nil, // set below, once the translator is complete
		Logger:     b.opts.Logger,
	}
	var (
		useADS, usePerType bool
		perType            *apiSource
	)
	for _, kind := range []string{"lds", "cds"} {
		cs := dr.GetLdsConfig()
		path := "dynamic_resources.lds_config"
		if kind == "cds" {
			cs, path = dr.GetCdsConfig(), "dynamic_resources.cds_config"
		}
		if cs == nil {
			if kind == "lds" {
				cfg.DisableLDS = true
			} else {
				cfg.DisableCDS = true
			}
			continue
		}
		if d := cs.GetInitialFetchTimeout(); d != nil {
			v, err := duration(d, path+".initial_fetch_timeout")
			if err != nil {
				return err
			}
			if v == 0 {
				v = -1 // Envoy: 0 waits forever
			}
			cfg.InitialFetchTimeout = v
		}
		if v := cs.GetResourceApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
			return fmt.Errorf("%s.resource_api_version: %s: only V3 is supported", path, v)
		}
		switch s := cs.GetConfigSourceSpecifier().(type) {
		case *corev3.ConfigSource_Ads:
			if ads == nil {
				return fmt.Errorf("%s.ads: needs dynamic_resources.ads_config", path)
			}
			useADS = true
		case *corev3.ConfigSource_ApiConfigSource:
			src, err := b.apiSource(s.ApiConfigSource, path+".api_config_source", clusters)
			if err != nil {
				return err
			}
			if perType != nil && (perType.target != src.target || perType.delta != src.delta) {
				return fmt.Errorf("%s.api_config_source: a second management server: %w", path, ErrUnsupported)
			}
			perType, usePerType = &src, true
		case *corev3.ConfigSource_Path, *corev3.ConfigSource_PathConfigSource:
			f, err := newFileSource(cs, path, kind)
			if err != nil {
				return err
			}
			b.files = append(b.files, f)
			if kind == "lds" {
				cfg.DisableLDS = true
			} else {
				cfg.DisableCDS = true
			}
		case *corev3.ConfigSource_Self:
			return fmt.Errorf("%s.self: %w", path, ErrUnsupported)
		default:
			return fmt.Errorf("%s: no config source specifier", path)
		}
	}
	switch {
	case useADS && usePerType:
		return fmt.Errorf("dynamic_resources: ads and api_config_source together: %w", ErrUnsupported)
	case useADS:
		cfg.Target, cfg.Mode = ads.target, ADS
		if ads.delta {
			cfg.Mode = DeltaADS
		}
		cfg.DialOptions = dialOptions(ads.creds)
	case usePerType:
		cfg.Target, cfg.Mode = perType.target, PerType
		if perType.delta {
			cfg.Mode = DeltaPerType
		}
		cfg.DialOptions = dialOptions(perType.creds)
	case ads != nil:
		return errors.New("dynamic_resources.ads_config: neither lds_config nor cds_config uses ads")
	default:
		return nil // files only
	}
	cfg.Translator = b.translator
	b.Client = cfg
	return nil
}

// apiSource is a gRPC management server from an ApiConfigSource.
type apiSource struct {
	target string
	delta  bool
	creds  *tls.Config
}

func (b *Bootstrap) apiSource(a *corev3.ApiConfigSource, path string, clusters []*clusterv3.Cluster) (apiSource, error) {
	var src apiSource
	switch t := a.GetApiType(); t {
	case corev3.ApiConfigSource_GRPC, corev3.ApiConfigSource_AGGREGATED_GRPC:
	case corev3.ApiConfigSource_DELTA_GRPC, corev3.ApiConfigSource_AGGREGATED_DELTA_GRPC:
		src.delta = true
	default:
		return src, fmt.Errorf("%s.api_type: %s: only GRPC and DELTA_GRPC are supported: %w", path, t, ErrUnsupported)
	}
	if v := a.GetTransportApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
		return src, fmt.Errorf("%s.transport_api_version: %s: only V3 is supported", path, v)
	}
	gs := a.GetGrpcServices()
	if len(gs) != 1 {
		return src, fmt.Errorf("%s.grpc_services: exactly one is supported, got %d", path, len(gs))
	}
	name := gs[0].GetEnvoyGrpc().GetClusterName()
	if name == "" {
		return src, fmt.Errorf("%s.grpc_services[0].envoy_grpc.cluster_name: required", path)
	}
	for i, c := range clusters {
		if c.GetName() != name {
			continue
		}
		cpath := fmt.Sprintf("static_resources.clusters[%d]", i)
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) == 0 || len(eps[0].GetLbEndpoints()) == 0 {
			return src, fmt.Errorf("%s: cluster %q (the management server): no endpoint in load_assignment", cpath, name)
		}
		addr, err := socketAddressAny(eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress(), cpath+".load_assignment.endpoints[0].lb_endpoints[0].endpoint.address")
		if err != nil {
			return src, err
		}
		src.target = addr
		if ts := c.GetTransportSocket(); ts != nil {
			t := *b.translator
			t.Options = TranslateOptions{}
			cc, _, err := t.Cluster(c)
			if err != nil {
				return src, fmt.Errorf("%s: %w", cpath, err)
			}
			if src.creds, err = clientTLS(cc.TLS); err != nil {
				return src, fmt.Errorf("%s.transport_socket: %w", cpath, err)
			}
		}
		return src, nil
	}
	return src, fmt.Errorf("%s.grpc_services[0].envoy_grpc.cluster_name: %q is not a static cluster", path, name)
}

// socketAddressAny returns host:port for a TCP socket address whose host
// may be a name.
func socketAddressAny(a *corev3.Address, path string) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", fmt.Errorf("%s.socket_address: required", path)
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)), nil
}

// clientTLS builds the TLS configuration of the connection to the
// management server from its cluster's upstream TLS.
func clientTLS(c *cluster.TLSConfig) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	out := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	ca := c.RootCAs
	if len(ca) == 0 && c.RootCAFile != "" {
		b, err := os.ReadFile(c.RootCAFile)
		if err != nil {
			return nil, err
		}
		ca = b
	}
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errors.New("validation context: no CA certificate")
		}
		out.RootCAs = pool
	}
	certPEM, keyPEM := c.Certificate, c.Key
	if len(certPEM) == 0 && c.CertificateFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertificateFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		out.Certificates = []tls.Certificate{pair}
	} else if len(certPEM) > 0 {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		out.Certificates = []tls.Certificate{pair}
	}
	if len(c.MatchSubjectAltNames) > 0 {
		return nil, fmt.Errorf("match_subject_alt_names for the management server: %w", ErrUnsupported)
	}
	return out, nil
}

func dialOptions(c *tls.Config) []grpc.DialOption {
	if c == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(c))}
}

// NewGateway builds the gateway of the bootstrap (portico.New with Config
// and Options) and binds the health check filters' fail state to it.
func (b *Bootstrap) NewGateway() (*portico.Gateway, error) {
	gw, err := portico.New(b.Config, b.Options)
	if err != nil {
		return nil, err
	}
	b.gw.Store(gw)
	return gw, nil
}

// Run serves gw, which NewGateway built, and runs what keeps its
// configuration current: the xDS client of dynamic_resources, the
// watchers of path_config_source files and the overload manager. It
// returns when ctx is done, once the gateway has shut down gracefully,
// its access logs flushed, with gw.Serve's error.
func (b *Bootstrap) Run(ctx context.Context, gw *portico.Gateway) error {
	if b.gw.Load() == nil {
		b.gw.Store(gw)
	}
	defer b.logs.Close()
	var client *Client
	if b.Client != nil {
		var err error
		if client, err = NewClient(gw, *b.Client); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if b.overload != nil {
		wg.Go(func() { b.overload.run(ctx) })
	}
	for _, f := range b.files {
		wg.Go(func() { f.watch(ctx, b, gw) })
	}
	if client != nil {
		wg.Go(func() {
			if err := client.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				b.log.Error("xds client stopped", "err", err)
			}
		})
	}
	err := gw.Serve(ctx)
	cancel()
	wg.Wait()
	return err
}

// pollInterval is how often path_config_source files are checked when
// the bootstrap sets no poll_interval.
const pollInterval = time.Second
