package accesslog

import (
	"fmt"
	"strconv"
	"time"
)

// timeField is one piece of a compiled START_TIME format: a literal or a
// strftime conversion.
type timeField struct {
	conv byte // 0 for a literal
	lit  string
}

// defaultTimeLayout is Envoy's default START_TIME format,
// %Y-%m-%dT%H:%M:%E3SZ (2006-01-02T15:04:05.000Z).
var defaultTimeLayout = mustTimeFormat("%Y-%m-%dT%H:%M:%S.%3fZ")

func mustTimeFormat(s string) []timeField {
	f, err := parseTimeFormat(s)
	if err != nil {
		panic(err)
	}
	return f
}

// parseTimeFormat compiles the strftime subset that START_TIME accepts:
// %Y %m %d %H %M %S %z %s %F %T %3f %6f %9f %E3S %E6S %E9S and %%.
// Literal text is copied as is; Go layout tokens in it have no meaning.
func parseTimeFormat(s string) ([]timeField, error) {
	var fs []timeField
	var lit []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit = append(lit, s[i])
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("START_TIME format %q: trailing %%", s)
		}
		var conv []byte
		rest := s[i+1:]
		switch {
		case rest[0] == '%':
			lit = append(lit, '%')
			i++
			continue
		case len(rest) >= 2 && rest[1] == 'f' && (rest[0] == '3' || rest[0] == '6' || rest[0] == '9'):
			conv = []byte{rest[0]}
			i += 2
		case len(rest) >= 3 && rest[0] == 'E' && rest[2] == 'S' && (rest[1] == '3' || rest[1] == '6' || rest[1] == '9'):
			conv = []byte{'S', '.', rest[1]}
			i += 3
		case rest[0] == 'F':
			conv = []byte{'Y', '-', 'm', '-', 'd'}
			i++
		case rest[0] == 'T':
			conv = []byte{'H', ':', 'M', ':', 'S'}
			i++
		case rest[0] == 'Y' || rest[0] == 'm' || rest[0] == 'd' || rest[0] == 'H' ||
			rest[0] == 'M' || rest[0] == 'S' || rest[0] == 'z' || rest[0] == 's':
			conv = []byte{rest[0]}
			i++
		default:
			return nil, fmt.Errorf("START_TIME format %q: unsupported conversion %%%c", s, rest[0])
		}
		// Expanded conversions use '-', ':' and '.' as literals.
		for _, c := range conv {
			if c == '-' || c == ':' || c == '.' {
				lit = append(lit, c)
				continue
			}
			if len(lit) > 0 {
				fs = append(fs, timeField{lit: string(lit)})
				lit = lit[:0]
			}
			fs = append(fs, timeField{conv: c})
		}
	}
	if len(lit) > 0 {
		fs = append(fs, timeField{lit: string(lit)})
	}
	return fs, nil
}

// appendTime formats t with the compiled fields, without allocating.
func appendTime(b []byte, t time.Time, fs []timeField) []byte {
	for _, f := range fs {
		switch f.conv {
		case 0:
			b = append(b, f.lit...)
		case 'Y':
			b = appendPadded(b, t.Year(), 4)
		case 'm':
			b = appendPadded(b, int(t.Month()), 2)
		case 'd':
			b = appendPadded(b, t.Day(), 2)
		case 'H':
			b = appendPadded(b, t.Hour(), 2)
		case 'M':
			b = appendPadded(b, t.Minute(), 2)
		case 'S':
			b = appendPadded(b, t.Second(), 2)
		case 's':
			b = strconv.AppendInt(b, t.Unix(), 10)
		case 'z':
			_, off := t.Zone()
			sign := byte('+')
			if off < 0 {
				sign, off = '-', -off
			}
			b = append(b, sign)
			b = appendPadded(b, off/3600, 2)
			b = appendPadded(b, off%3600/60, 2)
		case '3':
			b = appendPadded(b, t.Nanosecond()/1e6, 3)
		case '6':
			b = appendPadded(b, t.Nanosecond()/1e3, 6)
		case '9':
			b = appendPadded(b, t.Nanosecond(), 9)
		}
	}
	return b
}

// appendPadded appends v in decimal, zero-padded to width digits.
func appendPadded(b []byte, v, width int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var tmp [20]byte
	i := len(tmp)
	for v >= 10 || width > 1 {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	i--
	tmp[i] = byte('0' + v)
	return append(b, tmp[i:]...)
}
