package xds

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// upstreamSupported is the allow-list of the Cluster,
// ClusterLoadAssignment and Secret translators, in the form of supported:
// per message type, the fields they implement. Messages packed in Any
// fields (transport sockets, cluster types, load-balancing policies,
// protocol options) are unpacked by the translators and checked against
// it too. TestUpstreamSupportedComplete checks that it is complete on its
// own.
//
// The upstream translators walk this map, not the package-wide union, so
// that message types shared with the listener and route translators
// (DataSource, HttpProtocolOptions, ...) accept exactly the fields read
// here.
var upstreamSupported = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.cluster.v3.Cluster": {
		"name", "type", "cluster_type", "eds_cluster_config", "load_assignment",
		"connect_timeout", "per_connection_buffer_limit_bytes",
		"dns_lookup_family", "dns_refresh_rate", "dns_failure_refresh_rate", "respect_dns_ttl",
		"cleanup_interval", "original_dst_lb_config",
		"lb_policy", "ring_hash_lb_config", "maglev_lb_config",
		"least_request_lb_config", "round_robin_lb_config",
		"common_lb_config", "load_balancing_policy",
		"circuit_breakers", "outlier_detection", "health_checks",
		"transport_socket", "typed_extension_protocol_options",
		"http_protocol_options", "http2_protocol_options",
		"common_http_protocol_options", "max_requests_per_connection",
		"upstream_connection_options",
	},
	"envoy.config.cluster.v3.Cluster.EdsClusterConfig":    {"eds_config", "service_name"},
	"envoy.config.cluster.v3.Cluster.CustomClusterType":   {"name", "typed_config"},
	"envoy.config.cluster.v3.Cluster.OriginalDstLbConfig": {"use_http_header", "http_header_name"},
	"envoy.config.cluster.v3.Cluster.RefreshRate":         {"base_interval", "max_interval"},

	// Config sources name where EDS and SDS resources come from; the xDS
	// client serves them from its management server.
	"envoy.config.core.v3.ConfigSource": {
		"ads", "self", "api_config_source", "initial_fetch_timeout", "resource_api_version",
	},
	"envoy.config.core.v3.AggregatedConfigSource": {},
	"envoy.config.core.v3.SelfConfigSource":       {"transport_api_version"},
	"envoy.config.core.v3.ApiConfigSource": {
		"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only",
	},
	"envoy.config.core.v3.GrpcService":           {"envoy_grpc", "timeout"},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc": {"cluster_name"},

	// Load balancing.
	"envoy.config.cluster.v3.Cluster.RingHashLbConfig": {"minimum_ring_size", "maximum_ring_size"},
	"envoy.config.cluster.v3.Cluster.MaglevLbConfig":   {"table_size"},
	"envoy.config.cluster.v3.Cluster.LeastRequestLbConfig": {
		"choice_count", "active_request_bias", "slow_start_config",
	},
	"envoy.config.cluster.v3.Cluster.RoundRobinLbConfig": {"slow_start_config"},
	"envoy.config.cluster.v3.Cluster.SlowStartConfig": {
		"slow_start_window", "aggression", "min_weight_percent",
	},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig": {
		"healthy_panic_threshold", "locality_weighted_lb_config",
	},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig": {},
	"envoy.config.core.v3.RuntimeDouble":                                      {"default_value"},
	"envoy.type.v3.Percent":                                                   {"value"},
	"envoy.config.cluster.v3.LoadBalancingPolicy":                             {"policies"},
	"envoy.config.cluster.v3.LoadBalancingPolicy.Policy":                      {"typed_extension_config"},
	"envoy.config.core.v3.TypedExtensionConfig":                               {"name", "typed_config"},
	"envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin": {
		"slow_start_config", "locality_lb_config",
	},
	"envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest": {
		"choice_count", "active_request_bias", "slow_start_config", "locality_lb_config",
	},
	"envoy.extensions.load_balancing_policies.random.v3.Random": {"locality_lb_config"},
	"envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash": {
		"hash_function", "minimum_ring_size", "maximum_ring_size", "locality_weighted_lb_config",
	},
	"envoy.extensions.load_balancing_policies.maglev.v3.Maglev": {
		"table_size", "locality_weighted_lb_config",
	},
	"envoy.extensions.load_balancing_policies.common.v3.SlowStartConfig": {
		"slow_start_window", "aggression", "min_weight_percent",
	},
	"envoy.extensions.load_balancing_policies.common.v3.LocalityLbConfig": {
		"locality_weighted_lb_config",
	},
	"envoy.extensions.load_balancing_policies.common.v3.LocalityLbConfig.LocalityWeightedLbConfig": {},
	"envoy.extensions.load_balancing_policies.cluster_provided.v3.ClusterProvided":                 {},

	// Circuit breakers and outlier detection.
	"envoy.config.cluster.v3.CircuitBreakers": {"thresholds"},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds": {
		"priority", "max_connections", "max_pending_requests", "max_requests",
		"max_retries", "retry_budget",
	},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget": {
		"budget_percent", "min_retry_concurrency",
	},
	"envoy.config.cluster.v3.OutlierDetection": {
		"interval", "base_ejection_time", "max_ejection_time", "max_ejection_time_jitter",
		"max_ejection_percent",
		"consecutive_5xx", "enforcing_consecutive_5xx",
		"consecutive_gateway_failure", "enforcing_consecutive_gateway_failure",
		"split_external_local_origin_errors",
		"consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure",
		"success_rate_minimum_hosts", "success_rate_request_volume", "success_rate_stdev_factor",
		"enforcing_success_rate", "enforcing_local_origin_success_rate",
		"failure_percentage_threshold", "failure_percentage_minimum_hosts",
		"failure_percentage_request_volume", "enforcing_failure_percentage",
		"enforcing_failure_percentage_local_origin",
		"successful_active_health_check_uneject_host",
	},

	// Active health checks.
	"envoy.config.core.v3.HealthCheck": {
		"timeout", "interval", "interval_jitter", "interval_jitter_percent",
		"unhealthy_threshold", "healthy_threshold", "reuse_connection",
		"no_traffic_interval", "unhealthy_interval", "unhealthy_edge_interval", "healthy_edge_interval",
		"http_health_check", "tcp_health_check", "grpc_health_check",
	},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck": {
		"host", "path", "expected_statuses", "codec_client_type", "method",
	},
	"envoy.config.core.v3.HealthCheck.TcpHealthCheck":  {"send", "receive"},
	"envoy.config.core.v3.HealthCheck.GrpcHealthCheck": {"service_name", "authority"},
	"envoy.config.core.v3.HealthCheck.Payload":         {"text", "binary"},
	"envoy.type.v3.Int64Range":                         {"start", "end"},

	// Connections and protocols.
	"envoy.config.cluster.v3.UpstreamConnectionOptions": {"tcp_keepalive"},
	"envoy.config.core.v3.TcpKeepalive": {
		"keepalive_probes", "keepalive_time", "keepalive_interval",
	},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
		"common_http_protocol_options", "explicit_http_config",
	},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig": {
		"http_protocol_options", "http2_protocol_options",
	},
	"envoy.config.core.v3.HttpProtocolOptions": {
		"idle_timeout", "max_connection_duration", "max_requests_per_connection",
	},
	"envoy.config.core.v3.Http1ProtocolOptions": {},
	"envoy.config.core.v3.Http2ProtocolOptions": {
		"initial_stream_window_size", "initial_connection_window_size",
	},

	// Upstream TLS and SDS secrets.
	"envoy.config.core.v3.TransportSocket": {"name", "typed_config"},
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext": {
		"common_tls_context", "sni", "auto_host_sni", "auto_sni_san_validation",
	},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext": {
		"tls_params", "tls_certificates", "tls_certificate_sds_secret_configs",
		"validation_context", "validation_context_sds_secret_config",
		"combined_validation_context", "alpn_protocols",
	},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext": {
		"default_validation_context", "validation_context_sds_secret_config",
	},
	"envoy.extensions.transport_sockets.tls.v3.TlsParameters": {
		"tls_minimum_protocol_version", "tls_maximum_protocol_version",
	},
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate": {"certificate_chain", "private_key"},
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext": {
		"trusted_ca", "system_root_certs", "match_typed_subject_alt_names", "match_subject_alt_names",
	},
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext.SystemRootCerts": {},
	"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher":                        {"san_type", "matcher"},
	"envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig":                              {"name", "sds_config"},
	"envoy.extensions.transport_sockets.tls.v3.Secret": {
		"name", "tls_certificate", "validation_context",
	},
	"envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer": {},
	// filename is read here (certificates, keys and CAs), unlike in the
	// route translator's direct responses.
	"envoy.config.core.v3.DataSource": {"filename", "inline_bytes", "inline_string"},
	// Only exact matches are representable; the translator rejects the
	// other patterns with their path.
	"envoy.type.matcher.v3.StringMatcher": {
		"exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case",
	},
	"envoy.type.matcher.v3.RegexMatcher": {"regex"},

	// Dynamic forward proxy and DNS cluster extensions.
	"envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig": {"dns_cache_config"},
	"envoy.extensions.common.dynamic_forward_proxy.v3.DnsCacheConfig": {
		"name", "dns_lookup_family", "dns_refresh_rate", "dns_min_refresh_rate",
		"dns_failure_refresh_rate", "host_ttl", "max_hosts",
	},
	"envoy.extensions.clusters.dns.v3.DnsCluster": {
		"dns_refresh_rate", "dns_failure_refresh_rate", "respect_dns_ttl", "dns_lookup_family",
	},
	"envoy.extensions.clusters.dns.v3.DnsCluster.RefreshRate": {"base_interval", "max_interval"},

	// ClusterLoadAssignment.
	"envoy.config.endpoint.v3.ClusterLoadAssignment": {"cluster_name", "endpoints", "policy"},
	"envoy.config.endpoint.v3.ClusterLoadAssignment.Policy": {
		"overprovisioning_factor",
	},
	"envoy.config.endpoint.v3.LocalityLbEndpoints": {
		"locality", "lb_endpoints", "load_balancing_weight", "priority",
	},
	"envoy.config.core.v3.Locality":       {"region", "zone", "sub_zone"},
	"envoy.config.endpoint.v3.LbEndpoint": {"endpoint", "health_status", "metadata", "load_balancing_weight"},
	"envoy.config.endpoint.v3.Endpoint":   {"address"},
	"envoy.config.core.v3.Address":        {"socket_address"},
	"envoy.config.core.v3.SocketAddress":  {"address", "port_value"},
	"envoy.config.core.v3.Metadata":       {"filter_metadata"},
}

// upstreamSupportedSet is upstreamSupported indexed for lookups.
var upstreamSupportedSet = indexAllowList(upstreamSupported)

// init merges upstreamSupported into the package-wide allow-list (read
// by checkSupported and TestSupportedComplete). Message types already
// listed there keep their entry: widening a shared type (DataSource's
// filename, for one) would let another translator accept a field it
// does not read. supportedSet was built from supported before any init
// func ran, so it is updated too.
func init() {
	for msg, fields := range upstreamSupported {
		if _, ok := supported[msg]; ok {
			continue
		}
		supported[msg] = fields
		supportedSet[msg] = upstreamSupportedSet[msg]
	}
}

// upstreamTx is the state of one Cluster, ClusterLoadAssignment or Secret
// translation: the options and the unsupported fields found so far. It
// is owned by the translating goroutine.
type upstreamTx struct {
	opts  TranslateOptions
	unsup []error
	// path is the walker's path buffer, reused so that walking a large
	// resource builds no strings unless it reports a field.
	path []byte
}

// report records an unsupported field: an error in strict mode, a
// Warning in lenient mode.
func (x *upstreamTx) report(path, msg string) {
	if x.opts.Lenient {
		if x.opts.OnUnsupported != nil {
			x.opts.OnUnsupported(Warning{Path: path, Message: msg})
		}
		return
	}
	if msg == ErrUnsupported.Error() {
		x.unsup = append(x.unsup, fmt.Errorf("%s: %w", path, ErrUnsupported))
	} else {
		x.unsup = append(x.unsup, fmt.Errorf("%s: %s: %w", path, msg, ErrUnsupported))
	}
}

// unsupported returns the strict-mode errors found so far, joined, or nil.
func (x *upstreamTx) unsupported() error { return errors.Join(x.unsup...) }

// check walks m against upstreamSupported, reporting every set field it
// does not list, and unknown fields, by path (relative to the translated
// resource; path is m's own). Fields are visited in declaration order.
func (x *upstreamTx) check(m protoreflect.Message, path string) {
	x.path = append(x.path[:0], path...)
	x.walk(m)
}

func (x *upstreamTx) walk(m protoreflect.Message) {
	allowed, ok := upstreamSupportedSet[m.Descriptor().FullName()]
	if !ok {
		return // a well-known leaf type
	}
	if len(m.GetUnknown()) > 0 {
		x.report(orRoot(string(x.path)), "unknown fields")
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		n := len(x.path)
		if n > 0 {
			x.path = append(x.path, '.')
		}
		x.path = append(x.path, fd.Name()...)
		switch {
		case !allowed[fd.Name()]:
			x.report(string(x.path), ErrUnsupported.Error())
		case fd.IsMap():
			// Values are Any (typed_extension_protocol_options) or Struct
			// (filter_metadata): read whole by the translator.
		case fd.IsList() && fd.Message() != nil:
			l := m.Get(fd).List()
			base := len(x.path)
			for j := range l.Len() {
				x.path = append(x.path, '[')
				x.path = strconv.AppendInt(x.path, int64(j), 10)
				x.path = append(x.path, ']')
				x.walk(l.Get(j).Message())
				x.path = x.path[:base]
			}
		case fd.Message() != nil:
			x.walk(m.Get(fd).Message())
		}
		x.path = x.path[:n]
	}
}

// pgvValidator is the PGV validation every Envoy message implements.
type pgvValidator interface{ ValidateAll() error }

// unpack unmarshals a typed_config, runs its PGV validation and checks it
// against upstreamSupported with path as its root. want lists the
// accepted message types; an Any of another type is an error naming the
// type, never dropped, since its absence would change the wire protocol
// or the discovery source.
func (x *upstreamTx) unpack(a *anypb.Any, path string, want ...proto.Message) (proto.Message, error) {
	if a == nil {
		return nil, fmt.Errorf("%s: missing", path)
	}
	for _, w := range want {
		if a.MessageName() != w.ProtoReflect().Descriptor().FullName() {
			continue
		}
		m := w.ProtoReflect().New().Interface()
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if v, ok := m.(pgvValidator); ok {
			if err := v.ValidateAll(); err != nil {
				return nil, fmt.Errorf("%s: invalid: %w", path, err)
			}
		}
		x.check(m.ProtoReflect(), path)
		return m, nil
	}
	return nil, fmt.Errorf("%s: type %s: %w", path, a.GetTypeUrl(), ErrUnsupported)
}
