package llm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm"
	"github.com/porticoproxy/portico/llm/mock"
)

// countEstimated is the response details of an estimated count.
const countEstimated = "llm_count_tokens_estimate"

// counted is what the done phase saw of one exchange.
type counted struct {
	call    llm.Call
	details string
}

// countRecorder records the llm.Call and the response details of every
// exchange, in the done phase of a filter declared before the llm filter.
type countRecorder chan counted

func (countRecorder) Name() string { return "record-details" }

func (c countRecorder) OnDone(ctx context.Context, x *filter.Exchange) {
	if call := llm.CallOf(x); call != nil {
		c <- counted{call: *call, details: x.Details}
	}
}

func (c countRecorder) next(t *testing.T) counted {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no llm.Call recorded")
	}
	return counted{}
}

// startCountGateway serves a Portico gateway with the llm filter in front
// of one provider for every model (clusters and their middleware, SigV4
// included, from Gateway.Clusters) and a countRecorder.
func startCountGateway(t *testing.T, p llm.Provider) (string, countRecorder) {
	t.Helper()
	p.Name = "counted"
	rec := make(countRecorder, 16)
	base, _ := policyGateway(t, llm.Config{Providers: []llm.Provider{p}, Models: []llm.Model{{Name: "*", Provider: "counted"}}}, rec)
	return base, rec
}

// countParams is what Claude Code sends: a system prompt, a conversation
// and the tools.
func countParams(model string) anthropic.MessageCountTokensParams {
	return anthropic.MessageCountTokensParams{
		Model: anthropic.Model(model),
		System: anthropic.MessageCountTokensParamsSystemUnion{
			OfTextBlockArray: []anthropic.TextBlockParam{{Text: "Be brief."}},
		},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
		Tools: []anthropic.MessageCountTokensToolUnionParam{anthropic.MessageCountTokensToolParamOfTool(anthropic.ToolInputSchemaParam{
			Properties: map[string]any{"city": map[string]any{"type": "string"}},
			Required:   []string{"city"},
		}, "get_weather")},
	}
}

// estimateFor returns the gateway's estimate for params: what a provider
// without a counting API (OpenAI) answers.
func estimateFor(t *testing.T, params anthropic.MessageCountTokensParams) int64 {
	t.Helper()
	base, rec := startCountGateway(t, llm.Provider{Kind: llm.OpenAI, BaseURL: "http://127.0.0.1:9/v1", APIKeyEnv: "SCRIPTED_KEY"})
	n, err := countClient(base).CountTokens(ctxT(t), params)
	if err != nil {
		t.Fatalf("CountTokens over OpenAI: %v", err)
	}
	if r := rec.next(t); r.details != countEstimated {
		t.Fatalf("OpenAI count details %q, want %q", r.details, countEstimated)
	}
	if n.InputTokens <= 0 {
		t.Fatalf("estimate %d", n.InputTokens)
	}
	return n.InputTokens
}

// countClient is the Anthropic client's Messages service for a gateway.
func countClient(base string) *anthropic.MessageService {
	c := anthropicClient(base)
	return &c.Messages
}

// closedURL returns the URL of a loopback provider that cannot be
// reached: it closes every connection before reading a byte. (A port
// merely left closed can be taken by another test's listener meanwhile.)
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return "http://" + ln.Addr().String()
}

// noClientKey asserts the client's credential did not reach the provider.
func noClientKey(t *testing.T, req recorded) {
	t.Helper()
	for k, vv := range req.header {
		for _, v := range vv {
			if strings.Contains(v, "client-key") {
				t.Errorf("the client's credential reached the provider in %s", k)
			}
		}
	}
	if v := req.header.Get("Anthropic-Version"); v != "" {
		t.Errorf("provider got anthropic-version %q", v)
	}
}

// members decodes a JSON object and checks it has exactly the keys want.
func members(t *testing.T, what string, raw []byte, want ...string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %v", what, raw, err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("%s has members %v, want %v:\n%s", what, keys, want, raw)
	}
	return m
}

func jsonEq(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want: %v", what, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("%s = %s, want %s", what, gb, wb)
	}
}

// TestAnthropicSDKCountTokensOverGemini counts with the official Anthropic
// client through a gateway whose model Gemini serves: Gemini's
// models/{model}:countTokens counts, and the gateway estimates only when
// Gemini cannot answer.
func TestAnthropicSDKCountTokensOverGemini(t *testing.T) {
	const model = "gemini-2.5-flash"

	t.Run("exact count", func(t *testing.T) {
		up := newScripted(t, http.StatusOK, []byte(`{"totalTokens":4242,"promptTokensDetails":[{"modality":"TEXT","tokenCount":4242}]}`), false)
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Gemini, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
		client := anthropicClient(base)
		n, err := client.Messages.CountTokens(ctxT(t), countParams(model))
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		if n.InputTokens != 4242 {
			t.Errorf("input_tokens = %d, want Gemini's 4242", n.InputTokens)
		}
		if r := rec.next(t); r.details == countEstimated || !r.call.Translated || r.call.ProviderKind != llm.Gemini || r.call.UpstreamError != "" {
			t.Errorf("exact count recorded as details %q, call %+v", r.details, r.call)
		}
		req := up.last(t)
		if req.path != "/v1beta/models/"+model+":countTokens" {
			t.Errorf("provider path %q", req.path)
		}
		if got := req.header.Get("X-Goog-Api-Key"); got != upstreamKey {
			t.Errorf("provider x-goog-api-key %q, want the gateway's key", got)
		}
		if got := req.header.Get("Authorization") + req.header.Get("X-Api-Key"); got != "" {
			t.Errorf("provider got other credentials %q", got)
		}
		noClientKey(t, req)
		// A CountTokensRequest: generateContentRequest, the translated
		// request with its model.
		body := members(t, "countTokens request", req.body, "generateContentRequest")
		gc := members(t, "generateContentRequest", body["generateContentRequest"], "model", "contents", "systemInstruction", "tools")
		jsonEq(t, "model", gc["model"], `"models/`+model+`"`)
		jsonEq(t, "contents", gc["contents"], `[{"role":"user","parts":[{"text":"Weather in Paris?"}]}]`)
		jsonEq(t, "systemInstruction", gc["systemInstruction"], `{"parts":[{"text":"Be brief."}]}`)
		jsonEq(t, "tools", gc["tools"], `[{"functionDeclarations":[{"name":"get_weather","parametersJsonSchema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]}]`)

		// The same translation as generateContent's: a Messages request
		// with the same content sends the same contents, system
		// instruction and tools.
		if _, err := client.Messages.New(ctxT(t), anthropic.MessageNewParams{
			Model: model, MaxTokens: 100,
			System:   []anthropic.TextBlockParam{{Text: "Be brief."}},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
			Tools:    []anthropic.ToolUnionParam{weatherAnthropic},
		}); err != nil {
			t.Fatalf("Messages.New: %v", err)
		}
		rec.next(t)
		gen := up.last(t)
		if gen.path != "/v1beta/models/"+model+":generateContent" {
			t.Fatalf("provider path %q", gen.path)
		}
		g := members(t, "generateContent request", gen.body, "contents", "systemInstruction", "tools", "generationConfig")
		for _, k := range []string{"contents", "systemInstruction", "tools"} {
			if !bytes.Equal(g[k], gc[k]) {
				t.Errorf("%s: countTokens sent %s, generateContent %s", k, gc[k], g[k])
			}
		}
	})

	t.Run("provider error 500: the estimate", func(t *testing.T) {
		want := estimateFor(t, countParams(model))
		up := newScripted(t, http.StatusInternalServerError, []byte(`{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}`), false)
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Gemini, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
		var raw *http.Response
		n, err := countClient(base).CountTokens(ctxT(t), countParams(model), aoption.WithResponseInto(&raw))
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		if n.InputTokens != want {
			t.Errorf("input_tokens = %d, want the estimate %d", n.InputTokens, want)
		}
		if raw.Header.Get("X-Portico-Provider") != "counted" {
			t.Errorf("response headers %v", raw.Header)
		}
		r := rec.next(t)
		if r.details != countEstimated {
			t.Errorf("details %q, want %q", r.details, countEstimated)
		}
		if !strings.Contains(r.call.UpstreamError, "Internal error encountered.") {
			t.Errorf("upstream error %q", r.call.UpstreamError)
		}
		if p := up.last(t).path; !strings.HasSuffix(p, ":countTokens") {
			t.Errorf("provider path %q", p)
		}
	})

	t.Run("provider unreachable: the estimate", func(t *testing.T) {
		want := estimateFor(t, countParams(model))
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Gemini, BaseURL: closedURL(t), APIKeyEnv: "SCRIPTED_KEY"})
		n, err := countClient(base).CountTokens(ctxT(t), countParams(model))
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		if n.InputTokens != want {
			t.Errorf("input_tokens = %d, want the estimate %d", n.InputTokens, want)
		}
		if r := rec.next(t); r.details != countEstimated || r.call.UpstreamError == "" {
			t.Errorf("details %q, upstream error %q", r.details, r.call.UpstreamError)
		}
	})

	t.Run("provider error 400: an error", func(t *testing.T) {
		up := newScripted(t, http.StatusBadRequest, []byte(`{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}`), false)
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Gemini, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
		_, err := countClient(base).CountTokens(ctxT(t), countParams(model))
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Error(), "invalid argument") {
			t.Fatalf("CountTokens error = %v, want Gemini's 400", err)
		}
		if r := rec.next(t); r.details == countEstimated {
			t.Errorf("a client error was estimated")
		}
	})

	t.Run("request Gemini cannot take: the estimate", func(t *testing.T) {
		// A tool result whose call is not in the conversation has no
		// function name for Gemini.
		params := countParams(model)
		params.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_elsewhere", "18C sunny", false))}
		want := estimateFor(t, params)
		up := newScripted(t, http.StatusOK, []byte(`{"totalTokens":4242}`), false)
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Gemini, BaseURL: up.srv.URL, APIKeyEnv: "SCRIPTED_KEY"})
		n, err := countClient(base).CountTokens(ctxT(t), params)
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		if n.InputTokens != want {
			t.Errorf("input_tokens = %d, want the estimate %d", n.InputTokens, want)
		}
		if r := rec.next(t); r.details != countEstimated || r.call.Translated {
			t.Errorf("details %q, call %+v", r.details, r.call)
		}
		up.mu.Lock()
		defer up.mu.Unlock()
		if len(up.reqs) != 0 {
			t.Errorf("the provider got %d requests", len(up.reqs))
		}
	})
}

// TestAnthropicSDKCountTokensOverBedrock counts with the official
// Anthropic client through a gateway whose model Bedrock serves: Bedrock
// Runtime's CountTokens counts, signed with SigV4 by the cluster
// middleware.
func TestAnthropicSDKCountTokensOverBedrock(t *testing.T) {
	creds := llm.AWSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret-SECRET-key", SessionToken: "session-tok"}
	// A cross-region inference profile: CountTokens takes the foundation
	// model.
	const model = "us.anthropic.claude-sonnet-4-20250514-v1:0"

	t.Run("exact count", func(t *testing.T) {
		up := newBedrockUpstream(t, creds)
		up.body = []byte(`{"inputTokens":4242}`)
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Bedrock, BaseURL: up.srv.URL, Region: "eu-central-1", AWSCredentials: &creds})
		params := countParams(model)
		params.Thinking = anthropic.ThinkingConfigParamOfEnabled(1024)
		n, err := countClient(base).CountTokens(ctxT(t), params)
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		if n.InputTokens != 4242 {
			t.Errorf("input_tokens = %d, want Bedrock's 4242", n.InputTokens)
		}
		if r := rec.next(t); r.details == countEstimated || !r.call.Translated || r.call.ProviderKind != llm.Bedrock || r.call.Model != model {
			t.Errorf("exact count recorded as details %q, call %+v", r.details, r.call)
		}
		req := up.last(t) // fails on a bad signature
		if req.path != "/model/anthropic.claude-sonnet-4-20250514-v1%3A0/count-tokens" {
			t.Errorf("provider path %q", req.path)
		}
		auth := req.header.Get("Authorization")
		if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || !strings.Contains(auth, "/eu-central-1/bedrock/aws4_request") {
			t.Errorf("provider Authorization %q, want a SigV4 signature", auth)
		}
		if req.header.Get("X-Amz-Security-Token") != "session-tok" {
			t.Errorf("provider headers %v", req.header)
		}
		noClientKey(t, req)
		// A CountTokens request: input.converse, the translated Converse
		// request without its inferenceConfig.
		body := members(t, "CountTokens request", req.body, "input")
		input := members(t, "input", body["input"], "converse")
		conv := members(t, "input.converse", input["converse"], "messages", "system", "toolConfig", "additionalModelRequestFields")
		jsonEq(t, "messages", conv["messages"], `[{"role":"user","content":[{"text":"Weather in Paris?"}]}]`)
		jsonEq(t, "system", conv["system"], `[{"text":"Be brief."}]`)
		jsonEq(t, "toolConfig", conv["toolConfig"], `{"tools":[{"toolSpec":{"name":"get_weather","inputSchema":{"json":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}}]}`)
		jsonEq(t, "additionalModelRequestFields", conv["additionalModelRequestFields"], `{"thinking":{"type":"enabled","budget_tokens":1024}}`)
	})

	t.Run("provider error 503: the estimate", func(t *testing.T) {
		want := estimateFor(t, countParams(model))
		up := newScripted(t, http.StatusServiceUnavailable, []byte(`{"message":"Bedrock is unable to process your request."}`), false)
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Bedrock, BaseURL: up.srv.URL, Region: "eu-central-1", APIKeyEnv: "SCRIPTED_KEY"})
		n, err := countClient(base).CountTokens(ctxT(t), countParams(model))
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		if n.InputTokens != want {
			t.Errorf("input_tokens = %d, want the estimate %d", n.InputTokens, want)
		}
		r := rec.next(t)
		if r.details != countEstimated || !strings.Contains(r.call.UpstreamError, "unable to process") {
			t.Errorf("details %q, upstream error %q", r.details, r.call.UpstreamError)
		}
		req := up.last(t)
		if req.path != "/model/anthropic.claude-sonnet-4-20250514-v1:0/count-tokens" || req.header.Get("Authorization") != "Bearer "+upstreamKey {
			t.Errorf("provider got %s with Authorization %q", req.path, req.header.Get("Authorization"))
		}
	})

	t.Run("model without a counter: the estimate", func(t *testing.T) {
		want := estimateFor(t, countParams(model))
		up := newScripted(t, http.StatusBadRequest, []byte(`{"message":"The provided model doesn't support counting tokens."}`), false)
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Bedrock, BaseURL: up.srv.URL, Region: "eu-central-1", APIKeyEnv: "SCRIPTED_KEY"})
		n, err := countClient(base).CountTokens(ctxT(t), countParams(model))
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
		if n.InputTokens != want {
			t.Errorf("input_tokens = %d, want the estimate %d", n.InputTokens, want)
		}
		if r := rec.next(t); r.details != countEstimated || !strings.Contains(r.call.UpstreamError, "support counting tokens") {
			t.Errorf("details %q, upstream error %q", r.details, r.call.UpstreamError)
		}
	})

	t.Run("invalid request: an error", func(t *testing.T) {
		up := newScripted(t, http.StatusBadRequest, []byte(`{"message":"messages.0.content: a text block is empty"}`), false)
		base, rec := startCountGateway(t, llm.Provider{Kind: llm.Bedrock, BaseURL: up.srv.URL, Region: "eu-central-1", APIKeyEnv: "SCRIPTED_KEY"})
		_, err := countClient(base).CountTokens(ctxT(t), countParams(model))
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Error(), "a text block is empty") {
			t.Fatalf("CountTokens error = %v, want Bedrock's 400", err)
		}
		if r := rec.next(t); r.details == countEstimated {
			t.Errorf("a client error was estimated")
		}
	})
}

// TestMockCountTokens checks the mock's counting endpoints: a count equals
// the input usage the mock reports for the same request, and the gateway
// relays it as Anthropic's count.
func TestMockCountTokens(t *testing.T) {
	srv := httptest.NewServer(&mock.Server{})
	t.Cleanup(srv.Close)
	post := func(path string, body string) map[string]any {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %s: %v", path, b, err)
		}
		return v
	}
	num := func(v map[string]any, path ...string) float64 {
		t.Helper()
		for _, k := range path[:len(path)-1] {
			v, _ = v[k].(map[string]any)
		}
		n, ok := v[path[len(path)-1]].(float64)
		if !ok {
			t.Fatalf("no %v in %v", path, v)
		}
		return n
	}

	t.Run("gemini", func(t *testing.T) {
		gen := `{"contents":[{"role":"user","parts":[{"text":"Weather in Paris? A longer question, to make the count larger than a few tokens."}]}],` +
			`"systemInstruction":{"parts":[{"text":"Be brief."}]},"tools":[{"functionDeclarations":[{"name":"get_weather","parametersJsonSchema":{"type":"object"}}]}]}`
		in := num(post("/v1beta/models/mock-gemini:generateContent", gen), "usageMetadata", "promptTokenCount")
		model := `"model":"models/mock-gemini"`
		for _, body := range []string{
			`{"generateContentRequest":` + gen[:len(gen)-1] + `,` + model + `}}`, // the gateway's form
			`{"generateContentRequest":{` + model + `,` + gen[1:] + `}`,
			`{"generateContentRequest":` + gen + `}`,
		} {
			if got := num(post("/v1beta/models/mock-gemini:countTokens", body), "totalTokens"); got != in {
				t.Errorf("countTokens %s = %v, generateContent input %v", body, got, in)
			}
		}
		contents := `{"contents":[{"role":"user","parts":[{"text":"Hello there, mock."}]}]}`
		if got, want := num(post("/v1beta/models/mock-gemini:countTokens", contents), "totalTokens"),
			num(post("/v1beta/models/mock-gemini:generateContent", contents), "usageMetadata", "promptTokenCount"); got != want {
			t.Errorf("countTokens of contents = %v, generateContent input %v", got, want)
		}
	})

	t.Run("bedrock", func(t *testing.T) {
		conv := `{"messages":[{"role":"user","content":[{"text":"Weather in Paris? A longer question, to make the count larger than a few tokens."}]}],` +
			`"system":[{"text":"Be brief."}],"toolConfig":{"tools":[{"toolSpec":{"name":"get_weather","inputSchema":{"json":{"type":"object"}}}}]}}`
		in := num(post("/model/mock-bedrock/converse", conv), "usage", "inputTokens")
		if got := num(post("/model/mock-bedrock/count-tokens", `{"input":{"converse":`+conv+`}}`), "inputTokens"); got != in {
			t.Errorf("count-tokens = %v, converse input %v", got, in)
		}
	})

	// Through the gateway: Anthropic's count is the mock's count of what
	// the gateway sent, not the estimate.
	var mu sync.Mutex
	var sent []recorded
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = append(sent, recorded{path: r.URL.Path, body: b})
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.Close)
	for _, tc := range []struct {
		name  string
		p     llm.Provider
		model string
		inner func(t *testing.T, body []byte) (path, req string, usage []string)
	}{
		{"gemini", llm.Provider{Kind: llm.Gemini, BaseURL: rec.URL, APIKeyEnv: "SCRIPTED_KEY"}, "mock-gemini",
			func(t *testing.T, body []byte) (string, string, []string) {
				gc := members(t, "countTokens request", body, "generateContentRequest")["generateContentRequest"]
				var m map[string]json.RawMessage
				json.Unmarshal(gc, &m)
				delete(m, "model")
				b, _ := json.Marshal(m)
				return "/v1beta/models/mock-gemini:generateContent", string(b), []string{"usageMetadata", "promptTokenCount"}
			}},
		{"bedrock", llm.Provider{Kind: llm.Bedrock, BaseURL: rec.URL, Region: "us-east-1", APIKeyEnv: "SCRIPTED_KEY"}, "mock-bedrock",
			func(t *testing.T, body []byte) (string, string, []string) {
				in := members(t, "CountTokens request", body, "input")["input"]
				return "/model/mock-bedrock/converse", string(members(t, "input", in, "converse")["converse"]), []string{"usage", "inputTokens"}
			}},
	} {
		t.Run("gateway "+tc.name, func(t *testing.T) {
			base, recd := startCountGateway(t, tc.p)
			params := countParams(tc.model)
			n, err := countClient(base).CountTokens(ctxT(t), params)
			if err != nil {
				t.Fatalf("CountTokens: %v", err)
			}
			if r := recd.next(t); r.details == countEstimated {
				t.Errorf("estimated: %+v", r.call)
			}
			mu.Lock()
			if len(sent) == 0 {
				mu.Unlock()
				t.Fatal("the mock got no request")
			}
			last := sent[len(sent)-1]
			sent = nil
			mu.Unlock()
			path, req, usage := tc.inner(t, last.body)
			if in := num(post(path, req), usage...); float64(n.InputTokens) != in {
				t.Errorf("input_tokens = %d, the mock's input usage for the same request %v", n.InputTokens, in)
			}
		})
	}
}
