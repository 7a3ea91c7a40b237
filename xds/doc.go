// Package xds translates Envoy v3 configuration resources into Portico's
// plain config types, so that the same translator serves a static bootstrap
// file, file-based dynamic configuration and an xDS (ADS) stream.
//
// This first piece owns the RouteConfiguration (RDS) resource:
// TranslateRouteConfiguration turns an envoy.config.route.v3.RouteConfiguration
// into a route.Config. It runs the protos' own validation, then rejects every
// set field that Portico does not implement with the field's Envoy path in
// the error, e.g.
//
//	route configuration "local": virtual_hosts[0].routes[2].route.cluster_specifier_plugin: not supported
//
// Nothing is silently ignored: TranslateOptions.Lenient turns those errors
// into Warnings for callers that prefer to serve a partial configuration.
//
// Use:
//
//	var rc routev3.RouteConfiguration
//	if err := protojson.Unmarshal(data, &rc); err != nil {
//		return err
//	}
//	cfg, err := xds.TranslateRouteConfiguration(&rc, xds.TranslateOptions{})
//	if err != nil {
//		return err
//	}
//	table, err := route.New(cfg)
//
// Per-filter configuration (typed_per_filter_config) is carried as
// *anypb.Any in route.Rule.FilterConfig, keyed by filter name, for the
// filters to decode.
//
// The package holds no state; its functions are safe for concurrent use.
package xds
