package xds

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commondnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/common/dns/v3"
	dnsclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	dfpclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dynamic_forward_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/porticoproxy/portico/cluster"
)

// upstreamBufferSize is the size of the read and write buffers of
// Portico's upstream connections (cluster's bufferSize): the most a
// connection holds per direction before it stops reading, whatever
// per_connection_buffer_limit_bytes says.
const upstreamBufferSize = 32 << 10

// noIdleTimeout stands for Envoy's idle_timeout of 0, which disables the
// timeout; in cluster.Config, 0 means the default of one hour.
const noIdleTimeout = time.Duration(math.MaxInt64)

// Cluster translates a Cluster into a cluster.Config that cluster.New
// accepts.
//
// Like TranslateRouteConfiguration it runs the proto's validation
// (ValidateAll) first, then rejects every set field that Portico does not
// implement, naming it by its path (in lenient mode it reports the field
// and translates the cluster as if it were absent), then translates and
// validates the result with cluster.Config.Validate. Messages packed in
// Any fields (transport_socket, cluster_type, load_balancing_policy,
// typed_extension_protocol_options) are validated and checked the same
// way, with paths through their typed_config. Values that Portico cannot
// represent are errors in lenient mode too. Errors are prefixed with the
// cluster's name: cluster "svc": lb_subset_config: not supported.
//
// Discovery types: STATIC, STRICT_DNS, LOGICAL_DNS, EDS (Refs.Endpoints
// names the ClusterLoadAssignment to wait for: eds_cluster_config's
// service_name, or the cluster's name), ORIGINAL_DST, and the cluster_type
// extensions envoy.clusters.dynamic_forward_proxy and envoy.clusters.dns
// (a STRICT_DNS cluster). Dynamic forward proxy clusters naming the same
// dns_cache_config share one cluster.DNSCache, owned by the Translator
// (see CloseDNSCaches); the caches, like STRICT_DNS and LOGICAL_DNS
// clusters, resolve with t.Resolver. DNS settings on clusters of other
// types are ignored, as in Envoy.
//
// Envoy's defaults that differ from a zero value are Portico's too:
// connect_timeout 5 s, dns_refresh_rate 5 s, idle_timeout 1 h, circuit
// breaker limits 1024/1024/1024/3, the outlier detection defaults, the
// healthy_panic_threshold of 50 %, overprovisioning factor 140. Where
// Portico reads a zero as "the default" and Envoy gives an explicit zero
// another meaning (max_retries: 0, consecutive_5xx: 0, ...), the explicit
// zero is rejected as not representable.
//
// Upstream TLS (envoy.transport_sockets.tls) is translated into
// cluster.TLSConfig; SDS references are resolved through t.Secrets and
// listed in Refs.Secrets, which is filled even when the translation fails
// with ErrSecretNotFound, so that a client knows what to wait for. One
// deliberate difference: Envoy does not verify the upstream certificate
// when the context has no validation context, Portico then verifies it
// against the system roots.
//
// Cluster does not retain or modify c; it is safe for concurrent use.
func (t *Translator) Cluster(c *clusterv3.Cluster) (cluster.Config, Refs, error) {
	if c == nil {
		return cluster.Config{}, Refs{}, errors.New("cluster: nil")
	}
	x := &clusterTx{upstreamTx: upstreamTx{opts: t.Options}, t: t, c: c}
	cfg, err := x.translate()
	if err != nil {
		return cluster.Config{}, x.refs, fmt.Errorf("cluster %q: %w", c.GetName(), err)
	}
	return cfg, x.refs, nil
}

// clusterTx is one Cluster translation.
type clusterTx struct {
	upstreamTx
	t    *Translator
	c    *clusterv3.Cluster
	refs Refs
}

func (x *clusterTx) translate() (cluster.Config, error) {
	c := x.c
	if err := c.ValidateAll(); err != nil {
		return cluster.Config{}, fmt.Errorf("invalid: %w", err)
	}
	// Unsupported fields found by the walk and by the steps below are
	// reported together; the steps read supported fields only.
	x.check(c.ProtoReflect(), "")
	cfg := cluster.Config{Name: c.GetName(), Resolver: x.t.Resolver}
	for _, step := range []func(*cluster.Config) error{
		x.discovery,
		x.loadAssignment,
		x.connection,
		x.protocol,
		x.transportSocket, // after protocol: ALPN is checked against it
		x.balancer,
		x.circuitBreakers,
		x.outlierDetection,
		x.healthChecks, // after transportSocket: checks cannot use TLS
	} {
		if err := step(&cfg); err != nil {
			return cluster.Config{}, errors.Join(x.unsupported(), err)
		}
	}
	if err := x.unsupported(); err != nil {
		return cluster.Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return cluster.Config{}, err
	}
	return cfg, nil
}

// discovery translates the discovery type and its DNS settings.
func (x *clusterTx) discovery(cfg *cluster.Config) error {
	c := x.c
	if ct := c.GetClusterType(); ct != nil {
		const path = "cluster_type.typed_config"
		m, err := x.unpack(ct.GetTypedConfig(), path, &dfpclusterv3.ClusterConfig{}, &dnsclusterv3.DnsCluster{})
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *dfpclusterv3.ClusterConfig:
			cfg.Type = cluster.DynamicForwardProxy
			return x.dnsCacheConfig(cfg, m.GetDnsCacheConfig(), path+".dns_cache_config")
		case *dnsclusterv3.DnsCluster:
			cfg.Type = cluster.StrictDNS
			return x.dnsCluster(cfg, m, path)
		}
	}
	switch t := c.GetType(); t {
	case clusterv3.Cluster_STATIC:
		cfg.Type = cluster.Static
	case clusterv3.Cluster_STRICT_DNS:
		cfg.Type = cluster.StrictDNS
	case clusterv3.Cluster_LOGICAL_DNS:
		cfg.Type = cluster.LogicalDNS
	case clusterv3.Cluster_EDS:
		cfg.Type = cluster.EDS
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		x.refs.Endpoints = append(x.refs.Endpoints, name)
	case clusterv3.Cluster_ORIGINAL_DST:
		cfg.Type = cluster.OriginalDst
		od := c.GetOriginalDstLbConfig()
		cfg.OriginalDst.UseHTTPHeader = od.GetUseHttpHeader()
		cfg.OriginalDst.HTTPHeaderName = od.GetHttpHeaderName()
		var err error
		if cfg.OriginalDst.CleanupInterval, err = duration(c.GetCleanupInterval(), "cleanup_interval"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("type: unknown value %d", t)
	}
	if c.GetEdsClusterConfig() != nil && cfg.Type != cluster.EDS {
		x.report("eds_cluster_config", "only applies to type EDS")
	}
	if c.GetCleanupInterval() != nil && cfg.Type != cluster.OriginalDst {
		x.report("cleanup_interval", "only applies to type ORIGINAL_DST")
	}
	var err error
	if cfg.DNSLookupFamily, err = lookupFamily(c.GetDnsLookupFamily(), "dns_lookup_family"); err != nil {
		return err
	}
	// Envoy's default dns_refresh_rate (5 s) is cluster.DefaultDNSRefreshRate.
	if cfg.DNSRefreshRate, err = duration(c.GetDnsRefreshRate(), "dns_refresh_rate"); err != nil {
		return err
	}
	if r := c.GetDnsFailureRefreshRate(); r != nil {
		if cfg.DNSFailureRefreshRate, err = refreshRate(r.GetBaseInterval(), r.GetMaxInterval(), "dns_failure_refresh_rate"); err != nil {
			return err
		}
	}
	cfg.RespectDNSTTL = c.GetRespectDnsTtl()
	return nil
}

// dnsCluster translates the envoy.clusters.dns extension, which replaces
// the cluster's own DNS fields.
func (x *clusterTx) dnsCluster(cfg *cluster.Config, d *dnsclusterv3.DnsCluster, path string) error {
	c := x.c
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"dns_lookup_family", c.GetDnsLookupFamily() != clusterv3.Cluster_AUTO},
		{"dns_refresh_rate", c.GetDnsRefreshRate() != nil},
		{"dns_failure_refresh_rate", c.GetDnsFailureRefreshRate() != nil},
		{"respect_dns_ttl", c.GetRespectDnsTtl()},
	} {
		if f.set {
			x.report(f.name, "ignored with cluster_type envoy.clusters.dns, which has its own")
		}
	}
	var err error
	switch f := d.GetDnsLookupFamily(); f {
	case commondnsv3.DnsLookupFamily_UNSPECIFIED, commondnsv3.DnsLookupFamily_AUTO:
		cfg.DNSLookupFamily = cluster.DNSAuto
	case commondnsv3.DnsLookupFamily_V4_ONLY:
		cfg.DNSLookupFamily = cluster.DNSV4Only
	case commondnsv3.DnsLookupFamily_V6_ONLY:
		cfg.DNSLookupFamily = cluster.DNSV6Only
	case commondnsv3.DnsLookupFamily_V4_PREFERRED:
		cfg.DNSLookupFamily = cluster.DNSV4Preferred
	case commondnsv3.DnsLookupFamily_ALL:
		cfg.DNSLookupFamily = cluster.DNSAll
	default:
		return fmt.Errorf("%s.dns_lookup_family: unknown value %d", path, f)
	}
	if cfg.DNSRefreshRate, err = duration(d.GetDnsRefreshRate(), path+".dns_refresh_rate"); err != nil {
		return err
	}
	if r := d.GetDnsFailureRefreshRate(); r != nil {
		if cfg.DNSFailureRefreshRate, err = refreshRate(r.GetBaseInterval(), r.GetMaxInterval(), path+".dns_failure_refresh_rate"); err != nil {
			return err
		}
	}
	cfg.RespectDNSTTL = d.GetRespectDnsTtl()
	return nil
}

func lookupFamily(f clusterv3.Cluster_DnsLookupFamily, path string) (cluster.DNSLookupFamily, error) {
	switch f {
	case clusterv3.Cluster_AUTO:
		return cluster.DNSAuto, nil
	case clusterv3.Cluster_V4_ONLY:
		return cluster.DNSV4Only, nil
	case clusterv3.Cluster_V6_ONLY:
		return cluster.DNSV6Only, nil
	case clusterv3.Cluster_V4_PREFERRED:
		return cluster.DNSV4Preferred, nil
	case clusterv3.Cluster_ALL:
		return cluster.DNSAll, nil
	}
	return 0, fmt.Errorf("%s: unknown value %d", path, f)
}

// refreshRate translates Envoy's RefreshRate; Envoy's default
// max_interval (ten times base_interval) is cluster.RefreshRate's.
func refreshRate(base, maxInterval *durationpb.Duration, path string) (cluster.RefreshRate, error) {
	var r cluster.RefreshRate
	var err error
	if r.BaseInterval, err = duration(base, path+".base_interval"); err != nil {
		return r, err
	}
	r.MaxInterval, err = duration(maxInterval, path+".max_interval")
	return r, err
}

// loadAssignment translates the inline endpoints of STATIC, STRICT_DNS
// and LOGICAL_DNS clusters.
func (x *clusterTx) loadAssignment(cfg *cluster.Config) error {
	la := x.c.GetLoadAssignment()
	if la == nil {
		return nil
	}
	switch cfg.Type {
	case cluster.Static, cluster.StrictDNS, cluster.LogicalDNS:
		eps, err := x.endpoints(la, "load_assignment.")
		cfg.Endpoints = eps
		return err
	case cluster.EDS:
		// Envoy takes an EDS cluster's endpoints from EDS only.
		x.report("load_assignment", "not used by EDS clusters, whose endpoints come from EDS")
		return nil
	}
	return fmt.Errorf("load_assignment: must be empty for a cluster of type %v, which finds its hosts per request", cfg.Type)
}

// connection translates connection-level settings.
func (x *clusterTx) connection(cfg *cluster.Config) error {
	c := x.c
	var err error
	// Envoy's default connect_timeout (5 s) is cluster.DefaultConnectTimeout.
	if cfg.ConnectTimeout, err = duration(c.GetConnectTimeout(), "connect_timeout"); err != nil {
		return err
	}
	if v := c.GetPerConnectionBufferLimitBytes(); v != nil && v.GetValue() < upstreamBufferSize {
		// A soft limit at or above Portico's buffers holds already.
		x.report("per_connection_buffer_limit_bytes", fmt.Sprintf("%d is below Portico's fixed %d-byte connection buffers", v.GetValue(), upstreamBufferSize))
	}
	if ka := c.GetUpstreamConnectionOptions().GetTcpKeepalive(); ka != nil {
		// Zero or absent fields keep the operating system's value, in
		// Envoy as in cluster.TCPKeepalive.
		cfg.TCPKeepalive = &cluster.TCPKeepalive{
			Probes:   ka.GetKeepaliveProbes().GetValue(),
			Time:     time.Duration(ka.GetKeepaliveTime().GetValue()) * time.Second,
			Interval: time.Duration(ka.GetKeepaliveInterval().GetValue()) * time.Second,
		}
	}
	return nil
}

// httpProtocolOptionsType is the typed_extension_protocol_options entry
// for HTTP upstreams.
const httpProtocolOptionsType = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// protocol translates the upstream HTTP protocol and its connection
// options: typed_extension_protocol_options'
// envoy.extensions.upstreams.http.v3.HttpProtocolOptions, or the
// deprecated cluster fields it replaces (never both, as in Envoy). The
// default is HTTP/1.1, as in Envoy.
func (x *clusterTx) protocol(cfg *cluster.Config) error {
	c := x.c
	var typed *upstreamhttpv3.HttpProtocolOptions
	var typedPath string
	keys := make([]string, 0, len(c.GetTypedExtensionProtocolOptions()))
	for k := range c.GetTypedExtensionProtocolOptions() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		a := c.GetTypedExtensionProtocolOptions()[k]
		path := fmt.Sprintf("typed_extension_protocol_options[%q]", k)
		if a.MessageName() != httpProtocolOptionsType {
			x.report(path, "type "+a.GetTypeUrl())
			continue
		}
		if typed != nil {
			return fmt.Errorf("%s: duplicates %s", path, typedPath)
		}
		m, err := x.unpack(a, path, &upstreamhttpv3.HttpProtocolOptions{})
		if err != nil {
			return err
		}
		typed, typedPath = m.(*upstreamhttpv3.HttpProtocolOptions), path
	}

	if typed == nil {
		if h2 := c.GetHttp2ProtocolOptions(); h2 != nil {
			cfg.Protocol = cluster.HTTP2
			cfg.HTTP2 = http2Options(h2)
		}
		if err := commonHTTP(cfg, c.GetCommonHttpProtocolOptions(), "common_http_protocol_options"); err != nil {
			return err
		}
		if v := c.GetMaxRequestsPerConnection(); v != nil {
			// 0 and absent both mean no limit, in Envoy as in Portico.
			cfg.MaxRequestsPerConnection = v.GetValue()
		}
		return nil
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"http_protocol_options", c.GetHttpProtocolOptions() != nil},
		{"http2_protocol_options", c.GetHttp2ProtocolOptions() != nil},
		{"common_http_protocol_options", c.GetCommonHttpProtocolOptions() != nil},
		{"max_requests_per_connection", c.GetMaxRequestsPerConnection() != nil},
	} {
		if f.set {
			return fmt.Errorf("%s: deprecated field set together with %s", f.name, typedPath)
		}
	}
	if h2 := typed.GetExplicitHttpConfig().GetHttp2ProtocolOptions(); h2 != nil {
		cfg.Protocol = cluster.HTTP2
		cfg.HTTP2 = http2Options(h2)
	}
	return commonHTTP(cfg, typed.GetCommonHttpProtocolOptions(), typedPath+".common_http_protocol_options")
}

func http2Options(h2 *corev3.Http2ProtocolOptions) cluster.HTTP2Options {
	return cluster.HTTP2Options{
		InitialStreamWindowSize:     h2.GetInitialStreamWindowSize().GetValue(),
		InitialConnectionWindowSize: h2.GetInitialConnectionWindowSize().GetValue(),
	}
}

// commonHTTP translates HttpProtocolOptions' connection lifetime fields.
func commonHTTP(cfg *cluster.Config, o *corev3.HttpProtocolOptions, path string) error {
	if o == nil {
		return nil
	}
	var err error
	if d := o.GetIdleTimeout(); d != nil {
		// Envoy's default is one hour, cluster.DefaultIdleTimeout; an
		// explicit 0 disables the timeout.
		if cfg.IdleTimeout, err = duration(d, path+".idle_timeout"); err != nil {
			return err
		}
		if cfg.IdleTimeout == 0 {
			cfg.IdleTimeout = noIdleTimeout
		}
	}
	if cfg.MaxConnectionDuration, err = duration(o.GetMaxConnectionDuration(), path+".max_connection_duration"); err != nil {
		return err
	}
	cfg.MaxRequestsPerConnection = o.GetMaxRequestsPerConnection().GetValue()
	return nil
}

// circuitBreakers translates the per-priority thresholds. Envoy's
// defaults (1024 connections, pending and active requests, 3 retries;
// a retry budget of 20 % with a floor of 3) are cluster's.
func (x *clusterTx) circuitBreakers(cfg *cluster.Config) error {
	var seen [2]int
	for i, th := range x.c.GetCircuitBreakers().GetThresholds() {
		path := fmt.Sprintf("circuit_breakers.thresholds[%d]", i)
		var dst *cluster.Thresholds
		switch p := th.GetPriority(); p {
		case corev3.RoutingPriority_DEFAULT:
			dst = &cfg.CircuitBreakers.Default
		case corev3.RoutingPriority_HIGH:
			dst = &cfg.CircuitBreakers.High
		default:
			return fmt.Errorf("%s.priority: unknown value %d", path, p)
		}
		if j := seen[th.GetPriority()]; j > 0 {
			return fmt.Errorf("%s.priority: %v duplicates circuit_breakers.thresholds[%d]", path, th.GetPriority(), j-1)
		}
		seen[th.GetPriority()] = i + 1
		var err error
		if dst.MaxConnections, err = explicitCount(th.GetMaxConnections(), path+".max_connections"); err != nil {
			return err
		}
		if dst.MaxPendingRequests, err = explicitCount(th.GetMaxPendingRequests(), path+".max_pending_requests"); err != nil {
			return err
		}
		if dst.MaxRequests, err = explicitCount(th.GetMaxRequests(), path+".max_requests"); err != nil {
			return err
		}
		if dst.MaxRetries, err = explicitCount(th.GetMaxRetries(), path+".max_retries"); err != nil {
			return err
		}
		if rb := th.GetRetryBudget(); rb != nil {
			b := &cluster.RetryBudget{}
			if p := rb.GetBudgetPercent(); p != nil {
				if p.GetValue() == 0 {
					return fmt.Errorf("%s.retry_budget.budget_percent: explicit 0 (Portico's zero means the default 20): %w", path, ErrUnsupported)
				}
				b.BudgetPercent = p.GetValue()
			}
			if b.MinRetryConcurrency, err = explicitCount(rb.GetMinRetryConcurrency(), path+".retry_budget.min_retry_concurrency"); err != nil {
				return err
			}
			dst.RetryBudget = b
		}
	}
	return nil
}

// explicitCount converts a UInt32Value for a cluster field whose zero
// means Envoy's default: absent is 0; an explicit 0, which Envoy takes
// literally, cannot be represented.
func explicitCount(v *wrapperspb.UInt32Value, path string) (uint32, error) {
	if v == nil {
		return 0, nil
	}
	if v.GetValue() == 0 {
		return 0, fmt.Errorf("%s: explicit 0 (Portico's zero means Envoy's default): %w", path, ErrUnsupported)
	}
	return v.GetValue(), nil
}

// optionalPercent converts a UInt32Value for a cluster field where nil
// means the default.
func optionalPercent(v *wrapperspb.UInt32Value) *uint32 {
	if v == nil {
		return nil
	}
	p := v.GetValue()
	return &p
}

// outlierDetection translates outlier_detection; Envoy's defaults
// (consecutive_5xx 5, interval 10 s, base_ejection_time 30 s,
// max_ejection_percent 10, ...) are cluster.OutlierDetection's.
func (x *clusterTx) outlierDetection(cfg *cluster.Config) error {
	o := x.c.GetOutlierDetection()
	if o == nil {
		return nil
	}
	const p = "outlier_detection."
	od := &cluster.OutlierDetection{
		MaxEjectionPercent:                     optionalPercent(o.GetMaxEjectionPercent()),
		EnforcingConsecutive5xx:                optionalPercent(o.GetEnforcingConsecutive_5Xx()),
		EnforcingConsecutiveGatewayFailure:     optionalPercent(o.GetEnforcingConsecutiveGatewayFailure()),
		SplitExternalLocalOriginErrors:         o.GetSplitExternalLocalOriginErrors(),
		EnforcingConsecutiveLocalOriginFailure: optionalPercent(o.GetEnforcingConsecutiveLocalOriginFailure()),
		EnforcingSuccessRate:                   optionalPercent(o.GetEnforcingSuccessRate()),
		EnforcingLocalOriginSuccessRate:        optionalPercent(o.GetEnforcingLocalOriginSuccessRate()),
		EnforcingFailurePercentage:             optionalPercent(o.GetEnforcingFailurePercentage()),
		EnforcingFailurePercentageLocalOrigin:  optionalPercent(o.GetEnforcingFailurePercentageLocalOrigin()),
	}
	if v := o.GetSuccessfulActiveHealthCheckUnejectHost(); v != nil {
		b := v.GetValue()
		od.SuccessfulActiveHealthCheckUnejectHost = &b
	}
	var err error
	for _, d := range []struct {
		dst  *time.Duration
		src  *durationpb.Duration
		name string
	}{
		{&od.Interval, o.GetInterval(), "interval"},
		{&od.BaseEjectionTime, o.GetBaseEjectionTime(), "base_ejection_time"},
		{&od.MaxEjectionTime, o.GetMaxEjectionTime(), "max_ejection_time"},
		{&od.MaxEjectionTimeJitter, o.GetMaxEjectionTimeJitter(), "max_ejection_time_jitter"},
	} {
		if *d.dst, err = duration(d.src, p+d.name); err != nil {
			return err
		}
		if d.src != nil && *d.dst == 0 && d.name != "max_ejection_time_jitter" {
			return fmt.Errorf("%s%s: explicit 0 (Portico's zero means Envoy's default): %w", p, d.name, ErrUnsupported)
		}
	}
	for _, n := range []struct {
		dst  *uint32
		src  *wrapperspb.UInt32Value
		name string
	}{
		{&od.Consecutive5xx, o.GetConsecutive_5Xx(), "consecutive_5xx"},
		{&od.ConsecutiveGatewayFailure, o.GetConsecutiveGatewayFailure(), "consecutive_gateway_failure"},
		{&od.ConsecutiveLocalOriginFailure, o.GetConsecutiveLocalOriginFailure(), "consecutive_local_origin_failure"},
		{&od.SuccessRateMinimumHosts, o.GetSuccessRateMinimumHosts(), "success_rate_minimum_hosts"},
		{&od.SuccessRateRequestVolume, o.GetSuccessRateRequestVolume(), "success_rate_request_volume"},
		{&od.SuccessRateStdevFactor, o.GetSuccessRateStdevFactor(), "success_rate_stdev_factor"},
		{&od.FailurePercentageThreshold, o.GetFailurePercentageThreshold(), "failure_percentage_threshold"},
		{&od.FailurePercentageMinimumHosts, o.GetFailurePercentageMinimumHosts(), "failure_percentage_minimum_hosts"},
		{&od.FailurePercentageRequestVolume, o.GetFailurePercentageRequestVolume(), "failure_percentage_request_volume"},
	} {
		if *n.dst, err = explicitCount(n.src, p+n.name); err != nil {
			return err
		}
	}
	cfg.OutlierDetection = od
	return nil
}
