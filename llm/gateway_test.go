package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/porticoproxy/portico/filter"
)

func TestConfigValidate(t *testing.T) {
	ok := Provider{Name: "p", Kind: OpenAI}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no providers", Config{}, "at least one"},
		{"no kind", Config{Providers: []Provider{{Name: "p"}}}, "kind: must be set"},
		{"bad kind", Config{Providers: []Provider{{Name: "p", Kind: "palm"}}}, "unknown kind"},
		{"duplicate provider", Config{Providers: []Provider{ok, ok}}, "already used"},
		{"bad scheme", Config{Providers: []Provider{{Name: "p", Kind: OpenAI, BaseURL: "ftp://x"}}}, "scheme"},
		{"userinfo", Config{Providers: []Provider{{Name: "p", Kind: OpenAI, BaseURL: "https://user:sk-SECRET@x/v1"}}}, "credentials"},
		{"query", Config{Providers: []Provider{{Name: "p", Kind: OpenAI, BaseURL: "https://x/v1?key=sk-SECRET"}}}, "query"},
		{"key twice", Config{Providers: []Provider{{Name: "p", Kind: OpenAI, APIKey: "sk-SECRET", APIKeyEnv: "K"}}}, "at most one"},
		{"bad header", Config{Providers: []Provider{{Name: "p", Kind: OpenAI, Headers: map[string]string{"a b": "v"}}}}, "invalid header"},
		{"unknown provider", Config{Providers: []Provider{ok}, Models: []Model{{Name: "m", Provider: "q"}}}, "not a configured provider"},
		{"inner wildcard", Config{Providers: []Provider{ok}, Models: []Model{{Name: "a*b", Provider: "p"}}}, "only at the end"},
		{"duplicate model", Config{Providers: []Provider{ok}, Models: []Model{{Name: "m", Provider: "p"}, {Name: "m", Provider: "p"}}}, "already used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error reveals the key: %v", err)
			}
			if _, err := New(tc.cfg); err == nil {
				t.Error("New accepted the config")
			}
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	p := Provider{Name: "p", Kind: OpenAI, APIKey: "sk-SECRET"}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "provider", p)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "provider", p)
	js, _ := json.Marshal(p)
	for _, s := range []string{
		fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), fmt.Sprintf("%s %q %x %v", p.APIKey, p.APIKey, p.APIKey, p.APIKey),
		string(js), logged.String(),
	} {
		if strings.Contains(s, "SECRET") || strings.Contains(s, "534543524554") {
			t.Errorf("the key shows: %s", s)
		}
	}
	if string(p.APIKey) != "sk-SECRET" {
		t.Error("string conversion must reveal the key")
	}
}

func TestNewEnvironment(t *testing.T) {
	env := map[string]string{"KEY": " sk-env \n"}
	getenv := func(k string) string { return env[k] }
	g, err := New(Config{Providers: []Provider{{Name: "p", Kind: OpenAI, APIKeyEnv: "KEY"}}, Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if g.providers[0].authValue != "Bearer sk-env" {
		t.Errorf("auth = %q", g.providers[0].authValue)
	}
	_, err = New(Config{Providers: []Provider{{Name: "p", Kind: OpenAI, APIKeyEnv: "MISSING"}}, Getenv: getenv})
	if err == nil || !strings.Contains(err.Error(), "MISSING is empty") {
		t.Errorf("missing variable: %v", err)
	}
}

func TestRoute(t *testing.T) {
	g, err := New(Config{
		Providers: []Provider{{Name: "openai", Kind: OpenAI}, {Name: "anthropic", Kind: Anthropic}, {Name: "local", Kind: OpenAI, BaseURL: "http://127.0.0.1:11434/v1"}},
		Models: []Model{
			{Name: "*", Provider: "openai"},
			{Name: "claude-*", Provider: "anthropic"},
			{Name: "claude-3-*", Provider: "local", UpstreamModel: "llama3"},
			{Name: "claude-3-opus", Provider: "openai"},
			{Name: "fast", Provider: "anthropic", UpstreamModel: "claude-haiku-4-5"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ model, provider, upstream string }{
		{"gpt-4o", "openai", "gpt-4o"},
		{"claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"},
		{"claude-3-haiku", "local", "llama3"},
		{"claude-3-opus", "openai", "claude-3-opus"},
		{"fast", "anthropic", "claude-haiku-4-5"},
	} {
		p, up, ok := g.Route(tc.model)
		if !ok || p != tc.provider || up != tc.upstream {
			t.Errorf("Route(%q) = %q %q %v, want %q %q", tc.model, p, up, ok, tc.provider, tc.upstream)
		}
	}
}

func TestRulesAndClusters(t *testing.T) {
	g, err := New(Config{Providers: []Provider{
		{Name: "openai", Kind: OpenAI},
		{Name: "anthropic", Kind: Anthropic, BaseURL: "https://proxy.example:8443/anthropic/"},
		{Name: "local", Kind: OpenAI, BaseURL: "http://[::1]:80/v1"},
		{Name: "shared", Kind: OpenAI, Cluster: "egress"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	rules := g.Rules()
	if len(rules) != 7 {
		t.Fatalf("%d rules", len(rules))
	}
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			t.Errorf("rule %s: %v", r.Name, err)
		}
		if _, ok := r.FilterConfig[FilterName].(API); !ok {
			t.Errorf("rule %s has no API", r.Name)
		}
		if _, err := g.ForRoute(r.FilterConfig[FilterName]); err != nil {
			t.Errorf("ForRoute: %v", err)
		}
	}
	if _, err := g.ForRoute("chat"); err == nil {
		t.Error("ForRoute accepted a string")
	}
	cls := g.Clusters()
	if len(cls) != 3 {
		t.Fatalf("%d clusters, want 3 (not the shared one)", len(cls))
	}
	want := []struct{ name, addr, sni string }{
		{"llm_openai", "api.openai.com:443", "api.openai.com"},
		{"llm_anthropic", "proxy.example:8443", "proxy.example"},
		{"llm_local", "[::1]:80", ""},
	}
	for i, w := range want {
		c := cls[i]
		if err := c.Validate(); err != nil {
			t.Errorf("cluster %s: %v", c.Name, err)
		}
		sni := ""
		if c.TLS != nil {
			sni = c.TLS.ServerName
		}
		if c.Name != w.name || c.Endpoints[0].Address != w.addr || sni != w.sni {
			t.Errorf("cluster %d = %s %s sni %q, want %+v", i, c.Name, c.Endpoints[0].Address, sni, w)
		}
	}
	if h := g.providers[2].ep.host; h != "[::1]" {
		t.Errorf("host for the default port = %q", h)
	}
	if p := g.providers[1].ep; p.host != "proxy.example:8443" || p.path != "/anthropic" {
		t.Errorf("endpoint = %+v", p)
	}
}

// serve runs one request through a front door with the given upstream.
func serve(t *testing.T, g *Gateway, api API, body string, up filter.UpstreamFunc) *httptest.ResponseRecorder {
	t.Helper()
	chain, err := filter.NewChain(g.FrontDoor(api))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, pathFor(api), strings.NewReader(body))
	w := httptest.NewRecorder()
	if up == nil {
		up = func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
			t.Error("the upstream was called")
			return nil, fmt.Errorf("unexpected")
		}
	}
	chain.Serve(w, filter.NewExchange(r), up)
	return w
}

// TestClientErrors checks that requests the gateway refuses are answered
// in the client's own error schema.
func TestClientErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   Kind
		api    API
		body   string
		status int
		want   string
	}{
		{"not JSON", Anthropic, ChatCompletions, `{"model":`, 400, "must be a JSON object"},
		{"no model", Anthropic, Messages, `{"messages":[]}`, 400, "model"},
		{"duplicate model", OpenAI, ChatCompletions, `{"model":"a","model":"b"}`, 400, "duplicate key"},
		{"stream not bool", OpenAI, ChatCompletions, `{"model":"a","stream":"yes"}`, 400, "stream"},
		{"n > 1", Anthropic, ChatCompletions, `{"model":"a","n":2,"messages":[]}`, 400, "n:"},
		{"json_schema", Anthropic, ChatCompletions, `{"model":"a","response_format":{"type":"json_schema"},"messages":[]}`, 400, "response_format"},
		{"non-function tool", Anthropic, ChatCompletions, `{"model":"a","tools":[{"type":"custom"}],"messages":[]}`, 400, "tools[0]"},
		{"bad arguments", Anthropic, ChatCompletions, `{"model":"a","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, 400, "arguments"},
		{"audio", Anthropic, ChatCompletions, `{"model":"a","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, 400, "input_audio"},
		{"server tool", OpenAI, Messages, `{"model":"a","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[]}`, 400, "web_search"},
		{"bad role", OpenAI, Messages, `{"model":"a","max_tokens":1,"messages":[{"role":"system","content":"x"}]}`, 400, "role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := testGateway(t, tc.kind)
			w := serve(t, g, tc.api, tc.body, nil)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			checkErrorSchema(t, tc.api, w.Body.Bytes(), tc.want)
		})
	}
}

func checkErrorSchema(t *testing.T, api API, body []byte, want string) {
	t.Helper()
	var msg string
	if api.anthropic() {
		var e anErrorBody
		if err := json.Unmarshal(body, &e); err != nil || e.Type != "error" || e.Error == nil || e.Error.Type == "" {
			t.Fatalf("not an Anthropic error: %s", body)
		}
		msg = e.Error.Message
	} else {
		var e oaErrorBody
		if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Type == "" {
			t.Fatalf("not an OpenAI error: %s", body)
		}
		msg = e.Error.Message
	}
	if !strings.Contains(msg, want) {
		t.Errorf("message %q lacks %q", msg, want)
	}
}

func TestUnknownModel(t *testing.T) {
	g, err := New(Config{Providers: []Provider{{Name: "p", Kind: OpenAI}}, Models: []Model{{Name: "gpt-*", Provider: "p"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, api := range []API{ChatCompletions, Messages} {
		w := serve(t, g, api, `{"model":"claude-x","max_tokens":1,"messages":[]}`, nil)
		if w.Code != http.StatusNotFound {
			t.Errorf("%v: status %d", api, w.Code)
		}
		checkErrorSchema(t, api, w.Body.Bytes(), `"claude-x"`)
	}
}

func TestRequestTooLarge(t *testing.T) {
	g := testGateway(t, OpenAI)
	chain, _ := filter.NewChain(g.FrontDoor(Messages))
	r := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(`{"model":"a","pad":"`+strings.Repeat("x", 2048)+`"}`))
	x := filter.NewExchange(r)
	x.BufferLimit = 1024
	w := httptest.NewRecorder()
	chain.Serve(w, x, nil)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d", w.Code)
	}
	checkErrorSchema(t, Messages, w.Body.Bytes(), "limit")
}

// TestLocalReplyInClientSchema checks that the router's own errors (no
// healthy upstream, timeouts) reach LLM clients in their error schema.
func TestLocalReplyInClientSchema(t *testing.T) {
	for _, api := range []API{ChatCompletions, Messages} {
		g := testGateway(t, OpenAI)
		w := serve(t, g, api, `{"model":"a","max_tokens":1,"messages":[]}`, func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
			return nil, &filter.ReplyError{Status: http.StatusServiceUnavailable, Body: []byte("no healthy upstream")}
		})
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: %d %s", api, w.Code, w.Header().Get("Content-Type"))
		}
		if w.Header().Get("X-Portico-Provider") != "up" {
			t.Errorf("%v: no x-portico-provider on the error", api)
		}
		checkErrorSchema(t, api, w.Body.Bytes(), "no healthy upstream")
	}
}

// TestAnthropicHeaders checks what reaches an Anthropic provider: the
// client's anthropic-beta on pass-through, nothing of the sort when
// translating, and the provider's own headers.
func TestAnthropicHeaders(t *testing.T) {
	g, err := New(Config{
		Providers: []Provider{{Name: "a", Kind: Anthropic, APIKey: "sk-a", Headers: map[string]string{"anthropic-beta": "gateway-beta"}},
			{Name: "b", Kind: Anthropic, APIKey: "sk-b", AnthropicVersion: "2024-01-01"}},
		Models: []Model{{Name: "a", Provider: "a"}, {Name: "b", Provider: "b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got http.Header
	var query string
	up := func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		got, query = x.Out.Header.Clone(), x.Out.URL.RawQuery
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{}`))}, nil
	}
	chain, _ := filter.NewChain(g.FrontDoor(Messages))
	r := httptest.NewRequest(http.MethodPost, "/v1/messages?beta=true", strings.NewReader(`{"model":"b","max_tokens":1,"messages":[]}`))
	r.Header.Set("Anthropic-Beta", "client-beta")
	r.Header.Set("Anthropic-Version", "2023-06-01")
	r.Header.Set("Cookie", "sid=1")
	r.Header.Set("Accept-Encoding", "gzip")
	chain.Serve(httptest.NewRecorder(), filter.NewExchange(r), filter.UpstreamFunc(up))
	if got.Get("Anthropic-Beta") != "client-beta" || got.Get("Anthropic-Version") != "2023-06-01" || query != "beta=true" {
		t.Errorf("pass-through: beta %q version %q query %q", got.Get("Anthropic-Beta"), got.Get("Anthropic-Version"), query)
	}
	if got.Get("Cookie") != "" || got.Get("Accept-Encoding") != "" || got.Get("X-Api-Key") != "sk-b" {
		t.Errorf("pass-through headers: %v", got)
	}

	chain, _ = filter.NewChain(g.FrontDoor(ChatCompletions))
	r = httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"a","messages":[{"role":"user","content":"x"}]}`))
	r.Header.Set("Anthropic-Beta", "client-beta")
	chain.Serve(httptest.NewRecorder(), filter.NewExchange(r), filter.UpstreamFunc(up))
	if got.Get("Anthropic-Beta") != "gateway-beta" || got.Get("Anthropic-Version") != DefaultAnthropicVersion || got.Get("X-Api-Key") != "sk-a" {
		t.Errorf("translated: %v", got)
	}
}

// TestCutStreamCharged checks that a client that goes away mid-stream is
// still charged for the output it was sent.
func TestCutStreamCharged(t *testing.T) {
	g := testGateway(t, Anthropic)
	chain, _ := filter.NewChain(g.FrontDoor(Messages))
	sse := mustRead(t, "testdata/golden/oa-an-stream-cut/upstream.sse")
	r := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(`{"model":"a","max_tokens":1000,"stream":true,"messages":[{"role":"user","content":"Tell me a long story."}]}`))
	x := filter.NewExchange(r)
	up := func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: io.NopCloser(bytes.NewReader(sse)), ContentLength: -1}, nil
	}
	chain.Serve(&failingWriter{ResponseRecorder: httptest.NewRecorder(), after: 3}, x, filter.UpstreamFunc(up))
	c := CallOf(x)
	if c.Usage.InputTokens != 10 || c.Usage.OutputTokens == 0 || !c.Usage.Estimated {
		t.Errorf("usage of a cut stream = %+v", c.Usage)
	}
}

// failingWriter fails writes after a number of them, as a client that
// disconnects does.
type failingWriter struct {
	*httptest.ResponseRecorder
	after int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after == 0 {
		return 0, fmt.Errorf("client gone")
	}
	w.after--
	return w.ResponseRecorder.Write(p)
}

func TestModelsList(t *testing.T) {
	g, err := New(Config{Providers: []Provider{{Name: "p", Kind: OpenAI}},
		Models: []Model{{Name: "a", Provider: "p"}, {Name: "b*", Provider: "p"}, {Name: "c", Provider: "p"}}})
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := filter.NewChain(g.FrontDoor(Models))
	for _, anthropic := range []bool{false, true} {
		r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		if anthropic {
			r.Header.Set("Anthropic-Version", "2023-06-01")
		}
		w := httptest.NewRecorder()
		chain.Serve(w, filter.NewExchange(r), nil)
		var list struct {
			Object string `json:"object"`
			Data   []struct {
				ID, Type, Object string
			} `json:"data"`
			LastID string `json:"last_id"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 {
			t.Fatalf("%d %s: %v", w.Code, w.Body, err)
		}
		if len(list.Data) != 2 || list.Data[0].ID != "a" || list.Data[1].ID != "c" {
			t.Errorf("models = %+v", list.Data)
		}
		if anthropic && (list.Data[0].Type != "model" || list.LastID != "c") || !anthropic && list.Object != "list" {
			t.Errorf("anthropic=%v: %s", anthropic, w.Body)
		}
	}
}

func BenchmarkChatPassThrough(b *testing.B) {
	g := testGateway(b, OpenAI)
	chain, _ := filter.NewChain(g.FrontDoor(ChatCompletions))
	reqBody := []byte(`{"model":"alias-model","messages":[{"role":"user","content":"Hello"}],"max_tokens":64}`)
	respBody := mustRead(b, "testdata/golden/oa-oa-alias/upstream.json")
	up := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		io.Copy(io.Discard, x.Out.Body)
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewReader(respBody)), ContentLength: int64(len(respBody))}, nil
	})
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(reqBody))
		chain.Serve(httptest.NewRecorder(), filter.NewExchange(r), up)
	}
}

func BenchmarkStreamAnthropicToOpenAI(b *testing.B) {
	c := goldenCase{api: ChatCompletions, kind: Anthropic, stream: true, status: 200,
		request: mustRead(b, "testdata/golden/oa-an-stream/request.json"), upstream: mustRead(b, "testdata/golden/oa-an-stream/upstream.sse")}
	b.ReportAllocs()
	b.SetBytes(int64(len(c.upstream)))
	for b.Loop() {
		c.run(b, [][]byte{c.upstream})
	}
}

// TestToolCallsWithoutIndex covers OpenAI-compatible servers that omit
// tool-call indices: a new id starts a new call, fragments without one
// continue the open call.
func TestToolCallsWithoutIndex(t *testing.T) {
	chunk := func(delta string) string {
		return `data: {"id":"c1","model":"m","choices":[{"index":0,"delta":` + delta + `,"finish_reason":null}]}` + "\n\n"
	}
	sse := chunk(`{"role":"assistant"}`) +
		chunk(`{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"x\":"}}]}`) +
		chunk(`{"tool_calls":[{"function":{"arguments":"1}"}}]}`) +
		chunk(`{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{}"}},{"id":"c","function":{"name":"h","arguments":""}}]}`) +
		`data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\n" + "data: [DONE]\n\n"
	c := goldenCase{api: Messages, kind: OpenAI, stream: true, status: 200,
		request: []byte(`{"model":"m","max_tokens":10,"stream":true,"messages":[]}`), upstream: []byte(sse)}
	res := c.run(t, [][]byte{c.upstream})
	var blocks []string
	for _, l := range strings.Split(string(res.body), "\n") {
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			var ev anEvent
			json.Unmarshal([]byte(d), &ev)
			switch {
			case ev.Type == "content_block_start":
				blocks = append(blocks, fmt.Sprintf("start %d %s", ev.Index, ev.ContentBlock.ID))
			case ev.Type == "content_block_delta":
				blocks = append(blocks, fmt.Sprintf("delta %d %s", ev.Index, ev.Delta.PartialJSON))
			}
		}
	}
	want := []string{"start 0 a", `delta 0 {"x":`, "delta 0 1}", "start 1 b", "delta 1 {}", "start 2 c"}
	if strings.Join(blocks, "|") != strings.Join(want, "|") {
		t.Errorf("blocks\n%q\nwant\n%q", blocks, want)
	}
}
