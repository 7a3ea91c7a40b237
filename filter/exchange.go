package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/route"
)

// DefaultBufferLimit is the per-exchange limit on buffered or held-back
// body bytes when the route sets none: 1 MiB, Envoy's default connection
// buffer limit.
const DefaultBufferLimit = 1 << 20

// Exchange is one request/response exchange as it travels through a chain.
//
// An Exchange belongs to the goroutine serving the request; filters may
// read and write it only from their phase calls. It must not be retained
// after OnDone returns.
type Exchange struct {
	// In is the request as received, after the connection manager's
	// sanitising (hop-by-hop headers removed, X-Forwarded-* and
	// x-request-id set). Filters must treat it as read-only.
	In *http.Request
	// Out is the request as it will be sent upstream. Request filters edit
	// it. It starts as a copy of In with its own Header and URL.
	Out *http.Request
	// Resp is the upstream response (or the local reply) and is set before
	// response phases run. Response filters may edit its status and headers.
	Resp *http.Response
	// Err is the terminal error of the exchange, if any, visible in OnDone.
	Err error

	// Route is the matched route; nil when none matched.
	Route *route.Route
	// Cluster is the name of the target cluster. The router sets it from
	// the route's action unless a request filter set it first.
	Cluster string
	// Endpoint is the address of the upstream endpoint of the last attempt.
	Endpoint string
	// Attempts is the number of upstream attempts made.
	Attempts int
	// Flags are the Envoy response flags of the exchange.
	Flags Flags
	// Status is the status code written downstream (0 until written).
	Status int
	// Details is Envoy's %RESPONSE_CODE_DETAILS%: why this status was sent.
	Details string

	// Timings.
	Start         time.Time // request headers received
	UpstreamStart time.Time // first upstream attempt started
	ResponseStart time.Time // response headers written downstream
	End           time.Time // exchange finished
	// RequestEnd is when the last byte of the request was received from
	// downstream: Start for a request without a body, zero when the body
	// was not read to its end. Like BytesReceived, it is settled when the
	// exchange finishes, before the done phases.
	RequestEnd time.Time

	// BytesReceived and BytesSent count body bytes from and to downstream
	// (and the bytes of an upgraded connection). BytesReceived counts the
	// request body as it is read, by filters or by the upstream transport;
	// it is settled when the exchange finishes, before the done phases.
	BytesReceived int64
	BytesSent     int64

	// BufferLimit bounds Body and HoldBack, in bytes; zero means
	// DefaultBufferLimit.
	BufferLimit int64

	values       []keyValue
	bodyRead     bool
	body         []byte
	routeCleared bool

	// reached is the number of filter positions whose request phase was
	// entered (or passed); response, body and done phases run only for
	// positions below it.
	reached int
	// abort asks the outermost Serve or Handler to abort the stream with
	// http.ErrAbortHandler once the done phases have run.
	abort bool
	// upgraded is set once the chain has hijacked the downstream connection
	// for a protocol switch.
	upgraded bool
	// respHold and respChunk serve the response body phases; they live on
	// the Exchange so that streaming through body filters does not allocate
	// per request.
	respHold  holdState
	respChunk Chunk

	out     http.Request // backs Out
	outURL  url.URL      // backs Out.URL
	reqBody countedBody  // wraps In.Body as Out.Body, when there is a body
}

// countedBody is the downstream request body as the exchange reads it: it
// counts bytes and notes when the body ended. The upstream transport may
// read it on its own goroutine, hence the atomics; Exchange.settle copies
// the results into the Exchange. It lives inside the Exchange, so counting
// costs no allocation.
type countedBody struct {
	src   io.ReadCloser
	start time.Time
	n     atomic.Int64
	end   atomic.Int64 // time from start to EOF, plus one; 0 until EOF
}

var _ io.ReadCloser = (*countedBody)(nil)

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	if n > 0 {
		b.n.Add(int64(n))
	}
	if err == io.EOF {
		b.end.CompareAndSwap(0, int64(time.Since(b.start))+1)
	}
	return n, err
}

// Close closes the downstream body. The transport may call it concurrently
// with Read.
func (b *countedBody) Close() error { return b.src.Close() }

// settle copies the request body's byte count and end time into x.
func (x *Exchange) settle() {
	if x.reqBody.src == nil {
		return
	}
	x.BytesReceived += x.reqBody.n.Load()
	if d := x.reqBody.end.Load(); d > 0 && x.RequestEnd.IsZero() {
		x.RequestEnd = x.reqBody.start.Add(time.Duration(d - 1))
	}
}

// holdState is the hold-back buffer of one side (request or response) of
// an exchange: one buffer per filter position, and the running filter.
// Each side is used by one goroutine at a time.
type holdState struct {
	cur   int      // position of the body filter being called
	size  int      // number of positions in the chain
	held  [][]byte // held-back bytes per position, allocated on first use
	bytes int64    // total held bytes across positions
}

type keyValue struct {
	key any
	val any
}

// NewExchange returns an Exchange for r with Out a copy of r that has its
// own Header and URL.
//
// Out shares In's body and trailer map (request trailers arrive as the body
// is read) but has its own Header and URL. Out and its URL live inside the
// Exchange, so building one costs a single allocation plus the header copy.
func NewExchange(r *http.Request) *Exchange {
	x := &Exchange{In: r, Start: time.Now()}
	x.initOut(r)
	return x
}

// NewExchangeContext is NewExchange with ctx as the context of x.Out.
func NewExchangeContext(ctx context.Context, r *http.Request) *Exchange {
	x := &Exchange{In: r, Start: time.Now()}
	x.initOut(r.WithContext(ctx))
	return x
}

func (x *Exchange) initOut(r *http.Request) {
	x.out = *r
	if r.URL != nil {
		x.outURL = *r.URL
		x.out.URL = &x.outURL
	}
	x.out.Header = r.Header.Clone()
	if x.out.Header == nil {
		x.out.Header = make(http.Header)
	}
	x.out.RequestURI = ""
	switch {
	case r.ContentLength == 0:
		// No body bytes will come: HTTP/2 servers still hand out an open
		// (empty) body, which would make the request look like a stream
		// to transports.
		x.out.Body = http.NoBody
		x.RequestEnd = x.Start
	case r.Body == nil || r.Body == http.NoBody:
		x.RequestEnd = x.Start
	default:
		x.reqBody.src = r.Body
		x.reqBody.start = x.Start
		x.out.Body = &x.reqBody
	}
	x.Out = &x.out
}

func (x *Exchange) bufferLimit() int64 {
	if x.BufferLimit > 0 {
		return x.BufferLimit
	}
	return DefaultBufferLimit
}

// Body reads the whole outgoing request body once, bounded by BufferLimit,
// and makes x.Out replayable (GetBody) so retries can resend it. Later calls
// return the same bytes. Beyond the limit it returns an error wrapping
// ErrBufferLimit, which answers 413.
func (x *Exchange) Body() ([]byte, error) {
	if x.bodyRead {
		return x.body, nil
	}
	x.bodyRead = true
	if x.Out.Body == nil || x.Out.Body == http.NoBody {
		x.setOutBody(nil)
		return nil, nil
	}
	limit := x.bufferLimit()
	b, err := ReadBody(x.Out.Body, x.Out.ContentLength, limit)
	if err != nil {
		if errors.Is(err, ErrBufferLimit) {
			return nil, fmt.Errorf("request body: %w (%d bytes)", ErrBufferLimit, limit)
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	x.Out.Body.Close()
	x.setOutBody(b)
	return b, nil
}

// ReadBody reads r to its end, at most limit bytes; more is an error
// wrapping ErrBufferLimit. size is the length r announced (a
// Content-Length; -1 when unknown): a body that has one is read into a
// buffer of that size, in one allocation, and read on to its EOF, so that
// a pooled connection behind it is released. It does not close r.
func ReadBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size < 0 || size > limit {
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		if err != nil {
			return nil, err
		}
		if int64(len(b)) > limit {
			return nil, ErrBufferLimit
		}
		return b, nil
	}
	// One byte of room past the announced size tells a longer body.
	b := make([]byte, size+1)
	n, err := io.ReadAtLeast(r, b, len(b))
	switch err {
	case nil:
		// More than announced: read the rest under the limit.
		rest, err := io.ReadAll(io.LimitReader(r, limit+1-int64(n)))
		if err != nil {
			return nil, err
		}
		b = append(b[:n], rest...)
		if int64(len(b)) > limit {
			return nil, ErrBufferLimit
		}
		return b, nil
	case io.ErrUnexpectedEOF, io.EOF:
		return b[:n:n], nil
	}
	return nil, err
}

func getNoBody() (io.ReadCloser, error) { return http.NoBody, nil }

// BytesBody is a request or response body read from memory: a
// bytes.Reader whose Close does nothing, in one allocation.
type BytesBody struct{ bytes.Reader }

// NewBytesBody returns a body that reads b.
func NewBytesBody(b []byte) *BytesBody {
	bb := new(BytesBody)
	bb.Reset(b)
	return bb
}

// Close implements io.Closer; it does nothing.
func (*BytesBody) Close() error { return nil }

// SetBody replaces the outgoing request body with b and sets its length.
func (x *Exchange) SetBody(b []byte) {
	x.bodyRead = true
	x.setOutBody(b)
}

func (x *Exchange) setOutBody(b []byte) {
	x.body = b
	x.Out.ContentLength = int64(len(b))
	if len(b) == 0 {
		x.Out.Body = http.NoBody
		x.Out.GetBody = getNoBody
	} else {
		x.Out.Body = NewBytesBody(b)
		x.Out.GetBody = func() (io.ReadCloser, error) { return NewBytesBody(b), nil }
	}
	x.Out.Header.Del("Transfer-Encoding")
	x.Out.TransferEncoding = nil
}

// ClearRouteCache asks for the route to be matched again, against x.Out,
// before the upstream is chosen (Envoy's clear_route_cache). A request
// filter calls it after changing what routing depends on.
func (x *Exchange) ClearRouteCache() { x.routeCleared = true; x.Cluster = "" }

// RouteCacheCleared reports whether ClearRouteCache was called since the
// last TakeRouteCacheCleared.
func (x *Exchange) RouteCacheCleared() bool { return x.routeCleared }

// TakeRouteCacheCleared reports whether ClearRouteCache was called and
// resets the request. The router calls it before choosing the upstream.
func (x *Exchange) TakeRouteCacheCleared() bool {
	c := x.routeCleared
	x.routeCleared = false
	return c
}

// Key is a typed key for per-exchange state. Create keys once, at package
// or filter construction, with NewKey.
type Key[T any] struct {
	name string
}

// NewKey returns a new key; name is for diagnostics only. Two keys are
// distinct even when their names are equal.
func NewKey[T any](name string) *Key[T] { return &Key[T]{name: name} }

// String returns the key's name.
func (k *Key[T]) String() string { return k.name }

// Get returns the value stored under k on x.
func (k *Key[T]) Get(x *Exchange) (T, bool) {
	for i := range x.values {
		if x.values[i].key == k {
			return x.values[i].val.(T), true
		}
	}
	var zero T
	return zero, false
}

// Set stores v under k on x.
func (k *Key[T]) Set(x *Exchange, v T) {
	for i := range x.values {
		if x.values[i].key == k {
			x.values[i].val = v
			return
		}
	}
	x.values = append(x.values, keyValue{key: k, val: v})
}

// GetOrInit returns the value under k, storing init() first if there is none.
func (k *Key[T]) GetOrInit(x *Exchange, init func() T) T {
	if v, ok := k.Get(x); ok {
		return v
	}
	v := init()
	k.Set(x, v)
	return v
}

// ReplyError answers a request locally. Return one (built with Reply) from
// a request or response phase: no upstream call is made, but the response
// phases of filters that already ran still run.
type ReplyError struct {
	Status  int
	Header  http.Header
	Body    []byte
	Flags   Flags  // response flags to record, e.g. FlagRateLimited
	Details string // %RESPONSE_CODE_DETAILS%
}

// Reply returns a *ReplyError with the given status and body; the body is
// sent as text/plain unless a Content-Type header is set.
func Reply(status int, body string) *ReplyError {
	return &ReplyError{Status: status, Body: []byte(body)}
}

// WithHeader sets a header on the reply and returns it.
func (e *ReplyError) WithHeader(key, value string) *ReplyError {
	if e.Header == nil {
		e.Header = make(http.Header)
	}
	e.Header.Set(key, value)
	return e
}

// WithFlags adds response flags and returns e.
func (e *ReplyError) WithFlags(f Flags) *ReplyError { e.Flags |= f; return e }

func (e *ReplyError) Error() string {
	return fmt.Sprintf("local reply %d %s", e.Status, http.StatusText(e.Status))
}

// StatusError is implemented by errors that know the status and response
// flags they answer with (cluster.UpstreamError, for one).
type StatusError interface {
	error
	ReplyStatus() (status int, flags Flags)
}

// ErrorReply maps an error to the local reply that answers it, following
// DESIGN §6: a *ReplyError as given; a StatusError by its status; a route
// or upstream deadline 504 (UT); a client gone 499 (DC); a body over the
// buffer limit 413; anything else 500.
func ErrorReply(err error) *ReplyError {
	var re *ReplyError
	if errors.As(err, &re) {
		return re
	}
	var se StatusError
	if errors.As(err, &se) {
		st, fl := se.ReplyStatus()
		return &ReplyError{Status: st, Flags: fl, Body: []byte(statusBody(st, fl)), Details: details(err)}
	}
	switch {
	case errors.Is(err, ErrBufferLimit):
		return &ReplyError{Status: http.StatusRequestEntityTooLarge, Body: []byte("payload too large"), Details: "request_payload_too_large"}
	case errors.Is(err, context.DeadlineExceeded):
		return &ReplyError{Status: http.StatusGatewayTimeout, Flags: FlagUpstreamRequestTimeout, Body: []byte("upstream request timeout"), Details: "upstream_response_timeout"}
	case errors.Is(err, context.Canceled):
		return &ReplyError{Status: 499, Flags: FlagDownstreamConnectionTermination, Details: "downstream_remote_disconnect"}
	}
	return &ReplyError{Status: http.StatusInternalServerError, Body: []byte("internal error"), Details: "filter_error"}
}

func statusBody(status int, fl Flags) string {
	switch {
	case fl.Has(FlagNoRouteFound):
		return "no route"
	case fl.Has(FlagNoHealthyUpstream):
		return "no healthy upstream"
	case fl.Has(FlagUpstreamOverflow):
		return "upstream overflow"
	case fl.Has(FlagUpstreamConnectionFailure):
		return "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	case fl.Has(FlagUpstreamRequestTimeout):
		return "upstream request timeout"
	case fl.Has(FlagNoClusterFound):
		return "no cluster"
	}
	return http.StatusText(status)
}

// Detailer is implemented by errors that carry Envoy response code details.
type Detailer interface{ Details() string }

func details(err error) string {
	var d Detailer
	if errors.As(err, &d) {
		return d.Details()
	}
	return ""
}

// HoldBack holds the bytes of c back, for a body filter that needs more of
// the body before it can transform it (a JSON rewrite, a content scan). It
// appends c.Data to a buffer owned by the calling filter's position and sets
// c.Data to nil. On the last chunk (c.EOS) it returns every byte held by
// that filter and clears its buffer; the filter then sets c.Data to the
// transformed bytes. Bytes held by all filters of one side of the exchange
// are bounded by BufferLimit; beyond it HoldBack returns an error wrapping
// ErrBufferLimit, which the filter should return: on the request side it
// answers 413, on the response side it aborts the stream.
//
// HoldBack must be called only from OnRequestBody or OnResponseBody, with
// the chunk the filter was given.
func (x *Exchange) HoldBack(c *Chunk) (all []byte, err error) {
	h := c.hold
	if h == nil {
		h = &x.respHold
	}
	if h.cur >= len(h.held) {
		n := max(h.size, h.cur+1)
		held := make([][]byte, n)
		copy(held, h.held)
		h.held = held
	}
	if len(c.Data) > 0 {
		limit := x.bufferLimit()
		h.bytes += int64(len(c.Data))
		if h.bytes > limit {
			c.Data = nil
			return nil, fmt.Errorf("hold back: %w (%d bytes)", ErrBufferLimit, limit)
		}
		h.held[h.cur] = append(h.held[h.cur], c.Data...)
		c.Data = nil
	}
	if !c.EOS {
		return nil, nil
	}
	all = h.held[h.cur]
	h.held[h.cur] = nil
	h.bytes -= int64(len(all))
	return all, nil
}
