package portico

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// hcm is the request side of one HTTP connection manager: it matches the
// route, runs the route's compiled filter chain and ends in the router.
// Its state is swapped atomically when the route configuration, the
// manager's filters or its settings change.
type hcm struct {
	g     *Gateway
	state atomic.Pointer[hcmState]
	cfg   atomic.Pointer[listener.HTTPConfig] // control path only
	stats *hcmStats
	// shadows bounds the manager's shadow requests in flight (mirror.go);
	// it outlives state swaps.
	shadows chan struct{}
}

// hcmState is immutable.
type hcmState struct {
	table  *route.Table
	base   *filter.Chain   // chain without per-route overrides
	chains []*filter.Chain // by route index
	// retries are the routes' compiled retry policies, by route index;
	// nil entries for routes without one.
	retries []*retryPolicy
	stats   *hcmStats
	// routeStats are the per-route stats by route index (nil entries for
	// unnamed routes); nil unless Options.RouteStats.
	routeStats []*routeStats
	router     *router // the chains' terminal, bound to this state
	// streamIdle is the manager's stream idle timeout (idle.go); zero
	// when disabled.
	streamIdle time.Duration
}

func (h *hcm) routeName() string { return h.cfg.Load().RouteConfig }

func (h *hcm) configure(cfg *listener.HTTPConfig) error {
	c := *cfg
	c.Handler = nil
	h.cfg.Store(&c)
	prefix := c.StatPrefix
	if prefix == "" {
		prefix = "http"
	}
	h.stats = h.g.metrics.hcm(prefix)
	return nil
}

// refresh recompiles the state from the current route table and filters.
// The caller holds the gateway's lock.
func (h *hcm) refresh() error {
	cfg := h.cfg.Load()
	st, err := compileState(cfg, h.g.routes[cfg.RouteConfig])
	if err != nil {
		return err
	}
	st.stats = h.stats
	if h.g.opts.RouteStats {
		st.routeStats = h.g.metrics.routeStats(st.table)
	}
	if h.shadows == nil {
		h.shadows = make(chan struct{}, maxShadowsInFlight)
	}
	st.router = &router{g: h.g, st: st, shadows: h.shadows}
	h.state.Store(st)
	return nil
}

// compileState compiles a connection manager's filters into one chain
// per route of t (nil: no route table yet, every request answers 404).
func compileState(cfg *listener.HTTPConfig, t *route.Table) (*hcmState, error) {
	base, err := filter.NewChain(cfg.Filters...)
	if err != nil {
		return nil, fmt.Errorf("http filters: %w", err)
	}
	st := &hcmState{base: base, table: t, streamIdle: streamIdleTimeout(cfg)}
	if t == nil {
		return st, nil
	}
	routes := t.Routes()
	st.retries = compileRetries(t)
	st.chains = make([]*filter.Chain, len(routes))
	for i, r := range routes {
		st.chains[i] = base
		if fc := r.FilterConfig(); len(fc) > 0 {
			c, err := base.ForRoute(fc)
			if err != nil {
				return nil, fmt.Errorf("route configuration %q: route %q: %w", cfg.RouteConfig, r.Name(), err)
			}
			st.chains[i] = c
		}
	}
	return st, nil
}

// ServeHTTP serves one request on the snapshot current when it arrived.
func (h *hcm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := h.state.Load()
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		// The upstream transport reads the request body while the response
		// streams back; without full duplex net/http would consume (and
		// close) the rest of the body once the response starts, cutting the
		// upstream connection mid-request.
		http.NewResponseController(w).EnableFullDuplex()
	}
	st.stats.rqTotal.Inc()
	st.stats.rqActive.Inc()
	if r.ProtoMajor == 2 {
		st.stats.rqHTTP2.Inc()
	} else {
		st.stats.rqHTTP1.Inc()
	}

	var rt *route.Route
	if st.table != nil {
		rt = st.table.Match(r)
	}
	chain := st.base
	if rt != nil {
		chain = st.chains[rt.Index()]
	} else {
		st.stats.rqNR.Inc()
	}
	x := filter.NewExchange(r)
	x.Route = rt
	if rt != nil {
		x.BufferLimit = rt.BufferLimit()
	}
	// Deferred: Serve panics with http.ErrAbortHandler to abort a broken
	// stream, and the request must still stop being active.
	defer st.finish(x)
	chain.Serve(w, x, st.router)
	st.stats.completed()
}

// router is the terminal of every chain: Envoy's router filter. It answers
// redirects and direct responses, and sends everything else to the
// route's cluster: in one attempt (once) when the route has neither a
// retry policy nor mirror policies, else through the upstream request
// loop (retry.go) and shadows (mirror.go).
//
// A request whose body is late is ended by the listener's request
// timeout: its context is cancelled, which cancels the upstream request,
// and the router answers requestTimeoutReply (408).
//
// The router enforces the stream idle timeout (idle.go): the route's
// IdleTimeout, else the connection manager's StreamIdleTimeout. When no
// byte moves on the stream for that long, waiting for the response
// headers or between response body reads (or request body reads), the
// stream ends: with a 504 (408 if the request body was still coming), or
// by aborting a response already started; flag SI either way.
type router struct {
	g       *Gateway
	st      *hcmState
	shadows chan struct{} // semaphore of shadows in flight
}

var errNoCluster = &filter.ReplyError{Status: http.StatusServiceUnavailable, Flags: filter.FlagNoClusterFound, Body: []byte("no cluster"), Details: "cluster_not_found"}

// RoundTrip implements filter.Upstream.
func (rt *router) RoundTrip(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
	if x.TakeRouteCacheCleared() && rt.st.table != nil {
		x.Route = rt.st.table.Match(x.Out)
	}
	r := x.Route
	if r == nil {
		return nil, errNoRoute
	}
	if status, hdr, body, ok := r.Respond(x.Out); ok {
		rt.st.stats.local(r)
		return localResponse(x.Out, status, hdr, body), nil
	}
	r.RewriteRequest(x.Out, x.In)
	name := x.Cluster
	if name == "" {
		name = r.ClusterFor(x.Out)
		x.Cluster = name
	}
	lc := rt.g.clusters.Load().byName[name]
	if lc == nil {
		return nil, errNoCluster
	}
	sel := selection{autoHost: r.AutoHostRewrite()}
	if r.HighPriority() {
		sel.priority = cluster.HighPriority
	}
	if len(r.HashPolicy()) > 0 {
		var src netip.Addr
		if ap, err := netip.ParseAddrPort(x.In.RemoteAddr); err == nil {
			src = ap.Addr().Unmap()
		}
		sel.hash, sel.hasHash, sel.mint = r.RequestHash(x.Out, src)
	}
	rp, mirrors := rt.st.retryFor(r), r.Mirrors()
	var idle *streamIdle
	if d := rt.st.idleTimeout(r); d > 0 && !isUpgradeRequest(x.Out) {
		idle = rt.startIdle(x, d)
	}
	var (
		resp *http.Response
		err  error
	)
	if rp == nil && len(mirrors) == 0 {
		resp, err = rt.once(x, r, lc, &sel)
	} else {
		resp, err = rt.upstream(ctx, x, r, lc, rp, mirrors, sel)
	}
	if idle != nil {
		resp, err = idle.response(resp, err)
	}
	if err != nil || ctx.Err() != nil {
		resp, err = requestTimedOut(ctx, resp, err)
	}
	if sel.mint != nil && resp != nil {
		// Envoy's cookie hash policy mints the cookie the request lacked,
		// so the client's next requests hash to the same endpoint.
		resp.Header.Add("Set-Cookie", sel.mint.String())
	}
	return resp, err
}

// requestTimeoutReply answers a request that the listener's request
// timeout (Envoy's request_timeout) ended before it was received whole.
// The listener sends the 408 itself, whatever the chain writes; this
// reply makes the exchange (access log, stats) say so.
var requestTimeoutReply = &filter.ReplyError{Status: http.StatusRequestTimeout,
	Body: []byte("request timeout"), Details: "request_overall_timeout"}

// requestTimedOut replaces the outcome of an upstream request with
// requestTimeoutReply when the request timeout ended the request: the
// listener cancels the request's context with cause
// listener.ErrRequestTimeout and fails its body reads with it.
func requestTimedOut(ctx context.Context, resp *http.Response, err error) (*http.Response, error) {
	if !errors.Is(err, listener.ErrRequestTimeout) && context.Cause(ctx) != listener.ErrRequestTimeout {
		return resp, err
	}
	if resp != nil {
		resp.Body.Close()
	}
	return nil, requestTimeoutReply
}

// selection is what the route adds to an endpoint pick: Envoy's hash
// policy result, routing priority and auto host rewrite.
type selection struct {
	hash     uint64
	hasHash  bool
	mint     *http.Cookie // a cookie to set on the response, from a cookie hash policy
	priority cluster.RoutingPriority
	autoHost bool
}

// request returns the cluster request for one attempt.
func (s *selection) request(out *http.Request) cluster.Request {
	return cluster.Request{HTTP: out, AutoHostRewrite: s.autoHost, Hash: s.hash, HasHash: s.hasHash, Priority: s.priority}
}

// once sends x.Out to lc in a single attempt: the path of routes without
// retries or shadows, kept as lean as the request path allows.
func (rt *router) once(x *filter.Exchange, r *route.Route, lc *liveCluster, sel *selection) (*http.Response, error) {
	st := lc.stats
	st.rqTotal.Inc()
	st.rqActive.Inc()
	creq := sel.request(x.Out)
	x.UpstreamStart = time.Now()
	if d := r.Timeout(); d > 0 {
		// The route timeout runs from the upstream request until the
		// response body ends, as Envoy's does.
		creq.Deadline = x.UpstreamStart.Add(d)
	}
	resp, err := lc.c.Send(&creq)
	st.rqActive.Dec()
	x.Endpoint = creq.Endpoint
	x.Attempts += creq.Attempts
	if err != nil {
		return nil, upstreamFailure(st, err)
	}
	st.charge(resp.StatusCode)
	st.rqTime.Observe(float64(time.Since(x.UpstreamStart)) / float64(time.Millisecond))
	removeHopHeaders(resp)
	r.RewriteResponse(resp.Header, x.In, x.Endpoint)
	setServiceTime(resp.Header, x.UpstreamStart)
	return resp, nil
}

// upstreamFailure maps a cluster error to the local reply of DESIGN §6.
func upstreamFailure(st *clusterStats, err error) error {
	var ue *cluster.UpstreamError
	if !errors.As(err, &ue) {
		return err
	}
	switch ue.Kind {
	case cluster.NoHealthyUpstream:
		st.noHealthy.Inc()
		return &filter.ReplyError{Status: http.StatusServiceUnavailable, Flags: filter.FlagNoHealthyUpstream,
			Body: []byte("no healthy upstream"), Details: "no_healthy_upstream"}
	case cluster.ConnectFailure:
		return &filter.ReplyError{Status: http.StatusServiceUnavailable, Flags: filter.FlagUpstreamConnectionFailure,
			Body:    []byte("upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
			Details: "upstream_reset_before_response_started{connection_failure}"}
	case cluster.Timeout:
		if errors.Is(err, context.Canceled) {
			return err
		}
		st.rqTimeout.Inc()
		return &filter.ReplyError{Status: http.StatusGatewayTimeout, Flags: filter.FlagUpstreamRequestTimeout,
			Body: []byte("upstream request timeout"), Details: "upstream_response_timeout"}
	case cluster.Overflow:
		return &filter.ReplyError{Status: http.StatusServiceUnavailable, Flags: filter.FlagUpstreamOverflow,
			Body: []byte("upstream overflow"), Details: "upstream_overflow"}
	case cluster.Reset:
		if errors.Is(err, context.Canceled) {
			return err
		}
		return &filter.ReplyError{Status: http.StatusServiceUnavailable, Flags: filter.FlagUpstreamConnectionTermination,
			Body:    []byte("upstream connect error or disconnect/reset before headers. reset reason: connection termination"),
			Details: "upstream_reset_before_response_started{connection_termination}"}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &filter.ReplyError{Status: http.StatusRequestEntityTooLarge, Body: []byte("payload too large"), Details: "request_payload_too_large"}
	}
	return &filter.ReplyError{Status: http.StatusBadGateway, Flags: filter.FlagUpstreamProtocolError,
		Body: []byte("upstream protocol error"), Details: "upstream_protocol_error"}
}

// hopHeaders are removed from upstream responses (RFC 9110 §7.6.1).
var hopHeaders = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Authenticate"}

func removeHopHeaders(resp *http.Response) {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return
	}
	h := resp.Header
	if c := h["Connection"]; len(c) > 0 {
		for _, v := range c {
			for _, name := range bytes.Split([]byte(v), []byte{','}) {
				if n := string(bytes.TrimSpace(name)); n != "" {
					h.Del(n)
				}
			}
		}
	}
	for _, k := range hopHeaders {
		if _, ok := h[k]; ok {
			delete(h, k)
		}
	}
}

// localResponse builds a response for redirects and direct responses.
func localResponse(req *http.Request, status int, hdr http.Header, body []byte) *http.Response {
	if hdr == nil {
		hdr = make(http.Header, 2)
	}
	if len(body) > 0 && hdr.Get("Content-Type") == "" {
		hdr.Set("Content-Type", "text/plain")
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
