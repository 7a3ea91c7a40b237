package tracing

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
)

// Transport returns middleware for the transport of upstream attempts: per
// round trip it starts a CLIENT span, child of the trace context the filter
// injected into the request's headers (or, without one, of the span in the
// request's context), sends a copy of the request carrying the client span's
// context, and ends the span when the response headers arrive or the round
// trip fails. Each retry of a request is a sibling span with the same parent.
//
// The request itself is not modified, as http.RoundTripper requires. The
// returned RoundTripper is safe for concurrent use if next is.
func (f *Filter) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{f: f, next: next}
}

type transport struct {
	f    *Filter
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	f := t.f
	ctx := f.inject.Extract(req.Context(), carrier(req.Header))
	m, _ := method(req.Method)
	name := m
	if name == "_OTHER" {
		name = "HTTP"
	}
	ctx, span := f.tracer.Start(ctx, name, clientKind)
	defer span.End()

	out := req.WithContext(ctx)
	out.Header = req.Header.Clone()
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	for _, k := range f.stale {
		delete(out.Header, k)
	}
	f.inject.Inject(ctx, carrier(out.Header))

	resp, err := t.next.RoundTrip(out)

	if !span.IsRecording() {
		return resp, err
	}
	var buf [8]attribute.KeyValue
	a := append(buf[:0], keyMethod.String(m))
	if m == "_OTHER" {
		a = append(a, keyMethodOriginal.String(req.Method))
	}
	if u := req.URL; u != nil {
		// Without userinfo and query: they may carry secrets.
		a = append(a, keyURLFull.String(u.Scheme+"://"+u.Host+u.EscapedPath()))
		if host, port := splitHostPort(u.Host); host != "" {
			a = append(a, keyServerAddress.String(host))
			if port == 0 {
				port = defaultPort(u.Scheme)
			}
			if port > 0 {
				a = append(a, keyServerPort.Int(port))
			}
		}
	}
	switch {
	case err != nil:
		a = append(a, keyErrorType.String(errorType(err, 0)))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	default:
		a = append(a, keyStatus.Int(resp.StatusCode))
		if v := protocol(resp.ProtoMajor, resp.ProtoMinor); v != "" {
			a = append(a, keyProtocol.String(v))
		}
		// Client spans fail on 4xx too.
		if resp.StatusCode >= 400 {
			a = append(a, keyErrorType.String(errorType(nil, resp.StatusCode)))
			span.SetStatus(codes.Error, "")
		}
	}
	span.SetAttributes(a...)
	return resp, err
}

func defaultPort(scheme string) int {
	switch strings.ToLower(scheme) {
	case "http":
		return 80
	case "https":
		return 443
	}
	return 0
}
