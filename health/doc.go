// Package health owns active health checking: probing each endpoint of a
// cluster on a timer and deciding, with Envoy's thresholds, whether it is
// healthy.
//
// A [Checker] probes one address once. [HTTP], [TCP] and [GRPC] follow
// Envoy's http_health_check, tcp_health_check and grpc_health_check;
// [CheckerFunc] adapts any function.
//
// A [Monitor] runs one goroutine per endpoint of one cluster. Its owner
// feeds it addresses serially with [Monitor.SetEndpoints], which starts
// and joins those goroutines, and learns of changes through the onChange
// callback given to [NewMonitor]; the data path may read [Monitor.Status]
// without locking. The first check of an endpoint runs at once and its
// result decides (Unknown becomes Healthy or Unhealthy); after that a
// status flips only after UnhealthyThreshold consecutive failures or
// HealthyThreshold consecutive successes. Check intervals, edge intervals,
// jitter and the slower no-traffic interval follow Envoy; see [Config].
//
// A check can also pass and find the endpoint degraded: able to serve, but
// to be used only when healthy endpoints run short. [HTTP] reports it when
// the response carries [DegradedHeader] (Envoy's x-envoy-degraded); any
// checker can by implementing [DegradedChecker]. The flag is kept per
// endpoint ([EndpointStatus.Degraded], [Monitor.Degraded]) beside its
// Status, and set or cleared by each passing check.
//
// [Config.OnCheck] sees every check's result, not only changes, and
// [Monitor.Stats] counts checks as Envoy's health_check.* stats do
// (attempt, success, failure, network_failure).
//
// The package does not import cluster: a cluster owns a Monitor and maps
// [Status] onto its endpoints' health.
//
// Use:
//
//	m, err := health.NewMonitor("api", health.Config{
//		Checker:  &health.HTTP{Path: "/healthz"},
//		Interval: 5 * time.Second,
//	}, func(ev health.Event) {
//		updates <- ev // must not block; the owner applies it serially
//	})
//	if err != nil {
//		return err
//	}
//	defer m.Close()
//	m.SetEndpoints([]string{"10.0.0.1:8080", "10.0.0.2:8080"})
//	m.SetTraffic(true) // on the cluster's first request
package health
