package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/lb"
)

// bufferSize is the transport's per-connection read and write buffer size.
// net/http's 4 KiB default costs extra syscalls on bodies a proxy streams:
// on BenchmarkSend/HTTP1/body=65536, 32 KiB was ~17% faster than 4 KiB and
// 64 KiB only ~5% faster again for twice the memory per pooled connection.
const bufferSize = 32 << 10

// Request is one request sent through a cluster. The caller owns it; Send
// fills in the result fields. A Request must not be used by two Sends at
// once.
type Request struct {
	// HTTP is the outgoing request. Send points URL.Scheme and URL.Host at
	// the picked endpoint and clears RequestURI; Host (the :authority) is
	// left as the caller set it. Hop-by-hop header handling is the
	// caller's job.
	HTTP *http.Request
	// Hash is the request's hash from the route's hash policy, for hashing
	// balancers; valid when HasHash is set.
	Hash    uint64
	HasHash bool
	// AutoHostRewrite sets the Host (the :authority) to the picked
	// endpoint's address, or for an endpoint found by DNS to the name it
	// was resolved from (Envoy's auto_host_rewrite).
	AutoHostRewrite bool
	// Deadline, when set, bounds the exchange until the response body
	// ends (the route timeout): past it Send and body reads fail with Kind
	// Timeout wrapping context.DeadlineExceeded. Setting a deadline here
	// instead of on the request's context saves a timer and a context per
	// request on the synchronous HTTP/1.1 path. Upgrade requests ignore it:
	// an upgraded connection outlives the exchange.
	Deadline time.Time

	// Exclude is the address of an endpoint to avoid when another can
	// take the request: the endpoint the previous attempt used (Envoy's
	// previous_hosts retry host predicate). Empty for none.
	Exclude string
	// Priority is the request's routing priority (the route's priority):
	// it selects the circuit-breaker thresholds the request counts
	// against.
	Priority RoutingPriority

	// Endpoint is set by Send to the address of the endpoint used, or left
	// empty when none was picked.
	Endpoint string
	// Attempts is set by Send to the number of upstream attempts it made:
	// 1 once an endpoint was picked. Send is one attempt; the router's
	// retry loop adds them up.
	Attempts int
}

// Cluster is a named group of upstream endpoints behind one load balancer
// and one connection pool. It is long-lived: endpoints change in place
// through UpdateEndpoints without disturbing requests in flight.
//
// All methods are safe for concurrent use. Send, the data path, takes no
// lock: it reads the balancer's current picker and hands the request to a
// shared http.Transport. UpdateEndpoints is serialized by a mutex that
// Send never touches.
type Cluster struct {
	cfg       Config // defaults applied; Endpoints and TLS owned copies
	scheme    string
	transport *http.Transport
	h1        *h1Pool // synchronous HTTP/1.1 path; nil for HTTP2 or TLS
	dialer    func(ctx context.Context, network, address string) (net.Conn, error)
	tlsConfig *tls.Config // nil without TLS; never modified after New

	closed atomic.Bool

	breakers breakers
	stats    clusterStats     // breaker, outlier and health-check statistics (stats.go)
	hs       hostState        // per-endpoint state, health checks, control loop (hoststate.go)
	outlier  *outlierDetector // nil without Config.OutlierDetection (outlier.go)

	xport transportState // connection limits, counters, middleware (transport.go)
	disc  discovery      // DNS, original-destination and DFP state (discovery.go)

	mu        sync.Mutex // serializes balancer updates (control path only)
	balancer  lb.Balancer
	endpoints atomic.Pointer[[]Endpoint]
}

// New validates cfg, applies defaults and returns a Cluster with cfg's
// endpoints loaded into its balancer. New reads TLS.RootCAFile once.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", cfg.Name, err)
	}
	cfg = cfg.withDefaults()
	eps := cfg.Endpoints
	cfg.Endpoints = nil
	cfg.TLS = cfg.TLS.clone()
	c := &Cluster{cfg: cfg, scheme: "http", dialer: cfg.Dialer}
	if err := c.initHosts(); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", cfg.Name, err)
	}
	if c.dialer == nil {
		// TCP keep-alive on, at Go's default period unless TCPKeepalive
		// says otherwise.
		c.dialer = defaultDialer(cfg.TCPKeepalive)
	}
	protocols := new(http.Protocols)
	c.transport = &http.Transport{
		Proxy:               nil, // a gateway never follows HTTP_PROXY
		DialContext:         c.dialContext,
		DisableCompression:  true, // pass encodings through untouched
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerEndpoint,
		IdleConnTimeout:     cfg.IdleTimeout,
		WriteBufferSize:     bufferSize,
		ReadBufferSize:      bufferSize,
		Protocols:           protocols,
	}
	switch {
	case cfg.Protocol == HTTP1:
		protocols.SetHTTP1(true)
	case cfg.TLS == nil:
		protocols.SetUnencryptedHTTP2(true) // h2c, prior knowledge
	default:
		protocols.SetHTTP2(true)
	}
	if cfg.Protocol == HTTP2 {
		c.transport.HTTP2 = cfg.HTTP2.transportConfig()
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.clientConfig(cfg.Protocol)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cfg.Name, err)
		}
		c.tlsConfig = tc
		c.scheme = "https"
		c.transport.DialTLSContext = c.dialTLSContext
	}
	if cfg.Protocol == HTTP1 && cfg.TLS == nil {
		c.h1 = newH1Pool(c)
	}
	if err := c.initTransport(); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", cfg.Name, err)
	}
	var err error
	if c.balancer, eps, err = c.initDiscovery(eps); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", cfg.Name, err)
	}
	if err := c.UpdateEndpoints(eps); err != nil {
		c.stopDiscovery()
		return nil, err
	}
	c.startDiscovery()
	return c, nil
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Config returns the cluster's configuration with defaults applied and
// Endpoints set to the current endpoint set (for StrictDNS and
// LogicalDNS, the configured names). The result is a copy.
func (c *Cluster) Config() Config {
	cfg := c.cfg
	cfg.Endpoints = c.configEndpoints()
	cfg.TLS = cfg.TLS.clone()
	cfg.Middleware = slices.Clone(cfg.Middleware)
	return cfg
}

// Endpoints returns a copy of the current endpoint set.
func (c *Cluster) Endpoints() []Endpoint {
	return cloneEndpoints(*c.endpoints.Load())
}

// UpdateEndpoints validates eps and replaces the endpoint set. The
// balancer receives the update serially and publishes a new picker;
// requests in flight finish on the endpoints they picked. An invalid set
// is rejected whole and the current one keeps serving. Idle connections
// of the synchronous HTTP/1.1 path to removed endpoints are closed; those
// in flight close when their response ends. The Transport's connections
// to removed endpoints are not closed eagerly: they close when the peer
// does or after IdleTimeout.
func (c *Cluster) UpdateEndpoints(eps []Endpoint) error {
	if err := validateEndpoints(eps); err != nil {
		return fmt.Errorf("cluster %q: %w", c.cfg.Name, err)
	}
	own := cloneEndpoints(eps)
	if own == nil {
		own = []Endpoint{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endpoints.Store(&own)
	c.syncHosts(own)
	c.republish(true) // the balancer gets own, health checks and ejections applied
	if c.h1 != nil {
		c.h1.retire(own)
	}
	return nil
}

// lbView is the balancer's view of eps, with discovery health only;
// republish applies active health checks and outlier ejections.
func (c *Cluster) lbView(eps []Endpoint) []lb.Endpoint {
	view := make([]lb.Endpoint, len(eps))
	for i := range eps {
		ep := &eps[i]
		view[i] = lb.Endpoint{
			Address:        ep.Address,
			Weight:         ep.Weight,
			Priority:       ep.Priority,
			Locality:       ep.Locality,
			LocalityWeight: ep.LocalityWeight,
			Healthy:        ep.Health.usable(),
			Degraded:       ep.Health == Degraded,
		}
	}
	return view
}

// Send picks an endpoint and sends r.HTTP to it, returning the response
// once its headers have arrived. The caller must close the response body.
// The request context bounds the whole exchange: its deadline is the route
// timeout. On failure the error is an *UpstreamError.
//
// Send makes one attempt; retries build on it. On an HTTP/1.1 cluster
// without TLS, a request with no body that is not an upgrade takes a
// synchronous path: the exchange runs on the caller's goroutine over a
// pooled connection, parsed by http.ReadResponse, and a pooled connection
// the server closed while idle is replaced once, as the Transport does.
// Every other request goes through the cluster's http.Transport. Either
// way Send allocates little beyond net/http's parsing unless the
// balancer's pick carries a Done callback, in which case the response
// body is wrapped so that Done runs when the body ends. A 101 Switching
// Protocols response (WebSocket) keeps its writable body untouched.
func (c *Cluster) Send(r *Request) (*http.Response, error) {
	req := r.HTTP
	if c.closed.Load() {
		return nil, &UpstreamError{Cluster: c.cfg.Name, Kind: NoHealthyUpstream, Err: ErrClosed}
	}
	if req == nil || req.URL == nil {
		return nil, &UpstreamError{Cluster: c.cfg.Name, Kind: ProtocolError, Err: errNoURL}
	}
	adm, err := c.admit(r)
	if err != nil {
		return nil, err
	}
	info := lb.PickInfo{Request: req, Hash: r.Hash, HasHash: r.HasHash}
	if r.Exclude != "" {
		info.Exclude = &lb.Endpoint{Address: r.Exclude}
	}
	picked, err := c.balancer.Picker().Pick(info)
	if err != nil {
		adm.abort()
		return nil, &UpstreamError{Cluster: c.cfg.Name, Kind: NoHealthyUpstream, Err: err}
	}
	addr := picked.Endpoint.Address
	adm.picked(addr)
	r.Endpoint = addr
	r.Attempts = 1
	req.URL.Scheme = c.scheme
	req.URL.Host = addr
	req.RequestURI = ""
	if r.AutoHostRewrite {
		req.Host = c.rewriteHost(addr)
	}

	var start time.Time
	if picked.Done != nil {
		start = time.Now()
	}
	var resp *http.Response
	deadline := r.Deadline
	if c.xport.wrapped { // middleware or per-connection limits
		if isUpgrade(req) {
			deadline = time.Time{}
		}
		resp, err = c.sendWrapped(req, deadline)
	} else if c.h1 != nil && h1Eligible(req) {
		resp, err = c.h1.roundTrip(req.Context(), req, addr, deadline)
	} else if !deadline.IsZero() && !isUpgrade(req) {
		resp, err = roundTripUntil(c.transport, req, deadline)
	} else {
		deadline = time.Time{}
		resp, err = c.transport.RoundTrip(req)
	}
	if err != nil {
		ctxErr := requestCtxErr(req.Context(), !deadline.IsZero(), err)
		ue := &UpstreamError{
			Cluster:  c.cfg.Name,
			Endpoint: addr,
			Kind:     classify(err, ctxErr),
			Err:      wrapCtxErr(err, ctxErr),
		}
		adm.failed(ue.Kind)
		if picked.Done != nil {
			picked.Done(lb.DoneInfo{Err: ue, Duration: time.Since(start)})
		}
		return nil, ue
	}
	track := trackBody(resp)
	adm.responded(resp.StatusCode, track)
	if picked.Done != nil {
		if resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
			picked.Done(lb.DoneInfo{Status: resp.StatusCode, Duration: time.Since(start)})
		} else {
			resp.Body = &doneBody{rc: resp.Body, done: picked.Done, start: start, status: resp.StatusCode, adm: adm, track: track}
		}
	} else if track {
		resp.Body = &doneBody{rc: resp.Body, adm: adm, track: true}
	}
	return resp, nil
}

var errNoURL = errors.New("request has no URL")

// cancelBody releases a deadline context when its body ends.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.cancel()
	}
	return n, err
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// isUpgrade reports whether req asks for a protocol upgrade.
func isUpgrade(req *http.Request) bool {
	_, ok := req.Header["Upgrade"]
	return ok
}

// CloseIdleConnections closes pooled connections that are idle, without
// refusing later requests. A gateway calls it on a cluster it replaced,
// while requests that picked the old cluster may still be about to send.
func (c *Cluster) CloseIdleConnections() {
	c.transport.CloseIdleConnections()
	if c.h1 != nil {
		c.h1.closeIdle(false)
	}
}

// Close marks the cluster closed and closes its idle pooled connections.
// Requests in flight finish; later Sends fail with Kind NoHealthyUpstream
// wrapping ErrClosed. Close is idempotent; each call closes the idle
// connections again, including those released by requests that were in
// flight at an earlier call. It stops the discovery source's goroutines
// and waits for them, and closes the balancer when it is an io.Closer. It
// always returns nil.
func (c *Cluster) Close() error {
	c.closed.Store(true)
	c.stopDiscovery()
	c.stopHosts()
	if cl, ok := c.balancer.(io.Closer); ok {
		cl.Close() // stops a slow-start timer
	}
	c.transport.CloseIdleConnections()
	if c.h1 != nil {
		c.h1.closeIdle(true)
	}
	return nil
}

// dialContext opens a TCP connection within ConnectTimeout, marking
// failures as connect errors for classify.
func (c *Cluster) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	conn, err := c.dialConn(dctx, network, addr)
	if err != nil {
		return nil, c.connectErr(ctx, dctx, err)
	}
	return conn, nil
}

// dialTLSContext dials and completes the TLS handshake, both within
// ConnectTimeout, so handshake failures classify as connect failures.
func (c *Cluster) dialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	raw, err := c.dialConn(dctx, network, addr)
	if err != nil {
		return nil, c.connectErr(ctx, dctx, err)
	}
	cfg := c.tlsConfig
	if cfg.ServerName == "" {
		host, err := c.serverName(addr)
		if err != nil {
			raw.Close()
			return nil, &connectError{err: err}
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		raw.Close()
		c.xport.stats.connectFail.Add(1)
		return nil, c.connectErr(ctx, dctx, fmt.Errorf("tls handshake: %w", err))
	}
	return tc, nil
}

// connectErr marks err as a connect failure, replacing the bare deadline
// error when it was ConnectTimeout, not the caller, that expired.
func (c *Cluster) connectErr(parent, dctx context.Context, err error) error {
	if parent.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
		return &connectError{err: &connectTimeoutError{d: c.cfg.ConnectTimeout}}
	}
	return &connectError{err: err}
}

// doneBody reports the end of a response body to the balancer's Done
// callback and, when track is set, to the circuit breakers, exactly once:
// at EOF, on a read error, or at Close.
type doneBody struct {
	rc     io.ReadCloser
	done   func(lb.DoneInfo) // nil when the body is only tracked
	start  time.Time
	status int
	adm    admission // ended with the body when track is set
	track  bool
	fired  atomic.Bool
}

func (b *doneBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		if err == io.EOF {
			b.finish(nil)
		} else {
			b.finish(err)
		}
	}
	return n, err
}

func (b *doneBody) Close() error {
	err := b.rc.Close()
	b.finish(nil)
	return err
}

func (b *doneBody) finish(err error) {
	if b.fired.CompareAndSwap(false, true) {
		if b.track {
			b.adm.end()
		}
		if b.done != nil {
			b.done(lb.DoneInfo{Err: err, Status: b.status, Duration: time.Since(b.start)})
		}
	}
}
