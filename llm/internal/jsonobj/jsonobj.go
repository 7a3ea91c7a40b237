// Package jsonobj reads and edits the top-level members of a JSON object
// without decoding or re-encoding the rest of it.
//
// The LLM gateway acts on a few fields of a request body (model, stream,
// stream_options) and must carry everything else through byte for byte, so
// that provider fields it does not know survive. Parse indexes the members
// of the top-level object; Set replaces or adds one member and leaves every
// other byte as it was.
//
// Parse rejects duplicate top-level keys: a body with two "model" members
// could be routed on one and served on the other, depending on which
// parser reads it.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrNotObject is returned (wrapped) by Parse for input that is valid JSON
// but not an object.
var ErrNotObject = errors.New("not a JSON object")

// ErrDuplicateKey is returned (wrapped) by Parse when a key appears twice at
// the top level.
var ErrDuplicateKey = errors.New("duplicate key")

// Member is one top-level member: its key, unescaped, and the byte range of
// its value in the parsed source.
type Member struct {
	Key        string
	Start, End int
	keyStart   int // where the member's key starts
}

// Object is the index of a parsed object. It refers to the source slice,
// which must not change while the Object is in use.
type Object struct {
	src     []byte
	members []Member
}

// Parse validates src as JSON and indexes the members of its top-level
// object.
func Parse(src []byte) (Object, error) {
	if !json.Valid(src) {
		// Decode to get a useful error message.
		var v any
		err := json.Unmarshal(src, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return Object{}, err
	}
	i := skipSpace(src, 0)
	if i >= len(src) || src[i] != '{' {
		return Object{}, ErrNotObject
	}
	return index(src, i)
}

// index indexes the members of the valid object starting at src[i].
func index(src []byte, i int) (Object, error) {
	o := Object{src: src, members: make([]Member, 0, 16)}
	i = skipSpace(src, i+1)
	if src[i] == '}' {
		return o, nil
	}
	for {
		kStart := i
		kEnd := skipString(src, i)
		key := unquoteKey(src[kStart:kEnd])
		i = skipSpace(src, kEnd)
		i = skipSpace(src, i+1) // ':'
		vStart := i
		vEnd := skipValue(src, i)
		for _, m := range o.members {
			if m.Key == key {
				return Object{}, fmt.Errorf("%w %q", ErrDuplicateKey, key)
			}
		}
		o.members = append(o.members, Member{Key: key, Start: vStart, End: vEnd, keyStart: kStart})
		i = skipSpace(src, vEnd)
		if src[i] == '}' {
			return o, nil
		}
		i = skipSpace(src, i+1) // ','
	}
}

// ParseValid indexes src like Parse, but takes src to be valid JSON
// already: a value from Get of a parsed Object, which Parse validated. It
// still fails on a value that is not an object.
func ParseValid(src []byte) (Object, error) {
	i := skipSpace(src, 0)
	if i >= len(src) || src[i] != '{' {
		return Object{}, ErrNotObject
	}
	return index(src, i)
}

// Members returns the members in source order. The slice is shared.
func (o Object) Members() []Member { return o.members }

// Get returns the raw bytes of the value of key, or false.
func (o Object) Get(key string) ([]byte, bool) {
	for _, m := range o.members {
		if m.Key == key {
			return o.src[m.Start:m.End], true
		}
	}
	return nil, false
}

// String returns the value of key if it is a JSON string. ok is false when
// the key is absent; err is set when it is present but not a string.
func (o Object) String(key string) (s string, ok bool, err error) {
	raw, ok := o.Get(key)
	if !ok {
		return "", false, nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", true, fmt.Errorf("%s: must be a string", key)
	}
	return unquote(raw), true, nil
}

// Int returns the value of key if it is a JSON number that is an integer
// (an exponent or fraction, as some encoders write whole numbers, is
// accepted when the value is whole). ok is false when the key is absent
// or null; err is set when it is present but not such a number.
func (o Object) Int(key string) (n int64, ok bool, err error) {
	raw, ok := o.Get(key)
	if !ok || string(raw) == "null" {
		return 0, false, nil
	}
	if n, ok := parseInt(raw); ok {
		return n, true, nil
	}
	var f float64
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) || json.Unmarshal(raw, &f) != nil || f != float64(int64(f)) {
		return 0, true, fmt.Errorf("%s: must be an integer", key)
	}
	return int64(f), true, nil
}

// parseInt parses a plain decimal integer without allocating.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// Object returns the value of key indexed as an object. ok is false when
// the key is absent or null; err is set when it is not an object.
func (o Object) Object(key string) (v Object, ok bool, err error) {
	raw, ok := o.Get(key)
	if !ok || string(raw) == "null" {
		return Object{}, false, nil
	}
	v, err = ParseValid(raw)
	if err != nil {
		return Object{}, true, fmt.Errorf("%s: %w", key, err)
	}
	return v, true, nil
}

// First returns the first element of the array that is the value of key,
// if there is one. ok is false when the key is absent, null or an empty
// array; err is set when the value is not an array.
func (o Object) First(key string) (elem []byte, ok bool, err error) {
	raw, ok := o.Get(key)
	if !ok || string(raw) == "null" {
		return nil, false, nil
	}
	if raw[0] != '[' {
		return nil, true, fmt.Errorf("%s: must be an array", key)
	}
	i := skipSpace(raw, 1)
	if raw[i] == ']' {
		return nil, false, nil
	}
	return raw[i:skipValue(raw, i)], true, nil
}

// Bool returns the value of key if it is true or false; null and absence
// give false. Any other value is an error.
func (o Object) Bool(key string) (bool, error) {
	raw, ok := o.Get(key)
	if !ok {
		return false, nil
	}
	switch string(raw) {
	case "true":
		return true, nil
	case "false", "null":
		return false, nil
	}
	return false, fmt.Errorf("%s: must be a boolean", key)
}

// Delete returns a copy of the source without the member key (and the
// comma that separated it), or the source itself when key is absent.
// Every other byte is kept.
func (o Object) Delete(key string) []byte {
	src, ms := o.src, o.members
	for i, m := range ms {
		if m.Key != key {
			continue
		}
		from, to := m.keyStart, m.End
		switch {
		case i+1 < len(ms): // up to the next member's key
			to = ms[i+1].keyStart
		case i > 0: // the last: from the end of the previous value
			from = ms[i-1].End
		}
		out := make([]byte, 0, len(src)-(to-from))
		out = append(out, src[:from]...)
		return append(out, src[to:]...)
	}
	return src
}

// Set returns a copy of the source with the value of key replaced by raw,
// or with the member "key": raw added at the end when key is absent. raw
// must be valid JSON. Every other byte is kept.
func (o Object) Set(key string, raw []byte) []byte {
	src := o.src
	for _, m := range o.members {
		if m.Key == key {
			out := make([]byte, 0, len(src)-(m.End-m.Start)+len(raw))
			out = append(out, src[:m.Start]...)
			out = append(out, raw...)
			return append(out, src[m.End:]...)
		}
	}
	end := len(src) - 1
	for src[end] != '}' {
		end--
	}
	out := make([]byte, 0, len(src)+len(key)+len(raw)+8)
	out = append(out, src[:end]...)
	if len(o.members) > 0 {
		out = append(out, ',')
	}
	out = AppendString(out, key)
	out = append(out, ':')
	out = append(out, raw...)
	return append(out, src[end:]...)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
// b is valid JSON.
func skipString(b []byte, i int) int {
	i++
	for {
		switch b[i] {
		case '\\':
			i += 2
		case '"':
			return i + 1
		default:
			i++
		}
	}
}

// skipValue returns the index after the value starting at b[i]. b is valid
// JSON.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// unquoteKey is unquote for member names: the names of the members the
// LLM APIs share come back as constants, without allocating.
func unquoteKey(q []byte) string {
	switch string(q[1 : len(q)-1]) {
	case "model":
		return "model"
	case "messages":
		return "messages"
	case "stream":
		return "stream"
	case "stream_options":
		return "stream_options"
	case "max_tokens":
		return "max_tokens"
	case "role":
		return "role"
	case "content":
		return "content"
	case "id":
		return "id"
	case "object":
		return "object"
	case "created":
		return "created"
	case "choices":
		return "choices"
	case "usage":
		return "usage"
	case "index":
		return "index"
	case "message":
		return "message"
	case "finish_reason":
		return "finish_reason"
	case "tools":
		return "tools"
	case "tool_calls":
		return "tool_calls"
	case "system":
		return "system"
	case "system_fingerprint":
		return "system_fingerprint"
	case "temperature":
		return "temperature"
	case "prompt_tokens":
		return "prompt_tokens"
	case "completion_tokens":
		return "completion_tokens"
	case "total_tokens":
		return "total_tokens"
	case "prompt_tokens_details":
		return "prompt_tokens_details"
	case "completion_tokens_details":
		return "completion_tokens_details"
	case "cached_tokens":
		return "cached_tokens"
	case "reasoning_tokens":
		return "reasoning_tokens"
	case "type":
		return "type"
	case "text":
		return "text"
	case "input":
		return "input"
	}
	return unquote(q)
}

// unquote returns the content of the JSON string literal q (valid JSON).
func unquote(q []byte) string {
	inner := q[1 : len(q)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	json.Unmarshal(q, &s)
	return s
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string literal. Unlike encoding/json it
// does not escape <, > and &, so text survives byte for byte; invalid UTF-8
// becomes U+FFFD, and U+2028 and U+2029 are escaped as encoding/json does.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
