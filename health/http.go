package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Range is a half-open range of HTTP status codes, [Start, End), like
// Envoy's type.v3.Int64Range.
type Range struct {
	Start, End int
}

// Contains reports whether Start <= code < End.
func (r Range) Contains(code int) bool { return r.Start <= code && code < r.End }

// userAgent identifies health check requests, as Envoy's "Envoy/HC".
const userAgent = "Portico/HC"

// maxDrain bounds how much of a response body is read so that the
// connection can be reused; larger bodies close the connection.
const maxDrain = 4 << 10

// DegradedHeader is the response header by which an endpoint answering an
// HTTP health check declares itself degraded, whatever its value (Envoy's
// x-envoy-degraded).
const DegradedHeader = "X-Envoy-Degraded"

// HTTP checks an endpoint with a plain-text HTTP request, like Envoy's
// http_health_check: the endpoint is healthy when the response status is
// in ExpectedStatuses, and degraded when such a response also carries
// [DegradedHeader] (HTTP is a [DegradedChecker]). Connections are kept
// alive and reused between checks (Envoy's reuse_connection default).
//
// An HTTP is safe for concurrent use. Its fields must not change, and the
// value must not be copied, after the first Check.
type HTTP struct {
	// Path is the request path, e.g. "/healthz"; empty means "/".
	Path string
	// Host is the Host header. Empty means the endpoint address; Envoy
	// uses the cluster name instead.
	Host string
	// Method is the request method; empty means GET. CONNECT is not
	// allowed.
	Method string
	// ExpectedStatuses lists the healthy status codes; empty means
	// [200, 201), that is 200 only, as in Envoy.
	ExpectedStatuses []Range
	// UseHTTP2 sends the request over HTTP/2 with prior knowledge (h2c)
	// instead of HTTP/1.1.
	UseHTTP2 bool

	once      sync.Once
	transport *http.Transport
}

var (
	_ Checker         = (*HTTP)(nil)
	_ DegradedChecker = (*HTTP)(nil)
	_ idleCloser      = (*HTTP)(nil)
	_ validator       = (*HTTP)(nil)
)

// Validate reports a field that cannot work.
func (h *HTTP) Validate() error {
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		return fmt.Errorf("health: HTTP.Path %q does not start with /", h.Path)
	}
	if h.Method == http.MethodConnect {
		return fmt.Errorf("health: HTTP.Method CONNECT is not allowed")
	}
	if h.Method != "" && strings.ContainsAny(h.Method, " \t\r\n()<>@,;:\\\"/[]?={}") {
		return fmt.Errorf("health: HTTP.Method %q is not a token", h.Method)
	}
	for i, r := range h.ExpectedStatuses {
		if r.Start < 100 || r.End > 600 || r.Start >= r.End {
			return fmt.Errorf("health: HTTP.ExpectedStatuses[%d] [%d, %d) is not within [100, 600)", i, r.Start, r.End)
		}
	}
	return nil
}

func (h *HTTP) init() {
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{}).DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
	}
	var p http.Protocols
	if h.UseHTTP2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	t.Protocols = &p
	h.transport = t
}

// Check sends one request to address and checks the response status.
func (h *HTTP) Check(ctx context.Context, address string) error {
	_, err := h.CheckDegraded(ctx, address)
	return err
}

// CheckDegraded sends one request to address, checks the response status
// and reports whether a passing response carries [DegradedHeader].
func (h *HTTP) CheckDegraded(ctx context.Context, address string) (degraded bool, err error) {
	h.once.Do(h.init)
	path := h.Path
	if path == "" {
		path = "/"
	}
	method := h.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+address+path, nil)
	if err != nil {
		return false, fmt.Errorf("health: http %s: %w", address, err)
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := h.transport.RoundTrip(req)
	if err != nil {
		return false, fmt.Errorf("health: http %s: %w", address, err)
	}
	// Drain a little so the connection can be reused; Close discards
	// the connection if more remains.
	io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
	if !h.expected(resp.StatusCode) {
		return false, fmt.Errorf("health: http %s: unexpected status %d", address, resp.StatusCode)
	}
	_, degraded = resp.Header[DegradedHeader]
	return degraded, nil
}

func (h *HTTP) expected(code int) bool {
	if len(h.ExpectedStatuses) == 0 {
		return code == http.StatusOK
	}
	for _, r := range h.ExpectedStatuses {
		if r.Contains(code) {
			return true
		}
	}
	return false
}

// CloseIdleConnections closes the connections kept between checks. A
// Monitor calls it on Close.
func (h *HTTP) CloseIdleConnections() {
	h.once.Do(h.init)
	h.transport.CloseIdleConnections()
}
