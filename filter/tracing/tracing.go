package tracing

import (
	"context"
	"errors"
	"net/textproto"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/porticoproxy/portico/filter"
)

// ScopeName is the instrumentation scope of the tracer a Filter gets from its
// TracerProvider.
const ScopeName = "github.com/porticoproxy/portico/filter/tracing"

// Attribute keys. They are the stable OpenTelemetry HTTP semantic convention
// names, spelled out as strings so that Portico does not pin a semconv
// version, plus Envoy's and Portico's own.
const (
	keyMethod         = attribute.Key("http.request.method")
	keyMethodOriginal = attribute.Key("http.request.method_original")
	keyStatus         = attribute.Key("http.response.status_code")
	keyRoute          = attribute.Key("http.route")
	keyURLPath        = attribute.Key("url.path")
	keyURLScheme      = attribute.Key("url.scheme")
	keyURLFull        = attribute.Key("url.full")
	keyServerAddress  = attribute.Key("server.address")
	keyServerPort     = attribute.Key("server.port")
	keyProtocol       = attribute.Key("network.protocol.version")
	keyClientAddress  = attribute.Key("client.address")
	keyUserAgent      = attribute.Key("user_agent.original")
	keyErrorType      = attribute.Key("error.type")
	keyCluster        = attribute.Key("upstream.cluster")
	keyUpstreamAddr   = attribute.Key("upstream.address")
	keyResponseFlags  = attribute.Key("envoy.response_flags")
	keyRequestID      = attribute.Key("guid:x-request-id")
)

// Span kinds as options, made once.
var (
	serverKind = trace.WithSpanKind(trace.SpanKindServer)
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
)

// b3Headers are every header B3 may carry, in canonical form. They are
// removed from outgoing requests when the propagator injects B3, so that a
// stale value (a parent span id, the other encoding) does not survive.
var b3Headers = []string{"B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags"}

// Config configures a Filter. The zero value is not valid: TracerProvider
// must be set.
//
// Sampling is the TracerProvider's job, not the Filter's. To honour the
// caller's sampling decision and sample a ratio r of new traces, build the
// SDK provider with
//
//	sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)))
//
// Unsampled requests still propagate a (non-sampled) trace context upstream.
type Config struct {
	// TracerProvider creates the Filter's tracer; required. In production
	// it is the OpenTelemetry SDK's provider with any exporter.
	TracerProvider trace.TracerProvider
	// Propagator reads the trace context from downstream requests and
	// writes it into upstream requests. Nil means W3C Trace Context plus
	// W3C Baggage. Add B3 with b3.New() in a composite propagator to
	// inject B3 too.
	Propagator propagation.TextMapPropagator
	// AcceptB3 also extracts B3 (single and multiple headers) from
	// downstream requests, without injecting it. A W3C traceparent wins
	// over B3 when a request carries both.
	AcceptB3 bool
	// SpanName names the server span of an exchange, from the state the
	// request phase sees. Nil means DefaultSpanName. It is called on the
	// request path, concurrently, and must keep names low-cardinality.
	SpanName func(*filter.Exchange) string
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	if c.TracerProvider == nil {
		return errors.New("tracing: TracerProvider is required")
	}
	return nil
}

// DefaultSpanName names a server span as Envoy-like tracers and the
// OpenTelemetry HTTP conventions do, with a bounded set of names: the
// method and the route name ("GET api"), or the method alone when no named
// route matched. Methods outside the standard set become "HTTP".
func DefaultSpanName(x *filter.Exchange) string {
	m, _ := method(x.In.Method)
	if m == "_OTHER" {
		m = "HTTP"
	}
	if x.Route != nil {
		if name := x.Route.Name(); name != "" {
			return m + " " + name
		}
	}
	return m
}

// Filter traces exchanges with OpenTelemetry: a SERVER span per exchange,
// whose context it propagates upstream, and, through Transport, a CLIENT span
// per upstream attempt.
//
// A Filter is immutable after New and safe for concurrent use; the span of an
// exchange lives on the Exchange.
type Filter struct {
	tracer   trace.Tracer
	inject   propagation.TextMapPropagator
	extract  propagation.TextMapPropagator
	spanName func(*filter.Exchange) string
	// stale are the canonical headers removed from an outgoing request
	// before the propagator writes its own.
	stale []string
	span  *filter.Key[trace.Span]
}

var (
	_ filter.Filter         = (*Filter)(nil)
	_ filter.RequestFilter  = (*Filter)(nil)
	_ filter.ResponseFilter = (*Filter)(nil)
	_ filter.DoneFilter     = (*Filter)(nil)
)

// New returns a Filter for cfg.
func New(cfg Config) (*Filter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Filter{
		tracer:   cfg.TracerProvider.Tracer(ScopeName),
		inject:   cfg.Propagator,
		spanName: cfg.SpanName,
		span:     filter.NewKey[trace.Span]("tracing.span"),
	}
	if f.inject == nil {
		f.inject = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	if f.spanName == nil {
		f.spanName = DefaultSpanName
	}
	f.extract = f.inject
	if cfg.AcceptB3 {
		// Later propagators override earlier ones: W3C wins over B3.
		f.extract = propagation.NewCompositeTextMapPropagator(b3.New(), f.inject)
	}
	injectsB3 := false
	for _, name := range f.inject.Fields() {
		k := textproto.CanonicalMIMEHeaderKey(name)
		if k == "B3" || strings.HasPrefix(k, "X-B3-") {
			injectsB3 = true
			continue
		}
		f.stale = append(f.stale, k)
	}
	if injectsB3 {
		f.stale = append(f.stale, b3Headers...)
	}
	return f, nil
}

// Name implements filter.Filter.
func (f *Filter) Name() string { return "tracing" }

// OnRequest implements filter.RequestFilter. It extracts the caller's trace
// context from x.In, starts the exchange's SERVER span at x.Start, and writes
// the span's context into x.Out's headers (traceparent, tracestate, baggage,
// and B3 when the propagator injects it), replacing the caller's.
func (f *Filter) OnRequest(ctx context.Context, x *filter.Exchange) error {
	ctx = f.extract.Extract(ctx, carrier(x.In.Header))
	var span trace.Span
	if x.Start.IsZero() {
		ctx, span = f.tracer.Start(ctx, f.spanName(x), serverKind)
	} else {
		ctx, span = f.tracer.Start(ctx, f.spanName(x), serverKind, trace.WithTimestamp(x.Start))
	}
	f.span.Set(x, span)
	h := x.Out.Header
	for _, k := range f.stale {
		delete(h, k)
	}
	f.inject.Inject(ctx, carrier(h))
	return nil
}

// OnResponse implements filter.ResponseFilter. It records the status of the
// response (upstream or local reply) as the response phases see it; OnDone
// replaces it with the status written downstream if a later filter changed
// it.
func (f *Filter) OnResponse(ctx context.Context, x *filter.Exchange) error {
	span, ok := f.span.Get(x)
	if !ok || x.Resp == nil || !span.IsRecording() {
		return nil
	}
	span.SetAttributes(keyStatus.Int(x.Resp.StatusCode))
	return nil
}

// OnDone implements filter.DoneFilter. It sets the request, response and
// upstream attributes, marks the span as an error for a 5xx status or a
// terminal error (which it records as an event), and ends it at x.End.
func (f *Filter) OnDone(ctx context.Context, x *filter.Exchange) {
	span, ok := f.span.Get(x)
	if !ok {
		return
	}
	if span.IsRecording() {
		f.annotate(span, x)
	}
	if x.End.IsZero() {
		span.End()
	} else {
		span.End(trace.WithTimestamp(x.End))
	}
}

func (f *Filter) annotate(span trace.Span, x *filter.Exchange) {
	in := x.In
	status := x.Status
	if status == 0 && x.Resp != nil {
		status = x.Resp.StatusCode
	}
	var buf [20]attribute.KeyValue
	a := buf[:0]
	m, known := method(in.Method)
	a = append(a, keyMethod.String(m))
	if !known {
		a = append(a, keyMethodOriginal.String(in.Method))
	}
	a = append(a, keyURLPath.String(in.URL.Path))
	if in.TLS != nil {
		a = append(a, keyURLScheme.String("https"))
	} else {
		a = append(a, keyURLScheme.String("http"))
	}
	if host, port := splitHostPort(in.Host); host != "" {
		a = append(a, keyServerAddress.String(host))
		if port > 0 {
			a = append(a, keyServerPort.Int(port))
		}
	}
	if v := protocol(in.ProtoMajor, in.ProtoMinor); v != "" {
		a = append(a, keyProtocol.String(v))
	}
	if host, _ := splitHostPort(in.RemoteAddr); host != "" {
		a = append(a, keyClientAddress.String(host))
	}
	if ua := in.Header.Get("User-Agent"); ua != "" {
		a = append(a, keyUserAgent.String(ua))
	}
	if status != 0 {
		a = append(a, keyStatus.Int(status))
	}
	if x.Route != nil {
		if name := x.Route.Name(); name != "" {
			a = append(a, keyRoute.String(name))
		}
	}
	if x.Cluster != "" {
		a = append(a, keyCluster.String(x.Cluster))
	}
	if x.Endpoint != "" {
		a = append(a, keyUpstreamAddr.String(x.Endpoint))
	}
	a = append(a, keyResponseFlags.String(x.Flags.String()))
	if id := in.Header.Get("X-Request-Id"); id != "" {
		a = append(a, keyRequestID.String(id))
	}
	switch {
	case x.Err != nil:
		a = append(a, keyErrorType.String(errorType(x.Err, status)))
		span.RecordError(x.Err)
		span.SetStatus(codes.Error, x.Err.Error())
	case status >= 500:
		// The status says why; the conventions leave the description empty.
		a = append(a, keyErrorType.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, "")
	}
	span.SetAttributes(a...)
}
