package sse

import (
	"bytes"
	"strconv"
	"time"
)

// Event is one Server-Sent Events message, or one comment line.
//
// An Event produced by a Decoder borrows the Decoder's memory and the chunk
// being fed: its byte slices are valid only until the emit callback returns.
// Callers that keep an event must copy what they need. An Event has no
// methods with side effects and may be copied freely.
//
// A comment event (Decoder.KeepComments) has a non-nil Comment and no other
// field set; every other event has a nil Comment.
type Event struct {
	// Type is the value of the last "event" field, or empty for the default
	// type "message". It never contains CR or LF.
	Type []byte

	// Data is the values of the event's "data" fields joined with "\n".
	// HasData reports whether the event had any data field, which
	// distinguishes "data:" (present, empty) from no data at all; Data may
	// be nil or empty when HasData is set.
	Data    []byte
	HasData bool

	// ID is the value of the last "id" field without a NUL byte. HasID
	// reports whether there was one; an empty ID with HasID set resets the
	// client's last event ID. Per the spec, the field is not inherited by
	// later events: see Decoder.LastEventID for the running value.
	ID    []byte
	HasID bool

	// Retry is the reconnection time of the last valid "retry" field
	// (ASCII digits only, in milliseconds); HasRetry reports whether there
	// was one.
	Retry    time.Duration
	HasRetry bool

	// Comment is the text of a comment line (":" and one optional space
	// stripped). It is non-nil only for comment events.
	Comment []byte
}

// dispatchable reports whether the decoder emits an event with these fields.
func (e *Event) dispatchable() bool {
	return e.HasData || len(e.Type) > 0 || e.HasID || e.HasRetry
}

// AppendEvent appends the canonical encoding of e to dst and returns the
// extended slice: comment lines first (": text"), then "event: ", one
// "data: " line per line of Data, "id: " and "retry: " (in whole
// milliseconds), each only if set, then the blank line that dispatches the
// event. A comment-only event gets no blank line, so that a comment decoded
// in the middle of an event can be re-encoded in place.
//
// Line breaks (LF, CR or CRLF) in Data and Comment start new lines, so a
// CRLF in Data decodes back as LF. Type and ID are cut at their first line
// break, so that upstream values cannot inject fields. AppendEvent does not
// allocate beyond growing dst.
func AppendEvent(dst []byte, e Event) []byte {
	if e.Comment != nil {
		dst = appendLines(dst, ":", e.Comment)
		if !e.dispatchable() {
			return dst
		}
	}
	if len(e.Type) > 0 {
		dst = append(dst, "event: "...)
		dst = append(dst, firstLine(e.Type)...)
		dst = append(dst, '\n')
	}
	if e.HasData || len(e.Data) > 0 {
		dst = appendLines(dst, "data:", e.Data)
	}
	if e.HasID {
		dst = append(dst, "id: "...)
		dst = append(dst, firstLine(e.ID)...)
		dst = append(dst, '\n')
	}
	if e.HasRetry && e.Retry >= 0 {
		dst = append(dst, "retry: "...)
		dst = strconv.AppendInt(dst, e.Retry.Milliseconds(), 10)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}

// AppendData appends a complete event with only data to dst, as
// "data: <data>\n\n" (one "data: " line per line of data), and returns the
// extended slice. It is the OpenAI streaming shape, including the final
// "data: [DONE]".
func AppendData(dst, data []byte) []byte {
	dst = appendLines(dst, "data:", data)
	return append(dst, '\n')
}

// appendLines appends one "<prefix> <line>\n" per line of text, splitting at
// LF, CR and CRLF like the decoder does. An empty line is written as
// "<prefix>\n": the space is optional on decoding.
func appendLines(dst []byte, prefix string, text []byte) []byte {
	for {
		n := lineEnd(text)
		dst = append(dst, prefix...)
		if n > 0 {
			dst = append(dst, ' ')
			dst = append(dst, text[:n]...)
		}
		dst = append(dst, '\n')
		if n == len(text) {
			return dst
		}
		if text[n] == '\r' && n+1 < len(text) && text[n+1] == '\n' {
			n++
		}
		text = text[n+1:]
	}
}

// lineEnd returns the index of the first CR or LF in b, or len(b).
func lineEnd(b []byte) int {
	n := bytes.IndexByte(b, '\n')
	if n < 0 {
		n = len(b)
	}
	if r := bytes.IndexByte(b[:n], '\r'); r >= 0 {
		n = r
	}
	return n
}

func firstLine(b []byte) []byte { return b[:lineEnd(b)] }
