// Package xds runs Envoy v3 configuration: it translates Envoy's resources
// into Portico's plain config types and drives a Gateway from a bootstrap
// file, from files of resources, or from a management server.
//
// # Translation
//
// A Translator turns each resource into Portico configuration:
// Translator.Listener (filter chains and their matches, downstream TLS,
// the HTTP connection manager with its HTTP filters resolved through a
// FilterRegistry keyed by typed_config type URL, inline or RDS routes),
// Translator.RouteConfiguration (see TranslateRouteConfiguration),
// Translator.Cluster (every discovery type Portico has, load-balancing
// policies, circuit breakers, outlier detection, health checks, upstream
// TLS, HTTP/2 options), Translator.Endpoints (ClusterLoadAssignment) and
// Translator.Secret (SDS). Each returns the Refs it depends on (RDS, EDS
// and SDS names), which is what a client subscribes to and warms on.
//
// Every translation first runs the protos' own validation (ValidateAll),
// then rejects every set field that Portico does not implement with the
// field's Envoy path in the error, e.g.
//
//	route configuration "local": virtual_hosts[0].routes[2].route.cluster_specifier_plugin: not supported
//
// Nothing is silently ignored: TranslateOptions.Lenient turns those errors
// into Warnings for callers that prefer to serve a partial configuration.
// An HTTP filter whose type URL is not registered rejects the listener
// unless it is marked is_optional; applications register their own
// filters with FilterRegistry.Register.
//
// # Bootstrap
//
// LoadBootstrap reads an Envoy bootstrap (YAML or JSON): static
// resources, dynamic_resources (ADS, LDS/CDS config sources,
// path_config_source files reloaded on change), node, admin and the
// overload manager's heap actions. Bootstrap.NewGateway and Bootstrap.Run
// build and run the gateway; examples/envoy is the Envoy-compatible
// command.
//
// # Client
//
// Client speaks xDS to a management server such as go-control-plane's:
// aggregated (ADS) or per-type streams, state of the world or delta. It
// ACKs and NACKs every response (error_detail carries the translator's
// path-naming error), sends the latest nonce on every request, keeps
// versions across reconnects (initial_resource_versions on delta),
// reconnects with jittered backoff, runs does-not-exist timers, warms
// clusters until their endpoints arrive and listeners until their routes
// do, keeps the last good version of every resource, paces the NACK loop
// go-control-plane runs, and applies updates through the Gateway's
// per-resource API in make-before-break order, so requests in flight are
// never dropped. Per-resource state shows on the admin /config_dump, and
// ClientConfig.OnNACK reports every rejection.
//
// Use:
//
//	b, err := xds.LoadBootstrap("envoy.yaml", xds.BootstrapOptions{})
//	if err != nil {
//		return err // names the unsupported field by its path
//	}
//	gw, err := b.NewGateway()
//	if err != nil {
//		return err
//	}
//	return b.Run(ctx, gw)
//
// Translators and the registry are safe for concurrent use.
package xds
