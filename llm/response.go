package llm

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

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

// meterOpenAIResponse records the usage of an OpenAI chat.completion body
// that passes through unchanged, and returns its model and finish reason.
func meterOpenAIResponse(body []byte, m *meter) (model, finish string) {
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return "", ""
	}
	model, _, _ = obj.String("model")
	if raw, ok := obj.Get("usage"); ok && string(raw) != "null" {
		var u oaUsage
		if json.Unmarshal(raw, &u) == nil {
			m.setOpenAI(&u)
		}
	}
	var resp oaResponse
	if raw, ok := obj.Get("choices"); ok {
		json.Unmarshal(raw, &resp.Choices)
	}
	if len(resp.Choices) > 0 {
		c := resp.Choices[0]
		if c.FinishReason != nil {
			finish = *c.FinishReason
		}
		if c.Message.Content != nil {
			m.content(len(*c.Message.Content))
		}
		for _, tc := range c.Message.ToolCalls {
			m.content(len(tc.Function.Arguments))
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

// messagesRespToChat translates an Anthropic message into an OpenAI
// chat.completion, and records its usage.
func messagesRespToChat(body []byte, created int64, m *meter) (out []byte, model, stop string, err error) {
	var resp anResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, "", "", err
	}
	var raw anRaw
	m.setAnthropic(resp.Usage, &raw, resp.Usage != nil)
	msg := oaRespMessage{Role: "assistant"}
	var text, reasoning strings.Builder
	for i := range resp.Content {
		b := &resp.Content[i]
		meterBlock(m, b)
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
	if resp.StopReason != nil {
		stop = *resp.StopReason
	}
	finish := stopToFinish(stop)
	u := m.finish(nil)
	res := oaResponse{
		ID:      resp.ID,
		Object:  "chat.completion",
		Created: created,
		Model:   resp.Model,
		Choices: []oaChoice{{Index: 0, Message: msg, FinishReason: &finish, Logprobs: json.RawMessage("null")}},
		Usage:   openAIUsage(u),
	}
	out, err = marshal(res)
	return out, resp.Model, stop, err
}

// chatRespToMessages translates an OpenAI chat.completion into an
// Anthropic message, and records its usage.
func chatRespToMessages(body []byte, m *meter) (out []byte, model, finish string, err error) {
	var resp oaResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, "", "", err
	}
	m.setOpenAI(resp.Usage)
	res := anResponse{ID: resp.ID, Type: "message", Role: "assistant", Model: resp.Model, Content: []anBlock{}}
	stop := "end_turn"
	if len(resp.Choices) > 0 {
		c := &resp.Choices[0]
		msg := &c.Message
		if c.FinishReason != nil {
			finish = *c.FinishReason
			stop = finishToStop(finish)
		}
		if len(msg.ThinkingBlocks) > 0 {
			for _, tb := range msg.ThinkingBlocks {
				res.Content = append(res.Content, tb)
			}
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
	u := m.finish(nil)
	usage := anthropicUsage(u)
	out, err = marshal(struct {
		anResponse
		Usage anUsageOut `json:"usage"`
	}{res, usage})
	return out, resp.Model, finish, err
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
