package xds

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	healthcheckv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/healthcheck"
)

// Type URLs of the built-in HTTP filters.
const (
	// RouterTypeURL is Envoy's router filter, the terminal of every
	// connection manager's chain (the gateway's router).
	RouterTypeURL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	// HealthCheckTypeURL is Envoy's health check filter
	// (filter/healthcheck).
	HealthCheckTypeURL = "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck"
)

// routerName is the router's well-known filter name: an http_filters entry
// with this name and no typed_config is the router, as in Envoy.
const routerName = "envoy.filters.http.router"

// HTTPFilterFactory builds an HTTP filter from one HCM http_filters entry.
// ctx is what the filter is built against (the gateway's health-check
// state, a logger); config is the entry's typed_config, already checked by
// the proto's ValidateAll when its type is linked in. The factory is called
// once per translation of a listener, must not retain config, and may be
// called concurrently for different listeners.
//
// It returns the filter to append to the connection manager's chain, or a
// nil filter and nil error to add nothing. Errors should name the
// offending field by its path relative to config (the translator prefixes
// the entry's path).
type HTTPFilterFactory func(ctx FactoryContext, config *anypb.Any) (filter.Filter, error)

// FactoryContext is what HTTP filter factories and the connection managers
// of a translated listener are built against: Envoy's factory context,
// the parts of the server a filter may need. It is plain data; the funcs
// it holds are called on the request path and must be safe for concurrent
// use and cheap. A Bootstrap fills it for the gateway it builds.
type FactoryContext struct {
	// HealthCheckFailed reports whether the gateway fails its health
	// checks (portico.Gateway.HealthCheckFailed, which POST
	// /healthcheck/fail sets); envoy.filters.http.health_check answers 503
	// while it does. Nil means never. The gateway usually does not exist
	// yet when its first listeners are translated, so a late-bound func is
	// expected; see Bootstrap.NewGateway.
	HealthCheckFailed func() bool
	// Overloaded reports whether Envoy's overload action
	// envoy.overload_actions.stop_accepting_requests is active: connection
	// managers then answer new requests 503 with x-envoy-overloaded: true.
	// Nil means never. A Bootstrap with an overload_manager sets it.
	Overloaded func() bool
	// AccessLogs owns the access logs the connection managers open
	// (access_log), so that they can be flushed and closed; nil means they
	// are closed only when the garbage collector finds them unused, which
	// may lose their last lines at exit.
	AccessLogs *AccessLogs
	// Logger receives translation warnings, such as optional filters
	// skipped; nil discards them.
	Logger *slog.Logger
}

func (c *FactoryContext) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// FilterRegistry maps typed_config type URLs to HTTP filter factories.
// The zero value is empty and ready to use; DefaultFilters returns one
// holding Portico's built-in filters, to which applications add their
// own. The router (RouterTypeURL, or the name envoy.filters.http.router
// without typed_config) is always known, registered or not: it is the
// gateway's own terminal, not a filter. A FilterRegistry is safe for
// concurrent use; the translator looks factories up while translating.
type FilterRegistry struct {
	mu        sync.RWMutex
	factories map[string]HTTPFilterFactory // by message full name
}

// Register makes f the factory for typeURL, replacing any earlier one (a
// built-in included); a nil f removes the registration. typeURL is
// "type.googleapis.com/<message full name>"; any prefix up to the last
// '/' is ignored, as protobuf's Any resolution does.
func (r *FilterRegistry) Register(typeURL string, f HTTPFilterFactory) {
	name := messageName(typeURL)
	r.mu.Lock()
	defer r.mu.Unlock()
	if f == nil {
		delete(r.factories, name)
		return
	}
	if r.factories == nil {
		r.factories = make(map[string]HTTPFilterFactory)
	}
	r.factories[name] = f
}

// Lookup returns the factory registered for typeURL.
func (r *FilterRegistry) Lookup(typeURL string) (HTTPFilterFactory, bool) {
	name := messageName(typeURL)
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.factories[name]
	return f, ok
}

// DefaultFilters returns a new registry holding Portico's built-in HTTP
// filters:
//
//   - envoy.filters.http.router (RouterTypeURL): the terminal. Its
//     typed_config must be empty: none of the router's options is
//     implemented.
//   - envoy.filters.http.health_check (HealthCheckTypeURL):
//     filter/healthcheck. headers must hold one exact matcher on ":path"
//     and may hold exact matchers on other headers; pass_through_mode is
//     supported; the fail state is FactoryContext.HealthCheckFailed.
func DefaultFilters() *FilterRegistry {
	r := &FilterRegistry{}
	r.Register(RouterTypeURL, routerFactory)
	r.Register(HealthCheckTypeURL, healthCheckFactory)
	return r
}

// messageName strips the type URL's prefix.
func messageName(typeURL string) string {
	if i := strings.LastIndexByte(typeURL, '/'); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// routerFilter stands for the router in a translated filter list: the
// connection manager's terminal, which the gateway supplies. It is never
// put in a chain.
type routerFilter struct{}

func (routerFilter) Name() string { return routerName }

func routerFactory(_ FactoryContext, config *anypb.Any) (filter.Filter, error) {
	if config.GetValue() != nil {
		var r routerv3.Router
		if err := config.UnmarshalTo(&r); err != nil {
			return nil, err
		}
	}
	return routerFilter{}, nil
}

func healthCheckFactory(ctx FactoryContext, config *anypb.Any) (filter.Filter, error) {
	var hc healthcheckv3.HealthCheck
	if err := config.UnmarshalTo(&hc); err != nil {
		return nil, err
	}
	cfg := healthcheck.Config{
		PassThrough: hc.GetPassThroughMode().GetValue(),
		Failing:     ctx.HealthCheckFailed,
	}
	for i, h := range hc.GetHeaders() {
		path := fmt.Sprintf("headers[%d]", i)
		v, ok := exactHeaderValue(h)
		if !ok {
			return nil, fmt.Errorf("%s: only exact matchers (string_match.exact or exact_match, not inverted) are supported: %w", path, ErrUnsupported)
		}
		if h.GetName() == ":path" {
			if cfg.Path != "" {
				return nil, fmt.Errorf("%s: a second :path matcher: %w", path, ErrUnsupported)
			}
			if strings.Contains(v, "?") {
				return nil, fmt.Errorf("%s: a :path with a query string: %w", path, ErrUnsupported)
			}
			cfg.Path = v
			continue
		}
		if strings.HasPrefix(h.GetName(), ":") {
			return nil, fmt.Errorf("%s: pseudo-header %s: %w", path, h.GetName(), ErrUnsupported)
		}
		if cfg.Headers == nil {
			cfg.Headers = make(map[string]string)
		}
		cfg.Headers[h.GetName()] = v
	}
	if cfg.Path == "" {
		return nil, fmt.Errorf("headers: an exact :path matcher is required (it names the health check path): %w", ErrUnsupported)
	}
	return healthcheck.New(cfg)
}

// exactHeaderValue returns the value of an exact, case-sensitive,
// non-inverted header matcher.
func exactHeaderValue(h *routev3.HeaderMatcher) (string, bool) {
	if h.GetInvertMatch() || h.GetTreatMissingHeaderAsEmpty() {
		return "", false
	}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		return s.ExactMatch, true
	case *routev3.HeaderMatcher_StringMatch:
		if e, ok := s.StringMatch.GetMatchPattern().(*matcherv3.StringMatcher_Exact); ok && !s.StringMatch.GetIgnoreCase() {
			return e.Exact, true
		}
	}
	return "", false
}
