package sse

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		name string
		e    Event
		want string
	}{
		{name: "data", e: data(`{"a":1}`), want: "data: {\"a\":1}\n\n"},
		{name: "empty data", e: emptyData(), want: "data:\n\n"},
		{name: "data without HasData", e: Event{Data: []byte("x")}, want: "data: x\n\n"},
		{name: "multi-line data", e: data("a\nb\r\nc\rd\n"), want: "data: a\ndata: b\ndata: c\ndata: d\ndata:\n\n"},
		{name: "leading space kept", e: data(" x"), want: "data:  x\n\n"},
		{name: "all fields", e: Event{
			Type: []byte("message_stop"), Data: []byte("{}"), HasData: true,
			ID: []byte("7"), HasID: true, Retry: 2500 * time.Millisecond, HasRetry: true,
		}, want: "event: message_stop\ndata: {}\nid: 7\nretry: 2500\n\n"},
		{name: "empty id", e: withID(Event{}, ""), want: "id: \n\n"},
		{name: "type only", e: Event{Type: []byte("ping")}, want: "event: ping\n\n"},
		{name: "injection cut", e: Event{Type: []byte("a\ndata: evil"), ID: []byte("1\rretry: 0"), HasID: true}, want: "event: a\nid: 1\n\n"},
		{name: "comment", e: comment("keep-alive"), want: ": keep-alive\n"},
		{name: "empty comment", e: comment(""), want: ":\n"},
		{name: "multi-line comment", e: comment("a\nb"), want: ": a\n: b\n"},
		{name: "comment with event", e: Event{Comment: []byte("c"), Data: []byte("x"), HasData: true}, want: ": c\ndata: x\n\n"},
		{name: "zero event", e: Event{}, want: "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendEvent([]byte("prefix|"), tt.e))
			if want := "prefix|" + tt.want; got != want {
				t.Errorf("AppendEvent() = %q, want %q", got, want)
			}
		})
	}
}

func TestAppendData(t *testing.T) {
	for in, want := range map[string]string{
		`{"choices":[]}`: "data: {\"choices\":[]}\n\n",
		"[DONE]":         "data: [DONE]\n\n",
		"":               "data:\n\n",
		"a\nb":           "data: a\ndata: b\n\n",
	} {
		if got := string(AppendData(nil, []byte(in))); got != want {
			t.Errorf("AppendData(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	events := []Event{
		data(`{"id":"chatcmpl-1","choices":[{"delta":{"content":"hi"}}]}`),
		data("[DONE]"),
		emptyData(),
		data("\n"),
		data("a\nb\n\nc"),
		data("  two spaces"),
		named("content_block_delta", `{"type":"content_block_delta"}`),
		{Type: []byte("ping")},
		withID(Event{}, "resume-1"),
		withID(Event{}, ""),
		{Retry: 3 * time.Second, HasRetry: true},
		{Retry: 0, HasRetry: true, Data: []byte("r"), HasData: true},
		withID(named("message", "x: y"), "42"),
		comment("ping"),
		comment(""),
		comment(" spaced"),
	}
	var stream []byte
	for _, e := range events {
		stream = AppendEvent(stream, e)
	}
	got, err := decode(&Decoder{KeepComments: true}, stream)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events, got); diff != "" {
		t.Errorf("round trip of %q (-want +got):\n%s", stream, diff)
	}
	checkSplits(t, string(stream), Decoder{KeepComments: true})
}
