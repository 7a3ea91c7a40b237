// Package tracing owns Portico's distributed tracing: Envoy's HTTP tracer as
// a filter, built on OpenTelemetry.
//
// A Filter gives every exchange a SERVER span. OnRequest extracts the
// caller's trace context from the downstream request (W3C Trace Context and
// Baggage by default; B3 too with Config.AcceptB3), starts the span at
// x.Start, keeps it on the Exchange, and writes its context into the
// upstream request's headers in place of the caller's. OnResponse records
// the response status; OnDone sets the attributes and ends the span at
// x.End. Attributes follow the stable OpenTelemetry HTTP semantic
// conventions, named as plain strings so that Portico is not tied to one
// semconv version: http.request.method, url.path, url.scheme,
// server.address, server.port, network.protocol.version, client.address
// (the direct peer), http.response.status_code, user_agent.original,
// http.route (the route's name) and error.type; and Envoy's and Portico's:
// upstream.cluster, upstream.address, envoy.response_flags and
// guid:x-request-id. A 5xx status or a terminal error (recorded as an
// exception event) marks the span as an error.
//
// Filter.Transport wraps the transport of upstream attempts: each round trip
// gets a CLIENT span, a child of the context in the request's traceparent,
// whose own context replaces it on the wire. Retries are sibling spans.
//
// Sampling is the TracerProvider's decision; the Filter creates spans and
// propagates context whatever it decides, so unsampled requests still carry
// a non-sampled traceparent upstream. To keep the caller's decision and
// sample a ratio r of new traces:
//
//	tp := sdktrace.NewTracerProvider(
//		sdktrace.WithBatcher(exporter),
//		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r))),
//	)
//
// A minimal use:
//
//	tracer, err := tracing.New(tracing.Config{TracerProvider: tp})
//	if err != nil {
//		return err
//	}
//	chain, err := filter.NewChain(tracer, other)
//	...
//	client := &http.Client{Transport: tracer.Transport(http.DefaultTransport)}
//
// Put the Filter first in the chain so that its span covers the other
// filters and local replies they make.
package tracing
