package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/porticoproxy/portico/health"
	"github.com/porticoproxy/portico/lb"
)

// Defaults applied by New to zero-valued Config fields.
const (
	// DefaultConnectTimeout is Envoy's connect_timeout default.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultIdleTimeout is Envoy's upstream idle_timeout default.
	DefaultIdleTimeout = time.Hour
	// DefaultMaxIdleConnsPerEndpoint is sized for a proxy: a small pool
	// (http.DefaultTransport keeps 2) forces a new connection for nearly
	// every concurrent request.
	DefaultMaxIdleConnsPerEndpoint = 1024
)

// Protocol is the HTTP protocol spoken to a cluster's endpoints.
type Protocol int

const (
	// HTTP1 is HTTP/1.1, with keep-alive pooling. It is the default and the
	// only protocol that carries Connection: Upgrade (WebSocket) requests.
	HTTP1 Protocol = iota
	// HTTP2 is HTTP/2: negotiated with ALPN "h2" when Config.TLS is set,
	// else cleartext h2c with prior knowledge. Requests multiplex over
	// few connections.
	HTTP2
)

// String returns "HTTP1" or "HTTP2".
func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "HTTP1"
	case HTTP2:
		return "HTTP2"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// HealthStatus is an endpoint's health as reported by its discovery source
// (EDS health_status) or a health checker. It mirrors Envoy's
// core.v3.HealthStatus.
type HealthStatus int

const (
	// Unknown counts as healthy, as in Envoy: static endpoints start here.
	Unknown HealthStatus = iota
	// Healthy endpoints take traffic.
	Healthy
	// Unhealthy endpoints take traffic only in panic mode.
	Unhealthy
	// Draining endpoints take no new traffic while others are healthy.
	Draining
	// HealthCheckTimeout endpoints failed a health check by timing out
	// (Envoy's TIMEOUT, renamed because ErrorKind has Timeout); treated as
	// unhealthy.
	HealthCheckTimeout
	// Degraded endpoints can serve but take traffic only when the
	// healthy ones cannot carry it all, as in Envoy: they count toward
	// their priority level's availability and panic threshold, and take
	// the degraded share of the priority load (see package lb). An active
	// HTTP health check whose passing response carries x-envoy-degraded
	// makes an endpoint degraded too (health.DegradedHeader). Failing a
	// check or an outlier ejection still makes a degraded endpoint
	// unhealthy.
	Degraded
)

// String returns the status name, e.g. "Healthy".
func (h HealthStatus) String() string {
	switch h {
	case Unknown:
		return "Unknown"
	case Healthy:
		return "Healthy"
	case Unhealthy:
		return "Unhealthy"
	case Draining:
		return "Draining"
	case HealthCheckTimeout:
		return "HealthCheckTimeout"
	case Degraded:
		return "Degraded"
	}
	return "HealthStatus(" + strconv.Itoa(int(h)) + ")"
}

// usable reports whether the balancer may send traffic to an endpoint of
// this status outside panic mode: as a healthy endpoint, or as a degraded
// one.
func (h HealthStatus) usable() bool { return h == Unknown || h == Healthy || h == Degraded }

// Endpoint is one upstream address of a cluster. Values are copied in and
// out of a Cluster, Metadata included, so a caller's Endpoint is never
// shared with the data path.
type Endpoint struct {
	// Address is host:port. The host is an IP address or a name resolved
	// by the dialer at connect time.
	Address string
	// Weight is the load-balancing weight; zero means 1.
	Weight uint32
	// Priority is the priority level; 0 is the highest. Lower levels take
	// the share of traffic that higher levels cannot: Envoy's priority
	// load with the overprovisioning factor 1.4 (see package lb).
	Priority uint32
	// Locality names the endpoint's locality (region/zone/sub-zone).
	Locality string
	// LocalityWeight is the weight of the endpoint's locality within its
	// priority level (Envoy's LocalityLbEndpoints.load_balancing_weight);
	// see lb.Endpoint.LocalityWeight. Zero everywhere means no locality
	// weighting.
	LocalityWeight uint32
	// Health is the endpoint's health status; the zero value is Unknown,
	// which counts as healthy.
	Health HealthStatus
	// Metadata carries opaque key/value data (Envoy filter metadata) for
	// subset balancing and filters.
	Metadata map[string]string
}

// TLSConfig configures TLS to a cluster's endpoints. Its zero value
// verifies endpoints against the system roots, with SNI set to the
// endpoint's host.
type TLSConfig struct {
	// ServerName is the SNI name sent and the name the certificate is
	// verified against; empty means the endpoint address's host.
	ServerName string
	// RootCAs is a PEM bundle of trusted roots; with RootCAFile empty too,
	// the system roots are used.
	RootCAs []byte
	// RootCAFile is a file holding a PEM bundle of trusted roots, read
	// once by New. Its certificates are added to RootCAs.
	RootCAFile string
	// InsecureSkipVerify disables certificate verification. It is for
	// tests only: it makes the connection open to interception.
	InsecureSkipVerify bool
	// Certificate is the client certificate chain presented to endpoints
	// (mTLS), PEM; CertificateFile is the same read from a file by New.
	// Set one of them together with one of Key and KeyFile.
	Certificate     []byte
	CertificateFile string
	// Key is the client certificate's private key, PEM; KeyFile is the
	// same read from a file by New.
	Key     []byte
	KeyFile string
	// MatchSubjectAltNames, when not empty, replaces the host name check:
	// the endpoint's certificate must chain to the trusted roots and carry
	// a subject alternative name matched by at least one entry (Envoy's
	// match_typed_subject_alt_names). A mismatch fails the handshake, a
	// connect failure.
	MatchSubjectAltNames []SANMatcher
}

// Config describes a cluster. Zero values mean the documented defaults.
// A Config is a plain value with no synchronization of its own; New copies
// what it needs, so the caller may reuse or change it afterwards.
type Config struct {
	// Name identifies the cluster in errors, logs and stats. Required.
	Name string
	// Endpoints is the static endpoint set, or an EDS cluster's initial
	// one, replaced later through Cluster.UpdateEndpoints. For StrictDNS
	// and LogicalDNS it lists the host names to resolve; OriginalDst and
	// DynamicForwardProxy clusters take none.
	Endpoints []Endpoint
	// Protocol is the upstream HTTP protocol; default HTTP1.
	Protocol Protocol
	// ConnectTimeout bounds dialing plus the TLS handshake; default
	// DefaultConnectTimeout (5 s).
	ConnectTimeout time.Duration
	// IdleTimeout closes pooled connections idle this long; default
	// DefaultIdleTimeout (1 h).
	IdleTimeout time.Duration
	// MaxIdleConnsPerEndpoint is the keep-alive pool size per endpoint;
	// default DefaultMaxIdleConnsPerEndpoint (1024).
	MaxIdleConnsPerEndpoint int
	// TLS, when set, makes connections to endpoints use TLS.
	TLS *TLSConfig
	// Balancer builds the cluster's load balancer; default
	// lb.NewRoundRobin.
	Balancer lb.Builder
	// Dialer opens TCP connections to endpoints; default a net.Dialer with
	// TCP keep-alive. It is called with a context bounded by
	// ConnectTimeout and must return when the context is done.
	Dialer func(ctx context.Context, network, address string) (net.Conn, error)
	// CircuitBreakers are the cluster's circuit-breaker thresholds.
	CircuitBreakers CircuitBreakers
	// OutlierDetection, when set, ejects failing endpoints from load
	// balancing (passive health checking); nil is off, as in Envoy.
	OutlierDetection *OutlierDetection
	// HealthChecks are active health checks, each run against every
	// endpoint; an endpoint takes traffic only while all of them pass.
	// The cluster sets each check's OnCheck, calling the caller's after
	// its own.
	HealthChecks []health.Config

	// Type is the discovery source of the cluster's endpoints; default
	// Static. See Type for what each source needs from Endpoints.
	Type Type
	// Resolver resolves endpoint host names for StrictDNS and LogicalDNS;
	// default net.DefaultResolver.
	Resolver Resolver
	// DNSLookupFamily selects the address families StrictDNS and
	// LogicalDNS resolve; default DNSAuto, Envoy's default.
	DNSLookupFamily DNSLookupFamily
	// DNSRefreshRate is how often StrictDNS and LogicalDNS re-resolve;
	// default DefaultDNSRefreshRate (Envoy's dns_refresh_rate, 5 s).
	DNSRefreshRate time.Duration
	// DNSFailureRefreshRate is the backoff after a failed resolution
	// (Envoy's dns_failure_refresh_rate); the zero value retries at
	// DNSRefreshRate, as Envoy does when it is unset.
	DNSFailureRefreshRate RefreshRate
	// RespectDNSTTL makes StrictDNS and LogicalDNS re-resolve when the
	// answer's TTL runs out instead of at DNSRefreshRate (Envoy's
	// respect_dns_ttl); a zero or unknown TTL falls back to DNSRefreshRate.
	// TTLs are known to a TTLResolver, and to a *net.Resolver, which then
	// resolves with Go's built-in DNS client.
	RespectDNSTTL bool
	// OriginalDst configures the OriginalDst type.
	OriginalDst OriginalDstConfig
	// DNSCache is the DynamicForwardProxy type's DNS cache, which several
	// clusters may share; nil means a cache of the cluster's own with
	// default settings, closed by Close.
	DNSCache *DNSCache

	// MaxRequestsPerConnection closes a connection once it has served
	// this many requests (streams, for HTTP/2); zero means unlimited,
	// Envoy's default (common_http_protocol_options).
	MaxRequestsPerConnection uint32
	// MaxConnectionDuration retires a connection this long after it was
	// established: it takes no new request, and closes once idle; zero
	// means none, Envoy's default.
	MaxConnectionDuration time.Duration
	// HTTP2 tunes the HTTP/2 connections of Protocol HTTP2 (Envoy's
	// http2_protocol_options); the zero value keeps Go's defaults. It is
	// ignored for HTTP1.
	HTTP2 HTTP2Options
	// TCPKeepalive sets TCP keep-alive probing on connections made by the
	// default dialer (Envoy's upstream_connection_options.tcp_keepalive);
	// nil keeps Go's default keep-alive. It does not apply to Dialer.
	TCPKeepalive *TCPKeepalive
	// Middleware wraps every upstream attempt: Middleware[0] is the
	// outermost, and the innermost wraps the cluster's own round trip
	// (its synchronous HTTP/1.1 pool or its http.Transport). Each Send
	// runs the chain once, with the request already pointed at the picked
	// endpoint. The returned RoundTrippers are shared by all requests and
	// must be safe for concurrent use. A middleware error is classified
	// like a transport error; an *UpstreamError keeps its Kind.
	Middleware []func(http.RoundTripper) http.RoundTripper
}

// Validate reports every problem with c, each naming its field path
// (for example "endpoints[2].address: missing port"), joined with
// errors.Join. It does not read RootCAFile.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name: must not be empty"))
	}
	if c.Protocol != HTTP1 && c.Protocol != HTTP2 {
		errs = append(errs, fmt.Errorf("protocol: unknown %v", c.Protocol))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("connect_timeout: negative %v", c.ConnectTimeout))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("idle_timeout: negative %v", c.IdleTimeout))
	}
	if c.MaxIdleConnsPerEndpoint < 0 {
		errs = append(errs, fmt.Errorf("max_idle_conns_per_endpoint: negative %d", c.MaxIdleConnsPerEndpoint))
	}
	if c.TLS != nil && len(c.TLS.RootCAs) > 0 {
		if !x509.NewCertPool().AppendCertsFromPEM(c.TLS.RootCAs) {
			errs = append(errs, errors.New("tls.root_cas: no PEM certificates found"))
		}
	}
	errs = append(errs, c.CircuitBreakers.Default.validate("circuit_breakers.default")...)
	errs = append(errs, c.CircuitBreakers.High.validate("circuit_breakers.high")...)
	if c.OutlierDetection != nil {
		errs = append(errs, c.OutlierDetection.validate("outlier_detection")...)
	}
	for i := range c.HealthChecks {
		if err := c.HealthChecks[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("health_checks[%d]: %w", i, err))
		}
	}
	errs = appendEndpointErrors(errs, c.Endpoints)
	errs = c.appendDiscoveryErrors(errs)
	errs = c.appendTransportErrors(errs)
	return errors.Join(errs...)
}

// validateEndpoints checks an endpoint set on its own.
func validateEndpoints(eps []Endpoint) error {
	return errors.Join(appendEndpointErrors(nil, eps)...)
}

func appendEndpointErrors(errs []error, eps []Endpoint) []error {
	seen := make(map[string]int, len(eps))
	for i := range eps {
		ep := &eps[i]
		if err := checkAddress(ep.Address); err != nil {
			errs = append(errs, fmt.Errorf("endpoints[%d].address: %w", i, err))
		} else if j, dup := seen[ep.Address]; dup {
			errs = append(errs, fmt.Errorf("endpoints[%d].address: %q duplicates endpoints[%d]", i, ep.Address, j))
		} else {
			seen[ep.Address] = i
		}
		if ep.Health < Unknown || ep.Health > Degraded {
			errs = append(errs, fmt.Errorf("endpoints[%d].health: unknown %v", i, ep.Health))
		}
	}
	return errs
}

func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q: missing host", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("%q: port must be 1-65535", addr)
	}
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxIdleConnsPerEndpoint == 0 {
		c.MaxIdleConnsPerEndpoint = DefaultMaxIdleConnsPerEndpoint
	}
	if c.Balancer == nil && !c.Type.providesBalancer() {
		c.Balancer = lb.NewRoundRobin
	}
	c.discoveryDefaults()
	c.CircuitBreakers.Default = c.CircuitBreakers.Default.withDefaults()
	c.CircuitBreakers.High = c.CircuitBreakers.High.withDefaults()
	if c.OutlierDetection != nil {
		od := *c.OutlierDetection // owned copy; defaults apply in newOutlierDetector
		c.OutlierDetection = &od
	}
	c.HealthChecks = slices.Clone(c.HealthChecks)
	return c
}

// rootPool builds the trusted root pool, or nil for the system roots.
func (t *TLSConfig) rootPool() (*x509.CertPool, error) {
	if len(t.RootCAs) == 0 && t.RootCAFile == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if len(t.RootCAs) > 0 && !pool.AppendCertsFromPEM(t.RootCAs) {
		return nil, errors.New("tls.root_cas: no PEM certificates found")
	}
	if t.RootCAFile != "" {
		pem, err := os.ReadFile(t.RootCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.root_ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.root_ca_file: %s: no PEM certificates found", t.RootCAFile)
		}
	}
	return pool, nil
}

// cloneEndpoints deep-copies eps, Metadata included.
func cloneEndpoints(eps []Endpoint) []Endpoint {
	if eps == nil {
		return nil
	}
	out := make([]Endpoint, len(eps))
	copy(out, eps)
	for i := range out {
		out[i].Metadata = maps.Clone(out[i].Metadata)
	}
	return out
}
