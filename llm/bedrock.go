package llm

import (
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"strings"

	"github.com/porticoproxy/portico/internal/sse"
	"github.com/porticoproxy/portico/llm/internal/eventstream"
)

// Amazon Bedrock's Converse API: requests and responses translate to and
// from the normalised (Anthropic) forms, which Converse closely mirrors
// (toolUse ⇄ tool_use, toolResult ⇄ tool_result, reasoningContent ⇄
// thinking with its signature, cachePoint ⇄ cache_control). Streams
// (converse-stream) are binary AWS event streams, decoded by
// internal/eventstream with both CRCs checked.

// eventStreamType is the content type of AWS event streams.
const eventStreamType = "application/vnd.amazon.eventstream"

// Bedrock wire types.

type brRequest struct {
	Messages                     []brMessage     `json:"messages"`
	System                       []brBlock       `json:"system,omitempty"`
	InferenceConfig              *brInference    `json:"inferenceConfig,omitempty"`
	ToolConfig                   *brToolConfig   `json:"toolConfig,omitempty"`
	AdditionalModelRequestFields json.RawMessage `json:"additionalModelRequestFields,omitempty"`
}

type brMessage struct {
	Role    string    `json:"role"`
	Content []brBlock `json:"content"`
}

type brBlock struct {
	Text             *string       `json:"text,omitempty"`
	Image            *brMedia      `json:"image,omitempty"`
	Document         *brMedia      `json:"document,omitempty"`
	ToolUse          *brToolUse    `json:"toolUse,omitempty"`
	ToolResult       *brToolResult `json:"toolResult,omitempty"`
	ReasoningContent *brReasoning  `json:"reasoningContent,omitempty"`
	CachePoint       *brCachePoint `json:"cachePoint,omitempty"`
}

type brMedia struct {
	Format string `json:"format"`
	Name   string `json:"name,omitempty"`
	Source struct {
		Bytes string `json:"bytes"`
	} `json:"source"`
}

type brToolUse struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

type brToolResult struct {
	ToolUseID string    `json:"toolUseId"`
	Content   []brBlock `json:"content"`
	Status    string    `json:"status,omitempty"`
}

type brReasoning struct {
	ReasoningText   *brReasoningText `json:"reasoningText,omitempty"`
	RedactedContent string           `json:"redactedContent,omitempty"`
}

type brReasoningText struct {
	Text      string `json:"text"`
	Signature string `json:"signature,omitempty"`
}

type brCachePoint struct {
	Type string `json:"type"`
}

type brInference struct {
	MaxTokens     *int64   `json:"maxTokens,omitempty"`
	Temperature   *float64 `json:"temperature,omitempty"`
	TopP          *float64 `json:"topP,omitempty"`
	StopSequences []string `json:"stopSequences,omitempty"`
}

type brToolConfig struct {
	Tools      []brTool        `json:"tools"`
	ToolChoice json.RawMessage `json:"toolChoice,omitempty"`
}

type brTool struct {
	ToolSpec *brToolSpec `json:"toolSpec,omitempty"`
}

type brToolSpec struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	InputSchema struct {
		JSON json.RawMessage `json:"json"`
	} `json:"inputSchema"`
}

type brResponse struct {
	Output struct {
		Message *brMessage `json:"message"`
	} `json:"output"`
	StopReason string   `json:"stopReason"`
	Usage      *brUsage `json:"usage"`
}

// brUsage is Bedrock's usage. Like Anthropic's, inputTokens excludes the
// cache reads and writes.
type brUsage struct {
	InputTokens           *int64 `json:"inputTokens"`
	OutputTokens          *int64 `json:"outputTokens"`
	CacheReadInputTokens  *int64 `json:"cacheReadInputTokens"`
	CacheWriteInputTokens *int64 `json:"cacheWriteInputTokens"`
}

// brEvent is the payload of a converse-stream event.
type brEvent struct {
	ContentBlockIndex int `json:"contentBlockIndex"`
	Start             *struct {
		ToolUse *brToolUse `json:"toolUse"`
	} `json:"start"`
	Delta *struct {
		Text    *string `json:"text"`
		ToolUse *struct {
			Input string `json:"input"`
		} `json:"toolUse"`
		ReasoningContent *struct {
			Text            *string `json:"text"`
			Signature       *string `json:"signature"`
			RedactedContent *string `json:"redactedContent"`
		} `json:"reasoningContent"`
	} `json:"delta"`
	StopReason string   `json:"stopReason"`
	Usage      *brUsage `json:"usage"`
	Message    string   `json:"message"` // exceptions
}

// setBedrock applies a Bedrock usage report.
func (m *meter) setBedrock(u *brUsage) {
	if u == nil {
		return
	}
	val := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	m.u.CacheReadTokens = val(u.CacheReadInputTokens)
	m.u.CacheWriteTokens = val(u.CacheWriteInputTokens)
	m.u.InputTokens = val(u.InputTokens) + m.u.CacheReadTokens + m.u.CacheWriteTokens
	m.u.OutputTokens = val(u.OutputTokens)
	m.hasInput = u.InputTokens != nil
	m.final = true
}

// bedrockPath returns the path of a model's operation and its escaped
// form: model IDs hold ':' and ARNs '/', which are sent percent-encoded
// (and signed encoded once more, see SigV4).
func bedrockPath(model, op string) (path, rawPath string) {
	return "/model/" + model + "/" + op, "/model/" + awsEscape(model) + "/" + op
}

// anthropicToBedrock translates a normalised request into a Converse
// request.
func anthropicToBedrock(req *anRequest, model string) ([]byte, *apiError) {
	if aerr := rejectResponseFormat(req); aerr != nil {
		return nil, aerr
	}
	var out brRequest
	if len(req.System) > 0 && string(req.System) != "null" {
		if s, ok := stringContent(req.System); ok {
			if s != "" {
				out.System = []brBlock{{Text: &s}}
			}
		} else {
			var blocks []anBlock
			if err := json.Unmarshal(req.System, &blocks); err != nil {
				return nil, badRequest("system: must be a string or an array of text blocks")
			}
			for _, b := range blocks {
				if b.Type != "text" || b.Text == nil {
					return nil, badRequest("system: only text blocks are allowed")
				}
				out.System = append(out.System, brBlock{Text: b.Text})
				if len(b.CacheControl) > 0 {
					out.System = append(out.System, brBlock{CachePoint: &brCachePoint{Type: "default"}})
				}
			}
		}
	}
	inf := brInference{Temperature: req.Temperature, TopP: req.TopP, StopSequences: req.StopSequences}
	if req.MaxTokens > 0 {
		inf.MaxTokens = ptr(req.MaxTokens)
	}
	if inf.MaxTokens != nil || inf.Temperature != nil || inf.TopP != nil || len(inf.StopSequences) > 0 {
		out.InferenceConfig = &inf
	}
	if len(req.Tools) > 0 {
		tc := &brToolConfig{}
		for i, t := range req.Tools {
			if t.Type != "" && t.Type != "custom" {
				return nil, badRequest("tools[%d]: tool type %q is not supported by this model's provider", i, t.Type)
			}
			spec := &brToolSpec{Name: t.Name, Description: t.Description}
			spec.InputSchema.JSON = t.InputSchema
			if len(spec.InputSchema.JSON) == 0 || string(spec.InputSchema.JSON) == "null" {
				spec.InputSchema.JSON = json.RawMessage(`{"type":"object","properties":{}}`)
			}
			tc.Tools = append(tc.Tools, brTool{ToolSpec: spec})
		}
		if c := req.ToolChoice; c != nil {
			switch c.Type {
			case "auto":
				tc.ToolChoice = json.RawMessage(`{"auto":{}}`)
			case "any":
				tc.ToolChoice = json.RawMessage(`{"any":{}}`)
			case "tool":
				tc.ToolChoice = jsonobjString(`{"tool":{"name":`, c.Name)
				tc.ToolChoice = append(tc.ToolChoice, '}')
			}
			// "none": Converse has no such choice, and refuses a
			// conversation holding tool use without the tools.
		}
		out.ToolConfig = tc
	}
	// Claude's own fields; other models refuse them, and they only tune
	// generation, so they are dropped for those.
	var extra []string
	if strings.Contains(model, "claude") {
		if len(req.Thinking) > 0 && string(req.Thinking) != "null" {
			extra = append(extra, `"thinking":`+string(req.Thinking))
			// Claude needs max_tokens above the thinking budget.
			if b := thinkingBudgetOf(req.Thinking); b > 0 && (inf.MaxTokens == nil || *inf.MaxTokens <= b) {
				inf.MaxTokens = ptr(b + DefaultMaxTokens)
				out.InferenceConfig = &inf
			}
		}
		if req.TopK != nil {
			extra = append(extra, `"top_k":`+itoa(*req.TopK))
		}
	}
	if len(extra) > 0 {
		out.AdditionalModelRequestFields = json.RawMessage("{" + strings.Join(extra, ",") + "}")
	}
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return nil, badRequest("messages[%d].role: %q is not supported", i, m.Role)
		}
		blocks, err := contentBlocks(m.Content)
		if err != nil {
			return nil, badRequest("messages[%d].%s", i, err.message)
		}
		var content []brBlock
		for j := range blocks {
			var bb []brBlock
			bb, err = bedrockBlock(&blocks[j], m.Role, j)
			if err != nil {
				return nil, badRequest("messages[%d].content[%d]%s", i, j, err.message)
			}
			content = append(content, bb...)
		}
		if len(content) == 0 {
			continue
		}
		if n := len(out.Messages); n > 0 && out.Messages[n-1].Role == m.Role {
			out.Messages[n-1].Content = append(out.Messages[n-1].Content, content...)
			continue
		}
		out.Messages = append(out.Messages, brMessage{Role: m.Role, Content: content})
	}
	if out.Messages == nil {
		out.Messages = []brMessage{}
	}
	b, err := marshal(out)
	if err != nil {
		return nil, badRequest("encode request: %v", err)
	}
	return b, nil
}

// thinkingBudgetOf returns the budget of an Anthropic thinking option.
func thinkingBudgetOf(raw json.RawMessage) int64 {
	var th struct {
		Type         string `json:"type"`
		BudgetTokens int64  `json:"budget_tokens"`
	}
	if json.Unmarshal(raw, &th) != nil || th.Type != "enabled" {
		return 0
	}
	return th.BudgetTokens
}

// bedrockBlock converts one content block (and its cache breakpoint).
func bedrockBlock(b *anBlock, role string, n int) ([]brBlock, *apiError) {
	var out []brBlock
	switch b.Type {
	case "text":
		if b.Text == nil || *b.Text == "" {
			return nil, nil
		}
		out = append(out, brBlock{Text: b.Text})
	case "image", "document":
		m, err := bedrockMedia(b, n)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	case "tool_use":
		input := b.Input
		if len(input) == 0 || string(input) == "null" {
			input = json.RawMessage("{}")
		}
		out = append(out, brBlock{ToolUse: &brToolUse{ToolUseID: b.ID, Name: b.Name, Input: input}})
	case "tool_result":
		tr := &brToolResult{ToolUseID: b.ToolUseID, Content: []brBlock{}}
		if b.IsError {
			tr.Status = "error"
		}
		if s, ok := stringContent(b.Content); ok {
			tr.Content = append(tr.Content, brBlock{Text: &s})
		} else if len(b.Content) > 0 && string(b.Content) != "null" {
			var inner []anBlock
			if err := json.Unmarshal(b.Content, &inner); err != nil {
				return nil, badRequest(".content: must be a string or an array of content blocks")
			}
			for k := range inner {
				ib, err := bedrockBlock(&inner[k], role, k)
				if err != nil {
					return nil, badRequest(".content[%d]%s", k, err.message)
				}
				for _, x := range ib {
					if x.CachePoint == nil {
						tr.Content = append(tr.Content, x)
					}
				}
			}
		}
		if len(tr.Content) == 0 {
			tr.Content = append(tr.Content, brBlock{Text: ptr("")})
		}
		out = append(out, brBlock{ToolResult: tr})
	case "thinking":
		if role != "assistant" {
			return nil, nil
		}
		rt := &brReasoningText{}
		if b.Thinking != nil {
			rt.Text = *b.Thinking
		}
		if b.Signature != nil {
			rt.Signature = *b.Signature
		}
		out = append(out, brBlock{ReasoningContent: &brReasoning{ReasoningText: rt}})
	case "redacted_thinking":
		if role != "assistant" {
			return nil, nil
		}
		out = append(out, brBlock{ReasoningContent: &brReasoning{RedactedContent: b.Data}})
	default:
		return nil, badRequest(".type: content block %q is not supported by this model's provider", b.Type)
	}
	if len(b.CacheControl) > 0 {
		out = append(out, brBlock{CachePoint: &brCachePoint{Type: "default"}})
	}
	return out, nil
}

// bedrockMedia converts an image or document block, which Converse takes
// only as bytes.
func bedrockMedia(b *anBlock, n int) (brBlock, *apiError) {
	s := b.Source
	if s == nil {
		return brBlock{}, badRequest(".source: required")
	}
	if b.Type == "document" && s.Type == "text" {
		return brBlock{Text: &s.Data}, nil
	}
	if s.Type != "base64" {
		return brBlock{}, badRequest(".source.type: %q is not supported by this model's provider (send the data inline)", s.Type)
	}
	_, format, _ := strings.Cut(s.MediaType, "/")
	m := &brMedia{Format: format}
	m.Source.Bytes = s.Data
	if b.Type == "image" {
		switch format {
		case "png", "jpeg", "gif", "webp":
		case "jpg":
			m.Format = "jpeg"
		default:
			return brBlock{}, badRequest(".source.media_type: %q is not supported by this model's provider", s.MediaType)
		}
		return brBlock{Image: m}, nil
	}
	switch s.MediaType {
	case "application/pdf":
		m.Format = "pdf"
	case "text/plain":
		m.Format = "txt"
	case "text/markdown":
		m.Format = "md"
	case "text/html":
		m.Format = "html"
	case "text/csv":
		m.Format = "csv"
	default:
		return brBlock{}, badRequest(".source.media_type: %q is not supported by this model's provider", s.MediaType)
	}
	m.Name = documentName(b.Title, n)
	return brBlock{Document: m}, nil
}

// documentName makes a name Bedrock accepts (letters, digits, single
// spaces, hyphens, parentheses and square brackets).
func documentName(title string, n int) string {
	var b strings.Builder
	space := false
	for _, r := range title {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-()[]", r):
			b.WriteRune(r)
			space = false
		case !space && b.Len() > 0:
			b.WriteByte(' ')
			space = true
		}
	}
	name := strings.TrimSpace(b.String())
	if name == "" {
		name = "document-" + itoa(int64(n))
	}
	return name
}

// bedrockStop maps a Converse stopReason to an Anthropic stop_reason.
func bedrockStop(reason string) string {
	switch reason {
	case "end_turn", "tool_use", "max_tokens", "stop_sequence", "model_context_window_exceeded":
		return reason
	case "guardrail_intervened", "content_filtered":
		return "refusal"
	}
	return "end_turn"
}

// bedrockMessageID is the ID of a Bedrock message, which has none: the
// request's (x-amzn-RequestId), else one derived from the body.
func bedrockMessageID(requestID string, body []byte) string {
	if requestID != "" {
		return "msg_" + requestID
	}
	h := fnv.New64a()
	h.Write(body)
	return "msg_" + hex.EncodeToString(h.Sum(nil))
}

// decodeBedrockResponse decodes a Converse response into the normalised
// message, and records its usage; it returns Bedrock's stopReason.
func decodeBedrockResponse(body []byte, model, requestID string, m *meter) (*anResponse, string, error) {
	var resp brResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, "", err
	}
	m.setBedrock(resp.Usage)
	out := &anResponse{ID: bedrockMessageID(requestID, body), Type: "message", Role: "assistant", Model: model, Content: []anBlock{}}
	if msg := resp.Output.Message; msg != nil {
		for _, b := range msg.Content {
			switch {
			case b.Text != nil:
				m.content(len(*b.Text))
				out.Content = append(out.Content, anBlock{Type: "text", Text: b.Text})
			case b.ToolUse != nil:
				input := json.RawMessage(compactJSON(b.ToolUse.Input))
				m.content(len(b.ToolUse.Name) + len(input))
				out.Content = append(out.Content, anBlock{Type: "tool_use", ID: b.ToolUse.ToolUseID, Name: b.ToolUse.Name, Input: input})
			case b.ReasoningContent != nil && b.ReasoningContent.ReasoningText != nil:
				rt := b.ReasoningContent.ReasoningText
				m.content(len(rt.Text))
				out.Content = append(out.Content, anBlock{Type: "thinking", Thinking: ptr(rt.Text), Signature: ptr(rt.Signature)})
			case b.ReasoningContent != nil && b.ReasoningContent.RedactedContent != "":
				out.Content = append(out.Content, anBlock{Type: "redacted_thinking", Data: b.ReasoningContent.RedactedContent})
			}
		}
	}
	out.StopReason = ptr(bedrockStop(resp.StopReason))
	return out, resp.StopReason, nil
}

// brDec decodes a converse-stream event stream into the normalised
// events. Bedrock opens text and reasoning blocks implicitly with their
// first delta and some models never stop a block (bifrost#4262): a block
// is stopped when another starts or the message stops. messageStop
// carries the stop reason and the metadata event after it the usage,
// which ends the message.
type brDec struct {
	call *Call
	m    *meter
	out  sink
	id   string // the message ID

	started  bool
	open     int // index of the open block, -1 for none
	openKind blockKind
	openBr   int // Bedrock's contentBlockIndex of the open block
	next     int
	finished bool
	done     bool
}

// event is never called: Bedrock streams are binary, fed through frame.
func (t *brDec) event(dst []byte, e sse.Event) []byte { return dst }

func (t *brDec) frame(dst []byte, msg *eventstream.Message) []byte {
	if t.done {
		return dst
	}
	switch mt, _ := msg.String(":message-type"); mt {
	case "exception":
		et, _ := msg.String(":exception-type")
		var ev brEvent
		json.Unmarshal(msg.Payload, &ev)
		return t.fail(dst, bedrockErrorType(et), cmpOr(ev.Message, et))
	case "error":
		code, _ := msg.String(":error-code")
		text, _ := msg.String(":error-message")
		return t.fail(dst, bedrockErrorType(code), cmpOr(text, code))
	}
	et, _ := msg.String(":event-type")
	var ev brEvent
	if json.Unmarshal(msg.Payload, &ev) != nil {
		return dst
	}
	switch et {
	case "messageStart":
		dst = t.start(dst)
	case "contentBlockStart":
		dst = t.start(dst)
		if ev.Start != nil && ev.Start.ToolUse != nil {
			tu := ev.Start.ToolUse
			dst = t.close(dst)
			t.m.content(len(tu.Name))
			t.open, t.openKind, t.openBr = t.next, blockTool, ev.ContentBlockIndex
			t.next++
			dst = t.out.blockStart(dst, t.open, blockInfo{kind: blockTool, id: tu.ToolUseID, name: tu.Name})
		}
	case "contentBlockDelta":
		d := ev.Delta
		if d == nil {
			break
		}
		dst = t.start(dst)
		i := ev.ContentBlockIndex
		switch {
		case d.Text != nil:
			if *d.Text != "" {
				dst = t.ensure(dst, blockText, i)
				t.m.content(len(*d.Text))
				dst = t.out.delta(dst, t.open, deltaText, *d.Text)
			}
		case d.ToolUse != nil:
			if t.open >= 0 && t.openKind == blockTool && t.openBr == i && d.ToolUse.Input != "" {
				t.m.content(len(d.ToolUse.Input))
				dst = t.out.delta(dst, t.open, deltaJSON, d.ToolUse.Input)
			}
		case d.ReasoningContent != nil:
			rc := d.ReasoningContent
			switch {
			case rc.Text != nil:
				if *rc.Text != "" {
					dst = t.ensure(dst, blockThinking, i)
					t.m.content(len(*rc.Text))
					dst = t.out.delta(dst, t.open, deltaThinking, *rc.Text)
				}
			case rc.Signature != nil:
				dst = t.ensure(dst, blockThinking, i)
				dst = t.out.delta(dst, t.open, deltaSignature, *rc.Signature)
			case rc.RedactedContent != nil:
				dst = t.close(dst)
				idx := t.next
				t.next++
				dst = t.out.blockStart(dst, idx, blockInfo{kind: blockRedacted, data: *rc.RedactedContent})
				dst = t.out.blockStop(dst, idx)
			}
		}
	case "contentBlockStop":
		if t.open >= 0 && t.openBr == ev.ContentBlockIndex {
			dst = t.close(dst)
		}
	case "messageStop":
		dst = t.start(dst)
		dst = t.close(dst)
		if !t.finished {
			t.finished = true
			t.call.StopReason = ev.StopReason
			dst = t.out.finish(dst, bedrockStop(ev.StopReason))
		}
	case "metadata":
		t.m.setBedrock(ev.Usage)
		if t.finished {
			t.done = true
			dst = t.out.end(dst)
		}
	}
	return dst
}

func (t *brDec) start(dst []byte) []byte {
	if t.started {
		return dst
	}
	t.started = true
	t.call.ResponseModel = t.call.Model
	return t.out.start(dst, t.id, t.call.Model)
}

// ensure makes the open block one of kind k for Bedrock's block i.
func (t *brDec) ensure(dst []byte, k blockKind, i int) []byte {
	if t.open >= 0 && t.openKind == k && t.openBr == i {
		return dst
	}
	dst = t.close(dst)
	t.open, t.openKind, t.openBr = t.next, k, i
	t.next++
	return t.out.blockStart(dst, t.open, blockInfo{kind: k})
}

func (t *brDec) close(dst []byte) []byte {
	if t.open < 0 {
		return dst
	}
	dst = t.out.blockStop(dst, t.open)
	t.open, t.openKind = -1, 0
	return dst
}

func (t *brDec) fail(dst []byte, typ, msg string) []byte {
	t.done = true
	t.call.UpstreamError = msg
	dst = t.start(dst)
	return t.out.fail(dst, typ, msg)
}

func (t *brDec) end(dst []byte) []byte {
	if t.done {
		return dst
	}
	if t.finished {
		// The stream stopped without its metadata: the usage is
		// estimated.
		t.done = true
		return t.out.end(dst)
	}
	return t.fail(dst, "api_error", cutShort)
}

func (t *brDec) abort(dst []byte, msg string) []byte {
	return t.fail(dst, "api_error", msg)
}

// bedrockErrorType maps a Bedrock exception to an Anthropic error type.
func bedrockErrorType(exception string) string {
	switch strings.ToLower(strings.TrimSuffix(exception, "Exception")) {
	case "throttling", "servicequotaexceeded":
		return "rate_limit_error"
	case "validation":
		return "invalid_request_error"
	case "serviceunavailable", "modelnotready":
		return "overloaded_error"
	case "modeltimeout":
		return "timeout_error"
	case "accessdenied":
		return "permission_error"
	case "resourcenotfound":
		return "not_found_error"
	}
	return "api_error"
}
