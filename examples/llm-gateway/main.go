// Command llm-gateway is Portico as an LLM gateway: OpenAI Chat
// Completions, Responses and Embeddings and Anthropic Messages front doors
// on one listener, model routing to OpenAI, Anthropic, Gemini, Bedrock and
// Azure OpenAI providers, translation between their schemas (streams
// included) and usage accounting.
//
//	go run ./examples/llm-gateway                      # every model answered by the offline mock provider
//	OPENAI_API_KEY=… ANTHROPIC_API_KEY=… GEMINI_API_KEY=… go run ./examples/llm-gateway
//	go run ./examples/llm-gateway -config llm.yaml     # providers, models, limits and prices from a YAML (or JSON) file
//
// With no configuration every model is answered by a built-in offline
// mock provider, through the API of the provider its name suggests:
// claude-* and mock-claude by its Anthropic side, gemini-* and
// mock-gemini by its Gemini side, Bedrock model IDs (anthropic.*,
// amazon.*, meta.*, us.*, eu.* …) and mock-bedrock by its Bedrock side
// (signed with SigV4 by dummy credentials), anything else by its OpenAI
// side; so asking the OpenAI SDK for "claude-x" or the Anthropic SDK for
// "gemini-x" shows translation at work. With OPENAI_API_KEY,
// ANTHROPIC_API_KEY and/or GEMINI_API_KEY set it serves those providers
// instead: claude-* → Anthropic, gemini-* → Gemini, every other model →
// OpenAI (or the OpenAI-compatible server at OPENAI_BASE_URL, which
// includes /v1 as the OpenAI SDKs expect; ANTHROPIC_BASE_URL and
// GEMINI_BASE_URL exclude the version, as those SDKs expect). See
// docs/llm-gateway.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/llm"
	"github.com/porticoproxy/portico/llm/mock"
	"github.com/porticoproxy/portico/route"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, nil); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "llm-gateway:", err)
		os.Exit(1)
	}
}

// run serves the gateway until ctx is done. When ready is not nil it gets
// the gateway once it is listening.
func run(ctx context.Context, args []string, stdout io.Writer, ready chan<- *portico.Gateway) error {
	fs := flag.NewFlagSet("llm-gateway", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address of the HTTP listener")
	admin := fs.String("admin", "127.0.0.1:9901", "address of the admin API")
	configFile := fs.String("config", "", "YAML or JSON file of providers, models, limits and prices (see llm.example.yaml); default: from the environment, else the mock provider")
	mockDelay := fs.Duration("mock-delay", 25*time.Millisecond, "pause between the mock provider's streamed events")
	logCalls := fs.Bool("log-calls", true, "log one line per LLM call (provider, model, usage) to stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var cfg llm.Config
	source := ""
	switch {
	case *configFile != "":
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return err
		}
		// YAML is a superset of JSON: both come here as JSON, field
		// names as in llm.Config's json tags, unknown fields refused.
		if b, err = yaml.YAMLToJSON(b); err != nil {
			return fmt.Errorf("%s: %w", *configFile, err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return fmt.Errorf("%s: %w", *configFile, err)
		}
		source = *configFile
	default:
		cfg = fromEnv(os.Getenv)
		source = "the environment"
	}
	if len(cfg.Providers) == 0 {
		addr, stopMock, err := startMock(*mockDelay)
		if err != nil {
			return err
		}
		defer stopMock()
		cfg = mockConfig(addr)
		source = "the offline mock provider on " + addr
	}
	gl, err := llm.New(cfg)
	if err != nil {
		return err
	}
	defer gl.Close() // the Redis connections of shared limits, if any

	filters := []filter.Filter{gl}
	if *logCalls {
		log := slog.New(slog.NewTextHandler(stdout, nil))
		// Declared before the llm filter, so its done phase runs after
		// the llm filter's, when the usage is final.
		filters = append([]filter.Filter{filter.DoneFunc{FilterName: "log_calls", Func: func(ctx context.Context, x *filter.Exchange) {
			c := llm.CallOf(x)
			if c == nil {
				return
			}
			log.Info("llm call", "api", c.API.String(), "provider", c.Provider, "model", c.Model, "stream", c.Stream,
				"status", x.Status, "input_tokens", c.Usage.InputTokens, "output_tokens", c.Usage.OutputTokens,
				"cache_read_tokens", c.Usage.CacheReadTokens, "estimated", c.Usage.Estimated, "stop_reason", c.StopReason,
				"cost_usd", c.Cost, "fallbacks", c.Fallbacks,
				"duration", x.End.Sub(x.Start).Round(time.Millisecond))
		}}}, filters...)
	}
	gw, err := portico.New(portico.Config{
		Listeners: []listener.Config{{Name: "llm", Address: *listen, FilterChains: []listener.FilterChain{{
			Name: "llm",
			HTTP: &listener.HTTPConfig{StatPrefix: "llm", RouteConfig: "llm", Filters: filters},
		}}}},
		Routes: []route.Config{{Name: "llm", VirtualHosts: []route.VirtualHost{{
			Name: "llm", Domains: []string{"*"}, Rules: gl.Rules(),
		}}}},
		Clusters: gl.Clusters(),
	}, portico.Options{Admin: *admin})
	if err != nil {
		return err
	}
	gl.Bind(gw) // retries and fallbacks go through the gateway's clusters

	addr := gw.ListenerAddr("llm").String()
	if strings.HasPrefix(addr, "[::]") || strings.HasPrefix(addr, "0.0.0.0") {
		_, port, _ := net.SplitHostPort(addr)
		addr = "localhost:" + port
	}
	var names []string
	for _, p := range cfg.Providers {
		names = append(names, fmt.Sprintf("%s (%s)", p.Name, p.Kind))
	}
	fmt.Fprintf(stdout, `portico llm-gateway: listening on %s, admin on http://%s
providers from %s: %s
try:
  curl http://%[1]s/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
  curl -N http://%[1]s/v1/messages -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
    -d '{"model":"claude-sonnet-4-5","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Hello"}]}'
  curl -N http://%[1]s/v1/responses -H 'content-type: application/json' \
    -d '{"model":"gemini-2.5-flash","stream":true,"input":"Hello"}'
  OPENAI_BASE_URL=http://%[1]s/v1 ANTHROPIC_BASE_URL=http://%[1]s  (point the official SDKs here)
`, addr, gw.AdminAddr(), source, strings.Join(names, ", "))

	errc := make(chan error, 1)
	go func() { errc <- gw.Serve(ctx) }()
	if ready != nil {
		ready <- gw
	}
	return <-errc
}

// fromEnv configures the providers whose keys are in the environment:
// claude-* to Anthropic, gemini-* to Gemini, everything else to OpenAI or
// the OpenAI-compatible server at OPENAI_BASE_URL (which may need no
// key).
func fromEnv(getenv func(string) string) llm.Config {
	var cfg llm.Config
	if getenv("ANTHROPIC_API_KEY") != "" {
		cfg.Providers = append(cfg.Providers, llm.Provider{Name: "anthropic", Kind: llm.Anthropic,
			BaseURL: getenv("ANTHROPIC_BASE_URL"), APIKeyEnv: "ANTHROPIC_API_KEY"})
		cfg.Models = append(cfg.Models, llm.Model{Name: "claude-*", Provider: "anthropic"})
	}
	if getenv("GEMINI_API_KEY") != "" {
		cfg.Providers = append(cfg.Providers, llm.Provider{Name: "gemini", Kind: llm.Gemini,
			BaseURL: getenv("GEMINI_BASE_URL"), APIKeyEnv: "GEMINI_API_KEY"})
		cfg.Models = append(cfg.Models, llm.Model{Name: "gemini-*", Provider: "gemini"})
	}
	if getenv("OPENAI_API_KEY") != "" || getenv("OPENAI_BASE_URL") != "" {
		p := llm.Provider{Name: "openai", Kind: llm.OpenAI, BaseURL: getenv("OPENAI_BASE_URL")}
		if getenv("OPENAI_API_KEY") != "" {
			p.APIKeyEnv = "OPENAI_API_KEY"
		}
		cfg.Providers = append(cfg.Providers, p)
		cfg.Models = append(cfg.Models, llm.Model{Name: "*", Provider: "openai"})
	}
	return cfg
}

// mockConfig routes every model to the mock provider: claude-* through
// its Anthropic API, gemini-* through its Gemini API, Bedrock model IDs
// through its Bedrock API, everything else through its OpenAI API (whose
// Responses endpoint is used as is).
func mockConfig(addr string) llm.Config {
	cfg := llm.Config{
		Providers: []llm.Provider{
			{Name: "mock-openai", Kind: llm.OpenAI, BaseURL: "http://" + addr + "/v1", Responses: llm.ResponsesNative},
			{Name: "mock-anthropic", Kind: llm.Anthropic, BaseURL: "http://" + addr},
			{Name: "mock-gemini", Kind: llm.Gemini, BaseURL: "http://" + addr},
			// Dummy credentials: the requests are signed as for AWS, and
			// the mock does not check them.
			{Name: "mock-bedrock", Kind: llm.Bedrock, BaseURL: "http://" + addr, Region: "us-east-1",
				AWSCredentials: &llm.AWSCredentials{AccessKeyID: "AKIDMOCK", SecretAccessKey: "mock-secret"}},
		},
		Models: []llm.Model{
			{Name: "mock-gpt", Provider: "mock-openai"},
			{Name: "mock-claude", Provider: "mock-anthropic"},
			{Name: "mock-gemini", Provider: "mock-gemini"},
			{Name: "mock-bedrock", Provider: "mock-bedrock"},
			{Name: "claude-*", Provider: "mock-anthropic"},
			{Name: "gemini-*", Provider: "mock-gemini"},
		},
	}
	for _, prefix := range []string{"anthropic.", "amazon.", "meta.", "mistral.", "us.", "eu.", "apac.", "global."} {
		cfg.Models = append(cfg.Models, llm.Model{Name: prefix + "*", Provider: "mock-bedrock"})
	}
	cfg.Models = append(cfg.Models, llm.Model{Name: "*", Provider: "mock-openai"})
	return cfg
}

// startMock serves the offline mock provider on a loopback port.
func startMock(delay time.Duration) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("mock provider: %w", err)
	}
	srv := &http.Server{Handler: &mock.Server{Delay: delay}, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}
