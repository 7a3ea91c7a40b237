// Package lb owns load balancing: choosing which endpoint of a cluster
// takes a request.
//
// It follows grpc-go's split between control and data paths. A [Balancer]
// receives endpoint updates serially from its cluster and publishes an
// immutable [Picker]; requests call [Picker.Pick] concurrently, without
// locks, and Pick never waits: it returns [ErrNoEndpoint] when no endpoint
// can take the request. A [PickResult] may carry a Done callback, bound
// once per endpoint, that feeds least-request counters and passive health.
//
// [NewRoundRobin] is the default balancer. Other policies (least request,
// ring hash, Maglev, priority and locality failover, slow start) are new
// Balancer implementations behind the same interfaces.
//
// Use:
//
//	b := lb.NewRoundRobin()
//	b.Update([]lb.Endpoint{
//		{Address: "10.0.0.1:8080", Healthy: true},
//		{Address: "10.0.0.2:8080", Healthy: true},
//	})
//	res, err := b.Picker().Pick(lb.PickInfo{})
//	if err != nil {
//		return err // lb.ErrNoEndpoint: answer 503
//	}
//	target := res.Endpoint.Address
package lb
