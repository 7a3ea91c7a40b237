// Package filter is Portico's HTTP filter contract and the chain that runs
// it: Envoy's HTTP filter chain as small Go types.
//
// A Filter has a name and implements any of the phase interfaces:
// RequestFilter, ResponseFilter, RequestBodyFilter, ResponseBodyFilter and
// DoneFilter. NewChain discovers the phases once and compiles per-phase
// lists; a Chain is immutable and shared by every request of a route
// (Chain.ForRoute specialises it with per-route configuration).
//
// Chain.Serve is the data path. It runs one Exchange through the chain:
//
//   - request phases in declaration order; an error, such as a *ReplyError
//     made with Reply, answers locally (see ErrorReply) and skips the
//     upstream, but the response phases of the filters already reached
//     still run;
//   - the Upstream's RoundTrip, with the outgoing body streamed through the
//     request body filters;
//   - response phases in reverse order, then the body, streamed through the
//     response body filters in reverse order and flushed after every read
//     for streams (text/event-stream, gRPC, unknown length), then trailers;
//     a 101 response with a read-write body becomes a two-way tunnel
//     (WebSockets);
//   - done phases, once, in reverse order, after the response is written
//     or has failed.
//
// After the response headers are written a failure aborts the stream, with
// a panic of http.ErrAbortHandler that net/http turns into a closed
// connection or a reset h2 stream; a status is never sent twice.
//
// Serve allocates nothing itself for a headers-only response through phase
// filters: the phases are compiled, the copy buffer is pooled, and the
// response body chunk lives on the Exchange.
//
// The chain interoperates with net/http both ways: Chain.Handler puts it in
// front of any http.Handler, FromMiddleware runs a stdlib middleware inside
// a chain, and AsMiddleware runs one filter around any handler. Every
// ResponseWriter wrapper has Flush and Unwrap, so http.ResponseController
// reaches the real writer for flushes, deadlines and hijacking.
//
// A minimal use:
//
//	tag := filter.RequestFunc{FilterName: "tag", Func: func(ctx context.Context, x *filter.Exchange) error {
//		x.Out.Header.Set("X-Gateway", "portico")
//		return nil
//	}}
//	chain, err := filter.NewChain(tag)
//	if err != nil {
//		return err
//	}
//	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		chain.Serve(w, filter.NewExchange(r), upstream)
//	})
package filter
