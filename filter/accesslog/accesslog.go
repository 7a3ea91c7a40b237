package accesslog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porticoproxy/portico/filter"
)

// DefaultBufferSize is the number of formatted lines a Logger queues for its
// writer goroutine when Config.BufferSize is zero.
const DefaultBufferSize = 1024

// Config configures a Logger. The zero value is not valid: exactly one of
// Output and Slog must be set.
type Config struct {
	// Format is an Envoy format string (text_format). Empty means
	// DefaultFormat when JSON is empty too. Every entry is one line: a
	// newline is added when Format does not end with one.
	Format string
	// JSON, when set, logs one JSON object per line (Envoy's json_format):
	// each key maps to a format string. A value that is exactly one numeric
	// operator, such as "%RESPONSE_CODE%", is a JSON number (null when
	// unset); every other value is a string. Keys are written sorted.
	// Mutually exclusive with Format.
	JSON map[string]string

	// Output receives the lines, written by the Logger's own goroutine.
	Output io.Writer
	// Operators are custom format operators, by name (upper case, digits
	// and underscores, as Envoy's): %NAME% in Format or a JSON value calls
	// the operator's Append. They extend the built-in set and cannot
	// replace a built-in operator. Package llm provides some
	// (llm.AccessLogOperators).
	Operators map[string]Operator

	// Slog receives each entry as an Info record, from the Logger's own
	// goroutine: a text line (without its newline) as the message; with
	// JSON, each key as an attribute and "access" as the message.
	// Exactly one of Output and Slog must be set.
	Slog *slog.Logger

	// BufferSize bounds the queue of formatted entries waiting for the
	// writer goroutine; zero means DefaultBufferSize. When it is full,
	// entries are dropped and counted (Logger.Dropped).
	BufferSize int

	// The fields below are Envoy's access log filters. An entry is logged
	// only if every filter that is set passes.

	// StatusAtLeast, when non-zero, logs only exchanges whose status is at
	// least this (Envoy's status_code_filter with GE).
	StatusAtLeast int
	// StatusCodes, when set, logs only exchanges with one of these statuses.
	StatusCodes []int
	// MinDuration, when non-zero, logs only exchanges that took at least
	// this long, End minus Start (Envoy's duration_filter).
	MinDuration time.Duration
	// Flags, when non-zero, logs only exchanges with at least one of these
	// response flags (Envoy's response_flag_filter).
	Flags filter.Flags
	// Fraction, when in (0, 1), logs that random fraction of the exchanges
	// that pass the other filters (Envoy's runtime_filter). Zero and one
	// log all.
	Fraction float64
}

// Operator is a custom format operator (Config.Operators).
type Operator struct {
	// Append appends the operator's value for the exchange to b and
	// returns the extended slice; "-" by Envoy's convention when there is
	// none. It runs in the done phase, on the request's goroutine.
	Append func(b []byte, x *filter.Exchange) []byte
	// Numeric marks values that are numbers (or "-"), which a JSON format
	// writes unquoted (null for "-").
	Numeric bool
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case c.Format != "" && len(c.JSON) > 0:
		return errors.New("accesslog: Format and JSON are mutually exclusive")
	case (c.Output == nil) == (c.Slog == nil):
		return errors.New("accesslog: exactly one of Output and Slog must be set")
	case c.BufferSize < 0:
		return fmt.Errorf("accesslog: BufferSize %d is negative", c.BufferSize)
	case c.StatusAtLeast < 0 || c.StatusAtLeast > 999:
		return fmt.Errorf("accesslog: StatusAtLeast %d out of range", c.StatusAtLeast)
	case c.MinDuration < 0:
		return fmt.Errorf("accesslog: MinDuration %v is negative", c.MinDuration)
	case !(c.Fraction >= 0 && c.Fraction <= 1): // also rejects NaN
		return fmt.Errorf("accesslog: Fraction %v not in [0, 1]", c.Fraction)
	}
	for name, o := range c.Operators {
		if name == "" || strings.IndexFunc(name, func(r rune) bool { return !isNameByte(byte(r)) || r > 0x7f }) >= 0 {
			return fmt.Errorf("accesslog: Operators: %q is not an operator name (A-Z, 0-9, _)", name)
		}
		if o.Append == nil {
			return fmt.Errorf("accesslog: Operators: %s has no Append", name)
		}
	}
	for _, s := range c.StatusCodes {
		if s < 100 || s > 999 {
			return fmt.Errorf("accesslog: StatusCodes: %d is not a status code", s)
		}
	}
	return nil
}

// Logger is an access log: a filter.DoneFilter that formats one entry per
// exchange and hands it to a writer goroutine the Logger owns.
//
// A Logger is safe for concurrent use. OnDone never blocks: it formats into
// a pooled buffer and queues it, or drops it when the queue is full or the
// Logger is closed. The Output (or Slog handler) is called only from the
// writer goroutine. Close flushes the queue and joins the goroutine.
type Logger struct {
	text   []op        // text format; nil with JSON
	fields []jsonField // JSON format
	out    *bufio.Writer
	slog   *slog.Logger

	statusMin int
	statuses  []int
	minDur    time.Duration
	flags     filter.Flags
	fraction  float64

	queue   chan *[]byte
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	dropped atomic.Uint64
	once    sync.Once
	err     error // first write error; written by the writer goroutine, read after done
}

var (
	_ filter.Filter     = (*Logger)(nil)
	_ filter.DoneFilter = (*Logger)(nil)
)

// New validates cfg, compiles its format once and starts the writer
// goroutine. The caller must Close the Logger. Errors from a bad format name
// the operator and its byte position.
func New(cfg Config) (*Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Logger{
		slog:      cfg.Slog,
		statusMin: cfg.StatusAtLeast,
		statuses:  append([]int(nil), cfg.StatusCodes...),
		minDur:    cfg.MinDuration,
		flags:     cfg.Flags,
		fraction:  cfg.Fraction,
	}
	var err error
	if len(cfg.JSON) > 0 {
		l.fields, err = compileJSONWith(cfg.JSON, cfg.Operators)
	} else {
		f := cfg.Format
		if f == "" {
			f = DefaultFormat
		}
		if cfg.Output != nil && f[len(f)-1] != '\n' {
			f += "\n"
		}
		l.text, err = parseFormatWith(f, cfg.Operators)
	}
	if err != nil {
		return nil, err
	}
	if cfg.Output != nil {
		l.out = bufio.NewWriter(cfg.Output)
	}
	n := cfg.BufferSize
	if n == 0 {
		n = DefaultBufferSize
	}
	l.queue = make(chan *[]byte, n)
	l.stop = make(chan struct{})
	l.done = make(chan struct{})
	go l.run()
	return l, nil
}

// Name implements filter.Filter.
func (l *Logger) Name() string { return "accesslog" }

// OnDone implements filter.DoneFilter: it applies the filters, formats the
// entry and queues it without blocking.
func (l *Logger) OnDone(ctx context.Context, x *filter.Exchange) {
	if !l.pass(x) {
		return
	}
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	p := getBuf()
	*p = l.format((*p)[:0], x)
	select {
	case l.queue <- p:
	default:
		putBuf(p)
		l.dropped.Add(1)
	}
}

// Dropped returns the number of entries dropped because the queue was full
// or the Logger was closed.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Close stops accepting entries, writes the queued ones, flushes the Output
// and waits for the writer goroutine to exit. It returns the first error the
// Output returned, if any. Close is idempotent; entries from OnDone calls
// that race with Close may be lost without being counted.
func (l *Logger) Close() error {
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.stop)
	})
	<-l.done
	return l.err
}

// pass applies Envoy's access log filters.
func (l *Logger) pass(x *filter.Exchange) bool {
	if l.statusMin != 0 && x.Status < l.statusMin {
		return false
	}
	if len(l.statuses) > 0 {
		found := false
		for _, s := range l.statuses {
			if s == x.Status {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if l.minDur > 0 && (x.End.IsZero() || x.End.Sub(x.Start) < l.minDur) {
		return false
	}
	if l.flags != 0 && x.Flags&l.flags == 0 {
		return false
	}
	if l.fraction > 0 && l.fraction < 1 && rand.Float64() >= l.fraction {
		return false
	}
	return true
}

// format appends the entry for x to b: the text line, the JSON line, or for
// Slog with JSON the raw values as records (kind byte, 4-byte length,
// bytes) that the writer goroutine turns into attributes.
func (l *Logger) format(b []byte, x *filter.Exchange) []byte {
	switch {
	case l.fields == nil:
		return appendOps(b, x, l.text)
	case l.slog == nil:
		return appendJSONObject(b, x, l.fields)
	}
	for i := range l.fields {
		f := &l.fields[i]
		hdr := len(b)
		b = append(b, 's', 0, 0, 0, 0)
		b = appendOps(b, x, f.ops)
		n := len(b) - hdr - 5
		if f.typed {
			b[hdr] = 'n'
			if n == 1 && b[hdr+5] == '-' {
				b[hdr] = 'z'
			}
		}
		binary.BigEndian.PutUint32(b[hdr+1:], uint32(n))
	}
	return b
}

// run is the writer goroutine. It writes entries in order, flushes the
// Output whenever the queue runs empty, and on stop drains the queue.
func (l *Logger) run() {
	defer close(l.done)
	var attrs []slog.Attr
	for {
		select {
		case p := <-l.queue:
			attrs = l.write(p, attrs)
			if len(l.queue) == 0 {
				l.flush()
			}
		case <-l.stop:
			for {
				select {
				case p := <-l.queue:
					attrs = l.write(p, attrs)
				default:
					l.flush()
					return
				}
			}
		}
	}
}

func (l *Logger) write(p *[]byte, attrs []slog.Attr) []slog.Attr {
	b := *p
	switch {
	case l.out != nil:
		if _, err := l.out.Write(b); err != nil && l.err == nil {
			l.err = fmt.Errorf("accesslog: write: %w", err)
		}
	case l.fields == nil:
		if n := len(b); n > 0 && b[n-1] == '\n' {
			b = b[:n-1]
		}
		l.slog.LogAttrs(context.Background(), slog.LevelInfo, string(b))
	default:
		attrs = attrs[:0]
		for i := range l.fields {
			kind, n := b[0], int(binary.BigEndian.Uint32(b[1:5]))
			v := b[5 : 5+n]
			b = b[5+n:]
			key := l.fields[i].key
			switch kind {
			case 'z':
				attrs = append(attrs, slog.Any(key, nil))
			case 'n':
				if iv, err := strconv.ParseInt(string(v), 10, 64); err == nil {
					attrs = append(attrs, slog.Int64(key, iv))
					continue
				}
				attrs = append(attrs, slog.String(key, string(v)))
			default:
				attrs = append(attrs, slog.String(key, string(v)))
			}
		}
		l.slog.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
	}
	putBuf(p)
	return attrs
}

func (l *Logger) flush() {
	if l.out == nil {
		return
	}
	if err := l.out.Flush(); err != nil && l.err == nil {
		l.err = fmt.Errorf("accesslog: write: %w", err)
	}
}

// maxPooled caps the buffers kept in the pool, so one huge entry does not
// pin memory.
const maxPooled = 64 << 10

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(p *[]byte) {
	if cap(*p) > maxPooled {
		return
	}
	*p = (*p)[:0]
	bufPool.Put(p)
}
