// Package llm turns a Portico HTTP listener into an LLM gateway, as a
// filter on the ordinary chain.
//
// # Front doors
//
// Clients call the APIs their official SDKs speak, unchanged (see API):
// OpenAI Chat Completions (POST /v1/chat/completions), Anthropic Messages
// (POST /v1/messages and /v1/messages/count_tokens) and GET /v1/models.
// Gateway.Rules returns the route rules for them; each rule names its API
// in the llm filter's per-route configuration, and the filter does
// nothing on routes without one.
//
// # Routing and providers
//
// The request body's "model" picks a provider through the model table
// (Config.Models): exact names and aliases first, then the longest
// matching "prefix*" pattern; an entry may rename the model upstream. A
// provider (Provider) is an ordinary Portico cluster (Gateway.Clusters
// makes one per provider from its base URL) plus its authentication and
// URL shaping: OpenAI or any OpenAI-compatible server with a Bearer key,
// or Anthropic with x-api-key and anthropic-version. The filter sets the
// exchange's cluster, path and Host, removes every credential the client
// sent and adds the provider's; the key never reaches clients, logs or
// errors (Secret). The choice is visible to later filters (CallOf) and to
// clients in the x-portico-provider and x-portico-model response
// headers.
//
// # Translation
//
// When the provider speaks the client's schema the request passes through
// byte for byte but for the model name (and, for OpenAI streams,
// stream_options.include_usage), and the response unchanged but for the
// usage chunk the gateway asked for on the client's behalf. Otherwise the
// filter translates OpenAI Chat ⇄ Anthropic Messages in both directions:
// requests (system and developer messages, images, tool definitions and
// choice, tool calls and results, thinking blocks with their signatures),
// responses, errors (into the client's error schema and status) and
// streams. Streams are translated event by event as they arrive — text and
// tool-argument deltas are never held back — with the first OpenAI chunk
// carrying role "assistant", tool-call indices counted per call so that
// parallel calls never collide, Anthropic content blocks that never
// overlap, and an upstream error mid-stream delivered as Anthropic's
// "event: error" or OpenAI's {"error":…} chunk.
//
// Thinking travels as Anthropic thinking blocks on one side and, on the
// OpenAI side, as reasoning_content plus thinking_blocks carrying the
// signatures (LiteLLM's convention), so a conversation that goes through
// an OpenAI client keeps its signed thinking for the next Anthropic turn.
// Chat Completions servers cannot take thinking back, so it is dropped on
// the way to them.
//
// # Usage
//
// Every exchange gets one normalised Usage (see its convention on cached
// tokens), from the response or as the stream reports it: Anthropic's
// cumulative message_delta usage is set, never added; OpenAI streams get
// stream_options.include_usage injected upstream. A stream cut short is
// charged for what was seen, estimated where the provider never said
// (Usage.Estimated). Filters declared before the llm filter read it with
// CallOf in their done phase, where it is final.
//
// # Use
//
//	g, err := llm.New(llm.Config{
//		Providers: []llm.Provider{
//			{Name: "openai", Kind: llm.OpenAI, APIKeyEnv: "OPENAI_API_KEY"},
//			{Name: "anthropic", Kind: llm.Anthropic, APIKeyEnv: "ANTHROPIC_API_KEY"},
//		},
//		Models: []llm.Model{
//			{Name: "claude-*", Provider: "anthropic"},
//			{Name: "*", Provider: "openai"},
//		},
//	})
//	if err != nil {
//		return err
//	}
//	gw, err := portico.New(portico.Config{
//		Listeners: []listener.Config{{Name: "llm", Address: ":8080", FilterChains: []listener.FilterChain{{
//			HTTP: &listener.HTTPConfig{RouteConfig: "llm", Filters: []filter.Filter{g}},
//		}}}},
//		Routes: []route.Config{{Name: "llm", VirtualHosts: []route.VirtualHost{{
//			Name: "llm", Domains: []string{"*"}, Rules: g.Rules(),
//		}}}},
//		Clusters: g.Clusters(),
//	}, portico.Options{})
//
// Package llm/mock is an offline provider for demos and tests.
package llm
