package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrorKind classifies an upstream failure; the gateway's error handler
// maps kinds to status codes and Envoy response flags.
type ErrorKind int

const (
	// NoHealthyUpstream: the balancer had no endpoint (503, flag UH). The
	// error wraps lb.ErrNoEndpoint, or ErrClosed after Close.
	NoHealthyUpstream ErrorKind = iota + 1
	// ConnectFailure: dialing, the connect timeout or the TLS handshake
	// failed (503, flag UF).
	ConnectFailure
	// Timeout: the request context's deadline, which carries the route
	// timeout, passed before response headers arrived (504, flag UT). The
	// error wraps context.DeadlineExceeded.
	Timeout
	// Reset: the connection was reset or closed before response headers
	// arrived, or the stream was reset (503, flag UC).
	Reset
	// Overflow: a circuit breaker refused the request (503, flag UO):
	// the error wraps ErrPendingOverflow, ErrRequestOverflow or the
	// connection pool's max-connections error.
	Overflow
	// ProtocolError: the upstream sent something that is not valid HTTP
	// (502).
	ProtocolError
	// Canceled: the request context was canceled, usually because the
	// downstream client went away (499, flag DC). The error wraps
	// context.Canceled.
	Canceled
)

// String returns the kind's name, e.g. "ConnectFailure".
func (k ErrorKind) String() string {
	switch k {
	case NoHealthyUpstream:
		return "NoHealthyUpstream"
	case ConnectFailure:
		return "ConnectFailure"
	case Timeout:
		return "Timeout"
	case Reset:
		return "Reset"
	case Overflow:
		return "Overflow"
	case ProtocolError:
		return "ProtocolError"
	case Canceled:
		return "Canceled"
	}
	return "ErrorKind(" + strconv.Itoa(int(k)) + ")"
}

// ErrClosed is wrapped by the error Send returns after Close.
var ErrClosed = errors.New("cluster closed")

// UpstreamError is the error Send returns. It is immutable once returned.
type UpstreamError struct {
	// Cluster is the cluster's name.
	Cluster string
	// Endpoint is the address of the endpoint tried; empty when none was
	// picked.
	Endpoint string
	// Kind classifies the failure.
	Kind ErrorKind
	// Err is the underlying error.
	Err error
}

// Error returns e.g. `cluster "api": endpoint 127.0.0.1:8080: ConnectFailure: dial tcp ...`.
func (e *UpstreamError) Error() string {
	var b strings.Builder
	b.WriteString("cluster ")
	b.WriteString(strconv.Quote(e.Cluster))
	if e.Endpoint != "" {
		b.WriteString(": endpoint ")
		b.WriteString(e.Endpoint)
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.String())
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *UpstreamError) Unwrap() error { return e.Err }

// connectError marks errors raised while connecting (dial, connect
// timeout, TLS handshake); http.Transport passes dial errors through.
type connectError struct{ err error }

func (e *connectError) Error() string { return "connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// connectTimeoutError reports that ConnectTimeout passed. It deliberately
// does not wrap context.DeadlineExceeded, which callers read as the
// route timeout.
type connectTimeoutError struct{ d time.Duration }

func (e *connectTimeoutError) Error() string { return "timeout after " + e.d.String() }

// Timeout reports true, for net.Error.
func (e *connectTimeoutError) Timeout() bool { return true }

// Temporary reports true, for net.Error.
func (e *connectTimeoutError) Temporary() bool { return true }

// classify maps a RoundTrip error to a kind. ctxErr is the request
// context's error, checked first: when the caller's deadline or
// cancellation fired, that is the cause whatever the transport says.
func classify(err, ctxErr error) ErrorKind {
	switch {
	case errors.Is(ctxErr, context.DeadlineExceeded):
		return Timeout
	case ctxErr != nil:
		return Canceled
	}
	if k, ok := kindOf(err); ok { // circuit breakers, DNS cache, middleware
		return k
	}
	var ce *connectError
	if errors.As(err, &ce) {
		return ConnectFailure
	}
	// TLS failures can only surface here if the transport handshakes by
	// itself; kept for safety.
	var (
		rh tls.RecordHeaderError
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ae tls.AlertError
		oe *net.OpError
	)
	switch {
	case errors.As(err, &rh), errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ae):
		return ConnectFailure
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, net.ErrClosed):
		return Reset
	case errors.As(err, &oe):
		return Reset
	}
	msg := err.Error()
	if strings.Contains(msg, "malformed") || strings.Contains(msg, "invalid") ||
		strings.Contains(msg, "bogus") || strings.Contains(msg, "too large") {
		return ProtocolError
	}
	// Everything else (h2 stream resets, GOAWAY, server closed idle
	// connection) is a connection-level termination.
	return Reset
}

// wrapCtxErr makes sure errors.Is(result, ctxErr) holds: http.Transport
// sometimes reports a cancellation with its own error value.
func wrapCtxErr(err, ctxErr error) error {
	if ctxErr == nil || errors.Is(err, ctxErr) {
		return err
	}
	return &ctxError{err: err, ctx: ctxErr}
}

// ctxError joins a transport error with the context error that caused it.
type ctxError struct{ err, ctx error }

func (e *ctxError) Error() string   { return e.ctx.Error() + ": " + e.err.Error() }
func (e *ctxError) Unwrap() []error { return []error{e.ctx, e.err} }

// requestCtxErr returns the request context's error that caused err, or
// nil. The synchronous HTTP/1.1 path sets the context's deadline on the
// connection, which can fire just before the context's own timer marks
// it done: a connection deadline error on a request with a deadline is
// the route timeout.
//
// hasDeadline reports a deadline given outside the context
// (Request.Deadline).
func requestCtxErr(ctx context.Context, hasDeadline bool, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if hasDeadline && errors.Is(err, context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if _, ok := ctx.Deadline(); ok || hasDeadline {
			return context.DeadlineExceeded
		}
	}
	return nil
}
