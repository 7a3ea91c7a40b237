package health

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

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

// DegradedChecker is implemented by checkers whose probe can pass and yet
// report the endpoint degraded: able to serve, but to be used only when
// healthy endpoints run short (Envoy's degraded_active_hc). [HTTP] is one:
// an expected status with the [DegradedHeader] header is degraded. A
// [Monitor] detects the interface once, in [NewMonitor], and calls
// CheckDegraded instead of Check; the rules of Check apply.
type DegradedChecker interface {
	// CheckDegraded probes address once, like Check, and reports whether
	// the endpoint declared itself degraded. degraded is ignored when err
	// is not nil: a failed check is a failure, degraded or not.
	CheckDegraded(ctx context.Context, address string) (degraded bool, err error)
}

// DegradedCheckerFunc adapts an ordinary function to both [Checker] and
// [DegradedChecker].
type DegradedCheckerFunc func(ctx context.Context, address string) (degraded bool, err error)

// Check calls f(ctx, address) and drops the degraded result.
func (f DegradedCheckerFunc) Check(ctx context.Context, address string) error {
	_, err := f(ctx, address)
	return err
}

// CheckDegraded calls f(ctx, address).
func (f DegradedCheckerFunc) CheckDegraded(ctx context.Context, address string) (bool, error) {
	return f(ctx, address)
}

var (
	_ Checker         = DegradedCheckerFunc(nil)
	_ DegradedChecker = DegradedCheckerFunc(nil)
)

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

// networkFailure reports whether err means the endpoint could not be
// reached or the connection broke, rather than an answer that failed the
// check (Envoy's network_failure against failure).
func networkFailure(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, errClosedEarly),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return true
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			return true
		}
	}
	return false
}
