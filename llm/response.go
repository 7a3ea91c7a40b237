package llm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Non-streamed responses are translated through one normalised form, an
// Anthropic message (anResponse) plus the meter's usage: the provider's
// body is decoded into it and the client's encoded from it.

// finishToStop maps an OpenAI finish_reason to an Anthropic stop_reason.
func finishToStop(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

// stopToFinish maps an Anthropic stop_reason to an OpenAI finish_reason.
func stopToFinish(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop"
}

// openAIUsage is u in OpenAI's schema.
func openAIUsage(u Usage) *oaUsage {
	out := &oaUsage{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens, TotalTokens: u.TotalTokens()}
	out.PromptTokensDetails = &struct {
		CachedTokens     int64 `json:"cached_tokens"`
		CacheWriteTokens int64 `json:"cache_write_tokens,omitempty"`
	}{u.CacheReadTokens, u.CacheWriteTokens}
	out.CompletionTokensDetails = &struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	}{u.ReasoningTokens}
	return out
}

// anthropicUsage is u in Anthropic's schema.
func anthropicUsage(u Usage) anUsageOut {
	in, cw, cr, out := anthropicUsageOf(u)
	a := anUsageOut{InputTokens: in, CacheCreationInputTokens: cw, CacheReadInputTokens: cr, OutputTokens: out}
	if u.ReasoningTokens > 0 {
		a.OutputTokensDetails = &anOutputDetails{ThinkingTokens: u.ReasoningTokens}
	}
	return a
}

// translateResponse meters a non-streamed response body and returns what
// the client gets: the body itself when it speaks the provider's schema,
// else its translation.
func (f *frontDoor) translateResponse(call *Call, resp *http.Response, body []byte) ([]byte, error) {
	st := call.st
	m := &st.m
	if !call.Translated {
		switch f.api {
		case ChatCompletions:
			call.ResponseModel, call.StopReason = meterOpenAIResponse(body, m)
		case Responses:
			call.ResponseModel, call.StopReason = meterResponses(body, m)
		case Embeddings:
			call.ResponseModel = meterEmbeddings(body, m)
		default:
			call.ResponseModel, call.StopReason = meterAnthropicResponse(body, m)
		}
		return body, nil
	}
	if f.api == Embeddings {
		return f.g.translateEmbeddingsResponse(call, body)
	}
	var msg *anResponse
	var err error
	switch st.p.kind {
	case Anthropic:
		msg, call.StopReason, err = decodeAnthropicResponse(body, m)
	case Gemini:
		msg, call.StopReason, err = decodeGeminiResponse(body, call.Model, m)
	case Bedrock:
		msg, call.StopReason, err = decodeBedrockResponse(body, call.Model, resp.Header.Get("X-Amzn-Requestid"), m)
	default:
		msg, call.StopReason, err = decodeChatResponse(body, m)
	}
	if err != nil {
		return nil, err
	}
	call.ResponseModel = msg.Model
	u := m.finish(nil)
	switch f.api {
	case ChatCompletions:
		return encodeChatResponse(msg, f.g.now().Unix(), u)
	case Responses:
		return encodeResponsesResponse(msg, f.g.now().Unix(), u, st.rs)
	default:
		return encodeMessagesResponse(msg, u)
	}
}

// meterOpenAIResponse records the usage of an OpenAI chat.completion body
// that passes through unchanged, and returns its model and finish reason.
// It indexes the body rather than decoding it: the usage object and the
// first choice are all it reads.
func meterOpenAIResponse(body []byte, m *meter) (model, finish string) {
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return "", ""
	}
	model, _, _ = obj.String("model")
	if u, ok, err := obj.Object("usage"); ok && err == nil {
		m.setOpenAIObject(u)
	}
	raw, ok, _ := obj.First("choices")
	if !ok {
		return model, ""
	}
	if !m.final {
		// No usage: the estimate needs the content's decoded length.
		var c oaChoice
		if json.Unmarshal(raw, &c) != nil {
			return model, ""
		}
		if c.FinishReason != nil {
			finish = *c.FinishReason
		}
		if c.Message.Content != nil {
			m.content(len(*c.Message.Content))
		}
		for _, tc := range c.Message.ToolCalls {
			m.content(len(tc.Function.Arguments))
		}
		return model, finish
	}
	c, err := jsonobj.ParseValid(raw)
	if err != nil {
		return model, ""
	}
	finish, _, _ = c.String("finish_reason")
	// The usage is final: content only marks the response's arrival.
	if msg, ok, err := c.Object("message"); ok && err == nil {
		if raw, ok := msg.Get("content"); ok && len(raw) > 2 && raw[0] == '"' {
			m.content(len(raw) - 2)
		}
		if raw, ok := msg.Get("tool_calls"); ok && len(raw) > 2 && raw[0] == '[' {
			m.content(len(raw))
		}
	}
	return model, finish
}

// meterAnthropicResponse records the usage of an Anthropic message body
// that passes through unchanged, and returns its model and stop reason.
func meterAnthropicResponse(body []byte, m *meter) (model, stop string) {
	var resp anResponse
	if json.Unmarshal(body, &resp) != nil {
		return "", ""
	}
	var raw anRaw
	m.setAnthropic(resp.Usage, &raw, resp.Usage != nil)
	for _, b := range resp.Content {
		meterBlock(m, &b)
	}
	if resp.StopReason != nil {
		stop = *resp.StopReason
	}
	return resp.Model, stop
}

func meterBlock(m *meter, b *anBlock) {
	if b.Text != nil {
		m.content(len(*b.Text))
	}
	if b.Thinking != nil {
		m.content(len(*b.Thinking))
	}
	m.content(len(b.Input))
}

// decodeAnthropicResponse decodes an Anthropic message, and records its
// usage.
func decodeAnthropicResponse(body []byte, m *meter) (*anResponse, string, error) {
	var resp anResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, "", err
	}
	var raw anRaw
	m.setAnthropic(resp.Usage, &raw, resp.Usage != nil)
	for i := range resp.Content {
		meterBlock(m, &resp.Content[i])
	}
	stop := ""
	if resp.StopReason != nil {
		stop = *resp.StopReason
	}
	return &resp, stop, nil
}

// decodeChatResponse decodes an OpenAI chat.completion into the normalised
// message, and records its usage; it returns the finish reason.
func decodeChatResponse(body []byte, m *meter) (*anResponse, string, error) {
	var resp oaResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, "", err
	}
	m.setOpenAI(resp.Usage)
	res := &anResponse{ID: resp.ID, Type: "message", Role: "assistant", Model: resp.Model, Content: []anBlock{}}
	stop, finish := "end_turn", ""
	if len(resp.Choices) > 0 {
		c := &resp.Choices[0]
		msg := &c.Message
		if c.FinishReason != nil {
			finish = *c.FinishReason
			stop = finishToStop(finish)
		}
		if len(msg.ThinkingBlocks) > 0 {
			res.Content = append(res.Content, msg.ThinkingBlocks...)
		} else if r := cmpOr(msg.ReasoningContent, msg.Reasoning); r != "" {
			res.Content = append(res.Content, anBlock{Type: "thinking", Thinking: &r, Signature: ptr("")})
			m.content(len(r))
		}
		if msg.Content != nil && *msg.Content != "" {
			res.Content = append(res.Content, anBlock{Type: "text", Text: msg.Content})
			m.content(len(*msg.Content))
		}
		if msg.Refusal != nil && *msg.Refusal != "" {
			res.Content = append(res.Content, anBlock{Type: "text", Text: msg.Refusal})
			stop = "refusal"
		}
		for _, tc := range msg.ToolCalls {
			res.Content = append(res.Content, anBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: toolInput(tc.Function.Arguments)})
			m.content(len(tc.Function.Arguments))
		}
	}
	res.StopReason = &stop
	return res, finish, nil
}

// encodeChatResponse encodes the normalised message as an OpenAI
// chat.completion.
func encodeChatResponse(resp *anResponse, created int64, u Usage) ([]byte, error) {
	msg := oaRespMessage{Role: "assistant"}
	var text, reasoning strings.Builder
	for i := range resp.Content {
		b := &resp.Content[i]
		switch b.Type {
		case "text":
			if b.Text != nil {
				text.WriteString(*b.Text)
			}
		case "thinking":
			if b.Thinking != nil {
				reasoning.WriteString(*b.Thinking)
			}
			msg.ThinkingBlocks = append(msg.ThinkingBlocks, anBlock{Type: "thinking", Thinking: b.Thinking, Signature: b.Signature})
		case "redacted_thinking":
			msg.ThinkingBlocks = append(msg.ThinkingBlocks, anBlock{Type: "redacted_thinking", Data: b.Data})
		case "tool_use":
			msg.ToolCalls = append(msg.ToolCalls, oaToolCall{ID: b.ID, Type: "function", Function: oaCallFunction{Name: b.Name, Arguments: compactJSON(b.Input)}})
		}
	}
	if text.Len() > 0 || len(msg.ToolCalls) == 0 {
		msg.Content = ptr(text.String())
	}
	msg.ReasoningContent = reasoning.String()
	stop := ""
	if resp.StopReason != nil {
		stop = *resp.StopReason
	}
	finish := stopToFinish(stop)
	res := oaResponse{
		ID:      resp.ID,
		Object:  "chat.completion",
		Created: created,
		Model:   resp.Model,
		Choices: []oaChoice{{Index: 0, Message: msg, FinishReason: &finish, Logprobs: json.RawMessage("null")}},
		Usage:   openAIUsage(u),
	}
	return marshal(res)
}

// encodeMessagesResponse encodes the normalised message as an Anthropic
// message with the usage in Anthropic's convention.
func encodeMessagesResponse(resp *anResponse, u Usage) ([]byte, error) {
	if resp.StopReason == nil {
		resp.StopReason = ptr("end_turn")
	}
	return marshal(struct {
		*anResponse
		Usage anUsageOut `json:"usage"`
	}{resp, anthropicUsage(u)})
}

// toolInput turns OpenAI tool-call arguments into an Anthropic tool_use
// input, which must be an object; arguments that are not a JSON object
// (a model's malformed output) become {}.
func toolInput(args string) json.RawMessage {
	b := bytes.TrimSpace([]byte(args))
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return json.RawMessage("{}")
	}
	var buf bytes.Buffer
	json.Compact(&buf, b)
	return buf.Bytes()
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return "{}"
	}
	return buf.String()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
