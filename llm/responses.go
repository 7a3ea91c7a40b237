package llm

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/porticoproxy/portico/internal/sse"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// The OpenAI Responses API (POST /v1/responses), for clients such as
// Codex that speak nothing else. An OpenAI provider that has it gets the
// request as is (see Provider.Responses); every other provider gets it
// translated to Chat Completions first (and from there to its own
// schema), statelessly: the client sends the whole conversation in input,
// as Codex does, and previous_response_id is refused.
//
// Reasoning round-trips as reasoning items: a thinking block's text is
// the item's summary and its signature the item's encrypted_content, so
// a client that sends its reasoning items back (Codex does, with
// include: ["reasoning.encrypted_content"]) keeps Anthropic's signed
// thinking and Gemini's thought signatures across turns.

// Responses wire types (request).

type rsRequest struct {
	Model              string          `json:"model"`
	Input              json.RawMessage `json:"input"`
	Instructions       json.RawMessage `json:"instructions"`
	Tools              []rsTool        `json:"tools"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	ParallelToolCalls  *bool           `json:"parallel_tool_calls"`
	MaxOutputTokens    *int64          `json:"max_output_tokens"`
	Temperature        *float64        `json:"temperature"`
	TopP               *float64        `json:"top_p"`
	Reasoning          *rsReasoning    `json:"reasoning"`
	Stream             bool            `json:"stream"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Text               *struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	User string `json:"user"`
}

type rsReasoning struct {
	Effort *string `json:"effort"`
}

type rsTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
}

type rsItem struct {
	Type             string          `json:"type"`
	Role             string          `json:"role"`
	Content          json.RawMessage `json:"content"`
	CallID           string          `json:"call_id"`
	Name             string          `json:"name"`
	Arguments        string          `json:"arguments"`
	Output           json.RawMessage `json:"output"`
	Summary          []rsPart        `json:"summary"`
	EncryptedContent string          `json:"encrypted_content"`
}

type rsPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Refusal  string `json:"refusal"`
	ImageURL string `json:"image_url"`
	FileID   string `json:"file_id"`
	FileData string `json:"file_data"`
	Filename string `json:"filename"`
	Detail   string `json:"detail"`
}

// rsEcho is what a translated Responses request says that its response
// echoes back: the client's own values of these members.
type rsEcho struct {
	model  string
	fields [][2][]byte // key, raw value
}

var rsEchoed = [...]string{"instructions", "max_output_tokens", "metadata", "parallel_tool_calls", "reasoning",
	"temperature", "text", "tool_choice", "tools", "top_p", "user"}

// redactedPrefix marks the encrypted_content of a reasoning item that
// carries Anthropic redacted thinking.
const redactedPrefix = "redacted_thinking:"

// responsesToChat translates a Responses request into a Chat Completions
// request.
func responsesToChat(body []byte) (*oaRequest, *rsEcho, *apiError) {
	var req rsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, badRequest("invalid request body: %v", err)
	}
	echo := &rsEcho{model: req.Model}
	if obj, err := jsonobj.Parse(body); err == nil {
		for _, k := range rsEchoed {
			if v, ok := obj.Get(k); ok {
				echo.fields = append(echo.fields, [2][]byte{[]byte(k), v})
			}
		}
	}
	if req.PreviousResponseID != nil && *req.PreviousResponseID != "" {
		return nil, nil, badRequest("previous_response_id: this gateway keeps no responses; send the whole conversation in input")
	}
	out := &oaRequest{
		Model:               req.Model,
		Stream:              req.Stream,
		Temperature:         req.Temperature,
		TopP:                req.TopP,
		ParallelToolCalls:   req.ParallelToolCalls,
		User:                req.User,
		MaxCompletionTokens: req.MaxOutputTokens,
	}
	if req.Stream {
		out.StreamOptions = &oaStreamOptions{IncludeUsage: true}
	}
	if r := req.Reasoning; r != nil && r.Effort != nil {
		out.ReasoningEffort = *r.Effort
	}
	if req.Text != nil && len(req.Text.Format) > 0 && string(req.Text.Format) != "null" {
		var f struct {
			Type   string          `json:"type"`
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
			Strict *bool           `json:"strict"`
		}
		if err := json.Unmarshal(req.Text.Format, &f); err != nil {
			return nil, nil, badRequest("text.format: must be an object")
		}
		switch f.Type {
		case "text", "":
		case "json_object":
			out.ResponseFormat = json.RawMessage(`{"type":"json_object"}`)
		case "json_schema":
			rf := oaResponseFormat{Type: "json_schema"}
			rf.JSONSchema = &struct {
				Name   string          `json:"name,omitempty"`
				Schema json.RawMessage `json:"schema,omitempty"`
				Strict *bool           `json:"strict,omitempty"`
			}{f.Name, f.Schema, f.Strict}
			out.ResponseFormat, _ = marshal(rf)
		default:
			return nil, nil, badRequest("text.format.type: %q is not supported", f.Type)
		}
	}
	for i, t := range req.Tools {
		if t.Type != "function" {
			return nil, nil, badRequest("tools[%d]: tool type %q is not supported by this model's provider (only function tools)", i, t.Type)
		}
		out.Tools = append(out.Tools, oaTool{Type: "function", Function: &oaFunction{Name: t.Name, Description: t.Description, Parameters: t.Parameters}})
	}
	if tc := req.ToolChoice; len(tc) > 0 && string(tc) != "null" {
		if _, ok := stringContent(tc); ok {
			out.ToolChoice = tc
		} else {
			var c struct {
				Type string `json:"type"`
				Name string `json:"name"`
			}
			json.Unmarshal(tc, &c)
			if c.Type != "function" || c.Name == "" {
				return nil, nil, badRequest("tool_choice: type %q is not supported by this model's provider", c.Type)
			}
			out.ToolChoice, _ = marshal(map[string]any{"type": "function", "function": map[string]string{"name": c.Name}})
		}
	}
	if len(req.Instructions) > 0 && string(req.Instructions) != "null" {
		s, ok := stringContent(req.Instructions)
		if !ok {
			return nil, nil, badRequest("instructions: must be a string")
		}
		if s != "" {
			c, _ := marshal(s)
			out.Messages = append(out.Messages, oaMessage{Role: "system", Content: c})
		}
	}
	if s, ok := stringContent(req.Input); ok {
		c, _ := marshal(s)
		out.Messages = append(out.Messages, oaMessage{Role: "user", Content: c})
		return out, echo, nil
	}
	var items []rsItem
	if len(req.Input) > 0 && string(req.Input) != "null" {
		if err := json.Unmarshal(req.Input, &items); err != nil {
			return nil, nil, badRequest("input: must be a string or an array of input items")
		}
	}
	var thinking []anBlock // reasoning for the next assistant message
	for i, it := range items {
		typ := it.Type
		if typ == "" && it.Role != "" {
			typ = "message"
		}
		switch typ {
		case "message":
			msg, err := responsesMessage(&it)
			if err != nil {
				return nil, nil, badRequest("input[%d].%s", i, err.message)
			}
			if msg.Role == "assistant" {
				msg.ThinkingBlocks, thinking = thinking, nil
			}
			out.Messages = append(out.Messages, msg)
		case "function_call":
			tc := oaToolCall{ID: it.CallID, Type: "function", Function: oaCallFunction{Name: it.Name, Arguments: it.Arguments}}
			// A call joins the assistant message before it, even across
			// the outputs of its sibling calls (clients interleave calls
			// and outputs): parallel calls are one assistant turn.
			n := len(out.Messages)
			for n > 0 && out.Messages[n-1].Role == "tool" && len(out.Messages[n-1].ToolCalls) == 0 {
				n--
			}
			if n > 0 && out.Messages[n-1].Role == "assistant" && len(thinking) == 0 &&
				(n == len(out.Messages) || len(out.Messages[n-1].ToolCalls) > 0) {
				out.Messages[n-1].ToolCalls = append(out.Messages[n-1].ToolCalls, tc)
				break
			}
			out.Messages = append(out.Messages, oaMessage{Role: "assistant", ToolCalls: []oaToolCall{tc}, ThinkingBlocks: thinking})
			thinking = nil
		case "function_call_output":
			text, err := responsesOutputText(it.Output)
			if err != nil {
				return nil, nil, badRequest("input[%d].output: %s", i, err.message)
			}
			c, _ := marshal(text)
			out.Messages = append(out.Messages, oaMessage{Role: "tool", ToolCallID: it.CallID, Content: c})
		case "reasoning":
			var sb strings.Builder
			for _, s := range it.Summary {
				sb.WriteString(s.Text)
			}
			switch enc := it.EncryptedContent; {
			case strings.HasPrefix(enc, redactedPrefix):
				thinking = append(thinking, anBlock{Type: "redacted_thinking", Data: strings.TrimPrefix(enc, redactedPrefix)})
			case enc != "":
				text := sb.String()
				thinking = append(thinking, anBlock{Type: "thinking", Thinking: &text, Signature: &enc})
			}
			// Without encrypted content the reasoning cannot be sent back.
		case "item_reference":
			return nil, nil, badRequest("input[%d]: item_reference needs stored items, which this gateway does not keep", i)
		default:
			return nil, nil, badRequest("input[%d].type: %q is not supported by this model's provider", i, typ)
		}
	}
	return out, echo, nil
}

// responsesMessage converts a message input item.
func responsesMessage(it *rsItem) (oaMessage, *apiError) {
	msg := oaMessage{Role: it.Role}
	switch it.Role {
	case "developer":
		msg.Role = "system"
	case "user", "system", "assistant":
	default:
		return msg, badRequest("role: %q is not supported", it.Role)
	}
	if s, ok := stringContent(it.Content); ok {
		msg.Content, _ = marshal(s)
		return msg, nil
	}
	var ps []rsPart
	if err := json.Unmarshal(it.Content, &ps); err != nil {
		return msg, badRequest("content: must be a string or an array of content parts")
	}
	var out []oaPart
	for j, p := range ps {
		switch p.Type {
		case "input_text", "output_text", "text":
			text := p.Text
			out = append(out, oaPart{Type: "text", Text: &text})
		case "refusal":
			out = append(out, oaPart{Type: "refusal", Refusal: p.Refusal})
		case "input_image":
			if p.ImageURL == "" {
				return msg, badRequest("content[%d]: images by file_id are not supported; send image_url", j)
			}
			out = append(out, oaPart{Type: "image_url", ImageURL: &oaImageURL{URL: p.ImageURL, Detail: p.Detail}})
		case "input_file":
			if p.FileData == "" {
				return msg, badRequest("content[%d]: files by file_id or URL are not supported; send file_data", j)
			}
			data := p.FileData
			if !strings.HasPrefix(data, "data:") {
				data = "data:application/pdf;base64," + data
			}
			out = append(out, oaPart{Type: "file", File: &oaFile{FileData: data, Filename: p.Filename}})
		default:
			return msg, badRequest("content[%d].type: %q is not supported by this model's provider", j, p.Type)
		}
	}
	if it.Role == "system" || it.Role == "developer" || it.Role == "assistant" {
		// Text only: join it, as every Chat Completions server takes a
		// string; developer messages go as system messages, which every
		// OpenAI-compatible server knows.
		var sb strings.Builder
		for _, p := range out {
			switch {
			case p.Text != nil:
				sb.WriteString(*p.Text)
			case p.Type == "refusal":
				sb.WriteString(p.Refusal)
			default:
				return msg, badRequest("content: only text is allowed in %s messages", it.Role)
			}
		}
		msg.Content, _ = marshal(sb.String())
		return msg, nil
	}
	msg.Content, _ = marshal(out)
	return msg, nil
}

// responsesOutputText flattens a function_call_output's output.
func responsesOutputText(raw json.RawMessage) (string, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if s, ok := stringContent(raw); ok {
		return s, nil
	}
	var ps []rsPart
	if err := json.Unmarshal(raw, &ps); err != nil {
		return "", badRequest("must be a string or an array of content parts")
	}
	var sb strings.Builder
	for _, p := range ps {
		if p.Type != "input_text" && p.Type != "output_text" && p.Type != "text" {
			return "", badRequest("only text parts are supported by this model's provider")
		}
		sb.WriteString(p.Text)
	}
	return sb.String(), nil
}

// Responses output.

// rsOut is one output item being built.
type rsOut struct {
	kind      blockKind // text: message, thinking/redacted: reasoning, tool: function_call
	id        string
	callID    string
	name      string
	text      strings.Builder // message text, reasoning summary, arguments
	signature string
	summary   bool // a summary part was opened
	open      bool // its block has not stopped: incomplete if the stream fails
}

// responseID returns a response ID for a provider message ID.
func responseID(id string) string {
	if strings.HasPrefix(id, "resp_") {
		return id
	}
	return "resp_" + strings.TrimPrefix(strings.TrimPrefix(id, "msg_"), "chatcmpl-")
}

func itemID(prefix, resp string, n int) string {
	return prefix + strings.TrimPrefix(resp, "resp_") + "_" + strconv.Itoa(n)
}

// appendItem appends an output item as JSON; done says whether it is
// complete.
func appendItem(dst []byte, it *rsOut, done bool) []byte {
	status := `"in_progress"`
	switch {
	case done && it.open:
		status = `"incomplete"`
	case done:
		status = `"completed"`
	}
	switch it.kind {
	case blockTool:
		dst = append(dst, `{"type":"function_call","id":`...)
		dst = jsonobj.AppendString(dst, it.id)
		dst = append(dst, `,"call_id":`...)
		dst = jsonobj.AppendString(dst, it.callID)
		dst = append(dst, `,"name":`...)
		dst = jsonobj.AppendString(dst, it.name)
		dst = append(dst, `,"arguments":`...)
		if done {
			dst = jsonobj.AppendString(dst, it.text.String())
		} else {
			dst = append(dst, `""`...)
		}
		dst = append(dst, `,"status":`...)
		dst = append(dst, status...)
		return append(dst, '}')
	case blockThinking, blockRedacted:
		dst = append(dst, `{"type":"reasoning","id":`...)
		dst = jsonobj.AppendString(dst, it.id)
		dst = append(dst, `,"summary":[`...)
		if done && it.summary {
			dst = append(dst, `{"type":"summary_text","text":`...)
			dst = jsonobj.AppendString(dst, it.text.String())
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
		if done && it.signature != "" {
			dst = append(dst, `,"encrypted_content":`...)
			dst = jsonobj.AppendString(dst, it.signature)
		}
		return append(dst, '}')
	}
	dst = append(dst, `{"type":"message","id":`...)
	dst = jsonobj.AppendString(dst, it.id)
	dst = append(dst, `,"status":`...)
	dst = append(dst, status...)
	dst = append(dst, `,"role":"assistant","content":[`...)
	if done {
		dst = appendTextPart(dst, it.text.String())
	}
	return append(dst, "]}"...)
}

func appendTextPart(dst []byte, text string) []byte {
	dst = append(dst, `{"type":"output_text","text":`...)
	dst = jsonobj.AppendString(dst, text)
	return append(dst, `,"annotations":[],"logprobs":[]}`...)
}

// responseStatus maps a stop reason to a response's status and
// incomplete reason.
func responseStatus(stop string) (status, incomplete string) {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "incomplete", "max_output_tokens"
	case "refusal":
		return "incomplete", "content_filter"
	}
	return "completed", ""
}

// appendResponse appends a response object.
func appendResponse(dst []byte, id string, created int64, model, status, incomplete string, errCode, errMsg string,
	items []*rsOut, usage *Usage, echo *rsEcho) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsonobj.AppendString(dst, id)
	dst = append(dst, `,"object":"response","created_at":`...)
	dst = strconv.AppendInt(dst, created, 10)
	dst = append(dst, `,"status":`...)
	dst = jsonobj.AppendString(dst, status)
	dst = append(dst, `,"background":false,"error":`...)
	if errMsg != "" {
		dst = append(dst, `{"code":`...)
		dst = jsonobj.AppendString(dst, errCode)
		dst = append(dst, `,"message":`...)
		dst = jsonobj.AppendString(dst, errMsg)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"incomplete_details":`...)
	if incomplete != "" {
		dst = append(dst, `{"reason":`...)
		dst = jsonobj.AppendString(dst, incomplete)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"model":`...)
	dst = jsonobj.AppendString(dst, model)
	dst = append(dst, `,"output":[`...)
	for i, it := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendItem(dst, it, true)
	}
	dst = append(dst, `],"previous_response_id":null,"store":false`...)
	if echo != nil {
		for _, f := range echo.fields {
			dst = append(dst, ',')
			dst = jsonobj.AppendString(dst, string(f[0]))
			dst = append(dst, ':')
			dst = append(dst, f[1]...)
		}
	}
	dst = append(dst, `,"usage":`...)
	if usage == nil {
		dst = append(dst, "null"...)
	} else {
		u := *usage
		dst = append(dst, `{"input_tokens":`...)
		dst = strconv.AppendInt(dst, u.InputTokens, 10)
		dst = append(dst, `,"input_tokens_details":{"cached_tokens":`...)
		dst = strconv.AppendInt(dst, u.CacheReadTokens, 10)
		dst = append(dst, `},"output_tokens":`...)
		dst = strconv.AppendInt(dst, u.OutputTokens, 10)
		dst = append(dst, `,"output_tokens_details":{"reasoning_tokens":`...)
		dst = strconv.AppendInt(dst, u.ReasoningTokens, 10)
		dst = append(dst, `},"total_tokens":`...)
		dst = strconv.AppendInt(dst, u.TotalTokens(), 10)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// encodeResponsesResponse encodes the normalised message as a Responses
// response object.
func encodeResponsesResponse(msg *anResponse, created int64, u Usage, echo *rsEcho) ([]byte, error) {
	id := responseID(msg.ID)
	var items []*rsOut
	for i := range msg.Content {
		b := &msg.Content[i]
		it := &rsOut{}
		switch b.Type {
		case "text":
			if b.Text == nil {
				continue
			}
			it.kind, it.id = blockText, itemID("msg_", id, len(items))
			it.text.WriteString(*b.Text)
		case "thinking":
			it.kind, it.id = blockThinking, itemID("rs_", id, len(items))
			if b.Thinking != nil && *b.Thinking != "" {
				it.summary = true
				it.text.WriteString(*b.Thinking)
			}
			if b.Signature != nil {
				it.signature = *b.Signature
			}
		case "redacted_thinking":
			it.kind, it.id, it.signature = blockRedacted, itemID("rs_", id, len(items)), redactedPrefix+b.Data
		case "tool_use":
			it.kind, it.id, it.callID, it.name = blockTool, itemID("fc_", id, len(items)), b.ID, b.Name
			it.text.WriteString(compactJSON(b.Input))
		default:
			continue
		}
		items = append(items, it)
	}
	stop := ""
	if msg.StopReason != nil {
		stop = *msg.StopReason
	}
	status, incomplete := responseStatus(stop)
	return appendResponse(nil, id, created, msg.Model, status, incomplete, "", "", items, &u, echo), nil
}

// rsSink writes the normalised events as a Responses stream: named events
// whose data carries its type and a sequence number. Text blocks are
// message items, thinking blocks reasoning items (summary text, the
// signature as encrypted_content), tool uses function_call items; each
// item is added when its block starts, gets its deltas as they arrive,
// and is done, whole, when its block stops. response.completed (or
// response.incomplete) carries the whole response with its usage.
type rsSink struct {
	m       *meter
	created int64
	echo    *rsEcho

	id, model string
	seq       int64
	items     []*rsOut
	byBlock   []int // block index → output index + 1
	stop      string
}

func newRSSink(m *meter, created int64, echo *rsEcho) *rsSink {
	return &rsSink{m: m, created: created, echo: echo}
}

// ev starts an event: its name and the data up to its first member.
func (t *rsSink) ev(dst []byte, typ string) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, typ...)
	dst = append(dst, "\ndata: {\"type\":\""...)
	dst = append(dst, typ...)
	dst = append(dst, `","sequence_number":`...)
	dst = strconv.AppendInt(dst, t.seq, 10)
	t.seq++
	return dst
}

func evEnd(dst []byte) []byte { return append(dst, "}\n\n"...) }

func (t *rsSink) start(dst []byte, id, model string) []byte {
	t.id, t.model = responseID(cmpOr(id, "gateway")), model
	for _, typ := range [...]string{"response.created", "response.in_progress"} {
		dst = t.ev(dst, typ)
		dst = append(dst, `,"response":`...)
		dst = appendResponse(dst, t.id, t.created, t.model, "in_progress", "", "", "", nil, nil, t.echo)
		dst = evEnd(dst)
	}
	return dst
}

func (t *rsSink) item(index int) *rsOut {
	if index < len(t.byBlock) && t.byBlock[index] > 0 {
		return t.items[t.byBlock[index]-1]
	}
	return nil
}

func (t *rsSink) itemHead(dst []byte, typ string, it *rsOut) []byte {
	dst = t.ev(dst, typ)
	dst = append(dst, `,"item_id":`...)
	dst = jsonobj.AppendString(dst, it.id)
	dst = append(dst, `,"output_index":`...)
	return strconv.AppendInt(dst, int64(t.outputIndex(it)), 10)
}

func (t *rsSink) outputIndex(it *rsOut) int {
	for i, x := range t.items {
		if x == it {
			return i
		}
	}
	return -1
}

func (t *rsSink) blockStart(dst []byte, index int, b blockInfo) []byte {
	n := len(t.items)
	it := &rsOut{kind: b.kind, open: true}
	switch b.kind {
	case blockText:
		it.id = itemID("msg_", t.id, n)
	case blockThinking:
		it.id = itemID("rs_", t.id, n)
	case blockRedacted:
		it.id, it.signature = itemID("rs_", t.id, n), redactedPrefix+b.data
	case blockTool:
		it.id, it.callID, it.name = itemID("fc_", t.id, n), b.id, b.name
	}
	t.items = append(t.items, it)
	for len(t.byBlock) <= index {
		t.byBlock = append(t.byBlock, 0)
	}
	t.byBlock[index] = n + 1
	dst = t.ev(dst, "response.output_item.added")
	dst = append(dst, `,"output_index":`...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, `,"item":`...)
	dst = appendItem(dst, it, false)
	dst = evEnd(dst)
	if b.kind == blockText {
		dst = t.itemHead(dst, "response.content_part.added", it)
		dst = append(dst, `,"content_index":0,"part":`...)
		dst = appendTextPart(dst, "")
		dst = evEnd(dst)
	}
	return dst
}

func (t *rsSink) delta(dst []byte, index int, kind deltaKind, text string) []byte {
	it := t.item(index)
	if it == nil {
		return dst
	}
	switch kind {
	case deltaText:
		it.text.WriteString(text)
		dst = t.itemHead(dst, "response.output_text.delta", it)
		dst = append(dst, `,"content_index":0,"delta":`...)
		dst = jsonobj.AppendString(dst, text)
		dst = append(dst, `,"logprobs":[]`...)
		return evEnd(dst)
	case deltaThinking:
		if !it.summary {
			it.summary = true
			dst = t.itemHead(dst, "response.reasoning_summary_part.added", it)
			dst = append(dst, `,"summary_index":0,"part":{"type":"summary_text","text":""}`...)
			dst = evEnd(dst)
		}
		it.text.WriteString(text)
		dst = t.itemHead(dst, "response.reasoning_summary_text.delta", it)
		dst = append(dst, `,"summary_index":0,"delta":`...)
		dst = jsonobj.AppendString(dst, text)
		return evEnd(dst)
	case deltaSignature:
		it.signature += text
	case deltaJSON:
		it.text.WriteString(text)
		dst = t.itemHead(dst, "response.function_call_arguments.delta", it)
		dst = append(dst, `,"delta":`...)
		dst = jsonobj.AppendString(dst, text)
		return evEnd(dst)
	}
	return dst
}

func (t *rsSink) blockStop(dst []byte, index int) []byte {
	it := t.item(index)
	if it == nil {
		return dst
	}
	t.byBlock[index] = 0
	it.open = false
	switch it.kind {
	case blockText:
		dst = t.itemHead(dst, "response.output_text.done", it)
		dst = append(dst, `,"content_index":0,"text":`...)
		dst = jsonobj.AppendString(dst, it.text.String())
		dst = append(dst, `,"logprobs":[]`...)
		dst = evEnd(dst)
		dst = t.itemHead(dst, "response.content_part.done", it)
		dst = append(dst, `,"content_index":0,"part":`...)
		dst = appendTextPart(dst, it.text.String())
		dst = evEnd(dst)
	case blockThinking:
		if it.summary {
			dst = t.itemHead(dst, "response.reasoning_summary_text.done", it)
			dst = append(dst, `,"summary_index":0,"text":`...)
			dst = jsonobj.AppendString(dst, it.text.String())
			dst = evEnd(dst)
			dst = t.itemHead(dst, "response.reasoning_summary_part.done", it)
			dst = append(dst, `,"summary_index":0,"part":{"type":"summary_text","text":`...)
			dst = jsonobj.AppendString(dst, it.text.String())
			dst = append(dst, '}')
			dst = evEnd(dst)
		}
	case blockTool:
		dst = t.itemHead(dst, "response.function_call_arguments.done", it)
		dst = append(dst, `,"name":`...)
		dst = jsonobj.AppendString(dst, it.name)
		dst = append(dst, `,"arguments":`...)
		dst = jsonobj.AppendString(dst, it.text.String())
		dst = evEnd(dst)
	}
	dst = t.ev(dst, "response.output_item.done")
	dst = append(dst, `,"output_index":`...)
	dst = strconv.AppendInt(dst, int64(t.outputIndex(it)), 10)
	dst = append(dst, `,"item":`...)
	dst = appendItem(dst, it, true)
	return evEnd(dst)
}

func (t *rsSink) finish(dst []byte, stop string) []byte {
	t.stop = stop
	return dst
}

func (t *rsSink) end(dst []byte) []byte {
	status, incomplete := responseStatus(t.stop)
	typ := "response.completed"
	if status == "incomplete" {
		typ = "response.incomplete"
	}
	u := t.m.u
	dst = t.ev(dst, typ)
	dst = append(dst, `,"response":`...)
	dst = appendResponse(dst, t.id, t.created, t.model, status, incomplete, "", "", t.items, &u, t.echo)
	return evEnd(dst)
}

func (t *rsSink) fail(dst []byte, typ, msg string) []byte {
	if t.id == "" {
		t.id = "resp_gateway"
	}
	u := t.m.u
	dst = t.ev(dst, "response.failed")
	dst = append(dst, `,"response":`...)
	dst = appendResponse(dst, t.id, t.created, t.model, "failed", "", typ, msg, t.items, &u, t.echo)
	return evEnd(dst)
}

// Native Responses: metering what passes through.

// rsUsage is the Responses API's usage; input_tokens includes the cached
// tokens, output_tokens the reasoning tokens.
type rsUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	OutputTokens       int64 `json:"output_tokens"`
	InputTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

func (m *meter) setResponses(u *rsUsage) {
	if u == nil {
		return
	}
	m.u = Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens}
	if d := u.InputTokensDetails; d != nil {
		m.u.CacheReadTokens = d.CachedTokens
	}
	if d := u.OutputTokensDetails; d != nil {
		m.u.ReasoningTokens = d.ReasoningTokens
	}
	m.hasInput, m.final = true, true
}

// rsResponse is the part of a response object the gateway reads.
type rsResponse struct {
	Model             string   `json:"model"`
	Status            string   `json:"status"`
	Usage             *rsUsage `json:"usage"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
	Output []struct {
		Type      string   `json:"type"`
		Arguments string   `json:"arguments"`
		Content   []rsPart `json:"content"`
		Summary   []rsPart `json:"summary"`
	} `json:"output"`
}

func (r *rsResponse) stopReason() string {
	if r.IncompleteDetails != nil && r.IncompleteDetails.Reason != "" {
		return r.IncompleteDetails.Reason
	}
	return r.Status
}

// meterResponses records the usage of a response object that passes
// through unchanged, and returns its model and status.
func meterResponses(body []byte, m *meter) (model, stop string) {
	var r rsResponse
	if json.Unmarshal(body, &r) != nil {
		return "", ""
	}
	m.setResponses(r.Usage)
	for _, o := range r.Output {
		m.content(len(o.Arguments))
		for _, p := range o.Content {
			m.content(len(p.Text) + len(p.Refusal))
		}
		for _, p := range o.Summary {
			m.content(len(p.Text))
		}
	}
	return r.Model, r.stopReason()
}

// rsPass is a Responses stream to a Responses client: events pass
// unchanged while the gateway reads their usage (response.completed
// carries it).
type rsPass struct {
	call *Call
	m    *meter
	seq  int64
	done bool // a terminal event seen
}

func (t *rsPass) event(dst []byte, e sse.Event) []byte {
	if out, ok := passOther(dst, e); ok {
		return out
	}
	var ev struct {
		Type           string      `json:"type"`
		SequenceNumber int64       `json:"sequence_number"`
		Delta          string      `json:"delta"`
		Response       *rsResponse `json:"response"`
		Message        string      `json:"message"`
	}
	if json.Unmarshal(e.Data, &ev) == nil {
		t.seq = max(t.seq, ev.SequenceNumber+1)
		switch ev.Type {
		case "response.created":
			if ev.Response != nil {
				t.call.ResponseModel = ev.Response.Model
			}
		case "response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta",
			"response.reasoning_summary_text.delta", "response.reasoning_text.delta":
			t.m.content(len(ev.Delta))
		case "response.completed", "response.incomplete", "response.failed":
			t.done = true
			if r := ev.Response; r != nil {
				t.m.setResponses(r.Usage)
				t.call.ResponseModel = cmpOr(r.Model, t.call.ResponseModel)
				t.call.StopReason = r.stopReason()
				if r.Error != nil {
					t.call.UpstreamError = r.Error.Message
				}
			}
		case "error":
			t.done = true
			t.call.UpstreamError = cmpOr(ev.Message, "upstream error")
		}
	}
	return sse.AppendEvent(dst, e)
}

func (t *rsPass) end(dst []byte) []byte {
	if t.done {
		return dst
	}
	return t.abort(dst, cutShort)
}

func (t *rsPass) abort(dst []byte, msg string) []byte {
	t.call.UpstreamError = msg
	t.done = true
	dst = append(dst, "event: error\ndata: {\"type\":\"error\",\"sequence_number\":"...)
	dst = strconv.AppendInt(dst, t.seq, 10)
	t.seq++
	dst = append(dst, `,"code":"api_error","message":`...)
	dst = jsonobj.AppendString(dst, msg)
	return append(dst, ",\"param\":null}\n\n"...)
}
