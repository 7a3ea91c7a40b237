package healthcheck

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/porticoproxy/portico/filter"
)

// Name is the filter's name, Envoy's.
const Name = "envoy.filters.http.health_check"

// ImmediateFailHeader is set on health-check answers while the gateway is
// failing its checks: Envoy's x-envoy-immediate-health-check-fail.
const ImmediateFailHeader = "X-Envoy-Immediate-Health-Check-Fail"

// Config configures the filter.
type Config struct {
	// Path is the request path that marks a health check, e.g. "/healthz".
	// Required; the query string is ignored.
	Path string
	// Headers, when set, must all be present with these exact values for a
	// request to count as a health check (Envoy's header matchers, exact
	// form). Names are case-insensitive.
	Headers map[string]string
	// PassThrough sends healthy checks on through the chain instead of
	// answering them here (Envoy's pass_through_mode). Failing checks are
	// always answered here.
	PassThrough bool
	// Failing reports whether this gateway is failing its health checks;
	// nil means never.
	Failing func() bool
}

// Filter is the health check filter. It is safe for concurrent use.
type Filter struct {
	path        string
	headers     [][2]string // canonical name, value
	passThrough bool
	failing     func() bool
}

// New validates cfg and returns the filter.
func New(cfg Config) (*Filter, error) {
	var errs []error
	if cfg.Path == "" || cfg.Path[0] != '/' {
		errs = append(errs, errors.New("healthcheck: path: must start with '/'"))
	}
	f := &Filter{path: cfg.Path, passThrough: cfg.PassThrough, failing: cfg.Failing}
	for k, v := range cfg.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			errs = append(errs, errors.New("healthcheck: headers: invalid header name "+strconvQuote(k)))
			continue
		}
		f.headers = append(f.headers, [2]string{http.CanonicalHeaderKey(k), v})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f, nil
}

func strconvQuote(s string) string { return `"` + s + `"` }

// Name implements filter.Filter.
func (f *Filter) Name() string { return Name }

// OnRequest implements filter.RequestFilter.
func (f *Filter) OnRequest(_ context.Context, x *filter.Exchange) error {
	if !f.isCheck(x.In) {
		return nil
	}
	if f.failing != nil && f.failing() {
		return (&filter.ReplyError{
			Status:  http.StatusServiceUnavailable,
			Body:    []byte("health check failed"),
			Flags:   filter.FlagFailedLocalHealthCheck,
			Details: "health_check_failed",
		}).WithHeader(ImmediateFailHeader, "true")
	}
	if f.passThrough {
		return nil
	}
	return &filter.ReplyError{Status: http.StatusOK, Details: "health_check_ok"}
}

func (f *Filter) isCheck(r *http.Request) bool {
	if r.URL.Path != f.path {
		return false
	}
	for _, h := range f.headers {
		vs := r.Header[h[0]]
		if len(vs) == 0 || vs[0] != h[1] {
			return false
		}
	}
	return true
}

var _ filter.RequestFilter = (*Filter)(nil)
