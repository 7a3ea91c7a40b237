package llm_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/llm"
	"github.com/porticoproxy/portico/route"
)

// fakeProvider is a loopback provider whose answers a test scripts per
// request, and which records what it got.
type fakeProvider struct {
	srv    *httptest.Server
	n      atomic.Int64
	handle func(n int64, w http.ResponseWriter, r *http.Request, body []byte)

	mu    sync.Mutex
	reqs  []recorded
	times []time.Time
}

func newFakeProvider(t *testing.T, handle func(n int64, w http.ResponseWriter, r *http.Request, body []byte)) *fakeProvider {
	t.Helper()
	f := &fakeProvider{handle: handle}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := f.n.Add(1)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{path: r.URL.Path, header: r.Header.Clone(), body: body})
		f.times = append(f.times, time.Now())
		f.mu.Unlock()
		f.handle(n, w, r, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeProvider) count() int64 { return f.n.Load() }

func (f *fakeProvider) request(t *testing.T, i int) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.reqs) {
		t.Fatalf("the provider got %d requests, not %d", len(f.reqs), i+1)
	}
	return f.reqs[i]
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, body string, header ...string) {
	for i := 0; i+1 < len(header); i += 2 {
		w.Header().Set(header[i], header[i+1])
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

const chatCompletion = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-x-2025","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}`

// policyGateway serves a Portico gateway with the llm filter for cfg
// (after filters declared before it), bound to the gateway's clusters for
// retries and fallbacks.
func policyGateway(t *testing.T, cfg llm.Config, before ...filter.Filter) (string, *llm.Gateway) {
	t.Helper()
	if cfg.Getenv == nil {
		cfg.Getenv = func(k string) string {
			if k == "SCRIPTED_KEY" {
				return upstreamKey
			}
			return ""
		}
	}
	g, err := llm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	gw, err := portico.New(portico.Config{
		Listeners: []listener.Config{{Name: "llm", Address: "127.0.0.1:0", FilterChains: []listener.FilterChain{{
			HTTP: &listener.HTTPConfig{StatPrefix: "llm", RouteConfig: "llm", Filters: append(before, g)},
		}}}},
		Routes: []route.Config{{Name: "llm", VirtualHosts: []route.VirtualHost{{
			Name: "llm", Domains: []string{"*"}, Rules: g.Rules(),
		}}}},
		Clusters: g.Clusters(),
	}, portico.Options{Admin: "-"})
	if err != nil {
		t.Fatal(err)
	}
	g.Bind(gw)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + gw.ListenerAddr("llm").String(), g
}

// openAIProvider and anthropicProvider describe a fake provider.
func openAIProvider(name string, f *fakeProvider) llm.Provider {
	return llm.Provider{Name: name, Kind: llm.OpenAI, BaseURL: f.srv.URL + "/v1", APIKeyEnv: "SCRIPTED_KEY"}
}

func anthropicProvider(name string, f *fakeProvider) llm.Provider {
	return llm.Provider{Name: name, Kind: llm.Anthropic, BaseURL: f.srv.URL, APIKeyEnv: "SCRIPTED_KEY"}
}
