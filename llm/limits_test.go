package llm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/resp/resptest"
)

// policyGW returns a gateway with one provider of kind, every model routed
// to it, and the policies mod sets.
func policyGW(t testing.TB, kind Kind, mod func(*Config)) *Gateway {
	t.Helper()
	cfg := Config{
		Providers: []Provider{{Name: "up", Kind: kind, BaseURL: baseFor(kind), APIKey: testKey}},
		Models:    []Model{{Name: "*", Provider: "up"}},
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// do runs one request through a front door with extra request headers,
// and returns the response and the exchange's Call.
func do(t testing.TB, g *Gateway, api API, body string, hdr http.Header, up filter.UpstreamFunc) (*httptest.ResponseRecorder, *Call) {
	t.Helper()
	var call *Call
	rec := filter.DoneFunc{FilterName: "rec", Func: func(ctx context.Context, x *filter.Exchange) { call = CallOf(x) }}
	chain, err := filter.NewChain(rec, g.FrontDoor(api))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, pathFor(api), strings.NewReader(body))
	for k, v := range hdr {
		r.Header[k] = v
	}
	r.RemoteAddr = "192.0.2.7:5555"
	w := httptest.NewRecorder()
	if up == nil {
		up = func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
			t.Error("the upstream was called")
			return nil, io.EOF
		}
	}
	chain.Serve(w, filter.NewExchange(r), up)
	return w, call
}

// reply answers every request with status and body (JSON, or an event
// stream when it starts with "event:" or "data:").
func answer(status int, body string, header ...string) filter.UpstreamFunc {
	return func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		io.Copy(io.Discard, x.Out.Body)
		h := http.Header{"Content-Type": {"application/json"}}
		if strings.HasPrefix(body, "event:") || strings.HasPrefix(body, "data:") {
			h.Set("Content-Type", "text/event-stream")
		}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: -1}, nil
	}
}

const (
	oaChatReq  = `{"model":"gpt-x","messages":[{"role":"user","content":"Hello"}]}`
	anMsgReq   = `{"model":"claude-x","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}`
	oaChatResp = `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-x-2025","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}`
	anMsgResp  = `{"id":"m1","type":"message","role":"assistant","model":"claude-x-2025","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":20}}`
)

func bearer(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }

func TestRequestLimit(t *testing.T) {
	for _, api := range []API{ChatCompletions, Messages} {
		t.Run(api.String(), func(t *testing.T) {
			kind, body, resp := OpenAI, oaChatReq, oaChatResp
			if api == Messages {
				kind, body, resp = Anthropic, anMsgReq, anMsgResp
			}
			g := policyGW(t, kind, func(c *Config) {
				c.Limits = []Limit{{Name: "rpm", Scope: Scope{Key: "api_key"}, Window: time.Minute, Requests: 2}}
			})
			up := answer(200, resp)
			w, _ := do(t, g, api, body, bearer("k1"), up)
			if w.Code != 200 {
				t.Fatalf("first: %d %s", w.Code, w.Body)
			}
			h := w.Header()
			if h.Get("X-Ratelimit-Limit-Requests") != "2" || h.Get("X-Ratelimit-Remaining-Requests") != "1" {
				t.Errorf("first response headers: %v", h)
			}
			if w, _ := do(t, g, api, body, bearer("k1"), up); w.Code != 200 {
				t.Fatalf("second: %d", w.Code)
			}
			w, call := do(t, g, api, body, bearer("k1"), nil)
			if w.Code != http.StatusTooManyRequests {
				t.Fatalf("third: %d %s", w.Code, w.Body)
			}
			checkErrorSchema(t, api, w.Body.Bytes(), `rate limit "rpm" reached for requests`)
			h = w.Header()
			ra, _ := strconv.Atoi(h.Get("Retry-After"))
			ms, _ := strconv.Atoi(h.Get("Retry-After-Ms"))
			if ra < 29 || ra > 30 || ms < 29000 || ms > 30000 {
				t.Errorf("Retry-After %q, retry-after-ms %q: want about 30 s (one request refills in a minute/2)", h.Get("Retry-After"), h.Get("Retry-After-Ms"))
			}
			if h.Get("X-Ratelimit-Remaining-Requests") != "0" || h.Get("X-Ratelimit-Limit-Requests") != "2" || h.Get("X-Ratelimit-Reset-Requests") == "" {
				t.Errorf("429 headers: %v", h)
			}
			if call == nil || call.RequestModel == "" {
				t.Errorf("no Call for the refused request: %+v", call)
			}
			// Another key has its own counter.
			if w, _ := do(t, g, api, body, bearer("k2"), up); w.Code != 200 {
				t.Errorf("other key: %d", w.Code)
			}
		})
	}
}

// TestTokenLimitChargedAtEnd checks that tokens are charged from the
// response's usage when it ends, that admission only needs a positive
// balance (plus the prompt estimate), and that a request over the limit
// is answered in full, never cut.
func TestTokenLimitChargedAtEnd(t *testing.T) {
	g := policyGW(t, OpenAI, func(c *Config) {
		c.Limits = []Limit{{Name: "tpm", Window: time.Hour, Tokens: 50}}
	})
	// 30 tokens: admitted and charged.
	w, call := do(t, g, ChatCompletions, oaChatReq, nil, answer(200, oaChatResp))
	if w.Code != 200 || call.Usage.TotalTokens() != 30 {
		t.Fatalf("first: %d %+v", w.Code, call.Usage)
	}
	if got := w.Header().Get("X-Ratelimit-Remaining-Tokens"); got != "50" {
		t.Errorf("remaining tokens before the charge = %q, want 50", got)
	}
	// 20 left: admitted, and its 30 tokens take the bucket into debt.
	if w, _ := do(t, g, ChatCompletions, oaChatReq, nil, answer(200, oaChatResp)); w.Code != 200 {
		t.Fatalf("second: %d", w.Code)
	}
	w, _ = do(t, g, ChatCompletions, oaChatReq, nil, nil)
	if w.Code != 429 {
		t.Fatalf("third: %d", w.Code)
	}
	checkErrorSchema(t, ChatCompletions, w.Body.Bytes(), "for tokens")
	if w.Header().Get("X-Ratelimit-Remaining-Tokens") != "0" || w.Header().Get("X-Ratelimit-Limit-Tokens") != "50" {
		t.Errorf("headers: %v", w.Header())
	}
	// About 10 of 50 tokens are missing at 50 per hour: over 12 minutes.
	if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); ra < 600 || ra > 900 {
		t.Errorf("Retry-After = %d s", ra)
	}
}

// TestStreamNeverCut runs a stream whose usage is far over the limit: the
// client gets every event, the usage is charged when the stream ends, and
// only then are later requests refused.
func TestStreamNeverCut(t *testing.T) {
	srv := resptest.Start(t)
	for _, redis := range []*Redis{nil, {Addr: srv.Addr, Prefix: "never-cut"}} {
		t.Run(map[bool]string{true: "local", false: "redis"}[redis == nil], func(t *testing.T) {
			testStreamNeverCut(t, redis)
		})
	}
}

func testStreamNeverCut(t *testing.T, redis *Redis) {
	g := policyGW(t, Anthropic, func(c *Config) {
		c.Limits = []Limit{{Name: "tpm", Window: time.Hour, Tokens: 100}}
		c.Redis = redis
	})
	var events []string
	events = append(events, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
	for range 20 {
		events = append(events, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"word \"}}\n\n")
	}
	events = append(events, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":500}}\n\n",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")

	// While the stream runs, its usage is not charged: another request is
	// admitted. The upstream's body hands out events one per read, and
	// the second request is made from inside it.
	midway := make(chan int, 1)
	var reads atomic.Int32
	body := &funcReader{read: func(p []byte) (int, error) {
		i := int(reads.Add(1)) - 1
		if i == len(events)/2 {
			w, _ := do(t, g, Messages, anMsgReq, nil, answer(200, anMsgResp))
			midway <- w.Code
		}
		if i >= len(events) {
			return 0, io.EOF
		}
		return copy(p, events[i]), nil
	}}
	up := func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: body, ContentLength: -1}, nil
	}
	w, call := do(t, g, Messages, strings.Replace(anMsgReq, `"max_tokens"`, `"stream":true,"max_tokens"`, 1), nil, up)
	if w.Code != 200 {
		t.Fatalf("stream: %d", w.Code)
	}
	if got := <-midway; got != 200 {
		t.Errorf("request during the stream: %d, want 200 (the stream is charged at its end)", got)
	}
	if n := strings.Count(w.Body.String(), "text_delta"); n != 20 || !strings.Contains(w.Body.String(), "message_stop") {
		t.Errorf("the stream was cut: %d deltas\n%s", n, w.Body)
	}
	if call.Usage.OutputTokens != 500 {
		t.Errorf("usage %+v", call.Usage)
	}
	if w, _ := do(t, g, Messages, anMsgReq, nil, nil); w.Code != 429 {
		t.Errorf("after the stream: %d, want 429", w.Code)
	}
}

type funcReader struct{ read func([]byte) (int, error) }

func (r *funcReader) Read(p []byte) (int, error) { return r.read(p) }
func (r *funcReader) Close() error               { return nil }

func TestLimitScopes(t *testing.T) {
	g := policyGW(t, OpenAI, func(c *Config) {
		c.Limits = []Limit{
			{Name: "per-user", Scope: Scope{Key: "header:X-User", PerModel: true}, Window: time.Minute, Requests: 1},
			{Name: "gpt-only", Scope: Scope{Models: []string{"gpt-*"}, Key: "client_ip"}, Window: time.Minute, Requests: 3},
		}
	})
	up := answer(200, oaChatResp)
	req := func(model, user string) int {
		w, _ := do(t, g, ChatCompletions, `{"model":"`+model+`","messages":[]}`, http.Header{"X-User": {user}}, up)
		return w.Code
	}
	for _, tc := range []struct {
		model, user string
		want        int
	}{
		{"gpt-a", "u1", 200},
		{"gpt-a", "u1", 429}, // per user and model
		{"gpt-b", "u1", 200}, // another model
		{"gpt-a", "u2", 200}, // another user; the third gpt-* request of this client
		{"gpt-c", "u3", 429}, // gpt-only: 3 per client address
		{"llama", "u3", 200}, // gpt-only does not apply
	} {
		if got := req(tc.model, tc.user); got != tc.want {
			t.Errorf("%s as %s: %d, want %d", tc.model, tc.user, got, tc.want)
		}
	}
}

func TestBudgets(t *testing.T) {
	g := policyGW(t, OpenAI, func(c *Config) {
		c.Pricing = &Pricing{Models: map[string]Price{"gpt-*": {Input: 10, Output: 30}}}
		c.Budgets = []Budget{
			{Name: "daily-cost", Scope: Scope{Key: "api_key"}, Window: 24 * time.Hour, Cost: 0.001},
			{Name: "tokens", Scope: Scope{Key: "api_key"}, Window: time.Hour, Tokens: 1000},
		}
	})
	up := answer(200, oaChatResp) // 10 in, 20 out: (10×10 + 20×30)/1e6 = $0.0007
	w, call := do(t, g, ChatCompletions, oaChatReq, bearer("k"), up)
	if w.Code != 200 || !call.Priced || call.Cost < 0.000699 || call.Cost > 0.000701 {
		t.Fatalf("first: %d cost %v priced %v", w.Code, call.Cost, call.Priced)
	}
	if w, _ := do(t, g, ChatCompletions, oaChatReq, bearer("k"), up); w.Code != 200 {
		t.Fatalf("second (under budget when admitted): %d", w.Code)
	}
	w, _ = do(t, g, ChatCompletions, oaChatReq, bearer("k"), nil)
	if w.Code != 429 {
		t.Fatalf("third: %d", w.Code)
	}
	checkErrorSchema(t, ChatCompletions, w.Body.Bytes(), `budget "daily-cost" is exhausted`)
	now := time.Now().UTC()
	untilMidnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC).Sub(now)
	if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); float64(ra) < untilMidnight.Seconds()-5 || float64(ra) > untilMidnight.Seconds()+5 {
		t.Errorf("Retry-After %d s, want the window's end in %v", ra, untilMidnight)
	}
	if w.Header().Get("X-Ratelimit-Limit-Requests") != "" {
		t.Error("budgets are not rate limits: no x-ratelimit headers")
	}
	if w, _ := do(t, g, ChatCompletions, oaChatReq, bearer("other"), up); w.Code != 200 {
		t.Errorf("another key: %d", w.Code)
	}
}

func TestLimitsConfig(t *testing.T) {
	var cfg Config
	err := json.Unmarshal([]byte(`{
		"providers": [{"name": "p", "kind": "openai"}],
		"models": [{"name": "*", "provider": "p"}],
		"limits": [{"name": "tpm", "key": "api_key", "per_model": true, "window": "1m", "tokens": 1000, "requests": 10}],
		"budgets": [{"name": "day", "key": "header:X-Team", "window": "24h", "tokens": 100000}],
		"redis": {"addr": "127.0.0.1:6379", "timeout": "50ms", "fail_closed": true},
		"resilience": {"retries": 1, "max_retry_wait": "5s", "cooldown": {"failures": 3, "duration": "1m"}}
	}`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l := cfg.Limits[0]
	if l.Window != time.Minute || l.Key != "api_key" || !l.PerModel || cfg.Budgets[0].Window != 24*time.Hour ||
		cfg.Redis.Timeout != 50*time.Millisecond || cfg.Resilience.MaxRetryWait != 5*time.Second || cfg.Resilience.Cooldown.Duration != time.Minute {
		t.Errorf("decoded %+v %+v %+v %+v", l, cfg.Budgets[0], cfg.Redis, cfg.Resilience)
	}
	ok := Provider{Name: "p", Kind: OpenAI}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no window", Config{Limits: []Limit{{Name: "a", Requests: 1}}}, "window"},
		{"nothing limited", Config{Limits: []Limit{{Name: "a", Window: time.Minute}}}, "set requests, tokens"},
		{"bad key", Config{Limits: []Limit{{Name: "a", Window: time.Minute, Requests: 1, Scope: Scope{Key: "cookie"}}}}, "key"},
		{"duplicate", Config{Limits: []Limit{{Name: "a", Window: time.Minute, Requests: 1}}, Budgets: []Budget{{Name: "a", Window: time.Hour, Tokens: 1}}}, "already used"},
		{"cost without prices", Config{Budgets: []Budget{{Name: "b", Window: time.Hour, Cost: 1}}}, "pricing"},
		{"both measures", Config{Budgets: []Budget{{Name: "b", Window: time.Hour, Cost: 1, Tokens: 1}}}, "exactly one"},
		{"redis addr", Config{Redis: &Redis{Addr: "nohost"}}, "redis"},
		{"fallback", Config{Models: []Model{{Name: "m", Provider: "p", Fallbacks: []string{"nowhere"}}}}, "served by no model"},
		{"deployments and provider", Config{Models: []Model{{Name: "m", Provider: "p", Deployments: []Deployment{{Provider: "p"}}}}}, "deployments"},
		{"unknown deployment", Config{Models: []Model{{Name: "m", Deployments: []Deployment{{Provider: "q"}}}}}, "not a configured provider"},
		{"pii type", Config{PII: PII{Requests: true, Types: []string{"passport"}}}, "passport"},
		{"prompt mode", Config{Prompt: Prompt{Inject: []SystemPrompt{{Text: "x", Mode: "middle"}}}}, "mode"},
	} {
		tc.cfg.Providers = []Provider{ok}
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}

// formatReset writes what OpenAI's reset headers hold: Go's duration
// format at millisecond precision, "Nms" below a second.
func TestFormatReset(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {0, "0s"}, {time.Microsecond, "1ms"}, {120 * time.Millisecond, "120ms"},
		{time.Second, "1s"}, {1500 * time.Millisecond, "1.5s"}, {59 * time.Second, "59s"},
		{time.Minute, "1m0s"}, {6*time.Minute + 1234*time.Microsecond, "6m0.001s"}, {25 * time.Hour, "25h0m0s"},
	} {
		if got := formatReset(tt.d); got != tt.want {
			t.Errorf("formatReset(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
