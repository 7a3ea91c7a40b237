// Package mock is an offline LLM provider: an http.Handler that answers
// the OpenAI (Chat Completions, Responses, Embeddings), Anthropic Messages,
// Google Gemini and Amazon Bedrock Converse APIs, streaming or not, with
// deterministic text, a tool call when tools are offered, and usage. It
// lets the LLM gateway example, docs and tests run with no key and no
// network.
//
// It serves, under any path prefix:
//
//	POST …/chat/completions                 OpenAI Chat Completions
//	POST …/responses                        OpenAI Responses
//	POST …/embeddings                       OpenAI Embeddings
//	POST …/messages                         Anthropic Messages
//	POST …/messages/count_tokens            Anthropic token counting
//	POST …/models/{model}:generateContent   Gemini (and :streamGenerateContent?alt=sse)
//	POST …/models/{model}:countTokens       Gemini token counting
//	POST …/models/{model}:batchEmbedContents Gemini embeddings (and :embedContent)
//	POST …/model/{model}/converse           Bedrock Converse (and /converse-stream,
//	                                        a binary AWS event stream)
//	POST …/model/{model}/count-tokens       Bedrock CountTokens
//	GET  …/models                           a model list (OpenAI shape)
//
// It checks no credentials or signatures.
//
// The answer depends only on the request: when the request offers tools
// (and tool_choice is not "none") and its last message is not a tool
// result, the mock says it will call the first tool (or the one
// tool_choice names) and calls it with arguments made from the tool's
// JSON schema; otherwise it echoes the last user text, or acknowledges the
// tool result. Usage counts about four request bytes per input token and
// one output token per word; the counting endpoints count the request
// they carry the same way, so a count equals the input usage of the same
// request. Embeddings are eight numbers derived from the input's hash.
//
// Use:
//
//	srv := &http.Server{Handler: &mock.Server{}}
//	go srv.Serve(ln)
package mock

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Server is the mock provider. The zero value is ready to use; a Server is
// safe for concurrent use.
type Server struct {
	// Delay is slept between streamed events, to make streaming visible in
	// demos; zero streams as fast as possible.
	Delay time.Duration
	// Created is the creation time reported in responses; zero means the
	// Unix epoch, so that answers are byte-for-byte reproducible.
	Created time.Time
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(path, "/models"):
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []map[string]any{
			{"id": "mock-gpt", "object": "model", "created": s.created(), "owned_by": "mock"},
			{"id": "mock-claude", "object": "model", "created": s.created(), "owned_by": "mock"},
		}})
	case r.Method != http.MethodPost:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case strings.HasSuffix(path, "/chat/completions"):
		s.chat(w, r)
	case strings.HasSuffix(path, "/responses"):
		s.responses(w, r)
	case strings.HasSuffix(path, "/embeddings"):
		s.embeddings(w, r)
	case strings.Contains(path, "/models/") && strings.Contains(path, ":"):
		s.gemini(w, r, path)
	case strings.HasSuffix(path, "/converse") || strings.HasSuffix(path, "/converse-stream"):
		s.converse(w, r, path)
	case strings.Contains(path, "/model/") && strings.HasSuffix(path, "/count-tokens"):
		s.countTokens(w, r)
	case strings.HasSuffix(path, "/messages/count_tokens"):
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"input_tokens": tokens(len(body))})
	case strings.HasSuffix(path, "/messages"):
		s.messages(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) created() int64 {
	if s.Created.IsZero() {
		return 0 // the Unix epoch, as documented; time.Time{}.Unix() is year 1
	}
	return s.Created.Unix()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func tokens(n int) int64 { return int64(n+3) / 4 }

// turn is the mock's answer.
type turn struct {
	text     string
	tool     string // tool to call, if any
	args     string // its arguments, a JSON object
	input    int64
	output   int64
	model    string
	toolCall bool
}

// tool is an offered tool.
type tool struct {
	name   string
	schema json.RawMessage
}

func plan(model string, bodyLen int, lastText string, afterTool bool, tools []tool, forced string, none bool) turn {
	t := turn{model: model, input: tokens(bodyLen)}
	switch {
	case len(tools) > 0 && !afterTool && !none:
		pick := tools[0]
		for _, tl := range tools {
			if tl.name == forced {
				pick = tl
			}
		}
		t.toolCall = true
		t.tool = pick.name
		t.args = argsFor(pick.schema)
		t.text = fmt.Sprintf("I will call %s.", pick.name)
	case afterTool:
		t.text = fmt.Sprintf("The tool returned: %s", clip(lastText))
	default:
		t.text = fmt.Sprintf("Hello from the Portico mock provider! You said: %q", clip(lastText))
	}
	t.output = int64(len(strings.Fields(t.text))) + tokens(len(t.args))
	return t
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > 120 {
		return string(r[:120]) + "…"
	}
	return s
}

// argsFor makes arguments for a JSON schema: each required property (every
// property when none is required), in name order, with a value of its
// type.
func argsFor(schema json.RawMessage) string {
	var s struct {
		Properties map[string]struct {
			Type string `json:"type"`
			Enum []any  `json:"enum"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	json.Unmarshal(schema, &s)
	names := s.Required
	if len(names) == 0 {
		for n := range s.Properties {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(n)
		b.Write(k)
		b.WriteByte(':')
		p := s.Properties[n]
		var v any = "example"
		switch {
		case len(p.Enum) > 0:
			v = p.Enum[0]
		case p.Type == "number" || p.Type == "integer":
			v = 1
		case p.Type == "boolean":
			v = true
		case p.Type == "array":
			v = []any{}
		case p.Type == "object":
			v = map[string]any{}
		}
		vb, _ := json.Marshal(v)
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.String()
}

// words splits text into stream deltas, each word with the space after it.
func words(text string) []string {
	var out []string
	for text != "" {
		i := strings.IndexByte(text, ' ')
		if i < 0 {
			out = append(out, text)
			break
		}
		out = append(out, text[:i+1])
		text = text[i+1:]
	}
	return out
}

// stream writes SSE events, flushing and pausing after each.
type stream struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	delay time.Duration
	r     *http.Request
}

func newStream(w http.ResponseWriter, r *http.Request, delay time.Duration) *stream {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	return &stream{w: w, rc: http.NewResponseController(w), delay: delay, r: r}
}

func (s *stream) send(event string, v any) bool {
	var data []byte
	if b, ok := v.([]byte); ok {
		data = b
	} else {
		data, _ = json.Marshal(v)
	}
	if event != "" {
		fmt.Fprintf(s.w, "event: %s\n", event)
	}
	fmt.Fprintf(s.w, "data: %s\n\n", data)
	s.rc.Flush()
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-s.r.Context().Done():
			return false
		}
	}
	return s.r.Context().Err() == nil
}

// OpenAI Chat Completions.

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name       string          `json:"name"`
			Parameters json.RawMessage `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// text returns the text of OpenAI or Anthropic content: a string, or the
// text of its parts or blocks.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type    string          `json:"type"`
		Text    string          `json:"text"`
		Content json.RawMessage `json:"content"`
	}
	json.Unmarshal(raw, &parts)
	var b strings.Builder
	for _, p := range parts {
		switch p.Type {
		case "text":
			b.WriteString(p.Text)
		case "tool_result":
			b.WriteString(text(p.Content))
		}
	}
	return b.String()
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": err.Error(), "type": "invalid_request_error"}})
		return
	}
	var last string
	afterTool := false
	if n := len(req.Messages); n > 0 {
		m := req.Messages[n-1]
		last, afterTool = text(m.Content), m.Role == "tool"
	}
	var tools []tool
	for _, t := range req.Tools {
		tools = append(tools, tool{name: t.Function.Name, schema: t.Function.Parameters})
	}
	forced, none := "", false
	var choice struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if string(req.ToolChoice) == `"none"` {
		none = true
	} else if json.Unmarshal(req.ToolChoice, &choice) == nil {
		forced = choice.Function.Name
	}
	t := plan(req.Model, len(body), last, afterTool, tools, forced, none)
	usage := map[string]any{"prompt_tokens": t.input, "completion_tokens": t.output, "total_tokens": t.input + t.output,
		"prompt_tokens_details": map[string]any{"cached_tokens": 0}, "completion_tokens_details": map[string]any{"reasoning_tokens": 0}}
	finish := "stop"
	var calls []map[string]any
	if t.toolCall {
		finish = "tool_calls"
		calls = []map[string]any{{"id": "call_mock_0", "type": "function", "function": map[string]any{"name": t.tool, "arguments": t.args}}}
	}
	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": t.text, "refusal": nil}
		if calls != nil {
			msg["tool_calls"] = calls
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "chatcmpl-mock", "object": "chat.completion", "created": s.created(), "model": t.model,
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish, "logprobs": nil}},
			"usage":   usage,
		})
		return
	}
	st := newStream(w, r, s.Delay)
	chunk := func(delta map[string]any, finish any) bool {
		return st.send("", map[string]any{"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": s.created(), "model": t.model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}})
	}
	if !chunk(map[string]any{"role": "assistant", "content": ""}, nil) {
		return
	}
	for _, wd := range words(t.text) {
		if !chunk(map[string]any{"content": wd}, nil) {
			return
		}
	}
	if t.toolCall {
		half := len(t.args) / 2
		if !chunk(map[string]any{"tool_calls": []any{map[string]any{"index": 0, "id": "call_mock_0", "type": "function",
			"function": map[string]any{"name": t.tool, "arguments": ""}}}}, nil) {
			return
		}
		for _, part := range []string{t.args[:half], t.args[half:]} {
			if !chunk(map[string]any{"tool_calls": []any{map[string]any{"index": 0, "function": map[string]any{"arguments": part}}}}, nil) {
				return
			}
		}
	}
	if !chunk(map[string]any{}, finish) {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		if !st.send("", map[string]any{"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": s.created(), "model": t.model,
			"choices": []any{}, "usage": usage}) {
			return
		}
	}
	st.send("", []byte("[DONE]"))
}

// Anthropic Messages.

type messagesRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"tools"`
	ToolChoice *struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tool_choice"`
	Stream bool `json:"stream"`
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req messagesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"type": "error", "error": map[string]any{"type": "invalid_request_error", "message": err.Error()}})
		return
	}
	var last string
	afterTool := false
	if n := len(req.Messages); n > 0 {
		m := req.Messages[n-1]
		last = text(m.Content)
		afterTool = strings.Contains(string(m.Content), `"tool_result"`)
	}
	var tools []tool
	for _, t := range req.Tools {
		tools = append(tools, tool{name: t.Name, schema: t.InputSchema})
	}
	forced, none := "", false
	if tc := req.ToolChoice; tc != nil {
		forced, none = tc.Name, tc.Type == "none"
	}
	t := plan(req.Model, len(body), last, afterTool, tools, forced, none)
	stop := "end_turn"
	content := []any{map[string]any{"type": "text", "text": t.text}}
	if t.toolCall {
		stop = "tool_use"
		content = append(content, map[string]any{"type": "tool_use", "id": "toolu_mock_0", "name": t.tool, "input": json.RawMessage(t.args)})
	}
	usage := map[string]any{"input_tokens": t.input, "output_tokens": t.output, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{"id": "msg_mock", "type": "message", "role": "assistant", "model": t.model,
			"content": content, "stop_reason": stop, "stop_sequence": nil, "usage": usage})
		return
	}
	st := newStream(w, r, s.Delay)
	ev := func(name string, v map[string]any) bool {
		v["type"] = name
		return st.send(name, v)
	}
	startUsage := map[string]any{"input_tokens": t.input, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
	if !ev("message_start", map[string]any{"message": map[string]any{"id": "msg_mock", "type": "message", "role": "assistant", "model": t.model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": startUsage}}) {
		return
	}
	if !ev("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}}) ||
		!ev("ping", map[string]any{}) {
		return
	}
	for _, wd := range words(t.text) {
		if !ev("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": wd}}) {
			return
		}
	}
	if !ev("content_block_stop", map[string]any{"index": 0}) {
		return
	}
	if t.toolCall {
		if !ev("content_block_start", map[string]any{"index": 1, "content_block": map[string]any{"type": "tool_use", "id": "toolu_mock_0", "name": t.tool, "input": map[string]any{}}}) {
			return
		}
		half := len(t.args) / 2
		for _, part := range []string{t.args[:half], t.args[half:]} {
			if !ev("content_block_delta", map[string]any{"index": 1, "delta": map[string]any{"type": "input_json_delta", "partial_json": part}}) {
				return
			}
		}
		if !ev("content_block_stop", map[string]any{"index": 1}) {
			return
		}
	}
	if !ev("message_delta", map[string]any{"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]any{"output_tokens": t.output}}) {
		return
	}
	ev("message_stop", map[string]any{})
}
