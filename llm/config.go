package llm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Kind is the wire schema and authentication a provider speaks.
type Kind string

const (
	// OpenAI is the OpenAI Chat Completions API with Bearer authentication:
	// api.openai.com or any OpenAI-compatible server (vLLM, Ollama, Mistral,
	// Groq, DeepSeek …). Its BaseURL includes the version path, as the
	// OpenAI SDKs' base URL does: "https://api.openai.com/v1".
	OpenAI Kind = "openai"
	// Anthropic is the Anthropic Messages API with x-api-key and
	// anthropic-version headers. Its BaseURL excludes the version path, as
	// the Anthropic SDKs' base URL does: "https://api.anthropic.com".
	Anthropic Kind = "anthropic"
	// Gemini is the Google Gemini API (generativelanguage.googleapis.com:
	// generateContent and streamGenerateContent) with the x-goog-api-key
	// header. Its BaseURL excludes the version path, which APIVersion
	// sets: "https://generativelanguage.googleapis.com".
	Gemini Kind = "gemini"
	// Bedrock is the Amazon Bedrock Converse API (converse and
	// converse-stream), signed with AWS SigV4 (see Provider.Region and
	// Provider.AWSCredentials) or, with an API key, a Bedrock API key as a
	// Bearer token. Its BaseURL defaults to the runtime endpoint of the
	// region: "https://bedrock-runtime.{region}.amazonaws.com".
	Bedrock Kind = "bedrock"
	// AzureOpenAI is the Azure OpenAI Chat Completions API: deployment
	// URLs (/openai/deployments/{deployment}/chat/completions) with an
	// api-version, and the api-key header or, with Provider.Bearer, a
	// Microsoft Entra ID token. Its BaseURL is the resource's endpoint,
	// "https://{resource}.openai.azure.com", and is required. The model a
	// request is routed to (Model.UpstreamModel) is the deployment name.
	AzureOpenAI Kind = "azure_openai"
)

// Default base URLs of the provider kinds.
const (
	DefaultOpenAIBaseURL    = "https://api.openai.com/v1"
	DefaultAnthropicBaseURL = "https://api.anthropic.com"
	DefaultGeminiBaseURL    = "https://generativelanguage.googleapis.com"
)

// Default API versions.
const (
	// DefaultGeminiAPIVersion is the version path of Gemini providers
	// whose APIVersion is empty.
	DefaultGeminiAPIVersion = "v1beta"
	// DefaultAzureAPIVersion is the api-version of Azure OpenAI providers
	// whose APIVersion is empty: the latest generally available one.
	DefaultAzureAPIVersion = "2024-10-21"
)

// DefaultAnthropicVersion is the anthropic-version header sent to Anthropic
// providers when the client sent none (or spoke another schema).
const DefaultAnthropicVersion = "2023-06-01"

// Defaults of Config fields.
const (
	// DefaultMaxTokens is the max_tokens sent to Anthropic when an OpenAI
	// client set no limit: Anthropic requires one.
	DefaultMaxTokens = 4096
	// DefaultRouteTimeout is the route timeout of the rules Gateway.Rules
	// returns: long enough for slow generations and long streams (Envoy's
	// 15 s default would cut them).
	DefaultRouteTimeout = 10 * time.Minute
	// DefaultMaxRequestBytes is the buffer limit of the rules Gateway.Rules
	// returns: requests with images are large.
	DefaultMaxRequestBytes = 32 << 20
)

// Config configures a Gateway. It is plain data; New validates it and
// copies what it needs, so the caller may reuse it afterwards.
type Config struct {
	// Providers are the upstream LLM APIs. Names must be unique.
	Providers []Provider `json:"providers"`
	// Models route the request body's "model" to a provider. A request
	// whose model matches no entry is answered 404 in the client's error
	// schema.
	Models []Model `json:"models"`
	// DefaultMaxTokens is the max_tokens sent to Anthropic providers for
	// OpenAI clients that set none; zero means DefaultMaxTokens.
	DefaultMaxTokens int64 `json:"default_max_tokens,omitempty"`
	// RouteTimeout is the timeout of the rules returned by Rules; zero
	// means DefaultRouteTimeout, negative disables it.
	RouteTimeout time.Duration `json:"-"`
	// MaxRequestBytes is the buffer limit of the rules returned by Rules
	// (request bodies, and non-streamed responses that are translated);
	// zero means DefaultMaxRequestBytes.
	MaxRequestBytes int64 `json:"max_request_bytes,omitempty"`
	// Getenv reads the environment for Provider.APIKeyEnv; nil means
	// os.Getenv. Tests inject their own.
	Getenv func(string) string `json:"-"`

	// Policies (limits.go, budget.go, pricing.go, fallback.go,
	// telemetry.go, prompt.go, pii.go).

	// Limits are token and request rate limits per key, model and route.
	Limits []Limit `json:"limits,omitempty"`
	// Budgets cap tokens or cost per fixed window, per key, model and
	// route.
	Budgets []Budget `json:"budgets,omitempty"`
	// Redis, when set, keeps the counters of Limits and Budgets in Redis,
	// shared by every gateway replica using it; nil keeps them in the
	// process.
	Redis *Redis `json:"redis,omitempty"`
	// Pricing prices models for Call.Cost, cost budgets, access logs and
	// metrics; PricingFile loads it from an operator's JSON file instead
	// (see LoadPricing). Set at most one.
	Pricing     *Pricing `json:"pricing,omitempty"`
	PricingFile string   `json:"pricing_file,omitempty"`
	// Resilience configures retries, fallbacks and deployment cooldown.
	Resilience Resilience `json:"resilience,omitzero"`
	// Telemetry configures GenAI metrics and spans and the overhead header.
	Telemetry Telemetry `json:"telemetry,omitzero"`
	// Prompt configures system prompt injection and prompt templates.
	Prompt Prompt `json:"prompt,omitzero"`
	// PII configures the redaction of personal data.
	PII PII `json:"pii,omitzero"`
}

// Provider is one upstream LLM API: an ordinary Portico cluster plus the
// authentication and URL shaping of its Kind.
//
// The credential comes from APIKey or from the environment variable named
// by APIKeyEnv. The gateway removes every credential header a client sent
// (Authorization, x-api-key, api-key, x-goog-api-key, Cookie …) before it
// adds the provider's, and never writes the credential to responses, logs
// or errors: APIKey is a Secret, which formats as "[redacted]".
type Provider struct {
	// Name identifies the provider in Model entries, the
	// x-portico-provider response header and telemetry. Required.
	Name string `json:"name"`
	// Kind is the provider's schema; required.
	Kind Kind `json:"kind"`
	// BaseURL is the API's base URL, as the provider's official SDK takes
	// it (see OpenAI and Anthropic); empty means the kind's default. Its
	// scheme and host make the cluster that Clusters returns and the Host
	// header sent upstream; its path prefixes the API paths.
	BaseURL string `json:"base_url,omitempty"`
	// APIKey is the credential. Prefer APIKeyEnv.
	APIKey Secret `json:"api_key,omitempty"`
	// APIKeyEnv names an environment variable holding the credential,
	// read once by New; New fails if it is set but the variable is empty.
	APIKeyEnv string `json:"api_key_env,omitempty"`
	// Headers are extra request headers for the provider (for example
	// OpenAI-Organization or anthropic-beta). They replace client headers
	// of the same name.
	Headers map[string]string `json:"headers,omitempty"`
	// AnthropicVersion is the anthropic-version header for Anthropic
	// providers when the client sent none; empty means
	// DefaultAnthropicVersion.
	AnthropicVersion string `json:"anthropic_version,omitempty"`
	// LegacyMaxTokens makes requests translated for an OpenAI provider
	// carry max_tokens instead of max_completion_tokens, for
	// OpenAI-compatible servers that predate the latter.
	LegacyMaxTokens bool `json:"legacy_max_tokens,omitempty"`
	// Cluster names an existing cluster to send requests to. Empty means
	// the cluster that Clusters makes from BaseURL, named "llm_" + Name.
	Cluster string `json:"cluster,omitempty"`

	// APIVersion is the API version: Azure OpenAI's api-version query
	// parameter (empty means DefaultAzureAPIVersion; "v1" selects Azure's
	// version-less /openai/v1 API, where the body's model names the
	// deployment), or Gemini's version path (empty means
	// DefaultGeminiAPIVersion). Other kinds ignore it.
	APIVersion string `json:"api_version,omitempty"`
	// Bearer makes an Azure OpenAI provider send its credential as
	// "Authorization: Bearer" (a Microsoft Entra ID token) instead of the
	// api-key header.
	Bearer bool `json:"bearer,omitempty"`
	// Token, when set, is called for every request and its result sent as
	// a Bearer token instead of APIKey: for credentials that expire, such
	// as Entra ID tokens (an azidentity credential's GetToken, cached by
	// it). Its error fails the request with 502. It must be safe for
	// concurrent use.
	Token func(ctx context.Context) (string, error) `json:"-"`
	// Responses says how OpenAI Responses requests (/v1/responses) reach
	// an OpenAI provider: ResponsesNative passes them through to its
	// /responses, ResponsesChat translates them to Chat Completions. Empty
	// means native for OpenAI's own API (the default BaseURL) and Chat
	// Completions for other OpenAI-compatible servers. Other kinds always
	// translate.
	Responses ResponsesMode `json:"responses,omitempty"`

	// Region is the AWS region of a Bedrock provider ("us-east-1"): it
	// makes the default BaseURL and scopes the SigV4 signature. Empty
	// means the AWS_REGION environment variable, else AWS_DEFAULT_REGION.
	Region string `json:"region,omitempty"`
	// AWSCredentials sign a Bedrock provider's requests when it has no API
	// key. Nil means the AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
	// AWS_SESSION_TOKEN environment variables, read once by New.
	AWSCredentials *AWSCredentials `json:"aws_credentials,omitempty"`
}

// ResponsesMode is how a provider serves OpenAI Responses requests.
type ResponsesMode string

const (
	// ResponsesNative passes Responses requests through to the
	// provider's own /responses endpoint.
	ResponsesNative ResponsesMode = "native"
	// ResponsesChat translates Responses requests to Chat Completions
	// (stateless: previous_response_id is refused).
	ResponsesChat ResponsesMode = "chat"
)

// Model routes requests for a model name to a provider.
//
// Name is an exact model name ("gpt-4o"), an alias with UpstreamModel set
// ("fast" → "gpt-4o-mini"), or a pattern ending in "*" that matches every
// name with that prefix ("claude-*", or "*" for all). Exact names win over
// patterns, and longer patterns over shorter ones.
type Model struct {
	// Name is the exact name or pattern clients ask for.
	Name string `json:"name"`
	// Provider is the name of the provider that serves it.
	Provider string `json:"provider"`
	// UpstreamModel is the model name sent to the provider; empty means
	// the name the client asked for.
	UpstreamModel string `json:"upstream_model,omitempty"`
	// Deployments, instead of Provider and UpstreamModel, split the
	// model's traffic across providers by weight; the others are the
	// first fallbacks of each (see Resilience).
	Deployments []Deployment `json:"deployments,omitempty"`
	// Fallbacks are model names tried in order when every deployment of
	// this one failed (see Resilience); each must be served by an entry.
	Fallbacks []string `json:"fallbacks,omitempty"`
}

// Secret is a credential. It formats as "[redacted]" with every fmt verb,
// in JSON and in logs, so printing a Config never reveals it; convert it to
// string to read it.
type Secret string

const redacted = "[redacted]"

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return `"` + redacted + `"` }

// Format implements fmt.Formatter: every verb prints "[redacted]".
func (Secret) Format(f fmt.State, verb rune) { f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler: a Secret marshals as
// "[redacted]" (an empty one as ""), so config dumps do not leak it.
func (s Secret) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte(`""`), nil
	}
	return []byte(`"` + redacted + `"`), nil
}

// Validate reports whether the configuration is well formed. It does not
// read the environment.
func (c *Config) Validate() error {
	if len(c.Providers) == 0 {
		return errors.New("providers: at least one is required")
	}
	names := make(map[string]int, len(c.Providers))
	for i := range c.Providers {
		p := &c.Providers[i]
		if err := p.Validate(); err != nil {
			return fmt.Errorf("providers[%d]: %w", i, err)
		}
		if j, ok := names[p.Name]; ok {
			return fmt.Errorf("providers[%d]: name %q already used by providers[%d]", i, p.Name, j)
		}
		names[p.Name] = i
	}
	seen := make(map[string]int, len(c.Models))
	for i, m := range c.Models {
		switch {
		case m.Name == "":
			return fmt.Errorf("models[%d].name: must not be empty", i)
		case strings.Contains(strings.TrimSuffix(m.Name, "*"), "*"):
			return fmt.Errorf("models[%d].name: %q: a wildcard is allowed only at the end", i, m.Name)
		}
		if err := validateModelTarget(m, names); err != nil {
			return fmt.Errorf("models[%d].%w", i, err)
		}
		if j, ok := seen[m.Name]; ok {
			return fmt.Errorf("models[%d].name: %q already used by models[%d]", i, m.Name, j)
		}
		seen[m.Name] = i
	}
	if c.DefaultMaxTokens < 0 {
		return fmt.Errorf("default_max_tokens: %d is negative", c.DefaultMaxTokens)
	}
	if c.MaxRequestBytes < 0 {
		return fmt.Errorf("max_request_bytes: %d is negative", c.MaxRequestBytes)
	}
	return c.validatePolicies()
}

// Validate reports whether the provider is well formed. Errors never
// include the credential.
func (p *Provider) Validate() error {
	if p.Name == "" {
		return errors.New("name: must not be empty")
	}
	switch p.Kind {
	case OpenAI, Anthropic, Gemini, Bedrock, AzureOpenAI:
	case "":
		return fmt.Errorf("provider %q: kind: must be set (%q, %q, %q, %q or %q)", p.Name, OpenAI, Anthropic, Gemini, Bedrock, AzureOpenAI)
	default:
		return fmt.Errorf("provider %q: kind: unknown kind %q", p.Name, p.Kind)
	}
	if err := p.validateKind(); err != nil {
		return fmt.Errorf("provider %q: %w", p.Name, err)
	}
	if _, err := p.endpoint(p.Region); err != nil {
		return fmt.Errorf("provider %q: base_url: %w", p.Name, err)
	}
	if p.APIKey != "" && p.APIKeyEnv != "" {
		return fmt.Errorf("provider %q: at most one of api_key and api_key_env", p.Name)
	}
	for k := range p.Headers {
		if !validHeaderName(k) {
			return fmt.Errorf("provider %q: headers: invalid header name %q", p.Name, k)
		}
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// endpoint is a provider's parsed base URL.
type endpoint struct {
	tls      bool
	host     string // Host header: host[:port] without a default port
	hostname string
	address  string // host:port to dial
	path     string // base path without a trailing slash
}

func (p *Provider) baseURL(region string) string {
	if p.BaseURL != "" {
		return p.BaseURL
	}
	switch p.Kind {
	case Anthropic:
		return DefaultAnthropicBaseURL
	case Gemini:
		return DefaultGeminiBaseURL
	case Bedrock:
		if region == "" {
			// Resolved from the environment by New; any valid host will
			// do for Validate.
			region = "us-east-1"
		}
		return "https://bedrock-runtime." + region + ".amazonaws.com"
	}
	return DefaultOpenAIBaseURL
}

func (p *Provider) endpoint(region string) (endpoint, error) {
	raw := p.baseURL(region)
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, which may hold userinfo: keep only the
		// cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return endpoint{}, err
	}
	if u.User != nil {
		return endpoint{}, errors.New("must not contain credentials: use api_key or api_key_env")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, errors.New("must not have a query or fragment")
	}
	var e endpoint
	switch u.Scheme {
	case "https":
		e.tls = true
	case "http":
	default:
		return endpoint{}, fmt.Errorf("scheme %q: must be http or https", u.Scheme)
	}
	if u.Hostname() == "" {
		return endpoint{}, errors.New("host is required")
	}
	e.hostname = u.Hostname()
	e.host = u.Host
	port := u.Port()
	if port == "" {
		port = "80"
		if e.tls {
			port = "443"
		}
	} else if (e.tls && port == "443") || (!e.tls && port == "80") {
		e.host = e.hostname
		if strings.Contains(e.hostname, ":") {
			e.host = "[" + e.hostname + "]"
		}
	}
	e.address = net.JoinHostPort(e.hostname, port)
	e.path = strings.TrimSuffix(u.Path, "/")
	return e, nil
}
