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
//   - [NewRoundRobin]: in turn, weighted by Envoy's earliest-deadline-first
//     schedule, precomputed per update so a pick is O(1) (ROUND_ROBIN).
//   - [NewLeastRequest]: power of two choices over active request counts,
//     active_request_bias when weights differ (LEAST_REQUEST).
//   - [NewRandom]: uniform or weighted random, no shared state (RANDOM).
//   - [NewRingHash]: consistent hashing of [PickInfo.Hash] on a ketama
//     ring hashed with xxHash64 (RING_HASH).
//   - [NewMaglev]: consistent hashing through a Maglev lookup table,
//     O(1) picks (MAGLEV).
//
// Each has a variant taking [Options] ([NewRoundRobinWith] and so on), the
// configuration all of them share; the plain constructors use its zero
// value, Envoy's defaults, and fit [Builder].
//
// # Choosing the set, then the endpoint
//
// Every pick has two steps. The first is shared by all balancers and
// follows Envoy's zone-aware load balancer base:
//
//  1. Priority level and availability. An endpoint is healthy, degraded
//     ([Endpoint.Degraded]: usable, but only when healthy capacity runs
//     short) or unhealthy. Each level's healthy availability is
//     min(100 %, overprovisioning factor × healthy share), with Envoy's
//     factor 1.4 by default, and its degraded availability the same with
//     the degraded share. Healthy load is handed out first, in priority
//     order, as the levels' healthy availability allows: a level 50 %
//     healthy keeps 70 % and the next takes the rest; a level with no
//     healthy endpoint takes none while another can. What healthy
//     endpoints of all levels cannot carry goes to degraded endpoints,
//     again in priority order, so degraded endpoints take nothing while
//     healthy capacity suffices, even at a lower level. When all the
//     availabilities add up to less than 100 % the loads are normalised
//     by their sum. A request then goes to the healthy or the degraded
//     endpoints of the level its draw landed on (Envoy's healthy and
//     degraded priority loads).
//  2. Panic. When the availabilities add up to less than 100 % and a
//     level's healthy plus degraded share is below the panic threshold
//     (50 % by default, 0 disables it), that level balances over all of
//     its endpoints, healthy, degraded or not, for both of its loads.
//     When every level is in panic, load is spread over levels by
//     endpoint count. With panic disabled and nothing healthy or
//     degraded, Pick returns ErrNoEndpoint.
//  3. Locality. When any endpoint carries an [Endpoint.LocalityWeight], a
//     locality of the chosen level is drawn by its effective weight: its
//     weight times min(1, overprovisioning factor × its healthy share),
//     or its degraded share for the degraded load. Levels in panic skip
//     this step.
//
// The second step is the algorithm's own, within the chosen set of
// endpoints. Round robin and least request apply slow start there: an
// endpoint that joined or turned healthy within [SlowStartConfig.Window]
// has its weight scaled down, ramping up as in Envoy; the balancer
// republishes its picker on a timer while any endpoint ramps, so Pick
// stays a lock-free read; degraded endpoints are not ramped, as in Envoy.
// Ring hash and Maglev choose the level with the request hash instead of
// a random draw, keep one table per level and availability, and fold
// locality weights into the table rather than drawing a locality, so that
// keys keep their endpoints. (Envoy's ring hash and Maglev build their
// tables from healthy hosts only, so the degraded load of a level lands
// on its healthy hosts, or on nothing; here it reaches the degraded ones.)
//
// [PickInfo.Exclude] (the endpoint a retry should avoid) is compared by
// address. It is avoided within the chosen set when the set has other
// endpoints, and by moving to another locality, level or availability
// that takes traffic when the set holds nothing else.
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
//
// Balancers with slow start own a timer; [RoundRobin.Close] and
// [LeastRequest.Close] stop it. Their Close methods satisfy io.Closer, so
// an owner can detect the capability once when it builds the balancer.
package lb
