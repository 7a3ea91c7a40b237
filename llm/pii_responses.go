package llm

import (
	"strings"

	"github.com/porticoproxy/portico/internal/sse"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// PII redaction of the OpenAI Responses API as its clients receive it
// (streams translated by rsSink or passed through by rsPass, and response
// objects). Only the text of output_text parts is redacted: in a
// response's output[].content[] and its top-level output_text, and in a
// stream's response.output_text.delta and the events that repeat the
// whole text (response.output_text.done, response.content_part.done,
// response.output_item.done, and the response of response.completed,
// response.incomplete, response.failed …). Refusals, reasoning summaries
// and function-call arguments are left alone.
//
// A stream's deltas go through one textStream per content part. Its
// events carry sequence numbers, so the text held back cannot be
// released in an event of its own at the end of the part, as Anthropic's
// is: instead, from the part's first delta to leave a tail on, its latest
// delta event is kept back (the carrier), and goes out carrying the text
// the next delta decides, when that delta arrives (which becomes the
// carrier), or the rest of the part's text, just before the event that
// ends the part; annotations of the part wait behind it. The client thus
// gets the same events, in the same order, with the same sequence numbers
// and every member but delta untouched, and text as soon as the
// textStream releases it, but for the text of the first carrier, which
// waits with it for the next event. The events that repeat the text carry
// its redaction as a whole, which is the concatenation of the deltas
// sent, whatever the split.

// rsPIIStream redacts a Responses stream (see piiStream).
type rsPIIStream struct {
	r *redactor

	active bool   // a content part's text is being streamed
	part   string // its key: item_id, output_index, content_index
	text   textStream

	// The last delta event of the active part, held back; carried is the
	// text it will carry, queue the events that came after it.
	carrier *sse.Event
	carried []byte
	queue   []sse.Event
	scratch []byte
}

// event redacts one event of the client's stream.
func (s *rsPIIStream) event(dst []byte, e sse.Event) []byte {
	if !e.HasData || e.Comment != nil {
		// Comments and data-less events are no part of the event model:
		// they need not wait for a held delta.
		return sse.AppendEvent(dst, e)
	}
	obj, err := jsonobj.Parse(e.Data)
	if err != nil {
		dst = s.endPart(dst)
		return sse.AppendEvent(dst, e)
	}
	typ, _, _ := obj.String("type")
	switch {
	case typ == "response.output_text.delta":
		delta, ok, err := obj.String("delta")
		if ok && err == nil {
			return s.delta(dst, e, rsPartKey(obj), delta)
		}
	case strings.HasPrefix(typ, "response.output_text.") && typ != "response.output_text.done" &&
		s.active && rsPartKey(obj) == s.part:
		// An annotation of the part being streamed, whose text goes on:
		// it waits behind the held delta.
		if s.carrier != nil {
			s.queue = append(s.queue, cloneEvent(e))
			return dst
		}
		return sse.AppendEvent(dst, e)
	}
	dst = s.endPart(dst)
	if data, ok := s.r.redactRSEvent(obj, typ); ok {
		e.Data = data
	}
	return sse.AppendEvent(dst, e)
}

// rsPartKey identifies the content part an event is about.
func rsPartKey(obj jsonobj.Object) string {
	item, _ := obj.Get("item_id")
	out, _ := obj.Get("output_index")
	content, _ := obj.Get("content_index")
	return string(item) + "\x00" + string(out) + "\x00" + string(content)
}

// delta redacts a response.output_text.delta event of part key.
func (s *rsPIIStream) delta(dst []byte, e sse.Event, key, text string) []byte {
	if s.active && key != s.part {
		dst = s.endPart(dst)
	}
	if !s.active {
		s.active, s.part, s.text = true, key, textStream{}
	}
	s.scratch = s.text.write(s.r, s.scratch[:0], text, false)
	if s.carrier != nil {
		// The held delta carries what this one decides, and this one is
		// held in its place.
		s.carried = append(s.carried, s.scratch...)
		dst = s.release(dst)
		s.hold(e, nil)
		return dst
	}
	if len(s.scratch) > 0 && s.text.pendingLen() == 0 {
		return s.appendDelta(dst, e, s.scratch) // no tail: no carrier needed
	}
	// The part's first delta to leave a tail: it waits, with the text it
	// released, for the next event.
	s.hold(e, s.scratch)
	return dst
}

// hold keeps delta event e back as the carrier, with text.
func (s *rsPIIStream) hold(e sse.Event, text []byte) {
	c := cloneEvent(e)
	s.carrier = &c
	s.carried = append(s.carried[:0], text...)
}

// release sends the held delta with its text, and the events after it.
func (s *rsPIIStream) release(dst []byte) []byte {
	if s.carrier == nil {
		return dst
	}
	dst = s.appendDelta(dst, *s.carrier, s.carried)
	for _, q := range s.queue {
		dst = sse.AppendEvent(dst, q)
	}
	s.carrier, s.carried, s.queue = nil, s.carried[:0], s.queue[:0]
	return dst
}

// endPart releases the rest of the active part's text with its held
// delta: the part is over.
func (s *rsPIIStream) endPart(dst []byte) []byte {
	if !s.active {
		return dst
	}
	// Text is held back only while a delta is (see delta), so there is
	// a carrier for it.
	s.carried = s.text.write(s.r, s.carried, "", true)
	s.active, s.part, s.text = false, "", textStream{}
	return s.release(dst)
}

// appendDelta appends delta event e with text as its delta.
func (s *rsPIIStream) appendDelta(dst []byte, e sse.Event, text []byte) []byte {
	obj, err := jsonobj.Parse(e.Data)
	if err != nil {
		return sse.AppendEvent(dst, e)
	}
	e.Data = obj.Set("delta", jsonobj.AppendString(nil, string(text)))
	return sse.AppendEvent(dst, e)
}

// cloneEvent copies an event the decoder lent.
func cloneEvent(e sse.Event) sse.Event {
	c := e
	c.Type = append([]byte(nil), e.Type...)
	c.Data = append([]byte(nil), e.Data...)
	c.ID = append([]byte(nil), e.ID...)
	return c
}

// redactRSEvent redacts the whole texts an event of a Responses stream
// repeats: response.output_text.done's text, an output_text part, a
// message item, a response. It returns the new data and whether anything
// changed.
func (r *redactor) redactRSEvent(obj jsonobj.Object, typ string) ([]byte, bool) {
	if typ == "response.output_text.done" {
		return r.redactMember(obj, "text")
	}
	for _, k := range [...]string{"part", "item", "response"} {
		raw, ok := obj.Get(k)
		if !ok {
			continue
		}
		var out []byte
		var changed bool
		switch k {
		case "part":
			out, changed = r.redactRSPart(raw)
		case "item":
			out, changed = r.redactRSItem(raw)
		default:
			out, changed = r.redactResponses(raw)
		}
		if changed {
			return obj.Set(k, out), true
		}
		return nil, false
	}
	return nil, false
}

// redactResponses redacts a response object: the output_text parts of
// its message items and its output_text. It returns body itself and
// false when nothing changed.
func (r *redactor) redactResponses(body []byte) ([]byte, bool) {
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return body, false
	}
	out, changed := body, false
	if raw, ok := obj.Get("output"); ok {
		if items, ok := r.redactArray(raw, r.redactRSItem); ok {
			out, changed = obj.Set("output", items), true
			if obj, err = jsonobj.Parse(out); err != nil {
				return body, false
			}
		}
	}
	if o, ok := r.redactMember(obj, "output_text"); ok {
		out, changed = o, true
	}
	return out, changed
}

// redactRSItem redacts the output_text parts of a message item.
func (r *redactor) redactRSItem(raw []byte) ([]byte, bool) {
	obj, err := jsonobj.Parse(raw)
	if err != nil {
		return raw, false
	}
	if typ, _, _ := obj.String("type"); typ != "message" {
		return raw, false
	}
	content, ok := obj.Get("content")
	if !ok {
		return raw, false
	}
	out, ok := r.redactArray(content, r.redactRSPart)
	if !ok {
		return raw, false
	}
	return obj.Set("content", out), true
}

// redactRSPart redacts the text of an output_text part.
func (r *redactor) redactRSPart(raw []byte) ([]byte, bool) {
	obj, err := jsonobj.Parse(raw)
	if err != nil {
		return raw, false
	}
	if typ, _, _ := obj.String("type"); typ != "output_text" {
		return raw, false
	}
	return r.redactMember(obj, "text")
}

// redactMember redacts the string member key of obj.
func (r *redactor) redactMember(obj jsonobj.Object, key string) ([]byte, bool) {
	s, ok, err := obj.String(key)
	if !ok || err != nil {
		return nil, false
	}
	red, changed := r.redact(s)
	if !changed {
		return nil, false
	}
	return obj.Set(key, jsonobj.AppendString(nil, red)), true
}

// redactArray applies f to the elements of the JSON array raw, keeping
// every other byte. It returns the new array and whether f changed an
// element.
func (r *redactor) redactArray(raw []byte, f func([]byte) ([]byte, bool)) ([]byte, bool) {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '[' || !maybePIIBytes(raw) {
		return raw, false
	}
	var out []byte
	last := 0 // raw[:last] is in out
	i = skipWS(raw, i+1)
	for i < len(raw) && raw[i] != ']' {
		end := valueEnd(raw, i)
		if end <= i {
			return raw, false
		}
		if elem, ok := f(raw[i:end]); ok {
			out = append(out, raw[last:i]...)
			out = append(out, elem...)
			last = end
		}
		i = skipWS(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = skipWS(raw, i+1)
		}
	}
	if out == nil {
		return raw, false
	}
	return append(out, raw[last:]...), true
}

// valueEnd returns the index after the JSON value at b[i], or -1.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = stringEnd(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	for i < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i])) {
		i++
	}
	return i
}
