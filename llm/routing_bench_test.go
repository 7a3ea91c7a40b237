package llm

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/resp/resptest"
)

// fullChainGW is the llm filter with every per-request policy of a
// production deployment on: a weighted split across two deployments with
// cooldown, request and token limits and a cost budget per API key,
// pricing, GenAI metrics into the OpenTelemetry SDK, and the overhead
// header.
func fullChainGW(b *testing.B, redis *Redis) *Gateway {
	b.Helper()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { mp.Shutdown(context.Background()) })
	g, err := New(Config{
		Providers: []Provider{
			{Name: "a", Kind: OpenAI, BaseURL: baseFor(OpenAI), APIKey: testKey},
			{Name: "b", Kind: OpenAI, BaseURL: baseFor(OpenAI), APIKey: testKey},
		},
		Models:    []Model{{Name: "gpt-*", Deployments: []Deployment{{Provider: "a", Weight: 3}, {Provider: "b", Weight: 1}}}},
		Limits:    []Limit{{Name: "per-key", Scope: Scope{Key: "api_key"}, Window: time.Minute, Requests: 1 << 40, Tokens: 1 << 50}},
		Budgets:   []Budget{{Name: "daily", Scope: Scope{Key: "api_key"}, Window: 24 * time.Hour, Cost: 1e9}},
		Redis:     redis,
		Pricing:   &Pricing{Models: map[string]Price{"gpt-*": {Input: 2.5, Output: 10}}},
		Telemetry: Telemetry{MeterProvider: mp},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	return g
}

func benchChain(b *testing.B, g *Gateway) {
	chain, _ := filter.NewChain(g.FrontDoor(ChatCompletions))
	reqBody := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}],"max_tokens":64}`)
	respBody := []byte(oaChatResp)
	up := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		io.Copy(io.Discard, x.Out.Body)
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewReader(respBody)), ContentLength: int64(len(respBody))}, nil
	})
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(reqBody))
		r.Header.Set("Authorization", "Bearer sk-client-key")
		w := httptest.NewRecorder()
		chain.Serve(w, filter.NewExchange(r), up)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkChatFullChain is a non-streaming chat completion through the
// full llm chain (routing, usage, local limits and budget, cost,
// metrics); compare with BenchmarkChatPassThrough, the bare filter.
func BenchmarkChatFullChain(b *testing.B) {
	benchChain(b, fullChainGW(b, nil))
}

// BenchmarkChatFullChainRedis is BenchmarkChatFullChain with the limits
// and the budget in a local redis-server: two round trips per request
// (admission, charge).
func BenchmarkChatFullChainRedis(b *testing.B) {
	srv := resptest.Start(b)
	benchChain(b, fullChainGW(b, &Redis{Addr: srv.Addr}))
}
