package llm_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/porticoproxy/portico/llm"
	"github.com/porticoproxy/portico/llm/internal/resp/resptest"
)

var loadClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 20 * time.Second}

func post(t *testing.T, url, key, body string) (int, http.Header, []byte) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := loadClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestSharedLimitsTwoGateways runs two gateways on one Redis under
// concurrent load. Every request uses 30 tokens. The token limit must
// hold across both: the tokens of the admitted requests stay within the
// limit plus the documented in-flight slack (the requests admitted while
// the bucket still had tokens, at most one per concurrent client), and
// the request limit, charged at admission, is exact.
func TestSharedLimitsTwoGateways(t *testing.T) {
	redis := resptest.Start(t)
	up := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
		time.Sleep(2 * time.Millisecond) // some requests in flight at once
		writeJSON(w, 200, chatCompletion)
	})
	const (
		perRequest = 30
		tokenLimit = 3000
		clients    = 16 // per gateway
	)
	cfg := func(prefix string, limits ...llm.Limit) llm.Config {
		return llm.Config{
			Providers: []llm.Provider{openAIProvider("p", up)},
			Models:    []llm.Model{{Name: "*", Provider: "p"}},
			Limits:    limits,
			Redis:     &llm.Redis{Addr: redis.Addr, Prefix: prefix, Timeout: 2 * time.Second},
		}
	}
	body := `{"model":"gpt-x","messages":[{"role":"user","content":"Hello"}]}`

	t.Run("tokens", func(t *testing.T) {
		limit := llm.Limit{Name: "tph", Scope: llm.Scope{Key: "api_key"}, Window: time.Hour, Tokens: tokenLimit}
		base1, _ := policyGateway(t, cfg("tokens", limit))
		base2, _ := policyGateway(t, cfg("tokens", limit))
		var admitted, refused atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for _, base := range []string{base1, base2} {
			for range clients {
				wg.Go(func() {
					for refusals := 0; refusals < 3; {
						status, h, b := post(t, base+"/v1/chat/completions", "team-a", body)
						switch status {
						case 200:
							admitted.Add(1)
						case 429:
							refused.Add(1)
							refusals++
							if h.Get("Retry-After") == "" || h.Get("X-Ratelimit-Remaining-Tokens") != "0" || h.Get("X-Ratelimit-Limit-Tokens") != "3000" {
								t.Errorf("429 headers: %v", h)
							}
							var e struct{ Error struct{ Type, Code string } }
							if json.Unmarshal(b, &e) != nil || e.Error.Type != "rate_limit_error" {
								t.Errorf("429 body: %s", b)
							}
						default:
							t.Errorf("status %d: %s", status, b)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		// Refill during the test: 3000 per hour.
		refill := float64(tokenLimit) * time.Since(start).Hours()
		tokens := admitted.Load() * perRequest
		slack := int64(2*clients*perRequest) + int64(refill) + perRequest
		t.Logf("admitted %d requests (%d tokens), refused %d; limit %d, slack %d", admitted.Load(), tokens, refused.Load(), tokenLimit, slack)
		if tokens > tokenLimit+slack {
			t.Errorf("admitted %d tokens across two gateways, over the limit %d plus the in-flight slack %d", tokens, tokenLimit, slack)
		}
		if tokens < tokenLimit-perRequest {
			t.Errorf("admitted only %d tokens of %d: the gateways refused too early", tokens, tokenLimit)
		}
		// Another key has its own bucket.
		if status, _, _ := post(t, base1+"/v1/chat/completions", "team-b", body); status != 200 {
			t.Errorf("team-b: %d", status)
		}
	})

	t.Run("budget", func(t *testing.T) {
		budget := []llm.Budget{{Name: "day", Scope: llm.Scope{Key: "api_key"}, Window: 24 * time.Hour, Tokens: tokenLimit}}
		mk := func() string {
			c := cfg("budget")
			c.Budgets = budget
			base, _ := policyGateway(t, c)
			return base
		}
		bases := []string{mk(), mk()}
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for _, base := range bases {
			for range clients {
				wg.Go(func() {
					for {
						status, h, b := post(t, base+"/v1/chat/completions", "team-a", body)
						if status == 429 {
							if !strings.Contains(string(b), `budget \"day\" is exhausted`) || h.Get("Retry-After") == "" {
								t.Errorf("429: %v %s", h, b)
							}
							return
						}
						if status != 200 {
							t.Errorf("status %d: %s", status, b)
							return
						}
						admitted.Add(1)
					}
				})
			}
		}
		wg.Wait()
		// Admitted while the window's usage was under the budget: the last
		// admissions, at most one per client, may take it over.
		tokens := admitted.Load() * perRequest
		t.Logf("budget: admitted %d requests (%d tokens) of %d", admitted.Load(), tokens, tokenLimit)
		if tokens < tokenLimit || tokens > tokenLimit+2*clients*perRequest {
			t.Errorf("admitted %d tokens against a budget of %d (in-flight slack %d)", tokens, tokenLimit, 2*clients*perRequest)
		}
	})

	t.Run("requests", func(t *testing.T) {
		limit := llm.Limit{Name: "rph", Window: time.Hour, Requests: 50}
		base1, _ := policyGateway(t, cfg("requests", limit))
		base2, _ := policyGateway(t, cfg("requests", limit))
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for i := range 100 {
			base := base1
			if i%2 == 1 {
				base = base2
			}
			wg.Go(func() {
				if status, _, _ := post(t, base+"/v1/chat/completions", "k", body); status == 200 {
					admitted.Add(1)
				}
			})
		}
		wg.Wait()
		// 50 per hour refill one per 72 s: none during the test.
		if got := admitted.Load(); got != 50 {
			t.Errorf("admitted %d of 100 concurrent requests, want exactly 50", got)
		}
	})
}

// TestRedisFailureModes stops Redis under two gateways: the fail-open one
// keeps admitting, the fail-closed one refuses with 503 in the client's
// schema; both count the failure.
func TestRedisFailureModes(t *testing.T) {
	redis := resptest.Start(t)
	up := newFakeProvider(t, func(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
		if n == 3 {
			redis.Stop() // after this request's admission, before its charge
		}
		writeJSON(w, 200, chatCompletion)
	})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	mk := func(failClosed bool) string {
		base, _ := policyGateway(t, llm.Config{
			Providers: []llm.Provider{openAIProvider("p", up)},
			Models:    []llm.Model{{Name: "*", Provider: "p"}},
			Limits:    []llm.Limit{{Name: "rpm", Window: time.Minute, Requests: 1000, Tokens: 100000}},
			Redis:     &llm.Redis{Addr: redis.Addr, Prefix: "modes", Timeout: 200 * time.Millisecond, FailClosed: failClosed},
			Telemetry: llm.Telemetry{MeterProvider: mp},
		})
		return base
	}
	open, closed := mk(false), mk(true)
	body := `{"model":"gpt-x","messages":[{"role":"user","content":"Hello"}]}`
	for _, base := range []string{open, closed} {
		if status, _, b := post(t, base+"/v1/chat/completions", "k", body); status != 200 {
			t.Fatalf("with Redis up: %d %s", status, b)
		}
	}
	// Redis stops while the third request is upstream: its usage cannot
	// be charged, and is dropped.
	if status, _, b := post(t, open+"/v1/chat/completions", "k", body); status != 200 {
		t.Fatalf("Redis stopping during the request: %d %s", status, b)
	}
	if status, _, b := post(t, open+"/v1/chat/completions", "k", body); status != 200 {
		t.Errorf("fail open: %d %s", status, b)
	}
	status, _, b := post(t, closed+"/v1/chat/completions", "k", body)
	var e struct {
		Error struct{ Message, Type string }
	}
	if status != http.StatusServiceUnavailable || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Error.Message, "rate limit service is unavailable") {
		t.Errorf("fail closed: %d %s", status, b)
	}
	outcomes := decisionCounts(t, reader)
	if outcomes["store_error_admitted"] != 1 || outcomes["store_error_refused"] != 1 || outcomes["admitted"] != 3 || outcomes["charge_dropped"] != 1 {
		t.Errorf("decisions %v", outcomes)
	}
}

// decisionCounts reads portico.llm.limit.decisions by outcome.
func decisionCounts(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "portico.llm.limit.decisions" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := dp.Attributes.Value("outcome")
				out[v.AsString()] += dp.Value
			}
		}
	}
	return out
}
