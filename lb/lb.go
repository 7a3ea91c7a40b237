package lb

import (
	"errors"
	"net/http"
	"time"
)

// ErrNoEndpoint is returned by Pick when no endpoint can take the request.
// Pick never waits for one to appear.
var ErrNoEndpoint = errors.New("lb: no endpoint available")

// Endpoint is the load balancer's view of an upstream endpoint. Pickers
// hand out pointers into their own immutable slices; callers must not
// modify them.
type Endpoint struct {
	// Address is host:port.
	Address string
	// Weight is the load-balancing weight; zero means 1.
	Weight uint32
	// Priority is the priority level; 0 is the highest. Lower levels take
	// the traffic that higher ones cannot, by Envoy's priority load (see
	// the package documentation).
	Priority uint32
	// Locality names the endpoint's locality (region/zone/sub-zone).
	Locality string
	// LocalityWeight is the weight of the endpoint's locality within its
	// priority level (Envoy's LocalityLbEndpoints.load_balancing_weight);
	// all endpoints of a locality should carry the same value, and the
	// first non-zero one seen counts. Locality-weighted balancing is on
	// when any endpoint has a non-zero LocalityWeight; localities whose
	// weight is zero then take no traffic, except from round robin, least
	// request and random in panic mode, which ignore localities as Envoy
	// does. (Envoy turns it on with locality_weighted_lb_config; a
	// translator leaves LocalityWeight zero when that is absent.)
	LocalityWeight uint32
	// Healthy is false for endpoints known to be unhealthy. Unhealthy
	// endpoints take traffic only when their priority level is in panic.
	Healthy bool
	// Degraded marks a usable endpoint as degraded (Envoy's degraded
	// hosts): it can serve, but should take traffic only when the healthy
	// endpoints cannot carry it all. Degraded endpoints count toward their
	// level's availability and panic threshold but are picked only for the
	// degraded share of the priority load (see the package
	// documentation). It applies only together with Healthy: an endpoint
	// with Healthy false is unhealthy, degraded or not, as Envoy's failure
	// flags outrank its degraded ones.
	Degraded bool
}

// Balancer is the control side of load balancing. It receives endpoint
// updates serially (never concurrently) and publishes immutable Pickers.
// Picker is called on every request, concurrently with itself and with
// Update, so it must be a lock-free read (an atomic.Pointer load). A
// balancer that reacts to other events (health, outlier ejection, load
// reports) publishes a new picker itself; callers never cache Picker's
// result across requests.
type Balancer interface {
	// Update replaces the endpoint set. The slice is owned by the balancer
	// after the call.
	Update(endpoints []Endpoint)
	// Picker returns the current picker; it never returns nil.
	Picker() Picker
}

// Picker is the data side of load balancing: an immutable snapshot that
// requests read concurrently. Pick must not block.
type Picker interface {
	Pick(info PickInfo) (PickResult, error)
}

// PickerFunc adapts a function to Picker.
type PickerFunc func(info PickInfo) (PickResult, error)

// Pick implements Picker.
func (f PickerFunc) Pick(info PickInfo) (PickResult, error) { return f(info) }

// PickInfo is what a picker may look at.
type PickInfo struct {
	// Request is the outgoing request.
	Request *http.Request
	// Hash is the request's hash from the route's hash policy, valid when
	// HasHash is set. Ring hash and Maglev use it to choose the priority
	// level and the endpoint; the other balancers ignore it.
	Hash    uint64
	HasHash bool
	// Exclude is an endpoint to avoid when others are available (the
	// previously tried one, for retries); nil for none. Only its Address
	// is compared, so a fresh &Endpoint{Address: addr} will do.
	Exclude *Endpoint
}

// PickResult is the chosen endpoint and an optional completion callback.
type PickResult struct {
	Endpoint *Endpoint
	// Done, when not nil, must be called once when the request to the
	// endpoint has finished. It feeds least-request counters and passive
	// health. Pickers bind it once per endpoint, not per request.
	Done func(DoneInfo)
}

// DoneInfo reports how a request to a picked endpoint ended.
type DoneInfo struct {
	// Err is the transport error, if any.
	Err error
	// Status is the upstream status code, 0 when no response arrived.
	Status int
	// Duration is the time from pick to done.
	Duration time.Duration
}

// Builder returns a new Balancer; clusters call it once each.
type Builder func() Balancer
