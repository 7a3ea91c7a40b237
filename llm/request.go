package llm

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Request translation. Fields one schema has and the other cannot carry
// are dropped when they only tune generation (top_k for OpenAI, logprobs,
// seed … for Anthropic) and rejected with 400 when dropping them would
// change what the client gets (n > 1, json_schema response formats,
// audio, provider-side tools).
//
// Requests for Gemini and Bedrock are translated through one normalised
// form, an Anthropic Messages request (anRequest): Chat Completions
// clients' through chatToAnthropic, Responses clients' through Chat
// Completions first.

// upstreamRequest is the request the gateway sends a provider.
type upstreamRequest struct {
	body []byte
	// path is the API path after the provider's base path; rawPath its
	// escaped form when it holds characters that must be escaped
	// (Bedrock model IDs).
	path, rawPath string
	// keepQuery keeps the client's query string; otherwise query
	// replaces it.
	keepQuery bool
	query     string
}

// buildUpstream returns the request for the call's provider: the client's
// body patched in place when the provider speaks the client's schema, its
// translation otherwise. It sets call.Translated.
//
// It may be called again for another target (a retry or fallback): it
// resets what an earlier call set.
func (f *frontDoor) buildUpstream(call *Call, st *state, obj jsonobj.Object, body []byte, t target) (upstreamRequest, *apiError) {
	p := t.p
	model, stream := call.RequestModel, call.Stream
	st.p, call.Translated, st.includeUsage, st.rs, st.frames, st.embed = p, false, false, nil, nil, embeddingsEcho{}
	var up upstreamRequest
	var aerr *apiError
	switch f.api {
	case ChatCompletions:
		switch p.kind {
		case OpenAI, AzureOpenAI:
			up.body, aerr = passThrough(obj, body, model, t.upstream, stream)
			if stream {
				st.includeUsage = clientIncludesUsage(obj)
			}
			up.path, up.keepQuery = "/chat/completions", true
		default:
			call.Translated = true
			st.includeUsage = clientIncludesUsage(obj)
			var req *oaRequest
			if req, aerr = parseChatRequest(body); aerr == nil {
				up, aerr = f.fromChat(req, p, t.upstream, stream)
			}
		}
	case Messages, CountTokens:
		switch p.kind {
		case Anthropic:
			up.body, aerr = passThrough(obj, body, model, t.upstream, false)
			up.path, up.keepQuery = "/v1/messages", true
			if f.api == CountTokens {
				up.path = "/v1/messages/count_tokens"
			}
		case OpenAI, AzureOpenAI:
			call.Translated = true
			up.body, aerr = messagesToChat(body, t.upstream, p.legacyMaxTokens)
			up.path = "/chat/completions"
		default:
			call.Translated = true
			var req *anRequest
			if req, aerr = parseMessagesRequest(body); aerr == nil {
				up, aerr = f.fromAnthropic(req, p, t.upstream, stream)
			}
		}
	case Responses:
		if p.kind == OpenAI && p.nativeResponses {
			up.body, aerr = passThrough(obj, body, model, t.upstream, false)
			up.path, up.keepQuery = "/responses", true
			break
		}
		call.Translated = true
		var req *oaRequest
		req, st.rs, aerr = responsesToChat(body)
		if aerr == nil {
			up, aerr = f.fromChat(req, p, t.upstream, stream)
		}
	case Embeddings:
		switch p.kind {
		case OpenAI, AzureOpenAI:
			up.body, aerr = passThrough(obj, body, model, t.upstream, false)
			up.path, up.keepQuery = "/embeddings", true
		case Gemini:
			call.Translated = true
			up, aerr = embeddingsToGemini(body, t.upstream, &st.embed)
		default:
			aerr = badRequest("embeddings are not supported by this model's provider (%s)", p.kind)
		}
	}
	if aerr != nil {
		return up, aerr
	}
	return p.shape(up, f.api, t.upstream, stream), nil
}

// fromChat translates a Chat Completions request for a provider of another
// schema (or, from a Responses client, for any provider).
func (f *frontDoor) fromChat(req *oaRequest, p *provider, model string, stream bool) (upstreamRequest, *apiError) {
	var up upstreamRequest
	switch p.kind {
	case OpenAI, AzureOpenAI:
		req.Model = model
		if stream {
			req.StreamOptions = &oaStreamOptions{IncludeUsage: true}
		}
		// Chat Completions servers cannot take thinking back.
		for i := range req.Messages {
			req.Messages[i].ThinkingBlocks, req.Messages[i].ReasoningContent = nil, ""
		}
		if p.legacyMaxTokens && req.MaxCompletionTokens != nil {
			req.MaxTokens, req.MaxCompletionTokens = req.MaxCompletionTokens, nil
		}
		b, err := marshal(req)
		if err != nil {
			return up, badRequest("encode request: %v", err)
		}
		up.body, up.path = b, "/chat/completions"
		return up, nil
	case Anthropic:
		an, aerr := chatToAnthropic(req, model, f.g.defMax)
		if aerr != nil {
			return up, aerr
		}
		if aerr := rejectResponseFormat(an); aerr != nil {
			return up, aerr
		}
		b, err := marshal(an)
		if err != nil {
			return up, badRequest("encode request: %v", err)
		}
		up.body, up.path = b, "/v1/messages"
		return up, nil
	}
	an, aerr := chatToAnthropic(req, model, 0)
	if aerr != nil {
		return up, aerr
	}
	return f.fromAnthropic(an, p, model, stream)
}

// fromAnthropic translates a normalised request for Gemini or Bedrock.
func (f *frontDoor) fromAnthropic(req *anRequest, p *provider, model string, stream bool) (upstreamRequest, *apiError) {
	var up upstreamRequest
	var aerr *apiError
	switch p.kind {
	case Gemini:
		up.body, aerr = anthropicToGemini(req, model)
	case Bedrock:
		up.body, aerr = anthropicToBedrock(req, model)
	default:
		aerr = badRequest("this model's provider cannot serve the request")
	}
	return up, aerr
}

// parseChatRequest decodes an OpenAI Chat Completions request.
func parseChatRequest(body []byte) (*oaRequest, *apiError) {
	var req oaRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("invalid request body: %v", err)
	}
	return &req, nil
}

// parseMessagesRequest decodes an Anthropic Messages request.
func parseMessagesRequest(body []byte) (*anRequest, *apiError) {
	var req anRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("invalid request body: %v", err)
	}
	return &req, nil
}

// chatToMessages translates an OpenAI Chat Completions request into an
// Anthropic Messages request.
func chatToMessages(body []byte, model string, defMax int64) ([]byte, *apiError) {
	req, aerr := parseChatRequest(body)
	if aerr != nil {
		return nil, aerr
	}
	out, aerr := chatToAnthropic(req, model, defMax)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := rejectResponseFormat(out); aerr != nil {
		return nil, aerr
	}
	b, err := marshal(out)
	if err != nil {
		return nil, badRequest("encode request: %v", err)
	}
	return b, nil
}

// rejectResponseFormat refuses structured output, which Anthropic's API
// (and Bedrock's) cannot be asked for.
func rejectResponseFormat(req *anRequest) *apiError {
	if rf := req.responseFormat; rf != nil && rf.Type != "text" {
		return badRequest("response_format: type %q is not supported by this model's provider", rf.Type)
	}
	return nil
}

// chatToAnthropic translates an OpenAI Chat Completions request into the
// normalised (Anthropic Messages) request. defMax is the max_tokens to set
// when the client set none; zero leaves it unset (for providers other
// than Anthropic, which default it themselves).
func chatToAnthropic(req *oaRequest, model string, defMax int64) (*anRequest, *apiError) {
	out := &anRequest{
		Model:       model,
		Stream:      req.Stream,
		Temperature: req.Temperature,
		TopP:        req.TopP,
		TopK:        req.TopK,
		Thinking:    req.Thinking,
	}
	if req.N != nil && *req.N > 1 {
		return nil, badRequest("n: values above 1 are not supported by this model's provider")
	}
	switch {
	case req.MaxCompletionTokens != nil:
		out.MaxTokens = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		out.MaxTokens = *req.MaxTokens
	default:
		out.MaxTokens = defMax
	}
	if len(req.Stop) > 0 && string(req.Stop) != "null" {
		var one string
		if json.Unmarshal(req.Stop, &one) == nil {
			out.StopSequences = []string{one}
		} else if err := json.Unmarshal(req.Stop, &out.StopSequences); err != nil {
			return nil, badRequest("stop: must be a string or an array of strings")
		}
	}
	if req.User != "" {
		out.Metadata = &anMetadata{UserID: req.User}
	}
	if len(out.Thinking) == 0 {
		if budget := thinkingBudget(req.ReasoningEffort); budget > 0 {
			out.Thinking = json.RawMessage(`{"type":"enabled","budget_tokens":` + itoa(budget) + `}`)
			if out.MaxTokens <= budget && (out.MaxTokens > 0 || defMax > 0) {
				extra := defMax
				if extra == 0 {
					extra = DefaultMaxTokens
				}
				out.MaxTokens = budget + extra
			}
		}
	}
	if len(req.ResponseFormat) > 0 && string(req.ResponseFormat) != "null" {
		out.responseFormat = &oaResponseFormat{}
		json.Unmarshal(req.ResponseFormat, out.responseFormat)
	}
	for i, t := range req.Tools {
		if t.Type != "function" || t.Function == nil {
			return nil, badRequest("tools[%d]: only function tools are supported by this model's provider", i)
		}
		schema := t.Function.Parameters
		if len(schema) == 0 || string(schema) == "null" {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, anTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	if len(out.Tools) > 0 {
		tc, err := toolChoiceToAnthropic(req.ToolChoice)
		if err != nil {
			return nil, err
		}
		if req.ParallelToolCalls != nil && !*req.ParallelToolCalls {
			if tc == nil {
				tc = &anToolChoice{Type: "auto"}
			}
			if tc.Type != "none" {
				tc.DisableParallelToolUse = ptr(true)
			}
		}
		out.ToolChoice = tc
	}

	var system []anBlock
	var msgs []blockMessage
	for i, m := range req.Messages {
		switch m.Role {
		case "system", "developer":
			blocks, err := textBlocks(m.Content)
			if err != nil {
				return nil, badRequest("messages[%d].content: %s", i, err.message)
			}
			system = append(system, blocks...)
		case "user":
			blocks, err := userBlocks(m.Content)
			if err != nil {
				return nil, badRequest("messages[%d].content: %s", i, err.message)
			}
			msgs = appendBlocks(msgs, "user", blocks)
		case "assistant":
			blocks, err := assistantBlocks(&m)
			if err != nil {
				return nil, badRequest("messages[%d]: %s", i, err.message)
			}
			msgs = appendBlocks(msgs, "assistant", blocks)
		case "tool":
			res := anBlock{Type: "tool_result", ToolUseID: m.ToolCallID}
			if s, ok := stringContent(m.Content); ok {
				res.Content, _ = marshal(s)
			} else {
				blocks, err := userBlocks(m.Content)
				if err != nil {
					return nil, badRequest("messages[%d].content: %s", i, err.message)
				}
				if len(blocks) > 0 {
					res.Content, _ = marshal(blocks)
				}
			}
			msgs = appendBlocks(msgs, "user", []anBlock{res})
		default:
			return nil, badRequest("messages[%d].role: %q is not supported by this model's provider", i, m.Role)
		}
	}
	if len(system) == 1 && len(system[0].CacheControl) == 0 {
		out.System, _ = marshal(*system[0].Text)
	} else if len(system) > 0 {
		out.System, _ = marshal(system)
	}
	out.Messages = make([]anMessage, 0, len(msgs))
	for _, m := range msgs {
		var content []byte
		if len(m.blocks) == 1 && m.blocks[0].Type == "text" && len(m.blocks[0].CacheControl) == 0 {
			content, _ = marshal(*m.blocks[0].Text)
		} else {
			content, _ = marshal(m.blocks)
		}
		out.Messages = append(out.Messages, anMessage{Role: m.role, Content: content})
	}
	return out, nil
}

// thinkingBudget maps OpenAI's reasoning_effort to an Anthropic thinking
// budget (LiteLLM's mapping); 0 means no thinking.
func thinkingBudget(effort string) int64 {
	switch effort {
	case "low":
		return 1024
	case "medium":
		return 2048
	case "high":
		return 4096
	}
	return 0
}

func toolChoiceToAnthropic(raw json.RawMessage) (*anToolChoice, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "auto":
			return &anToolChoice{Type: "auto"}, nil
		case "none":
			return &anToolChoice{Type: "none"}, nil
		case "required":
			return &anToolChoice{Type: "any"}, nil
		}
		return nil, badRequest("tool_choice: unknown value %q", s)
	}
	var o struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, badRequest("tool_choice: %v", err)
	}
	if o.Type == "function" && o.Function.Name != "" {
		return &anToolChoice{Type: "tool", Name: o.Function.Name}, nil
	}
	return &anToolChoice{Type: "auto"}, nil
}

// blockMessage is an Anthropic message under construction.
type blockMessage struct {
	role   string
	blocks []anBlock
}

// appendBlocks adds blocks as a message of role, merged into the previous
// message when it has the same role: Anthropic alternates roles, and
// consecutive tool results (OpenAI "tool" messages) make one user message.
func appendBlocks(msgs []blockMessage, role string, blocks []anBlock) []blockMessage {
	if len(blocks) == 0 {
		return msgs
	}
	if n := len(msgs); n > 0 && msgs[n-1].role == role {
		msgs[n-1].blocks = append(msgs[n-1].blocks, blocks...)
		return msgs
	}
	return append(msgs, blockMessage{role: role, blocks: blocks})
}

// stringContent returns content if it is a JSON string.
func stringContent(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	return "", false
}

func parts(raw json.RawMessage) ([]oaPart, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if s, ok := stringContent(raw); ok {
		return []oaPart{{Type: "text", Text: &s}}, nil
	}
	var ps []oaPart
	if err := json.Unmarshal(raw, &ps); err != nil {
		return nil, badRequest("must be a string or an array of content parts")
	}
	return ps, nil
}

// textBlocks converts system or developer content to text blocks.
func textBlocks(raw json.RawMessage) ([]anBlock, *apiError) {
	ps, err := parts(raw)
	if err != nil {
		return nil, err
	}
	var out []anBlock
	for _, p := range ps {
		if p.Type != "text" {
			return nil, badRequest("only text parts are allowed here, got %q", p.Type)
		}
		if p.Text != nil && *p.Text != "" {
			out = append(out, anBlock{Type: "text", Text: p.Text, CacheControl: p.CacheControl})
		}
	}
	return out, nil
}

// userBlocks converts user (or tool result) content to Anthropic blocks.
func userBlocks(raw json.RawMessage) ([]anBlock, *apiError) {
	ps, err := parts(raw)
	if err != nil {
		return nil, err
	}
	var out []anBlock
	for i, p := range ps {
		switch p.Type {
		case "text":
			if p.Text != nil && *p.Text != "" {
				out = append(out, anBlock{Type: "text", Text: p.Text, CacheControl: p.CacheControl})
			}
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return nil, badRequest("[%d].image_url.url: required", i)
			}
			src, err := imageSource(p.ImageURL.URL)
			if err != nil {
				return nil, badRequest("[%d].image_url.url: %s", i, err.message)
			}
			out = append(out, anBlock{Type: "image", Source: src, CacheControl: p.CacheControl})
		case "file":
			if p.File == nil || p.File.FileData == "" {
				return nil, badRequest("[%d].file: only inline file_data is supported by this model's provider", i)
			}
			mt, data, ok := parseDataURL(p.File.FileData)
			if !ok {
				return nil, badRequest("[%d].file.file_data: must be a base64 data: URL", i)
			}
			if mt == "" {
				mt = "application/pdf"
			}
			out = append(out, anBlock{Type: "document", Source: &anSource{Type: "base64", MediaType: mt, Data: data}, Title: p.File.Filename, CacheControl: p.CacheControl})
		default:
			return nil, badRequest("[%d]: content part type %q is not supported by this model's provider", i, p.Type)
		}
	}
	return out, nil
}

func imageSource(url string) (*anSource, *apiError) {
	if strings.HasPrefix(url, "data:") {
		mt, data, ok := parseDataURL(url)
		if !ok {
			return nil, badRequest("must be an http(s) URL or a base64 data: URL")
		}
		return &anSource{Type: "base64", MediaType: mt, Data: data}, nil
	}
	return &anSource{Type: "url", URL: url}, nil
}

// parseDataURL splits "data:<media type>;base64,<data>".
func parseDataURL(s string) (mediaType, data string, ok bool) {
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return "", "", false
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok {
		return "", "", false
	}
	meta, ok = strings.CutSuffix(meta, ";base64")
	if !ok {
		return "", "", false
	}
	return meta, data, true
}

// assistantBlocks converts an assistant message: thinking blocks first
// (Anthropic requires them before the text and tool use they led to),
// then text, then tool calls.
func assistantBlocks(m *oaMessage) ([]anBlock, *apiError) {
	var out []anBlock
	reasoning := m.ReasoningContent
	for _, tb := range m.ThinkingBlocks {
		switch tb.Type {
		case "thinking":
			// A thinking block is only valid upstream with its signature.
			if tb.Signature == nil || *tb.Signature == "" {
				continue
			}
			if tb.Thinking == nil || *tb.Thinking == "" {
				r := reasoning
				tb.Thinking = &r
				reasoning = ""
			}
			out = append(out, anBlock{Type: "thinking", Thinking: tb.Thinking, Signature: tb.Signature})
		case "redacted_thinking":
			out = append(out, anBlock{Type: "redacted_thinking", Data: tb.Data})
		}
	}
	ps, err := parts(m.Content)
	if err != nil {
		return nil, badRequest("content: %s", err.message)
	}
	for _, p := range ps {
		switch {
		case p.Type == "text" && p.Text != nil && *p.Text != "":
			out = append(out, anBlock{Type: "text", Text: p.Text, CacheControl: p.CacheControl})
		case p.Type == "refusal" && p.Refusal != "":
			out = append(out, anBlock{Type: "text", Text: &p.Refusal})
		}
	}
	for j, tc := range m.ToolCalls {
		input := bytes.TrimSpace([]byte(tc.Function.Arguments))
		if len(input) == 0 {
			input = []byte("{}")
		}
		if !json.Valid(input) || input[0] != '{' {
			return nil, badRequest("tool_calls[%d].function.arguments: must be a JSON object", j)
		}
		out = append(out, anBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
	}
	return out, nil
}

// messagesToChat translates an Anthropic Messages request into an OpenAI
// Chat Completions request. Thinking blocks and the thinking option are
// dropped: Chat Completions has no way to send them back.
func messagesToChat(body []byte, model string, legacyMaxTokens bool) ([]byte, *apiError) {
	var req anRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("invalid request body: %v", err)
	}
	out := oaRequest{
		Model:       model,
		Stream:      req.Stream,
		Temperature: req.Temperature,
		TopP:        req.TopP,
	}
	if req.MaxTokens > 0 {
		if legacyMaxTokens {
			out.MaxTokens = ptr(req.MaxTokens)
		} else {
			out.MaxCompletionTokens = ptr(req.MaxTokens)
		}
	}
	if req.Stream {
		out.StreamOptions = &oaStreamOptions{IncludeUsage: true}
	}
	if len(req.StopSequences) > 0 {
		out.Stop, _ = marshal(req.StopSequences)
	}
	if req.Metadata != nil {
		out.User = req.Metadata.UserID
	}
	for i, t := range req.Tools {
		if t.Type != "" && t.Type != "custom" {
			return nil, badRequest("tools[%d]: tool type %q is not supported by this model's provider", i, t.Type)
		}
		out.Tools = append(out.Tools, oaTool{Type: "function", Function: &oaFunction{Name: t.Name, Description: t.Description, Parameters: t.InputSchema}})
	}
	if tc := req.ToolChoice; tc != nil && len(out.Tools) > 0 {
		switch tc.Type {
		case "auto":
			out.ToolChoice = json.RawMessage(`"auto"`)
		case "any":
			out.ToolChoice = json.RawMessage(`"required"`)
		case "none":
			out.ToolChoice = json.RawMessage(`"none"`)
		case "tool":
			out.ToolChoice, _ = marshal(map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}})
		}
		if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse {
			out.ParallelToolCalls = ptr(false)
		}
	}

	if len(req.System) > 0 && string(req.System) != "null" {
		text, err := systemText(req.System)
		if err != nil {
			return nil, err
		}
		if text != "" {
			c, _ := marshal(text)
			out.Messages = append(out.Messages, oaMessage{Role: "system", Content: c})
		}
	}
	for i, m := range req.Messages {
		msgs, err := chatMessages(m)
		if err != nil {
			return nil, badRequest("messages[%d].%s", i, err.message)
		}
		out.Messages = append(out.Messages, msgs...)
	}
	b, err := marshal(out)
	if err != nil {
		return nil, badRequest("encode request: %v", err)
	}
	return b, nil
}

// systemText joins Anthropic system content into one string.
func systemText(raw json.RawMessage) (string, *apiError) {
	if s, ok := stringContent(raw); ok {
		return s, nil
	}
	var blocks []anBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return "", badRequest("system: must be a string or an array of text blocks")
	}
	var b strings.Builder
	for _, bl := range blocks {
		if bl.Type != "text" || bl.Text == nil {
			return "", badRequest("system: only text blocks are allowed")
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(*bl.Text)
	}
	return b.String(), nil
}

// chatMessages converts one Anthropic message into OpenAI messages: a user
// message's tool results become "tool" messages (first, right after the
// assistant's tool calls) and its other content a user message; an
// assistant message's text and tool uses become one assistant message.
func chatMessages(m anMessage) ([]oaMessage, *apiError) {
	if s, ok := stringContent(m.Content); ok {
		c, _ := marshal(s)
		if m.Role != "user" && m.Role != "assistant" {
			return nil, badRequest("role: %q is not supported", m.Role)
		}
		return []oaMessage{{Role: m.Role, Content: c}}, nil
	}
	var blocks []anBlock
	if err := json.Unmarshal(m.Content, &blocks); err != nil {
		return nil, badRequest("content: must be a string or an array of content blocks")
	}
	switch m.Role {
	case "user":
		var out []oaMessage
		var userParts, toolImages []oaPart
		for j, b := range blocks {
			switch b.Type {
			case "tool_result":
				text, images, err := toolResultContent(b.Content)
				if err != nil {
					return nil, badRequest("content[%d].content: %s", j, err.message)
				}
				c, _ := marshal(text)
				out = append(out, oaMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: c})
				toolImages = append(toolImages, images...)
			default:
				p, err := chatPart(b)
				if err != nil {
					return nil, badRequest("content[%d]: %s", j, err.message)
				}
				if p != nil {
					userParts = append(userParts, *p)
				}
			}
		}
		// Tool messages carry text only: images a tool returned follow
		// them in a user message.
		userParts = append(toolImages, userParts...)
		if len(userParts) > 0 {
			out = append(out, oaMessage{Role: "user", Content: partsContent(userParts)})
		}
		return out, nil
	case "assistant":
		msg := oaMessage{Role: "assistant"}
		var text strings.Builder
		for _, b := range blocks {
			switch b.Type {
			case "text":
				if b.Text != nil {
					text.WriteString(*b.Text)
				}
			case "tool_use":
				args := []byte("{}")
				if len(b.Input) > 0 {
					var buf bytes.Buffer
					if json.Compact(&buf, b.Input) == nil {
						args = buf.Bytes()
					}
				}
				msg.ToolCalls = append(msg.ToolCalls, oaToolCall{ID: b.ID, Type: "function", Function: oaCallFunction{Name: b.Name, Arguments: string(args)}})
			}
			// thinking and redacted_thinking: Chat Completions cannot
			// carry them back.
		}
		if text.Len() > 0 {
			msg.Content, _ = marshal(text.String())
		}
		if len(msg.Content) == 0 && len(msg.ToolCalls) == 0 {
			return nil, nil
		}
		return []oaMessage{msg}, nil
	}
	return nil, badRequest("role: %q is not supported", m.Role)
}

// partsContent is a string for a single text part (what every
// OpenAI-compatible server accepts) and an array of parts otherwise.
func partsContent(ps []oaPart) json.RawMessage {
	if len(ps) == 1 && ps[0].Type == "text" {
		c, _ := marshal(*ps[0].Text)
		return c
	}
	c, _ := marshal(ps)
	return c
}

// chatPart converts a user content block to an OpenAI content part; nil
// for blocks with nothing to send.
func chatPart(b anBlock) (*oaPart, *apiError) {
	switch b.Type {
	case "text":
		if b.Text == nil || *b.Text == "" {
			return nil, nil
		}
		return &oaPart{Type: "text", Text: b.Text}, nil
	case "image":
		if b.Source == nil {
			return nil, badRequest("source: required")
		}
		switch b.Source.Type {
		case "base64":
			return &oaPart{Type: "image_url", ImageURL: &oaImageURL{URL: "data:" + b.Source.MediaType + ";base64," + b.Source.Data}}, nil
		case "url":
			return &oaPart{Type: "image_url", ImageURL: &oaImageURL{URL: b.Source.URL}}, nil
		}
		return nil, badRequest("source.type: %q is not supported by this model's provider", b.Source.Type)
	case "document":
		if b.Source == nil {
			return nil, badRequest("source: required")
		}
		switch b.Source.Type {
		case "base64":
			name := b.Title
			if name == "" {
				name = "document.pdf"
			}
			return &oaPart{Type: "file", File: &oaFile{Filename: name, FileData: "data:" + b.Source.MediaType + ";base64," + b.Source.Data}}, nil
		case "text":
			return &oaPart{Type: "text", Text: &b.Source.Data}, nil
		}
		return nil, badRequest("source.type: %q is not supported by this model's provider", b.Source.Type)
	case "thinking", "redacted_thinking":
		return nil, nil
	}
	return nil, badRequest("type: content block %q is not supported by this model's provider", b.Type)
}

// toolResultContent flattens a tool_result's content to text, and returns
// its images separately.
func toolResultContent(raw json.RawMessage) (string, []oaPart, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, nil
	}
	if s, ok := stringContent(raw); ok {
		return s, nil, nil
	}
	var blocks []anBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return "", nil, badRequest("must be a string or an array of content blocks")
	}
	var text strings.Builder
	var images []oaPart
	for _, b := range blocks {
		switch b.Type {
		case "text":
			if b.Text != nil {
				if text.Len() > 0 {
					text.WriteByte('\n')
				}
				text.WriteString(*b.Text)
			}
		default:
			p, err := chatPart(b)
			if err != nil {
				return "", nil, err
			}
			if p != nil {
				images = append(images, *p)
			}
		}
	}
	return text.String(), images, nil
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
