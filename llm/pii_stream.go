package llm

import (
	"bytes"
	"encoding/json"

	"github.com/porticoproxy/portico/internal/sse"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// piiStream redacts the text of a stream as the client receives it: it
// decodes the client-schema events the llm filter produced, runs the text
// deltas through one textStream per choice (OpenAI) or content block
// (Anthropic), and re-encodes them. Held-back text goes out with the next
// delta of the same text, or just before the event that ends it: the
// finish chunk (OpenAI), content_block_stop (Anthropic), or the end of
// the stream. Responses streams go to rs (pii_responses.go).
type piiStream struct {
	r         *redactor
	anthropic bool
	rs        *rsPIIStream // a Responses stream
	dec       sse.Decoder
	out       []byte
	texts     []*textStream // by choice or block index
	last      []byte        // the last OpenAI chunk with choices, to shape synthetic ones
	emit      func(sse.Event) error
	scratch   []byte
}

func newPIIStream(r *redactor, api API) *piiStream {
	p := &piiStream{r: r, anthropic: api.anthropic()}
	if api == Responses {
		p.rs = &rsPIIStream{r: r}
	}
	p.dec.KeepComments = true
	p.dec.EmitUnterminated = true
	p.emit = p.event
	return p
}

// filter redacts one chunk of the client's stream.
func (p *piiStream) filter(data []byte, eos bool) []byte {
	p.out = p.out[:0]
	if err := p.dec.Feed(data, p.emit); err != nil {
		return data // the llm filter produced it; it cannot be malformed
	}
	if eos {
		p.dec.Flush(p.emit)
		p.out = p.flushAll(p.out)
		if p.rs != nil {
			p.out = p.rs.endPart(p.out)
		}
	}
	return p.out
}

func (p *piiStream) text(i int) *textStream {
	if i < 0 || i > 1024 {
		return nil
	}
	for len(p.texts) <= i {
		p.texts = append(p.texts, nil)
	}
	if p.texts[i] == nil {
		p.texts[i] = &textStream{}
	}
	return p.texts[i]
}

func (p *piiStream) event(e sse.Event) error {
	if !e.HasData || e.Comment != nil {
		p.out = sse.AppendEvent(p.out, e)
		return nil
	}
	if p.rs != nil {
		p.out = p.rs.event(p.out, e)
		return nil
	}
	if p.anthropic {
		p.out = p.anthropicEvent(p.out, e)
	} else {
		p.out = p.openAIEvent(p.out, e)
	}
	return nil
}

// anthropicEvent redacts text_delta events and releases held text before
// the events that end a block.
func (p *piiStream) anthropicEvent(dst []byte, e sse.Event) []byte {
	var ev struct {
		Type  string `json:"type"`
		Index *int   `json:"index"`
		Delta *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"delta"`
	}
	if json.Unmarshal(e.Data, &ev) != nil {
		return sse.AppendEvent(dst, e)
	}
	switch ev.Type {
	case "content_block_delta":
		if ev.Index == nil || ev.Delta == nil || ev.Delta.Type != "text_delta" {
			break
		}
		t := p.text(*ev.Index)
		if t == nil {
			break
		}
		p.scratch = t.write(p.r, p.scratch[:0], ev.Delta.Text, false)
		return p.appendAnthropicDelta(dst, e, *ev.Index, p.scratch)
	case "content_block_stop":
		if ev.Index != nil {
			dst = p.flushBlock(dst, *ev.Index)
		}
	case "message_delta", "message_stop", "error":
		dst = p.flushAll(dst)
	}
	return sse.AppendEvent(dst, e)
}

func (p *piiStream) appendAnthropicDelta(dst []byte, e sse.Event, index int, text []byte) []byte {
	b := append(p.scratchEvent(), `{"type":"content_block_delta","index":`...)
	b = appendInt(b, index)
	b = append(b, `,"delta":{"type":"text_delta","text":`...)
	b = jsonobj.AppendString(b, string(text))
	b = append(b, `}}`...)
	typ := e.Type
	if len(typ) == 0 {
		typ = []byte("content_block_delta")
	}
	return sse.AppendEvent(dst, sse.Event{Type: typ, Data: b, HasData: true})
}

func (p *piiStream) scratchEvent() []byte { return make([]byte, 0, 128) }

func appendInt(b []byte, n int) []byte {
	return append(b, itoa(int64(n))...)
}

// flushBlock releases the held text of block i as a text delta.
func (p *piiStream) flushBlock(dst []byte, i int) []byte {
	if i < 0 || i >= len(p.texts) || p.texts[i] == nil || p.texts[i].pendingLen() == 0 {
		return dst
	}
	p.scratch = p.texts[i].write(p.r, p.scratch[:0], "", true)
	if p.anthropic {
		return p.appendAnthropicDelta(dst, sse.Event{}, i, p.scratch)
	}
	return p.appendOpenAIText(dst, i, p.scratch)
}

func (p *piiStream) flushAll(dst []byte) []byte {
	for i := range p.texts {
		dst = p.flushBlock(dst, i)
	}
	return dst
}

// openAIEvent redacts delta.content and releases a choice's held text
// with its finish chunk.
func (p *piiStream) openAIEvent(dst []byte, e sse.Event) []byte {
	data := bytes.TrimSpace(e.Data)
	if bytes.Equal(data, doneData) {
		dst = p.flushAll(dst)
		return sse.AppendEvent(dst, e)
	}
	obj, err := jsonobj.Parse(data)
	if err != nil {
		return sse.AppendEvent(dst, e)
	}
	raw, ok := obj.Get("choices")
	var choices []json.RawMessage
	if !ok || json.Unmarshal(raw, &choices) != nil || len(choices) == 0 {
		// A usage or error chunk: the text before it is complete.
		dst = p.flushAll(dst)
		return sse.AppendEvent(dst, e)
	}
	p.last = append(p.last[:0], data...)
	changed := false
	for ci, c := range choices {
		co, err := jsonobj.Parse(c)
		if err != nil {
			continue
		}
		idx := ci
		if v, ok := jsonNumber(co, "index"); ok {
			idx = int(v)
		}
		finished := false
		if fr, ok := co.Get("finish_reason"); ok && string(fr) != "null" {
			finished = true
		}
		draw, ok := co.Get("delta")
		if !ok {
			continue
		}
		delta, err := jsonobj.Parse(draw)
		if err != nil {
			continue
		}
		content, hasContent, _ := delta.String("content")
		if !hasContent && !finished {
			continue
		}
		t := p.text(idx)
		if t == nil {
			continue
		}
		if !hasContent && t.pendingLen() == 0 {
			continue
		}
		p.scratch = t.write(p.r, p.scratch[:0], content, finished)
		if !hasContent && len(p.scratch) == 0 {
			continue
		}
		nd := delta.Set("content", jsonobj.AppendString(nil, string(p.scratch)))
		choices[ci] = co.Set("delta", nd)
		changed = true
	}
	if !changed {
		return sse.AppendEvent(dst, e)
	}
	cs, _ := json.Marshal(choices)
	e.Data = obj.Set("choices", cs)
	return sse.AppendEvent(dst, e)
}

// appendOpenAIText emits held text of choice i as a chunk shaped like the
// last one the stream carried.
func (p *piiStream) appendOpenAIText(dst []byte, i int, text []byte) []byte {
	if len(text) == 0 {
		return dst
	}
	choice := append(p.scratchEvent(), `[{"index":`...)
	choice = appendInt(choice, i)
	choice = append(choice, `,"delta":{"content":`...)
	choice = jsonobj.AppendString(choice, string(text))
	choice = append(choice, `},"finish_reason":null}]`...)
	var data []byte
	if obj, err := jsonobj.Parse(p.last); err == nil && len(p.last) > 0 {
		data = obj.Set("choices", choice)
	} else {
		data = append(append([]byte(`{"object":"chat.completion.chunk","choices":`), choice...), '}')
	}
	return sse.AppendData(dst, data)
}
