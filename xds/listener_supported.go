package xds

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	// Linked in so that typed_configs of these types can be unpacked (and
	// named in YAML bootstraps).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/proxy_protocol/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// listenerSupported is the allow-list of the Listener translator, in the
// form of supported: per message type, the fields it implements. Messages
// packed in Any fields (listener filters, transport sockets, network and
// HTTP filters, access loggers) are unpacked and checked against it too.
// The inline route configuration (HCM route_config) and the route
// package's matchers (HeaderMatcher, StringMatcher, FractionalPercent...)
// are checked against the route translator's entries in supported, which
// read them the same way.
//
// The listener translator walks this map, not the package-wide union, so
// that message types shared with the cluster translator (DataSource,
// ConfigSource, TransportSocket...) accept exactly the fields read here.
// TestListenerSupportedComplete checks it.
var listenerSupported = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.listener.v3.Listener": {
		"name", "address", "filter_chains", "default_filter_chain",
		"listener_filters", "listener_filters_timeout",
		"per_connection_buffer_limit_bytes",
	},
	"envoy.config.core.v3.Address":       {"socket_address"},
	"envoy.config.core.v3.SocketAddress": {"protocol", "address", "port_value"},
	"envoy.config.listener.v3.FilterChain": {
		"filter_chain_match", "filters", "transport_socket", "name",
	},
	"envoy.config.listener.v3.FilterChainMatch": {
		"destination_port", "server_names", "transport_protocol",
		"application_protocols", "source_prefix_ranges", "direct_source_prefix_ranges",
	},
	"envoy.config.core.v3.CidrRange":                                  {"address_prefix", "prefix_len"},
	"envoy.config.listener.v3.Filter":                                 {"name", "typed_config"},
	"envoy.config.listener.v3.ListenerFilter":                         {"name", "typed_config"},
	"envoy.config.core.v3.TransportSocket":                            {"name", "typed_config"},
	"envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector": {},
	"envoy.extensions.filters.listener.original_dst.v3.OriginalDst":   {},
	"envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol": {
		"allow_requests_without_proxy_protocol", "pass_through_tlvs",
	},
	// Empty only: INCLUDE_ALL, which is what the listener keeps.
	"envoy.config.core.v3.ProxyProtocolPassThroughTLVs":          {},
	"envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer": {},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": {
		"stat_prefix", "cluster", "idle_timeout", "max_connect_attempts",
	},

	// TLS termination.
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext": {
		"common_tls_context", "require_client_certificate",
	},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext": {
		"tls_params", "tls_certificates", "tls_certificate_sds_secret_configs", "alpn_protocols",
	},
	"envoy.extensions.transport_sockets.tls.v3.TlsParameters":   {"tls_minimum_protocol_version"},
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate":  {"certificate_chain", "private_key"},
	"envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig": {"name", "sds_config"},
	"envoy.config.core.v3.DataSource":                           {"filename", "inline_bytes", "inline_string"},

	// Discovery sources of RDS and SDS references: the management server.
	"envoy.config.core.v3.ConfigSource": {
		"ads", "self", "api_config_source", "initial_fetch_timeout", "resource_api_version",
	},
	"envoy.config.core.v3.AggregatedConfigSource": {},
	"envoy.config.core.v3.SelfConfigSource":       {"transport_api_version"},
	"envoy.config.core.v3.ApiConfigSource": {
		"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only",
	},
	"envoy.config.core.v3.GrpcService":           {"envoy_grpc"},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc": {"cluster_name"},

	// The HTTP connection manager.
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"codec_type", "stat_prefix", "rds", "route_config", "http_filters",
		"common_http_protocol_options", "http2_protocol_options",
		"server_name", "server_header_transformation",
		"max_request_headers_kb", "stream_idle_timeout", "request_timeout",
		"request_headers_timeout", "drain_timeout", "access_log",
		"use_remote_address", "xff_num_trusted_hops", "generate_request_id",
		"upgrade_configs", "normalize_path", "merge_slashes", "local_reply_config",
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds": {"config_source", "route_config_name"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": {
		"name", "typed_config", "is_optional",
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig": {
		"upgrade_type", "enabled",
	},
	"envoy.config.core.v3.HttpProtocolOptions": {
		"idle_timeout", "max_headers_count", "headers_with_underscores_action",
	},
	"envoy.config.core.v3.Http2ProtocolOptions": {
		"max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size",
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig": {"mappers", "body_format"},
	"envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper": {
		"filter", "status_code", "body", "body_format_override", "headers_to_add",
	},
	"envoy.config.core.v3.SubstitutionFormatString": {
		"text_format", "text_format_source", "json_format", "content_type",
	},
	"envoy.config.core.v3.HeaderValueOption": {"header", "append", "append_action"},
	"envoy.config.core.v3.HeaderValue":       {"key", "value"},

	// Access logs and the filters of access logs and local reply mappers.
	"envoy.config.accesslog.v3.AccessLog": {"name", "filter", "typed_config"},
	"envoy.config.accesslog.v3.AccessLogFilter": {
		"status_code_filter", "duration_filter", "runtime_filter", "and_filter",
		"or_filter", "header_filter", "response_flag_filter",
	},
	"envoy.config.accesslog.v3.StatusCodeFilter":                {"comparison"},
	"envoy.config.accesslog.v3.DurationFilter":                  {"comparison"},
	"envoy.config.accesslog.v3.ComparisonFilter":                {"op", "value"},
	"envoy.config.core.v3.RuntimeUInt32":                        {"default_value", "runtime_key"},
	"envoy.config.accesslog.v3.RuntimeFilter":                   {"runtime_key", "percent_sampled"},
	"envoy.config.accesslog.v3.AndFilter":                       {"filters"},
	"envoy.config.accesslog.v3.OrFilter":                        {"filters"},
	"envoy.config.accesslog.v3.HeaderFilter":                    {"header"},
	"envoy.config.accesslog.v3.ResponseFlagFilter":              {"flags"},
	"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog": {"log_format"},
	"envoy.extensions.access_loggers.stream.v3.StderrAccessLog": {"log_format"},
	"envoy.extensions.access_loggers.file.v3.FileAccessLog": {
		"path", "format", "json_format", "log_format",
	},

	// Built-in HTTP filters.
	"envoy.extensions.filters.http.router.v3.Router":            {},
	"envoy.extensions.filters.http.health_check.v3.HealthCheck": {"pass_through_mode", "headers"},
}

// routeNamespaces are the packages whose messages the listener walk checks
// against the route translator's entries in supported.
var routeNamespaces = []string{"envoy.config.route.v3.", "envoy.type.matcher.v3.", "envoy.type.v3."}

func delegatedToRoute(name protoreflect.FullName) bool {
	for _, ns := range routeNamespaces {
		if strings.HasPrefix(string(name), ns) {
			return true
		}
	}
	return false
}

var listenerSupportedSet = indexAllowList(listenerSupported)

// init merges listenerSupported and bootstrapSupported into the
// package-wide allow-list, which TestSupportedComplete checks. Message
// types already listed there keep their entry (the walks of this part use
// their own maps), and supportedSet, built before any init func ran, is
// updated too.
func init() {
	for _, list := range []map[protoreflect.FullName][]protoreflect.Name{listenerSupported, bootstrapSupported} {
		set := indexAllowList(list)
		for msg, fields := range list {
			if _, ok := supported[msg]; ok {
				continue
			}
			supported[msg] = fields
			supportedSet[msg] = set[msg]
		}
	}
}

// walkAllowed is checkSupported over the allow-list set: it reports every
// set field of m the list does not name, and unknown fields, with their
// paths, in declaration order. Messages of the route namespaces that set
// does not list are checked with checkSupported (the route translator's
// entries); any other unlisted message is a leaf read whole. Map values
// are not descended into.
func walkAllowed(set map[protoreflect.FullName]map[protoreflect.Name]bool, m protoreflect.Message, path string, report func(path, msg string)) {
	walkAllowList(set, m, path, report, func(m protoreflect.Message, path string) {
		if delegatedToRoute(m.Descriptor().FullName()) {
			checkSupported(m, path, report)
		}
	})
}
