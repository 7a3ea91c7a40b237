package llm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/porticoproxy/portico/filter"
)

// provider is a resolved Provider.
type provider struct {
	name            string
	kind            Kind
	ep              endpoint
	key             string
	authValue       string // the credential header's value
	cluster         string
	ownCluster      bool // made by Clusters
	headers         map[string]string
	version         string // anthropic-version
	legacyMaxTokens bool
	apiVersion      string // Azure's api-version, Gemini's version path
	bearer          bool   // Azure: Entra ID token in Authorization
	token           func(context.Context) (string, error)
	nativeResponses bool
	signer          *SigV4 // Bedrock without an API key
}

// validateKind checks the fields particular to the provider's kind.
func (p *Provider) validateKind() error {
	switch p.Responses {
	case "", ResponsesNative, ResponsesChat:
	default:
		return fmt.Errorf("responses: unknown mode %q (%q or %q)", p.Responses, ResponsesNative, ResponsesChat)
	}
	if p.Responses == ResponsesNative && p.Kind != OpenAI {
		return fmt.Errorf("responses: %q needs an %q provider", ResponsesNative, OpenAI)
	}
	switch p.Kind {
	case AzureOpenAI:
		if p.BaseURL == "" {
			return errors.New("base_url: required for Azure OpenAI (https://{resource}.openai.azure.com)")
		}
	case Bedrock:
		if c := p.AWSCredentials; c != nil {
			if c.AccessKeyID == "" || c.SecretAccessKey == "" {
				return errors.New("aws_credentials: access_key_id and secret_access_key are both required")
			}
			if p.APIKey != "" || p.APIKeyEnv != "" {
				return errors.New("at most one of aws_credentials and an API key")
			}
		}
	}
	if !token(p.APIVersion) {
		return fmt.Errorf("api_version: %q is not a version", p.APIVersion)
	}
	if !token(p.Region) {
		return fmt.Errorf("region: %q is not a region", p.Region)
	}
	return nil
}

// token reports whether s holds only letters, digits, '.', '-' and '_'.
func token(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !unreserved(c) || c == '~' {
			return false
		}
	}
	return true
}

// newProvider resolves a validated Provider, reading its credentials from
// the environment where it says so.
func newProvider(pc *Provider, getenv func(string) string) (*provider, error) {
	p := &provider{
		name:            pc.Name,
		kind:            pc.Kind,
		key:             string(pc.APIKey),
		cluster:         pc.Cluster,
		version:         pc.AnthropicVersion,
		legacyMaxTokens: pc.LegacyMaxTokens,
		apiVersion:      pc.APIVersion,
		bearer:          pc.Bearer,
		token:           pc.Token,
	}
	region := pc.Region
	if pc.Kind == Bedrock && region == "" {
		region = cmpOr(strings.TrimSpace(getenv("AWS_REGION")), strings.TrimSpace(getenv("AWS_DEFAULT_REGION")))
		if region == "" && pc.BaseURL == "" {
			return nil, fmt.Errorf("llm: provider %q: region: set it or AWS_REGION", pc.Name)
		}
	}
	ep, err := pc.endpoint(region)
	if err != nil {
		return nil, fmt.Errorf("llm: provider %q: base_url: %w", pc.Name, err)
	}
	p.ep = ep
	if pc.APIKeyEnv != "" {
		p.key = strings.TrimSpace(getenv(pc.APIKeyEnv))
		if p.key == "" {
			return nil, fmt.Errorf("llm: provider %q: environment variable %s is empty", pc.Name, pc.APIKeyEnv)
		}
	}
	if strings.ContainsAny(p.key, "\r\n") {
		return nil, fmt.Errorf("llm: provider %q: the API key contains a line break", pc.Name)
	}
	if p.key != "" {
		p.authValue = p.key
		if p.kind == OpenAI || p.kind == Bedrock || p.kind == AzureOpenAI && p.bearer {
			p.authValue = "Bearer " + p.key
		}
	}
	if p.cluster == "" {
		p.cluster = "llm_" + pc.Name
		p.ownCluster = true
	}
	if p.version == "" {
		p.version = DefaultAnthropicVersion
	}
	if len(pc.Headers) > 0 {
		p.headers = make(map[string]string, len(pc.Headers))
		for k, v := range pc.Headers {
			p.headers[http.CanonicalHeaderKey(k)] = v
		}
	}
	switch p.kind {
	case Gemini:
		if p.apiVersion == "" {
			p.apiVersion = DefaultGeminiAPIVersion
		}
	case AzureOpenAI:
		if p.apiVersion == "" {
			p.apiVersion = DefaultAzureAPIVersion
		}
	case OpenAI:
		switch pc.Responses {
		case ResponsesNative:
			p.nativeResponses = true
		case "":
			p.nativeResponses = pc.BaseURL == "" || ep.hostname == "api.openai.com"
		}
	case Bedrock:
		if p.key == "" && p.token == nil {
			p.signer = &SigV4{Region: region, Service: "bedrock"}
			if c := pc.AWSCredentials; c != nil {
				p.signer.Credentials = *c
			} else {
				p.signer.Credentials = AWSCredentials{
					AccessKeyID:     strings.TrimSpace(getenv("AWS_ACCESS_KEY_ID")),
					SecretAccessKey: Secret(strings.TrimSpace(getenv("AWS_SECRET_ACCESS_KEY"))),
					SessionToken:    Secret(strings.TrimSpace(getenv("AWS_SESSION_TOKEN"))),
				}
			}
			if err := p.signer.validate(); err != nil {
				return nil, fmt.Errorf("llm: provider %q: %w (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an API key)", pc.Name, err)
			}
		}
	}
	return p, nil
}

// shape completes the upstream request's path and query for the
// provider's URL scheme: Azure deployment URLs, Gemini model methods,
// Bedrock model operations.
func (p *provider) shape(up upstreamRequest, api API, model string, stream bool) upstreamRequest {
	switch p.kind {
	case AzureOpenAI:
		up.keepQuery = false
		if p.apiVersion == "v1" {
			up.path = "/openai/v1" + up.path
			return up
		}
		const prefix = "/openai/deployments/"
		rest := up.path
		up.path = prefix + model + rest
		if esc := url.PathEscape(model); esc != model {
			up.rawPath = prefix + esc + rest
		}
		up.query = "api-version=" + url.QueryEscape(p.apiVersion)
	case Gemini:
		up.keepQuery = false
		method := ":generateContent"
		switch {
		case api == Embeddings:
			method = ":batchEmbedContents"
		case api == CountTokens:
			method = ":countTokens"
		case stream:
			method = ":streamGenerateContent"
			up.query = "alt=sse"
		}
		up.path = "/" + p.apiVersion + "/" + geminiModelName(model) + method
	case Bedrock:
		up.keepQuery = false
		op := "converse"
		switch {
		case api == CountTokens:
			op, model = "count-tokens", bedrockCountModel(model)
		case stream:
			op = "converse-stream"
		}
		up.path, up.rawPath = bedrockPath(model, op)
	}
	return up
}

// geminiModelName is a model's resource name: "models/{model}", unless it
// names a model resource already.
func geminiModelName(model string) string {
	if strings.HasPrefix(model, "models/") || strings.HasPrefix(model, "tunedModels/") {
		return model
	}
	return "models/" + model
}

// Request headers that carry client credentials or would change the
// upstream's encoding; the provider's own are added afterwards.
var stripRequest = [...]string{"Authorization", "Proxy-Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key",
	"Cookie", "Openai-Organization", "Openai-Project", "Accept-Encoding"}

var anthropicRequest = [...]string{"Anthropic-Version", "Anthropic-Beta", "Anthropic-Dangerous-Direct-Browser-Access"}

// prepareUpstream points x.Out at the provider: path, query, Host,
// credentials.
func prepareUpstream(ctx context.Context, x *filter.Exchange, p *provider, translated bool, up *upstreamRequest) error {
	h := x.Out.Header
	for _, k := range stripRequest {
		delete(h, k)
	}
	if p.kind != Anthropic || translated {
		for _, k := range anthropicRequest {
			delete(h, k)
		}
	}
	if p.kind == Bedrock {
		// The signature covers every x-amz-* header: none of the
		// client's may ride along.
		for k := range h {
			if len(k) > 6 && strings.EqualFold(k[:6], "x-amz-") {
				delete(h, k)
			}
		}
	}
	auth := p.authValue
	if p.token != nil {
		tok, err := p.token(ctx)
		if err != nil || tok == "" || strings.ContainsAny(tok, "\r\n") {
			return fmt.Errorf("provider %q: token source failed", p.name)
		}
		auth = "Bearer " + tok
	}
	if auth != "" {
		switch {
		case p.token != nil, p.kind == OpenAI, p.kind == Bedrock, p.kind == AzureOpenAI && p.bearer:
			h["Authorization"] = []string{auth}
		case p.kind == Anthropic:
			h["X-Api-Key"] = []string{auth}
		case p.kind == Gemini:
			h["X-Goog-Api-Key"] = []string{auth}
		case p.kind == AzureOpenAI:
			h["Api-Key"] = []string{auth}
		}
	}
	if p.kind == Anthropic && len(h["Anthropic-Version"]) == 0 {
		h["Anthropic-Version"] = []string{p.version}
	}
	for k, v := range p.headers {
		h[k] = []string{v}
	}
	h["Content-Type"] = []string{"application/json"}
	delete(h, "Content-Length") // the body may have changed; x.Out.ContentLength is right
	x.Out.Host = p.ep.host
	u := x.Out.URL
	u.Path, u.RawPath = p.ep.path+up.path, ""
	if up.rawPath != "" {
		u.RawPath = p.ep.path + up.rawPath
	}
	if !up.keepQuery {
		u.RawQuery = up.query
	}
	return nil
}

// Middleware returns the cluster middleware a provider needs on a cluster
// it names itself (Provider.Cluster): the SigV4 signer of a Bedrock
// provider without an API key, nil for every other provider. Clusters
// adds it to the clusters it makes.
func (g *Gateway) Middleware(provider string) []func(http.RoundTripper) http.RoundTripper {
	for _, p := range g.providers {
		if p.name == provider && p.signer != nil {
			return []func(http.RoundTripper) http.RoundTripper{p.signer.Middleware}
		}
	}
	return nil
}
