package llm

import (
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"mime"
	"path"
	"strconv"
	"strings"

	"github.com/porticoproxy/portico/internal/sse"
)

// Google Gemini (generativelanguage.googleapis.com): requests and
// responses translate to and from the normalised (Anthropic) forms.
//
// Gemini has no tool-call IDs: the gateway gives every functionCall a
// stable ID (Gemini's own when it sends one, else one derived from the
// response ID, the call's position and name) and, on the way back, finds
// a tool result's function name by its call's ID in the conversation.
//
// Thought signatures travel as Anthropic thinking blocks: a part's
// thoughtSignature becomes a thinking block (with the thought summary's
// text when the part is a thought, empty otherwise) just before the
// block of the part it was on. On the way back a signature goes on the
// message's next functionCall when the message has any (Gemini signs the
// first call of a step, and OpenAI clients move thinking to the front),
// else on the next part, else on an empty text part at the end — as
// Gemini sent it. Gemini 3 refuses function calls without a signature;
// for calls that have none (made by another model or dropped by a
// client), the documented "skip_thought_signature_validator" is sent.

// Gemini wire types.

type gmRequest struct {
	Contents          []gmContent   `json:"contents"`
	SystemInstruction *gmContent    `json:"systemInstruction,omitempty"`
	Tools             []gmTool      `json:"tools,omitempty"`
	ToolConfig        *gmToolConfig `json:"toolConfig,omitempty"`
	GenerationConfig  *gmGenConfig  `json:"generationConfig,omitempty"`
}

type gmContent struct {
	Role  string   `json:"role,omitempty"`
	Parts []gmPart `json:"parts"`
}

type gmPart struct {
	Text             *string             `json:"text,omitempty"`
	Thought          bool                `json:"thought,omitempty"`
	ThoughtSignature string              `json:"thoughtSignature,omitempty"`
	InlineData       *gmBlob             `json:"inlineData,omitempty"`
	FileData         *gmFileData         `json:"fileData,omitempty"`
	FunctionCall     *gmFunctionCall     `json:"functionCall,omitempty"`
	FunctionResponse *gmFunctionResponse `json:"functionResponse,omitempty"`
}

type gmBlob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

type gmFileData struct {
	MimeType string `json:"mimeType,omitempty"`
	FileURI  string `json:"fileUri"`
}

type gmFunctionCall struct {
	ID   string          `json:"id,omitempty"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

type gmFunctionResponse struct {
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"`
}

type gmTool struct {
	FunctionDeclarations []gmFunctionDecl `json:"functionDeclarations,omitempty"`
}

type gmFunctionDecl struct {
	Name                 string          `json:"name"`
	Description          string          `json:"description,omitempty"`
	ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema,omitempty"`
}

type gmToolConfig struct {
	FunctionCallingConfig gmFunctionCallingConfig `json:"functionCallingConfig"`
}

type gmFunctionCallingConfig struct {
	Mode                 string   `json:"mode"`
	AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
}

type gmGenConfig struct {
	MaxOutputTokens    *int64          `json:"maxOutputTokens,omitempty"`
	Temperature        *float64        `json:"temperature,omitempty"`
	TopP               *float64        `json:"topP,omitempty"`
	TopK               *int64          `json:"topK,omitempty"`
	StopSequences      []string        `json:"stopSequences,omitempty"`
	ResponseMimeType   string          `json:"responseMimeType,omitempty"`
	ResponseJSONSchema json.RawMessage `json:"responseJsonSchema,omitempty"`
	ThinkingConfig     *gmThinking     `json:"thinkingConfig,omitempty"`
}

type gmThinking struct {
	IncludeThoughts bool   `json:"includeThoughts,omitempty"`
	ThinkingBudget  *int64 `json:"thinkingBudget,omitempty"`
}

type gmResponse struct {
	Candidates     []gmCandidate `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata *gmUsage        `json:"usageMetadata"`
	ModelVersion  string          `json:"modelVersion"`
	ResponseID    string          `json:"responseId"`
	Error         json.RawMessage `json:"error"`
}

type gmCandidate struct {
	Content      *gmContent `json:"content"`
	FinishReason string     `json:"finishReason"`
}

// gmUsage is Gemini's usageMetadata. promptTokenCount includes the cached
// tokens; candidatesTokenCount excludes the thoughts.
type gmUsage struct {
	PromptTokenCount        *int64 `json:"promptTokenCount"`
	CandidatesTokenCount    *int64 `json:"candidatesTokenCount"`
	CachedContentTokenCount *int64 `json:"cachedContentTokenCount"`
	ThoughtsTokenCount      *int64 `json:"thoughtsTokenCount"`
	ToolUsePromptTokenCount *int64 `json:"toolUsePromptTokenCount"`
}

// setGemini applies a Gemini usage report: every count it carries is set,
// never added (streams repeat the cumulative counts on every chunk).
func (m *meter) setGemini(u *gmUsage, final bool) {
	if u == nil {
		return
	}
	val := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	if u.PromptTokenCount != nil {
		m.hasInput = true
	}
	m.u.InputTokens = val(u.PromptTokenCount) + val(u.ToolUsePromptTokenCount)
	m.u.CacheReadTokens = val(u.CachedContentTokenCount)
	m.u.CacheWriteTokens = 0
	m.u.ReasoningTokens = val(u.ThoughtsTokenCount)
	m.u.OutputTokens = val(u.CandidatesTokenCount) + m.u.ReasoningTokens
	if final {
		m.final = true
	}
}

// skipSignature is Gemini's documented placeholder for function calls
// that have no thought signature of their own.
const skipSignature = "skip_thought_signature_validator"

// anthropicToGemini translates a normalised request into a Gemini
// generateContent request.
func anthropicToGemini(req *anRequest, model string) ([]byte, *apiError) {
	var out gmRequest
	if len(req.System) > 0 && string(req.System) != "null" {
		text, err := systemText(req.System)
		if err != nil {
			return nil, err
		}
		if text != "" {
			out.SystemInstruction = &gmContent{Parts: []gmPart{{Text: &text}}}
		}
	}
	if len(req.Tools) > 0 {
		var decls []gmFunctionDecl
		for i, t := range req.Tools {
			if t.Type != "" && t.Type != "custom" {
				return nil, badRequest("tools[%d]: tool type %q is not supported by this model's provider", i, t.Type)
			}
			schema := t.InputSchema
			if len(schema) == 0 || string(schema) == "null" {
				schema = json.RawMessage(`{"type":"object","properties":{}}`)
			}
			decls = append(decls, gmFunctionDecl{Name: t.Name, Description: t.Description, ParametersJSONSchema: schema})
		}
		out.Tools = []gmTool{{FunctionDeclarations: decls}}
		if tc := req.ToolChoice; tc != nil {
			fc := gmFunctionCallingConfig{Mode: "AUTO"}
			switch tc.Type {
			case "any":
				fc.Mode = "ANY"
			case "none":
				fc.Mode = "NONE"
			case "tool":
				fc.Mode, fc.AllowedFunctionNames = "ANY", []string{tc.Name}
			}
			out.ToolConfig = &gmToolConfig{FunctionCallingConfig: fc}
		}
	}
	gc := gmGenConfig{Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, StopSequences: req.StopSequences}
	if req.MaxTokens > 0 {
		gc.MaxOutputTokens = ptr(req.MaxTokens)
	}
	// Gemini 1.x and 2.0 cannot think and refuse a thinking config; it
	// only tunes generation, so it is dropped for them.
	thinks := !strings.HasPrefix(model, "gemini-1") && !strings.HasPrefix(model, "gemini-2.0")
	if thinks && len(req.Thinking) > 0 && string(req.Thinking) != "null" {
		var th struct {
			Type         string `json:"type"`
			BudgetTokens *int64 `json:"budget_tokens"`
		}
		if err := json.Unmarshal(req.Thinking, &th); err != nil {
			return nil, badRequest("thinking: must be an object")
		}
		switch th.Type {
		case "enabled", "adaptive":
			gc.ThinkingConfig = &gmThinking{IncludeThoughts: true, ThinkingBudget: th.BudgetTokens}
		case "disabled":
			gc.ThinkingConfig = &gmThinking{ThinkingBudget: ptr(int64(0))}
		}
	}
	if rf := req.responseFormat; rf != nil {
		switch rf.Type {
		case "text":
		case "json_object":
			gc.ResponseMimeType = "application/json"
		case "json_schema":
			gc.ResponseMimeType = "application/json"
			if rf.JSONSchema != nil {
				gc.ResponseJSONSchema = rf.JSONSchema.Schema
			}
		default:
			return nil, badRequest("response_format: type %q is not supported by this model's provider", rf.Type)
		}
	}
	if gc.MaxOutputTokens != nil || gc.Temperature != nil || gc.TopP != nil || gc.TopK != nil || len(gc.StopSequences) > 0 ||
		gc.ResponseMimeType != "" || gc.ThinkingConfig != nil {
		out.GenerationConfig = &gc
	}

	gemini3 := strings.Contains(model, "gemini-3")
	names := map[string]string{} // tool_use ID → function name
	for i, m := range req.Messages {
		var c gmContent
		var err *apiError
		switch m.Role {
		case "user":
			c, err = geminiUserContent(m.Content, names)
		case "assistant":
			c, err = geminiModelContent(m.Content, names, gemini3)
		default:
			err = badRequest("role: %q is not supported", m.Role)
		}
		if err != nil {
			return nil, badRequest("messages[%d].%s", i, err.message)
		}
		if len(c.Parts) == 0 {
			continue
		}
		if n := len(out.Contents); n > 0 && out.Contents[n-1].Role == c.Role {
			out.Contents[n-1].Parts = append(out.Contents[n-1].Parts, c.Parts...)
			continue
		}
		out.Contents = append(out.Contents, c)
	}
	if out.Contents == nil {
		out.Contents = []gmContent{}
	}
	b, err := marshal(out)
	if err != nil {
		return nil, badRequest("encode request: %v", err)
	}
	return b, nil
}

// contentBlocks returns a message's content as blocks.
func contentBlocks(raw json.RawMessage) ([]anBlock, *apiError) {
	if s, ok := stringContent(raw); ok {
		return []anBlock{{Type: "text", Text: &s}}, nil
	}
	var blocks []anBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, badRequest("content: must be a string or an array of content blocks")
	}
	return blocks, nil
}

func geminiUserContent(raw json.RawMessage, names map[string]string) (gmContent, *apiError) {
	c := gmContent{Role: "user"}
	blocks, err := contentBlocks(raw)
	if err != nil {
		return c, err
	}
	var after []gmPart // images of tool results follow their responses
	for j, b := range blocks {
		switch b.Type {
		case "tool_result":
			name, ok := names[b.ToolUseID]
			if !ok {
				return c, badRequest("content[%d].tool_use_id: %q answers no tool call of this conversation", j, b.ToolUseID)
			}
			text, images, err := toolResultContent(b.Content)
			if err != nil {
				return c, badRequest("content[%d].content: %s", j, err.message)
			}
			key := "output"
			if b.IsError {
				key = "error"
			}
			resp := jsonobjString(`{"`+key+`":`, text)
			c.Parts = append(c.Parts, gmPart{FunctionResponse: &gmFunctionResponse{Name: name, Response: resp}})
			for _, im := range images {
				p, err := geminiMediaPart(im)
				if err != nil {
					return c, badRequest("content[%d].content: %s", j, err.message)
				}
				after = append(after, p)
			}
		case "thinking", "redacted_thinking":
		default:
			c.Parts, after = append(c.Parts, after...), nil
			p, ok, err := geminiBlockPart(&b)
			if err != nil {
				return c, badRequest("content[%d]: %s", j, err.message)
			}
			if ok {
				c.Parts = append(c.Parts, p)
			}
		}
	}
	c.Parts = append(c.Parts, after...)
	return c, nil
}

// jsonobjString returns head + the JSON string s + "}".
func jsonobjString(head, s string) json.RawMessage {
	b, _ := marshal(s)
	return json.RawMessage(head + string(b) + "}")
}

func geminiModelContent(raw json.RawMessage, names map[string]string, gemini3 bool) (gmContent, *apiError) {
	c := gmContent{Role: "model"}
	blocks, err := contentBlocks(raw)
	if err != nil {
		return c, err
	}
	hasCall := false
	for _, b := range blocks {
		if b.Type == "tool_use" {
			hasCall = true
		}
	}
	var pending []string
	signed := false
	add := func(p gmPart) {
		if len(pending) > 0 && (!hasCall || p.FunctionCall != nil) {
			p.ThoughtSignature, pending = pending[0], pending[1:]
			if p.FunctionCall != nil {
				signed = true
			}
		}
		c.Parts = append(c.Parts, p)
	}
	for j, b := range blocks {
		switch b.Type {
		case "thinking":
			if b.Signature != nil && *b.Signature != "" {
				pending = append(pending, *b.Signature)
			}
		case "redacted_thinking":
		case "tool_use":
			input := b.Input
			if len(input) == 0 || string(input) == "null" {
				input = json.RawMessage("{}")
			}
			if input[0] != '{' {
				return c, badRequest("content[%d].input: must be an object", j)
			}
			names[b.ID] = b.Name
			add(gmPart{FunctionCall: &gmFunctionCall{Name: b.Name, Args: input}})
		default:
			p, ok, err := geminiBlockPart(&b)
			if err != nil {
				return c, badRequest("content[%d]: %s", j, err.message)
			}
			if ok {
				add(p)
			}
		}
	}
	for _, sig := range pending {
		c.Parts = append(c.Parts, gmPart{Text: ptr(""), ThoughtSignature: sig})
	}
	if hasCall && !signed && gemini3 {
		for i := range c.Parts {
			if c.Parts[i].FunctionCall != nil {
				c.Parts[i].ThoughtSignature = skipSignature
				break
			}
		}
	}
	return c, nil
}

// geminiBlockPart converts a text, image or document block.
func geminiBlockPart(b *anBlock) (gmPart, bool, *apiError) {
	switch b.Type {
	case "text":
		if b.Text == nil || *b.Text == "" {
			return gmPart{}, false, nil
		}
		return gmPart{Text: b.Text}, true, nil
	case "image", "document":
		if b.Source == nil {
			return gmPart{}, false, badRequest("source: required")
		}
		switch b.Source.Type {
		case "base64":
			return gmPart{InlineData: &gmBlob{MimeType: b.Source.MediaType, Data: b.Source.Data}}, true, nil
		case "url":
			return gmPart{FileData: &gmFileData{MimeType: mediaTypeOf(b.Source.URL, b.Type), FileURI: b.Source.URL}}, true, nil
		case "text":
			return gmPart{Text: &b.Source.Data}, true, nil
		}
		return gmPart{}, false, badRequest("source.type: %q is not supported by this model's provider", b.Source.Type)
	}
	return gmPart{}, false, badRequest("type: content block %q is not supported by this model's provider", b.Type)
}

// geminiMediaPart converts an OpenAI image or file part (from a tool
// result) to a Gemini part.
func geminiMediaPart(p oaPart) (gmPart, *apiError) {
	var url string
	switch {
	case p.ImageURL != nil:
		url = p.ImageURL.URL
	case p.File != nil:
		url = p.File.FileData
	}
	if mt, data, ok := parseDataURL(url); ok {
		return gmPart{InlineData: &gmBlob{MimeType: mt, Data: data}}, nil
	}
	if url == "" {
		return gmPart{}, badRequest("an image without data")
	}
	return gmPart{FileData: &gmFileData{MimeType: mediaTypeOf(url, "image"), FileURI: url}}, nil
}

// mediaTypeOf guesses a file URI's media type from its extension.
func mediaTypeOf(uri, kind string) string {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	if t := mime.TypeByExtension(path.Ext(uri)); t != "" {
		t, _, _ = strings.Cut(t, ";")
		return t
	}
	if kind == "document" {
		return "application/pdf"
	}
	return "image/jpeg"
}

// geminiStop maps Gemini's finishReason to an Anthropic stop_reason.
// Gemini says STOP when it calls functions.
func geminiStop(reason string, calls bool) string {
	switch reason {
	case "MAX_TOKENS":
		return "max_tokens"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT":
		return "refusal"
	}
	if calls {
		return "tool_use"
	}
	return "end_turn"
}

// geminiCallID is the ID of a function call: Gemini's own, else one
// derived from the response ID, the call's position and its name, the same
// in a stream and in a whole response.
func geminiCallID(fc *gmFunctionCall, responseID string, n int) string {
	if fc.ID != "" {
		return fc.ID
	}
	h := fnv.New64a()
	h.Write([]byte(responseID))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(n)))
	h.Write([]byte{0})
	h.Write([]byte(fc.Name))
	return "call_" + hex.EncodeToString(h.Sum(nil))
}

// decodeGeminiResponse decodes a generateContent response into the
// normalised message, and records its usage; it returns Gemini's
// finishReason (or the prompt's blockReason).
func decodeGeminiResponse(body []byte, model string, m *meter) (*anResponse, string, error) {
	var resp gmResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, "", err
	}
	m.setGemini(resp.UsageMetadata, true)
	out := &anResponse{ID: cmpOr(resp.ResponseID, "msg_gemini"), Type: "message", Role: "assistant",
		Model: cmpOr(resp.ModelVersion, model), Content: []anBlock{}}
	reason, calls := "", 0
	if len(resp.Candidates) == 0 {
		if resp.PromptFeedback != nil && resp.PromptFeedback.BlockReason != "" {
			reason = resp.PromptFeedback.BlockReason
			out.StopReason = ptr("refusal")
			return out, reason, nil
		}
	} else {
		c := &resp.Candidates[0]
		reason = c.FinishReason
		if c.Content != nil {
			for i := range c.Content.Parts {
				p := &c.Content.Parts[i]
				switch {
				case p.Thought:
					text := ""
					if p.Text != nil {
						text = *p.Text
					}
					m.content(len(text))
					out.Content = append(out.Content, anBlock{Type: "thinking", Thinking: &text, Signature: ptr(p.ThoughtSignature)})
					continue
				case p.ThoughtSignature != "":
					out.Content = append(out.Content, anBlock{Type: "thinking", Thinking: ptr(""), Signature: ptr(p.ThoughtSignature)})
				}
				switch {
				case p.FunctionCall != nil:
					args := compactJSON(p.FunctionCall.Args)
					m.content(len(p.FunctionCall.Name) + len(args))
					out.Content = append(out.Content, anBlock{Type: "tool_use", ID: geminiCallID(p.FunctionCall, resp.ResponseID, calls),
						Name: p.FunctionCall.Name, Input: json.RawMessage(args)})
					calls++
				case p.Text != nil && *p.Text != "":
					m.content(len(*p.Text))
					if n := len(out.Content); n > 0 && out.Content[n-1].Type == "text" {
						*out.Content[n-1].Text += *p.Text
					} else {
						out.Content = append(out.Content, anBlock{Type: "text", Text: ptr(*p.Text)})
					}
				}
			}
		}
	}
	out.StopReason = ptr(geminiStop(reason, calls > 0))
	return out, reason, nil
}

// gmDec decodes a Gemini streamGenerateContent?alt=sse stream (each
// event a whole GenerateContentResponse holding the next parts; no [DONE])
// into the normalised events. Text and thought parts continue the open
// block of their kind; a function call arrives whole and is one block; a
// signature is a thinking block of its own before its part's. The stream
// ends when the connection does; the last chunk carries finishReason and
// the final usage.
type gmDec struct {
	call *Call
	m    *meter
	out  sink

	id       string
	started  bool
	open     int // index of the open block, -1 for none
	openKind blockKind
	next     int
	calls    int
	finished bool
	done     bool
}

func newGMDec(call *Call, m *meter, out sink) *gmDec {
	return &gmDec{call: call, m: m, out: out, open: -1}
}

func (t *gmDec) event(dst []byte, e sse.Event) []byte {
	if t.done {
		return dst
	}
	if e.Comment != nil {
		return sse.AppendEvent(dst, e)
	}
	if !e.HasData || isDone(e.Data) {
		return dst
	}
	var r gmResponse
	if json.Unmarshal(e.Data, &r) != nil {
		return dst
	}
	if len(r.Error) > 0 && string(r.Error) != "null" {
		typ, msg := errorFromStreamPayload(r.Error)
		if typ == "api_error" {
			typ = geminiErrorType(r.Error)
		}
		t.call.UpstreamError = msg
		t.done = true
		return t.out.fail(dst, typ, msg)
	}
	reason := ""
	if len(r.Candidates) > 0 {
		reason = r.Candidates[0].FinishReason
	} else if r.PromptFeedback != nil {
		reason = r.PromptFeedback.BlockReason
	}
	t.m.setGemini(r.UsageMetadata, reason != "")
	if !t.started {
		t.started = true
		t.id = cmpOr(r.ResponseID, "msg_gemini")
		model := cmpOr(r.ModelVersion, t.call.Model)
		t.call.ResponseModel = model
		dst = t.out.start(dst, t.id, model)
	}
	if len(r.Candidates) > 0 && r.Candidates[0].Content != nil {
		for i := range r.Candidates[0].Content.Parts {
			dst = t.part(dst, &r.Candidates[0].Content.Parts[i], r.ResponseID)
		}
	}
	if reason != "" && !t.finished {
		t.finished = true
		t.call.StopReason = reason
		dst = t.close(dst)
		stop := geminiStop(reason, t.calls > 0)
		if len(r.Candidates) == 0 {
			stop = "refusal"
		}
		dst = t.out.finish(dst, stop)
	}
	return dst
}

func (t *gmDec) part(dst []byte, p *gmPart, responseID string) []byte {
	text := ""
	if p.Text != nil {
		text = *p.Text
	}
	if p.Thought {
		dst = t.ensure(dst, blockThinking)
		if text != "" {
			t.m.content(len(text))
			dst = t.out.delta(dst, t.open, deltaThinking, text)
		}
		if p.ThoughtSignature != "" {
			dst = t.out.delta(dst, t.open, deltaSignature, p.ThoughtSignature)
			dst = t.close(dst)
		}
		return dst
	}
	if p.ThoughtSignature != "" {
		dst = t.close(dst)
		dst = t.ensure(dst, blockThinking)
		dst = t.out.delta(dst, t.open, deltaSignature, p.ThoughtSignature)
		dst = t.close(dst)
	}
	switch {
	case p.FunctionCall != nil:
		dst = t.close(dst)
		fc := p.FunctionCall
		id := geminiCallID(fc, responseID, t.calls)
		t.calls++
		args := compactJSON(fc.Args)
		t.m.content(len(fc.Name) + len(args))
		idx := t.next
		t.next++
		dst = t.out.blockStart(dst, idx, blockInfo{kind: blockTool, id: id, name: fc.Name})
		dst = t.out.delta(dst, idx, deltaJSON, args)
		dst = t.out.blockStop(dst, idx)
	case text != "":
		dst = t.ensure(dst, blockText)
		t.m.content(len(text))
		dst = t.out.delta(dst, t.open, deltaText, text)
	}
	return dst
}

func (t *gmDec) ensure(dst []byte, k blockKind) []byte {
	if t.open >= 0 && t.openKind == k {
		return dst
	}
	dst = t.close(dst)
	t.open, t.openKind = t.next, k
	t.next++
	return t.out.blockStart(dst, t.open, blockInfo{kind: k})
}

func (t *gmDec) close(dst []byte) []byte {
	if t.open < 0 {
		return dst
	}
	dst = t.out.blockStop(dst, t.open)
	t.open, t.openKind = -1, 0
	return dst
}

func (t *gmDec) end(dst []byte) []byte {
	if t.done {
		return dst
	}
	t.done = true
	if t.finished {
		return t.out.end(dst)
	}
	t.call.UpstreamError = cutShort
	if !t.started {
		t.started = true
		dst = t.out.start(dst, "msg_gemini", t.call.Model)
	}
	return t.out.fail(dst, "api_error", cutShort)
}

func (t *gmDec) abort(dst []byte, msg string) []byte {
	t.done = true
	t.call.UpstreamError = msg
	return t.out.fail(dst, "api_error", msg)
}

// geminiErrorType maps a Gemini error's status to an Anthropic error
// type.
func geminiErrorType(raw json.RawMessage) string {
	var e struct {
		Code   int    `json:"code"`
		Status string `json:"status"`
	}
	json.Unmarshal(raw, &e)
	switch e.Status {
	case "RESOURCE_EXHAUSTED":
		return "rate_limit_error"
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return "invalid_request_error"
	case "UNAVAILABLE":
		return "overloaded_error"
	case "DEADLINE_EXCEEDED":
		return "timeout_error"
	case "PERMISSION_DENIED":
		return "permission_error"
	case "UNAUTHENTICATED":
		return "authentication_error"
	case "NOT_FOUND":
		return "not_found_error"
	}
	if e.Code != 0 {
		return anthropicErrorType(e.Code)
	}
	return "api_error"
}
