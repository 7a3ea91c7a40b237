package health

import "context"

// Checker probes one endpoint once. Check returns nil when the endpoint
// passed the probe and an error describing the failure otherwise.
//
// A Monitor calls Check from one goroutine per endpoint, so a Checker is
// called concurrently for different addresses and must be safe for that.
// ctx carries the check timeout ([Config.Timeout]) and is canceled when
// the endpoint is removed or the Monitor closes; Check must return
// promptly once it is done.
type Checker interface {
	Check(ctx context.Context, address string) error
}

// CheckerFunc adapts an ordinary function to the [Checker] interface.
type CheckerFunc func(ctx context.Context, address string) error

// Check calls f(ctx, address).
func (f CheckerFunc) Check(ctx context.Context, address string) error { return f(ctx, address) }

var _ Checker = CheckerFunc(nil)

// idleCloser is implemented by checkers that keep connections between
// checks; a Monitor detects it once, at construction, and calls it on
// Close.
type idleCloser interface {
	CloseIdleConnections()
}

// validator is implemented by checkers whose fields can be wrong; Config.Validate
// calls it.
type validator interface {
	Validate() error
}

// checkName names a checker in [EndpointStatus.Check].
func checkName(c Checker) string {
	switch c.(type) {
	case *HTTP:
		return "http"
	case *TCP:
		return "tcp"
	case *GRPC:
		return "grpc"
	default:
		return "custom"
	}
}
