package llm

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// ScopeName is the instrumentation scope of the llm filter's meter and
// tracer.
const ScopeName = "github.com/porticoproxy/portico/llm"

// DefaultOverheadHeader is the response header that carries the time the
// gateway spent on a request outside the upstream calls, in milliseconds.
const DefaultOverheadHeader = "X-Portico-Overhead-Ms"

// Telemetry configures the llm filter's OpenTelemetry output, which
// follows the GenAI semantic conventions exactly.
//
// Metrics (with a MeterProvider):
//
//   - gen_ai.client.token.usage, histogram of {token}, attribute
//     gen_ai.token.type "input" or "output" (input includes cached tokens);
//   - gen_ai.server.request.duration, histogram in s, request received to
//     response done;
//   - gen_ai.server.time_to_first_token, histogram in s, streams: request
//     received to the first content event;
//   - gen_ai.server.time_per_output_token, histogram in s, streams: the
//     generation time after the first token divided by the output tokens
//     after the first;
//
// each with gen_ai.operation.name ("chat", "embeddings"),
// gen_ai.provider.name ("openai", "anthropic", "gcp.gemini",
// "aws.bedrock", "azure.ai.openai"), gen_ai.request.model (the model the
// client asked for), gen_ai.response.model (the model the provider
// reported), server.address and server.port (the provider's) and, for
// failures, error.type (the status code, or "_OTHER" for an error inside
// a stream). Buckets are the conventions' advice. Portico's own counters
// use the portico.llm prefix: portico.llm.cost (USD, by provider and
// model), portico.llm.limit.decisions (by outcome: admitted, refused,
// store_error_admitted, store_error_refused, charge_dropped),
// portico.llm.fallbacks (by from and to provider and reason) and
// portico.llm.cooldowns (deployments entering cooldown).
//
// Spans (with a TracerProvider): one CLIENT span per LLM call named
// "{gen_ai.operation.name} {gen_ai.request.model}", a child of the trace
// context the request carries upstream (set by filter/tracing when it is
// in the chain), with the attributes above plus gen_ai.request.max_tokens,
// gen_ai.request.temperature, gen_ai.request.top_p, gen_ai.response.
// finish_reasons, gen_ai.usage.input_tokens, gen_ai.usage.output_tokens,
// gen_ai.usage.cache_read.input_tokens,
// gen_ai.usage.cache_creation.input_tokens and
// gen_ai.usage.reasoning.output_tokens. Its context replaces the
// request's traceparent upstream.
type Telemetry struct {
	// MeterProvider receives the metrics; nil means none.
	MeterProvider metric.MeterProvider `json:"-"`
	// TracerProvider receives the spans; nil means none.
	TracerProvider trace.TracerProvider `json:"-"`
	// Propagator reads the parent trace context from, and writes the
	// span's into, the upstream request's headers; nil means W3C Trace
	// Context.
	Propagator propagation.TextMapPropagator `json:"-"`
	// OverheadHeader names the diagnostic response header holding the
	// gateway's own time in milliseconds: time from the request's arrival
	// to the response headers, less the time spent waiting for upstream
	// response headers and reading non-streamed upstream bodies. Empty
	// means DefaultOverheadHeader; "-" disables it.
	OverheadHeader string `json:"overhead_header,omitempty"`
}

// Bucket boundaries advised by the GenAI semantic conventions.
var (
	tokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	durationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	ttftBuckets     = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}
	tpotBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}
)

// Attribute keys of the GenAI semantic conventions, spelled out as
// strings so that Portico does not pin a semconv version.
const (
	keyOperation     = attribute.Key("gen_ai.operation.name")
	keyProvider      = attribute.Key("gen_ai.provider.name")
	keyRequestModel  = attribute.Key("gen_ai.request.model")
	keyResponseModel = attribute.Key("gen_ai.response.model")
	keyTokenType     = attribute.Key("gen_ai.token.type")
	keyErrorType     = attribute.Key("error.type")
	keyServerAddress = attribute.Key("server.address")
	keyServerPort    = attribute.Key("server.port")
	keyMaxTokens     = attribute.Key("gen_ai.request.max_tokens")
	keyTemperature   = attribute.Key("gen_ai.request.temperature")
	keyTopP          = attribute.Key("gen_ai.request.top_p")
	keyFinish        = attribute.Key("gen_ai.response.finish_reasons")
	keyUsageIn       = attribute.Key("gen_ai.usage.input_tokens")
	keyUsageOut      = attribute.Key("gen_ai.usage.output_tokens")
	keyUsageCacheR   = attribute.Key("gen_ai.usage.cache_read.input_tokens")
	keyUsageCacheW   = attribute.Key("gen_ai.usage.cache_creation.input_tokens")
	keyUsageReason   = attribute.Key("gen_ai.usage.reasoning.output_tokens")
)

// telemetry is the compiled Telemetry. A nil *telemetry records nothing.
type telemetry struct {
	meter    bool
	tracer   trace.Tracer // nil without a TracerProvider
	prop     propagation.TextMapPropagator
	overhead string // header name; "" when disabled

	tokenUsage metric.Int64Histogram
	duration   metric.Float64Histogram
	ttft       metric.Float64Histogram
	tpot       metric.Float64Histogram
	cost       metric.Float64Counter
	decisions  metric.Int64Counter
	fallbacks  metric.Int64Counter
	cooldowns  metric.Int64Counter

	// sets caches the attribute sets of recent (operation, provider,
	// models, error) combinations, so that recording allocates nothing
	// for them. Its size is bounded: models come from clients.
	sets  sync.Map // setKey → *attrSets
	nsets atomic.Int64
}

const maxAttrSets = 4096

func newTelemetry(t Telemetry) (*telemetry, error) {
	tel := &telemetry{prop: t.Propagator, overhead: t.OverheadHeader}
	switch tel.overhead {
	case "":
		tel.overhead = DefaultOverheadHeader
	case "-":
		tel.overhead = ""
	default:
		tel.overhead = http.CanonicalHeaderKey(tel.overhead)
	}
	if tel.prop == nil {
		tel.prop = propagation.TraceContext{}
	}
	if t.TracerProvider != nil {
		tel.tracer = t.TracerProvider.Tracer(ScopeName)
	}
	if t.MeterProvider == nil {
		return tel, nil
	}
	tel.meter = true
	m := t.MeterProvider.Meter(ScopeName)
	var err error
	if tel.tokenUsage, err = m.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithDescription("Number of input and output tokens used."), metric.WithExplicitBucketBoundaries(tokenBuckets...)); err != nil {
		return nil, err
	}
	if tel.duration, err = m.Float64Histogram("gen_ai.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Generative AI server request duration such as time-to-last byte or last output token."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if tel.ttft, err = m.Float64Histogram("gen_ai.server.time_to_first_token", metric.WithUnit("s"),
		metric.WithDescription("Time to generate first token for successful responses."), metric.WithExplicitBucketBoundaries(ttftBuckets...)); err != nil {
		return nil, err
	}
	if tel.tpot, err = m.Float64Histogram("gen_ai.server.time_per_output_token", metric.WithUnit("s"),
		metric.WithDescription("Time per output token generated after the first token for successful responses."),
		metric.WithExplicitBucketBoundaries(tpotBuckets...)); err != nil {
		return nil, err
	}
	if tel.cost, err = m.Float64Counter("portico.llm.cost", metric.WithUnit("USD"),
		metric.WithDescription("Cost of LLM requests from the gateway's pricing table.")); err != nil {
		return nil, err
	}
	if tel.decisions, err = m.Int64Counter("portico.llm.limit.decisions", metric.WithUnit("{request}"),
		metric.WithDescription("Rate limit and budget decisions, by outcome.")); err != nil {
		return nil, err
	}
	if tel.fallbacks, err = m.Int64Counter("portico.llm.fallbacks", metric.WithUnit("{attempt}"),
		metric.WithDescription("Retries and fallbacks after a failed provider attempt.")); err != nil {
		return nil, err
	}
	if tel.cooldowns, err = m.Int64Counter("portico.llm.cooldowns", metric.WithUnit("{cooldown}"),
		metric.WithDescription("Deployments entering cooldown after repeated failures.")); err != nil {
		return nil, err
	}
	return tel, nil
}

// operationName is gen_ai.operation.name for a front door; "" for those
// that are not model operations (count_tokens, models).
func operationName(api API) string {
	switch api.String() {
	case "count_tokens", "models", "unknown":
		return ""
	case "embeddings":
		return "embeddings"
	}
	return "chat"
}

// providerName is gen_ai.provider.name for a provider kind.
func providerName(k Kind) string {
	switch k {
	case "gemini":
		return "gcp.gemini"
	case "vertex", "vertex_ai":
		return "gcp.vertex_ai"
	case "bedrock":
		return "aws.bedrock"
	case "azure", "azure_openai":
		return "azure.ai.openai"
	}
	return string(k)
}

type setKey struct {
	op, provider, reqModel, respModel, errType string
}

// attrSets are the recording options of one attribute combination.
type attrSets struct {
	base   []metric.RecordOption
	input  []metric.RecordOption
	output []metric.RecordOption
	add    []metric.AddOption
}

func (t *telemetry) attrs(k setKey, p *provider) *attrSets {
	if v, ok := t.sets.Load(k); ok {
		return v.(*attrSets)
	}
	kv := make([]attribute.KeyValue, 0, 9)
	kv = append(kv, keyOperation.String(k.op), keyProvider.String(k.provider), keyRequestModel.String(k.reqModel))
	if k.respModel != "" {
		kv = append(kv, keyResponseModel.String(k.respModel))
	}
	if k.errType != "" {
		kv = append(kv, keyErrorType.String(k.errType))
	}
	if p != nil {
		kv = append(kv, keyServerAddress.String(p.ep.hostname))
		if _, port, err := net.SplitHostPort(p.ep.address); err == nil {
			if n, err := strconv.Atoi(port); err == nil {
				kv = append(kv, keyServerPort.Int(n))
			}
		}
	}
	base := attribute.NewSet(kv...)
	in := attribute.NewSet(append(kv[:len(kv):len(kv)], keyTokenType.String("input"))...)
	out := attribute.NewSet(append(kv[:len(kv):len(kv)], keyTokenType.String("output"))...)
	s := &attrSets{
		base:   []metric.RecordOption{metric.WithAttributeSet(base)},
		input:  []metric.RecordOption{metric.WithAttributeSet(in)},
		output: []metric.RecordOption{metric.WithAttributeSet(out)},
		add:    []metric.AddOption{metric.WithAttributeSet(base)},
	}
	if t.nsets.Load() < maxAttrSets {
		if _, loaded := t.sets.LoadOrStore(k, s); !loaded {
			t.nsets.Add(1)
		}
	}
	return s
}

// startSpan starts the call's span, a child of the trace context in the
// upstream request's headers, and puts its own context there.
func (t *telemetry) startSpan(ctx context.Context, x *filter.Exchange, api API, call *Call) {
	if t == nil || t.tracer == nil {
		return
	}
	op := operationName(api)
	if op == "" {
		return
	}
	carrier := propagation.HeaderCarrier(x.Out.Header)
	ctx = t.prop.Extract(ctx, carrier)
	start := x.Start
	if start.IsZero() {
		start = time.Now()
	}
	ctx, span := t.tracer.Start(ctx, op+" "+call.RequestModel, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start))
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 8)
		attrs = append(attrs, keyOperation.String(op), keyProvider.String(providerName(call.ProviderKind)),
			keyRequestModel.String(call.RequestModel))
		if obj, err := jsonobj.Parse(call.st.body); err == nil {
			if v, ok := jsonNumber(obj, "max_completion_tokens"); ok {
				attrs = append(attrs, keyMaxTokens.Int64(int64(v)))
			} else if v, ok := jsonNumber(obj, "max_tokens"); ok {
				attrs = append(attrs, keyMaxTokens.Int64(int64(v)))
			}
			if v, ok := jsonNumber(obj, "temperature"); ok {
				attrs = append(attrs, keyTemperature.Float64(v))
			}
			if v, ok := jsonNumber(obj, "top_p"); ok {
				attrs = append(attrs, keyTopP.Float64(v))
			}
		}
		span.SetAttributes(attrs...)
	}
	t.prop.Inject(ctx, carrier)
	call.st.pol.span = span
}

func jsonNumber(obj jsonobj.Object, key string) (float64, bool) {
	raw, ok := obj.Get(key)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	return v, err == nil
}

// errorType is error.type for a finished call: the status code of a
// failure, "_OTHER" for an error inside a successful stream.
func errorType(x *filter.Exchange, call *Call) string {
	status := x.Status
	if status == 0 && x.Resp != nil {
		status = x.Resp.StatusCode
	}
	switch {
	case status >= 400:
		return strconv.Itoa(status)
	case call.UpstreamError != "" || x.Err != nil:
		return "_OTHER"
	}
	return ""
}

// record records a finished call's metrics and ends its span.
func (t *telemetry) record(ctx context.Context, x *filter.Exchange, api API, call *Call) {
	if t == nil {
		return
	}
	op := operationName(api)
	span := call.st.pol.span
	if op == "" || (!t.meter && span == nil) {
		return
	}
	end := x.End
	if end.IsZero() {
		end = time.Now()
	}
	errType := errorType(x, call)
	u := call.Usage
	if t.meter {
		s := t.attrs(setKey{op: op, provider: providerName(call.ProviderKind), reqModel: call.RequestModel,
			respModel: call.ResponseModel, errType: errType}, call.st.p)
		if call.st.metered {
			t.tokenUsage.Record(ctx, u.InputTokens, s.input...)
			t.tokenUsage.Record(ctx, u.OutputTokens, s.output...)
		}
		t.duration.Record(ctx, end.Sub(x.Start).Seconds(), s.base...)
		if call.Stream && !call.FirstByte.IsZero() && errType == "" {
			t.ttft.Record(ctx, call.FirstByte.Sub(x.Start).Seconds(), s.base...)
			if u.OutputTokens > 1 {
				t.tpot.Record(ctx, end.Sub(call.FirstByte).Seconds()/float64(u.OutputTokens-1), s.base...)
			}
		}
		if call.Priced {
			t.cost.Add(ctx, call.Cost, s.add...)
		}
	}
	if span != nil {
		call.st.pol.span = nil
		if span.IsRecording() {
			attrs := make([]attribute.KeyValue, 0, 12)
			attrs = append(attrs, keyProvider.String(providerName(call.ProviderKind)))
			if call.ResponseModel != "" {
				attrs = append(attrs, keyResponseModel.String(call.ResponseModel))
			}
			if p := call.st.p; p != nil {
				attrs = append(attrs, keyServerAddress.String(p.ep.hostname))
			}
			if call.StopReason != "" {
				attrs = append(attrs, keyFinish.StringSlice([]string{call.StopReason}))
			}
			if call.st.metered {
				attrs = append(attrs, keyUsageIn.Int64(u.InputTokens), keyUsageOut.Int64(u.OutputTokens),
					keyUsageCacheR.Int64(u.CacheReadTokens), keyUsageCacheW.Int64(u.CacheWriteTokens))
				if u.ReasoningTokens > 0 {
					attrs = append(attrs, keyUsageReason.Int64(u.ReasoningTokens))
				}
			}
			if errType != "" {
				attrs = append(attrs, keyErrorType.String(errType))
				msg := call.UpstreamError
				if msg == "" {
					msg = http.StatusText(x.Status)
				}
				span.SetStatus(codes.Error, msg)
			}
			span.SetAttributes(attrs...)
		}
		span.End(trace.WithTimestamp(end))
	}
}

// admittedOpt is the attribute option of the most frequent decision.
var admittedOpt = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", "admitted")))}

func (t *telemetry) limitDecision(ctx context.Context, outcome, limit string) {
	if t == nil || !t.meter {
		return
	}
	switch {
	case outcome == "admitted":
		t.decisions.Add(ctx, 1, admittedOpt...)
		return
	case limit == "":
		t.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
		return
	}
	t.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome), attribute.String("limit", limit)))
}

func (t *telemetry) fallback(from, to string, v verdict) {
	if t == nil || !t.meter {
		return
	}
	reason := "error"
	switch v {
	case vContextLength:
		reason = "context_length"
	case vFallback:
		reason = "rejected"
	}
	t.fallbacks.Add(context.Background(), 1, metric.WithAttributes(attribute.String("from", from),
		attribute.String("to", to), attribute.String("reason", reason)))
}

func (t *telemetry) cooldown(deployment string, to gobreaker.State) {
	if t == nil || !t.meter || to != gobreaker.StateOpen {
		return
	}
	t.cooldowns.Add(context.Background(), 1, metric.WithAttributes(attribute.String("deployment", deployment)))
}

// overheadHeader sets the overhead header on h.
func (t *telemetry) overheadHeader(h http.Header, x *filter.Exchange, upstream time.Duration) {
	if t == nil || t.overhead == "" || x.Start.IsZero() {
		return
	}
	d := max(time.Since(x.Start)-upstream, 0)
	h[t.overhead] = []string{strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)}
}
