package llm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/internal/sse"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
	"github.com/porticoproxy/portico/route"
)

// FilterName is the name of the llm filter, the key of its per-route
// configuration in route.Rule.FilterConfig.
const FilterName = "llm"

// Gateway is the LLM gateway: a filter for an HTTP listener's chain whose
// front doors (see API) are enabled per route, and the model table and
// providers they share.
//
// Put the Gateway in listener.HTTPConfig.Filters, the rules of Rules in a
// virtual host and the clusters of Clusters in the gateway's config. On
// routes whose FilterConfig carries an API under FilterName (Rules sets
// it), the filter reads the request body's model, routes it to a
// provider, rewrites the request for that provider (translating it when
// the provider speaks another schema) and sets the exchange's cluster; it
// translates the response back, streams included, and accounts its usage
// (see Call). On other routes it does nothing and costs nothing.
//
// A Gateway is immutable and safe for concurrent use.
type Gateway struct {
	providers    []*provider
	exact        map[string]target
	patterns     []pattern // longest prefix first
	defMax       int64
	routeTimeout time.Duration
	maxReq       int64
	doors        [Models + 1]*frontDoor
	modelsOpenAI []byte
	modelsAnth   []byte
	now          func() time.Time
}

// provider is a resolved Provider.
type provider struct {
	name            string
	kind            Kind
	ep              endpoint
	key             string
	authValue       string // Authorization or x-api-key value
	cluster         string
	ownCluster      bool // made by Clusters
	headers         map[string]string
	version         string
	legacyMaxTokens bool
}

type target struct {
	p        *provider
	upstream string // empty: the requested name
}

type pattern struct {
	prefix string
	t      target
}

var (
	_ filter.Filter            = (*Gateway)(nil)
	_ filter.RouteConfigurable = (*Gateway)(nil)
)

// New validates cfg, reads the providers' credentials (from the
// environment for APIKeyEnv) and returns the Gateway.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("llm: %w", err)
	}
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	g := &Gateway{
		exact:        map[string]target{},
		defMax:       cfg.DefaultMaxTokens,
		routeTimeout: cfg.RouteTimeout,
		maxReq:       cfg.MaxRequestBytes,
		now:          time.Now,
	}
	if g.defMax == 0 {
		g.defMax = DefaultMaxTokens
	}
	if g.routeTimeout == 0 {
		g.routeTimeout = DefaultRouteTimeout
	}
	if g.maxReq == 0 {
		g.maxReq = DefaultMaxRequestBytes
	}
	byName := map[string]*provider{}
	for _, pc := range cfg.Providers {
		ep, _ := pc.endpoint() // validated
		p := &provider{
			name:            pc.Name,
			kind:            pc.Kind,
			ep:              ep,
			key:             string(pc.APIKey),
			cluster:         pc.Cluster,
			version:         pc.AnthropicVersion,
			legacyMaxTokens: pc.LegacyMaxTokens,
		}
		if pc.APIKeyEnv != "" {
			p.key = strings.TrimSpace(getenv(pc.APIKeyEnv))
			if p.key == "" {
				return nil, fmt.Errorf("llm: provider %q: environment variable %s is empty", pc.Name, pc.APIKeyEnv)
			}
		}
		if strings.ContainsAny(p.key, "\r\n") {
			return nil, fmt.Errorf("llm: provider %q: the API key contains a line break", pc.Name)
		}
		if p.key != "" {
			p.authValue = p.key
			if p.kind == OpenAI {
				p.authValue = "Bearer " + p.key
			}
		}
		if p.cluster == "" {
			p.cluster = "llm_" + pc.Name
			p.ownCluster = true
		}
		if p.version == "" {
			p.version = DefaultAnthropicVersion
		}
		if len(pc.Headers) > 0 {
			p.headers = make(map[string]string, len(pc.Headers))
			for k, v := range pc.Headers {
				p.headers[http.CanonicalHeaderKey(k)] = v
			}
		}
		g.providers = append(g.providers, p)
		byName[p.name] = p
	}
	for _, m := range cfg.Models {
		t := target{p: byName[m.Provider], upstream: m.UpstreamModel}
		if prefix, ok := strings.CutSuffix(m.Name, "*"); ok {
			g.patterns = append(g.patterns, pattern{prefix: prefix, t: t})
			continue
		}
		if t.upstream == "" {
			t.upstream = m.Name
		}
		g.exact[m.Name] = t
	}
	slices.SortStableFunc(g.patterns, func(a, b pattern) int { return len(b.prefix) - len(a.prefix) })
	for api := ChatCompletions; api <= Models; api++ {
		g.doors[api] = &frontDoor{g: g, api: api}
	}
	g.modelsOpenAI, g.modelsAnth = modelLists(cfg.Models, g.now())
	return g, nil
}

// Name implements filter.Filter; it is FilterName.
func (g *Gateway) Name() string { return FilterName }

// ForRoute implements filter.RouteConfigurable: config is the API the
// route serves.
func (g *Gateway) ForRoute(config any) (filter.Filter, error) {
	api, ok := config.(API)
	if !ok || api < ChatCompletions || api > Models {
		return nil, fmt.Errorf("llm: per-route config must be an llm.API, got %T %v", config, config)
	}
	return g.doors[api], nil
}

// FrontDoor returns the filter that serves api, for chains assembled by
// hand (without per-route configuration).
func (g *Gateway) FrontDoor(api API) filter.Filter {
	if api < ChatCompletions || api > Models {
		return nil
	}
	return g.doors[api]
}

// Route returns the provider and the upstream model name that serve
// model, as a request for it would be routed.
func (g *Gateway) Route(model string) (provider, upstreamModel string, ok bool) {
	t, ok := g.route(model)
	if !ok {
		return "", "", false
	}
	return t.p.name, t.upstream, true
}

func (g *Gateway) route(model string) (target, bool) {
	if t, ok := g.exact[model]; ok {
		return t, true
	}
	for _, p := range g.patterns {
		if strings.HasPrefix(model, p.prefix) {
			t := p.t
			if t.upstream == "" {
				t.upstream = model
			}
			return t, true
		}
	}
	return target{}, false
}

// Rules returns the route rules of the front doors, to put in a virtual
// host: POST /v1/chat/completions, POST /v1/messages, POST
// /v1/messages/count_tokens and GET /v1/models, each with its API as the
// llm filter's per-route configuration, Config.RouteTimeout and
// Config.MaxRequestBytes. Their cluster is a placeholder (the first
// provider's): the filter chooses the cluster per request.
func (g *Gateway) Rules() []route.Rule {
	cl := g.providers[0].cluster
	rule := func(name, path, method string, api API) route.Rule {
		return route.Rule{
			Name:         name,
			Match:        route.Match{Path: path, Methods: []string{method}},
			Cluster:      cl,
			Timeout:      g.routeTimeout,
			BufferLimit:  g.maxReq,
			FilterConfig: map[string]any{FilterName: api},
		}
	}
	return []route.Rule{
		rule("llm_chat_completions", "/v1/chat/completions", http.MethodPost, ChatCompletions),
		rule("llm_messages", "/v1/messages", http.MethodPost, Messages),
		rule("llm_count_tokens", "/v1/messages/count_tokens", http.MethodPost, CountTokens),
		rule("llm_models", "/v1/models", http.MethodGet, Models),
	}
}

// Clusters returns the clusters of the providers that name none of their
// own: one per provider, named "llm_" + its name, with its BaseURL's host
// as the endpoint and TLS (SNI and verification against that host) for
// https.
func (g *Gateway) Clusters() []cluster.Config {
	var out []cluster.Config
	for _, p := range g.providers {
		if !p.ownCluster {
			continue
		}
		c := cluster.Config{Name: p.cluster, Endpoints: []cluster.Endpoint{{Address: p.ep.address}}}
		if p.ep.tls {
			c.TLS = &cluster.TLSConfig{ServerName: p.ep.hostname}
		}
		out = append(out, c)
	}
	return out
}

// frontDoor is the llm filter on a route that serves one API.
type frontDoor struct {
	g   *Gateway
	api API
}

var (
	_ filter.RequestFilter      = (*frontDoor)(nil)
	_ filter.ResponseFilter     = (*frontDoor)(nil)
	_ filter.ResponseBodyFilter = (*frontDoor)(nil)
	_ filter.DoneFilter         = (*frontDoor)(nil)
)

// Name implements filter.Filter.
func (f *frontDoor) Name() string { return FilterName }

// state is the per-exchange state behind a Call.
type state struct {
	p            *provider
	body         []byte // the client's request body
	m            meter
	includeUsage bool // the client asked for stream usage
	metered      bool // a successful upstream response is being metered

	stream streamer
	dec    sse.Decoder
	out    []byte
	emit   func(sse.Event) error
	failed bool
}

// Request headers that carry client credentials or would change the
// upstream's encoding; the provider's own are added afterwards.
var stripRequest = [...]string{"Authorization", "Proxy-Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key",
	"Cookie", "Openai-Organization", "Openai-Project", "Accept-Encoding"}

var anthropicRequest = [...]string{"Anthropic-Version", "Anthropic-Beta", "Anthropic-Dangerous-Direct-Browser-Access"}

// Response headers that identify the gateway's provider account.
var stripResponse = [...]string{"Set-Cookie", "Openai-Organization", "Openai-Project", "Anthropic-Organization-Id"}

// OnRequest implements filter.RequestFilter.
func (f *frontDoor) OnRequest(ctx context.Context, x *filter.Exchange) error {
	if f.api == Models {
		body := f.g.modelsOpenAI
		if x.In.Header.Get("Anthropic-Version") != "" {
			body = f.g.modelsAnth
		}
		return &filter.ReplyError{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, Details: "llm_models"}
	}
	body, err := x.Body()
	if err != nil {
		if errors.Is(err, filter.ErrBufferLimit) {
			return reply(f.api, &apiError{status: http.StatusRequestEntityTooLarge, typ: "request_too_large", message: "request body exceeds the gateway's limit"})
		}
		return reply(f.api, &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", message: "reading the request body failed"})
	}
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return reply(f.api, badRequest("request body must be a JSON object: %v", err))
	}
	model, ok, err := obj.String("model")
	if err != nil || !ok || model == "" {
		return reply(f.api, badRequest("model: a model name is required"))
	}
	stream, err := obj.Bool("stream")
	if err != nil {
		return reply(f.api, badRequest("%v", err))
	}
	t, ok := f.g.route(model)
	if !ok {
		return reply(f.api, &apiError{status: http.StatusNotFound, typ: "not_found_error", message: fmt.Sprintf("model %q is not served by this gateway", model)})
	}
	p := t.p
	call := &Call{API: f.api, Provider: p.name, ProviderKind: p.kind, RequestModel: model, Model: t.upstream, Stream: stream}
	st := &state{p: p, body: body}
	st.m.firstByte = &call.FirstByte
	call.st = st

	var out []byte
	var aerr *apiError
	var path string
	keepQuery := false
	switch {
	case f.api == CountTokens && p.kind != Anthropic:
		// No counting API upstream: estimate.
		callKey.Set(x, call)
		n := estimateTokens(body)
		return &filter.ReplyError{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
			Body: []byte(`{"input_tokens":` + strconv.FormatInt(n, 10) + `}`), Details: "llm_count_tokens_estimate"}
	case f.api == ChatCompletions && p.kind == OpenAI:
		out, aerr = passThrough(obj, body, model, t.upstream, stream)
		if stream {
			st.includeUsage = clientIncludesUsage(obj)
		}
		path, keepQuery = "/chat/completions", true
	case f.api == ChatCompletions:
		call.Translated = true
		st.includeUsage = clientIncludesUsage(obj)
		out, aerr = chatToMessages(body, t.upstream, f.g.defMax)
		path = "/v1/messages"
	case f.api == Messages && p.kind == Anthropic:
		out, aerr = passThrough(obj, body, model, t.upstream, false)
		path, keepQuery = "/v1/messages", true
	case f.api == Messages:
		call.Translated = true
		out, aerr = messagesToChat(body, t.upstream, p.legacyMaxTokens)
		path = "/chat/completions"
	default: // CountTokens on Anthropic
		out, aerr = passThrough(obj, body, model, t.upstream, false)
		path, keepQuery = "/v1/messages/count_tokens", true
	}
	if aerr != nil {
		return reply(f.api, aerr)
	}
	x.SetBody(out)
	prepareUpstream(x, p, call.Translated, keepQuery, p.ep.path+path)
	x.Cluster = p.cluster
	callKey.Set(x, call)
	return nil
}

// passThrough returns the body for a provider of the client's schema:
// the client's bytes with only the model replaced (for aliases and
// overrides) and, for OpenAI streams, stream_options.include_usage set so
// that the stream reports usage.
func passThrough(obj jsonobj.Object, body []byte, model, upstream string, injectUsage bool) ([]byte, *apiError) {
	out := body
	if upstream != model {
		out = obj.Set("model", jsonobj.AppendString(nil, upstream))
	}
	if !injectUsage {
		return out, nil
	}
	return withIncludeUsage(out)
}

func withIncludeUsage(body []byte) ([]byte, *apiError) {
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	raw, ok := obj.Get("stream_options")
	if !ok || string(raw) == "null" {
		return obj.Set("stream_options", []byte(`{"include_usage":true}`)), nil
	}
	so, err := jsonobj.Parse(raw)
	if err != nil {
		return nil, badRequest("stream_options: must be an object")
	}
	if v, _ := so.Get("include_usage"); string(v) == "true" {
		return body, nil
	}
	return obj.Set("stream_options", so.Set("include_usage", []byte("true"))), nil
}

// clientIncludesUsage reports whether an OpenAI request asked for the
// stream's usage chunk.
func clientIncludesUsage(obj jsonobj.Object) bool {
	raw, ok := obj.Get("stream_options")
	if !ok {
		return false
	}
	so, err := jsonobj.Parse(raw)
	if err != nil {
		return false
	}
	v, _ := so.Bool("include_usage")
	return v
}

// prepareUpstream points x.Out at the provider: path, Host, credentials.
func prepareUpstream(x *filter.Exchange, p *provider, translated, keepQuery bool, path string) {
	h := x.Out.Header
	for _, k := range stripRequest {
		delete(h, k)
	}
	if p.kind != Anthropic || translated {
		for _, k := range anthropicRequest {
			delete(h, k)
		}
	}
	switch p.kind {
	case OpenAI:
		if p.authValue != "" {
			h["Authorization"] = []string{p.authValue}
		}
	case Anthropic:
		if p.authValue != "" {
			h["X-Api-Key"] = []string{p.authValue}
		}
		if len(h["Anthropic-Version"]) == 0 {
			h["Anthropic-Version"] = []string{p.version}
		}
	}
	for k, v := range p.headers {
		h[k] = []string{v}
	}
	h["Content-Type"] = []string{"application/json"}
	delete(h, "Content-Length") // the body may have changed; x.Out.ContentLength is right
	x.Out.Host = p.ep.host
	u := x.Out.URL
	u.Path, u.RawPath = path, ""
	if !keepQuery {
		u.RawQuery = ""
	}
}

// OnResponse implements filter.ResponseFilter.
func (f *frontDoor) OnResponse(ctx context.Context, x *filter.Exchange) error {
	call := CallOf(x)
	resp := x.Resp
	if call != nil {
		h := resp.Header
		h.Set("X-Portico-Provider", call.Provider)
		h.Set("X-Portico-Model", call.Model)
		for _, k := range stripResponse {
			delete(h, k)
		}
	}
	if x.Err != nil {
		// A local reply: the gateway's own are in the client's schema
		// already; others (no healthy upstream, timeouts …) get put in it.
		f.localError(resp)
		return nil
	}
	if call == nil {
		return nil
	}
	st := call.st
	limit := x.BufferLimit
	if limit <= 0 {
		limit = filter.DefaultBufferLimit
	}
	if resp.StatusCode >= 400 {
		body, _ := readLimited(resp.Body, limit)
		status, out := f.upstreamError(call, st.p, resp.StatusCode, body)
		_, call.UpstreamError = upstreamErrorMessage(resp.StatusCode, redact(body, st.p.key))
		setBody(resp, status, out)
		return nil
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		// Nothing the gateway can read (it asks for identity): pass it on
		// untouched when the client speaks the provider's schema.
		if call.Translated {
			return reply(f.api, &apiError{status: http.StatusBadGateway, typ: "api_error", message: "provider sent an encoded (" + ce + ") response"})
		}
		return nil
	}
	if f.api == CountTokens {
		return nil
	}
	st.metered = true
	if isEventStream(resp.Header) {
		f.startStream(call, resp, limit)
		return nil
	}
	body, err := readLimited(resp.Body, limit)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(x.Out.Context().Err(), context.DeadlineExceeded) {
			return reply(f.api, &apiError{status: http.StatusGatewayTimeout, typ: "timeout_error", message: "upstream request timeout"})
		}
		return reply(f.api, &apiError{status: http.StatusBadGateway, typ: "api_error", message: "reading the provider's response failed: " + err.Error()})
	}
	var out []byte
	switch {
	case !call.Translated && f.api == ChatCompletions:
		call.ResponseModel, call.StopReason = meterOpenAIResponse(body, &st.m)
		out = body
	case !call.Translated:
		call.ResponseModel, call.StopReason = meterAnthropicResponse(body, &st.m)
		out = body
	case f.api == ChatCompletions:
		out, call.ResponseModel, call.StopReason, err = messagesRespToChat(body, f.g.now().Unix(), &st.m)
	default:
		out, call.ResponseModel, call.StopReason, err = chatRespToMessages(body, &st.m)
	}
	if err != nil {
		return reply(f.api, &apiError{status: http.StatusBadGateway, typ: "api_error", message: "the provider's response is not valid JSON"})
	}
	call.Usage = st.m.u
	setBody(resp, resp.StatusCode, out)
	if call.Translated {
		resp.Header.Set("Content-Type", "application/json")
	}
	return nil
}

// localError puts a local error reply that is not JSON into the client's
// error schema.
func (f *frontDoor) localError(resp *http.Response) {
	if resp.StatusCode < 400 || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return
	}
	body, _ := readLimited(resp.Body, 4096)
	msg := strings.TrimSpace(string(body))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e := &apiError{status: resp.StatusCode, typ: anthropicErrorType(resp.StatusCode), message: msg}
	setBody(resp, resp.StatusCode, errorBody(f.api, e))
	resp.Header.Set("Content-Type", "application/json")
}

func (f *frontDoor) startStream(call *Call, resp *http.Response, limit int64) {
	st := call.st
	switch {
	case f.api == ChatCompletions && !call.Translated:
		st.stream = &oaPass{call: call, m: &st.m, strip: !st.includeUsage}
	case f.api == ChatCompletions:
		st.stream = &anToOA{call: call, m: &st.m, created: f.g.now().Unix(), includeUsage: st.includeUsage}
	case !call.Translated:
		st.stream = &anPass{call: call, m: &st.m}
	default:
		st.stream = newOAToAn(call, &st.m)
	}
	st.dec.KeepComments = true
	st.dec.EmitUnterminated = true
	st.dec.MaxEventBytes = int(max(limit, sse.DefaultMaxEventBytes))
	st.emit = func(e sse.Event) error {
		st.out = st.stream.event(st.out, e)
		return nil
	}
	delete(resp.Header, "Content-Length")
	resp.ContentLength = -1
}

// OnResponseBody implements filter.ResponseBodyFilter: streams are
// decoded and re-encoded event by event.
func (f *frontDoor) OnResponseBody(ctx context.Context, x *filter.Exchange, c *filter.Chunk) error {
	call := CallOf(x)
	if call == nil || call.st.stream == nil {
		return nil
	}
	st := call.st
	if st.failed {
		c.Data = nil
		return nil
	}
	st.out = st.out[:0]
	if err := st.dec.Feed(c.Data, st.emit); err != nil {
		st.fail(f.api, err)
	} else if c.EOS {
		if err := st.dec.Flush(st.emit); err != nil {
			st.fail(f.api, err)
		} else {
			st.out = st.stream.end(st.out)
		}
	}
	c.Data = st.out
	call.Usage = st.m.u
	return nil
}

// fail ends a stream the gateway cannot decode with an error event.
func (st *state) fail(api API, err error) {
	st.failed = true
	msg := "the provider's stream could not be decoded: " + err.Error()
	st.out = streamError(st.out, api.anthropic(), "api_error", msg)
}

// OnDone implements filter.DoneFilter: it completes the call's usage,
// estimating what a stream cut short never reported.
func (f *frontDoor) OnDone(ctx context.Context, x *filter.Exchange) {
	call := CallOf(x)
	if call == nil || !call.st.metered {
		return
	}
	call.Usage = call.st.m.finish(call.st.body)
}

func isEventStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	return strings.HasPrefix(ct, "text/event-stream")
}

// readLimited reads body up to limit bytes and closes it.
func readLimited(body io.ReadCloser, limit int64) ([]byte, error) {
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("response body exceeds %d bytes", limit)
	}
	return b, nil
}

// setBody replaces a response's body and status.
func setBody(resp *http.Response, status int, body []byte) {
	resp.StatusCode = status
	resp.Status = strconv.Itoa(status) + " " + http.StatusText(status)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
}
