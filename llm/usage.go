package llm

import (
	"time"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Usage is the normalised token usage of one request, whatever the
// provider's schema.
//
// Convention: InputTokens counts every prompt token, cached or not, and
// OutputTokens every generated token, reasoning included; the other counts
// are subsets of those two. This is OpenAI's convention and the OpenTelemetry
// GenAI one (gen_ai.usage.input_tokens includes cached tokens). Anthropic's
// input_tokens excludes cache reads and writes, so for Anthropic
//
//	InputTokens = input_tokens + cache_creation_input_tokens + cache_read_input_tokens
//
// and the gateway converts back when it answers an Anthropic client.
type Usage struct {
	// InputTokens is every prompt token, including cache reads and writes.
	InputTokens int64 `json:"input_tokens"`
	// OutputTokens is every generated token, including reasoning.
	OutputTokens int64 `json:"output_tokens"`
	// CacheReadTokens is the part of InputTokens read from the provider's
	// prompt cache.
	CacheReadTokens int64 `json:"cache_read_tokens"`
	// CacheWriteTokens is the part of InputTokens written to the provider's
	// prompt cache.
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	// ReasoningTokens is the part of OutputTokens spent on reasoning
	// (thinking), when the provider reports it.
	ReasoningTokens int64 `json:"reasoning_tokens"`
	// Estimated is set when the provider did not report (all of) the usage,
	// typically because a stream was cut short, and the gateway estimated
	// the missing counts: output from the bytes streamed so far, input
	// from the request's text (about four bytes per token).
	Estimated bool `json:"estimated,omitempty"`
}

// TotalTokens returns InputTokens + OutputTokens.
func (u Usage) TotalTokens() int64 { return u.InputTokens + u.OutputTokens }

// API is a front door: the client-facing API a route serves.
type API int

const (
	// ChatCompletions is OpenAI's POST /v1/chat/completions.
	ChatCompletions API = iota + 1
	// Messages is Anthropic's POST /v1/messages.
	Messages
	// CountTokens is Anthropic's POST /v1/messages/count_tokens.
	CountTokens
	// Models is GET /v1/models, answered by the gateway from its model
	// table, in Anthropic's shape when the request has an
	// anthropic-version header and in OpenAI's otherwise; GET
	// /v1/models/{model} answers one model the table routes.
	Models
	// Responses is OpenAI's POST /v1/responses.
	Responses
	// Embeddings is OpenAI's POST /v1/embeddings.
	Embeddings

	lastAPI = Embeddings
)

// String returns the API's name.
func (a API) String() string {
	switch a {
	case ChatCompletions:
		return "chat_completions"
	case Messages:
		return "messages"
	case CountTokens:
		return "count_tokens"
	case Models:
		return "models"
	case Responses:
		return "responses"
	case Embeddings:
		return "embeddings"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler: an API marshals as its
// name.
func (a API) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// anthropic reports whether the API speaks Anthropic's schema (errors
// included).
func (a API) anthropic() bool { return a == Messages || a == CountTokens }

// Call is what the gateway knows about one LLM exchange: the front door,
// the route it took and its usage. The gateway stores it on the Exchange
// in its request phase; read it with CallOf.
//
// A Call belongs to its exchange's goroutine. Filters declared before the
// llm filter see it in their response and done phases (those run after the
// llm filter's); Usage is final when their OnDone runs, streams included.
type Call struct {
	// API is the front door the client called.
	API API `json:"api"`
	// Provider is the name of the provider chosen; ProviderKind its kind.
	Provider     string `json:"provider"`
	ProviderKind Kind   `json:"provider_kind"`
	// RequestModel is the model the client asked for; Model the model
	// sent upstream (they differ for aliases and overrides).
	RequestModel string `json:"request_model"`
	Model        string `json:"model"`
	// ResponseModel is the model the provider reported, when it did.
	ResponseModel string `json:"response_model,omitempty"`
	// Stream is set for streaming requests.
	Stream bool `json:"stream"`
	// Translated is set when the request and response were translated
	// between schemas (the provider's kind differs from the front door's).
	Translated bool `json:"translated"`
	// Usage is the request's usage. For streams it fills in as events
	// arrive and is final in the done phase.
	Usage Usage `json:"usage"`
	// StopReason is the stop reason the provider reported, in its own
	// schema ("stop", "end_turn", "tool_use" …), when it did.
	StopReason string `json:"stop_reason,omitempty"`
	// FirstByte is when the first content reached the gateway: the first
	// content event of a stream (time to first token), or the whole
	// response otherwise; zero until then.
	FirstByte time.Time `json:"first_byte,omitzero"`
	// UpstreamError is the error the provider reported, with the key
	// redacted: an error response's message, an error event in a stream,
	// or a note that the stream ended before it was complete.
	UpstreamError string `json:"upstream_error,omitempty"`
	// Cost is the request's price in US dollars from the pricing table
	// (Config.Pricing), set with Usage in the done phase when the model
	// has a price (Priced).
	Cost   float64 `json:"cost,omitempty"`
	Priced bool    `json:"priced,omitempty"`
	// Fallbacks is the number of attempts after the first: retries of
	// the same deployment and fallbacks to others (see Resilience).
	// Provider and Model are the last attempt's.
	Fallbacks int `json:"fallbacks,omitempty"`

	st *state
}

var callKey = filter.NewKey[*Call]("llm.call")

// CallOf returns the Call of an exchange the llm filter handled, or nil.
func CallOf(x *filter.Exchange) *Call {
	c, _ := callKey.Get(x)
	return c
}

// meter accumulates usage as a response or stream reports it. Providers
// report cumulative values, so every report sets (never adds to) the
// counts it carries.
type meter struct {
	u         Usage
	hasInput  bool  // input counts reported
	final     bool  // final usage reported
	outBytes  int64 // content bytes seen in a stream, for estimates
	firstByte *time.Time
}

// anUsage is Anthropic's usage object; pointers tell absent from zero.
type anUsage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
	OutputTokensDetails      *struct {
		ThinkingTokens *int64 `json:"thinking_tokens"`
	} `json:"output_tokens_details"`
}

// anRaw holds Anthropic's exclusive input components so that a later
// report of one of them recomputes the inclusive total.
type anRaw struct{ in, cacheWrite, cacheRead int64 }

// setAnthropic applies an Anthropic usage report (message_start,
// message_delta or a whole message). final marks reports whose output
// count is final.
func (m *meter) setAnthropic(u *anUsage, raw *anRaw, final bool) {
	if u == nil {
		return
	}
	if u.InputTokens != nil {
		raw.in = *u.InputTokens
		m.hasInput = true
	}
	if u.CacheCreationInputTokens != nil {
		raw.cacheWrite = *u.CacheCreationInputTokens
	}
	if u.CacheReadInputTokens != nil {
		raw.cacheRead = *u.CacheReadInputTokens
	}
	m.u.InputTokens = raw.in + raw.cacheWrite + raw.cacheRead
	m.u.CacheWriteTokens = raw.cacheWrite
	m.u.CacheReadTokens = raw.cacheRead
	if u.OutputTokens != nil {
		m.u.OutputTokens = *u.OutputTokens
	}
	if d := u.OutputTokensDetails; d != nil && d.ThinkingTokens != nil {
		m.u.ReasoningTokens = *d.ThinkingTokens
	}
	if final {
		m.final = true
	}
}

// oaUsage is OpenAI's usage object.
type oaUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens     int64 `json:"cached_tokens"`
		CacheWriteTokens int64 `json:"cache_write_tokens,omitempty"`
	} `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details,omitempty"`
}

// setOpenAI applies an OpenAI usage report, which is always complete.
func (m *meter) setOpenAI(u *oaUsage) {
	if u == nil {
		return
	}
	m.u.InputTokens = u.PromptTokens
	m.u.OutputTokens = u.CompletionTokens
	m.u.CacheReadTokens, m.u.CacheWriteTokens, m.u.ReasoningTokens = 0, 0, 0
	if d := u.PromptTokensDetails; d != nil {
		m.u.CacheReadTokens = d.CachedTokens
		m.u.CacheWriteTokens = d.CacheWriteTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		m.u.ReasoningTokens = d.ReasoningTokens
	}
	m.hasInput = true
	m.final = true
}

// setOpenAIObject applies an OpenAI usage object, indexed: setOpenAI
// without decoding it into an oaUsage. Members that are not integers
// count as absent.
func (m *meter) setOpenAIObject(u jsonobj.Object) {
	var ou oaUsage
	ou.PromptTokens, _, _ = u.Int("prompt_tokens")
	ou.CompletionTokens, _, _ = u.Int("completion_tokens")
	m.setOpenAI(&ou)
	if d, ok, err := u.Object("prompt_tokens_details"); ok && err == nil {
		m.u.CacheReadTokens, _, _ = d.Int("cached_tokens")
		m.u.CacheWriteTokens, _, _ = d.Int("cache_write_tokens")
	}
	if d, ok, err := u.Object("completion_tokens_details"); ok && err == nil {
		m.u.ReasoningTokens, _, _ = d.Int("reasoning_tokens")
	}
}

// content records streamed content bytes, and the time of the first.
func (m *meter) content(n int) {
	if n == 0 {
		return
	}
	if m.outBytes == 0 && m.firstByte != nil && m.firstByte.IsZero() {
		*m.firstByte = time.Now()
	}
	m.outBytes += int64(n)
}

// finish completes the usage of a response that did not report all of
// it: the output from the content seen, the input from the request.
func (m *meter) finish(request []byte) Usage {
	u := m.u
	if m.final {
		return u
	}
	u.Estimated = true
	if est := (m.outBytes + 3) / 4; est > u.OutputTokens {
		u.OutputTokens = est
	}
	if !m.hasInput {
		u.InputTokens = estimateTokens(request)
	}
	return u
}

// anthropicUsageOf returns u in Anthropic's exclusive convention.
func anthropicUsageOf(u Usage) (in, cacheWrite, cacheRead, out int64) {
	in = max(u.InputTokens-u.CacheReadTokens-u.CacheWriteTokens, 0)
	return in, u.CacheWriteTokens, u.CacheReadTokens, u.OutputTokens
}
