package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/llm"
)

// syncBuffer is a bytes.Buffer safe for the gateway's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startExample runs the example with args and returns its base URL.
func startExample(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *portico.Gateway, 1)
	done := make(chan error, 1)
	out := &syncBuffer{}
	args = append([]string{"-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-mock-delay", "0"}, args...)
	go func() { done <- run(ctx, args, out, ready) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("llm-gateway returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("llm-gateway did not stop within 10s")
		}
	})
	select {
	case gw := <-ready:
		return "http://" + gw.ListenerAddr("llm").String(), out
	case err := <-done:
		t.Fatalf("llm-gateway: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("llm-gateway did not start within 10s")
	}
	return "", nil
}

// noProviderEnv makes sure the environment selects the mock provider.
func noProviderEnv(t *testing.T) {
	for _, k := range []string{"OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GEMINI_API_KEY", "GEMINI_BASE_URL"} {
		t.Setenv(k, "")
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var weatherOpenAI = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:       "get_weather",
	Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
})

var weatherAnthropic = anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
	Properties: map[string]any{"city": map[string]any{"type": "string"}},
	Required:   []string{"city"},
}, "get_weather")

func TestMockWithOpenAISDK(t *testing.T) {
	noProviderEnv(t)
	base, out := startExample(t)
	client := openai.NewClient(ooption.WithBaseURL(base+"/v1/"), ooption.WithAPIKey("any"), ooption.WithMaxRetries(0))

	// gpt-* goes to the mock's OpenAI API as is; claude-* to its
	// Anthropic API, translated both ways.
	for _, model := range []string{"gpt-4o-mini", "claude-sonnet-4-5"} {
		t.Run(model+" non-streaming", func(t *testing.T) {
			resp, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
				Model:    model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello, gateway")},
			})
			if err != nil {
				t.Fatal(err)
			}
			want := `Hello from the Portico mock provider! You said: "Hello, gateway"`
			if got := resp.Choices[0].Message.Content; got != want {
				t.Errorf("content = %q, want %q", got, want)
			}
			if resp.Choices[0].FinishReason != "stop" || resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens != 10 {
				t.Errorf("finish %q usage %+v", resp.Choices[0].FinishReason, resp.Usage)
			}
		})
		t.Run(model+" streaming tool call", func(t *testing.T) {
			stream := client.Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{
				Model:         model,
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")},
				Tools:         []openai.ChatCompletionToolUnionParam{weatherOpenAI},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				if !acc.AddChunk(stream.Current()) {
					t.Fatalf("accumulator rejected %s", stream.Current().RawJSON())
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			m := acc.Choices[0].Message
			if m.Content != "I will call get_weather." {
				t.Errorf("content = %q", m.Content)
			}
			if len(m.ToolCalls) != 1 || m.ToolCalls[0].Function.Name != "get_weather" || m.ToolCalls[0].Function.Arguments != `{"city":"example"}` {
				t.Errorf("tool calls = %+v", m.ToolCalls)
			}
			if acc.Choices[0].FinishReason != "tool_calls" || acc.Usage.TotalTokens == 0 {
				t.Errorf("finish %q usage %+v", acc.Choices[0].FinishReason, acc.Usage)
			}
		})
	}
	waitFor(t, out, `provider=mock-anthropic model=claude-sonnet-4-5 stream=true`)
}

func TestMockWithAnthropicSDK(t *testing.T) {
	noProviderEnv(t)
	base, _ := startExample(t)
	client := anthropic.NewClient(aoption.WithBaseURL(base), aoption.WithAPIKey("any"), aoption.WithMaxRetries(0))
	for _, model := range []string{"claude-sonnet-4-5", "mock-gpt"} {
		t.Run(model+" non-streaming", func(t *testing.T) {
			msg, err := client.Messages.New(ctxT(t), anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 256,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello, gateway"))},
			})
			if err != nil {
				t.Fatal(err)
			}
			want := `Hello from the Portico mock provider! You said: "Hello, gateway"`
			if len(msg.Content) != 1 || msg.Content[0].Text != want {
				t.Errorf("content = %+v, want %q", msg.Content, want)
			}
			if msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.InputTokens == 0 || msg.Usage.OutputTokens != 10 {
				t.Errorf("stop %q usage %+v", msg.StopReason, msg.Usage)
			}
		})
		t.Run(model+" streaming tool use", func(t *testing.T) {
			stream := client.Messages.NewStreaming(ctxT(t), anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 256,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
				Tools:    []anthropic.ToolUnionParam{weatherAnthropic},
			})
			var msg anthropic.Message
			for stream.Next() {
				if err := msg.Accumulate(stream.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) != 2 || msg.Content[0].Text != "I will call get_weather." ||
				msg.Content[1].Name != "get_weather" || string(msg.Content[1].Input) != `{"city":"example"}` {
				t.Errorf("content = %+v", msg.Content)
			}
			if msg.StopReason != anthropic.StopReasonToolUse || msg.Usage.InputTokens == 0 || msg.Usage.OutputTokens == 0 {
				t.Errorf("stop %q usage %+v", msg.StopReason, msg.Usage)
			}
		})
	}
	t.Run("tool result round trip", func(t *testing.T) {
		msg, err := client.Messages.New(ctxT(t), anthropic.MessageNewParams{
			Model: "mock-gpt", MaxTokens: 256,
			Tools: []anthropic.ToolUnionParam{weatherAnthropic},
			Messages: []anthropic.MessageParam{
				anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?")),
				anthropic.NewAssistantMessage(anthropic.NewToolUseBlock("call_mock_0", map[string]string{"city": "Paris"}, "get_weather")),
				anthropic.NewUserMessage(anthropic.NewToolResultBlock("call_mock_0", "18C and sunny", false)),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Content) != 1 || msg.Content[0].Text != "The tool returned: 18C and sunny" {
			t.Errorf("content = %+v", msg.Content)
		}
	})
	t.Run("count tokens and models", func(t *testing.T) {
		n, err := client.Messages.CountTokens(ctxT(t), anthropic.MessageCountTokensParams{
			Model:    "claude-sonnet-4-5",
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello"))},
		})
		if err != nil || n.InputTokens == 0 {
			t.Fatalf("CountTokens = %+v, %v", n, err)
		}
		page, err := client.Models.List(ctxT(t), anthropic.ModelListParams{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		if strings.Join(ids, ",") != "mock-gpt,mock-claude,mock-gemini,mock-bedrock" {
			t.Errorf("models = %v", ids)
		}
	})
}

// TestMockEveryProvider drives every front door against every side of the
// mock provider: the OpenAI SDK's Chat Completions, Responses and
// Embeddings and the Anthropic SDK's Messages, each for a model answered
// by the mock's OpenAI, Anthropic, Gemini and Bedrock APIs.
func TestMockEveryProvider(t *testing.T) {
	noProviderEnv(t)
	base, out := startExample(t)
	oa := openai.NewClient(ooption.WithBaseURL(base+"/v1/"), ooption.WithAPIKey("any"), ooption.WithMaxRetries(0))
	an := anthropic.NewClient(aoption.WithBaseURL(base), aoption.WithAPIKey("any"), aoption.WithMaxRetries(0))
	models := map[string]string{"gpt-4o-mini": "mock-openai", "claude-sonnet-4-5": "mock-anthropic",
		"gemini-2.5-flash": "mock-gemini", "anthropic.claude-3-5-haiku-20241022-v1:0": "mock-bedrock"}
	weather := responses.ToolParamOfFunction("get_weather", map[string]any{
		"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}, false)
	for model, provider := range models {
		t.Run(model+" responses", func(t *testing.T) {
			var raw *http.Response
			resp, err := oa.Responses.New(ctxT(t), responses.ResponseNewParams{
				Model: model,
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Hello, gateway")},
			}, ooption.WithResponseInto(&raw))
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Output) != 1 || resp.Output[0].Content[0].Text != `Hello from the Portico mock provider! You said: "Hello, gateway"` {
				t.Errorf("output = %+v", resp.Output)
			}
			if resp.Status != "completed" || resp.Usage.InputTokens == 0 || resp.Usage.OutputTokens != 10 {
				t.Errorf("status %q usage %+v", resp.Status, resp.Usage)
			}
			if got := raw.Header.Get("X-Portico-Provider"); got != provider {
				t.Errorf("provider %q, want %q", got, provider)
			}
		})
		t.Run(model+" responses streaming tool call", func(t *testing.T) {
			stream := oa.Responses.NewStreaming(ctxT(t), responses.ResponseNewParams{
				Model: model,
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Paris?")},
				Tools: []responses.ToolUnionParam{weather},
			})
			var text, args strings.Builder
			var final responses.Response
			for stream.Next() {
				ev := stream.Current()
				switch ev.Type {
				case "response.output_text.delta":
					text.WriteString(ev.Delta)
				case "response.function_call_arguments.delta":
					args.WriteString(ev.Delta)
				case "response.completed":
					final = ev.Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if text.String() != "I will call get_weather." || args.String() != `{"city":"example"}` {
				t.Errorf("text %q arguments %q", text.String(), args.String())
			}
			if final.Status != "completed" || final.Usage.TotalTokens == 0 || len(final.Output) != 2 || final.Output[1].Name != "get_weather" {
				t.Errorf("completed = %+v", final)
			}
		})
		t.Run(model+" messages streaming", func(t *testing.T) {
			stream := an.Messages.NewStreaming(ctxT(t), anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 256,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
				Tools:    []anthropic.ToolUnionParam{weatherAnthropic},
			})
			var msg anthropic.Message
			for stream.Next() {
				if err := msg.Accumulate(stream.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) != 2 || msg.Content[0].Text != "I will call get_weather." || string(msg.Content[1].Input) != `{"city":"example"}` {
				t.Errorf("content = %+v", msg.Content)
			}
			if msg.StopReason != anthropic.StopReasonToolUse || msg.Usage.InputTokens == 0 || msg.Usage.OutputTokens == 0 {
				t.Errorf("stop %q usage %+v", msg.StopReason, msg.Usage)
			}
		})
		t.Run(model+" chat non-streaming", func(t *testing.T) {
			resp, err := oa.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
				Model:    model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello, gateway")},
			})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Choices[0].Message.Content != `Hello from the Portico mock provider! You said: "Hello, gateway"` || resp.Usage.CompletionTokens != 10 {
				t.Errorf("content %q usage %+v", resp.Choices[0].Message.Content, resp.Usage)
			}
		})
	}
	for _, model := range []string{"text-embedding-3-small", "gemini-embedding-001"} {
		t.Run(model+" embeddings", func(t *testing.T) {
			resp, err := oa.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
				Model: model,
				Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Data) != 2 || len(resp.Data[1].Embedding) != 8 || resp.Usage.PromptTokens == 0 {
				t.Errorf("embeddings = %+v", resp)
			}
		})
	}
	waitFor(t, out, `provider=mock-bedrock model=anthropic.claude-3-5-haiku-20241022-v1:0 stream=true`)
}

// TestEnvironmentProviders points OPENAI_BASE_URL at a provider that
// checks the key: the gateway must send it, and never let it out.
func TestEnvironmentProviders(t *testing.T) {
	noProviderEnv(t)
	const key = "sk-env-SECRET-0123456789"
	var mu sync.Mutex
	var gotAuth []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+key {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s","type":"invalid_request_error","code":"invalid_api_key"}}`, r.Header.Get("Authorization"))
			return
		}
		io.WriteString(w, `{"id":"chatcmpl-env","object":"chat.completion","created":1,"model":"gpt-env","choices":[{"index":0,"message":{"role":"assistant","content":"from env"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	defer up.Close()
	t.Setenv("OPENAI_BASE_URL", up.URL+"/v1")
	t.Setenv("OPENAI_API_KEY", key)
	base, out := startExample(t)
	resp, err := http.Post(base+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"gpt-env","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("from env")) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Portico-Provider") != "openai" {
		t.Errorf("x-portico-provider = %q", resp.Header.Get("X-Portico-Provider"))
	}
	mu.Lock()
	if len(gotAuth) != 1 || gotAuth[0] != "Bearer "+key {
		t.Errorf("provider got Authorization %q", gotAuth)
	}
	mu.Unlock()
	if strings.Contains(out.String(), "SECRET") {
		t.Errorf("the key was printed: %s", out.String())
	}
}

// TestEnvironmentGemini routes gemini-* to Gemini when GEMINI_API_KEY is
// set.
func TestEnvironmentGemini(t *testing.T) {
	noProviderEnv(t)
	const key = "gm-env-SECRET-0123456789"
	var mu sync.Mutex
	var got []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path+" "+r.Header.Get("X-Goog-Api-Key"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"candidates":[{"content":{"role":"model","parts":[{"text":"from gemini"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"totalTokenCount":5},"modelVersion":"gemini-2.5-flash","responseId":"r1"}`)
	}))
	defer up.Close()
	t.Setenv("GEMINI_BASE_URL", up.URL)
	t.Setenv("GEMINI_API_KEY", key)
	base, out := startExample(t)
	resp, err := http.Post(base+"/v1/messages", "application/json",
		strings.NewReader(`{"model":"gemini-2.5-flash","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"text":"from gemini"`)) || resp.Header.Get("X-Portico-Provider") != "gemini" {
		t.Fatalf("got %d %s %v", resp.StatusCode, body, resp.Header)
	}
	mu.Lock()
	if len(got) != 1 || got[0] != "/v1beta/models/gemini-2.5-flash:generateContent "+key {
		t.Errorf("provider got %q", got)
	}
	mu.Unlock()
	if strings.Contains(out.String(), "SECRET") {
		t.Errorf("the key was printed: %s", out.String())
	}
}

func TestConfigFile(t *testing.T) {
	noProviderEnv(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Model string }
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"msg_cfg","type":"message","role":"assistant","model":%q,"content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}`, req.Model)
	}))
	defer up.Close()
	cfg := filepath.Join(t.TempDir(), "llm.json")
	os.WriteFile(cfg, []byte(`{"providers":[{"name":"claude","kind":"anthropic","base_url":"`+up.URL+`","api_key":"sk-file-SECRET"}],
		"models":[{"name":"smart","provider":"claude","upstream_model":"claude-sonnet-4-5"}]}`), 0o600)
	base, _ := startExample(t, "-config", cfg)
	client := openai.NewClient(ooption.WithBaseURL(base+"/v1/"), ooption.WithAPIKey("any"), ooption.WithMaxRetries(0))
	resp, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
		Model:    "smart",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Model != "claude-sonnet-4-5" || resp.Choices[0].Message.Content != "ok" {
		t.Errorf("got model %q content %q", resp.Model, resp.Choices[0].Message.Content)
	}
	_, err = client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
		Model:    "unknown",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !asError(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("unknown model: got %v, want a 404 *openai.Error", err)
	}

	t.Run("example file parses", func(t *testing.T) {
		b, err := os.ReadFile("llm.example.json")
		if err != nil {
			t.Fatal(err)
		}
		var c llm.Config
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

func asError(err error, target **openai.Error) bool {
	e, ok := err.(*openai.Error)
	if ok {
		*target = e
	}
	return ok
}

func waitFor(t *testing.T, out *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), s) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("output lacks %q:\n%s", s, out.String())
}

// TestConfigFileYAML loads a YAML configuration with a limit: the second
// request of a one-request-per-minute key is refused with 429.
func TestConfigFileYAML(t *testing.T) {
	noProviderEnv(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"msg_y","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"yaml"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}`)
	}))
	defer up.Close()
	cfg := filepath.Join(t.TempDir(), "llm.yaml")
	os.WriteFile(cfg, []byte(`# a YAML config
providers:
  - name: claude
    kind: anthropic
    base_url: "`+up.URL+`"
    api_key: sk-yaml-SECRET
models:
  - {name: smart, provider: claude, upstream_model: claude-sonnet-4-5}
limits:
  - {name: one, key: api_key, window: 1m, requests: 1}
`), 0o600)
	base, _ := startExample(t, "-config", cfg)
	client := openai.NewClient(ooption.WithBaseURL(base+"/v1/"), ooption.WithAPIKey("client-key"), ooption.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{Model: "smart", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
	resp, err := client.Chat.Completions.New(ctxT(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "yaml" {
		t.Errorf("content %q, want %q", resp.Choices[0].Message.Content, "yaml")
	}
	_, err = client.Chat.Completions.New(ctxT(t), params)
	var apiErr *openai.Error
	if !asError(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Errorf("second request: got %v, want a 429 *openai.Error", err)
	}
}

// TestExampleYAMLLoads checks the shipped YAML example is a valid config.
func TestExampleYAMLLoads(t *testing.T) {
	noProviderEnv(t)
	for _, k := range []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"} {
		t.Setenv(k, "test-key")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *portico.Gateway, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-listen", "127.0.0.1:0", "-admin", "-", "-config", "llm.example.yaml"}, io.Discard, ready)
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("llm.example.yaml: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start")
	}
}
