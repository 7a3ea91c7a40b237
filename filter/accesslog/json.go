package accesslog

import (
	"slices"
	"unicode/utf8"

	"github.com/porticoproxy/portico/filter"
)

// jsonField is one compiled key of a JSON format.
type jsonField struct {
	key    string // the key, unescaped (slog attribute name)
	prefix string // `"key":` escaped, with a leading comma after the first
	ops    []op
	typed  bool // exactly one numeric operator: emitted as a JSON number
}

// compileJSON compiles a JSON format, keys sorted so output is stable.
func compileJSON(m map[string]string) ([]jsonField, error) { return compileJSONWith(m, nil) }

// compileJSONWith is compileJSON with custom operators (Config.Operators).
func compileJSONWith(m map[string]string, custom map[string]Operator) ([]jsonField, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fs := make([]jsonField, 0, len(keys))
	for i, k := range keys {
		ops, err := parseFormatWith(m[k], custom)
		if err != nil {
			return nil, err
		}
		var p []byte
		if i > 0 {
			p = append(p, ',')
		}
		p = appendJSONString(p, []byte(k))
		p = append(p, ':')
		fs = append(fs, jsonField{
			key:    k,
			prefix: string(p),
			ops:    ops,
			typed:  len(ops) == 1 && ops[0].numeric,
		})
	}
	return fs, nil
}

// appendJSONObject appends one JSON object line for x.
func appendJSONObject(b []byte, x *filter.Exchange, fs []jsonField) []byte {
	b = append(b, '{')
	for i := range fs {
		f := &fs[i]
		b = append(b, f.prefix...)
		b = appendJSONValue(b, x, f)
	}
	return append(b, '}', '\n')
}

// appendJSONValue appends the value of f as a JSON number, null or string.
// The raw value is formatted at the end of b, escaped after it and moved
// back over it, so one buffer serves both.
func appendJSONValue(b []byte, x *filter.Exchange, f *jsonField) []byte {
	start := len(b)
	b = appendOps(b, x, f.ops)
	if f.typed {
		if len(b)-start == 1 && b[start] == '-' {
			return append(b[:start], "null"...)
		}
		return b
	}
	end := len(b)
	b = appendJSONString(b, b[start:end])
	n := copy(b[start:], b[end:])
	return b[:start+n]
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does. s may alias b's spare capacity only
// below len(b).
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20:
				b = append(b, c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
