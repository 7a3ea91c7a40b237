// Package llm turns a Portico HTTP listener into an LLM gateway, as a
// filter on the ordinary chain.
//
// # Front doors
//
// Clients call the APIs their official SDKs speak, unchanged (see API):
// OpenAI Chat Completions (POST /v1/chat/completions), Responses (POST
// /v1/responses) and Embeddings (POST /v1/embeddings), Anthropic Messages
// (POST /v1/messages and /v1/messages/count_tokens), and GET /v1/models
// and /v1/models/{model}.
// Gateway.Rules returns the route rules for them; each rule names its API
// in the llm filter's per-route configuration, and the filter does
// nothing on routes without one.
//
// count_tokens is exact where the backend can count: Anthropic counts the
// request as it is, Gemini (models/{model}:countTokens) and Bedrock (the
// CountTokens operation) count it translated as the same Messages request
// would be. OpenAI-compatible servers and Azure have no counting API for
// chat, so the gateway estimates; it estimates too when a Gemini or
// Bedrock count cannot be had (no response, 5xx, a Bedrock model without
// a counter, a request that does not translate), and an estimate's
// response details are "llm_count_tokens_estimate".
//
// # Routing and providers
//
// The request body's "model" picks a provider through the model table
// (Config.Models): exact names and aliases first, then the longest
// matching "prefix*" pattern; an entry may rename the model upstream. A
// provider (Provider) is an ordinary Portico cluster (Gateway.Clusters
// makes one per provider from its base URL) plus its authentication and
// URL shaping: OpenAI or any OpenAI-compatible server with a Bearer key;
// Anthropic with x-api-key and anthropic-version; Google Gemini
// (generateContent, streamGenerateContent) with x-goog-api-key; Amazon
// Bedrock Converse signed with AWS SigV4 (SigV4, as cluster middleware
// that Gateway.Clusters installs) or a Bedrock API key; Azure OpenAI
// deployment URLs with api-key or an Entra ID token. The filter sets the
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
// filter translates, every front door to every provider: OpenAI Chat ⇄
// Anthropic Messages in both directions, both to Gemini and Bedrock
// (through Anthropic Messages as the normalised form), and Responses over
// Chat Completions to any of them — requests (system and developer
// messages, images, tool definitions and choice, tool calls and results,
// thinking blocks with their signatures, Gemini's thought signatures),
// responses, errors (into the client's error schema and status) and
// streams, Bedrock's binary event streams included. Streams are
// translated event by event as they arrive — text and
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
// # Policies
//
// Limits are token buckets of requests and tokens per window, per API key,
// header, client address or any identity (Scope), per model and per
// route; Budgets cap tokens or cost per fixed window. Admission checks
// what is already charged (and the prompt's estimate); tokens are charged
// from the Usage when the response ends, so an admitted stream is never
// cut. Over a limit the client gets 429 in its own schema with
// Retry-After and OpenAI's x-ratelimit-* headers. Counters live in the
// process or, with Config.Redis, in Redis, where Lua scripts check and
// charge atomically so that replicas share them.
//
// A model may split its traffic across weighted Deployments; failed
// attempts (429, 5xx, timeouts, context-length errors …) are retried,
// honouring Retry-After, then sent to the other deployments and the
// model's Fallbacks, translated when they speak another schema
// (Resilience, and Gateway.Bind for the clusters). Deployments that keep
// failing cool down (a github.com/sony/gobreaker/v2 state machine each).
//
// A pricing table (Pricing) gives every call its Cost, for budgets,
// metrics and access logs (AccessLogOperators). Telemetry records the
// OpenTelemetry GenAI metrics and spans and sets the x-portico-overhead-ms
// header. Prompt injects system prompts and fills prompt templates; PII
// redacts e-mails, phone, card and IBAN numbers and SSNs in requests and
// responses, streams included.
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
