package xds

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/porticoproxy/portico"
)

// Defaults of ClientConfig.
const (
	// DefaultInitialFetchTimeout is Envoy's initial_fetch_timeout.
	DefaultInitialFetchTimeout = 15 * time.Second
	// DefaultDoesNotExistTimeout is how long a requested resource may take
	// to arrive before it is taken not to exist (the xDS protocol's
	// recommended 15 s).
	DefaultDoesNotExistTimeout = 15 * time.Second
)

// Backoff is an exponential backoff policy: the n-th consecutive delay is
// Base·2ⁿ⁻¹ capped at Max, and each is drawn uniformly from its upper
// half (jitter), so that many clients do not retry in step. It is plain
// data; the zero value means the default of the field that holds it.
type Backoff struct {
	Base, Max time.Duration
}

// delay returns the jittered delay before attempt n (n ≥ 1).
func (b Backoff) delay(n int, r *rand.Rand) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if d <= 1 {
		return d
	}
	return d/2 + time.Duration(r.Int64N(int64(d/2)+1))
}

func (b Backoff) validate(field string) error {
	if b.Base < 0 || b.Max < 0 {
		return fmt.Errorf("%s: negative duration", field)
	}
	if b.Max != 0 && b.Max < b.Base {
		return fmt.Errorf("%s: max %v is less than base %v", field, b.Max, b.Base)
	}
	return nil
}

func (b Backoff) or(def Backoff) Backoff {
	if b.Base == 0 {
		b.Base = def.Base
	}
	if b.Max == 0 {
		b.Max = max(def.Max, b.Base)
	}
	return b
}

var (
	// defaultReconnect is Envoy's gRPC stream retry policy.
	defaultReconnect = Backoff{Base: 500 * time.Millisecond, Max: 30 * time.Second}
	defaultNACK      = Backoff{Base: 500 * time.Millisecond, Max: 10 * time.Second}
)

// ClientConfig configures an xDS client. It is plain data; NewClient
// copies it.
type ClientConfig struct {
	// Target is the management server's gRPC target, e.g.
	// "127.0.0.1:18000". Required.
	Target string
	// DialOptions are passed to grpc.NewClient after the client's own
	// (plaintext credentials, connection backoff from ReconnectBackoff,
	// 64 MiB messages), so they override them; set transport credentials
	// here for anything but loopback and sidecar sockets.
	DialOptions []grpc.DialOption
	// Node identifies this gateway to the server (node.id keys
	// go-control-plane's snapshot cache). It is sent on the first request
	// of every stream; user_agent_name defaults to "portico".
	Node *corev3.Node
	// Mode is the transport variant; default ADS.
	Mode Mode
	// Translator translates received resources; nil means a strict
	// Translator with default filters. Its Secrets lookup, if any, is
	// asked for the secrets SDS has not delivered (static secrets).
	Translator *Translator
	// DisableLDS and DisableCDS leave listeners, or clusters, out of the
	// subscription, for a bootstrap whose dynamic_resources has only one
	// of lds_config and cds_config. The client never touches resources it
	// did not add.
	DisableLDS, DisableCDS bool
	// InitialFetchTimeout bounds warming: a cluster waits this long for
	// its endpoints, a listener for its route configurations, before it
	// serves without them (Envoy's initial_fetch_timeout). Zero means
	// DefaultInitialFetchTimeout; negative means wait forever.
	InitialFetchTimeout time.Duration
	// DoesNotExistTimeout is how long a requested route configuration,
	// endpoint assignment or secret may take to arrive before the client
	// takes it not to exist: /config_dump shows DOES_NOT_EXIST and what
	// waits for it stops waiting. Zero means DefaultDoesNotExistTimeout;
	// negative disables the timer.
	DoesNotExistTimeout time.Duration
	// ReconnectBackoff paces reconnection after a stream fails; default
	// 500 ms doubling up to 30 s (Envoy's). It resets once a stream
	// delivers a response.
	ReconnectBackoff Backoff
	// NACKBackoff paces NACKs of an update identical to the one just
	// NACKed: go-control-plane answers a NACK by resending the same
	// version at once, forever, so the client waits before each repeated
	// NACK instead of spinning; default 500 ms doubling up to 10 s. A
	// different update, or a change of subscription, is answered at once.
	NACKBackoff Backoff
	// OnNACK, if set, is called for every rejected update: once per
	// rejected resource (NACK.Resource names it), or once for the whole
	// response when it cannot be read (duplicate names, undecodable
	// resources). A resend of an update already rejected does not call it
	// again. It is called from the client's goroutine and must not block.
	OnNACK func(NACK)
	// Logger receives the client's events (connections, NACKs, warming
	// timeouts); nil discards them.
	Logger *slog.Logger
}

// Validate reports whether cfg can build a client.
func (cfg *ClientConfig) Validate() error {
	if cfg.Target == "" {
		return errors.New("xds: client: target is required")
	}
	if cfg.Mode < ADS || cfg.Mode > DeltaPerType {
		return fmt.Errorf("xds: client: unknown mode %d", cfg.Mode)
	}
	if err := cfg.ReconnectBackoff.validate("reconnect backoff"); err != nil {
		return fmt.Errorf("xds: client: %w", err)
	}
	if err := cfg.NACKBackoff.validate("NACK backoff"); err != nil {
		return fmt.Errorf("xds: client: %w", err)
	}
	if cfg.DisableLDS && cfg.DisableCDS {
		return errors.New("xds: client: both LDS and CDS are disabled")
	}
	return nil
}

// Client is an xDS client that drives a Gateway: it subscribes to
// listeners and clusters (wildcard), to the route configurations,
// endpoint assignments and secrets they reference, translates what the
// management server sends and applies it through the gateway's
// per-resource API, clusters and endpoints before the listeners and routes
// that use them, removals last.
//
// A rejected resource keeps its previous version serving; the rejection is
// NACKed with the translator's error, shown in the gateway's /config_dump
// and counted in its stats (see portico.DiscoveryStats).
//
// Run owns all of the client's state; the other methods are safe for
// concurrent use.
type Client struct {
	gw    *portico.Gateway
	cfg   ClientConfig
	tr    Translator
	log   *slog.Logger
	stats *portico.DiscoveryStats
	node  *corev3.Node
	seed  maphash.Seed

	running atomic.Bool
	secrets secretStore

	// Owned by Run's goroutine.
	types     [numRT]*subState
	live      liveState
	rng       *rand.Rand
	nextWarm  time.Time // earliest warming deadline, zero if none
	fetchWait time.Duration
	dneWait   time.Duration
}

// NewClient validates cfg and returns a client that applies what the
// management server sends to gw. Nothing happens until Run.
func NewClient(gw *portico.Gateway, cfg ClientConfig) (*Client, error) {
	if gw == nil {
		return nil, errors.New("xds: client: nil gateway")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{
		gw:    gw,
		cfg:   cfg,
		log:   cfg.Logger,
		stats: gw.DiscoveryStats(),
		seed:  maphash.MakeSeed(),
		rng:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	c.cfg.ReconnectBackoff = cfg.ReconnectBackoff.or(defaultReconnect)
	c.cfg.NACKBackoff = cfg.NACKBackoff.or(defaultNACK)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Translator != nil {
		c.tr = *cfg.Translator
	}
	static := c.tr.Secrets
	c.tr.Secrets = func(name string) (*Secret, bool) {
		if s, ok := c.secrets.get(name); ok {
			return s, true
		}
		if static != nil {
			return static(name)
		}
		return nil, false
	}
	c.node = &corev3.Node{}
	if cfg.Node != nil {
		c.node = proto.Clone(cfg.Node).(*corev3.Node)
	}
	if c.node.UserAgentName == "" {
		c.node.UserAgentName = "portico"
	}
	c.node.ClientFeatures = appendFeature(c.node.ClientFeatures, "xds.config.resource-in-sotw")
	c.fetchWait = timeoutOr(cfg.InitialFetchTimeout, DefaultInitialFetchTimeout)
	c.dneWait = timeoutOr(cfg.DoesNotExistTimeout, DefaultDoesNotExistTimeout)
	for t := range numRT {
		ts := &subState{t: t, entries: map[string]*cacheEntry{}}
		switch {
		case t == rtListener:
			ts.enabled = !cfg.DisableLDS
		case t == rtCluster:
			ts.enabled = !cfg.DisableCDS
		default:
			ts.names = map[string]bool{}
		}
		c.types[t] = ts
	}
	c.live = newLiveState()
	return c, nil
}

func timeoutOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0 // disabled / forever
	}
	return d
}

func appendFeature(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}

// delta reports whether the client speaks incremental xDS.
func (c *Client) delta() bool { return c.cfg.Mode == DeltaADS || c.cfg.Mode == DeltaPerType }

// aggregated reports whether all types share one stream.
func (c *Client) aggregated() bool { return c.cfg.Mode == ADS || c.cfg.Mode == DeltaADS }

// Run subscribes, applies updates to the gateway through its
// per-resource API and reconnects with backoff until ctx ends; it returns
// ctx's error. It may be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("xds: client: Run called twice")
	}
	rb := c.cfg.ReconnectBackoff
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: rb.Base, Multiplier: 2, Jitter: 0.2, MaxDelay: rb.Max},
			MinConnectTimeout: 20 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
	conn, err := grpc.NewClient(c.cfg.Target, append(opts, c.cfg.DialOptions...)...)
	if err != nil {
		return fmt.Errorf("xds: client: %w", err)
	}
	defer conn.Close()

	events := make(chan streamEvent)
	var (
		s        *xdsSession
		retryAt  time.Time
		failures int
	)
	lost := func(err error) {
		c.disconnected(s, err)
		s.stop()
		s = nil
		failures++
		retryAt = time.Now().Add(rb.delay(failures, c.rng))
	}
	defer func() {
		if s != nil {
			s.stop()
			c.stats.SetConnected(false)
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if s == nil && !now.Before(retryAt) {
			s = c.connect(ctx, conn, events)
		}
		if s != nil {
			if err := c.flush(s, now); err != nil {
				lost(err)
				continue
			}
		}
		wake := c.nextWake(s, retryAt, now)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wake.Sub(now))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-events:
			if ev.s != s {
				continue // from a session already torn down
			}
			if ev.err != nil {
				lost(ev.err)
				continue
			}
			if !s.healthy {
				s.healthy = true
				failures = 0
			}
			if ev.sotw != nil {
				c.handleSotW(ev.sotw, ev.t, time.Now())
			} else {
				c.handleDelta(ev.delta, ev.t, time.Now())
			}
		case <-timer.C:
			c.expire(time.Now())
		}
	}
}

// connect starts a session; its streams open when the first request of
// each is flushed. Stream state starts afresh: nonces are stream-scoped,
// versions and subscriptions are kept.
func (c *Client) connect(ctx context.Context, conn *grpc.ClientConn, events chan<- streamEvent) *xdsSession {
	s := newXDSSession(ctx, conn, events, c.aggregated(), c.delta())
	for _, ts := range c.types {
		ts.resetStream()
		ts.dirty = ts.wants()
	}
	c.log.Debug("xds: connecting", "target", c.cfg.Target)
	return s
}

// disconnected records a failed stream.
func (c *Client) disconnected(s *xdsSession, err error) {
	c.stats.SetConnected(false)
	level := slog.LevelWarn
	if !s.healthy {
		level = slog.LevelDebug // the server is (still) down: one line per attempt is noise
	}
	c.log.Log(context.Background(), level, "xds: stream failed", "target", c.cfg.Target, "err", err)
	for _, ts := range c.types {
		if !ts.started {
			continue
		}
		api := rtInfo[ts.t].api
		if rtInfo[ts.t].wildcard {
			c.stats.Count(api, "", portico.UpdateFailure)
			continue
		}
		for name := range ts.names {
			c.stats.Count(api, name, portico.UpdateFailure)
		}
	}
}

// nextWake returns when the loop must next run on its own: a reconnect, a
// paced request, a does-not-exist timer or a warming deadline.
func (c *Client) nextWake(s *xdsSession, retryAt, now time.Time) time.Time {
	wake := now.Add(time.Hour)
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(wake) {
			wake = t
		}
	}
	if s == nil {
		earlier(retryAt)
	} else {
		for _, ts := range c.types {
			if ts.dirty {
				earlier(ts.notBefore)
			}
			if c.dneWait > 0 {
				for _, at := range ts.requested {
					earlier(at.Add(c.dneWait))
				}
			}
		}
	}
	earlier(c.nextWarm)
	if wake.Before(now) {
		wake = now
	}
	return wake
}

// expire runs the timers: does-not-exist and warming deadlines.
func (c *Client) expire(now time.Time) {
	changed := false
	if c.dneWait > 0 {
		for _, ts := range c.types {
			for name, at := range ts.requested {
				if now.Sub(at) < c.dneWait {
					continue
				}
				delete(ts.requested, name)
				e := ts.entry(name)
				if e.cur != nil || e.missing {
					continue
				}
				e.missing = true
				changed = true
				c.log.Warn("xds: resource does not exist", "type", rtInfo[ts.t].api, "resource", name)
				c.gw.RecordResourceState(rtInfo[ts.t].kind, name, portico.ResourceState{Status: portico.StatusDoesNotExist})
			}
		}
	}
	if changed || (!c.nextWarm.IsZero() && !now.Before(c.nextWarm)) {
		c.sync(now)
	}
}

// secretStore holds the SDS secrets received, for the translator's
// Secrets lookup, which may be called from any goroutine.
type secretStore struct {
	mu sync.RWMutex
	m  map[string]*Secret
}

func (s *secretStore) get(name string) (*Secret, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sec, ok := s.m[name]
	return sec, ok
}

func (s *secretStore) set(name string, sec *Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec == nil {
		delete(s.m, name)
		return
	}
	if s.m == nil {
		s.m = map[string]*Secret{}
	}
	s.m[name] = sec
}
