package portico

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/route"
)

// Request mirroring: Envoy's request_mirror_policies.
//
// A sampled request is copied to the shadow cluster, fire and forget: the
// shadow runs on its own goroutine, its response is read and discarded,
// and nothing about it reaches the main request. As in Envoy, the shadow's
// Host (:authority) gets "-shadow" appended to its host name
// ("api.example.com:8080" becomes "api.example.com-shadow:8080"), and the
// route timeout bounds the shadow exchange. The route's auto host rewrite
// does not apply to shadows, so the suffix stays visible.
//
// A request body reaches the shadow as the main request reads it, through
// the same bounded replay buffer as retries: the shadow never reads the
// downstream body itself, so it cannot hold up the main request. A body
// beyond the buffer limit aborts the shadow (retry_or_shadow_abandoned),
// and so does an exchange that ends before its body was read whole.
//
// Shadows in flight are bounded per HTTP connection manager by
// maxShadowsInFlight; a shadow over the bound is dropped and counted as
// upstream_rq_shadow_overflow on the shadow cluster. Envoy sets no bound.
// Shadows run under the gateway's serving context and are counted in the
// gateway's shadowGroup: Close stops new ones, cancels those in flight and
// waits for them; Shutdown first lets them finish within its deadline.

// maxShadowsInFlight bounds the shadow requests in flight per HTTP
// connection manager.
const maxShadowsInFlight = 128

// shadowHost returns host with "-shadow" appended to its host name, before
// any port, as Envoy's shadow policy does.
func shadowHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host[:i] + "-shadow" + host[i:]
	}
	return host + "-shadow"
}

// mirror starts the sampled shadows of x. body is the request body's
// replay buffer, or nil when x.Out has no body or a replayable one.
func (rt *router) mirror(x *filter.Exchange, r *route.Route, mirrors []route.MirrorPolicy, body *replayBuffer, deadline time.Time) {
	out := x.Out
	var ended bool
	for i := range mirrors {
		m := &mirrors[i]
		if m.Fraction < 1 && rand.Float64() >= m.Fraction {
			continue
		}
		lc := rt.g.clusters.Load().byName[m.Cluster]
		if lc == nil {
			continue // as in Envoy: an unknown shadow cluster is skipped
		}
		var rb io.ReadCloser = http.NoBody
		switch {
		case body != nil:
			rb = body.reader(true)
			if !ended {
				// Passive readers give up when the exchange ends.
				context.AfterFunc(x.In.Context(), body.end)
				ended = true
			}
		case hasBody(out) && out.GetBody != nil:
			b, err := out.GetBody()
			if err != nil {
				continue
			}
			rb = b
		case hasBody(out):
			continue // not replayable: nothing to send
		}
		select {
		case rt.shadows <- struct{}{}:
		default:
			lc.stats.retry.shadowOverflow.Inc()
			rb.Close()
			continue
		}
		if !rt.g.shadows.add() {
			<-rt.shadows // the gateway is closing
			rb.Close()
			continue
		}
		req := out.WithContext(rt.g.serveCtx)
		if out.URL != nil {
			u := *out.URL
			req.URL = &u
		}
		req.Header = out.Header.Clone()
		req.Host = shadowHost(out.Host)
		req.Body = rb
		req.GetBody = nil
		go rt.shadow(lc, req, deadline)
	}
}

// shadow sends one shadow request and discards its response.
func (rt *router) shadow(lc *liveCluster, req *http.Request, deadline time.Time) {
	defer func() {
		<-rt.shadows
		rt.g.shadows.done()
	}()
	st := lc.stats
	st.rqTotal.Inc()
	st.rqActive.Inc()
	start := time.Now()
	creq := cluster.Request{HTTP: req, Deadline: deadline}
	resp, err := lc.c.Send(&creq)
	st.rqActive.Dec()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		upstreamFailure(st, err)
		return
	}
	st.charge(resp.StatusCode)
	st.rqTime.Observe(float64(time.Since(start)) / float64(time.Millisecond))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// shadowGroup counts a gateway's shadow requests in flight so that Close
// can wait for them: a sync.WaitGroup whose add fails once close was
// called, so that none starts after Close began (a WaitGroup's Add may
// not race with its Wait). It costs a shadow one atomic add to start and
// one to end.
type shadowGroup struct {
	// n is the number of shadows in flight, plus shadowsClosed once close
	// was called. add increments it even when it then fails, and undoes
	// that with done, so n reaches shadowsClosed when the last shadow of
	// a closed group ends.
	n    atomic.Int64
	once sync.Once
	idle chan struct{} // closed once n == shadowsClosed; made by New
}

const shadowsClosed = 1 << 62

// add counts a shadow about to start; false means the group is closed and
// the shadow must not start.
func (s *shadowGroup) add() bool {
	if s.n.Add(1)&shadowsClosed != 0 {
		s.done()
		return false
	}
	return true
}

// done counts a shadow that ended.
func (s *shadowGroup) done() {
	if s.n.Add(-1) == shadowsClosed {
		s.once.Do(func() { close(s.idle) })
	}
}

// close makes add fail from now on and returns a channel closed once no
// shadow is in flight. It may be called more than once.
func (s *shadowGroup) close() <-chan struct{} {
	if s.n.Or(shadowsClosed) == 0 {
		s.once.Do(func() { close(s.idle) })
	}
	return s.idle
}
