package filter

import (
	"context"
	"errors"
	"net/http"
)

// Filter is an HTTP filter. It has a name (used in logs, stats and for
// per-route configuration) and implements one or more of the phase
// interfaces: RequestFilter, ResponseFilter, RequestBodyFilter,
// ResponseBodyFilter, DoneFilter. A Chain discovers the phases once, when
// it is built.
//
// A Filter is shared by every request that goes through its chain and must
// be safe for concurrent use; per-request state lives on the Exchange.
type Filter interface {
	Name() string
}

// RequestFilter runs on the request headers, in declaration order. It may
// edit x.Out, set the target cluster, read the whole body through x.Body,
// or answer locally by returning a *ReplyError.
type RequestFilter interface {
	OnRequest(ctx context.Context, x *Exchange) error
}

// ResponseFilter runs on the response headers (x.Resp), in reverse
// declaration order, before any byte of the response is written downstream.
// It runs for local replies too, for every filter whose request phase ran.
type ResponseFilter interface {
	OnResponse(ctx context.Context, x *Exchange) error
}

// RequestBodyFilter sees the request body chunk by chunk as it is read by
// the upstream transport, in declaration order. The transport may read the
// body on its own goroutine, concurrently with the response phases of the
// same exchange, so OnRequestBody should touch only the chunk, HoldBack and
// its own synchronised state. A body already buffered with Exchange.Body
// reaches it as a single last chunk, and stays replayable for retries.
type RequestBodyFilter interface {
	OnRequestBody(ctx context.Context, x *Exchange, c *Chunk) error
}

// ResponseBodyFilter sees the response body chunk by chunk as it arrives
// from upstream, in reverse declaration order. It may rewrite c.Data, or hold
// bytes back with Exchange.HoldBack (bounded by the route's buffer limit).
type ResponseBodyFilter interface {
	OnResponseBody(ctx context.Context, x *Exchange, c *Chunk) error
}

// DoneFilter runs once per exchange after the response has been written
// or the exchange failed, in reverse declaration order. It sees the final
// x.Err, flags and timings. Access logs, stats and usage accounting live
// here.
type DoneFilter interface {
	OnDone(ctx context.Context, x *Exchange)
}

// RouteConfigurable is implemented by filters that accept per-route
// configuration (Envoy's typed_per_filter_config). ForRoute is called once,
// when a route's chain is compiled, with the value the route carries for the
// filter's name; it returns the filter to use on that route.
type RouteConfigurable interface {
	ForRoute(config any) (Filter, error)
}

// Disabled, given as a route's per-filter configuration, removes the filter
// from that route's chain (Envoy's FilterConfig disabled: true).
var Disabled = disabled{}

type disabled struct{}

// Chunk is a piece of a body travelling through body filters.
type Chunk struct {
	// Data is valid only during the call. A filter may rewrite it, replace
	// it with a new slice, or set it to nil (after holding the bytes back
	// with Exchange.HoldBack).
	Data []byte
	// Flush asks for a flush downstream after this chunk. The proxy sets it
	// for streams (event streams, gRPC, unknown length).
	Flush bool
	// EOS marks the last chunk of the body.
	EOS bool
	// Trailer holds trailers that arrive with the last chunk, if any.
	Trailer http.Header

	hold *holdState // the side's hold-back state, set by the chain
}

// Func adapters: every one-method phase interface has one.

// RequestFunc adapts a function to a Filter with a request phase.
type RequestFunc struct {
	FilterName string
	Func       func(ctx context.Context, x *Exchange) error
}

// Name implements Filter.
func (f RequestFunc) Name() string { return f.FilterName }

// OnRequest implements RequestFilter.
func (f RequestFunc) OnRequest(ctx context.Context, x *Exchange) error { return f.Func(ctx, x) }

// ResponseFunc adapts a function to a Filter with a response phase.
type ResponseFunc struct {
	FilterName string
	Func       func(ctx context.Context, x *Exchange) error
}

// Name implements Filter.
func (f ResponseFunc) Name() string { return f.FilterName }

// OnResponse implements ResponseFilter.
func (f ResponseFunc) OnResponse(ctx context.Context, x *Exchange) error { return f.Func(ctx, x) }

// RequestBodyFunc adapts a function to a Filter with a request body phase.
type RequestBodyFunc struct {
	FilterName string
	Func       func(ctx context.Context, x *Exchange, c *Chunk) error
}

// Name implements Filter.
func (f RequestBodyFunc) Name() string { return f.FilterName }

// OnRequestBody implements RequestBodyFilter.
func (f RequestBodyFunc) OnRequestBody(ctx context.Context, x *Exchange, c *Chunk) error {
	return f.Func(ctx, x, c)
}

// ResponseBodyFunc adapts a function to a Filter with a response body phase.
type ResponseBodyFunc struct {
	FilterName string
	Func       func(ctx context.Context, x *Exchange, c *Chunk) error
}

// Name implements Filter.
func (f ResponseBodyFunc) Name() string { return f.FilterName }

// OnResponseBody implements ResponseBodyFilter.
func (f ResponseBodyFunc) OnResponseBody(ctx context.Context, x *Exchange, c *Chunk) error {
	return f.Func(ctx, x, c)
}

// DoneFunc adapts a function to a Filter with a done phase.
type DoneFunc struct {
	FilterName string
	Func       func(ctx context.Context, x *Exchange)
}

// Name implements Filter.
func (f DoneFunc) Name() string { return f.FilterName }

// OnDone implements DoneFilter.
func (f DoneFunc) OnDone(ctx context.Context, x *Exchange) { f.Func(ctx, x) }

var (
	_ RequestFilter      = RequestFunc{}
	_ ResponseFilter     = ResponseFunc{}
	_ RequestBodyFilter  = RequestBodyFunc{}
	_ ResponseBodyFilter = ResponseBodyFunc{}
	_ DoneFilter         = DoneFunc{}
)

// ErrBufferLimit is returned (wrapped) when held-back or buffered body bytes
// exceed the route's buffer limit. On the request side it answers 413.
var ErrBufferLimit = errors.New("body exceeds buffer limit")
