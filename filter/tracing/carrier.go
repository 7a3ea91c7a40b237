package tracing

import (
	"net/http"
	"net/textproto"
)

// carrier is propagation.HeaderCarrier without the per-call allocation of
// canonicalising the lower-case names propagators use: the names of the
// propagators Portico knows map to constants.
type carrier http.Header

func canonical(name string) string {
	switch name {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	case "b3":
		return "B3"
	case "x-b3-traceid":
		return "X-B3-Traceid"
	case "x-b3-spanid":
		return "X-B3-Spanid"
	case "x-b3-parentspanid":
		return "X-B3-Parentspanid"
	case "x-b3-sampled":
		return "X-B3-Sampled"
	case "x-b3-flags":
		return "X-B3-Flags"
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// Get implements propagation.TextMapCarrier.
func (c carrier) Get(name string) string {
	if v := c[canonical(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values implements propagation.ValuesGetter, for headers (baggage) that
// may be split over several lines.
func (c carrier) Values(name string) []string { return c[canonical(name)] }

// Set implements propagation.TextMapCarrier.
func (c carrier) Set(name, value string) { c[canonical(name)] = []string{value} }

// Keys implements propagation.TextMapCarrier.
func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
