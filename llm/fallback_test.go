package llm_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/porticoproxy/portico/llm"
)

const anthropicMessage = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello from Claude"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":4}}`

const anthropicStream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n" +
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello \"}}\n\n" +
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"from Claude\"}}\n\n" +
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n" +
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

// serveAnthropic answers like the Anthropic API: a message, or its stream
// when the request asks for one.
func serveAnthropic(w http.ResponseWriter, body []byte) {
	var req struct{ Stream bool }
	json.Unmarshal(body, &req)
	if !req.Stream {
		writeJSON(w, 200, anthropicMessage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	for _, ev := range strings.SplitAfter(anthropicStream, "\n\n") {
		io.WriteString(w, ev)
		w.(http.Flusher).Flush()
	}
}

// TestFallbackOpenAISDKToAnthropic drives the gateway with the official
// OpenAI client: the model's OpenAI provider fails, and the fallback model
// is served by an Anthropic provider, the request and response translated.
func TestFallbackOpenAISDKToAnthropic(t *testing.T) {
	for _, failure := range []struct {
		name   string
		status int
		body   string
	}{
		{"503", http.StatusServiceUnavailable, `{"error":{"message":"overloaded","type":"server_error"}}`},
		{"429", http.StatusTooManyRequests, `{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`},
		{"context length", http.StatusBadRequest, `{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}`},
	} {
		t.Run(failure.name, func(t *testing.T) {
			primary := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
				writeJSON(w, failure.status, failure.body)
			})
			backup := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
				serveAnthropic(w, body)
			})
			rec := make(calls, 16)
			base, _ := policyGateway(t, llm.Config{
				Providers: []llm.Provider{openAIProvider("primary", primary), anthropicProvider("backup", backup)},
				Models: []llm.Model{
					{Name: "gpt-4o", Provider: "primary", Fallbacks: []string{"claude-backup"}},
					{Name: "claude-backup", Provider: "backup", UpstreamModel: "claude-sonnet-4-5"},
				},
			}, rec)
			client := openAIClient(base)

			var raw *http.Response
			resp, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
				Model:    "gpt-4o",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
			}, ooption.WithResponseInto(&raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Choices[0].Message.Content; got != "Hello from Claude" || resp.Usage.PromptTokens != 12 || resp.Usage.CompletionTokens != 4 {
				t.Errorf("response %q, usage %+v", got, resp.Usage)
			}
			if raw.Header.Get("X-Portico-Provider") != "backup" || raw.Header.Get("X-Portico-Model") != "claude-sonnet-4-5" {
				t.Errorf("headers: %v", raw.Header)
			}
			call := rec.next(t)
			if call.Provider != "backup" || call.ProviderKind != llm.Anthropic || call.Model != "claude-sonnet-4-5" ||
				call.RequestModel != "gpt-4o" || call.Fallbacks != 1 || !call.Translated || call.Usage.InputTokens != 12 {
				t.Errorf("call %+v", call)
			}
			if primary.count() != 1 || backup.count() != 1 {
				t.Errorf("primary got %d requests, backup %d", primary.count(), backup.count())
			}
			req := backup.request(t, 0)
			checkCredentials(t, llm.Anthropic, req)
			var sent struct {
				Model     string `json:"model"`
				MaxTokens int    `json:"max_tokens"`
				Messages  []struct{ Role string }
			}
			if req.path != "/v1/messages" || json.Unmarshal(req.body, &sent) != nil || sent.Model != "claude-sonnet-4-5" || sent.MaxTokens == 0 || len(sent.Messages) != 1 {
				t.Errorf("backup got %s %s", req.path, req.body)
			}

			// Streams fall back the same way, before any byte reaches the client.
			stream := client.Chat.Completions.NewStreaming(ctxT(t), openai.ChatCompletionNewParams{
				Model:    "gpt-4o",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
			})
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if got := acc.Choices[0].Message.Content; got != "Hello from Claude" {
				t.Errorf("streamed %q", got)
			}
			if call := rec.next(t); call.Provider != "backup" || call.Fallbacks != 1 || call.Usage.OutputTokens != 4 {
				t.Errorf("stream call %+v", call)
			}
		})
	}
}

// TestFallbackAnthropicSDKToOpenAI is the other direction: an Anthropic
// client, an overloaded Anthropic provider, an OpenAI fallback.
func TestFallbackAnthropicSDKToOpenAI(t *testing.T) {
	primary := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
		writeJSON(w, 529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
	})
	backup := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
		writeJSON(w, 200, chatCompletion)
	})
	rec := make(calls, 16)
	base, _ := policyGateway(t, llm.Config{
		Providers: []llm.Provider{anthropicProvider("claude", primary), openAIProvider("openai", backup)},
		Models: []llm.Model{
			{Name: "claude-sonnet-4-5", Provider: "claude", Fallbacks: []string{"gpt-4o"}},
			{Name: "gpt-4o", Provider: "openai"},
		},
	}, rec)
	ac := anthropicClient(base)
	msg, err := ac.Messages.New(ctxT(t), anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 100,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != "Hello!" || msg.Usage.OutputTokens != 20 {
		t.Errorf("message %+v", msg)
	}
	if call := rec.next(t); call.Provider != "openai" || call.Fallbacks != 1 {
		t.Errorf("call %+v", call)
	}
	if req := backup.request(t, 0); req.path != "/v1/chat/completions" || !strings.Contains(string(req.body), `"model":"gpt-4o"`) {
		t.Errorf("backup got %s %s", req.path, req.body)
	}
}

// TestRetryHonoursRetryAfter retries the same deployment after the wait
// the provider asks for, and falls back at once when it asks for longer
// than Resilience.MaxRetryWait.
func TestRetryHonoursRetryAfter(t *testing.T) {
	t.Run("retry", func(t *testing.T) {
		p := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
			if n == 1 {
				writeJSON(w, 429, `{"error":{"message":"slow down","type":"requests"}}`, "Retry-After-Ms", "300")
				return
			}
			writeJSON(w, 200, chatCompletion)
		})
		rec := make(calls, 4)
		base, _ := policyGateway(t, llm.Config{
			Providers:  []llm.Provider{openAIProvider("p", p)},
			Models:     []llm.Model{{Name: "*", Provider: "p"}},
			Resilience: llm.Resilience{Retries: 2},
		}, rec)
		client := openAIClient(base)
		if _, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-x", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		}); err != nil {
			t.Fatal(err)
		}
		if p.count() != 2 {
			t.Fatalf("provider got %d requests, want 2", p.count())
		}
		p.mu.Lock()
		gap := p.times[1].Sub(p.times[0])
		p.mu.Unlock()
		if gap < 300*time.Millisecond {
			t.Errorf("retried after %v, before the 300 ms the provider asked for", gap)
		}
		if call := rec.next(t); call.Fallbacks != 1 || call.Provider != "p" {
			t.Errorf("call %+v", call)
		}
	})
	t.Run("too long", func(t *testing.T) {
		p := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
			writeJSON(w, 429, `{"error":{"message":"come back tomorrow","type":"requests"}}`, "Retry-After", "3600")
		})
		backup := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
			writeJSON(w, 200, chatCompletion)
		})
		base, _ := policyGateway(t, llm.Config{
			Providers: []llm.Provider{openAIProvider("p", p), openAIProvider("b", backup)},
			Models: []llm.Model{
				{Name: "gpt-x", Provider: "p", Fallbacks: []string{"gpt-y"}},
				{Name: "gpt-y", Provider: "b"},
			},
			Resilience: llm.Resilience{Retries: 3, MaxRetryWait: time.Second},
		})
		start := time.Now()
		client := openAIClient(base)
		if _, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-x", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		}); err != nil {
			t.Fatal(err)
		}
		if p.count() != 1 || backup.count() != 1 || time.Since(start) > 5*time.Second {
			t.Errorf("primary %d, backup %d requests in %v: want one each, without waiting", p.count(), backup.count(), time.Since(start))
		}
	})
	t.Run("last failure stands", func(t *testing.T) {
		p := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
			writeJSON(w, 503, `{"error":{"message":"down","type":"server_error"}}`, "Retry-After-Ms", "1")
		})
		base, _ := policyGateway(t, llm.Config{
			Providers:  []llm.Provider{openAIProvider("p", p)},
			Models:     []llm.Model{{Name: "*", Provider: "p"}},
			Resilience: llm.Resilience{Retries: 2},
		})
		client := openAIClient(base)
		_, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "gpt-x", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		})
		var apiErr *openai.Error
		if !errorsAs(err, &apiErr) || apiErr.StatusCode != 503 || p.count() != 3 {
			t.Errorf("err %v after %d attempts, want the provider's 503 after 3", err, p.count())
		}
	})
}

// TestCooldown splits a model across a failing and a healthy deployment:
// every client request succeeds (the healthy one takes over), and after
// Cooldown.Failures consecutive failures the failing one gets no more
// traffic.
func TestCooldown(t *testing.T) {
	bad := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
		writeJSON(w, 500, `{"error":{"message":"boom","type":"server_error"}}`)
	})
	good := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
		serveAnthropic(w, body)
	})
	reader := sdkmetric.NewManualReader()
	base, _ := policyGateway(t, llm.Config{
		Providers: []llm.Provider{openAIProvider("bad", bad), anthropicProvider("good", good)},
		Models: []llm.Model{{Name: "m", Deployments: []llm.Deployment{
			{Provider: "bad", UpstreamModel: "gpt-x", Weight: 3},
			{Provider: "good", UpstreamModel: "claude-x", Weight: 1},
		}}},
		Resilience: llm.Resilience{Cooldown: llm.Cooldown{Failures: 3, Duration: time.Hour}},
		Telemetry:  llm.Telemetry{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))},
	})
	client := openAIClient(base)
	for i := range 40 {
		resp, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		})
		if err != nil || resp.Choices[0].Message.Content != "Hello from Claude" {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if bad.count() != 3 {
		t.Errorf("the failing deployment got %d requests, want 3: it should cool down after 3 failures", bad.count())
	}
	var rm metricdata.ResourceMetrics
	reader.Collect(context.Background(), &rm)
	cooldowns, fallbacks := int64(0), int64(0)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "portico.llm.cooldowns":
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					cooldowns += dp.Value
					if v, _ := dp.Attributes.Value("deployment"); v.AsString() != "bad/gpt-x" {
						t.Errorf("cooldown of %q", v.AsString())
					}
				}
			case "portico.llm.fallbacks":
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					fallbacks += dp.Value
				}
			}
		}
	}
	if cooldowns != 1 || fallbacks != 3 {
		t.Errorf("cooldowns %d, fallbacks %d; want 1 and 3", cooldowns, fallbacks)
	}
}

// TestFallbackOnConnectFailure falls back when the provider cannot be
// reached at all: the router's 503 local reply is an attempt like any.
func TestFallbackOnConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	backup := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
		writeJSON(w, 200, chatCompletion)
	})
	rec := make(calls, 4)
	base, _ := policyGateway(t, llm.Config{
		Providers: []llm.Provider{
			{Name: "dead", Kind: llm.OpenAI, BaseURL: "http://" + dead + "/v1"},
			openAIProvider("backup", backup),
		},
		Models: []llm.Model{{Name: "m", Deployments: []llm.Deployment{{Provider: "dead", Weight: 100}, {Provider: "backup", Weight: 1}}}},
	}, rec)
	client := openAIClient(base)
	for range 3 {
		if _, err := client.Chat.Completions.New(ctxT(t), openai.ChatCompletionNewParams{
			Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		}); err != nil {
			t.Fatal(err)
		}
		if call := rec.next(t); call.Provider != "backup" {
			t.Errorf("call %+v", call)
		}
	}
}
