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
// [NewRoundRobin] is the default balancer. The others follow Envoy's
// policies and defaults:
//
//   - [NewLeastRequest]: power of two choices over active request counts,
//     active_request_bias when weights differ (LEAST_REQUEST).
//   - [NewRandom]: uniform or weighted random, no shared state (RANDOM).
//   - [NewRingHash]: consistent hashing of [PickInfo.Hash] on a ketama
//     ring hashed with xxHash64 (RING_HASH).
//   - [NewMaglev]: consistent hashing through a Maglev lookup table,
//     O(1) picks (MAGLEV).
//
// All of them balance over the healthy endpoints of the highest priority
// level that has any. Locality failover and slow start would be further
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
