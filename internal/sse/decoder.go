package sse

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"
)

// DefaultMaxEventBytes is the limit on one event when
// Decoder.MaxEventBytes is zero.
const DefaultMaxEventBytes = 1 << 20

// ErrEventTooLarge is returned (wrapped) by Decoder.Feed and Decoder.Flush
// when an event or a line exceeds Decoder.MaxEventBytes.
var ErrEventTooLarge = errors.New("sse: event too large")

var bom = [3]byte{0xEF, 0xBB, 0xBF}

// maxRetryMS is the largest retry value, in milliseconds, that fits a
// time.Duration; larger values are ignored like malformed ones.
const maxRetryMS = math.MaxInt64 / int64(time.Millisecond)

// Decoder parses a text/event-stream incrementally, per the WHATWG HTML
// "Interpreting an event stream" algorithm, from chunks exactly as they
// arrive: a line, an event, a CRLF or the byte order mark may be split
// anywhere between chunks, and the events emitted do not depend on where.
//
// Lines end in LF, CRLF or CR. A "field: value" line has one optional space
// stripped from the value; "data" values are joined with "\n", "event",
// "id" and "retry" keep the last valid value, an "id" containing NUL and a
// "retry" that is not all ASCII digits are ignored, unknown fields are
// ignored, and a line without a colon is a field with an empty value. Lines
// starting with ":" are comments. A UTF-8 BOM at the very start is skipped.
//
// The blank line ending an event dispatches it if it had a data, id or
// retry field or a non-empty event type. This is more than a browser
// dispatches (it needs a data field) so that a proxy can forward id-only
// events (MCP's resumption priming event), retry-only events and
// "event: ping": consumers with browser semantics skip events without
// HasData.
//
// Emitted events borrow memory (see Event): an event that is complete in
// one chunk references the chunk itself, and only the parts of an event
// that span chunks are copied, into buffers the Decoder reuses, so
// steady-state decoding does not allocate. MaxEventBytes bounds that
// memory.
//
// The zero Decoder is ready to use. A Decoder is not safe for concurrent
// use: it belongs to one stream at a time, and Reset or Flush make it ready
// for the next one (it may be pooled).
type Decoder struct {
	// MaxEventBytes limits the size of one event: the bytes of its lines,
	// including comments and counting each line break as one byte, and so
	// the memory the Decoder buffers. Zero means DefaultMaxEventBytes.
	// The limit is checked identically however the stream is split.
	MaxEventBytes int

	// KeepComments makes the Decoder emit each comment line as an Event
	// with only Comment set, at the point it occurs (possibly in the
	// middle of an event's fields). By default comments are dropped.
	KeepComments bool

	// EmitUnterminated makes Flush treat the end of the stream as the end
	// of the last line and event, for upstreams that end without a blank
	// line. By default, as the spec says, Flush discards an event that is
	// not terminated by a blank line.
	EmitUnterminated bool

	err     error
	line    []byte // a line begun in an earlier chunk
	block   int    // bytes of the current event so far
	bomN    int    // BOM bytes matched at the start of the stream
	pastBOM bool   // the start of the stream has been examined
	skipLF  bool   // the last chunk ended in CR: drop a leading LF

	// The pending event. typ, id and data point into the current chunk
	// while the matching *InChunk is set, else into the *Buf buffers.
	typ, id, data                    []byte
	typBuf, idBuf, dataBuf           []byte
	typInChunk, idInChunk, dataInChk bool
	hasData, hasID, hasRetry         bool
	retry                            time.Duration

	lastID []byte
}

// Feed parses chunk, the next bytes of the stream, and calls emit, in
// stream order, for every event that the chunk completes. An Event passed
// to emit is valid only until emit returns.
//
// Feed does not retain chunk. It returns the first error from emit
// unchanged, or an error wrapping ErrEventTooLarge; after an error the
// Decoder returns the same error until Reset.
func (d *Decoder) Feed(chunk []byte, emit func(Event) error) error {
	if d.err != nil {
		return d.err
	}
	if len(chunk) == 0 {
		return nil
	}
	if !d.pastBOM {
		if chunk = d.skipBOM(chunk); !d.pastBOM {
			return nil
		}
	}
	if d.skipLF && len(chunk) > 0 {
		d.skipLF = false
		if chunk[0] == '\n' {
			chunk = chunk[1:]
		}
	}
	err := d.feed(chunk, emit)
	d.detach()
	if err != nil {
		d.err = err
	}
	return err
}

// Flush ends the stream. With EmitUnterminated it processes a final line
// without a line break and dispatches a pending event, calling emit as Feed
// does; otherwise it discards them. Either way it then resets the Decoder
// for a new stream.
func (d *Decoder) Flush(emit func(Event) error) error {
	defer d.Reset()
	if d.err != nil {
		return d.err
	}
	if !d.EmitUnterminated {
		return nil
	}
	if !d.pastBOM {
		// A BOM prefix that the stream never completed is content.
		d.line = append(d.line, bom[:d.bomN]...)
	}
	if len(d.line) > 0 {
		if err := d.processLine(d.line, false, emit); err != nil {
			return err
		}
	}
	return d.dispatch(emit)
}

// Reset discards the state of the current stream, including a sticky
// error, and keeps the options and the buffers.
func (d *Decoder) Reset() {
	*d = Decoder{
		MaxEventBytes:    d.MaxEventBytes,
		KeepComments:     d.KeepComments,
		EmitUnterminated: d.EmitUnterminated,
		line:             d.line[:0],
		typBuf:           d.typBuf[:0],
		idBuf:            d.idBuf[:0],
		dataBuf:          d.dataBuf[:0],
		lastID:           d.lastID[:0],
	}
}

// LastEventID returns the stream's last event ID: the ID of the most
// recent event that had an id field, which is what a client sends as
// Last-Event-ID when it reconnects. The slice is valid until the next call
// to Feed, Flush or Reset.
func (d *Decoder) LastEventID() []byte { return d.lastID }

// skipBOM consumes a BOM, possibly split across chunks, at the start of the
// stream. Bytes that turn out not to be a BOM are kept as the start of the
// first line.
func (d *Decoder) skipBOM(chunk []byte) []byte {
	for len(chunk) > 0 && d.bomN < len(bom) {
		if chunk[0] != bom[d.bomN] {
			d.line = append(d.line, bom[:d.bomN]...)
			d.pastBOM = true
			return chunk
		}
		d.bomN++
		chunk = chunk[1:]
	}
	if d.bomN == len(bom) {
		d.pastBOM = true
	}
	return chunk
}

func (d *Decoder) max() int {
	if d.MaxEventBytes > 0 {
		return d.MaxEventBytes
	}
	return DefaultMaxEventBytes
}

func (d *Decoder) tooLarge() error {
	return fmt.Errorf("sse: event exceeds %d bytes: %w", d.max(), ErrEventTooLarge)
}

// feed splits chunk into lines; a line without its line break is kept in
// d.line for the next chunk.
func (d *Decoder) feed(chunk []byte, emit func(Event) error) error {
	for len(chunk) > 0 {
		n := lineEnd(chunk)
		if n == len(chunk) {
			if d.block+len(d.line)+len(chunk) > d.max() {
				return d.tooLarge()
			}
			d.line = append(d.line, chunk...)
			return nil
		}
		line, inChunk := chunk[:n], true
		if len(d.line) > 0 {
			d.line = append(d.line, line...)
			line, inChunk = d.line, false
		}
		if chunk[n] == '\r' {
			if n+1 == len(chunk) {
				d.skipLF = true
			} else if chunk[n+1] == '\n' {
				n++
			}
		}
		chunk = chunk[n+1:]
		err := d.processLine(line, inChunk, emit)
		d.line = d.line[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// processLine interprets one complete line. inChunk reports whether line
// points into the caller's chunk, which the pending event may reference
// until detach, rather than into d.line, which is reused.
func (d *Decoder) processLine(line []byte, inChunk bool, emit func(Event) error) error {
	if len(line) == 0 {
		d.block = 0
		return d.dispatch(emit)
	}
	if d.block+len(line) > d.max() {
		return d.tooLarge()
	}
	d.block += len(line) + 1
	if line[0] == ':' {
		if !d.KeepComments {
			return nil
		}
		return emit(Event{Comment: trimSpace(line[1:])})
	}
	name, value := line, line[len(line):]
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], trimSpace(line[i+1:])
	}
	switch string(name) {
	case "event":
		d.typ, d.typBuf, d.typInChunk = keep(value, d.typBuf, inChunk)
	case "data":
		d.appendData(value, inChunk)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.id, d.idBuf, d.idInChunk = keep(value, d.idBuf, inChunk)
			d.hasID = true
		}
	case "retry":
		if ms, ok := parseRetry(value); ok {
			d.retry, d.hasRetry = time.Duration(ms)*time.Millisecond, true
		}
	}
	return nil
}

// keep returns the view to store for value, and buf: value itself if it
// is in the chunk, else a copy in buf.
func keep(value, buf []byte, inChunk bool) (view, newBuf []byte, viewInChunk bool) {
	if inChunk {
		return value, buf, true
	}
	buf = append(buf[:0], value...)
	return buf, buf, false
}

func (d *Decoder) appendData(value []byte, inChunk bool) {
	if !d.hasData {
		d.hasData = true
		d.data, d.dataBuf, d.dataInChk = keep(value, d.dataBuf, inChunk)
		return
	}
	if d.dataInChk {
		d.dataBuf = append(d.dataBuf[:0], d.data...)
		d.dataInChk = false
	}
	d.dataBuf = append(d.dataBuf, '\n')
	d.dataBuf = append(d.dataBuf, value...)
	d.data = d.dataBuf
}

// detach copies the parts of the pending event that point into the chunk,
// which the caller may reuse once Feed returns.
func (d *Decoder) detach() {
	if d.typInChunk {
		d.typ, d.typBuf, d.typInChunk = keep(d.typ, d.typBuf, false)
	}
	if d.idInChunk {
		d.id, d.idBuf, d.idInChunk = keep(d.id, d.idBuf, false)
	}
	if d.dataInChk {
		d.data, d.dataBuf, d.dataInChk = keep(d.data, d.dataBuf, false)
	}
}

// dispatch emits the pending event, if it is dispatchable, and clears it.
func (d *Decoder) dispatch(emit func(Event) error) error {
	e := Event{
		Type:     d.typ,
		Data:     d.data,
		HasData:  d.hasData,
		ID:       d.id,
		HasID:    d.hasID,
		Retry:    d.retry,
		HasRetry: d.hasRetry,
	}
	d.typ, d.id, d.data = nil, nil, nil
	d.typInChunk, d.idInChunk, d.dataInChk = false, false, false
	d.hasData, d.hasID, d.hasRetry, d.retry = false, false, false, 0
	if !e.dispatchable() {
		return nil
	}
	if e.HasID {
		d.lastID = append(d.lastID[:0], e.ID...)
	}
	return emit(e)
}

func trimSpace(v []byte) []byte {
	if len(v) > 0 && v[0] == ' ' {
		return v[1:]
	}
	return v
}

// parseRetry parses a retry value: one or more ASCII digits, in
// milliseconds, that fit a time.Duration.
func parseRetry(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var ms int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		ms = ms*10 + int64(c-'0')
		if ms > maxRetryMS {
			return 0, false
		}
	}
	return ms, true
}
