package llm

import (
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
	doors        [lastAPI + 1]*frontDoor
	modelsOpenAI []byte
	modelsAnth   []byte
	now          func() time.Time

	policies // limits, routing, cost, telemetry, prompt and PII (routing_hooks.go)
}

type target struct {
	p        *provider
	upstream string // empty: the requested name
	r        *modelRoute
	dep      *deployment
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
	if err := g.initPolicies(&cfg, getenv); err != nil {
		return nil, err
	}
	byName := map[string]*provider{}
	for i := range cfg.Providers {
		p, err := newProvider(&cfg.Providers[i], getenv)
		if err != nil {
			return nil, err
		}
		g.providers = append(g.providers, p)
		byName[p.name] = p
	}
	for _, m := range cfg.Models {
		t := g.newTarget(m, byName)
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
	for api := ChatCompletions; api <= lastAPI; api++ {
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
	if !ok || api < ChatCompletions || api > lastAPI {
		return nil, fmt.Errorf("llm: per-route config must be an llm.API, got %T %v", config, config)
	}
	return g.doors[api], nil
}

// FrontDoor returns the filter that serves api, for chains assembled by
// hand (without per-route configuration).
func (g *Gateway) FrontDoor(api API) filter.Filter {
	if api < ChatCompletions || api > lastAPI {
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
// host: POST /v1/chat/completions, POST /v1/responses, POST
// /v1/embeddings, POST /v1/messages, POST /v1/messages/count_tokens, GET
// /v1/models and GET /v1/models/{model}, each with its API as the llm
// filter's per-route configuration, Config.RouteTimeout and
// Config.MaxRequestBytes. Their cluster is a placeholder (the first
// provider's): the filter chooses the cluster per request.
func (g *Gateway) Rules() []route.Rule {
	cl := g.providers[0].cluster
	rule := func(name, path, method string, api API) route.Rule {
		m := route.Match{Path: path, Methods: []string{method}}
		if strings.HasSuffix(path, "/") {
			m = route.Match{Prefix: path, Methods: []string{method}}
		}
		return route.Rule{
			Name:         name,
			Match:        m,
			Cluster:      cl,
			Timeout:      g.routeTimeout,
			BufferLimit:  g.maxReq,
			FilterConfig: map[string]any{FilterName: api},
		}
	}
	return []route.Rule{
		rule("llm_chat_completions", "/v1/chat/completions", http.MethodPost, ChatCompletions),
		rule("llm_responses", "/v1/responses", http.MethodPost, Responses),
		rule("llm_embeddings", "/v1/embeddings", http.MethodPost, Embeddings),
		rule("llm_messages", "/v1/messages", http.MethodPost, Messages),
		rule("llm_count_tokens", "/v1/messages/count_tokens", http.MethodPost, CountTokens),
		rule("llm_models", "/v1/models", http.MethodGet, Models),
		rule("llm_model", "/v1/models/", http.MethodGet, Models),
	}
}

// Clusters returns the clusters of the providers that name none of their
// own: one per provider, named "llm_" + its name, with its BaseURL's host
// as the endpoint, TLS (SNI and verification against that host) for
// https, and the provider's middleware (Bedrock's SigV4 signer; see
// Middleware).
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
		c.Middleware = g.Middleware(p.name)
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
	frames *frameFeed     // Bedrock's binary event stream, decoded in place of dec
	rs     *rsEcho        // a translated Responses request, echoed in its response
	embed  embeddingsEcho // a translated embeddings request

	pol polState // policies (routing_hooks.go)
}

// Response headers that identify the gateway's provider account.
var stripResponse = [...]string{"Set-Cookie", "Openai-Organization", "Openai-Project", "Anthropic-Organization-Id"}

// OnRequest implements filter.RequestFilter.
func (f *frontDoor) OnRequest(ctx context.Context, x *filter.Exchange) error {
	if f.api == Models {
		return f.g.models(x)
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
	body, obj, aerr := f.g.rewriteRequest(f.api, model, body, obj) // prompt policies, PII
	if aerr != nil {
		return reply(f.api, aerr)
	}
	t, ok := f.g.route(model)
	if !ok {
		return reply(f.api, &apiError{status: http.StatusNotFound, typ: "not_found_error", message: fmt.Sprintf("model %q is not served by this gateway", model)})
	}
	call := &Call{API: f.api, RequestModel: model, Stream: stream}
	st := &state{body: body}
	st.m.firstByte = &call.FirstByte
	call.st = st
	t = f.g.choose(t, call) // a deployment: weighted, skipping those cooling down
	if err := f.g.admit(ctx, x, f.api, call); err != nil {
		return err // over a limit or budget
	}
	return f.prepare(ctx, x, call, obj, body, t)
}

// prepare rewrites the request for t's provider, translating it when the
// provider speaks another schema, and points the exchange at it. It runs
// for the first attempt and again for each retry or fallback.
func (f *frontDoor) prepare(ctx context.Context, x *filter.Exchange, call *Call, obj jsonobj.Object, body []byte, t target) error {
	p, st := t.p, call.st
	call.Provider, call.ProviderKind, call.Model = p.name, p.kind, t.upstream
	if f.api == CountTokens && p.kind != Anthropic {
		// Gemini and Bedrock count upstream, the others estimate (count_tokens.go).
		return f.countTokens(ctx, x, call, obj, body, t)
	}
	up, aerr := f.buildUpstream(call, st, obj, body, t)
	if aerr != nil {
		return reply(f.api, aerr)
	}
	x.SetBody(up.body)
	if err := prepareUpstream(ctx, x, p, call.Translated, &up); err != nil {
		return reply(f.api, &apiError{status: http.StatusBadGateway, typ: "api_error", message: err.Error()})
	}
	x.Cluster = p.cluster
	callKey.Set(x, call)
	st.pol.sent = true
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

// OnResponse implements filter.ResponseFilter.
func (f *frontDoor) OnResponse(ctx context.Context, x *filter.Exchange) error {
	call := CallOf(x)
	var upBody []byte // a non-streamed success body upstreamResponse read
	if call != nil {
		upBody = f.g.upstreamResponse(ctx, x, f, call) // retries, fallbacks, cooldown
		defer f.g.responseHeaders(x, call)             // x-ratelimit-*, overhead
		if f.api == CountTokens {
			f.countTokensResponse(x, call) // Gemini's or Bedrock's count, or the estimate
		}
	}
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
	body, err := upBody, error(nil)
	if body != nil {
		resp.Body.Close() // upstreamResponse read it whole
	} else {
		body, err = readSized(resp.Body, resp.ContentLength, limit)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(x.Out.Context().Err(), context.DeadlineExceeded) {
			return reply(f.api, &apiError{status: http.StatusGatewayTimeout, typ: "timeout_error", message: "upstream request timeout"})
		}
		return reply(f.api, &apiError{status: http.StatusBadGateway, typ: "api_error", message: "reading the provider's response failed: " + err.Error()})
	}
	out, err := f.translateResponse(call, resp, body)
	if err != nil {
		return reply(f.api, &apiError{status: http.StatusBadGateway, typ: "api_error", message: "the provider's response is not valid JSON"})
	}
	call.Usage = st.m.u
	out = f.g.redactResponse(f.api, out)
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
	st.stream = f.g.newStreamer(f.api, call, st, resp.Header, limit)
	st.dec.KeepComments = true
	st.dec.EmitUnterminated = true
	st.dec.MaxEventBytes = int(max(limit, sse.DefaultMaxEventBytes))
	st.emit = func(e sse.Event) error {
		st.out = st.stream.event(st.out, e)
		return nil
	}
	delete(resp.Header, "Content-Length")
	resp.ContentLength = -1
	if call.Translated {
		resp.Header.Set("Content-Type", "text/event-stream; charset=utf-8")
	}
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
	if err := st.feed(c.Data); err != nil {
		st.fail(f.api, err)
	} else if c.EOS {
		if err := st.flush(); err != nil {
			st.fail(f.api, err)
		} else {
			st.out = st.stream.end(st.out)
		}
	}
	c.Data = f.g.streamOut(f.api, call, st.out, c.EOS)
	call.Usage = st.m.u
	return nil
}

// fail ends a stream the gateway cannot decode with an error event.
func (st *state) fail(api API, err error) {
	st.failed = true
	st.out = st.stream.abort(st.out, "the provider's stream could not be decoded: "+err.Error())
}

// OnDone implements filter.DoneFilter: it completes the call's usage,
// estimating what a stream cut short never reported.
func (f *frontDoor) OnDone(ctx context.Context, x *filter.Exchange) {
	call := CallOf(x)
	if call == nil {
		return
	}
	if call.st.metered {
		call.Usage = call.st.m.finish(call.st.body)
	}
	f.g.done(ctx, x, f.api, call) // cost, limits, telemetry
}

func isEventStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	return strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, eventStreamType)
}

// readLimited reads body up to limit bytes and closes it.
func readLimited(body io.ReadCloser, limit int64) ([]byte, error) {
	return readSized(body, -1, limit)
}

// readSized is readLimited for a body of announced size (-1 unknown):
// one allocation when the size is known.
func readSized(body io.ReadCloser, size, limit int64) ([]byte, error) {
	defer body.Close()
	b, err := filter.ReadBody(body, size, limit)
	if errors.Is(err, filter.ErrBufferLimit) {
		return nil, fmt.Errorf("response body exceeds %d bytes", limit)
	}
	return b, err
}

// setBody replaces a response's body and status.
func setBody(resp *http.Response, status int, body []byte) {
	if resp.StatusCode != status || resp.Status == "" {
		resp.StatusCode = status
		resp.Status = strconv.Itoa(status) + " " + http.StatusText(status)
	}
	resp.Body = filter.NewBytesBody(body)
	resp.ContentLength = int64(len(body))
	resp.Header["Content-Length"] = []string{strconv.Itoa(len(body))}
}
