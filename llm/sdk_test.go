package llm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm"
)

const upstreamKey = "sk-upstream-SECRET-abcdef0123456789"

// scripted is a loopback provider that answers every request with one
// scripted response, writing event streams one event per flush, and
// records what it received.
type scripted struct {
	srv    *httptest.Server
	status int
	body   []byte
	sse    bool
	step   chan struct{} // when set, each event waits for a value

	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	path   string
	header http.Header
	body   []byte
}

func newScripted(t *testing.T, status int, body []byte, sse bool) *scripted {
	t.Helper()
	s := &scripted{status: status, body: body, sse: sse}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *scripted) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, recorded{path: r.URL.Path, header: r.Header.Clone(), body: body})
	s.mu.Unlock()
	if !s.sse || s.status != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=provider-account")
		w.Header().Set("Openai-Organization", "org-provider")
		w.WriteHeader(s.status)
		w.Write(s.body)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	for _, ev := range bytes.SplitAfter(s.body, []byte("\n\n")) {
		if len(ev) == 0 {
			continue
		}
		if s.step != nil {
			select {
			case <-s.step:
			case <-r.Context().Done():
				return
			}
		}
		w.Write(ev)
		rc.Flush()
	}
}

func (s *scripted) last(t *testing.T) recorded {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("the provider got no request")
	}
	return s.reqs[len(s.reqs)-1]
}

// calls records the llm.Call of every exchange, in the done phase of a
// filter declared before the llm filter (so it runs after it).
type calls chan llm.Call

func (calls) Name() string { return "record" }

func (c calls) OnDone(ctx context.Context, x *filter.Exchange) {
	if call := llm.CallOf(x); call != nil {
		c <- *call
	}
}

func (c calls) next(t *testing.T) llm.Call {
	t.Helper()
	select {
	case call := <-c:
		return call
	case <-time.After(10 * time.Second):
		t.Fatal("no llm.Call recorded")
	}
	return llm.Call{}
}

// startGateway serves a Portico gateway with the llm filter in front of
// the given provider for every model, and returns its base URL.
func startGateway(t *testing.T, kind llm.Kind, upstreamURL string) (string, calls) {
	t.Helper()
	base := upstreamURL
	if kind == llm.OpenAI {
		base += "/v1"
	}
	return startGatewayFor(t, llm.Provider{Kind: kind, BaseURL: base, APIKeyEnv: "SCRIPTED_KEY"})
}

func openAIClient(base string) openai.Client {
	return openai.NewClient(ooption.WithBaseURL(base+"/v1/"), ooption.WithAPIKey("client-key"), ooption.WithMaxRetries(0))
}

func anthropicClient(base string) anthropic.Client {
	return anthropic.NewClient(aoption.WithBaseURL(base), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0))
}

var weatherOpenAI = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: openai.String("Current weather"),
	Parameters:  shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
})

var weatherAnthropic = anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
	Properties: map[string]any{"city": map[string]any{"type": "string"}},
	Required:   []string{"city"},
}, "get_weather")

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkCredentials asserts the provider got the gateway's key and never
// the client's.
func checkCredentials(t *testing.T, kind llm.Kind, req recorded) {
	t.Helper()
	for k, vv := range req.header {
		for _, v := range vv {
			if strings.Contains(v, "client-key") {
				t.Errorf("the client's credential reached the provider in %s", k)
			}
		}
	}
	switch kind {
	case llm.OpenAI:
		if got := req.header.Get("Authorization"); got != "Bearer "+upstreamKey {
			t.Errorf("provider got Authorization %q, want the gateway's key", got)
		}
	case llm.Anthropic:
		if got := req.header.Get("X-Api-Key"); got != upstreamKey {
			t.Errorf("provider got x-api-key %q, want the gateway's key", got)
		}
		if got := req.header.Get("Anthropic-Version"); got == "" {
			t.Error("provider got no anthropic-version")
		}
	}
}

// TestOpenAISDKOverAnthropic drives the gateway with the official OpenAI
// client against a provider that speaks Anthropic Messages.
func TestOpenAISDKOverAnthropic(t *testing.T) {
	t.Run("non-streaming tool calls", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "oa-an-tools/upstream.json"), false)
		base, rec := startGateway(t, llm.Anthropic, up.srv.URL)
		var raw *http.Response
		client := openAIClient(base)
		resp, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model:    "claude-sonnet-4-5",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Weather in Paris and Rome?")},
			Tools:    []openai.ChatCompletionToolUnionParam{weatherOpenAI},
		}, ooption.WithResponseInto(&raw))
		if err != nil {
			t.Fatalf("Chat.Completions.New through the gateway: %v", err)
		}
		m := resp.Choices[0].Message
		if m.Content != "Checking both." {
			t.Errorf("content = %q", m.Content)
		}
		if len(m.ToolCalls) != 2 {
			t.Fatalf("got %d tool calls, want 2", len(m.ToolCalls))
		}
		for i, want := range []string{`{"city":"Paris","day":"tomorrow"}`, `{"city":"Rome","day":"tomorrow"}`} {
			tc := m.ToolCalls[i]
			if tc.Function.Name != "get_weather" || tc.Function.Arguments != want {
				t.Errorf("tool call %d = %s(%s), want get_weather(%s)", i, tc.Function.Name, tc.Function.Arguments, want)
			}
		}
		if resp.Choices[0].FinishReason != "tool_calls" {
			t.Errorf("finish_reason = %q, want tool_calls", resp.Choices[0].FinishReason)
		}
		if resp.Usage.PromptTokens != 310 || resp.Usage.CompletionTokens != 96 || resp.Usage.CompletionTokensDetails.ReasoningTokens != 20 {
			t.Errorf("usage = %+v", resp.Usage)
		}
		hdr := raw.Header
		if hdr.Get("X-Portico-Provider") != "scripted" || hdr.Get("X-Portico-Model") != "claude-sonnet-4-5" {
			t.Errorf("x-portico headers: provider %q model %q", hdr.Get("X-Portico-Provider"), hdr.Get("X-Portico-Model"))
		}
		if hdr.Get("Set-Cookie") != "" || hdr.Get("Openai-Organization") != "" {
			t.Errorf("provider account headers reached the client: %v", hdr)
		}
		req := up.last(t)
		checkCredentials(t, llm.Anthropic, req)
		if req.path != "/v1/messages" {
			t.Errorf("provider path %q, want /v1/messages", req.path)
		}
		call := rec.next(t)
		if call.Usage.InputTokens != 310 || call.Usage.OutputTokens != 96 || !call.Translated {
			t.Errorf("call = %+v", call)
		}
	})

	t.Run("streaming tool calls", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "oa-an-stream/upstream.sse"), true)
		base, rec := startGateway(t, llm.Anthropic, up.srv.URL)
		client := openAIClient(base)
		stream := client.Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{
			Model:         "claude-opus-4-1",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris and Rome?")},
			Tools:         []openai.ChatCompletionToolUnionParam{weatherOpenAI},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		n := 0
		var reasoning strings.Builder
		for stream.Next() {
			chunk := stream.Current()
			if n == 0 && (len(chunk.Choices) == 0 || chunk.Choices[0].Delta.Role != "assistant") {
				t.Errorf("first chunk %s lacks role assistant", chunk.RawJSON())
			}
			if len(chunk.Choices) > 0 {
				if f, ok := chunk.Choices[0].Delta.JSON.ExtraFields["reasoning_content"]; ok {
					var s string
					json.Unmarshal([]byte(f.Raw()), &s)
					reasoning.WriteString(s)
				}
			}
			if !acc.AddChunk(chunk) {
				t.Fatalf("the accumulator rejected chunk %d: %s", n, chunk.RawJSON())
			}
			n++
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		m := acc.Choices[0].Message
		if m.Content != "Checking <both> & “more”…\n" {
			t.Errorf("content = %q", m.Content)
		}
		if reasoning.String() != "Two cities, two calls." {
			t.Errorf("reasoning_content = %q", reasoning.String())
		}
		if len(m.ToolCalls) != 2 {
			t.Fatalf("got %d tool calls, want 2: %+v", len(m.ToolCalls), m.ToolCalls)
		}
		for i, want := range []struct{ id, args string }{{"toolu_1", `{"city": "Paris"}`}, {"toolu_2", `{"city": "Rome"}`}} {
			tc := m.ToolCalls[i]
			if tc.ID != want.id || tc.Function.Name != "get_weather" || tc.Function.Arguments != want.args {
				t.Errorf("tool call %d = %s %s(%s), want %s get_weather(%s)", i, tc.ID, tc.Function.Name, tc.Function.Arguments, want.id, want.args)
			}
		}
		if acc.Choices[0].FinishReason != "tool_calls" {
			t.Errorf("finish_reason = %q", acc.Choices[0].FinishReason)
		}
		if u := acc.Usage; u.PromptTokens != 1472 || u.CompletionTokens != 89 || u.PromptTokensDetails.CachedTokens != 1000 {
			t.Errorf("usage = %+v", u)
		}
		checkCredentials(t, llm.Anthropic, up.last(t))
		call := rec.next(t)
		if call.Usage.InputTokens != 1472 || call.Usage.CacheReadTokens != 1000 || call.Usage.OutputTokens != 89 || call.Usage.Estimated {
			t.Errorf("call usage = %+v", call.Usage)
		}
	})

	t.Run("mid-stream error", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "oa-an-stream-error/upstream.sse"), true)
		base, rec := startGateway(t, llm.Anthropic, up.srv.URL)
		client := openAIClient(base)
		stream := client.Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{
			Model:    "claude-haiku-4-5",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		})
		var text strings.Builder
		for stream.Next() {
			if c := stream.Current(); len(c.Choices) > 0 {
				text.WriteString(c.Choices[0].Delta.Content)
			}
		}
		err := stream.Err()
		if err == nil || !strings.Contains(err.Error(), "Overloaded") {
			t.Fatalf("stream error = %v, want the upstream's Overloaded", err)
		}
		if text.String() != "Hello there, how" {
			t.Errorf("text before the error = %q", text.String())
		}
		call := rec.next(t)
		if call.UpstreamError != "Overloaded" || !call.Usage.Estimated || call.Usage.OutputTokens == 0 {
			t.Errorf("call = %+v", call)
		}
	})

	t.Run("upstream rejects the key", func(t *testing.T) {
		up := newScripted(t, http.StatusUnauthorized, []byte(`{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key `+upstreamKey+`"}}`), false)
		base, _ := startGateway(t, llm.Anthropic, up.srv.URL)
		client := openAIClient(base)
		_, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model:    "claude-haiku-4-5",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("got %v, want an *openai.Error", err)
		}
		if apiErr.StatusCode != http.StatusBadGateway {
			t.Errorf("status %d, want 502", apiErr.StatusCode)
		}
		if raw := apiErr.RawJSON() + apiErr.Error(); strings.Contains(raw, "SECRET") {
			t.Errorf("the provider's key reached the client: %s", raw)
		}
	})

	t.Run("models", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, nil, false)
		base, _ := startGateway(t, llm.Anthropic, up.srv.URL)
		client := openAIClient(base)
		page, err := client.Models.List(ctxT(t))
		if err != nil {
			t.Fatalf("Models.List: %v", err)
		}
		if len(page.Data) != 0 {
			t.Errorf("got %d models, want none (only a wildcard is configured)", len(page.Data))
		}
	})
}

// TestAnthropicSDKOverOpenAI drives the gateway with the official
// Anthropic client against a provider that speaks OpenAI Chat Completions.
func TestAnthropicSDKOverOpenAI(t *testing.T) {
	t.Run("non-streaming tool use", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "an-oa-tools/upstream.json"), false)
		base, rec := startGateway(t, llm.OpenAI, up.srv.URL)
		client := anthropicClient(base)
		msg, err := client.Messages.New(ctxT(t), anthropic.MessageNewParams{
			Model:      "gpt-4.1",
			MaxTokens:  1024,
			System:     []anthropic.TextBlockParam{{Text: "Be brief."}},
			Messages:   []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris and Rome?"))},
			Tools:      []anthropic.ToolUnionParam{weatherAnthropic},
			ToolChoice: anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{}},
		})
		if err != nil {
			t.Fatalf("Messages.New through the gateway: %v", err)
		}
		if len(msg.Content) != 2 {
			t.Fatalf("got %d content blocks, want 2 tool uses", len(msg.Content))
		}
		for i, want := range []string{`{"city":"Paris","day":"tomorrow"}`, `{"city":"Rome","day":"tomorrow"}`} {
			b := msg.Content[i]
			if b.Type != "tool_use" || b.Name != "get_weather" || string(b.Input) != want {
				t.Errorf("block %d = %s %s(%s), want tool_use get_weather(%s)", i, b.Type, b.Name, b.Input, want)
			}
		}
		if msg.StopReason != anthropic.StopReasonToolUse {
			t.Errorf("stop_reason = %q", msg.StopReason)
		}
		if msg.Usage.InputTokens != 300 || msg.Usage.OutputTokens != 60 {
			t.Errorf("usage = %+v", msg.Usage)
		}
		req := up.last(t)
		checkCredentials(t, llm.OpenAI, req)
		if req.path != "/v1/chat/completions" {
			t.Errorf("provider path %q", req.path)
		}
		var sent struct {
			Messages []struct{ Role, Content string }
		}
		json.Unmarshal(req.body, &sent)
		if len(sent.Messages) != 2 || sent.Messages[0].Role != "system" || sent.Messages[0].Content != "Be brief." {
			t.Errorf("provider got messages %+v, want the system prompt first", sent.Messages)
		}
		if call := rec.next(t); call.Usage.InputTokens != 300 || !call.Translated {
			t.Errorf("call = %+v", call)
		}
	})

	t.Run("streaming tool use", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "an-oa-stream/upstream.sse"), true)
		base, rec := startGateway(t, llm.OpenAI, up.srv.URL)
		client := anthropicClient(base)
		stream := client.Messages.NewStreaming(ctxT(t), anthropic.MessageNewParams{
			Model:     "deepseek-reasoner",
			MaxTokens: 1024,
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris and Rome?"))},
			Tools:     []anthropic.ToolUnionParam{weatherAnthropic},
		})
		var msg anthropic.Message
		var types []string
		for stream.Next() {
			ev := stream.Current()
			types = append(types, ev.Type)
			if err := msg.Accumulate(ev); err != nil {
				t.Fatalf("Accumulate(%s): %v", ev.RawJSON(), err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		if types[0] != "message_start" || types[len(types)-1] != "message_stop" {
			t.Errorf("event types %v", types)
		}
		if len(msg.Content) != 4 {
			t.Fatalf("got %d blocks, want thinking, text and 2 tool uses: %+v", len(msg.Content), msg.Content)
		}
		if b := msg.Content[0]; b.Type != "thinking" || b.Thinking != "Two cities." {
			t.Errorf("block 0 = %s %q", b.Type, b.Thinking)
		}
		if b := msg.Content[1]; b.Type != "text" || b.Text != "Checking <both> & more." {
			t.Errorf("block 1 = %s %q", b.Type, b.Text)
		}
		for i, want := range []struct{ id, input string }{{"call_1", `{"city":"Paris"}`}, {"call_2", `{"city":"Rome"}`}} {
			b := msg.Content[2+i]
			if b.Type != "tool_use" || b.ID != want.id || b.Name != "get_weather" || string(b.Input) != want.input {
				t.Errorf("block %d = %s %s %s(%s), want %s get_weather(%s)", 2+i, b.Type, b.ID, b.Name, b.Input, want.id, want.input)
			}
		}
		if msg.StopReason != anthropic.StopReasonToolUse {
			t.Errorf("stop_reason = %q", msg.StopReason)
		}
		u := msg.Usage
		if u.InputTokens != 350 || u.CacheReadInputTokens != 100 || u.CacheCreationInputTokens != 50 || u.OutputTokens != 70 {
			t.Errorf("usage = input %d cache read %d cache write %d output %d, want 350 100 50 70",
				u.InputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, u.OutputTokens)
		}
		req := up.last(t)
		checkCredentials(t, llm.OpenAI, req)
		if !bytes.Contains(req.body, []byte(`"stream_options":{"include_usage":true}`)) {
			t.Errorf("provider request lacks include_usage: %s", req.body)
		}
		call := rec.next(t)
		if call.Usage.InputTokens != 500 || call.Usage.OutputTokens != 70 || call.Usage.ReasoningTokens != 20 || call.Usage.Estimated {
			t.Errorf("call usage = %+v", call.Usage)
		}
	})

	t.Run("mid-stream error", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "an-oa-stream-error/upstream.sse"), true)
		base, rec := startGateway(t, llm.OpenAI, up.srv.URL)
		client := anthropicClient(base)
		stream := client.Messages.NewStreaming(ctxT(t), anthropic.MessageNewParams{
			Model: "gpt-4.1", MaxTokens: 100,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))},
		})
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		err := stream.Err()
		if err == nil || !strings.Contains(err.Error(), "server had an error") {
			t.Fatalf("stream error = %v, want the upstream's error", err)
		}
		if len(msg.Content) != 1 || msg.Content[0].Text != "Hello" {
			t.Errorf("content before the error = %+v", msg.Content)
		}
		if call := rec.next(t); call.UpstreamError == "" || !call.Usage.Estimated {
			t.Errorf("call = %+v", call)
		}
	})

	t.Run("count tokens and models", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, nil, false)
		base, _ := startGateway(t, llm.OpenAI, up.srv.URL)
		client := anthropicClient(base)
		n, err := client.Messages.CountTokens(ctxT(t), anthropic.MessageCountTokensParams{
			Model:    "gpt-4.1",
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("How many tokens is this message, roughly?"))},
		})
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		if n.InputTokens < 5 || n.InputTokens > 20 {
			t.Errorf("estimated %d input tokens for a 41-byte message", n.InputTokens)
		}
		page, err := client.Models.List(ctxT(t), anthropic.ModelListParams{})
		if err != nil {
			t.Fatalf("Models.List: %v", err)
		}
		if len(page.Data) != 0 {
			t.Errorf("got %d models", len(page.Data))
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, nil, false)
		g, err := llm.New(llm.Config{
			Providers: []llm.Provider{{Name: "p", Kind: llm.OpenAI, BaseURL: up.srv.URL + "/v1"}},
			Models:    []llm.Model{{Name: "gpt-*", Provider: "p"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := g.Route("claude-x"); ok {
			t.Fatal("claude-x routed")
		}
	})
}

// TestStreamNotBuffered checks, in both directions, that each upstream
// event reaches the client before the provider writes the next one: text
// and tool-argument fragments in particular are never buffered.
func TestStreamNotBuffered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   llm.Kind
		path   string
		body   string
		golden string
		// want[i] must reach the client after upstream event i, before
		// event i+1 is written; "" when event i produces nothing to wait
		// for.
		want []string
	}{{
		name: "anthropic provider, openai client", kind: llm.Anthropic, path: "/v1/chat/completions",
		body:   `{"model":"claude-opus-4-1","stream":true,"messages":[{"role":"user","content":"Hi"}]}`,
		golden: "oa-an-stream/upstream.sse",
		want: []string{`"role":"assistant"`, "", "", `"reasoning_content":"Two cities, "`, `"reasoning_content":"two calls."`,
			`"signature":"EqQBCgIYAhIM"`, "", "", "", `"content":"Checking`, "", `"name":"get_weather"`, "",
			`"arguments":"{\"city\": \"Pa"`, `"arguments":"ris\"}"`, "", `"id":"toolu_2"`, `"arguments":"{\"city\": \"Rome\"}"`, "",
			`"finish_reason":"tool_calls"`, "[DONE]"},
	}, {
		name: "openai provider, anthropic client", kind: llm.OpenAI, path: "/v1/messages",
		body:   `{"model":"gpt-4.1","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`,
		golden: "an-oa-stream/upstream.sse",
		want: []string{`"type":"message_start"`, `"thinking":"Two cities."`, `"text":"Checking "`, `"text":"<both> & more."`, "",
			`"name":"get_weather"`, `"partial_json":"{\"city\":"`, `"partial_json":"\"Paris\"}"`, `"id":"call_2"`,
			`{"type":"content_block_stop","index":3}`, `"type":"message_delta"`, ""},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			sse := bytes.ReplaceAll(golden(t, tc.golden), []byte("\r\n"), []byte("\n"))
			if n := bytes.Count(sse, []byte("\n\n")); n != len(tc.want) {
				t.Fatalf("%d upstream events, %d expectations", n, len(tc.want))
			}
			up := newScripted(t, http.StatusOK, sse, true)
			up.step = make(chan struct{})
			base, _ := startGateway(t, tc.kind, up.srv.URL)
			req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, base+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			lines := make(chan string, 64)
			go func() {
				defer close(lines)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					if l := sc.Text(); strings.HasPrefix(l, "data: ") {
						lines <- l
					}
				}
			}()
			for i, want := range tc.want {
				up.step <- struct{}{}
				if want == "" {
					continue
				}
				deadline := time.After(5 * time.Second)
			wait:
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("event %d: stream ended before %s", i, want)
						}
						if strings.Contains(l, want) {
							break wait
						}
					case <-deadline:
						t.Fatalf("event %d: the client did not get %s before the provider's next event", i, want)
					}
				}
			}
			close(up.step)
			for range lines {
			}
		})
	}
}
