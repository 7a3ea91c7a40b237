package xds

import (
	"errors"
	"fmt"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/porticoproxy/portico/route"
)

// ErrUnsupported is wrapped by the error TranslateRouteConfiguration
// returns for a set field that Portico does not implement; the error text
// names the field by its Envoy path.
var ErrUnsupported = errors.New("not supported")

// TranslateOptions tunes a translation. The zero value is strict: any
// unsupported field fails the translation. It is plain data.
type TranslateOptions struct {
	// Lenient drops unsupported fields instead of failing, as if they were
	// absent, and reports each one to OnUnsupported. Values of supported
	// fields that cannot be represented (for example a query parameter
	// present_match of false) are errors even when Lenient is set, since
	// dropping them would change which requests match.
	Lenient bool
	// OnUnsupported, if not nil, is called once per unsupported field in
	// lenient mode, in message order. It is called synchronously from the
	// translating goroutine.
	OnUnsupported func(Warning)
}

// Warning reports a field that a lenient translation dropped. It is plain
// data.
type Warning struct {
	// Path is the field's Envoy path relative to the translated resource,
	// e.g. "virtual_hosts[0].routes[2].route.cluster_specifier_plugin".
	Path string
	// Message says why the field was dropped.
	Message string
}

// String returns "path: message".
func (w Warning) String() string { return w.Path + ": " + w.Message }

// TranslateRouteConfiguration translates an Envoy RouteConfiguration into a
// route.Config that route.New compiles.
//
// It first runs the proto's own validation (ValidateAll, the
// protoc-gen-validate rules), then rejects every set field Portico does not
// implement, naming it by its path (see ErrUnsupported and
// TranslateOptions.Lenient), then translates and validates the result with
// route.Config.Validate. Errors are prefixed with the configuration's name.
//
// Values of typed_per_filter_config are passed through as *anypb.Any in
// Rule.FilterConfig; filters decode them. Header values keep Envoy's %VAR%
// operators, which the route package evaluates.
//
// TranslateRouteConfiguration does not retain or modify rc and is safe for
// concurrent use.
func TranslateRouteConfiguration(rc *routev3.RouteConfiguration, opts TranslateOptions) (route.Config, error) {
	if rc == nil {
		return route.Config{}, errors.New("route configuration: nil")
	}
	wrap := func(err error) error {
		return fmt.Errorf("route configuration %q: %w", rc.GetName(), err)
	}
	if err := rc.ValidateAll(); err != nil {
		return route.Config{}, wrap(fmt.Errorf("invalid: %w", err))
	}
	var errs []error
	checkSupported(rc.ProtoReflect(), "", func(path, msg string) {
		if opts.Lenient {
			if opts.OnUnsupported != nil {
				opts.OnUnsupported(Warning{Path: path, Message: msg})
			}
			return
		}
		if msg == ErrUnsupported.Error() {
			errs = append(errs, fmt.Errorf("%s: %w", path, ErrUnsupported))
		} else {
			errs = append(errs, fmt.Errorf("%s: %s: %w", path, msg, ErrUnsupported))
		}
	})
	if len(errs) > 0 {
		return route.Config{}, wrap(errors.Join(errs...))
	}
	cfg, err := translateConfig(rc)
	if err != nil {
		return route.Config{}, wrap(err)
	}
	if err := cfg.Validate(); err != nil {
		return route.Config{}, wrap(err)
	}
	return cfg, nil
}

func translateConfig(rc *routev3.RouteConfiguration) (route.Config, error) {
	cfg := route.Config{
		Name:                            rc.GetName(),
		MostSpecificHeaderMutationsWins: rc.GetMostSpecificHeaderMutationsWins(),
		RequestHeadersToRemove:          cloneStrings(rc.GetRequestHeadersToRemove()),
		ResponseHeadersToRemove:         cloneStrings(rc.GetResponseHeadersToRemove()),
	}
	var err error
	if cfg.RequestHeadersToAdd, err = headerValues(rc.GetRequestHeadersToAdd(), "request_headers_to_add"); err != nil {
		return route.Config{}, err
	}
	if cfg.ResponseHeadersToAdd, err = headerValues(rc.GetResponseHeadersToAdd(), "response_headers_to_add"); err != nil {
		return route.Config{}, err
	}
	for i, vh := range rc.GetVirtualHosts() {
		v, err := virtualHost(vh, fmt.Sprintf("virtual_hosts[%d]", i))
		if err != nil {
			return route.Config{}, err
		}
		cfg.VirtualHosts = append(cfg.VirtualHosts, v)
	}
	return cfg, nil
}

func virtualHost(vh *routev3.VirtualHost, path string) (route.VirtualHost, error) {
	v := route.VirtualHost{
		Name:                    vh.GetName(),
		Domains:                 cloneStrings(vh.GetDomains()),
		RequestHeadersToRemove:  cloneStrings(vh.GetRequestHeadersToRemove()),
		ResponseHeadersToRemove: cloneStrings(vh.GetResponseHeadersToRemove()),
	}
	var err error
	if v.RequestHeadersToAdd, err = headerValues(vh.GetRequestHeadersToAdd(), path+".request_headers_to_add"); err != nil {
		return v, err
	}
	if v.ResponseHeadersToAdd, err = headerValues(vh.GetResponseHeadersToAdd(), path+".response_headers_to_add"); err != nil {
		return v, err
	}
	if rp := vh.GetRetryPolicy(); rp != nil {
		if v.RetryPolicy, err = retryPolicy(rp, path+".retry_policy"); err != nil {
			return v, err
		}
	}
	for i, r := range vh.GetRoutes() {
		rule, err := rule(r, fmt.Sprintf("%s.routes[%d]", path, i))
		if err != nil {
			return v, err
		}
		v.Rules = append(v.Rules, rule)
	}
	return v, nil
}

func rule(r *routev3.Route, path string) (route.Rule, error) {
	out := route.Rule{
		Name:                    r.GetName(),
		RequestHeadersToRemove:  cloneStrings(r.GetRequestHeadersToRemove()),
		ResponseHeadersToRemove: cloneStrings(r.GetResponseHeadersToRemove()),
		BufferLimit:             int64(r.GetPerRequestBufferLimitBytes().GetValue()),
	}
	var err error
	if out.Match, err = match(r.GetMatch(), path+".match"); err != nil {
		return out, err
	}
	if out.RequestHeadersToAdd, err = headerValues(r.GetRequestHeadersToAdd(), path+".request_headers_to_add"); err != nil {
		return out, err
	}
	if out.ResponseHeadersToAdd, err = headerValues(r.GetResponseHeadersToAdd(), path+".response_headers_to_add"); err != nil {
		return out, err
	}
	if tpfc := r.GetTypedPerFilterConfig(); len(tpfc) > 0 {
		out.FilterConfig = make(map[string]any, len(tpfc))
		for name, a := range tpfc {
			out.FilterConfig[name] = a
		}
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		err = routeAction(&out, a.Route, path+".route")
	case *routev3.Route_Redirect:
		out.Redirect, err = redirect(a.Redirect, path+".redirect")
	case *routev3.Route_DirectResponse:
		out.DirectResponse = &route.DirectResponse{
			Status: int(a.DirectResponse.GetStatus()),
			Body:   dataSource(a.DirectResponse.GetBody()),
		}
	}
	return out, err
}

func match(m *routev3.RouteMatch, path string) (route.Match, error) {
	var out route.Match
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.Prefix = ps.Prefix
	case *routev3.RouteMatch_Path:
		out.Path = ps.Path
	case *routev3.RouteMatch_SafeRegex:
		out.Regex = ps.SafeRegex.GetRegex()
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.PathSeparatedPrefix = ps.PathSeparatedPrefix
	}
	// case_sensitive does not apply to safe_regex, in Envoy as here.
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() && out.Regex == "" {
		out.CaseInsensitive = true
	}
	for i, h := range m.GetHeaders() {
		hm, err := headerMatcher(h, fmt.Sprintf("%s.headers[%d]", path, i))
		if err != nil {
			return out, err
		}
		out.Headers = append(out.Headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		p := fmt.Sprintf("%s.query_parameters[%d]", path, i)
		qm := route.QueryParameterMatcher{Name: q.GetName()}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := stringMatcher(s.StringMatch, p+".string_match")
			if err != nil {
				return out, err
			}
			qm.String = sm
		case *routev3.QueryParameterMatcher_PresentMatch:
			if !s.PresentMatch {
				// Envoy matches absent parameters; route cannot express it.
				return out, fmt.Errorf("%s.present_match: false: %w", p, ErrUnsupported)
			}
			qm.Present = true
		}
		out.QueryParameters = append(out.QueryParameters, qm)
	}
	out.GRPC = m.GetGrpc() != nil
	return out, nil
}

func headerMatcher(h *routev3.HeaderMatcher, path string) (route.HeaderMatcher, error) {
	out := route.HeaderMatcher{Name: h.GetName(), Invert: h.GetInvertMatch()}
	var err error
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		out.String, err = stringMatcher(s.StringMatch, path+".string_match")
	case *routev3.HeaderMatcher_ExactMatch:
		out.String = &route.StringMatcher{Exact: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		out.String = &route.StringMatcher{Prefix: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		out.String = &route.StringMatcher{Suffix: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		out.String = &route.StringMatcher{Contains: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		out.String = &route.StringMatcher{Regex: s.SafeRegexMatch.GetRegex()}
	case *routev3.HeaderMatcher_RangeMatch:
		out.Range = &route.Int64Range{Start: s.RangeMatch.GetStart(), End: s.RangeMatch.GetEnd()}
	case *routev3.HeaderMatcher_PresentMatch:
		// present_match: false matches requests without the header, which
		// is an inverted presence match.
		out.Present = true
		if !s.PresentMatch {
			out.Invert = !out.Invert
		}
	default:
		out.Present = true // no specifier: presence match, as in Envoy
	}
	return out, err
}

func stringMatcher(m *matcherv3.StringMatcher, path string) (*route.StringMatcher, error) {
	out := &route.StringMatcher{IgnoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Exact = p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Prefix = p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Suffix = p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Contains = p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		out.Regex = p.SafeRegex.GetRegex()
	default:
		return nil, fmt.Errorf("%s: no match pattern", path)
	}
	return out, nil
}

func routeAction(out *route.Rule, a *routev3.RouteAction, path string) error {
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		out.Cluster = cs.Cluster
	case *routev3.RouteAction_ClusterHeader:
		out.ClusterHeader = cs.ClusterHeader
	case *routev3.RouteAction_WeightedClusters:
		for _, c := range cs.WeightedClusters.GetClusters() {
			out.WeightedClusters = append(out.WeightedClusters, route.WeightedCluster{
				Name:   c.GetName(),
				Weight: c.GetWeight().GetValue(),
			})
		}
	}
	out.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		out.RegexRewrite = &route.RegexRewrite{
			Pattern:      rr.GetPattern().GetRegex(),
			Substitution: rr.GetSubstitution(),
		}
	}
	out.HostRewrite = a.GetHostRewriteLiteral()
	out.AutoHostRewrite = a.GetAutoHostRewrite().GetValue()
	out.HostRewriteHeader = a.GetHostRewriteHeader()

	var err error
	if out.Timeout, err = disablingDuration(a.GetTimeout(), path+".timeout"); err != nil {
		return err
	}
	if out.IdleTimeout, err = disablingDuration(a.GetIdleTimeout(), path+".idle_timeout"); err != nil {
		return err
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		if out.Retry, err = retryPolicy(rp, path+".retry_policy"); err != nil {
			return err
		}
	}
	for i, h := range a.GetHashPolicy() {
		p := fmt.Sprintf("%s.hash_policy[%d]", path, i)
		hp := route.HashPolicy{Terminal: h.GetTerminal()}
		switch s := h.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			hp.Header = s.Header.GetHeaderName()
		case *routev3.RouteAction_HashPolicy_Cookie_:
			ttl, err := duration(s.Cookie.GetTtl(), p+".cookie.ttl")
			if err != nil {
				return err
			}
			hp.Cookie = &route.CookieHash{Name: s.Cookie.GetName(), TTL: ttl, Path: s.Cookie.GetPath()}
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			hp.SourceIP = s.ConnectionProperties.GetSourceIp()
		case *routev3.RouteAction_HashPolicy_QueryParameter_:
			hp.QueryParameter = s.QueryParameter.GetName()
		}
		out.HashPolicy = append(out.HashPolicy, hp)
	}
	for _, m := range a.GetRequestMirrorPolicies() {
		mp := route.MirrorPolicy{Cluster: m.GetCluster()}
		if rf := m.GetRuntimeFraction(); rf != nil {
			mp.Fraction = fraction(rf.GetDefaultValue())
			if mp.Fraction == 0 {
				// A zero fraction never mirrors; route reads 0 as "always".
				continue
			}
		}
		out.Mirrors = append(out.Mirrors, mp)
	}
	return nil
}

// fraction converts a FractionalPercent to a fraction in [0, 1].
func fraction(fp *typev3.FractionalPercent) float64 {
	var denom float64
	switch fp.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		denom = 10_000
	case typev3.FractionalPercent_MILLION:
		denom = 1_000_000
	default:
		denom = 100
	}
	return min(float64(fp.GetNumerator())/denom, 1)
}

func retryPolicy(rp *routev3.RetryPolicy, path string) (*route.RetryPolicy, error) {
	out := &route.RetryPolicy{}
	for s := range strings.SplitSeq(rp.GetRetryOn(), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out.RetryOn = append(out.RetryOn, s)
		}
	}
	if n := rp.GetNumRetries(); n != nil {
		out.NumRetries = int(n.GetValue())
		if out.NumRetries == 0 {
			out.NumRetries = -1 // explicit 0: no retries
		}
	}
	var err error
	if out.PerTryTimeout, err = duration(rp.GetPerTryTimeout(), path+".per_try_timeout"); err != nil {
		return nil, err
	}
	if out.PerTryIdleTimeout, err = duration(rp.GetPerTryIdleTimeout(), path+".per_try_idle_timeout"); err != nil {
		return nil, err
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		out.RetriableStatusCodes = append(out.RetriableStatusCodes, int(c))
	}
	for i, h := range rp.GetRetriableHeaders() {
		hm, err := headerMatcher(h, fmt.Sprintf("%s.retriable_headers[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out.RetriableHeaders = append(out.RetriableHeaders, hm)
	}
	if bo := rp.GetRetryBackOff(); bo != nil {
		if out.BaseInterval, err = duration(bo.GetBaseInterval(), path+".retry_back_off.base_interval"); err != nil {
			return nil, err
		}
		if out.MaxInterval, err = duration(bo.GetMaxInterval(), path+".retry_back_off.max_interval"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func redirect(r *routev3.RedirectAction, path string) (*route.Redirect, error) {
	out := &route.Redirect{
		Scheme:        r.GetSchemeRedirect(),
		HTTPSRedirect: r.GetHttpsRedirect(),
		Host:          r.GetHostRedirect(),
		Port:          int(r.GetPortRedirect()),
		Path:          r.GetPathRedirect(),
		PrefixRewrite: r.GetPrefixRewrite(),
		StripQuery:    r.GetStripQuery(),
	}
	switch c := r.GetResponseCode(); c {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		out.ResponseCode = 301
	case routev3.RedirectAction_FOUND:
		out.ResponseCode = 302
	case routev3.RedirectAction_SEE_OTHER:
		out.ResponseCode = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		out.ResponseCode = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		out.ResponseCode = 308
	default:
		return nil, fmt.Errorf("%s.response_code: unknown value %d", path, c)
	}
	return out, nil
}

func headerValues(opts []*corev3.HeaderValueOption, path string) ([]route.HeaderValue, error) {
	var out []route.HeaderValue
	for i, o := range opts {
		p := fmt.Sprintf("%s[%d]", path, i)
		hv := route.HeaderValue{Key: o.GetHeader().GetKey(), Value: o.GetHeader().GetValue()}
		if a := o.GetAppend(); a != nil {
			if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				return nil, fmt.Errorf("%s: append and append_action are mutually exclusive", p)
			}
			if !a.GetValue() {
				hv.Append = route.OverwriteIfExistsOrAdd
			}
		} else {
			switch aa := o.GetAppendAction(); aa {
			case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
				hv.Append = route.AppendIfExistsOrAdd
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				hv.Append = route.AddIfAbsent
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
				hv.Append = route.OverwriteIfExistsOrAdd
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				hv.Append = route.OverwriteIfExists
			default:
				return nil, fmt.Errorf("%s.append_action: unknown value %d", p, aa)
			}
		}
		out = append(out, hv)
	}
	return out, nil
}

func dataSource(ds *corev3.DataSource) string {
	if b := ds.GetInlineBytes(); b != nil {
		return string(b)
	}
	return ds.GetInlineString()
}

// duration converts an optional Duration; nil is 0.
func duration(d *durationpb.Duration, path string) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if d.AsDuration() < 0 {
		return 0, fmt.Errorf("%s: negative duration %v", path, d.AsDuration())
	}
	return d.AsDuration(), nil
}

// disablingDuration converts a timeout where Envoy's explicit 0 disables
// it: absent is 0 (the default), explicit 0 is -1 (disabled), per the
// route package's convention.
func disablingDuration(d *durationpb.Duration, path string) (time.Duration, error) {
	v, err := duration(d, path)
	if err == nil && d != nil && v == 0 {
		v = -1
	}
	return v, err
}

func cloneStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}
