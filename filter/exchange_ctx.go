package filter

import (
	"context"
	"net/http"
	"time"
)

// NewExchangeContext is NewExchange with ctx as the context of x.Out (the
// gateway passes the route-timeout context here, so the outgoing request and
// everything it starts end with the route timeout).
func NewExchangeContext(ctx context.Context, r *http.Request) *Exchange {
	x := &Exchange{In: r, Start: time.Now()}
	out := r.Clone(ctx)
	out.RequestURI = ""
	x.Out = out
	return x
}
