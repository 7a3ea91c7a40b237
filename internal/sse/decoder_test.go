package sse

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clone copies e out of the decoder's memory, with empty Type, Data and ID
// as nil so that comparisons do not depend on where the bytes came from.
// Comment keeps its nil-ness: it marks comment events.
func clone(e Event) Event {
	e.Type = cloneOrNil(e.Type)
	e.Data = cloneOrNil(e.Data)
	e.ID = cloneOrNil(e.ID)
	if e.Comment != nil {
		e.Comment = append([]byte{}, e.Comment...)
	}
	return e
}

func cloneOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// decode feeds chunks to d, each through the same scratch buffer that is
// clobbered after every Feed, as a proxy reusing its read buffer would,
// then flushes. It returns the events and the first error.
func decode(d *Decoder, chunks ...[]byte) ([]Event, error) {
	var got []Event
	emit := func(e Event) error {
		got = append(got, clone(e))
		return nil
	}
	var scratch []byte
	for _, c := range chunks {
		scratch = append(scratch[:0], c...)
		if err := d.Feed(scratch, emit); err != nil {
			return got, err
		}
		for i := range scratch {
			scratch[i] = 'X'
		}
	}
	return got, d.Flush(emit)
}

func data(s string) Event { return Event{Data: []byte(s), HasData: true} }

func named(typ, s string) Event {
	e := data(s)
	e.Type = []byte(typ)
	return e
}

func withID(e Event, id string) Event {
	e.ID, e.HasID = []byte(id), true
	if id == "" {
		e.ID = nil
	}
	return e
}

func comment(s string) Event { return Event{Comment: []byte(s)} }

func emptyData() Event { return Event{HasData: true} }

func TestDecode(t *testing.T) {
	specExample := ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n"
	tests := []struct {
		name         string
		in           string
		comments     bool
		unterminated bool
		want         []Event
	}{
		{name: "single", in: "data: hello\n\n", want: []Event{data("hello")}},
		{name: "multi-line data", in: "data: YHOO\ndata: +2\ndata: 10\n\n", want: []Event{data("YHOO\n+2\n10")}},
		{name: "spec example", in: specExample, want: []Event{
			withID(data("first event"), "1"),
			withID(data("second event"), ""),
		}},
		{name: "spec example with comments", in: specExample, comments: true, want: []Event{
			comment("test stream"),
			withID(data("first event"), "1"),
			withID(data("second event"), ""),
		}},
		{name: "spec example unterminated", in: specExample, unterminated: true, want: []Event{
			withID(data("first event"), "1"),
			withID(data("second event"), ""),
			data(" third event"),
		}},
		{name: "data without colon", in: "data\n\ndata\ndata\n\ndata:", want: []Event{emptyData(), data("\n")}},
		{name: "data without space", in: "data:test\n\ndata: test\n\n", want: []Event{data("test"), data("test")}},
		{name: "one space stripped", in: "data:  x \n\n", want: []Event{data(" x ")}},
		{name: "colon in value", in: "data: a:b: c\n\n", want: []Event{data("a:b: c")}},
		{name: "event names", in: "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n", want: []Event{
			named("add", "73857293"), named("remove", "2153"),
		}},
		{name: "event name only", in: "event: ping\n\n", want: []Event{{Type: []byte("ping")}}},
		{name: "last event name wins", in: "event: a\nevent: b\ndata: x\n\n", want: []Event{named("b", "x")}},
		{name: "empty event name only", in: "event:\n\n", want: nil},
		{name: "type does not carry over", in: "event: a\ndata: 1\n\ndata: 2\n\n", want: []Event{named("a", "1"), data("2")}},
		{name: "blank lines only", in: "\n\r\n\r\n\n", want: nil},
		{name: "id with NUL ignored", in: "id: a\x00b\ndata: x\n\n", want: []Event{data("x")}},
		{name: "id with NUL keeps earlier id", in: "id: 1\nid: \x00\ndata: x\n\n", want: []Event{withID(data("x"), "1")}},
		{name: "id only", in: "id: 42\n\n", want: []Event{withID(Event{}, "42")}},
		{name: "retry", in: "retry: 3000\n\n", want: []Event{{Retry: 3 * time.Second, HasRetry: true}}},
		{name: "retry zero", in: "retry: 0\ndata: a\n\n", want: []Event{{Data: []byte("a"), HasData: true, HasRetry: true}}},
		{name: "retry not digits", in: "retry: 30x\ndata: a\n\nretry: -1\n\nretry: \n\nretry:+1\n\nretry: 1.5\n\n", want: []Event{data("a")}},
		{name: "retry keeps last valid", in: "retry: 7\nretry: bad\ndata: a\n\n", want: []Event{{Data: []byte("a"), HasData: true, Retry: 7 * time.Millisecond, HasRetry: true}}},
		{name: "retry overflow ignored", in: "retry: 99999999999999999999\ndata: a\n\n", want: []Event{data("a")}},
		{name: "CRLF", in: "data: a\r\ndata: b\r\n\r\n", want: []Event{data("a\nb")}},
		{name: "CR", in: "data: a\rdata: b\r\rdata: c\r\r", want: []Event{data("a\nb"), data("c")}},
		{name: "mixed line endings", in: "data: a\r\ndata: b\rdata: c\n\r\ndata: d\n\r\r\n", want: []Event{data("a\nb\nc"), data("d")}},
		{name: "CR CR is a blank line", in: "data: a\r\r\n", want: []Event{data("a")}},
		{name: "LF CR", in: "data: a\n\rdata: b\n\n", want: []Event{data("a"), data("b")}},
		{name: "BOM", in: "\xEF\xBB\xBFdata: a\n\n", want: []Event{data("a")}},
		{name: "BOM only", in: "\xEF\xBB\xBF", want: nil},
		{name: "second BOM is content", in: "\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n", want: []Event{data("b")}},
		{name: "BOM prefix is content", in: "\xEF\xBBdata: a\n\ndata: b\n\n", want: []Event{data("b")}},
		{name: "BOM prefix then newline", in: "\xEF\ndata: b\n\n", want: []Event{data("b")}},
		{name: "BOM not at start", in: "data: \xEF\xBB\xBFa\n\n", want: []Event{data("\xEF\xBB\xBFa")}},
		{name: "unknown fields", in: "foo: bar\nData: x\ndata : y\n\n", want: nil},
		{name: "comments dropped", in: ": ping\n\n:\ndata: a\n: c\n\n", want: []Event{data("a")}},
		{name: "comments kept", in: ": ping\n\n:\ndata: a\n:  c\ndata: b\n\n", comments: true, want: []Event{
			comment("ping"), comment(""), comment(" c"), data("a\nb"),
		}},
		{name: "trailing field at EOF", in: "data: a\n\ndata: b", want: []Event{data("a")}},
		{name: "trailing field at EOF unterminated", in: "data: a\n\ndata: b", unterminated: true, want: []Event{data("a"), data("b")}},
		{name: "unterminated event at EOF", in: "data: a\ndata: b\n", want: nil},
		{name: "unterminated event at EOF lenient", in: "data: a\ndata: b\r", unterminated: true, want: []Event{data("a\nb")}},
		{name: "trailing comment at EOF lenient", in: ": c", unterminated: true, comments: true, want: []Event{comment("c")}},
		{name: "BOM prefix at EOF lenient", in: "\xEF\xBB", unterminated: true, want: nil},
		{name: "empty", in: "", unterminated: true, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Decoder{KeepComments: tt.comments, EmitUnterminated: tt.unterminated}
			got, err := decode(d, []byte(tt.in))
			if err != nil {
				t.Fatalf("decode(%q) error = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decode(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
			// The table doubles as a split test.
			checkSplits(t, tt.in, *d)
		})
	}
}

// corpus holds realistic streams for the split tests.
var corpus = map[string]string{
	"openai": `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}

data: [DONE]

`,
	"anthropic": `event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","usage":{"input_tokens":25,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\": 1"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

`,
	"crlf": ": keep-alive\r\n\r\nevent: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1}\r\n\r\nid: 2\r\ndata:\r\n\r\nretry: 1500\r\n\r\n:\r\ndata: tail",
	"cr":   "\xEF\xBB\xBFdata: a\rdata: b\r\revent: e\rid: 7\r\r: c\rdata: x",
	"mixed": "\xEF\xBB\xBFdata: 1\r\n\rdata: 2\n\r\n" + "id: \x00\nid: 9\ndata\n\n" +
		"retry: 12a\nretry: 12\n\n" + ": c\r\n" + "data: " + strings.Repeat("x", 300) + "\r\n\r",
}

// checkSplits asserts that feeding in to a decoder configured like opts
// gives the same events and error status split at every single position,
// one byte at a time and with empty chunks in between, as whole.
func checkSplits(t *testing.T, in string, opts Decoder) {
	t.Helper()
	fresh := func() *Decoder {
		return &Decoder{MaxEventBytes: opts.MaxEventBytes, KeepComments: opts.KeepComments, EmitUnterminated: opts.EmitUnterminated}
	}
	b := []byte(in)
	want, wantErr := decode(fresh(), b)
	check := func(how string, chunks ...[]byte) {
		t.Helper()
		got, err := decode(fresh(), chunks...)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%s: error = %v, want %v", how, err, wantErr)
		}
		// reflect.DeepEqual first: cmp is too slow for thousands of splits.
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("%s: events differ from whole feed (-whole +split):\n%s", how, cmp.Diff(want, got))
		}
	}
	for i := 0; i <= len(b); i++ {
		check(fmt.Sprintf("split at %d", i), b[:i], b[i:])
	}
	bytewise := make([][]byte, 0, 2*len(b))
	for i := range b {
		bytewise = append(bytewise, b[i:i+1], nil)
	}
	check("byte at a time", bytewise...)
}

func TestSplitEverywhere(t *testing.T) {
	for name, in := range corpus {
		for _, opts := range []Decoder{
			{},
			{KeepComments: true},
			{EmitUnterminated: true},
			{KeepComments: true, EmitUnterminated: true},
			{MaxEventBytes: 64},
			{MaxEventBytes: 250, KeepComments: true},
		} {
			t.Run(fmt.Sprintf("%s/max=%d,comments=%t,unterminated=%t", name, opts.MaxEventBytes, opts.KeepComments, opts.EmitUnterminated), func(t *testing.T) {
				checkSplits(t, in, opts)
			})
		}
	}
}

func TestCorpusEvents(t *testing.T) {
	got, err := decode(&Decoder{}, []byte(corpus["openai"]))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || string(got[4].Data) != "[DONE]" {
		t.Errorf("openai: got %d events, last %q; want 5 ending in [DONE]", len(got), got[len(got)-1].Data)
	}
	got, err = decode(&Decoder{}, []byte(corpus["anthropic"]))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range got {
		types = append(types, string(e.Type))
	}
	wantTypes := []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("anthropic types (-want +got):\n%s", diff)
	}
	got, err = decode(&Decoder{KeepComments: true}, []byte(corpus["crlf"]))
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{
		comment("keep-alive"),
		withID(named("message", "{\"jsonrpc\":\"2.0\",\n\"id\":1}"), "1"),
		withID(emptyData(), "2"),
		{Retry: 1500 * time.Millisecond, HasRetry: true},
		comment(""),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("crlf (-want +got):\n%s", diff)
	}
}

// TestZeroCopy checks that an event complete in one chunk references the
// chunk rather than a copy.
func TestZeroCopy(t *testing.T) {
	chunk := []byte("event: e\ndata: payload\nid: 1\n\n")
	var d Decoder
	called := false
	err := d.Feed(chunk, func(e Event) error {
		called = true
		for name, b := range map[string][]byte{"Type": e.Type, "Data": e.Data, "ID": e.ID} {
			if !within(b, chunk) {
				t.Errorf("%s = %q does not point into the chunk", name, b)
			}
		}
		return nil
	})
	if err != nil || !called {
		t.Fatalf("Feed() = %v, emitted %t; want nil, true", err, called)
	}
}

// within reports whether b is a non-empty subslice of buf.
func within(b, buf []byte) bool {
	for i := range buf {
		if len(b) > 0 && &buf[i] == &b[0] {
			return i+len(b) <= len(buf)
		}
	}
	return false
}

func TestLastEventID(t *testing.T) {
	var d Decoder
	var ids []string
	emit := func(Event) error {
		ids = append(ids, string(d.LastEventID()))
		return nil
	}
	if err := d.Feed([]byte("id: 1\ndata: a\n\ndata: b\n\nid: 2\n\nid\ndata: c\n\nid: x\x00\ndata: d\n\n"), emit); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"1", "1", "2", "", ""}, ids); diff != "" {
		t.Errorf("LastEventID per event (-want +got):\n%s", diff)
	}
}

func TestMaxEventBytes(t *testing.T) {
	tests := []struct {
		name    string
		max     int
		chunks  []string
		want    []Event
		wantErr bool
	}{
		{name: "line at limit", max: 16, chunks: []string{"data: 0123456789\n\n"}, want: []Event{data("0123456789")}},
		{name: "line over limit", max: 16, chunks: []string{"data: a\n\ndata: 01234567890\n\n"}, want: []Event{data("a")}, wantErr: true},
		{name: "event over limit", max: 16, chunks: []string{"data: 0123\ndata: 4567\n\n"}, wantErr: true},
		{name: "comments count", max: 16, chunks: []string{": 0123456789\ndata: 1\n\n"}, wantErr: true},
		{name: "limit is per event", max: 16, chunks: []string{"data: 0123\n\ndata: 4567\n\n"}, want: []Event{data("0123"), data("4567")}},
		{name: "unterminated line over limit", max: 16, chunks: []string{"data: 0123", "456789", "0"}, wantErr: true},
		{name: "default limit", chunks: []string{"data: ", strings.Repeat("x", DefaultMaxEventBytes)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Decoder{MaxEventBytes: tt.max}
			var chunks [][]byte
			for _, c := range tt.chunks {
				chunks = append(chunks, []byte(c))
			}
			got, err := decode(d, chunks...)
			if tt.wantErr != errors.Is(err, ErrEventTooLarge) {
				t.Fatalf("error = %v, want ErrEventTooLarge: %t", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("default limit fits", func(t *testing.T) {
		payload := bytes.Repeat([]byte("x"), DefaultMaxEventBytes-len("data: "))
		got, err := decode(&Decoder{}, []byte("data: "), payload, []byte("\n\n"))
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
		if len(got) != 1 || !bytes.Equal(got[0].Data, payload) {
			t.Errorf("got %d events, want one with the %d-byte payload", len(got), len(payload))
		}
	})
}

func TestErrorsAreSticky(t *testing.T) {
	stop := errors.New("stop")
	d := &Decoder{}
	n := 0
	emit := func(Event) error { n++; return stop }
	if err := d.Feed([]byte("data: a\n\ndata: b\n\n"), emit); err != stop {
		t.Fatalf("Feed() = %v, want the emit error", err)
	}
	if err := d.Feed([]byte("data: c\n\n"), emit); err != stop {
		t.Fatalf("second Feed() = %v, want the emit error again", err)
	}
	if n != 1 {
		t.Errorf("emit called %d times, want 1", n)
	}
	d.Reset()
	got, err := decode(d, []byte("\xEF\xBB\xBFdata: c\n\n"))
	if err != nil {
		t.Fatalf("after Reset: %v", err)
	}
	if diff := cmp.Diff([]Event{data("c")}, got); diff != "" {
		t.Errorf("after Reset (-want +got):\n%s", diff)
	}
}

func TestFlushResets(t *testing.T) {
	d := &Decoder{}
	emit := func(Event) error { return nil }
	if err := d.Feed([]byte("data: partial\r"), emit); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(emit); err != nil {
		t.Fatal(err)
	}
	// A new stream: a leading LF is not the end of the old CR, and a BOM
	// is skipped again.
	got, err := decode(d, []byte("\n\xEF\xBB\xBFdata: x\n\ndata: y\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Event{data("y")}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
