// Package cluster owns upstream clusters: a named set of endpoints, the
// load balancer that chooses among them and the connection pool that
// carries requests to them.
//
// A [Cluster] is long-lived. Discovery sources ([Config.Type]: static,
// strict and logical DNS, EDS through [Cluster.UpdateEndpoints], original
// destination, dynamic forward proxy) replace its endpoints in place, and
// every change feeds the [lb.Balancer]
// serially on the control path. [Cluster.Send], the data path, takes no
// lock: it picks an endpoint from the balancer's current immutable
// picker and sends the request over one shared http.Transport per
// cluster, tuned for proxying (no environment proxy, no transparent
// compression, a large keep-alive pool, HTTP/1.1, h2 over TLS or h2c
// prior knowledge per [Config.Protocol]). On plain-TCP HTTP/1.1
// clusters, requests without a body or upgrade skip the Transport: Send
// runs the exchange on the caller's goroutine over its own pool of
// keep-alive connections (one LIFO stack per endpoint), writing the head
// with one syscall and parsing the response with http.ReadResponse,
// which costs well under half the Transport's CPU and allocations.
//
// Failures come back as [*UpstreamError] whose [ErrorKind] the gateway
// maps to a status code and an Envoy response flag (UH, UF, UT, UC, UO).
// The request context carries the route timeout; when it expires the
// error wraps context.DeadlineExceeded, when the client goes away it
// wraps context.Canceled.
//
// Use:
//
//	c, err := cluster.New(cluster.Config{
//		Name:      "api",
//		Endpoints: []cluster.Endpoint{{Address: "10.0.0.1:8080"}, {Address: "10.0.0.2:8080"}},
//	})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	out := inbound.Clone(ctx) // the router strips hop-by-hop headers
//	resp, err := c.Send(&cluster.Request{HTTP: out})
//
// Circuit breakers ([Thresholds], per [RoutingPriority]) admit or refuse
// each Send with lock-free counters. Every endpoint's effective health is
// its discovery health, its active checks ([Config.HealthChecks], run by
// health.Monitor) and outlier detection ([Config.OutlierDetection]),
// which Send feeds with each attempt's status or error through per-
// endpoint atomics: healthy, unhealthy, or degraded (EDS [Degraded], or
// an HTTP check answered with x-envoy-degraded), which the balancer uses
// only when healthy endpoints run short. Changes are applied by one control goroutine per
// cluster, which republishes the balancer's endpoints. [Cluster.Stats]
// and [Cluster.EndpointStates] expose it all under Envoy's names, for
// the admin /clusters page and Prometheus. Retries and per-try timeouts
// build on Send and [Cluster.AllowRetry].
package cluster
