package filter

import (
	"context"
	"net/http"
)

// middleware is a Filter that runs a stdlib middleware inside a chain.
type middleware struct {
	name string
	mw   func(http.Handler) http.Handler
}

func (m *middleware) Name() string { return m.name }

// FromMiddleware returns a filter that runs the stdlib middleware mw inside
// a chain. The chain calls mw once, when it is built, with a next handler
// that continues the chain; so mw must be safe for concurrent use as
// net/http middleware always is.
//
// Per request, the middleware receives a ResponseWriter that applies the
// response phases of the filters declared before it, and x.Out. The request
// it passes to next becomes x.Out for the rest of the chain, and the writer
// it passes is where the rest of the chain writes. A middleware that
// answers without calling next short-circuits the rest of the chain; the
// filters after it are not reached. Writers implement Unwrap, so
// http.ResponseController works through them.
func FromMiddleware(name string, mw func(http.Handler) http.Handler) Filter {
	return &middleware{name: name, mw: mw}
}

// stateKey is the context key under which a chain passes the state of a
// request to the segment after a middleware.
type stateKey struct{ c *Chain }

// segmentState is what the segment after a middleware needs of its request.
type segmentState struct {
	x   *Exchange
	ctx context.Context
	t   *terminal
}

// segmentNext is the next handler given to a middleware: it continues the
// chain at segment seg.
type segmentNext struct {
	c   *Chain
	seg int
}

func (n segmentNext) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, ok := r.Context().Value(stateKey{n.c}).(*segmentState)
	if !ok {
		http.Error(w, "filter: middleware called next outside its chain", http.StatusInternalServerError)
		return
	}
	st.x.Out = r
	n.c.run(st.ctx, w, st.x, n.seg, st.t)
}

// AsMiddleware returns f, with whatever phases it implements, as stdlib
// middleware around any handler: the handler sees x.Out and writes through
// a ResponseWriter that runs f's response and body phases; f's done phase
// runs after the handler returns. A nil f yields middleware that answers
// 500. The returned handlers are safe for concurrent use.
func AsMiddleware(f Filter) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if f == nil {
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "filter: nil filter", http.StatusInternalServerError)
			})
		}
		return compile([]Filter{f}).Handler(next)
	}
}
