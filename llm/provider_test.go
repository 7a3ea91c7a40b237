package llm

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/porticoproxy/portico/filter"
)

func TestProviderValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Provider
		want string
	}{
		{"azure without base url", Provider{Name: "p", Kind: AzureOpenAI}, "base_url: required"},
		{"bad responses mode", Provider{Name: "p", Kind: OpenAI, Responses: "sometimes"}, "unknown mode"},
		{"native responses elsewhere", Provider{Name: "p", Kind: Anthropic, Responses: ResponsesNative}, "needs an"},
		{"half aws credentials", Provider{Name: "p", Kind: Bedrock, Region: "us-east-1", AWSCredentials: &AWSCredentials{AccessKeyID: "AKID"}}, "both required"},
		{"aws credentials and key", Provider{Name: "p", Kind: Bedrock, Region: "us-east-1", APIKey: "k",
			AWSCredentials: &AWSCredentials{AccessKeyID: "AKID", SecretAccessKey: "SECRET"}}, "at most one"},
		{"bad api version", Provider{Name: "p", Kind: AzureOpenAI, BaseURL: "https://r.openai.azure.com", APIVersion: "2024&x=1"}, "not a version"},
		{"bad region", Provider{Name: "p", Kind: Bedrock, Region: "us-east-1.evil.com/"}, "not a region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error reveals the secret: %v", err)
			}
		})
	}
}

func TestNewBedrockCredentials(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	cfg := Config{Providers: []Provider{{Name: "b", Kind: Bedrock}}, Getenv: getenv}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Errorf("no region: %v", err)
	}
	env["AWS_DEFAULT_REGION"] = "ap-south-1"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("no credentials: %v", err)
	}
	env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_SESSION_TOKEN"] = "AKIDENV", "SECRET-env", "tok"
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := g.providers[0].signer
	if s == nil || s.Region != "ap-south-1" || s.Service != "bedrock" || s.Credentials.AccessKeyID != "AKIDENV" || s.Credentials.SessionToken != "tok" {
		t.Fatalf("signer = %+v", s)
	}
	cls := g.Clusters()
	if len(cls) != 1 || cls[0].Endpoints[0].Address != "bedrock-runtime.ap-south-1.amazonaws.com:443" || len(cls[0].Middleware) != 1 {
		t.Errorf("cluster = %+v", cls)
	}
	if mw := g.Middleware("b"); len(mw) != 1 {
		t.Errorf("Middleware(b) = %d", len(mw))
	}
	// With an API key (a Bedrock API key) there is nothing to sign.
	g, err = New(Config{Providers: []Provider{{Name: "b", Kind: Bedrock, Region: "us-west-2", APIKey: "bedrock-key"}}})
	if err != nil {
		t.Fatal(err)
	}
	if g.providers[0].signer != nil || g.Middleware("b") != nil || g.providers[0].authValue != "Bearer bedrock-key" {
		t.Errorf("API key provider: %+v", g.providers[0])
	}
}

// upstreamOf serves one request through a front door and returns what
// reached the upstream.
func upstreamOf(t *testing.T, g *Gateway, api API, path string, hdr http.Header, body string) (*http.Request, []byte, *httptest.ResponseRecorder) {
	t.Helper()
	var got *http.Request
	var gotBody []byte
	up := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		got = x.Out.Clone(ctx)
		gotBody, _ = io.ReadAll(x.Out.Body)
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{}`))}, nil
	})
	chain, err := filter.NewChain(g.FrontDoor(api))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range hdr {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	chain.Serve(w, filter.NewExchange(r), up)
	return got, gotBody, w
}

func TestAzureOpenAI(t *testing.T) {
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}`
	client := http.Header{"Authorization": {"Bearer client"}, "Api-Key": {"client"}}
	for _, tc := range []struct {
		name     string
		p        Provider
		model    Model
		wantPath string
		wantQ    string
		wantHdr  [2]string
		wantBody string
	}{{
		name:     "api key, deployment from the model table",
		p:        Provider{APIKey: "az-key"},
		model:    Model{Name: "gpt-4o", Provider: "az", UpstreamModel: "prod gpt4o"},
		wantPath: "/openai/deployments/prod%20gpt4o/chat/completions", wantQ: "api-version=2024-10-21",
		wantHdr: [2]string{"Api-Key", "az-key"}, wantBody: `"model":"prod gpt4o"`,
	}, {
		name:     "entra token, api version",
		p:        Provider{APIKey: "entra-token", Bearer: true, APIVersion: "2025-04-01-preview"},
		model:    Model{Name: "*", Provider: "az"},
		wantPath: "/openai/deployments/gpt-4o/chat/completions", wantQ: "api-version=2025-04-01-preview",
		wantHdr: [2]string{"Authorization", "Bearer entra-token"},
	}, {
		name:     "v1 api, token source",
		p:        Provider{APIVersion: "v1", Token: func(context.Context) (string, error) { return "fresh-token", nil }},
		model:    Model{Name: "*", Provider: "az"},
		wantPath: "/openai/v1/chat/completions",
		wantHdr:  [2]string{"Authorization", "Bearer fresh-token"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			p.Name, p.Kind, p.BaseURL = "az", AzureOpenAI, "https://res.openai.azure.com/"
			g, err := New(Config{Providers: []Provider{p}, Models: []Model{tc.model}})
			if err != nil {
				t.Fatal(err)
			}
			got, body, w := upstreamOf(t, g, ChatCompletions, "/v1/chat/completions?ignored=1", client, chat)
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if got.URL.EscapedPath() != tc.wantPath || got.URL.RawQuery != tc.wantQ || got.Host != "res.openai.azure.com" {
				t.Errorf("upstream %s %s?%s", got.Host, got.URL.EscapedPath(), got.URL.RawQuery)
			}
			if got.Header.Get(tc.wantHdr[0]) != tc.wantHdr[1] {
				t.Errorf("%s = %q", tc.wantHdr[0], got.Header.Get(tc.wantHdr[0]))
			}
			for _, k := range []string{"Authorization", "Api-Key"} {
				if strings.Contains(got.Header.Get(k), "client") {
					t.Errorf("the client's %s reached Azure", k)
				}
			}
			if !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("body %s lacks %s", body, tc.wantBody)
			}
		})
	}
	t.Run("token source failure", func(t *testing.T) {
		g, err := New(Config{Providers: []Provider{{Name: "az", Kind: AzureOpenAI, BaseURL: "https://res.openai.azure.com",
			Token: func(context.Context) (string, error) { return "", errors.New("SECRET tenant unreachable") }}},
			Models: []Model{{Name: "*", Provider: "az"}}})
		if err != nil {
			t.Fatal(err)
		}
		got, _, w := upstreamOf(t, g, ChatCompletions, "/v1/chat/completions", nil, chat)
		if got != nil || w.Code != http.StatusBadGateway || strings.Contains(w.Body.String(), "SECRET") {
			t.Errorf("status %d body %s", w.Code, w.Body)
		}
	})
}

func TestBedrockStripsClientAWSHeaders(t *testing.T) {
	g := testGatewayFor(t, Bedrock, Provider{})
	got, _, _ := upstreamOf(t, g, Messages, "/v1/messages", http.Header{"X-Amz-Security-Token": {"client"}, "X-Amz-Date": {"x"}, "Anthropic-Version": {"2023-06-01"}},
		`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}`)
	for k := range got.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-") || k == "Anthropic-Version" {
			t.Errorf("client header %s reached Bedrock", k)
		}
	}
}

func TestResponsesNativeDefault(t *testing.T) {
	for _, tc := range []struct {
		p      Provider
		native bool
	}{
		{Provider{Kind: OpenAI}, true},
		{Provider{Kind: OpenAI, BaseURL: "https://api.openai.com/v1"}, true},
		{Provider{Kind: OpenAI, BaseURL: "http://127.0.0.1:8000/v1"}, false},
		{Provider{Kind: OpenAI, BaseURL: "http://127.0.0.1:8000/v1", Responses: ResponsesNative}, true},
		{Provider{Kind: OpenAI, Responses: ResponsesChat}, false},
	} {
		tc.p.Name = "p"
		g, err := New(Config{Providers: []Provider{tc.p}})
		if err != nil {
			t.Fatal(err)
		}
		if got := g.providers[0].nativeResponses; got != tc.native {
			t.Errorf("%+v: native %v, want %v", tc.p, got, tc.native)
		}
	}
}

func TestGeminiBadKeyIs502(t *testing.T) {
	g := testGateway(t, Gemini)
	chain, _ := filter.NewChain(g.FrontDoor(ChatCompletions))
	up := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		return &http.Response{StatusCode: 400, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(
			`{"error":{"code":400,"message":"API key not valid. key=` + testKey + `","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}`))}, nil
	})
	w := httptest.NewRecorder()
	chain.Serve(w, filter.NewExchange(httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"model":"gemini-2.5-flash","messages":[]}`))), up)
	if w.Code != http.StatusBadGateway || strings.Contains(w.Body.String(), "SECRET") {
		t.Errorf("status %d: %s", w.Code, w.Body)
	}
}

func TestTranslationRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind Kind
		api  API
		body string
		want string
	}{
		{"previous_response_id", Anthropic, Responses, `{"model":"m","input":"x","previous_response_id":"resp_1"}`, "previous_response_id"},
		{"item_reference", OpenAI, Responses, `{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}`, "item_reference"},
		{"hosted tool", Gemini, Responses, `{"model":"m","input":"x","tools":[{"type":"web_search"}]}`, "web_search"},
		{"custom tool input", Bedrock, Responses, `{"model":"m","input":[{"type":"custom_tool_call","call_id":"c"}]}`, "custom_tool_call"},
		{"file by id", OpenAI, Responses, `{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}`, "file_id"},
		{"embeddings on anthropic", Anthropic, Embeddings, `{"model":"m","input":"x"}`, "not supported"},
		{"token arrays to gemini", Gemini, Embeddings, `{"model":"m","input":[[1,2]]}`, "token arrays"},
		{"image url to bedrock", Bedrock, ChatCompletions, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, "inline"},
		{"json schema to bedrock", Bedrock, ChatCompletions, `{"model":"m","response_format":{"type":"json_schema"},"messages":[]}`, "response_format"},
		{"unknown tool result for gemini", Gemini, Messages, `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"nope","content":"x"}]}]}`, "answers no tool call"},
		{"server tool to gemini", Gemini, Messages, `{"model":"m","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[]}`, "web_search"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := testGateway(t, tc.kind)
			w := serve(t, g, tc.api, tc.body, nil)
			if w.Code != http.StatusBadRequest {
				t.Errorf("status %d, want 400: %s", w.Code, w.Body)
			}
			checkErrorSchema(t, tc.api, w.Body.Bytes(), tc.want)
		})
	}
}

func TestModelByID(t *testing.T) {
	g, err := New(Config{Providers: []Provider{{Name: "p", Kind: OpenAI}, {Name: "g", Kind: Gemini, APIKey: "k"}},
		Models: []Model{{Name: "gpt-4o", Provider: "p"}, {Name: "gemini-*", Provider: "g"}}})
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := filter.NewChain(g.FrontDoor(Models))
	get := func(path string, anthropic bool) (int, map[string]any) {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if anthropic {
			r.Header.Set("Anthropic-Version", "2023-06-01")
		}
		w := httptest.NewRecorder()
		chain.Serve(w, filter.NewExchange(r), nil)
		var v map[string]any
		json.Unmarshal(w.Body.Bytes(), &v)
		return w.Code, v
	}
	if code, v := get("/v1/models/gemini-2.5-flash", false); code != 200 || v["id"] != "gemini-2.5-flash" || v["object"] != "model" || v["owned_by"] != "g" {
		t.Errorf("openai: %d %v", code, v)
	}
	if code, v := get("/v1/models/gpt-4o", true); code != 200 || v["id"] != "gpt-4o" || v["type"] != "model" {
		t.Errorf("anthropic: %d %v", code, v)
	}
	if code, v := get("/v1/models/claude-x", false); code != 404 || v["error"] == nil {
		t.Errorf("unknown, openai: %d %v", code, v)
	}
	if code, v := get("/v1/models/claude-x", true); code != 404 || v["type"] != "error" {
		t.Errorf("unknown, anthropic: %d %v", code, v)
	}
}
