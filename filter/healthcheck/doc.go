// Package healthcheck is Envoy's health check HTTP filter
// (envoy.filters.http.health_check): it answers the health checks that a
// load balancer or another proxy sends to this gateway, so that taking the
// gateway out of rotation is one admin call.
//
// A request whose path is Config.Path (and, optionally, whose headers match
// Config.Headers) is a health check. While Config.Failing reports true —
// wire it to the Gateway's HealthCheckFailed, which POST
// /healthcheck/fail sets — every health check is answered 503 with
// x-envoy-immediate-health-check-fail: true, the header Envoy uses to tell
// a downstream Envoy to fail this host at once. Otherwise the filter
// answers 200 itself (Envoy's default, pass_through_mode false) or, with
// PassThrough, lets the check through the chain to the upstream.
//
// Use:
//
//	hc, err := healthcheck.New(healthcheck.Config{Path: "/healthz", Failing: gw.HealthCheckFailed})
//	if err != nil {
//		return err
//	}
//	cfg.Listeners[0].HTTP.Filters = append(cfg.Listeners[0].HTTP.Filters, hc)
package healthcheck
