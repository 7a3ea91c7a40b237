package listener

import (
	"github.com/porticoproxy/portico/filter"

	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults applied when the corresponding field is zero.
const (
	// DefaultListenerFiltersTimeout bounds the TLS inspector's peek at the
	// first bytes of a connection (Envoy listener_filters_timeout, 15 s).
	DefaultListenerFiltersTimeout = 15 * time.Second
	// DefaultTLSHandshakeTimeout bounds the downstream TLS handshake.
	DefaultTLSHandshakeTimeout = 10 * time.Second
	// DefaultMaxRequestHeadersBytes is Envoy's max_request_headers_kb, 60 KiB.
	DefaultMaxRequestHeadersBytes = 60 << 10
	// DefaultMaxRequestHeaders is Envoy's max_headers_count, 100.
	DefaultMaxRequestHeaders = 100
	// DefaultIdleTimeout is Envoy's connection idle_timeout, 1 h.
	DefaultIdleTimeout = time.Hour
	// DefaultStreamIdleTimeout is Envoy's stream_idle_timeout, 5 min.
	DefaultStreamIdleTimeout = 5 * time.Minute
	// DefaultDrainTimeout is Envoy's drain_timeout, 5 s.
	DefaultDrainTimeout = 5 * time.Second
)

// Transport protocols a [ChainMatch] can name, as detected by the TLS
// inspector.
const (
	TransportTLS       = "tls"
	TransportRawBuffer = "raw_buffer"
)

// Config describes one listener: a bound address and the filter chains that
// terminate its connections. Zero values mean the documented defaults.
//
// A Config is plain data; New and Update copy what they need, so the caller
// may reuse or modify it afterwards. Handlers and the Observer it references
// are shared and must be safe for concurrent use.
type Config struct {
	// Name identifies the listener in stats and errors.
	Name string
	// Address is the host:port to bind, e.g. "127.0.0.1:8080"; port 0 picks
	// a free port (see Listener.Addr).
	Address string
	// FilterChains are matched per connection in Envoy's order; the most
	// specific match wins.
	FilterChains []FilterChain
	// DefaultFilterChain serves connections no chain matches; nil closes
	// such connections.
	DefaultFilterChain *FilterChain
	// ListenerFiltersTimeout bounds the TLS inspector's wait for the first
	// bytes of a connection; zero means DefaultListenerFiltersTimeout. The
	// inspector runs only when some chain needs it (TLS, server names,
	// application protocols or a transport protocol).
	ListenerFiltersTimeout time.Duration
	// TLSHandshakeTimeout bounds the downstream TLS handshake; zero means
	// DefaultTLSHandshakeTimeout.
	TLSHandshakeTimeout time.Duration
	// ProxyProtocol, if set, is Envoy's proxy_protocol listener filter:
	// each connection starts with a PROXY protocol header, read within
	// ListenerFiltersTimeout, whose addresses replace the socket's.
	ProxyProtocol *ProxyProtocolConfig
	// OriginalDst is Envoy's original_dst listener filter: the
	// connection's local address becomes the destination it had before
	// an iptables REDIRECT or DNAT (SO_ORIGINAL_DST, Linux only), or
	// stays the socket's when there is no NAT entry. That address drives
	// ChainMatch.DestinationPorts, and requests carry it for OriginalDst
	// clusters (cluster.WithOriginalDestination). It runs before
	// ProxyProtocol, whose header, when it has addresses, wins.
	OriginalDst bool
	// Observer, if set, is told about every connection handed to a chain
	// (per-chain stats such as http.<prefix>.downstream_cx_total). A
	// CountingObserver also gets per-chain ConnCounters kept up to date.
	Observer Observer
	// Logger receives net/http's connection-level errors at Debug level
	// and handler panics (other than http.ErrAbortHandler) at Error level;
	// nil discards them.
	Logger *slog.Logger
}

// FilterChain is one way to terminate a connection: an optional TLS
// termination followed by the HTTP connection manager or the TCP proxy.
type FilterChain struct {
	// Name identifies the chain in stats and to the Observer. It defaults to
	// "filter_chains[i]" ("default_filter_chain" for the default chain) and
	// must be unique within a listener.
	Name string
	// Match selects the connections this chain serves; the zero value
	// matches every connection.
	Match ChainMatch
	// TLS terminates TLS on the connection; nil means plaintext.
	TLS *TLSConfig
	// HTTP is the HTTP connection manager that terminates this chain.
	// Exactly one of HTTP and TCP is set.
	HTTP *HTTPConfig
	// TCP is the TCP proxy that terminates this chain.
	TCP *TCPProxyConfig
}

// ChainMatch is Envoy's FilterChainMatch. Empty fields match anything; a
// chain whose field matches specifically beats a chain that leaves the field
// empty, field by field in this order: DestinationPorts, ServerNames,
// TransportProtocol, ApplicationProtocols, SourcePrefixes.
type ChainMatch struct {
	// DestinationPorts match the port the connection was accepted on.
	DestinationPorts []uint16
	// ServerNames match the TLS SNI: exact names, or "*.example.com"
	// wildcards matching any name under example.com (longest suffix wins).
	ServerNames []string
	// ApplicationProtocols match when the client offers any of them in
	// ALPN.
	ApplicationProtocols []string
	// SourcePrefixes match the direct peer address; the longest matching
	// prefix wins.
	SourcePrefixes []netip.Prefix
	// TransportProtocol is TransportTLS, TransportRawBuffer or "" for any.
	TransportProtocol string
}

// TLSConfig terminates TLS on a filter chain.
type TLSConfig struct {
	// Certificates are served by SNI: exact DNS name, then single-label
	// wildcard, then the first certificate as the default.
	Certificates []Certificate
	// MinVersion is the lowest accepted TLS version; zero means TLS 1.2,
	// lower versions are rejected by Validate. TLS 1.2 uses ECDHE with AEAD
	// cipher suites only.
	MinVersion uint16
	// ALPN is the list of protocols offered; nil means ["h2", "http/1.1"].
	ALPN []string
}

// Certificate is a certificate chain and its private key, either as files or
// as PEM bytes (PEM wins when both are set).
type Certificate struct {
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
}

// HTTPConfig is the HTTP connection manager of a filter chain. Zero values
// mean Envoy's defaults.
type HTTPConfig struct {
	// StatPrefix names the HCM in stats (http.<prefix>.…); opaque here.
	StatPrefix string
	// RouteConfig names the route configuration; opaque here, the gateway
	// uses it to build Handler.
	RouteConfig string
	// Filters are the HTTP filters of this connection manager, in order
	// (Envoy's http_filters); opaque here, the gateway compiles them into
	// a chain per route. The router is implicit and always last.
	Filters []filter.Filter
	// MaxRequestHeadersBytes limits the sum of header name and value
	// lengths (Host included); beyond it the request gets 431. Zero means
	// DefaultMaxRequestHeadersBytes.
	MaxRequestHeadersBytes int
	// MaxRequestHeaders limits the number of header fields; beyond it the
	// request gets 431. Zero means DefaultMaxRequestHeaders.
	MaxRequestHeaders int
	// MaxRequestBodyBytes limits the request body; zero means unlimited.
	// A larger Content-Length gets 413 before Handler runs; a body of
	// unknown length is wrapped with http.MaxBytesReader, whose read error
	// (*http.MaxBytesError) the Handler maps to 413.
	MaxRequestBodyBytes int64
	// UseRemoteAddress is Envoy's use_remote_address: append the peer IP to
	// X-Forwarded-For and overwrite X-Forwarded-Proto with the connection's
	// scheme. When false, X-Forwarded-For is trusted as is and
	// X-Forwarded-Proto is only set when absent.
	UseRemoteAddress bool
	// XFFNumTrustedHops is Envoy's xff_num_trusted_hops, used by ClientIP.
	XFFNumTrustedHops int
	// DisableRequestID stops the HCM from generating an x-request-id
	// (UUIDv4) for requests that lack one (Envoy generate_request_id, on by
	// default).
	DisableRequestID bool
	// StreamIdleTimeout is Envoy's stream_idle_timeout (zero means
	// DefaultStreamIdleTimeout, negative disables); a route's IdleTimeout
	// overrides it. The gateway's router enforces it, not the listener:
	// when no byte moves on a stream for that long, waiting for the
	// upstream response headers or between request or response body
	// reads, the stream ends with a 504 (408 while the request body is
	// still coming), or is aborted when its response has started; flag
	// SI, counted as downstream_rq_idle_timeout. The timer starts with the
	// upstream request; it is not made when the route timeout is shorter.
	StreamIdleTimeout time.Duration
	// RequestHeadersTimeout bounds reading a request's headers (Envoy
	// request_headers_timeout); zero disables, as in Envoy.
	RequestHeadersTimeout time.Duration
	// IdleTimeout closes connections without requests (Envoy
	// common_http_protocol_options.idle_timeout); zero means
	// DefaultIdleTimeout, negative disables.
	IdleTimeout time.Duration
	// DrainTimeout bounds the graceful drain when Serve's context ends
	// (Envoy drain_timeout); zero means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// MaxConcurrentStreams limits concurrent HTTP/2 streams per connection;
	// zero means net/http's default (250), not Envoy's 2^31-1, to bound
	// per-connection memory.
	MaxConcurrentStreams uint32
	// StdlibHTTP1 serves plaintext HTTP/1.x through net/http's http.Server
	// instead of the listener's leaner synchronous HTTP/1.1 loop. The loop
	// is the default: it allocates no context per request, does no
	// background read, writes headers without cloning them and never
	// sniffs Content-Type. Set StdlibHTTP1 for net/http's exact behaviour,
	// notably a request context cancelled when the client goes away during
	// a request without body (the loop only notices on the next read or
	// write). TLS connections and h2c always use net/http.
	StdlibHTTP1 bool
	// HeadersWithUnderscores is what the HCM does with a request header
	// whose name contains an underscore (Envoy's
	// headers_with_underscores_action): AllowUnderscores, the zero value,
	// lets it through; RejectUnderscores answers an HTTP/1 request 400
	// and closes the connection, and resets an HTTP/2 stream, as Envoy
	// does; DropUnderscores removes the header before Handler runs.
	HeadersWithUnderscores UnderscoreAction
	// NormalizePath normalizes the request path before Handler (and so
	// route matching) sees it, as RFC 3986 §6.2.2 says (Envoy's
	// normalize_path): percent-encoded unreserved characters decoded,
	// other percent-encodings upper-cased, "." and ".." segments
	// removed. A path that climbs above the root is answered 400.
	NormalizePath bool
	// MergeSlashes replaces each run of slashes in the request path with
	// one slash (Envoy's merge_slashes).
	MergeSlashes bool
	// RequestTimeout bounds receiving a whole request, headers and body,
	// from its first byte (Envoy's request_timeout); zero disables it, as
	// in Envoy, and then no timer is made. It stops when the body has been
	// read to its end or when the response starts (a final status is
	// written), as Envoy's is disarmed then. When it expires first, the
	// request's context is cancelled with cause ErrRequestTimeout, body
	// reads fail with ErrRequestTimeout, and the client gets a 408
	// "request timeout" instead of whatever Handler writes, which is
	// dropped; an HTTP/1 connection is closed after it, an HTTP/2 stream
	// ends without disturbing the others. Each expiry counts in
	// ConnCounters.RequestTimeouts (downstream_rq_timeout). Headers still
	// arriving when it expires end the connection: on the HTTP/1.1 fast
	// path with the same 408 and count, under net/http (StdlibHTTP1, TLS)
	// without a response, as net/http's header timeout does. A body that
	// arrived whole but that Handler has not read by then times out too:
	// as in Envoy, the timer covers handing the request on.
	RequestTimeout time.Duration
	// HTTP2StreamWindow and HTTP2ConnectionWindow are the HTTP/2
	// flow-control windows for request data, per stream and per
	// connection (Envoy's initial_stream_window_size and
	// initial_connection_window_size); zero means net/http's defaults.
	// net/http accepts windows of less than 4 MiB: larger values are
	// lowered to 4 MiB - 1, which only bounds buffering further.
	HTTP2StreamWindow, HTTP2ConnectionWindow int
	// Handler serves requests after the HCM's hygiene; required. It is
	// called concurrently.
	Handler http.Handler
}

// Validate reports the first problem in c, naming the field path, e.g.
// "filter_chains[1].tls.certificates[0]: cert_file and key_file or cert_pem
// and key_pem required". It does not read certificate files; New does.
func (c *Config) Validate() error {
	if c.Address == "" {
		return errors.New("address: required")
	}
	if _, port, err := net.SplitHostPort(c.Address); err != nil {
		return fmt.Errorf("address: %w", err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("address: port %q: %w", port, err)
	}
	if len(c.FilterChains) == 0 && c.DefaultFilterChain == nil {
		return errors.New("filter_chains: at least one filter chain or a default_filter_chain required")
	}
	if c.ListenerFiltersTimeout < 0 {
		return errors.New("listener_filters_timeout: negative")
	}
	if c.TLSHandshakeTimeout < 0 {
		return errors.New("tls_handshake_timeout: negative")
	}
	names := make(map[string]string, len(c.FilterChains)+1)
	matches := make(map[string]string, len(c.FilterChains))
	for i := range c.FilterChains {
		fc := &c.FilterChains[i]
		path := "filter_chains[" + strconv.Itoa(i) + "]"
		if err := fc.validate(path); err != nil {
			return err
		}
		name := chainName(fc, path)
		if prev, ok := names[name]; ok {
			return fmt.Errorf("%s.name: %q already used by %s", path, name, prev)
		}
		names[name] = path
		key := fc.Match.key()
		if prev, ok := matches[key]; ok {
			return fmt.Errorf("%s.match: same match as %s", path, prev)
		}
		matches[key] = path
	}
	if c.DefaultFilterChain != nil {
		const path = "default_filter_chain"
		if err := c.DefaultFilterChain.validate(path); err != nil {
			return err
		}
		name := chainName(c.DefaultFilterChain, path)
		if prev, ok := names[name]; ok {
			return fmt.Errorf("%s.name: %q already used by %s", path, name, prev)
		}
	}
	return nil
}

func chainName(fc *FilterChain, path string) string {
	if fc.Name != "" {
		return fc.Name
	}
	return path
}

func (fc *FilterChain) validate(path string) error {
	m := &fc.Match
	switch m.TransportProtocol {
	case "", TransportTLS, TransportRawBuffer:
	default:
		return fmt.Errorf("%s.match.transport_protocol: %q is not %q or %q", path, m.TransportProtocol, TransportTLS, TransportRawBuffer)
	}
	for i, p := range m.DestinationPorts {
		if p == 0 {
			return fmt.Errorf("%s.match.destination_ports[%d]: zero", path, i)
		}
	}
	for i, n := range m.ServerNames {
		if err := validServerName(n); err != nil {
			return fmt.Errorf("%s.match.server_names[%d]: %w", path, i, err)
		}
	}
	for i, p := range m.ApplicationProtocols {
		if p == "" {
			return fmt.Errorf("%s.match.application_protocols[%d]: empty", path, i)
		}
	}
	for i, p := range m.SourcePrefixes {
		if !p.IsValid() {
			return fmt.Errorf("%s.match.source_prefixes[%d]: invalid prefix", path, i)
		}
	}
	if fc.TLS != nil {
		if err := fc.TLS.validate(path + ".tls"); err != nil {
			return err
		}
	}
	switch {
	case fc.HTTP != nil && fc.TCP != nil:
		return fmt.Errorf("%s.tcp: set with http: exactly one terminal filter allowed", path)
	case fc.TCP != nil:
		return fc.TCP.validate(path + ".tcp")
	case fc.HTTP == nil:
		return fmt.Errorf("%s.http: required, or tcp (a chain needs one terminal filter)", path)
	}
	return fc.HTTP.validate(path + ".http")
}

func validServerName(n string) error {
	name := strings.TrimPrefix(n, "*.")
	if name == "" || strings.ContainsAny(name, "* /:") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") {
		return fmt.Errorf("%q is not a host name or *.suffix wildcard", n)
	}
	return nil
}

func (t *TLSConfig) validate(path string) error {
	if len(t.Certificates) == 0 {
		return fmt.Errorf("%s.certificates: at least one certificate required", path)
	}
	for i, c := range t.Certificates {
		pem := len(c.CertPEM) > 0 || len(c.KeyPEM) > 0
		files := c.CertFile != "" || c.KeyFile != ""
		switch {
		case pem && (len(c.CertPEM) == 0 || len(c.KeyPEM) == 0):
			return fmt.Errorf("%s.certificates[%d]: cert_pem and key_pem must be set together", path, i)
		case !pem && files && (c.CertFile == "" || c.KeyFile == ""):
			return fmt.Errorf("%s.certificates[%d]: cert_file and key_file must be set together", path, i)
		case !pem && !files:
			return fmt.Errorf("%s.certificates[%d]: cert_file and key_file or cert_pem and key_pem required", path, i)
		}
	}
	if t.MinVersion != 0 && t.MinVersion < tls.VersionTLS12 {
		return fmt.Errorf("%s.min_version: %s is below TLS 1.2", path, tls.VersionName(t.MinVersion))
	}
	if t.MinVersion > tls.VersionTLS13 {
		return fmt.Errorf("%s.min_version: unknown version 0x%04x", path, t.MinVersion)
	}
	for i, p := range t.ALPN {
		if p == "" || len(p) > 255 {
			return fmt.Errorf("%s.alpn[%d]: length must be 1..255", path, i)
		}
	}
	return nil
}

func (h *HTTPConfig) validate(path string) error {
	switch {
	case h.Handler == nil:
		return fmt.Errorf("%s.handler: required", path)
	case h.MaxRequestHeadersBytes < 0:
		return fmt.Errorf("%s.max_request_headers_bytes: negative", path)
	case h.MaxRequestHeaders < 0:
		return fmt.Errorf("%s.max_request_headers: negative", path)
	case h.MaxRequestBodyBytes < 0:
		return fmt.Errorf("%s.max_request_body_bytes: negative", path)
	case h.XFFNumTrustedHops < 0:
		return fmt.Errorf("%s.xff_num_trusted_hops: negative", path)
	case h.RequestHeadersTimeout < 0:
		return fmt.Errorf("%s.request_headers_timeout: negative", path)
	case h.DrainTimeout < 0:
		return fmt.Errorf("%s.drain_timeout: negative", path)
	case h.MaxConcurrentStreams > math.MaxInt32:
		return fmt.Errorf("%s.max_concurrent_streams: above 2^31-1", path)
	case h.HeadersWithUnderscores > DropUnderscores:
		return fmt.Errorf("%s.headers_with_underscores: unknown action %d", path, h.HeadersWithUnderscores)
	case h.RequestTimeout < 0:
		return fmt.Errorf("%s.request_timeout: negative", path)
	case h.HTTP2StreamWindow < 0 || h.HTTP2StreamWindow > math.MaxInt32:
		return fmt.Errorf("%s.http2_stream_window: not in [0, 2^31-1]", path)
	case h.HTTP2ConnectionWindow < 0 || h.HTTP2ConnectionWindow > math.MaxInt32:
		return fmt.Errorf("%s.http2_connection_window: not in [0, 2^31-1]", path)
	}
	return nil
}

// key is a canonical form of m, used to reject duplicate matches.
func (m *ChainMatch) key() string {
	var b strings.Builder
	b.WriteString(fmt.Sprint(sortedCopy(m.DestinationPorts)))
	b.WriteString(fmt.Sprint(sortedCopy(m.ServerNames)))
	b.WriteString(fmt.Sprint(sortedCopy(m.ApplicationProtocols)))
	ps := make([]string, len(m.SourcePrefixes))
	for i, p := range m.SourcePrefixes {
		ps[i] = p.Masked().String()
	}
	b.WriteString(fmt.Sprint(sortedCopy(ps)))
	b.WriteString(m.TransportProtocol)
	return b.String()
}

func sortedCopy[T uint16 | string](s []T) []T {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
