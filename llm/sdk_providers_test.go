package llm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/porticoproxy/portico/llm"
	"github.com/porticoproxy/portico/llm/internal/eventstream"
)

// startGatewayFor serves a Portico gateway with the llm filter in front of
// one provider for every model, with the provider's clusters (and their
// middleware, SigV4 included) made by Gateway.Clusters.
func startGatewayFor(t *testing.T, p llm.Provider) (string, calls) {
	t.Helper()
	p.Name = "scripted"
	rec := make(calls, 16)
	base, _ := policyGateway(t, llm.Config{Providers: []llm.Provider{p}, Models: []llm.Model{{Name: "*", Provider: "scripted"}}}, rec)
	return base, rec
}

func bodyOf(t *testing.T, req recorded) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(req.body, &v); err != nil {
		t.Fatalf("provider body %s: %v", req.body, err)
	}
	return v
}

var weatherResponses = responses.ToolParamOfFunction("get_weather", map[string]any{
	"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"},
}, false)

// outputText joins the text of a response's message items.
func outputText(r *responses.Response) string {
	var b strings.Builder
	for _, it := range r.Output {
		if it.Type == "message" {
			for _, c := range it.Content {
				b.WriteString(c.Text)
			}
		}
	}
	return b.String()
}

// TestOpenAIResponsesSDK drives the Responses front door with the official
// OpenAI client, over a Chat Completions provider and over Anthropic.
func TestOpenAIResponsesSDK(t *testing.T) {
	t.Run("over chat completions, non-streaming", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "rs-oa-text/upstream.json"), false)
		base, rec := startGatewayFor(t, llm.Provider{Kind: llm.OpenAI, BaseURL: up.srv.URL + "/v1", APIKeyEnv: "SCRIPTED_KEY"})
		client := openAIClient(base)
		resp, err := client.Responses.New(ctxT(t), responses.ResponseNewParams{
			Model:        "gpt-4.1",
			Instructions: openai.String("Be brief."),
			Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("Which file is bigger?")},
		})
		if err != nil {
			t.Fatalf("Responses.New: %v", err)
		}
		if got := outputText(resp); got != `{"bigger":"b.go"}` {
			t.Errorf("output text = %q", got)
		}
		if resp.Status != "completed" || resp.Usage.InputTokens != 120 || resp.Usage.InputTokensDetails.CachedTokens != 64 || resp.Usage.OutputTokens != 8 {
			t.Errorf("status %q usage %+v", resp.Status, resp.Usage)
		}
		req := up.last(t)
		checkCredentials(t, llm.OpenAI, req)
		if req.path != "/v1/chat/completions" {
			t.Errorf("provider path %q", req.path)
		}
		msgs := bodyOf(t, req)["messages"].([]any)
		if len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" || msgs[1].(map[string]any)["content"] != "Which file is bigger?" {
			t.Errorf("provider messages %v", msgs)
		}
		if c := rec.next(t); c.API != llm.Responses || !c.Translated || c.Usage.InputTokens != 120 {
			t.Errorf("call = %+v", c)
		}
	})

	t.Run("over chat completions, streaming tool call", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "rs-oa-stream/upstream.sse"), true)
		base, rec := startGatewayFor(t, llm.Provider{Kind: llm.OpenAI, BaseURL: up.srv.URL + "/v1", APIKeyEnv: "SCRIPTED_KEY"})
		client := openAIClient(base)
		stream := client.Responses.NewStreaming(ctxT(t), responses.ResponseNewParams{
			Model: "qwen3-coder",
			Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
				responses.ResponseInputItemParamOfMessage("Run the tests.", responses.EasyInputMessageRoleUser)}},
			Tools:     []responses.ToolUnionParam{weatherResponses},
			Reasoning: shared.ReasoningParam{Effort: shared.ReasoningEffortMedium},
		})
		var types []string
		var args strings.Builder
		var completed *responses.Response
		var seq int64
		for stream.Next() {
			ev := stream.Current()
			types = append(types, ev.Type)
			if ev.SequenceNumber != seq {
				t.Errorf("event %s: sequence_number %d, want %d", ev.Type, ev.SequenceNumber, seq)
			}
			seq++
			switch ev.Type {
			case "response.function_call_arguments.delta":
				args.WriteString(ev.Delta)
			case "response.completed":
				r := ev.Response
				completed = &r
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		if types[0] != "response.created" || types[1] != "response.in_progress" || types[len(types)-1] != "response.completed" {
			t.Errorf("event types %v", types)
		}
		if args.String() != `{"command":["go","test"]}` {
			t.Errorf("arguments = %q", args.String())
		}
		if completed == nil {
			t.Fatal("no response.completed")
		}
		var call responses.ResponseFunctionToolCall
		for _, it := range completed.Output {
			if it.Type == "function_call" {
				call = it.AsFunctionCall()
			}
		}
		if call.CallID != "call_t" || call.Name != "shell" || call.Arguments != `{"command":["go","test"]}` {
			t.Errorf("function call %+v", call)
		}
		if u := completed.Usage; u.InputTokens != 300 || u.OutputTokens != 25 || u.OutputTokensDetails.ReasoningTokens != 5 || u.TotalTokens != 325 {
			t.Errorf("usage %+v", u)
		}
		body := bodyOf(t, up.last(t))
		if so, _ := body["stream_options"].(map[string]any); so["include_usage"] != true || body["reasoning_effort"] != "medium" {
			t.Errorf("provider request %v", body)
		}
		if c := rec.next(t); c.Usage.InputTokens != 300 || c.Usage.Estimated {
			t.Errorf("call usage %+v", c.Usage)
		}
	})

	t.Run("over anthropic, tool calls and reasoning round trip", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "oa-an-stream/upstream.sse"), true)
		base, rec := startGatewayFor(t, llm.Provider{Kind: llm.Anthropic, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
		client := openAIClient(base)
		params := responses.ResponseNewParams{
			Model:           "claude-sonnet-4-5",
			Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Paris and Rome?")},
			Tools:           []responses.ToolUnionParam{weatherResponses},
			MaxOutputTokens: openai.Int(8000),
			Reasoning:       shared.ReasoningParam{Effort: shared.ReasoningEffortHigh},
			Include:         []responses.ResponseIncludable{responses.ResponseIncludableReasoningEncryptedContent},
		}
		stream := client.Responses.NewStreaming(ctxT(t), params)
		var completed *responses.Response
		var summary strings.Builder
		for stream.Next() {
			ev := stream.Current()
			switch ev.Type {
			case "response.reasoning_summary_text.delta":
				summary.WriteString(ev.Delta)
			case "response.completed":
				r := ev.Response
				completed = &r
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		if completed == nil {
			t.Fatal("no response.completed")
		}
		if summary.String() != "Two cities, two calls." {
			t.Errorf("reasoning summary %q", summary.String())
		}
		var kinds []string
		var next responses.ResponseInputParam
		next = append(next, responses.ResponseInputItemParamOfMessage("Weather in Paris and Rome?", responses.EasyInputMessageRoleUser))
		for _, it := range completed.Output {
			kinds = append(kinds, it.Type)
			switch it.Type {
			case "reasoning":
				r := it.AsReasoning()
				if r.EncryptedContent != "EqQBCgIYAhIM" {
					t.Errorf("encrypted_content %q", r.EncryptedContent)
				}
				p := r.ToParam()
				next = append(next, responses.ResponseInputItemUnionParam{OfReasoning: &p})
			case "function_call":
				fc := it.AsFunctionCall()
				p := fc.ToParam()
				out := responses.ResponseInputItemParamOfFunctionCallOutput("18C")
				out.OfFunctionCallOutput.CallID = openai.String(fc.CallID)
				next = append(next, responses.ResponseInputItemUnionParam{OfFunctionCall: &p}, out)
			}
		}
		if strings.Join(kinds, ",") != "reasoning,message,function_call,function_call" {
			t.Errorf("output items %v", kinds)
		}
		if u := completed.Usage; u.InputTokens != 1472 || u.InputTokensDetails.CachedTokens != 1000 || u.OutputTokens != 89 {
			t.Errorf("usage %+v", u)
		}
		rec.next(t)

		// The next turn sends the reasoning back: Anthropic gets its
		// signed thinking block before the tool uses.
		up.body = golden(t, "oa-an-tools/upstream.json")
		up.sse = false
		params.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: next}
		resp, err := client.Responses.New(ctxT(t), params)
		if err != nil {
			t.Fatalf("second turn: %v", err)
		}
		var calls []string
		for _, it := range resp.Output {
			if it.Type == "function_call" {
				fc := it.AsFunctionCall()
				calls = append(calls, fc.CallID+" "+fc.Arguments)
			}
		}
		if strings.Join(calls, "|") != `toolu_c {"city":"Paris","day":"tomorrow"}|toolu_d {"city":"Rome","day":"tomorrow"}` {
			t.Errorf("function calls %q", calls)
		}
		var sent struct {
			Messages []struct {
				Role    string
				Content json.RawMessage
			}
			Thinking json.RawMessage
		}
		req := up.last(t)
		checkCredentials(t, llm.Anthropic, req)
		json.Unmarshal(req.body, &sent)
		if len(sent.Messages) != 3 {
			t.Fatalf("provider got %d messages: %s", len(sent.Messages), req.body)
		}
		assistant := string(sent.Messages[1].Content)
		if !strings.HasPrefix(assistant, `[{"type":"thinking","thinking":"Two cities, two calls.","signature":"EqQBCgIYAhIM"},{"type":"tool_use","id":"toolu_1"`) {
			t.Errorf("assistant turn sent upstream: %s", assistant)
		}
		if !strings.Contains(string(sent.Messages[2].Content), `"tool_use_id":"toolu_2","content":"18C"`) {
			t.Errorf("tool results sent upstream: %s", sent.Messages[2].Content)
		}
		if !bytes.Contains(sent.Thinking, []byte(`"budget_tokens":4096`)) {
			t.Errorf("thinking sent upstream: %s", sent.Thinking)
		}
		if c := rec.next(t); c.Usage.InputTokens != 310 || c.API != llm.Responses {
			t.Errorf("call %+v", c)
		}
	})

	t.Run("previous_response_id refused when translating", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, nil, false)
		base, _ := startGatewayFor(t, llm.Provider{Kind: llm.Anthropic, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
		client := openAIClient(base)
		_, err := client.Responses.New(ctxT(t), responses.ResponseNewParams{
			Model:              "claude-haiku-4-5",
			Input:              responses.ResponseNewParamsInputUnion{OfString: openai.String("Hi")},
			PreviousResponseID: openai.String("resp_1"),
		})
		var apiErr *openai.Error
		if !errorsAs(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "previous_response_id") {
			t.Errorf("got %v", err)
		}
	})
}

func errorsAs(err error, target **openai.Error) bool {
	for err != nil {
		if e, ok := err.(*openai.Error); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestAnthropicSDKOverGemini drives the gateway with the official
// Anthropic client against a provider that speaks Gemini.
func TestAnthropicSDKOverGemini(t *testing.T) {
	t.Run("non-streaming tool use, signature round trip", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "an-gm-tools/upstream.json"), false)
		base, rec := startGatewayFor(t, llm.Provider{Kind: llm.Gemini, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
		client := anthropicClient(base)
		params := anthropic.MessageNewParams{
			Model:     "gemini-3-pro-preview",
			MaxTokens: 300,
			System:    []anthropic.TextBlockParam{{Text: "Use tools."}},
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
			Tools:     []anthropic.ToolUnionParam{weatherAnthropic},
		}
		msg, err := client.Messages.New(ctxT(t), params)
		if err != nil {
			t.Fatalf("Messages.New: %v", err)
		}
		if len(msg.Content) != 3 || msg.Content[0].Text != "Retrying." || msg.Content[1].Type != "thinking" || msg.Content[1].Signature != "Sig-2" ||
			msg.Content[2].Type != "tool_use" || msg.Content[2].ID != "gm-own-id-7" || string(msg.Content[2].Input) != `{"city":"Paris"}` {
			t.Fatalf("content %+v", msg.Content)
		}
		if msg.StopReason != anthropic.StopReasonToolUse || msg.Usage.InputTokens != 150 || msg.Usage.OutputTokens != 12 {
			t.Errorf("stop %q usage %+v", msg.StopReason, msg.Usage)
		}
		req := up.last(t)
		if req.path != "/v1beta/models/gemini-3-pro-preview:generateContent" || req.header.Get("X-Goog-Api-Key") != upstreamKey || req.header.Get("X-Api-Key") != "" {
			t.Errorf("provider got %s with key %q", req.path, req.header.Get("X-Goog-Api-Key"))
		}
		rec.next(t)

		// Second turn: the tool result goes back as a functionResponse
		// named after its call, the signature on the call.
		params.Messages = append(params.Messages, msg.ToParam(),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock("gm-own-id-7", "18C sunny", false)))
		if _, err := client.Messages.New(ctxT(t), params); err != nil {
			t.Fatalf("second turn: %v", err)
		}
		sent := string(up.last(t).body)
		for _, want := range []string{
			`{"role":"model","parts":[{"text":"Retrying."},{"thoughtSignature":"Sig-2","functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]}`,
			`{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"output":"18C sunny"}}}]}`,
		} {
			if !strings.Contains(sent, want) {
				t.Errorf("provider request lacks %s:\n%s", want, sent)
			}
		}
		rec.next(t)
	})

	t.Run("streaming", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, golden(t, "oa-gm-stream/upstream.sse"), true)
		base, rec := startGatewayFor(t, llm.Provider{Kind: llm.Gemini, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
		client := anthropicClient(base)
		stream := client.Messages.NewStreaming(ctxT(t), anthropic.MessageNewParams{
			Model: "gemini-2.5-flash", MaxTokens: 1024,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris and Rome?"))},
			Tools:    []anthropic.ToolUnionParam{weatherAnthropic},
		})
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatalf("Accumulate: %v", err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		var kinds []string
		for _, b := range msg.Content {
			kinds = append(kinds, b.Type)
		}
		if strings.Join(kinds, ",") != "thinking,text,thinking,tool_use,tool_use" {
			t.Fatalf("blocks %v", kinds)
		}
		if msg.Content[0].Thinking != "Two cities, two calls." || msg.Content[1].Text != "Checking <both> & “more”." || msg.Content[2].Signature != "CiQB0e2Kb" {
			t.Errorf("content %+v", msg.Content[:3])
		}
		if string(msg.Content[3].Input) != `{"city":"Paris"}` || string(msg.Content[4].Input) != `{"city":"Rome"}` || msg.Content[3].ID == msg.Content[4].ID {
			t.Errorf("tool uses %+v %+v", msg.Content[3], msg.Content[4])
		}
		if u := msg.Usage; msg.StopReason != anthropic.StopReasonToolUse || u.InputTokens != 48 || u.CacheReadInputTokens != 32 || u.OutputTokens != 60 {
			t.Errorf("stop %q usage %+v", msg.StopReason, u)
		}
		if !strings.HasSuffix(up.last(t).path, ":streamGenerateContent") {
			t.Errorf("provider path %q", up.last(t).path)
		}
		if c := rec.next(t); c.Usage.InputTokens != 80 || c.Usage.ReasoningTokens != 40 || c.Usage.Estimated {
			t.Errorf("call usage %+v", c.Usage)
		}
	})
}

// bedrockUpstream is a loopback Bedrock runtime that checks every request's
// SigV4 signature by re-signing what it received, and answers with a
// scripted Converse response or event stream (one message per flush).
type bedrockUpstream struct {
	srv    *httptest.Server
	signer llm.SigV4
	body   []byte        // non-streaming answer
	events [][]byte      // streaming answer: encoded messages
	step   chan struct{} // when set, each event waits for a value

	mu   sync.Mutex
	reqs []recorded
	errs []string
}

func newBedrockUpstream(t *testing.T, creds llm.AWSCredentials) *bedrockUpstream {
	b := &bedrockUpstream{signer: llm.SigV4{Region: "eu-central-1", Service: "bedrock", Credentials: creds}}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *bedrockUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.reqs = append(b.reqs, recorded{path: r.URL.EscapedPath(), header: r.Header.Clone(), body: body})
	b.mu.Unlock()
	if err := b.verify(r, body); err != nil {
		b.mu.Lock()
		b.errs = append(b.errs, err.Error())
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"message":%q}`, err.Error())
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/converse-stream") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-Requestid", "req-42")
		w.Write(b.body)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.Header().Set("X-Amzn-Requestid", "req-43")
	rc := http.NewResponseController(w)
	rc.Flush()
	for _, ev := range b.events {
		if b.step != nil {
			select {
			case <-b.step:
			case <-r.Context().Done():
				return
			}
		}
		w.Write(ev)
		rc.Flush()
	}
}

// verify re-signs the request as received and compares signatures.
func (b *bedrockUpstream) verify(r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || auth == "" {
		return fmt.Errorf("unsigned request (authorization %q)", auth)
	}
	v, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	v.Host = r.Host
	for k, vv := range r.Header {
		if k == "Authorization" {
			continue
		}
		v.Header[k] = vv
	}
	s := b.signer
	s.Now = func() time.Time { return when }
	if err := s.Sign(v); err != nil {
		return err
	}
	if got := v.Header.Get("Authorization"); got != auth {
		return fmt.Errorf("signature mismatch:\n got %s\nwant %s", auth, got)
	}
	return nil
}

func (b *bedrockUpstream) last(t *testing.T) recorded {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		t.Fatalf("signature check: %v", b.errs)
	}
	if len(b.reqs) == 0 {
		t.Fatal("the provider got no request")
	}
	return b.reqs[len(b.reqs)-1]
}

// bedrockEvents encodes the text form of an event stream (see
// golden_test.go) as one message per element.
func bedrockEvents(t *testing.T, text []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, line := range strings.Split(string(text), "\n") {
		if line == "" {
			continue
		}
		name, payload, _ := strings.Cut(line, " ")
		out = append(out, eventstream.AppendMessage(nil, [][2]string{{":event-type", name}, {":content-type", "application/json"}, {":message-type", "event"}}, []byte(payload)))
	}
	return out
}

// TestAnthropicSDKOverBedrock drives the gateway with the official
// Anthropic client against a Bedrock Converse provider, signing with SigV4
// through the cluster middleware that Gateway.Clusters installs.
func TestAnthropicSDKOverBedrock(t *testing.T) {
	creds := llm.AWSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret-SECRET-key", SessionToken: "session-tok"}
	const model = "anthropic.claude-sonnet-4-20250514-v1:0"

	t.Run("non-streaming", func(t *testing.T) {
		up := newBedrockUpstream(t, creds)
		up.body = golden(t, "an-br-tools/upstream.json")
		base, rec := startGatewayFor(t, llm.Provider{Kind: llm.Bedrock, BaseURL: up.srv.URL, Region: "eu-central-1", AWSCredentials: &creds})
		client := anthropicClient(base)
		msg, err := client.Messages.New(ctxT(t), anthropic.MessageNewParams{
			Model: model, MaxTokens: 2048,
			Thinking: anthropic.ThinkingConfigParamOfEnabled(1024),
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
			Tools:    []anthropic.ToolUnionParam{weatherAnthropic},
		})
		if err != nil {
			t.Fatalf("Messages.New: %v", err)
		}
		if len(msg.Content) != 3 || msg.Content[0].Signature != "EqoBsig2" || msg.Content[2].ID != "tooluse_2" || string(msg.Content[2].Input) != `{"city":"Rome"}` {
			t.Fatalf("content %+v", msg.Content)
		}
		if u := msg.Usage; u.InputTokens != 40 || u.CacheReadInputTokens != 1200 || u.CacheCreationInputTokens != 100 || u.OutputTokens != 55 {
			t.Errorf("usage %+v", u)
		}
		if msg.ID != "msg_req-42" {
			t.Errorf("id %q", msg.ID)
		}
		req := up.last(t)
		if req.path != "/model/anthropic.claude-sonnet-4-20250514-v1%3A0/converse" {
			t.Errorf("provider path %q", req.path)
		}
		if req.header.Get("X-Amz-Security-Token") != "session-tok" || strings.Contains(req.header.Get("Authorization"), "client-key") {
			t.Errorf("provider headers %v", req.header)
		}
		if c := rec.next(t); c.Usage.InputTokens != 1340 || c.Usage.CacheWriteTokens != 100 || c.ProviderKind != llm.Bedrock {
			t.Errorf("call %+v", c)
		}
	})

	t.Run("streaming", func(t *testing.T) {
		up := newBedrockUpstream(t, creds)
		up.events = bedrockEvents(t, golden(t, "an-br-stream/upstream.bedrock"))
		base, rec := startGatewayFor(t, llm.Provider{Kind: llm.Bedrock, BaseURL: up.srv.URL, Region: "eu-central-1", AWSCredentials: &creds})
		client := anthropicClient(base)
		stream := client.Messages.NewStreaming(ctxT(t), anthropic.MessageNewParams{
			Model: model, MaxTokens: 1024,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
			Tools:    []anthropic.ToolUnionParam{weatherAnthropic},
		})
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatalf("Accumulate: %v", err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		if len(msg.Content) != 3 || msg.Content[0].Thinking != "Paris weather." || msg.Content[0].Signature != "EqQBCgIYAh" ||
			msg.Content[1].Text != "Checking <Paris> & more…" || string(msg.Content[2].Input) != `{"city":"Paris"}` {
			t.Fatalf("content %+v", msg.Content)
		}
		if u := msg.Usage; msg.StopReason != anthropic.StopReasonToolUse || u.InputTokens != 30 || u.CacheReadInputTokens != 1500 || u.OutputTokens != 45 {
			t.Errorf("stop %q usage %+v", msg.StopReason, u)
		}
		if msg.ID != "msg_req-43" {
			t.Errorf("id %q", msg.ID)
		}
		if p := up.last(t).path; p != "/model/anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream" {
			t.Errorf("provider path %q", p)
		}
		if c := rec.next(t); c.Usage.InputTokens != 1530 || c.Usage.Estimated {
			t.Errorf("call usage %+v", c.Usage)
		}
	})
}

// TestEmbeddingsSDKOverGemini drives the embeddings front door with the
// official OpenAI client against Gemini's batchEmbedContents.
func TestEmbeddingsSDKOverGemini(t *testing.T) {
	up := newScripted(t, http.StatusOK, golden(t, "em-gm-embed/upstream.json"), false)
	base, rec := startGatewayFor(t, llm.Provider{Kind: llm.Gemini, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
	client := openAIClient(base)
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		resp, err := client.Embeddings.New(ctxT(t), openai.EmbeddingNewParams{
			Model:          "text-embedding-004",
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello world", "the gateway embeds"}},
			EncodingFormat: format,
		}, ooption.WithMaxRetries(0))
		if err != nil {
			t.Fatalf("%s: Embeddings.New: %v", format, err)
		}
		if len(resp.Data) != 2 || len(resp.Data[0].Embedding) != 3 || float32(resp.Data[1].Embedding[1]) != -0.25 || resp.Usage.PromptTokens == 0 {
			t.Errorf("%s: %+v", format, resp)
		}
		if c := rec.next(t); !c.Usage.Estimated || c.Usage.InputTokens != resp.Usage.PromptTokens {
			t.Errorf("%s: call usage %+v", format, c.Usage)
		}
	}
	if p := up.last(t).path; p != "/v1beta/models/text-embedding-004:batchEmbedContents" {
		t.Errorf("provider path %q", p)
	}
}

// TestStreamNotBufferedProviders checks, for the new decoders and sinks,
// that each upstream event reaches the client before the provider sends
// the next one.
func TestStreamNotBufferedProviders(t *testing.T) {
	creds := llm.AWSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}
	for _, tc := range []struct {
		name string
		// start returns the gateway's base URL and the upstream's step
		// channel, for n upstream events.
		start func(t *testing.T) (string, chan struct{}, int)
		path  string
		body  string
		want  []string // see TestStreamNotBuffered
	}{{
		name: "gemini provider, anthropic client",
		start: func(t *testing.T) (string, chan struct{}, int) {
			sse := golden(t, "oa-gm-stream/upstream.sse")
			up := newScripted(t, http.StatusOK, sse, true)
			up.step = make(chan struct{})
			base, _ := startGatewayFor(t, llm.Provider{Kind: llm.Gemini, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
			return base, up.step, bytes.Count(sse, []byte("\n\n"))
		},
		path: "/v1/messages",
		body: `{"model":"gemini-2.5-flash","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`,
		want: []string{`"thinking":"Two cities, "`, `"thinking":"two calls."`, `"text":"Checking <both> "`, `"text":"& “more”."`,
			`"partial_json":"{\"city\":\"Rome\"}"`},
	}, {
		name: "chat provider, responses client",
		start: func(t *testing.T) (string, chan struct{}, int) {
			sse := golden(t, "rs-oa-stream/upstream.sse")
			up := newScripted(t, http.StatusOK, sse, true)
			up.step = make(chan struct{})
			base, _ := startGatewayFor(t, llm.Provider{Kind: llm.OpenAI, BaseURL: up.srv.URL + "/v1", APIKeyEnv: "SCRIPTED_KEY"})
			return base, up.step, bytes.Count(sse, []byte("\n\n"))
		},
		path: "/v1/responses",
		body: `{"model":"qwen3-coder","stream":true,"input":"Run the tests."}`,
		want: []string{`"type":"response.created"`, `"delta":"Run go test."`, `"delta":"Running tests."`, `"name":"shell"`,
			`"delta":"{\"command\":[\"go\","`, `"delta":"\"test\"]}"`, `"type":"response.function_call_arguments.done"`,
			`"type":"response.completed"`, ""},
	}, {
		name: "bedrock provider, openai client",
		start: func(t *testing.T) (string, chan struct{}, int) {
			up := newBedrockUpstream(t, creds)
			up.events = bedrockEvents(t, golden(t, "oa-br-stream/upstream.bedrock"))
			up.step = make(chan struct{})
			base, _ := startGatewayFor(t, llm.Provider{Kind: llm.Bedrock, BaseURL: up.srv.URL, Region: "eu-central-1", AWSCredentials: &creds})
			return base, up.step, len(up.events)
		},
		path: "/v1/chat/completions",
		body: `{"model":"anthropic.claude-3-5-haiku-20241022-v1:0","stream":true,"messages":[{"role":"user","content":"Hi"}]}`,
		want: []string{`"role":"assistant"`, `"content":"Checking both."`, "", `"id":"tooluse_p"`, `"arguments":"{\"city\":\"Paris\"}"`, "",
			`"id":"tooluse_r"`, `"arguments":"{\"city\":"`, `"arguments":"\"Rome\"}"`, "", `"finish_reason":"tool_calls"`, "[DONE]"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			base, step, n := tc.start(t)
			if n != len(tc.want) {
				t.Fatalf("%d upstream events, %d expectations", n, len(tc.want))
			}
			req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, base+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			lines := make(chan string, 256)
			go func() {
				defer close(lines)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				b := make([]byte, 64<<10)
				var pending string
				for {
					n, err := resp.Body.Read(b)
					pending += string(b[:n])
					for {
						i := strings.IndexByte(pending, '\n')
						if i < 0 {
							break
						}
						if l := pending[:i]; strings.HasPrefix(l, "data: ") {
							lines <- l
						}
						pending = pending[i+1:]
					}
					if err != nil {
						return
					}
				}
			}()
			for i, want := range tc.want {
				step <- struct{}{}
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
			close(step)
			for range lines {
			}
		})
	}
}
