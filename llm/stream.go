package llm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/porticoproxy/portico/internal/sse"
	"github.com/porticoproxy/portico/llm/internal/eventstream"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Streams are translated event by event as they arrive: nothing is held
// back beyond the event being decoded (the decoders buffer only an event
// split across reads), so text and tool-argument deltas reach the client
// as they arrive.
//
// Same-schema streams pass through a streamer that only meters them
// (oaPass, anPass, rsPass). Translated streams are a decoder for the
// provider's schema (anDec, oaDec, gmDec, brDec) feeding a sink for the
// client's (anSink, oaSink, rsSink) through one normalised event model,
// Anthropic's: a message start, content blocks that open, receive deltas
// and stop one at a time with increasing indices, a stop reason, and the
// end (usage final). Decoders guarantee that shape whatever the provider
// sends, so every sink can rely on it; usage goes to the exchange's meter,
// which decoders feed and sinks read.

// A streamer turns the events of an upstream SSE stream into the client's
// bytes, one event at a time.
type streamer interface {
	// event appends the client bytes for one upstream event to dst.
	event(dst []byte, e sse.Event) []byte
	// end appends what the client still needs when the upstream stream
	// ends: an error event when it ended before it was complete.
	end(dst []byte) []byte
	// abort appends an error event in the client's schema for a stream
	// the gateway cannot decode; the stream is over.
	abort(dst []byte, msg string) []byte
}

// A sink writes the normalised event stream in the client's schema.
// Decoders call start first, then blocks (blockStart, deltas, blockStop),
// finish at most once, and end or fail last.
type sink interface {
	start(dst []byte, id, model string) []byte
	blockStart(dst []byte, index int, b blockInfo) []byte
	delta(dst []byte, index int, kind deltaKind, text string) []byte
	blockStop(dst []byte, index int) []byte
	// finish records the stop reason, in Anthropic's vocabulary.
	finish(dst []byte, stop string) []byte
	// end completes the message; the meter's usage is final.
	end(dst []byte) []byte
	// fail ends the stream with an error; typ is an Anthropic error type.
	fail(dst []byte, typ, msg string) []byte
}

// blockInfo describes a content block being opened.
type blockInfo struct {
	kind     blockKind
	id, name string // tool use
	data     string // redacted thinking
}

type blockKind byte

const (
	blockText blockKind = iota + 1
	blockThinking
	blockRedacted
	blockTool
)

type deltaKind byte

const (
	deltaText deltaKind = iota + 1
	deltaThinking
	deltaSignature
	deltaJSON
)

var (
	_ streamer = (*oaPass)(nil)
	_ streamer = (*anPass)(nil)
	_ streamer = (*rsPass)(nil)
	_ streamer = (*anDec)(nil)
	_ streamer = (*oaDec)(nil)
	_ streamer = (*gmDec)(nil)
	_ streamer = (*brDec)(nil)
	_ sink     = (*oaSink)(nil)
	_ sink     = (*anSink)(nil)
	_ sink     = (*rsSink)(nil)
)

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

// newStreamer returns the streamer of a call's response stream, and for
// Bedrock sets up the binary event stream decoding (st.frames) in its
// place of the SSE decoder.
func (g *Gateway) newStreamer(api API, call *Call, st *state, h http.Header, limit int64) streamer {
	kind := st.p.kind
	if !call.Translated {
		switch {
		case api == ChatCompletions:
			return &oaPass{call: call, m: &st.m, strip: !st.includeUsage}
		case api == Responses:
			return &rsPass{call: call, m: &st.m}
		default:
			return &anPass{call: call, m: &st.m}
		}
	}
	var out sink
	switch api {
	case ChatCompletions:
		out = &oaSink{m: &st.m, created: g.now().Unix(), includeUsage: st.includeUsage}
	case Responses:
		out = newRSSink(&st.m, g.now().Unix(), st.rs)
	default:
		out = &anSink{m: &st.m}
	}
	switch {
	case kind == Anthropic:
		return &anDec{call: call, m: &st.m, out: out}
	case kind == Gemini:
		return newGMDec(call, &st.m, out)
	case kind == Bedrock:
		d := &brDec{call: call, m: &st.m, out: out, open: -1, id: bedrockMessageID(h.Get("X-Amzn-Requestid"), st.body)}
		st.frames = &frameFeed{d: d}
		st.frames.dec.MaxMessageBytes = int(max(limit, eventstream.DefaultMaxMessageBytes))
		return d
	default: // OpenAI schema
		return newOADec(call, &st.m, out)
	}
}

// feed decodes the next bytes of the response stream, appending the
// client's bytes to st.out.
func (st *state) feed(data []byte) error {
	if st.frames != nil {
		return st.frames.feed(st, data)
	}
	return st.dec.Feed(data, st.emit)
}

// flush ends the response stream's decoding.
func (st *state) flush() error {
	if st.frames != nil {
		return st.frames.dec.Flush()
	}
	return st.dec.Flush(st.emit)
}

// frameFeed feeds a binary AWS event stream to a Bedrock decoder.
type frameFeed struct {
	dec  eventstream.Decoder
	d    *brDec
	emit func(eventstream.Message) error
}

func (ff *frameFeed) feed(st *state, data []byte) error {
	if ff.emit == nil {
		ff.emit = func(m eventstream.Message) error {
			st.out = ff.d.frame(st.out, &m)
			return nil
		}
	}
	return ff.dec.Feed(data, ff.emit)
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

func (t *oaPass) abort(dst []byte, msg string) []byte {
	t.call.UpstreamError = msg
	return streamError(dst, false, "api_error", msg)
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

func (t *anPass) abort(dst []byte, msg string) []byte {
	t.call.UpstreamError = msg
	return streamError(dst, true, "api_error", msg)
}

// anDec decodes an Anthropic stream into the normalised events, which it
// is already shaped as.
type anDec struct {
	call     *Call
	m        *meter
	raw      anRaw
	out      sink
	started  bool
	finished bool
	done     bool
}

func (t *anDec) event(dst []byte, e sse.Event) []byte {
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
		var id, model string
		if m := ev.Message; m != nil {
			id, model = m.ID, m.Model
			t.call.ResponseModel = m.Model
			t.m.setAnthropic(m.Usage, &t.raw, false)
		}
		if !t.started {
			t.started = true
			dst = t.out.start(dst, id, model)
		}
	case "content_block_start":
		dst = t.start(dst)
		b := ev.ContentBlock
		if b == nil {
			break
		}
		switch b.Type {
		case "text":
			dst = t.out.blockStart(dst, ev.Index, blockInfo{kind: blockText})
			if b.Text != nil && *b.Text != "" {
				t.m.content(len(*b.Text))
				dst = t.out.delta(dst, ev.Index, deltaText, *b.Text)
			}
		case "thinking":
			dst = t.out.blockStart(dst, ev.Index, blockInfo{kind: blockThinking})
			if b.Thinking != nil && *b.Thinking != "" {
				t.m.content(len(*b.Thinking))
				dst = t.out.delta(dst, ev.Index, deltaThinking, *b.Thinking)
			}
			if b.Signature != nil && *b.Signature != "" {
				dst = t.out.delta(dst, ev.Index, deltaSignature, *b.Signature)
			}
		case "redacted_thinking":
			dst = t.out.blockStart(dst, ev.Index, blockInfo{kind: blockRedacted, data: b.Data})
		case "tool_use":
			t.m.content(len(b.Name))
			dst = t.out.blockStart(dst, ev.Index, blockInfo{kind: blockTool, id: b.ID, name: b.Name})
			if in := bytes.TrimSpace(b.Input); len(in) > 0 && !bytes.Equal(in, []byte("{}")) {
				args := compactJSON(in)
				t.m.content(len(args))
				dst = t.out.delta(dst, ev.Index, deltaJSON, args)
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
				t.m.content(len(d.Text))
				dst = t.out.delta(dst, ev.Index, deltaText, d.Text)
			}
		case "thinking_delta":
			if d.Thinking != "" {
				t.m.content(len(d.Thinking))
				dst = t.out.delta(dst, ev.Index, deltaThinking, d.Thinking)
			}
		case "signature_delta":
			dst = t.out.delta(dst, ev.Index, deltaSignature, d.Signature)
		case "input_json_delta":
			if d.PartialJSON != "" {
				t.m.content(len(d.PartialJSON))
				dst = t.out.delta(dst, ev.Index, deltaJSON, d.PartialJSON)
			}
		}
	case "content_block_stop":
		dst = t.out.blockStop(dst, ev.Index)
	case "message_delta":
		t.m.setAnthropic(ev.Usage, &t.raw, true)
		if ev.Delta != nil && ev.Delta.StopReason != nil && !t.finished {
			t.finished = true
			t.call.StopReason = *ev.Delta.StopReason
			dst = t.start(dst)
			dst = t.out.finish(dst, *ev.Delta.StopReason)
		}
	case "message_stop":
		dst = t.start(dst)
		if !t.finished {
			t.finished = true
			dst = t.out.finish(dst, "end_turn")
		}
		dst = t.out.end(dst)
		t.done = true
	case "error":
		typ, msg := errorFromStreamPayload(ev.Error)
		t.call.UpstreamError = msg
		dst = t.out.fail(dst, typ, msg)
		t.done = true
	}
	return dst
}

func (t *anDec) start(dst []byte) []byte {
	if t.started {
		return dst
	}
	t.started = true
	return t.out.start(dst, "", "")
}

func (t *anDec) end(dst []byte) []byte {
	if t.done {
		return dst
	}
	t.done = true
	t.call.UpstreamError = cutShort
	return t.out.fail(dst, "api_error", cutShort)
}

func (t *anDec) abort(dst []byte, msg string) []byte {
	t.done = true
	t.call.UpstreamError = msg
	return t.out.fail(dst, "api_error", msg)
}

// oaDec decodes an OpenAI Chat Completions stream into the normalised
// events.
//
// Choice 0's deltas open content blocks in order: reasoning
// (reasoning_content or reasoning) a thinking block, content a text block,
// each new tool-call index a tool_use block whose argument fragments are
// passed on as they arrive. A block is stopped before the next one starts,
// so blocks never overlap. OpenAI reports usage last, after
// finish_reason, so the message ends at the usage chunk (or [DONE]).
type oaDec struct {
	call *Call
	m    *meter
	out  sink

	id, model string
	started   bool
	open      int       // index of the open block, -1 for none
	openKind  blockKind // its kind
	next      int       // next block index
	tools     []int     // by OpenAI tool index: block index + 1
	toolIDs   []string  // by OpenAI tool index: the call's id
	finished  bool
	haveUsage bool
	stop      string
	refusal   bool
	done      bool
}

func newOADec(call *Call, m *meter, out sink) *oaDec {
	return &oaDec{call: call, m: m, out: out, open: -1}
}

func (t *oaDec) event(dst []byte, e sse.Event) []byte {
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
		return t.out.fail(dst, typ, msg)
	}
	if !t.started {
		if len(c.Choices) == 0 && c.Usage == nil {
			// Azure leads with a chunk of prompt filter results only,
			// without an ID or a model.
			return dst
		}
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
			dst = t.ensure(dst, blockThinking)
			dst = t.delta(dst, deltaThinking, r)
		}
		for _, tb := range d.ThinkingBlocks {
			if tb.Signature != nil && *tb.Signature != "" {
				dst = t.ensure(dst, blockThinking)
				dst = t.delta(dst, deltaSignature, *tb.Signature)
			}
		}
		if d.Content != "" {
			dst = t.ensure(dst, blockText)
			dst = t.delta(dst, deltaText, d.Content)
		}
		if d.Refusal != "" {
			t.refusal = true
			dst = t.ensure(dst, blockText)
			dst = t.delta(dst, deltaText, d.Refusal)
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
			dst = t.out.finish(dst, t.stop)
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

func (t *oaDec) toolDelta(dst []byte, tc *oaToolDelta) ([]byte, bool) {
	idx := 0
	if tc.Index != nil && *tc.Index >= 0 {
		idx = *tc.Index
	} else {
		// Some servers omit the index: a new id is a new call, fragments
		// without one continue the open call.
		open := -1
		for i, b := range t.tools {
			if b-1 == t.open && t.openKind == blockTool {
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
		t.open, t.openKind = blk, blockTool
		id := tc.ID
		if id == "" {
			id = "toolu_" + t.id + "_" + strconv.Itoa(idx)
		}
		t.toolIDs[idx] = tc.ID
		t.m.content(len(tc.Function.Name))
		dst = t.out.blockStart(dst, blk, blockInfo{kind: blockTool, id: id, name: tc.Function.Name})
	} else if blk != t.open {
		// Content blocks cannot interleave: a fragment for a call whose
		// block is closed cannot be delivered.
		msg := "upstream interleaved the arguments of parallel tool calls, which this client's stream cannot carry"
		t.call.UpstreamError = msg
		t.done = true
		return t.out.fail(dst, "api_error", msg), false
	}
	if a := tc.Function.Arguments; a != "" {
		dst = t.delta(dst, deltaJSON, a)
	}
	return dst, true
}

func (t *oaDec) start(dst []byte) []byte {
	if t.started {
		return dst
	}
	t.started = true
	return t.out.start(dst, t.id, t.model)
}

// ensure makes the open block one of kind k (text or thinking), stopping
// any other first.
func (t *oaDec) ensure(dst []byte, k blockKind) []byte {
	if t.open >= 0 && t.openKind == k {
		return dst
	}
	dst = t.close(dst)
	t.open, t.openKind = t.next, k
	t.next++
	return t.out.blockStart(dst, t.open, blockInfo{kind: k})
}

func (t *oaDec) delta(dst []byte, kind deltaKind, text string) []byte {
	t.m.content(len(text))
	return t.out.delta(dst, t.open, kind, text)
}

func (t *oaDec) close(dst []byte) []byte {
	if t.open < 0 {
		return dst
	}
	dst = t.out.blockStop(dst, t.open)
	t.open, t.openKind = -1, 0
	return dst
}

// finalize ends the message.
func (t *oaDec) finalize(dst []byte) []byte {
	if t.done {
		return dst
	}
	t.done = true
	dst = t.start(dst)
	dst = t.close(dst)
	if !t.finished {
		t.finished = true
		dst = t.out.finish(dst, "end_turn")
	}
	return t.out.end(dst)
}

func (t *oaDec) end(dst []byte) []byte {
	if t.done {
		return dst
	}
	if t.finished {
		return t.finalize(dst)
	}
	t.done = true
	t.call.UpstreamError = cutShort
	return t.out.fail(dst, "api_error", cutShort)
}

func (t *oaDec) abort(dst []byte, msg string) []byte {
	t.done = true
	t.call.UpstreamError = msg
	return t.out.fail(dst, "api_error", msg)
}

// oaSink writes the normalised events as an OpenAI Chat Completions
// stream.
//
// Every content block maps to deltas of choice 0: text to content,
// thinking to reasoning_content (signatures as thinking_blocks, LiteLLM's
// convention), tool use to tool_calls with indices counted from 0 in block
// order, so parallel calls never share one. The first chunk carries role
// "assistant"; the finish_reason chunk follows the stop reason; the usage
// chunk (when the client asked for it) and [DONE] follow the end.
type oaSink struct {
	m            *meter
	created      int64
	includeUsage bool

	id, model string
	started   bool
	finished  bool
	toolIdx   []int // by block index: OpenAI tool index + 1
	nextTool  int
}

func (t *oaSink) start(dst []byte, id, model string) []byte {
	if t.started {
		return dst
	}
	t.started = true
	t.id, t.model = id, model
	dst = t.head(dst)
	dst = append(dst, `{"role":"assistant","content":""}`...)
	return t.tail(dst, "")
}

func (t *oaSink) blockStart(dst []byte, index int, b blockInfo) []byte {
	switch b.kind {
	case blockRedacted:
		dst = t.head(dst)
		dst = append(dst, `{"thinking_blocks":[{"type":"redacted_thinking","data":`...)
		dst = jsonobj.AppendString(dst, b.data)
		dst = append(dst, `}]}`...)
		dst = t.tail(dst, "")
	case blockTool:
		i := t.nextTool
		t.nextTool++
		for len(t.toolIdx) <= index {
			t.toolIdx = append(t.toolIdx, 0)
		}
		t.toolIdx[index] = i + 1
		dst = t.head(dst)
		dst = append(dst, `{"tool_calls":[{"index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `,"id":`...)
		dst = jsonobj.AppendString(dst, b.id)
		dst = append(dst, `,"type":"function","function":{"name":`...)
		dst = jsonobj.AppendString(dst, b.name)
		dst = append(dst, `,"arguments":""}}]}`...)
		dst = t.tail(dst, "")
	}
	return dst
}

func (t *oaSink) delta(dst []byte, index int, kind deltaKind, text string) []byte {
	switch kind {
	case deltaText:
		return t.textDelta(dst, "content", text)
	case deltaThinking:
		return t.textDelta(dst, "reasoning_content", text)
	case deltaSignature:
		dst = t.head(dst)
		dst = append(dst, `{"thinking_blocks":[{"type":"thinking","thinking":"","signature":`...)
		dst = jsonobj.AppendString(dst, text)
		dst = append(dst, `}]}`...)
		return t.tail(dst, "")
	case deltaJSON:
		if index < len(t.toolIdx) && t.toolIdx[index] > 0 {
			dst = t.head(dst)
			dst = append(dst, `{"tool_calls":[{"index":`...)
			dst = strconv.AppendInt(dst, int64(t.toolIdx[index]-1), 10)
			dst = append(dst, `,"function":{"arguments":`...)
			dst = jsonobj.AppendString(dst, text)
			dst = append(dst, `}}]}`...)
			dst = t.tail(dst, "")
		}
	}
	return dst
}

func (t *oaSink) blockStop(dst []byte, index int) []byte { return dst }

func (t *oaSink) finish(dst []byte, stop string) []byte {
	if t.finished {
		return dst
	}
	t.finished = true
	dst = t.head(dst)
	dst = append(dst, `{}`...)
	return t.tail(dst, stopToFinish(stop))
}

func (t *oaSink) end(dst []byte) []byte {
	dst = t.finish(dst, "end_turn")
	if t.includeUsage {
		dst = t.prefix(dst)
		dst = append(dst, `,"choices":[],"usage":`...)
		u, _ := marshal(openAIUsage(t.m.u))
		dst = append(dst, u...)
		dst = append(dst, "}\n\n"...)
	}
	return sse.AppendData(dst, doneData)
}

func (t *oaSink) fail(dst []byte, typ, msg string) []byte {
	return streamError(dst, false, typ, msg)
}

func (t *oaSink) textDelta(dst []byte, field, text string) []byte {
	dst = t.head(dst)
	dst = append(dst, `{"`...)
	dst = append(dst, field...)
	dst = append(dst, `":`...)
	dst = jsonobj.AppendString(dst, text)
	dst = append(dst, '}')
	return t.tail(dst, "")
}

func (t *oaSink) prefix(dst []byte) []byte {
	dst = append(dst, `data: {"id":`...)
	dst = jsonobj.AppendString(dst, t.id)
	dst = append(dst, `,"object":"chat.completion.chunk","created":`...)
	dst = strconv.AppendInt(dst, t.created, 10)
	dst = append(dst, `,"model":`...)
	dst = jsonobj.AppendString(dst, t.model)
	return dst
}

// head starts a chunk up to its delta.
func (t *oaSink) head(dst []byte) []byte {
	dst = t.prefix(dst)
	return append(dst, `,"choices":[{"index":0,"delta":`...)
}

// tail ends a chunk after its delta.
func (t *oaSink) tail(dst []byte, finish string) []byte {
	if finish == "" {
		return append(dst, ",\"finish_reason\":null}]}\n\n"...)
	}
	dst = append(dst, `,"finish_reason":`...)
	dst = jsonobj.AppendString(dst, finish)
	return append(dst, "}]}\n\n"...)
}

// anSink writes the normalised events as an Anthropic Messages stream.
// message_start carries the usage known so far (zero when the provider
// reports it last, as OpenAI does); the final message_delta carries all of
// it, input and cache counts included (message_delta usage is cumulative;
// clients set, not add).
type anSink struct {
	m    *meter
	stop string
}

func (t *anSink) start(dst []byte, id, model string) []byte {
	in, cw, cr, _ := anthropicUsageOf(t.m.u)
	dst = append(dst, "event: message_start\ndata: "...)
	dst = append(dst, `{"type":"message_start","message":{"id":`...)
	dst = jsonobj.AppendString(dst, id)
	dst = append(dst, `,"type":"message","role":"assistant","model":`...)
	dst = jsonobj.AppendString(dst, model)
	dst = append(dst, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`...)
	dst = strconv.AppendInt(dst, in, 10)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = strconv.AppendInt(dst, cw, 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, cr, 10)
	dst = append(dst, `,"output_tokens":0}}}`...)
	return append(dst, "\n\n"...)
}

func (t *anSink) blockStart(dst []byte, index int, b blockInfo) []byte {
	dst = append(dst, "event: content_block_start\ndata: "...)
	dst = append(dst, `{"type":"content_block_start","index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	switch b.kind {
	case blockThinking:
		dst = append(dst, `,"content_block":{"type":"thinking","thinking":"","signature":""}}`...)
	case blockRedacted:
		dst = append(dst, `,"content_block":{"type":"redacted_thinking","data":`...)
		dst = jsonobj.AppendString(dst, b.data)
		dst = append(dst, `}}`...)
	case blockTool:
		dst = append(dst, `,"content_block":{"type":"tool_use","id":`...)
		dst = jsonobj.AppendString(dst, b.id)
		dst = append(dst, `,"name":`...)
		dst = jsonobj.AppendString(dst, b.name)
		dst = append(dst, `,"input":{}}}`...)
	default:
		dst = append(dst, `,"content_block":{"type":"text","text":""}}`...)
	}
	return append(dst, "\n\n"...)
}

func (t *anSink) delta(dst []byte, index int, kind deltaKind, text string) []byte {
	dst = append(dst, "event: content_block_delta\ndata: "...)
	dst = append(dst, `{"type":"content_block_delta","index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	switch kind {
	case deltaThinking:
		dst = append(dst, `,"delta":{"type":"thinking_delta","thinking":`...)
	case deltaSignature:
		dst = append(dst, `,"delta":{"type":"signature_delta","signature":`...)
	case deltaJSON:
		dst = append(dst, `,"delta":{"type":"input_json_delta","partial_json":`...)
	default:
		dst = append(dst, `,"delta":{"type":"text_delta","text":`...)
	}
	dst = jsonobj.AppendString(dst, text)
	return append(dst, "}}\n\n"...)
}

func (t *anSink) blockStop(dst []byte, index int) []byte {
	dst = append(dst, "event: content_block_stop\ndata: "...)
	dst = append(dst, `{"type":"content_block_stop","index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	return append(dst, "}\n\n"...)
}

func (t *anSink) finish(dst []byte, stop string) []byte {
	t.stop = stop
	return dst
}

// end writes message_delta with the stop reason and the whole usage, then
// message_stop.
func (t *anSink) end(dst []byte) []byte {
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

func (t *anSink) fail(dst []byte, typ, msg string) []byte {
	return streamError(dst, true, typ, msg)
}
