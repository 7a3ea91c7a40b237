package xds

import (
	"context"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
)

// hcm translates an HTTP connection manager. routeName names its inline
// route configuration, if it has one.
func (x *ltx) hcm(h *hcmv3.HttpConnectionManager, path, routeName string) (*listener.HTTPConfig, error) {
	out := &listener.HTTPConfig{
		StatPrefix:        h.GetStatPrefix(),
		UseRemoteAddress:  h.GetUseRemoteAddress().GetValue(),
		XFFNumTrustedHops: int(h.GetXffNumTrustedHops()),
		MergeSlashes:      h.GetMergeSlashes(),
		NormalizePath:     h.GetNormalizePath().GetValue(),
	}
	if ct := h.GetCodecType(); ct != hcmv3.HttpConnectionManager_AUTO {
		// Portico serves HTTP/1.1, h2 and h2c on every listener.
		return nil, fmt.Errorf("%s.codec_type: %s: only AUTO is supported: %w", path, ct, ErrUnsupported)
	}
	if g := h.GetGenerateRequestId(); g != nil {
		out.DisableRequestID = !g.GetValue()
	}
	if kb := h.GetMaxRequestHeadersKb(); kb != nil {
		out.MaxRequestHeadersBytes = int(kb.GetValue()) << 10
	}
	var err error
	if out.StreamIdleTimeout, err = disablingDuration(h.GetStreamIdleTimeout(), path+".stream_idle_timeout"); err != nil {
		return nil, err
	}
	if out.RequestTimeout, err = duration(h.GetRequestTimeout(), path+".request_timeout"); err != nil {
		return nil, err
	}
	if out.RequestHeadersTimeout, err = duration(h.GetRequestHeadersTimeout(), path+".request_headers_timeout"); err != nil {
		return nil, err
	}
	if d := h.GetDrainTimeout(); d != nil {
		if out.DrainTimeout, err = duration(d, path+".drain_timeout"); err != nil {
			return nil, err
		}
		if out.DrainTimeout == 0 {
			return nil, fmt.Errorf("%s.drain_timeout: 0: %w", path, ErrUnsupported)
		}
	}
	if o := h.GetCommonHttpProtocolOptions(); o != nil {
		if err := commonHTTPOptions(out, o, path+".common_http_protocol_options"); err != nil {
			return nil, err
		}
	}
	if o := h.GetHttp2ProtocolOptions(); o != nil {
		if v := o.GetMaxConcurrentStreams(); v != nil {
			out.MaxConcurrentStreams = v.GetValue()
		}
		if v := o.GetInitialStreamWindowSize(); v != nil {
			out.HTTP2StreamWindow = int(v.GetValue())
		}
		if v := o.GetInitialConnectionWindowSize(); v != nil {
			out.HTTP2ConnectionWindow = int(v.GetValue())
		}
	}
	for i, u := range h.GetUpgradeConfigs() {
		// Portico passes upgrades (WebSocket and the like) through; CONNECT
		// is not terminated.
		p := fmt.Sprintf("%s.upgrade_configs[%d]", path, i)
		if strings.EqualFold(u.GetUpgradeType(), "connect") {
			return nil, fmt.Errorf("%s.upgrade_type: CONNECT: %w", p, ErrUnsupported)
		}
		if e := u.GetEnabled(); e != nil && !e.GetValue() {
			return nil, fmt.Errorf("%s.enabled: false: upgrades cannot be turned off: %w", p, ErrUnsupported)
		}
	}

	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		if err := xdsConfigSource(rs.Rds.GetConfigSource(), path+".rds.config_source"); err != nil {
			return nil, err
		}
		out.RouteConfig = rs.Rds.GetRouteConfigName()
		x.addRef(&x.refs.Routes, out.RouteConfig)
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rc, err := translateConfig(rs.RouteConfig)
		if err != nil {
			return nil, fmt.Errorf("%s.route_config: %w", path, err)
		}
		rc.Name = routeName
		if err := rc.Validate(); err != nil {
			return nil, fmt.Errorf("%s.route_config: %w", path, err)
		}
		x.routes = append(x.routes, rc)
		out.RouteConfig = routeName
	default:
		if len(x.unsupported) == 0 && !x.t.Options.Lenient {
			return nil, fmt.Errorf("%s: route_config or rds is required", path)
		}
		out.RouteConfig = routeName // no table: every request answers 404
	}

	// The access logs first, so that they log every exchange, whichever
	// filter answers it; then the connection manager's own behaviour that
	// lives in the chain; then the configured filters.
	for i, al := range h.GetAccessLog() {
		f, err := x.accessLog(al, fmt.Sprintf("%s.access_log[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out.Filters = append(out.Filters, f)
	}
	hf, err := x.hcmFilter(h, path)
	if err != nil {
		return nil, err
	}
	if hf != nil {
		out.Filters = append(out.Filters, hf)
	}
	filters, err := x.httpFilters(h.GetHttpFilters(), path+".http_filters")
	if err != nil {
		return nil, err
	}
	out.Filters = append(out.Filters, filters...)
	return out, nil
}

func commonHTTPOptions(out *listener.HTTPConfig, o *corev3.HttpProtocolOptions, path string) error {
	var err error
	if out.IdleTimeout, err = disablingDuration(o.GetIdleTimeout(), path+".idle_timeout"); err != nil {
		return err
	}
	if n := o.GetMaxHeadersCount(); n != nil {
		out.MaxRequestHeaders = int(n.GetValue())
	}
	switch a := o.GetHeadersWithUnderscoresAction(); a {
	case corev3.HttpProtocolOptions_ALLOW:
		out.HeadersWithUnderscores = listener.AllowUnderscores
	case corev3.HttpProtocolOptions_REJECT_REQUEST:
		out.HeadersWithUnderscores = listener.RejectUnderscores
	case corev3.HttpProtocolOptions_DROP_HEADER:
		out.HeadersWithUnderscores = listener.DropUnderscores
	default:
		return fmt.Errorf("%s.headers_with_underscores_action: unknown value %d", path, a)
	}
	return nil
}

// httpFilters resolves the http_filters through the registry. The router
// must be last; an empty list means the router alone, as in Envoy.
func (x *ltx) httpFilters(hfs []*hcmv3.HttpFilter, path string) ([]filter.Filter, error) {
	reg := x.t.Filters
	if reg == nil {
		reg = defaultRegistry
	}
	var out []filter.Filter
	sawRouter := false
	for i, hf := range hfs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if sawRouter {
			return nil, fmt.Errorf("%s: %q after the terminal %s: the router must be the last filter", p, hf.GetName(), routerName)
		}
		f, err := x.httpFilter(reg, hf, p)
		if err != nil {
			return nil, err
		}
		switch f.(type) {
		case nil:
		case routerFilter:
			sawRouter = true
		default:
			out = append(out, f)
		}
	}
	if len(hfs) > 0 && !sawRouter {
		last := hfs[len(hfs)-1].GetName()
		return nil, fmt.Errorf("%s: the last filter is %q, not the terminal %s", path, last, routerName)
	}
	return out, nil
}

// defaultRegistry serves translators without a registry of their own. It
// is never modified.
var defaultRegistry = DefaultFilters()

func (x *ltx) httpFilter(reg *FilterRegistry, hf *hcmv3.HttpFilter, path string) (filter.Filter, error) {
	a := hf.GetTypedConfig()
	if a.GetTypeUrl() == "" {
		if hf.GetName() == routerName {
			return routerFilter{}, nil
		}
		if hf.GetIsOptional() {
			x.warn(path, fmt.Sprintf("optional filter %q without typed_config skipped", hf.GetName()))
			return nil, nil
		}
		return nil, fmt.Errorf("%s.typed_config: required (filter %q)", path, hf.GetName())
	}
	tpath := path + ".typed_config"
	factory, ok := reg.Lookup(a.GetTypeUrl())
	if !ok && messageName(a.GetTypeUrl()) == messageName(RouterTypeURL) {
		factory, ok = routerFactory, true
	}
	if !ok {
		if hf.GetIsOptional() {
			x.warn(path, fmt.Sprintf("optional filter %q (%s) is not registered; skipped", hf.GetName(), a.GetTypeUrl()))
			return nil, nil
		}
		return nil, fmt.Errorf("%s: filter %q: no factory registered for %s: %w", tpath, hf.GetName(), a.GetTypeUrl(), ErrUnsupported)
	}
	// Validate and check the configuration when its type is linked in; an
	// application's factory for a type outside the registry checks its own.
	if _, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl()); err == nil {
		if _, err := x.unpack(a, tpath); err != nil {
			return nil, err
		}
	}
	f, err := factory(x.t.FactoryContext, a)
	if err != nil {
		return nil, fmt.Errorf("%s: filter %q: %w", tpath, hf.GetName(), err)
	}
	return f, nil
}

// hcmFilter builds the chain filter that carries the connection manager's
// own per-request behaviour: overload rejection, the stream buffer limit,
// the Server header and local reply mapping. It returns nil when none is
// configured.
func (x *ltx) hcmFilter(h *hcmv3.HttpConnectionManager, path string) (filter.Filter, error) {
	f := &hcmFilter{
		overloaded:  x.t.FactoryContext.Overloaded,
		bufferLimit: x.bufferLimit,
		server:      h.GetServerName(),
	}
	switch m := h.GetServerHeaderTransformation(); m {
	case hcmv3.HttpConnectionManager_OVERWRITE:
		f.serverMode = serverOverwrite
	case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
		f.serverMode = serverAppendIfAbsent
	case hcmv3.HttpConnectionManager_PASS_THROUGH:
		f.serverMode = serverPassThrough
	default:
		return nil, fmt.Errorf("%s.server_header_transformation: unknown value %d", path, m)
	}
	if f.server == "" && f.serverMode != serverPassThrough {
		// Envoy's default server_name is "envoy"; Portico does not claim to
		// be Envoy and leaves the upstream's Server header alone unless a
		// name is configured.
		f.serverMode = serverPassThrough
	}
	if lrc := h.GetLocalReplyConfig(); lrc != nil {
		lr, err := newLocalReply(lrc, path+".local_reply_config")
		if err != nil {
			return nil, err
		}
		f.localReply = lr
	}
	if f.overloaded == nil && f.bufferLimit == 0 && f.serverMode == serverPassThrough && f.localReply == nil {
		return nil, nil
	}
	return f, nil
}

// hcmFilterName names the connection manager's own chain filter.
const hcmFilterName = "envoy.filters.network.http_connection_manager"

type serverMode uint8

const (
	serverOverwrite serverMode = iota
	serverAppendIfAbsent
	serverPassThrough
)

// hcmFilter opens a translated connection manager's chain, after its
// access logs. It is immutable and safe for concurrent use.
type hcmFilter struct {
	overloaded  func() bool
	bufferLimit int64
	server      string
	serverMode  serverMode
	localReply  *localReply
}

var (
	_ filter.RequestFilter  = (*hcmFilter)(nil)
	_ filter.ResponseFilter = (*hcmFilter)(nil)
)

func (f *hcmFilter) Name() string { return hcmFilterName }

// errOverloaded is Envoy's answer while stop_accepting_requests is active.
var errOverloaded = (&filter.ReplyError{
	Status:  503,
	Body:    []byte("envoy overloaded"),
	Flags:   filter.FlagOverloadManager,
	Details: "overload",
}).WithHeader("X-Envoy-Overloaded", "true")

func (f *hcmFilter) OnRequest(_ context.Context, x *filter.Exchange) error {
	if f.overloaded != nil && f.overloaded() {
		return errOverloaded
	}
	if x.BufferLimit == 0 && f.bufferLimit > 0 {
		// Envoy bounds a stream's buffers by the connection's limit unless
		// the route sets per_request_buffer_limit_bytes.
		x.BufferLimit = f.bufferLimit
	}
	return nil
}

func (f *hcmFilter) OnResponse(_ context.Context, x *filter.Exchange) error {
	if x.Resp == nil {
		return nil
	}
	if f.localReply != nil && isLocalReply(x) {
		f.localReply.apply(x)
	}
	switch f.serverMode {
	case serverOverwrite:
		x.Resp.Header["Server"] = []string{f.server}
	case serverAppendIfAbsent:
		if _, ok := x.Resp.Header["Server"]; !ok {
			x.Resp.Header["Server"] = []string{f.server}
		}
	}
	return nil
}

// isLocalReply reports whether x.Resp was made by the gateway rather than
// received from upstream: a local reply for an error (no route, no
// healthy upstream, a filter's reply...), or a direct response or
// redirect of the route, which Envoy's router sends as local replies too.
func isLocalReply(x *filter.Exchange) bool {
	if x.Err != nil {
		return true
	}
	if x.Route == nil {
		return false
	}
	r := x.Route.Rule()
	return r.DirectResponse != nil || r.Redirect != nil
}
