package llm

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/porticoproxy/portico/internal/sse"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// A streamer turns the events of an upstream stream into the client's
// bytes, one event at a time: nothing is held back beyond the event being
// decoded (the sse.Decoder buffers only an event split across reads), so
// text and tool-argument deltas reach the client as they arrive.
type streamer interface {
	// event appends the client bytes for one upstream event to dst.
	event(dst []byte, e sse.Event) []byte
	// end appends what the client still needs when the upstream stream
	// ends: an error event when it ended before it was complete.
	end(dst []byte) []byte
}

var doneData = []byte("[DONE]")

const cutShort = "upstream stream ended before the response was complete"

func isDone(data []byte) bool { return bytes.Equal(bytes.TrimSpace(data), doneData) }

// passOther re-encodes comment-only and data-less events (keep-alives,
// retry hints) unchanged.
func passOther(dst []byte, e sse.Event) ([]byte, bool) {
	if e.Comment != nil || !e.HasData {
		return sse.AppendEvent(dst, e), true
	}
	return dst, false
}

// oaPass is an OpenAI stream to an OpenAI client: events pass unchanged,
// but for the usage chunk the gateway asked for on the client's behalf.
type oaPass struct {
	call     *Call
	m        *meter
	strip    bool // the client did not ask for usage: drop the usage chunk
	done     bool // [DONE] seen
	finished bool // a finish_reason seen
	errored  bool
}

func (t *oaPass) event(dst []byte, e sse.Event) []byte {
	if out, ok := passOther(dst, e); ok {
		return out
	}
	if isDone(e.Data) {
		t.done = true
		return sse.AppendEvent(dst, e)
	}
	var c oaChunk
	if json.Unmarshal(e.Data, &c) == nil {
		if len(c.Error) > 0 && string(c.Error) != "null" {
			t.errored = true
			_, t.call.UpstreamError = errorFromStreamPayload(c.Error)
		}
		if t.call.ResponseModel == "" {
			t.call.ResponseModel = c.Model
		}
		for i := range c.Choices {
			ch := &c.Choices[i]
			d := &ch.Delta
			t.m.content(len(d.Content) + len(d.ReasoningContent) + len(d.Reasoning) + len(d.Refusal))
			for j := range d.ToolCalls {
				t.m.content(len(d.ToolCalls[j].Function.Arguments) + len(d.ToolCalls[j].Function.Name))
			}
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				t.finished = true
				t.call.StopReason = *ch.FinishReason
			}
		}
		if c.Usage != nil {
			t.m.setOpenAI(c.Usage)
			if t.strip && len(c.Choices) == 0 {
				return dst
			}
		}
	}
	return sse.AppendEvent(dst, e)
}

func (t *oaPass) end(dst []byte) []byte {
	if t.done || t.finished || t.errored {
		return dst
	}
	t.call.UpstreamError = cutShort
	return streamError(dst, false, "api_error", cutShort)
}

// anPass is an Anthropic stream to an Anthropic client: events pass
// unchanged while the gateway reads their usage.
type anPass struct {
	call    *Call
	m       *meter
	raw     anRaw
	done    bool // message_stop seen
	errored bool
}

func (t *anPass) event(dst []byte, e sse.Event) []byte {
	if out, ok := passOther(dst, e); ok {
		return out
	}
	var ev anEvent
	if json.Unmarshal(e.Data, &ev) == nil {
		switch ev.Type {
		case "message_start":
			if ev.Message != nil {
				t.call.ResponseModel = ev.Message.Model
				t.m.setAnthropic(ev.Message.Usage, &t.raw, false)
			}
		case "content_block_start":
			if ev.ContentBlock != nil {
				meterBlock(t.m, ev.ContentBlock)
			}
		case "content_block_delta":
			if d := ev.Delta; d != nil {
				t.m.content(len(d.Text) + len(d.PartialJSON) + len(d.Thinking))
			}
		case "message_delta":
			t.m.setAnthropic(ev.Usage, &t.raw, true)
			if ev.Delta != nil && ev.Delta.StopReason != nil {
				t.call.StopReason = *ev.Delta.StopReason
			}
		case "message_stop":
			t.done = true
		case "error":
			t.errored = true
			_, t.call.UpstreamError = errorFromStreamPayload(ev.Error)
		}
	}
	return sse.AppendEvent(dst, e)
}

func (t *anPass) end(dst []byte) []byte {
	if t.done || t.errored {
		return dst
	}
	t.call.UpstreamError = cutShort
	return streamError(dst, true, "api_error", cutShort)
}

// anToOA translates an Anthropic stream for an OpenAI client.
//
// Every content block maps to deltas of choice 0: text to content,
// thinking to reasoning_content (signatures as thinking_blocks, LiteLLM's
// convention), tool_use to tool_calls with indices counted from 0 in
// block order, so parallel calls never share one. The first chunk carries
// role "assistant"; the finish_reason chunk follows message_delta; the
// usage chunk (when the client asked for it) and [DONE] follow
// message_stop.
type anToOA struct {
	call         *Call
	m            *meter
	raw          anRaw
	created      int64
	includeUsage bool

	id, model string
	started   bool
	finished  bool
	done      bool
	toolIdx   []int // by Anthropic block index: OpenAI tool index + 1
	nextTool  int
}

func (t *anToOA) event(dst []byte, e sse.Event) []byte {
	if t.done {
		return dst
	}
	if e.Comment != nil {
		return sse.AppendEvent(dst, e)
	}
	if !e.HasData {
		return dst
	}
	var ev anEvent
	if json.Unmarshal(e.Data, &ev) != nil {
		return dst
	}
	if ev.Type == "" {
		ev.Type = string(e.Type)
	}
	switch ev.Type {
	case "message_start":
		if m := ev.Message; m != nil {
			t.id, t.model = m.ID, m.Model
			t.call.ResponseModel = m.Model
			t.m.setAnthropic(m.Usage, &t.raw, false)
		}
		dst = t.start(dst)
	case "content_block_start":
		dst = t.start(dst)
		b := ev.ContentBlock
		if b == nil {
			break
		}
		switch b.Type {
		case "text":
			if b.Text != nil && *b.Text != "" {
				dst = t.textDelta(dst, "content", *b.Text)
			}
		case "thinking":
			if b.Thinking != nil && *b.Thinking != "" {
				dst = t.textDelta(dst, "reasoning_content", *b.Thinking)
			}
		case "redacted_thinking":
			dst = t.head(dst)
			dst = append(dst, `{"thinking_blocks":[{"type":"redacted_thinking","data":`...)
			dst = jsonobj.AppendString(dst, b.Data)
			dst = append(dst, `}]}`...)
			dst = t.tail(dst, "")
		case "tool_use":
			i := t.nextTool
			t.nextTool++
			for len(t.toolIdx) <= ev.Index {
				t.toolIdx = append(t.toolIdx, 0)
			}
			t.toolIdx[ev.Index] = i + 1
			t.m.content(len(b.Name))
			dst = t.head(dst)
			dst = append(dst, `{"tool_calls":[{"index":`...)
			dst = strconv.AppendInt(dst, int64(i), 10)
			dst = append(dst, `,"id":`...)
			dst = jsonobj.AppendString(dst, b.ID)
			dst = append(dst, `,"type":"function","function":{"name":`...)
			dst = jsonobj.AppendString(dst, b.Name)
			dst = append(dst, `,"arguments":""}}]}`...)
			dst = t.tail(dst, "")
			if in := bytes.TrimSpace(b.Input); len(in) > 0 && !bytes.Equal(in, []byte("{}")) {
				dst = t.argsDelta(dst, i, compactJSON(in))
			}
		}
	case "content_block_delta":
		d := ev.Delta
		if d == nil {
			break
		}
		dst = t.start(dst)
		switch d.Type {
		case "text_delta":
			if d.Text != "" {
				dst = t.textDelta(dst, "content", d.Text)
			}
		case "thinking_delta":
			if d.Thinking != "" {
				dst = t.textDelta(dst, "reasoning_content", d.Thinking)
			}
		case "signature_delta":
			dst = t.head(dst)
			dst = append(dst, `{"thinking_blocks":[{"type":"thinking","thinking":"","signature":`...)
			dst = jsonobj.AppendString(dst, d.Signature)
			dst = append(dst, `}]}`...)
			dst = t.tail(dst, "")
		case "input_json_delta":
			if ev.Index < len(t.toolIdx) && t.toolIdx[ev.Index] > 0 && d.PartialJSON != "" {
				dst = t.argsDelta(dst, t.toolIdx[ev.Index]-1, d.PartialJSON)
			}
		}
	case "message_delta":
		t.m.setAnthropic(ev.Usage, &t.raw, true)
		if ev.Delta != nil && ev.Delta.StopReason != nil && !t.finished {
			t.call.StopReason = *ev.Delta.StopReason
			dst = t.finish(dst, stopToFinish(*ev.Delta.StopReason))
		}
	case "message_stop":
		dst = t.finish(dst, "stop")
		if t.includeUsage {
			dst = t.usageChunk(dst)
		}
		dst = sse.AppendData(dst, doneData)
		t.done = true
	case "error":
		typ, msg := errorFromStreamPayload(ev.Error)
		t.call.UpstreamError = msg
		dst = streamError(dst, false, typ, msg)
		t.done = true
	}
	return dst
}

func (t *anToOA) end(dst []byte) []byte {
	if t.done {
		return dst
	}
	t.done = true
	t.call.UpstreamError = cutShort
	return streamError(dst, false, "api_error", cutShort)
}

// start emits the first chunk, which carries the role.
func (t *anToOA) start(dst []byte) []byte {
	if t.started {
		return dst
	}
	t.started = true
	dst = t.head(dst)
	dst = append(dst, `{"role":"assistant","content":""}`...)
	return t.tail(dst, "")
}

func (t *anToOA) finish(dst []byte, reason string) []byte {
	if t.finished {
		return dst
	}
	dst = t.start(dst)
	t.finished = true
	dst = t.head(dst)
	dst = append(dst, `{}`...)
	return t.tail(dst, reason)
}

func (t *anToOA) textDelta(dst []byte, field, text string) []byte {
	t.m.content(len(text))
	dst = t.head(dst)
	dst = append(dst, `{"`...)
	dst = append(dst, field...)
	dst = append(dst, `":`...)
	dst = jsonobj.AppendString(dst, text)
	dst = append(dst, '}')
	return t.tail(dst, "")
}

func (t *anToOA) argsDelta(dst []byte, i int, args string) []byte {
	t.m.content(len(args))
	dst = t.head(dst)
	dst = append(dst, `{"tool_calls":[{"index":`...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, `,"function":{"arguments":`...)
	dst = jsonobj.AppendString(dst, args)
	dst = append(dst, `}}]}`...)
	return t.tail(dst, "")
}

func (t *anToOA) prefix(dst []byte) []byte {
	dst = append(dst, `data: {"id":`...)
	dst = jsonobj.AppendString(dst, t.id)
	dst = append(dst, `,"object":"chat.completion.chunk","created":`...)
	dst = strconv.AppendInt(dst, t.created, 10)
	dst = append(dst, `,"model":`...)
	dst = jsonobj.AppendString(dst, t.model)
	return dst
}

// head starts a chunk up to its delta.
func (t *anToOA) head(dst []byte) []byte {
	dst = t.prefix(dst)
	return append(dst, `,"choices":[{"index":0,"delta":`...)
}

// tail ends a chunk after its delta.
func (t *anToOA) tail(dst []byte, finish string) []byte {
	if finish == "" {
		return append(dst, ",\"finish_reason\":null}]}\n\n"...)
	}
	dst = append(dst, `,"finish_reason":`...)
	dst = jsonobj.AppendString(dst, finish)
	return append(dst, "}]}\n\n"...)
}

func (t *anToOA) usageChunk(dst []byte) []byte {
	dst = t.prefix(dst)
	dst = append(dst, `,"choices":[],"usage":`...)
	u, _ := marshal(openAIUsage(t.m.u))
	dst = append(dst, u...)
	return append(dst, "}\n\n"...)
}

// oaToAn translates an OpenAI stream for an Anthropic client.
//
// Choice 0's deltas open Anthropic content blocks in order: reasoning
// (reasoning_content or reasoning) a thinking block, content a text block,
// each new tool-call index a tool_use block whose argument fragments
// become input_json_delta events as they arrive. A block is stopped before
// the next one starts, so blocks never overlap. OpenAI reports usage last,
// after finish_reason, so message_start carries zero usage and the final
// message_delta carries all of it, input and cache counts included
// (message_delta usage is cumulative; clients set, not add).
type oaToAn struct {
	call *Call
	m    *meter

	id, model string
	started   bool
	open      int      // Anthropic index of the open block, -1 for none
	openKind  byte     // 't' text, 'r' thinking, 'u' tool use
	next      int      // next Anthropic block index
	tools     []int    // by OpenAI tool index: Anthropic block index + 1
	toolIDs   []string // by OpenAI tool index: the call's id
	finished  bool
	haveUsage bool
	stop      string
	refusal   bool
	done      bool
}

func newOAToAn(call *Call, m *meter) *oaToAn { return &oaToAn{call: call, m: m, open: -1} }

func (t *oaToAn) event(dst []byte, e sse.Event) []byte {
	if t.done {
		return dst
	}
	if e.Comment != nil {
		return sse.AppendEvent(dst, e)
	}
	if !e.HasData {
		return dst
	}
	if isDone(e.Data) {
		return t.finalize(dst)
	}
	var c oaChunk
	if json.Unmarshal(e.Data, &c) != nil {
		return dst
	}
	if len(c.Error) > 0 && string(c.Error) != "null" {
		typ, msg := errorFromStreamPayload(c.Error)
		t.call.UpstreamError = msg
		t.done = true
		return streamError(dst, true, typ, msg)
	}
	if !t.started {
		t.id, t.model = c.ID, c.Model
		t.call.ResponseModel = c.Model
		dst = t.start(dst)
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue
		}
		d := &ch.Delta
		if r := cmpOr(d.ReasoningContent, d.Reasoning); r != "" {
			dst = t.ensure(dst, 'r')
			dst = t.delta(dst, `{"type":"thinking_delta","thinking":`, r)
		}
		for _, tb := range d.ThinkingBlocks {
			if tb.Signature != nil && *tb.Signature != "" {
				dst = t.ensure(dst, 'r')
				dst = t.delta(dst, `{"type":"signature_delta","signature":`, *tb.Signature)
			}
		}
		if d.Content != "" {
			dst = t.ensure(dst, 't')
			dst = t.delta(dst, `{"type":"text_delta","text":`, d.Content)
		}
		if d.Refusal != "" {
			t.refusal = true
			dst = t.ensure(dst, 't')
			dst = t.delta(dst, `{"type":"text_delta","text":`, d.Refusal)
		}
		for j := range d.ToolCalls {
			var ok bool
			if dst, ok = t.toolDelta(dst, &d.ToolCalls[j]); !ok {
				return dst
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" && !t.finished {
			t.finished = true
			t.call.StopReason = *ch.FinishReason
			t.stop = finishToStop(*ch.FinishReason)
			if t.refusal && t.stop == "end_turn" {
				t.stop = "refusal"
			}
			dst = t.close(dst)
		}
	}
	if c.Usage != nil {
		t.m.setOpenAI(c.Usage)
		t.haveUsage = true
	}
	if t.finished && t.haveUsage {
		dst = t.finalize(dst)
	}
	return dst
}

func (t *oaToAn) toolDelta(dst []byte, tc *oaToolDelta) ([]byte, bool) {
	idx := 0
	if tc.Index != nil && *tc.Index >= 0 {
		idx = *tc.Index
	} else {
		// Some servers omit the index: a new id is a new call, fragments
		// without one continue the open call.
		open := -1
		for i, b := range t.tools {
			if b-1 == t.open && t.openKind == 'u' {
				open = i
			}
		}
		switch {
		case open >= 0 && (tc.ID == "" || tc.ID == t.toolIDs[open]):
			idx = open
		case tc.ID != "" || open >= 0:
			idx = len(t.tools)
		}
	}
	for len(t.tools) <= idx {
		t.tools = append(t.tools, 0)
		t.toolIDs = append(t.toolIDs, "")
	}
	blk := t.tools[idx] - 1
	if blk < 0 {
		dst = t.close(dst)
		blk = t.next
		t.next++
		t.tools[idx] = blk + 1
		t.open, t.openKind = blk, 'u'
		id := tc.ID
		if id == "" {
			id = "toolu_" + t.id + "_" + strconv.Itoa(idx)
		}
		t.toolIDs[idx] = tc.ID
		t.m.content(len(tc.Function.Name))
		dst = append(dst, "event: content_block_start\ndata: "...)
		dst = append(dst, `{"type":"content_block_start","index":`...)
		dst = strconv.AppendInt(dst, int64(blk), 10)
		dst = append(dst, `,"content_block":{"type":"tool_use","id":`...)
		dst = jsonobj.AppendString(dst, id)
		dst = append(dst, `,"name":`...)
		dst = jsonobj.AppendString(dst, tc.Function.Name)
		dst = append(dst, ",\"input\":{}}}\n\n"...)
	} else if blk != t.open {
		// Anthropic blocks cannot interleave: a fragment for a call whose
		// block is closed cannot be delivered.
		msg := "upstream interleaved the arguments of parallel tool calls, which Anthropic streams cannot carry"
		t.call.UpstreamError = msg
		t.done = true
		return streamError(dst, true, "api_error", msg), false
	}
	if a := tc.Function.Arguments; a != "" {
		dst = t.delta(dst, `{"type":"input_json_delta","partial_json":`, a)
	}
	return dst, true
}

func (t *oaToAn) start(dst []byte) []byte {
	if t.started {
		return dst
	}
	t.started = true
	dst = append(dst, "event: message_start\ndata: "...)
	dst = append(dst, `{"type":"message_start","message":{"id":`...)
	dst = jsonobj.AppendString(dst, t.id)
	dst = append(dst, `,"type":"message","role":"assistant","model":`...)
	dst = jsonobj.AppendString(dst, t.model)
	dst = append(dst, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}`...)
	return append(dst, "\n\n"...)
}

// ensure makes the open block one of kind k (text or thinking), stopping
// any other first.
func (t *oaToAn) ensure(dst []byte, k byte) []byte {
	if t.open >= 0 && t.openKind == k {
		return dst
	}
	dst = t.close(dst)
	t.open, t.openKind = t.next, k
	t.next++
	dst = append(dst, "event: content_block_start\ndata: "...)
	dst = append(dst, `{"type":"content_block_start","index":`...)
	dst = strconv.AppendInt(dst, int64(t.open), 10)
	if k == 'r' {
		dst = append(dst, `,"content_block":{"type":"thinking","thinking":"","signature":""}}`...)
	} else {
		dst = append(dst, `,"content_block":{"type":"text","text":""}}`...)
	}
	return append(dst, "\n\n"...)
}

// delta emits a content_block_delta for the open block: head is the delta
// object up to its text field, text the field's value.
func (t *oaToAn) delta(dst []byte, head, text string) []byte {
	t.m.content(len(text))
	dst = append(dst, "event: content_block_delta\ndata: "...)
	dst = append(dst, `{"type":"content_block_delta","index":`...)
	dst = strconv.AppendInt(dst, int64(t.open), 10)
	dst = append(dst, `,"delta":`...)
	dst = append(dst, head...)
	dst = jsonobj.AppendString(dst, text)
	return append(dst, "}}\n\n"...)
}

func (t *oaToAn) close(dst []byte) []byte {
	if t.open < 0 {
		return dst
	}
	dst = append(dst, "event: content_block_stop\ndata: "...)
	dst = append(dst, `{"type":"content_block_stop","index":`...)
	dst = strconv.AppendInt(dst, int64(t.open), 10)
	t.open, t.openKind = -1, 0
	return append(dst, "}\n\n"...)
}

// finalize ends the message: message_delta with the stop reason and the
// whole usage, then message_stop.
func (t *oaToAn) finalize(dst []byte) []byte {
	if t.done {
		return dst
	}
	t.done = true
	dst = t.start(dst)
	dst = t.close(dst)
	stop := t.stop
	if stop == "" {
		stop = "end_turn"
	}
	in, cw, cr, out := anthropicUsageOf(t.m.u)
	dst = append(dst, "event: message_delta\ndata: "...)
	dst = append(dst, `{"type":"message_delta","delta":{"stop_reason":`...)
	dst = jsonobj.AppendString(dst, stop)
	dst = append(dst, `,"stop_sequence":null},"usage":{"input_tokens":`...)
	dst = strconv.AppendInt(dst, in, 10)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = strconv.AppendInt(dst, cw, 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, cr, 10)
	dst = append(dst, `,"output_tokens":`...)
	dst = strconv.AppendInt(dst, out, 10)
	if r := t.m.u.ReasoningTokens; r > 0 {
		dst = append(dst, `,"output_tokens_details":{"thinking_tokens":`...)
		dst = strconv.AppendInt(dst, r, 10)
		dst = append(dst, '}')
	}
	dst = append(dst, "}}\n\n"...)
	return append(dst, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
}

func (t *oaToAn) end(dst []byte) []byte {
	if t.done {
		return dst
	}
	if t.finished {
		return t.finalize(dst)
	}
	t.done = true
	t.call.UpstreamError = cutShort
	return streamError(dst, true, "api_error", cutShort)
}
