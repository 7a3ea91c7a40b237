package llm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/porticoproxy/portico/filter"
)

// capture answers with resp and keeps the body the upstream got.
func capture(got *[]byte, resp string) filter.UpstreamFunc {
	a := answer(200, resp)
	return func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		*got, _ = io.ReadAll(x.Out.Body)
		x.Out.Body.Close()
		x.SetBody(*got)
		return a(ctx, x)
	}
}

func TestSystemPromptInjection(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind Kind
		api  API
		mode string
		body string
		want string // the upstream's messages (OpenAI) or system (Anthropic)
	}{
		{"openai prepend", OpenAI, ChatCompletions, "", `{"model":"m","messages":[{"role":"system","content":"client"},{"role":"user","content":"hi"}]}`,
			`[{"role":"system","content":"policy"},{"role":"system","content":"client"},{"role":"user","content":"hi"}]`},
		{"openai append", OpenAI, ChatCompletions, "append", `{"model":"m","messages":[{"role":"system","content":"client"},{"role":"developer","content":"dev"},{"role":"user","content":"hi"}]}`,
			`[{"role":"system","content":"client"},{"role":"developer","content":"dev"},{"role":"system","content":"policy"},{"role":"user","content":"hi"}]`},
		{"openai replace", OpenAI, ChatCompletions, "replace", `{"model":"m","messages":[{"role":"system","content":"client"},{"role":"user","content":"hi"}]}`,
			`[{"role":"system","content":"policy"},{"role":"user","content":"hi"}]`},
		{"anthropic prepend string", Anthropic, Messages, "", `{"model":"m","max_tokens":1,"system":"client","messages":[]}`, `"policy\n\nclient"`},
		{"anthropic append blocks", Anthropic, Messages, "append", `{"model":"m","max_tokens":1,"system":[{"type":"text","text":"client","cache_control":{"type":"ephemeral"}}],"messages":[]}`,
			`[{"type":"text","text":"client","cache_control":{"type":"ephemeral"}},{"type":"text","text":"policy"}]`},
		{"anthropic none", Anthropic, Messages, "", `{"model":"m","max_tokens":1,"messages":[]}`, `"policy"`},
		{"anthropic replace", Anthropic, Messages, "replace", `{"model":"m","max_tokens":1,"system":"client","messages":[]}`, `"policy"`},
		// Injected before translation: an OpenAI client's system message
		// becomes part of Anthropic's system.
		{"translated", Anthropic, ChatCompletions, "", `{"model":"m","messages":[{"role":"system","content":"client"},{"role":"user","content":"hi"}]}`,
			`[{"type":"text","text":"policy"},{"type":"text","text":"client"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := policyGW(t, tc.kind, func(c *Config) {
				c.Prompt.Inject = []SystemPrompt{{Text: "policy", Mode: tc.mode}, {Text: "other models only", Models: []string{"other-*"}}}
			})
			resp := oaChatResp
			if tc.kind == Anthropic {
				resp = anMsgResp
			}
			var got []byte
			if w, _ := do(t, g, tc.api, tc.body, nil, capture(&got, resp)); w.Code != 200 {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
			var sent map[string]json.RawMessage
			if err := json.Unmarshal(got, &sent); err != nil {
				t.Fatal(err)
			}
			field := "messages"
			if tc.kind == Anthropic {
				field = "system"
			}
			if diff := cmp.Diff(compact(t, tc.want), compact(t, string(sent[field]))); diff != "" {
				t.Errorf("%s (-want +got):\n%s", field, diff)
			}
		})
	}
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestPromptTemplates(t *testing.T) {
	g := policyGW(t, Anthropic, func(c *Config) {
		c.Prompt.Templates = map[string]Template{"summarize": {
			System:   "You summarise {{ style }} text.",
			Messages: []TemplateMessage{{Role: "user", Content: "Summarise: {{text}}"}},
		}}
	})
	var got []byte
	body := `{"model":"m","prompt_template":{"name":"summarize","variables":{"style":"legal","text":"a \"quoted\" clause"}},"messages":[{"role":"system","content":"be brief"}]}`
	if w, _ := do(t, g, ChatCompletions, body, nil, capture(&got, anMsgResp)); w.Code != 200 {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	var sent struct {
		System   []struct{ Text string } `json:"system"`
		Messages []json.RawMessage       `json:"messages"`
		Template json.RawMessage         `json:"prompt_template"`
	}
	if err := json.Unmarshal(got, &sent); err != nil {
		t.Fatal(err)
	}
	if len(sent.System) != 2 || sent.System[0].Text != "You summarise legal text." || sent.System[1].Text != "be brief" ||
		len(sent.Messages) != 1 || sent.Template != nil {
		t.Errorf("upstream got %s", got)
	}
	if want := `{"role":"user","content":"Summarise: a \"quoted\" clause"}`; compact(t, string(sent.Messages[0])) != compact(t, want) {
		t.Errorf("message %s, want %s", sent.Messages[0], want)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"model":"m","prompt_template":{"name":"nope"},"messages":[]}`, `no template "nope"`},
		{`{"model":"m","prompt_template":{"name":"summarize","variables":{"style":"x"}},"messages":[]}`, `variable "text" is not set`},
	} {
		w, _ := do(t, g, ChatCompletions, bad.body, nil, nil)
		if w.Code != 400 {
			t.Errorf("%s: %d", bad.body, w.Code)
		}
		checkErrorSchema(t, ChatCompletions, w.Body.Bytes(), bad.want)
	}
}

// TestPIIRedactionThroughGateway redacts a request before it goes
// upstream, a non-streamed response, and a stream whose PII is split
// across events, translated between schemas.
func TestPIIRedactionThroughGateway(t *testing.T) {
	g := policyGW(t, Anthropic, func(c *Config) { c.PII = PII{Requests: true, Responses: true} })
	var got []byte
	resp := `{"id":"m1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Write to bob@example.org or call +1 (555) 123-4567."}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":20}}`
	w, _ := do(t, g, ChatCompletions, `{"model":"m","messages":[{"role":"user","content":"My card is 4111 1111 1111 1111 and SSN 123-45-6789"}]}`, nil, capture(&got, resp))
	if w.Code != 200 {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	var sent struct {
		Messages []struct{ Content string }
	}
	json.Unmarshal(got, &sent)
	if len(sent.Messages) != 1 || sent.Messages[0].Content != "My card is [REDACTED_CARD] and SSN [REDACTED_SSN]" {
		t.Errorf("upstream got %s", got)
	}
	var out struct {
		Choices []struct{ Message struct{ Content string } }
	}
	json.Unmarshal(w.Body.Bytes(), &out)
	if len(out.Choices) != 1 || out.Choices[0].Message.Content != "Write to [REDACTED_EMAIL] or call [REDACTED_PHONE]." {
		t.Errorf("client got %s", w.Body)
	}

	// A stream with an email split across three deltas.
	stream := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Mail jane.d\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"oe@exam\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ple.com today\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	w, _ = do(t, g, ChatCompletions, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil, answer(200, stream))
	if text := reassemble(t, ChatCompletions, w.Body.Bytes()); text != "Mail [REDACTED_EMAIL] today" {
		t.Errorf("streamed %q\n%s", text, w.Body)
	}
}

// TestPIIResponsesDropsLogprobs: with response redaction on, requests no
// longer ask for log probabilities, whose tokens would carry the text the
// redaction removes; everything else in the request is kept.
func TestPIIResponsesDropsLogprobs(t *testing.T) {
	chatResp := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
	for _, tt := range []struct {
		name      string
		api       API
		responses bool
		body      string
		want      string
	}{
		{"chat", ChatCompletions, true,
			`{"model":"m","logprobs":true,"messages":[{"role":"user","content":"hi"}],"top_logprobs":3,"temperature":0}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}`},
		{"responses", Responses, true,
			`{"model":"m","input":"hi","include":["reasoning.encrypted_content","message.output_text.logprobs"],"top_logprobs":2}`,
			`{"model":"m","input":"hi","include":["reasoning.encrypted_content"]}`},
		{"redaction off", ChatCompletions, false,
			`{"model":"m","logprobs":true,"messages":[{"role":"user","content":"hi"}],"top_logprobs":3}`,
			`{"model":"m","logprobs":true,"messages":[{"role":"user","content":"hi"}],"top_logprobs":3}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := policyGW(t, OpenAI, func(c *Config) {
				c.PII = PII{Responses: tt.responses}
				c.Providers[0].Responses = ResponsesNative // the body as the client sent it
			})
			var got []byte
			resp := chatResp
			if tt.api == Responses {
				resp = `{"id":"r","object":"response","created_at":1,"status":"completed","model":"m","output":[],"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}`
			}
			w, _ := do(t, g, tt.api, tt.body, nil, capture(&got, resp))
			if w.Code != 200 {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
			if string(got) != tt.want {
				t.Errorf("upstream got\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
}
