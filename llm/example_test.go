package llm_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/llm"
	"github.com/porticoproxy/portico/llm/mock"
	"github.com/porticoproxy/portico/route"
)

// An OpenAI client asks for a Claude model: the gateway routes it to an
// Anthropic provider (here the offline mock), translates the request and
// the answer, and accounts the usage.
func Example() {
	provider := httptest.NewServer(&mock.Server{})
	defer provider.Close()

	g, err := llm.New(llm.Config{
		Providers: []llm.Provider{{Name: "anthropic", Kind: llm.Anthropic, BaseURL: provider.URL}},
		Models:    []llm.Model{{Name: "claude-*", Provider: "anthropic"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	usage := make(chan llm.Usage, 1)
	account := filter.DoneFunc{FilterName: "account", Func: func(ctx context.Context, x *filter.Exchange) {
		if c := llm.CallOf(x); c != nil {
			usage <- c.Usage // final here: this filter's done phase runs after llm's
		}
	}}
	gw, err := portico.New(portico.Config{
		Listeners: []listener.Config{{Name: "llm", Address: "127.0.0.1:0", FilterChains: []listener.FilterChain{{
			HTTP: &listener.HTTPConfig{RouteConfig: "llm", Filters: []filter.Filter{account, g}},
		}}}},
		Routes: []route.Config{{Name: "llm", VirtualHosts: []route.VirtualHost{{
			Name: "llm", Domains: []string{"*"}, Rules: g.Rules(),
		}}}},
		Clusters: g.Clusters(),
	}, portico.Options{Admin: "-"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gw.Serve(ctx)

	resp, err := http.Post("http://"+gw.ListenerAddr("llm").String()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hi"}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Header.Get("X-Portico-Provider"), strings.Contains(string(body), `"object":"chat.completion"`))
	u := <-usage
	fmt.Println(u.InputTokens > 0, u.OutputTokens)
	// Output:
	// anthropic true
	// true 9
}
