package llm

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/accesslog"
)

func TestPricing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prices.json")
	os.WriteFile(path, []byte(`{"models": {
		"gpt-4o":                {"input": 2.5, "output": 10, "cache_read": 1.25},
		"azure/gpt-4o":          {"input": 2.75, "output": 11},
		"claude-sonnet-4-5":     {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75},
		"claude-*":              {"input": 1, "output": 5},
		"claude-haiku-*":        {"input": 0.8, "output": 4}
	}}`), 0o600)
	p, err := LoadPricing(path)
	if err != nil {
		t.Fatal(err)
	}
	p = p.compile()
	u := Usage{InputTokens: 1_000_000, OutputTokens: 100_000, CacheReadTokens: 400_000, CacheWriteTokens: 100_000}
	for _, tc := range []struct {
		provider, model string
		want            float64
		priced          bool
	}{
		// 500k plain × 2.5 + 400k × 1.25 + 100k writes at the input price × 2.5 + 100k × 10
		{"openai", "gpt-4o", (500_000*2.5 + 400_000*1.25 + 100_000*2.5 + 100_000*10) / 1e6, true},
		{"azure", "gpt-4o", (1_000_000*2.75 + 100_000*11) / 1e6, true},
		{"anthropic", "claude-sonnet-4-5", (500_000*3 + 400_000*0.3 + 100_000*3.75 + 100_000*15) / 1e6, true},
		{"anthropic", "claude-haiku-4-5", (1_000_000*0.8 + 100_000*4) / 1e6, true}, // longest prefix
		{"anthropic", "claude-opus-4", (1_000_000*1 + 100_000*5) / 1e6, true},
		{"openai", "gpt-5", 0, false},
	} {
		got, ok := p.Cost(&Call{Provider: tc.provider, Model: tc.model, Usage: u})
		if ok != tc.priced || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s/%s: %v %v, want %v %v", tc.provider, tc.model, got, ok, tc.want, tc.priced)
		}
	}
	// The response or requested model when the upstream name has no price.
	if got, ok := p.Cost(&Call{Model: "deployment-1", ResponseModel: "gpt-4o", Usage: Usage{OutputTokens: 1e6}}); !ok || got != 10 {
		t.Errorf("by response model: %v %v", got, ok)
	}
	for _, bad := range []string{`{"models":{"m":{"input":1,"ouput":2}}}`, `{"models":{"m":{"input":-1}}}`, `{"models":{}}`, `{"models":{"a*b":{}}}`} {
		if _, err := ParsePricing([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestAccessLogOperators logs a call's provider, tokens and cost through
// filter/accesslog's custom operators.
func TestAccessLogOperators(t *testing.T) {
	g := policyGW(t, OpenAI, func(c *Config) {
		c.Pricing = &Pricing{Models: map[string]Price{"gpt-x": {Input: 10, Output: 30}}}
	})
	var out bytes.Buffer
	for _, tc := range []struct {
		format string
		json   map[string]string
		want   string
	}{
		{format: "%LLM_PROVIDER% %LLM_REQUEST_MODEL% %LLM_RESPONSE_MODEL% %LLM_INPUT_TOKENS% %LLM_OUTPUT_TOKENS% %LLM_COST% %LLM_TTFT% %LLM_FALLBACKS%",
			want: "up gpt-x gpt-x-2025 10 20 0.0007 - 0\n"},
		{json: map[string]string{"cost": "%LLM_COST%", "out": "%LLM_OUTPUT_TOKENS%", "model": "%LLM_MODEL%"},
			want: `{"cost":0.0007,"model":"gpt-x","out":20}` + "\n"},
	} {
		out.Reset()
		l, err := accesslog.New(accesslog.Config{Format: tc.format, JSON: tc.json, Output: &out, Operators: AccessLogOperators()})
		if err != nil {
			t.Fatal(err)
		}
		chain, _ := filter.NewChain(l, g.FrontDoor(ChatCompletions))
		r := httptest.NewRequest(http.MethodPost, pathFor(ChatCompletions), strings.NewReader(oaChatReq))
		chain.Serve(httptest.NewRecorder(), filter.NewExchange(r), answer(200, oaChatResp))
		l.Close()
		if out.String() != tc.want {
			t.Errorf("logged %q, want %q", out.String(), tc.want)
		}
	}
	if _, err := accesslog.New(accesslog.Config{Format: "%LLM_COST(x)%", Output: &out, Operators: AccessLogOperators()}); err == nil || !strings.Contains(err.Error(), "argument") {
		t.Errorf("argument to a custom operator: %v", err)
	}
}

func TestPricingExampleFile(t *testing.T) {
	p, err := LoadPricing("../examples/llm-gateway/prices.example.json")
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.compile().Cost(&Call{Provider: "anthropic", Model: "claude-sonnet-4-5-20250929", Usage: Usage{InputTokens: 1e6}}); !ok || c != 3 {
		t.Errorf("cost %v %v", c, ok)
	}
}
