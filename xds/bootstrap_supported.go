package xds

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	// Linked in so that bootstrap files can name these types.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/resource_monitor/fixed_heap/v2alpha"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/proxy_protocol/v3"
)

// bootstrapSupported is the allow-list of the bootstrap's own fields, in
// the form of supported. The resources of static_resources (and of
// dynamic files) are checked by their translators against their own
// lists; the walk of the bootstrap skips them. Node is passed to the
// management server as it is.
var bootstrapSupported = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.bootstrap.v3.Bootstrap": {
		"node", "static_resources", "dynamic_resources", "admin", "overload_manager",
	},
	"envoy.config.core.v3.Node": {
		"id", "cluster", "metadata", "locality", "user_agent_name", "user_agent_version", "client_features",
	},
	"envoy.config.core.v3.Locality":                                    {"region", "zone", "sub_zone"},
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources":              {"listeners", "clusters", "secrets"},
	"envoy.config.bootstrap.v3.Bootstrap.DynamicResources":             {"lds_config", "cds_config", "ads_config"},
	"envoy.config.bootstrap.v3.Admin":                                  {"address"},
	"envoy.config.core.v3.Address":                                     {"socket_address"},
	"envoy.config.core.v3.SocketAddress":                               {"protocol", "address", "port_value"},
	"envoy.config.core.v3.AggregatedConfigSource":                      {},
	"envoy.config.core.v3.PathConfigSource":                            {"path", "watched_directory", "poll_interval"},
	"envoy.config.core.v3.WatchedDirectory":                            {"path"},
	"envoy.config.core.v3.GrpcService":                                 {"envoy_grpc"},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc":                       {"cluster_name"},
	"envoy.config.overload.v3.OverloadManager":                         {"refresh_interval", "resource_monitors", "actions"},
	"envoy.config.overload.v3.ResourceMonitor":                         {"name", "typed_config"},
	"envoy.config.overload.v3.OverloadAction":                          {"name", "triggers"},
	"envoy.config.overload.v3.Trigger":                                 {"name", "threshold"},
	"envoy.config.overload.v3.ThresholdTrigger":                        {"value"},
	"envoy.config.resource_monitor.fixed_heap.v2alpha.FixedHeapConfig": {"max_heap_size_bytes"},
	"envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig": {"max_heap_size_bytes"},
	"envoy.config.core.v3.ConfigSource": {
		"path", "path_config_source", "api_config_source", "ads",
		"initial_fetch_timeout", "resource_api_version",
	},
	"envoy.config.core.v3.ApiConfigSource": {
		"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only",
	},
}

var bootstrapSupportedSet = indexAllowList(bootstrapSupported)
