package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// policies is the runtime of the policy configuration: limits and budgets,
// deployments and fallbacks, pricing, telemetry, prompt and PII policies.
// It is embedded in Gateway; everything in it is immutable after New but
// for atomic pointers.
type policies struct {
	deps     map[string]*deployment // by provider and upstream model; built by New
	res      resilience
	tel      *telemetry
	lim      *limiter // nil without limits or budgets
	pricing  atomic.Pointer[Pricing]
	prompt   *Prompt   // nil without prompt policies
	pii      *redactor // nil without PII redaction
	piiReq   bool
	piiResp  bool
	clusters sources // for retries and fallbacks (Bind)
	close    sync.Once
}

// polState is the per-exchange state of the policies, inside the
// exchange's state.
type polState struct {
	route    *modelRoute // the route of the current attempt's model
	root     *modelRoute // the route of the model the client asked for
	model    string      // the model name route serves for this request
	dep      *deployment // the current attempt's deployment
	done     func(error) // reports the current attempt to dep's breaker
	tried    []*deployment
	triedBuf [4]*deployment
	fallback int // next entry of root.fallbacks
	retries  int
	sent     bool // the request was prepared for an upstream

	adm      admission
	upstream time.Duration // time spent waiting on upstreams
	span     trace.Span
	pii      *piiStream
}

// initPolicies compiles the policy configuration. It runs in New before
// the model table is built.
func (g *Gateway) initPolicies(cfg *Config, getenv func(string) string) error {
	g.deps = map[string]*deployment{}
	g.res = newResilience(cfg.Resilience)
	tel, err := newTelemetry(cfg.Telemetry)
	if err != nil {
		return fmt.Errorf("llm: telemetry: %w", err)
	}
	g.tel = tel
	switch {
	case cfg.Pricing != nil:
		g.pricing.Store(cfg.Pricing.compile())
	case cfg.PricingFile != "":
		p, err := LoadPricing(cfg.PricingFile)
		if err != nil {
			return err
		}
		g.pricing.Store(p.compile())
	}
	if cfg.Prompt.enabled() {
		p := cfg.Prompt
		g.prompt = &p
	}
	if cfg.PII.Requests || cfg.PII.Responses {
		g.pii = newRedactor(cfg.PII.Types)
		g.piiReq, g.piiResp = cfg.PII.Requests, cfg.PII.Responses
	}
	if len(cfg.Limits)+len(cfg.Budgets) == 0 {
		return nil
	}
	l := &limiter{prefix: "portico:llm"}
	for _, lc := range cfg.Limits {
		cl := compiledLimit{name: lc.Name, scope: compileScope(lc.Scope), window: lc.Window, requests: lc.Requests, tokens: lc.Tokens}
		switch lc.Count {
		case "input":
			cl.count = 1
		case "output":
			cl.count = 2
		}
		l.limits = append(l.limits, cl)
	}
	for _, b := range cfg.Budgets {
		l.budgets = append(l.budgets, compileBudget(b))
	}
	if r := cfg.Redis; r != nil {
		password := string(r.Password)
		if r.PasswordEnv != "" {
			if password = getenv(r.PasswordEnv); password == "" {
				return fmt.Errorf("llm: redis: environment variable %s is empty", r.PasswordEnv)
			}
		}
		if r.Prefix != "" {
			l.prefix = r.Prefix
		}
		l.failClosed = r.FailClosed
		l.store = newRedisStore(r, password)
	} else {
		l.store = newLocalStore()
	}
	g.lim = l
	return nil
}

// validatePolicies checks the policy part of a Config.
func (c *Config) validatePolicies() error {
	// Limits and budgets share one namespace: their names key counters.
	names := map[string]bool{}
	claim := func(kind string, i int, name string) error {
		switch {
		case name == "":
			return fmt.Errorf("%s[%d].name: required", kind, i)
		case names[name]:
			return fmt.Errorf("%s[%d].name: %q already used", kind, i, name)
		}
		names[name] = true
		return nil
	}
	for i := range c.Limits {
		l := &c.Limits[i]
		if err := claim("limits", i, l.Name); err != nil {
			return err
		}
		if err := l.validate(); err != nil {
			return fmt.Errorf("limits[%d] (%s): %w", i, l.Name, err)
		}
	}
	costBudget := false
	for i := range c.Budgets {
		b := &c.Budgets[i]
		if err := claim("budgets", i, b.Name); err != nil {
			return err
		}
		if err := b.validate(); err != nil {
			return fmt.Errorf("budgets[%d] (%s): %w", i, b.Name, err)
		}
		costBudget = costBudget || b.Cost > 0
	}
	if c.Redis != nil {
		if err := c.Redis.validate(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	if c.Pricing != nil && c.PricingFile != "" {
		return errors.New("pricing and pricing_file: set at most one")
	}
	if c.Pricing != nil {
		if err := c.Pricing.Validate(); err != nil {
			return fmt.Errorf("pricing: %w", err)
		}
	}
	if costBudget && c.Pricing == nil && c.PricingFile == "" {
		return errors.New("budgets: a cost budget needs a pricing table (pricing or pricing_file)")
	}
	if err := c.Resilience.validate(); err != nil {
		return err
	}
	if err := c.Prompt.validate(); err != nil {
		return fmt.Errorf("prompt: %w", err)
	}
	if err := c.PII.validate(); err != nil {
		return fmt.Errorf("pii: %w", err)
	}
	return validateFallbacks(c.Models)
}

// Close releases what the gateway holds outside the process: the Redis
// connections of shared limits. It is idempotent; requests after Close
// find the limits' store closed (see Redis.FailClosed).
func (g *Gateway) Close() error {
	var err error
	g.close.Do(func() {
		if g.lim != nil {
			err = g.lim.store.close()
		}
	})
	return err
}

// rewriteRequest applies the prompt policies and request redaction to a
// request body, before routing. It returns the body to use and its parsed
// form.
func (g *Gateway) rewriteRequest(api API, model string, body []byte, obj jsonobj.Object) ([]byte, jsonobj.Object, *apiError) {
	if g.prompt == nil && !g.piiReq && !g.piiResp {
		return body, obj, nil
	}
	out := body
	if g.piiResp {
		// Log probabilities carry the answer's tokens as the model wrote
		// them: they would leak what response redaction removes.
		out = withoutLogprobs(api, out, obj)
	}
	if g.prompt != nil {
		var aerr *apiError
		if out, aerr = applyPrompt(g.prompt, api, model, out, obj); aerr != nil {
			return nil, obj, aerr
		}
	}
	if g.piiReq && (api == ChatCompletions || api == Messages || api == CountTokens || api == Responses) {
		out = g.pii.redactJSON(out, piiTextRoots)
	}
	if bytes.Equal(out, body) {
		return body, obj, nil
	}
	o, err := jsonobj.Parse(out)
	if err != nil {
		return nil, obj, badRequest("%v", err)
	}
	return out, o, nil
}

// withoutLogprobs removes what asks for log probabilities from an OpenAI
// request: logprobs and top_logprobs (Chat Completions), top_logprobs and
// the "message.output_text.logprobs" include (Responses). It returns body
// itself when there is nothing to remove.
func withoutLogprobs(api API, body []byte, obj jsonobj.Object) []byte {
	if api != ChatCompletions && api != Responses {
		return body
	}
	out := body
	for _, k := range [...]string{"logprobs", "top_logprobs"} {
		if _, ok := obj.Get(k); ok {
			out = obj.Delete(k)
			o, err := jsonobj.ParseValid(out)
			if err != nil {
				return body
			}
			obj = o
		}
	}
	if api != Responses {
		return out
	}
	raw, ok := obj.Get("include")
	if !ok || !bytes.Contains(raw, []byte("logprobs")) {
		return out
	}
	var include []string
	if json.Unmarshal(raw, &include) != nil {
		return out // not a list of strings: the provider will say so
	}
	kept := include[:0]
	for _, v := range include {
		if v != "message.output_text.logprobs" {
			kept = append(kept, v)
		}
	}
	b, _ := json.Marshal(kept)
	return obj.Set("include", b)
}

// admit runs before the request is prepared for its provider: it starts
// the call's span and checks the limits and budgets.
func (g *Gateway) admit(ctx context.Context, x *filter.Exchange, api API, call *Call) error {
	callKey.Set(x, call) // so that the response and done phases see every call
	g.tel.startSpan(ctx, x, api, call)
	if g.lim == nil || operationName(api) == "" {
		return nil
	}
	return g.admitLimits(ctx, x, api, call)
}

// upstreamResponse runs first in the llm filter's response phase: it
// settles the attempt (retries and fallbacks, see Resilience) and, for a
// non-streamed success, reads the body so that the time spent receiving
// it counts as upstream time.
func (g *Gateway) upstreamResponse(ctx context.Context, x *filter.Exchange, f *frontDoor, call *Call) (body []byte) {
	g.attempts(ctx, x, f, call)
	resp := x.Resp
	if x.Err != nil || resp == nil || resp.StatusCode >= 300 || g.tel == nil || g.tel.overhead == "" ||
		isEventStream(resp.Header) || resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	limit := x.BufferLimit
	if limit <= 0 {
		limit = filter.DefaultBufferLimit
	}
	start := time.Now()
	var b []byte
	var err error
	if n := resp.ContentLength; n >= 0 && n <= limit {
		b, err = filter.ReadBody(resp.Body, n, limit) // one allocation, read to EOF
	} else {
		b, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	}
	call.st.pol.upstream += time.Since(start)
	switch {
	case err != nil:
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(b), errReader{err}), resp.Body}
	case int64(len(b)) > limit:
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	default:
		resp.Body.Close()
		resp.Body = filter.NewBytesBody(b)
		return b // OnResponse takes it from here rather than read it again
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// responseHeaders sets the policy headers of the response: rate limits
// and the overhead. It runs when the llm filter's response phase returns.
func (g *Gateway) responseHeaders(x *filter.Exchange, call *Call) {
	resp := x.Resp
	if resp == nil {
		return
	}
	if g.lim != nil && resp.StatusCode != http.StatusTooManyRequests {
		g.responseLimitHeaders(resp.Header, call)
	}
	g.tel.overheadHeader(resp.Header, x, call.st.pol.upstream)
}

// redactResponse redacts the text of a non-streamed response body.
func (g *Gateway) redactResponse(api API, body []byte) []byte {
	if !g.piiResp {
		return body
	}
	switch {
	case api == ChatCompletions:
		return g.pii.redactJSON(body, map[string]bool{"choices": true})
	case api == Messages:
		return g.pii.redactJSON(body, map[string]bool{"content": true})
	case api == Responses:
		out, _ := g.pii.redactResponses(body)
		return out
	}
	return body
}

// streamOut redacts a chunk of a streamed response as the client gets it.
func (g *Gateway) streamOut(api API, call *Call, data []byte, eos bool) []byte {
	if !g.piiResp || (api != ChatCompletions && api != Messages && api != Responses) {
		return data
	}
	ps := &call.st.pol
	if ps.pii == nil {
		ps.pii = newPIIStream(g.pii, api)
	}
	return ps.pii.filter(data, eos)
}

// done settles the call when the exchange is over: the breaker of an
// attempt that never reported, the cost, the limits' charge, metrics and
// the span.
func (g *Gateway) done(ctx context.Context, x *filter.Exchange, api API, call *Call) {
	ps := &call.st.pol
	ps.report(errNoOutcome)
	if call.st.metered {
		if p := g.pricing.Load(); p != nil {
			call.Cost, call.Priced = p.Cost(call)
		}
	}
	g.chargeLimits(ctx, call)
	g.tel.record(ctx, x, api, call)
}
