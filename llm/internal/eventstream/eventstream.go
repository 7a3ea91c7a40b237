package eventstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Header value types, as the framing numbers them.
const (
	TypeTrue      byte = 0
	TypeFalse     byte = 1
	TypeByte      byte = 2
	TypeInt16     byte = 3
	TypeInt32     byte = 4
	TypeInt64     byte = 5
	TypeBytes     byte = 6
	TypeString    byte = 7
	TypeTimestamp byte = 8
	TypeUUID      byte = 9
)

const (
	preludeLen = 12
	crcLen     = 4
	minMessage = preludeLen + crcLen
)

// DefaultMaxMessageBytes is the limit on one message when
// Decoder.MaxMessageBytes is zero: AWS services send at most 16 MiB (a
// payload and its headers), and a corrupt length must not make the
// Decoder buffer more.
const DefaultMaxMessageBytes = 16<<20 + 128<<10

// Errors returned (wrapped) by Decoder.Feed and Decoder.Flush.
var (
	// ErrCRC reports a prelude or message checksum that does not match.
	ErrCRC = errors.New("eventstream: checksum mismatch")
	// ErrMalformed reports lengths or headers that do not fit the framing.
	ErrMalformed = errors.New("eventstream: malformed message")
	// ErrTooLarge reports a message longer than Decoder.MaxMessageBytes.
	ErrTooLarge = errors.New("eventstream: message too large")
	// ErrTruncated reports a stream that ended inside a message.
	ErrTruncated = errors.New("eventstream: stream ended inside a message")
)

// Header is one message header. Value holds the value's bytes as framed,
// without the length prefix of bytes and string values: big-endian
// integers, raw bytes, UTF-8 text, or nothing for booleans.
type Header struct {
	Name  string
	Type  byte
	Value []byte
}

// Message is one decoded message. Headers and Payload borrow the
// Decoder's memory and the chunk being fed: they are valid only until the
// emit callback returns.
type Message struct {
	Headers []Header
	Payload []byte
}

// String returns the value of the named string (or bytes) header.
func (m *Message) String(name string) (string, bool) {
	for i := range m.Headers {
		h := &m.Headers[i]
		if h.Name == name && (h.Type == TypeString || h.Type == TypeBytes) {
			return string(h.Value), true
		}
	}
	return "", false
}

// Decoder parses an event stream incrementally. Only a message split
// across chunks is copied, into a buffer the Decoder reuses; a message
// that is whole in one chunk is decoded in place.
//
// The zero Decoder is ready to use. A Decoder is not safe for concurrent
// use; it belongs to one stream.
type Decoder struct {
	// MaxMessageBytes limits the total length of one message, and so the
	// memory the Decoder buffers. Zero means DefaultMaxMessageBytes.
	MaxMessageBytes int

	buf   []byte // a message begun in an earlier chunk
	total int    // its total length, once its prelude is in buf
	hdrs  []Header
	err   error
}

// Feed parses chunk, the next bytes of the stream, and calls emit, in
// order, for every message the chunk completes. It returns the first error
// from emit unchanged, or an error wrapping ErrCRC, ErrMalformed or
// ErrTooLarge; after an error the Decoder returns the same error.
func (d *Decoder) Feed(chunk []byte, emit func(Message) error) error {
	if d.err != nil {
		return d.err
	}
	for len(chunk) > 0 {
		if len(d.buf) == 0 {
			// Decode whole messages in place.
			if len(chunk) < preludeLen {
				d.buf = append(d.buf, chunk...)
				return nil
			}
			total, err := d.prelude(chunk)
			if err != nil {
				return d.fail(err)
			}
			if len(chunk) < total {
				d.total = total
				d.buf = append(d.buf, chunk...)
				return nil
			}
			if err := d.message(chunk[:total], emit); err != nil {
				return d.fail(err)
			}
			chunk = chunk[total:]
			continue
		}
		if len(d.buf) < preludeLen {
			n := min(preludeLen-len(d.buf), len(chunk))
			d.buf = append(d.buf, chunk[:n]...)
			chunk = chunk[n:]
			if len(d.buf) < preludeLen {
				return nil
			}
			total, err := d.prelude(d.buf)
			if err != nil {
				return d.fail(err)
			}
			d.total = total
		}
		n := min(d.total-len(d.buf), len(chunk))
		d.buf = append(d.buf, chunk[:n]...)
		chunk = chunk[n:]
		if len(d.buf) < d.total {
			return nil
		}
		err := d.message(d.buf, emit)
		d.buf, d.total = d.buf[:0], 0
		if err != nil {
			return d.fail(err)
		}
	}
	return nil
}

// Flush reports whether the stream ended between messages: it returns an
// error wrapping ErrTruncated when a message was begun but not completed.
func (d *Decoder) Flush() error {
	if d.err != nil {
		return d.err
	}
	if len(d.buf) > 0 {
		return d.fail(fmt.Errorf("%w (%d bytes pending)", ErrTruncated, len(d.buf)))
	}
	return nil
}

// Reset makes the Decoder ready for another stream.
func (d *Decoder) Reset() {
	d.buf, d.total, d.err = d.buf[:0], 0, nil
}

func (d *Decoder) fail(err error) error {
	d.err = err
	return err
}

// prelude checks the prelude at the start of b (at least preludeLen
// bytes) and returns the message's total length.
func (d *Decoder) prelude(b []byte) (int, error) {
	total := binary.BigEndian.Uint32(b[0:4])
	hlen := binary.BigEndian.Uint32(b[4:8])
	if crc := binary.BigEndian.Uint32(b[8:12]); crc32.ChecksumIEEE(b[:8]) != crc {
		return 0, fmt.Errorf("%w in the prelude", ErrCRC)
	}
	limit := d.MaxMessageBytes
	if limit <= 0 {
		limit = DefaultMaxMessageBytes
	}
	if total > uint32(limit) {
		return 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, total)
	}
	if total < minMessage || hlen > total-minMessage {
		return 0, fmt.Errorf("%w: total length %d, headers length %d", ErrMalformed, total, hlen)
	}
	return int(total), nil
}

// message checks and decodes the whole message b and emits it.
func (d *Decoder) message(b []byte, emit func(Message) error) error {
	end := len(b) - crcLen
	if crc32.ChecksumIEEE(b[:end]) != binary.BigEndian.Uint32(b[end:]) {
		return fmt.Errorf("%w in the message", ErrCRC)
	}
	hlen := int(binary.BigEndian.Uint32(b[4:8]))
	hdrs, err := parseHeaders(d.hdrs[:0], b[preludeLen:preludeLen+hlen])
	d.hdrs = hdrs
	if err != nil {
		return err
	}
	return emit(Message{Headers: hdrs, Payload: b[preludeLen+hlen : end]})
}

func parseHeaders(dst []Header, b []byte) ([]Header, error) {
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || len(b) < 1+n+1 {
			return dst, fmt.Errorf("%w: header name", ErrMalformed)
		}
		h := Header{Name: string(b[1 : 1+n]), Type: b[1+n]}
		b = b[2+n:]
		size := 0
		switch h.Type {
		case TypeTrue, TypeFalse:
		case TypeByte:
			size = 1
		case TypeInt16:
			size = 2
		case TypeInt32:
			size = 4
		case TypeInt64, TypeTimestamp:
			size = 8
		case TypeUUID:
			size = 16
		case TypeBytes, TypeString:
			if len(b) < 2 {
				return dst, fmt.Errorf("%w: header %q value length", ErrMalformed, h.Name)
			}
			size = int(binary.BigEndian.Uint16(b))
			b = b[2:]
		default:
			return dst, fmt.Errorf("%w: header %q has unknown type %d", ErrMalformed, h.Name, h.Type)
		}
		if len(b) < size {
			return dst, fmt.Errorf("%w: header %q value", ErrMalformed, h.Name)
		}
		h.Value = b[:size]
		b = b[size:]
		dst = append(dst, h)
	}
	return dst, nil
}

// AppendMessage appends one message with string headers (name, value
// pairs) and the payload to dst. It panics if a header name or value is
// too long for the framing (255 and 65535 bytes).
func AppendMessage(dst []byte, headers [][2]string, payload []byte) []byte {
	hlen := 0
	for _, h := range headers {
		if len(h[0]) == 0 || len(h[0]) > 255 || len(h[1]) > 65535 {
			panic("eventstream: header too long")
		}
		hlen += 1 + len(h[0]) + 1 + 2 + len(h[1])
	}
	total := preludeLen + hlen + len(payload) + crcLen
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(total))
	dst = binary.BigEndian.AppendUint32(dst, uint32(hlen))
	dst = binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:start+8]))
	for _, h := range headers {
		dst = append(dst, byte(len(h[0])))
		dst = append(dst, h[0]...)
		dst = append(dst, TypeString)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(h[1])))
		dst = append(dst, h[1]...)
	}
	dst = append(dst, payload...)
	return binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:]))
}
