// Package listener accepts downstream connections and terminates them: it
// owns the TCP socket, the TLS inspector that peeks at a ClientHello for SNI
// and ALPN, filter-chain selection (Envoy's order: destination port, server
// name, transport protocol, application protocol, source prefix, most
// specific wins), TLS termination with SNI-selected certificates, and the
// HTTP connection manager (HCM) that serves HTTP/1.1, HTTP/2 over TLS (ALPN)
// and h2c with prior knowledge on one port. A filter chain may end in a TCP
// proxy instead ([FilterChain.TCP], Envoy's tcp_proxy), and two listener
// filters run before chain selection when configured: PROXY protocol v1/v2
// ([Config.ProxyProtocol]) and the original destination of a NAT-redirected
// connection ([Config.OriginalDst]).
//
// What happens to a request after the HCM's hygiene (header and body
// limits, hop-by-hop stripping, X-Forwarded-For / X-Forwarded-Proto,
// x-request-id) is not this package's business: each filter chain's
// [HTTPConfig.Handler] receives the request. The gateway puts its route
// table, filters and router there.
//
// Each HTTP filter chain runs its own net/http [http.Server], fed
// connections through an in-memory net.Listener, for TLS (HTTP/1.1 and
// HTTP/2 by ALPN) and h2c with prior knowledge, so HTTP/2 and its graceful
// drain (GOAWAY) are the standard library's. Plaintext HTTP/1.x is served
// by default by a leaner synchronous loop per connection (http.ReadRequest,
// the chain's handler, a reused ResponseWriter, keep-alive, pipelining,
// Expect: 100-continue, trailers, Hijack, graceful drain with Connection:
// close); [HTTPConfig.StdlibHTTP1] sends it to the http.Server instead. The
// loop cannot notice a client that leaves during a request without body
// before the response is written, its request context is per connection
// (cancelled when the server closes the connection), and it never sniffs
// Content-Type. [Listener.Update] swaps the chain table atomically:
// new connections use the new chains while existing connections finish on
// the chain they were accepted on.
//
// A minimal plaintext listener:
//
//	l, err := listener.New(listener.Config{
//		Name:    "ingress",
//		Address: "127.0.0.1:8080",
//		FilterChains: []listener.FilterChain{{
//			Name: "http",
//			HTTP: &listener.HTTPConfig{StatPrefix: "ingress", Handler: h},
//		}},
//	})
//	if err != nil {
//		return err
//	}
//	go l.Serve(ctx)
//	defer l.Shutdown(context.Background())
//
// The package imports only the standard library.
package listener
