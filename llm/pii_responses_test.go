package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/internal/sse"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
	"github.com/porticoproxy/portico/route"
)

// The text of the scripted Responses streams: an e-mail, a card number
// that passes the Luhn check and one that does not (it stays), a phone
// number.
const (
	rsPIIText = "Mail jane.doe@example.com, card 4111 1111 1111 1111 (not 4111 1111 1111 1112), call +1 (555) 123-4567 today."
	rsPIIWant = "Mail [REDACTED_EMAIL], card [REDACTED_CARD] (not 4111 1111 1111 1112), call [REDACTED_PHONE] today."

	// Reasoning summaries, encrypted content and function-call arguments
	// are not redacted.
	rsPIISummary   = "Thinking about ops@example.com"
	rsPIIEncrypted = "gAAA/+4915112345678/x"
	rsPIIArgs      = `{"card":"4111 1111 1111 1111"}`
)

// rsPIIScript writes a Responses stream: named events whose data starts
// with the type and the sequence number.
type rsPIIScript struct {
	b   []byte
	seq int
}

func (s *rsPIIScript) ev(typ, members string) {
	s.b = fmt.Appendf(s.b, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%d%s}\n\n", typ, typ, s.seq, members)
	s.seq++
}

func jstr(s string) string { return string(jsonobj.AppendString(nil, s)) }

func rsPIIResponse(status string, output ...string) string {
	return `{"id":"resp_1","object":"response","created_at":1,"status":"` + status + `","model":"gpt-x","output":[` +
		strings.Join(output, ",") + `],"usage":null}`
}

func rsPIIMessage(id, status string, texts ...string) string {
	var parts []string
	for _, t := range texts {
		parts = append(parts, `{"type":"output_text","text":`+jstr(t)+`,"annotations":[],"logprobs":[]}`)
	}
	return `{"type":"message","id":"` + id + `","status":"` + status + `","role":"assistant","content":[` + strings.Join(parts, ",") + `]}`
}

// rsPIIStreamOf scripts a whole Responses stream: a reasoning item whose
// summary and encrypted content look like PII, a message whose text
// arrives in deltas (with an annotation after the first and a comment
// after the second), a function call whose arguments hold a card number,
// and response.completed with all three and output_text.
func rsPIIStreamOf(deltas []string) []byte {
	text := strings.Join(deltas, "")
	var s rsPIIScript
	reasoning := `{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":` + jstr(rsPIISummary) +
		`}],"encrypted_content":"` + rsPIIEncrypted + `"}`
	call := func(args, status string) string {
		return `{"type":"function_call","id":"fc_1","call_id":"call_1","name":"pay","arguments":` + jstr(args) + `,"status":"` + status + `"}`
	}
	s.ev("response.created", `,"response":`+rsPIIResponse("in_progress"))
	s.ev("response.in_progress", `,"response":`+rsPIIResponse("in_progress"))
	s.ev("response.output_item.added", `,"output_index":0,"item":{"type":"reasoning","id":"rs_1","summary":[]}`)
	s.ev("response.reasoning_summary_part.added", `,"item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}`)
	s.ev("response.reasoning_summary_text.delta", `,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":`+jstr(rsPIISummary))
	s.ev("response.reasoning_summary_text.done", `,"item_id":"rs_1","output_index":0,"summary_index":0,"text":`+jstr(rsPIISummary))
	s.ev("response.reasoning_summary_part.done", `,"item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":`+jstr(rsPIISummary)+`}`)
	s.ev("response.output_item.done", `,"output_index":0,"item":`+reasoning)
	s.ev("response.output_item.added", `,"output_index":1,"item":`+rsPIIMessage("msg_1", "in_progress"))
	s.ev("response.content_part.added", `,"item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}`)
	for k, d := range deltas {
		s.ev("response.output_text.delta", `,"item_id":"msg_1","output_index":1,"content_index":0,"delta":`+jstr(d)+`,"logprobs":[]`)
		switch k {
		case 0:
			s.ev("response.output_text.annotation.added", `,"item_id":"msg_1","output_index":1,"content_index":0,"annotation_index":0,`+
				`"annotation":{"type":"url_citation","url":"https://example.com/","title":"Example","start_index":0,"end_index":4}`)
		case 1:
			s.b = append(s.b, ": keep-alive\n\n"...)
		}
	}
	s.ev("response.output_text.done", `,"item_id":"msg_1","output_index":1,"content_index":0,"text":`+jstr(text)+`,"logprobs":[]`)
	s.ev("response.content_part.done", `,"item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","text":`+jstr(text)+`,"annotations":[],"logprobs":[]}`)
	s.ev("response.output_item.done", `,"output_index":1,"item":`+rsPIIMessage("msg_1", "completed", text))
	s.ev("response.output_item.added", `,"output_index":2,"item":`+call("", "in_progress"))
	s.ev("response.function_call_arguments.delta", `,"item_id":"fc_1","output_index":2,"delta":`+jstr(rsPIIArgs))
	s.ev("response.function_call_arguments.done", `,"item_id":"fc_1","output_index":2,"arguments":`+jstr(rsPIIArgs))
	s.ev("response.output_item.done", `,"output_index":2,"item":`+call(rsPIIArgs, "completed"))
	completed := rsPIIResponse("completed", reasoning, rsPIIMessage("msg_1", "completed", text), call(rsPIIArgs, "completed"))
	completed = completed[:len(completed)-1] + `,"output_text":` + jstr(text) + `}`
	s.ev("response.completed", `,"response":`+completed)
	return s.b
}

// rsPIIFilter runs a client stream through a Responses piiStream, in
// chunks of size bytes or, with size 0, one event per call (as the llm
// filter emits them).
func rsPIIFilter(stream []byte, size int) []byte {
	ps := newPIIStream(newRedactor(nil), Responses)
	var chunks [][]byte
	if size == 0 {
		chunks = bytes.SplitAfter(stream, []byte("\n\n"))
	} else {
		for b := stream; len(b) > 0; b = b[min(size, len(b)):] {
			chunks = append(chunks, b[:min(size, len(b))])
		}
	}
	var out []byte
	for k, c := range chunks {
		out = append(out, ps.filter(c, k == len(chunks)-1)...)
	}
	return out
}

// rsPIIEvents decodes a stream's data events (comments left out).
func rsPIIEvents(t *testing.T, stream []byte) []sse.Event {
	t.Helper()
	var evs []sse.Event
	var dec sse.Decoder
	emit := func(e sse.Event) error {
		if e.HasData {
			evs = append(evs, cloneEvent(e))
		}
		return nil
	}
	if err := dec.Feed(stream, emit); err != nil {
		t.Fatal(err)
	}
	dec.Flush(emit)
	return evs
}

// rsPIIEvent is what the tests read of a Responses stream event.
type rsPIIEvent struct {
	Type           string `json:"type"`
	SequenceNumber int64  `json:"sequence_number"`
	ItemID         string `json:"item_id"`
	ContentIndex   int64  `json:"content_index"`
	Delta          string `json:"delta"`
	Text           string `json:"text"`
	Part           struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"part"`
	Item     rsPIIItem `json:"item"`
	Response struct {
		Output []rsPIIItem `json:"output"`
	} `json:"response"`
}

type rsPIIItem struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
}

// rsPIIParts checks that every content part's deltas, joined, are the text
// the events that repeat it carry (output_text.done, content_part.done,
// output_item.done and the response of the terminal event), that no delta
// comes after its part's output_text.done and that sequence numbers count
// up from 0; it returns each part's text by "item_id/content_index".
func rsPIIParts(t *testing.T, evs []sse.Event) map[string]string {
	t.Helper()
	texts := map[string]*strings.Builder{}
	done := map[string]bool{}
	text := func(item string, ci int) string {
		if b := texts[fmt.Sprintf("%s/%d", item, ci)]; b != nil {
			return b.String()
		}
		return ""
	}
	checkItem := func(where string, it rsPIIItem) {
		if it.Type != "message" {
			return
		}
		for ci, c := range it.Content {
			if c.Type == "output_text" && c.Text != text(it.ID, ci) {
				t.Errorf("%s: item %s part %d text %q, deltas %q", where, it.ID, ci, c.Text, text(it.ID, ci))
			}
		}
	}
	for k, e := range evs {
		var ev rsPIIEvent
		if err := json.Unmarshal(e.Data, &ev); err != nil {
			t.Fatalf("event %d %s: %v", k, e.Data, err)
		}
		if ev.SequenceNumber != int64(k) {
			t.Errorf("event %d (%s): sequence_number %d", k, ev.Type, ev.SequenceNumber)
		}
		if string(e.Type) != ev.Type {
			t.Errorf("event %d: named %q, type %q", k, e.Type, ev.Type)
		}
		key := fmt.Sprintf("%s/%d", ev.ItemID, ev.ContentIndex)
		switch ev.Type {
		case "response.output_text.delta":
			if done[key] {
				t.Errorf("event %d: a delta of %s after its output_text.done", k, key)
			}
			if texts[key] == nil {
				texts[key] = &strings.Builder{}
			}
			texts[key].WriteString(ev.Delta)
		case "response.output_text.done":
			done[key] = true
			if ev.Text != text(ev.ItemID, int(ev.ContentIndex)) {
				t.Errorf("output_text.done of %s: %q, deltas %q", key, ev.Text, text(ev.ItemID, int(ev.ContentIndex)))
			}
		case "response.content_part.done":
			if ev.Part.Type == "output_text" && ev.Part.Text != text(ev.ItemID, int(ev.ContentIndex)) {
				t.Errorf("content_part.done of %s: %q, deltas %q", key, ev.Part.Text, text(ev.ItemID, int(ev.ContentIndex)))
			}
		case "response.output_item.done":
			checkItem("output_item.done", ev.Item)
		case "response.completed", "response.incomplete", "response.failed":
			for _, it := range ev.Response.Output {
				checkItem(ev.Type, it)
			}
		}
	}
	out := map[string]string{}
	for k, b := range texts {
		out[k] = b.String()
	}
	return out
}

// replaceStrings replaces every string old in a decoded JSON value.
func replaceStrings(v any, old, new string) any {
	switch v := v.(type) {
	case string:
		if v == old {
			return new
		}
	case []any:
		for i := range v {
			v[i] = replaceStrings(v[i], old, new)
		}
	case map[string]any:
		for k := range v {
			v[k] = replaceStrings(v[k], old, new)
		}
	}
	return v
}

// checkRSPIIStream compares a redacted stream with the stream it came
// from: the same events in the same order; deltas differ in their delta
// only, the events that repeat the message's text in that text only (which
// is want), every other event byte for byte; and the message's deltas
// join to want.
func checkRSPIIStream(t *testing.T, in, out []byte, text, want string) {
	t.Helper()
	ins, outs := rsPIIEvents(t, in), rsPIIEvents(t, out)
	if len(ins) != len(outs) {
		t.Fatalf("%d events in, %d out:\n%s", len(ins), len(outs), out)
	}
	for k := range ins {
		a, b := ins[k], outs[k]
		if !bytes.Equal(a.Type, b.Type) {
			t.Fatalf("event %d: %s, want %s", k, b.Type, a.Type)
		}
		if bytes.Equal(a.Data, b.Data) {
			continue
		}
		ao, err := jsonobj.Parse(a.Data)
		if err != nil {
			t.Fatal(err)
		}
		bo, err := jsonobj.Parse(b.Data)
		if err != nil {
			t.Fatalf("event %d: %v: %s", k, err, b.Data)
		}
		if string(a.Type) == "response.output_text.delta" {
			am, bm := ao.Members(), bo.Members()
			if len(am) != len(bm) {
				t.Fatalf("event %d members:\n%s\n%s", k, a.Data, b.Data)
			}
			for i := range am {
				av, _ := ao.Get(am[i].Key)
				bv, _ := bo.Get(bm[i].Key)
				if am[i].Key != bm[i].Key || am[i].Key != "delta" && !bytes.Equal(av, bv) {
					t.Fatalf("event %d: member %s changed:\n%s\n%s", k, am[i].Key, a.Data, b.Data)
				}
			}
			continue
		}
		if !strings.Contains(string(a.Data), jstr(text)) {
			t.Fatalf("event %d changed, without the text:\n%s\n%s", k, a.Data, b.Data)
		}
		var av, bv any
		json.Unmarshal(a.Data, &av)
		json.Unmarshal(b.Data, &bv)
		if av = replaceStrings(av, text, want); !reflect.DeepEqual(av, bv) {
			t.Fatalf("event %d:\n got %s\nwant the text redacted in %s", k, b.Data, a.Data)
		}
	}
	if got := rsPIIParts(t, outs)["msg_1/0"]; got != want {
		t.Fatalf("deltas join to\n %q\nwant %q", got, want)
	}
}

// TestPIIResponsesStreamSplitInvariant runs the scripted stream with the
// text split into two deltas at every point, into three with a middle
// delta of 1 to 12 bytes at every point, in one delta and byte by byte, fed one event at a time, whole, and in 7-byte chunks: the
// deltas always join to the redaction of the whole text, which every
// done event carries; nothing else changes.
func TestPIIResponsesStreamSplitInvariant(t *testing.T) {
	if got, _ := newRedactor(nil).redact(rsPIIText); got != rsPIIWant {
		t.Fatalf("redact = %q", got)
	}
	text := rsPIIText
	for i := 0; i <= len(text); i++ {
		in := rsPIIStreamOf([]string{text[:i], text[i:]})
		for _, size := range []int{0, 7, len(in)} {
			checkRSPIIStream(t, in, rsPIIFilter(in, size), text, rsPIIWant)
		}
		// A middle delta of every length up to 12 at every point (which
		// splits every number three ways), and one up to the middle.
		for _, j := range []int{i + 1, i + 2, i + 3, i + 4, i + 5, i + 6, i + 7, i + 8, i + 9, i + 10, i + 11, i + 12, (i + len(text)) / 2} {
			if j > len(text) {
				continue
			}
			in := rsPIIStreamOf([]string{text[:i], text[i:j], text[j:]})
			checkRSPIIStream(t, in, rsPIIFilter(in, 0), text, rsPIIWant)
		}
	}
	// The whole text in one delta, the annotation after it, then the end.
	in := rsPIIStreamOf([]string{text})
	checkRSPIIStream(t, in, rsPIIFilter(in, 0), text, rsPIIWant)
	var deltas []string
	for i := range len(text) {
		deltas = append(deltas, text[i:i+1])
	}
	in = rsPIIStreamOf(deltas)
	checkRSPIIStream(t, in, rsPIIFilter(in, 0), text, rsPIIWant)
}

// TestPIIResponsesStreamReleasesEarly feeds a stream event by event: after
// each, the text the client has is what a textStream has released — the
// stream holds back only the tail that could still become a match.
func TestPIIResponsesStreamReleasesEarly(t *testing.T) {
	deltas := []string{"Reach me at ", "jane", ".doe@exa", "mple.com", " or call +1 (555) ", "123-4567", " now.", " Bye"}
	wantSeen := []string{"Reach me at ", "Reach me at ", "Reach me at ", "Reach me at ", "Reach me at [REDACTED_EMAIL] or call ",
		"Reach me at [REDACTED_EMAIL] or call ", "Reach me at [REDACTED_EMAIL] or call [REDACTED_PHONE] ", "Reach me at [REDACTED_EMAIL] or call [REDACTED_PHONE] now. "}
	r := newRedactor(nil)
	ps := newPIIStream(r, Responses)
	var ideal textStream
	var released, out []byte
	var s rsPIIScript
	s.ev("response.content_part.added", `,"item_id":"m","output_index":0,"content_index":0,"part":{"type":"output_text","text":""}`)
	out = append(out, ps.filter(s.b, false)...)
	for k, d := range deltas {
		s.b = s.b[:0]
		s.ev("response.output_text.delta", `,"item_id":"m","output_index":0,"content_index":0,"delta":`+jstr(d))
		out = append(out, ps.filter(s.b, false)...)
		released = ideal.write(r, released, d, false)
		seen := rsPIIParts(t, rsPIIEvents(t, out))["m/0"]
		if seen != string(released) || seen != wantSeen[k] {
			t.Fatalf("after %q the client has %q; released %q, want %q", d, seen, released, wantSeen[k])
		}
	}
	s.b = s.b[:0]
	s.ev("response.output_text.done", `,"item_id":"m","output_index":0,"content_index":0,"text":`+jstr(strings.Join(deltas, "")))
	out = append(out, ps.filter(s.b, true)...)
	want := "Reach me at [REDACTED_EMAIL] or call [REDACTED_PHONE] now. Bye"
	if got := rsPIIParts(t, rsPIIEvents(t, out))["m/0"]; got != want {
		t.Fatalf("text %q, want %q", got, want)
	}

	// The first delta of a part that releases text and leaves a tail is
	// the carrier of that tail: it waits, whole, for the next event.
	ps = newPIIStream(r, Responses)
	s = rsPIIScript{}
	s.ev("response.output_text.delta", `,"item_id":"m","output_index":0,"content_index":0,"delta":"Hello wor"`)
	if out := ps.filter(s.b, false); len(out) != 0 {
		t.Fatalf("released %s", out)
	}
	s.b = s.b[:0]
	s.ev("response.output_text.delta", `,"item_id":"m","output_index":0,"content_index":0,"delta":"ld, bye"`)
	out = ps.filter(s.b, false)
	if got := rsPIIParts(t, rsPIIEvents(t, out))["m/0"]; got != "Hello world, " {
		t.Fatalf("released %q", got)
	}
}

// TestPIIResponsesDoneEvents checks the events that repeat a text: with
// several items and parts, with text that only the done events carry,
// and for streams that end or fail in the middle of a part.
func TestPIIResponsesDoneEvents(t *testing.T) {
	r := newRedactor(nil)
	red := func(s string) string { out, _ := r.redact(s); return out }
	t.Run("items and parts", func(t *testing.T) {
		texts := [][]string{{"a@b.", "com and 4111 1111 ", "1111 1111"}, {"call 555-123-", "4567"}, {"ssn 123-45-67", "89 ok"}}
		ids := []string{"msg_a", "msg_b", "msg_b"}
		cis := []int{0, 0, 1}
		var s rsPIIScript
		var full []string
		for p, parts := range texts {
			text := strings.Join(parts, "")
			full = append(full, text)
			head := fmt.Sprintf(`,"item_id":%q,"output_index":%d,"content_index":%d`, ids[p], min(p, 1), cis[p])
			for _, d := range parts {
				s.ev("response.output_text.delta", head+`,"delta":`+jstr(d))
			}
			s.ev("response.output_text.done", head+`,"text":`+jstr(text))
			s.ev("response.content_part.done", head+`,"part":{"type":"output_text","text":`+jstr(text)+`}`)
			if p != 1 {
				s.ev("response.output_item.done", fmt.Sprintf(`,"output_index":%d,"item":%s`, min(p, 1), rsPIIMessage(ids[p], "completed", full[min(p, 1):]...)))
			}
		}
		s.ev("response.incomplete", `,"response":`+rsPIIResponse("incomplete", rsPIIMessage("msg_a", "completed", full[0]), rsPIIMessage("msg_b", "completed", full[1:]...)))
		got := rsPIIParts(t, rsPIIEvents(t, rsPIIFilter(s.b, 0)))
		for p := range texts {
			key := fmt.Sprintf("%s/%d", ids[p], cis[p])
			if got[key] != red(full[p]) || got[key] == full[p] {
				t.Errorf("%s: %q, want %q", key, got[key], red(full[p]))
			}
		}
	})
	t.Run("text in done events only", func(t *testing.T) {
		var s rsPIIScript
		head := `,"item_id":"m","output_index":0,"content_index":0`
		s.ev("response.output_text.done", head+`,"text":`+jstr(rsPIIText))
		s.ev("response.content_part.done", head+`,"part":{"type":"output_text","text":`+jstr(rsPIIText)+`}`)
		s.ev("response.output_item.done", `,"output_index":0,"item":`+rsPIIMessage("m", "completed", rsPIIText))
		s.ev("response.failed", `,"response":`+rsPIIResponse("failed", rsPIIMessage("m", "incomplete", rsPIIText)))
		out := rsPIIFilter(s.b, 0)
		if n := strings.Count(string(out), jstr(rsPIIWant)); n != 4 || strings.Contains(string(out), "jane") {
			t.Errorf("%d redacted texts:\n%s", n, out)
		}
	})
	for _, end := range []string{"eos", "error", "next item"} {
		t.Run("part cut by "+end, func(t *testing.T) {
			var s rsPIIScript
			head := `,"item_id":"m","output_index":0,"content_index":0`
			for _, d := range []string{"Mail jane", "@example.com"} {
				s.ev("response.output_text.delta", head+`,"delta":`+jstr(d))
			}
			switch end {
			case "error":
				s.ev("error", `,"code":"api_error","message":"cut","param":null`)
			case "next item":
				s.ev("response.output_item.added", `,"output_index":1,"item":{"type":"function_call","id":"fc","call_id":"c","name":"f","arguments":"","status":"in_progress"}`)
			}
			evs := rsPIIEvents(t, rsPIIFilter(s.b, 0))
			if got := rsPIIParts(t, evs)["m/0"]; got != "Mail [REDACTED_EMAIL]" {
				t.Errorf("text %q", got)
			}
			if len(evs) != s.seq {
				t.Errorf("%d events, want %d", len(evs), s.seq)
			}
		})
	}
}

// TestPIIResponsesNonStream redacts a response object: the text of
// output_text parts and output_text, nothing else, every other byte kept;
// directly and through the front door, passed through and translated.
func TestPIIResponsesNonStream(t *testing.T) {
	body := `{"id":"resp_1", "object":"response","created_at":1700000000,"status":"completed","model":"gpt-x",` +
		`"output":[ {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"` + rsPIISummary + `"}],"encrypted_content":"` + rsPIIEncrypted + `"},` +
		`{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[` +
		`{"type":"output_text","text":"<b>Mail</b> jane.doe@example.com & call +1 (555) 123-4567","annotations":[{"type":"url_citation","url":"https://a.example/?tel=+15551234567","title":"t","start_index":0,"end_index":3}],"logprobs":[]},` +
		`{"type":"refusal","refusal":"not 123-45-6789"}]},` +
		`{"type":"function_call","id":"fc_1","call_id":"call_1","name":"pay","arguments":` + jstr(rsPIIArgs) + `,"status":"completed"}],` +
		`"output_text":"<b>Mail</b> jane.doe@example.com & call +1 (555) 123-4567",` +
		`"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}`
	want := strings.ReplaceAll(body, "jane.doe@example.com & call +1 (555) 123-4567", "[REDACTED_EMAIL] & call [REDACTED_PHONE]")
	r := newRedactor(nil)
	got, changed := r.redactResponses([]byte(body))
	if string(got) != want || !changed {
		t.Fatalf("redactResponses:\n got %s\nwant %s", got, want)
	}
	clean := `{"output":[{"type":"message","content":[{"type":"output_text","text":"hello 42"}]}],"output_text":"hello 42"}`
	if got, changed := r.redactResponses([]byte(clean)); changed || string(got) != clean {
		t.Errorf("clean body changed: %s", got)
	}

	t.Run("passed through", func(t *testing.T) {
		g := policyGW(t, OpenAI, func(c *Config) {
			c.PII = PII{Responses: true}
			c.Providers[0].Responses = ResponsesNative
		})
		w, call := do(t, g, Responses, `{"model":"gpt-x","input":"hi"}`, nil, answer(200, body))
		if call == nil || call.Translated || w.Code != 200 || w.Body.String() != want {
			t.Errorf("status %d call %+v:\n%s", w.Code, call, w.Body)
		}
	})
	t.Run("translated", func(t *testing.T) {
		g := policyGW(t, Anthropic, func(c *Config) { c.PII = PII{Responses: true} })
		an := `{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[` +
			`{"type":"thinking","thinking":"` + rsPIISummary + `","signature":"` + rsPIIEncrypted + `"},{"type":"text","text":` + jstr(rsPIIText) + `},` +
			`{"type":"tool_use","id":"toolu_1","name":"pay","input":` + rsPIIArgs + `}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":20}}`
		w, call := do(t, g, Responses, `{"model":"claude-x","input":"hi"}`, nil, answer(200, an))
		var resp responses.Response
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != 200 || call == nil || !call.Translated {
			t.Fatalf("status %d %v: %s", w.Code, err, w.Body)
		}
		if resp.OutputText() != rsPIIWant {
			t.Errorf("output text %q", resp.OutputText())
		}
		for _, it := range resp.Output {
			switch it.Type {
			case "reasoning":
				if len(it.Summary) != 1 || it.Summary[0].Text != rsPIISummary || it.EncryptedContent != rsPIIEncrypted {
					t.Errorf("reasoning item %s", it.RawJSON())
				}
			case "function_call":
				if it.Arguments.OfString != rsPIIArgs {
					t.Errorf("function call %s", it.RawJSON())
				}
			}
		}
	})
}

// rsPIIGateway serves a gateway with PII.Responses on real sockets in
// front of provider p, and returns its base URL.
func rsPIIGateway(t *testing.T, p Provider) string {
	t.Helper()
	p.Name, p.APIKey = "up", testKey
	g, err := New(Config{Providers: []Provider{p}, Models: []Model{{Name: "*", Provider: "up"}}, PII: PII{Responses: true}})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := portico.New(portico.Config{
		Listeners: []listener.Config{{Name: "llm", Address: "127.0.0.1:0", FilterChains: []listener.FilterChain{{
			HTTP: &listener.HTTPConfig{StatPrefix: "llm", RouteConfig: "llm", Filters: []filter.Filter{g}},
		}}}},
		Routes: []route.Config{{Name: "llm", VirtualHosts: []route.VirtualHost{{
			Name: "llm", Domains: []string{"*"}, Rules: g.Rules(),
		}}}},
		Clusters: g.Clusters(),
	}, portico.Options{Admin: "-"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + gw.ListenerAddr("llm").String()
}

// rsPIIUpstream serves body to every request: an event stream written one
// event per flush when stream is set, else JSON. It records the paths.
func rsPIIUpstream(t *testing.T, body []byte, stream bool, paths chan<- string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.URL.Path
		if !stream {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for _, ev := range bytes.SplitAfter(body, []byte("\n\n")) {
			w.Write(ev)
			rc.Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestPIIResponsesSDK streams a Responses request with the official OpenAI
// client through a gateway on real sockets, over an OpenAI provider that
// serves Responses (the stream passes through) and over Chat Completions
// and Anthropic providers (translated): the client parses every event and
// every text it gets is redacted, the deltas' as the done events'.
func TestPIIResponsesSDK(t *testing.T) {
	deltas := []string{"Mail jane.d", "oe@exam", "ple.com, card 4111 11", "11 1111 1111 (not 4111 1111 1111 1112), call +1 (5", "55) 123-", "4567 today."}
	var chat, anthropic []byte
	for _, d := range deltas {
		chat = append(chat, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":[{"index":0,"delta":{"content":`+jstr(d)+`},"finish_reason":null}]}`+"\n\n"...)
		anthropic = append(anthropic, `event: content_block_delta`+"\n"+`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":`+jstr(d)+`}}`+"\n\n"...)
	}
	chat = append([]byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`+"\n\n"), chat...)
	chat = append(chat, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n"+
		`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":30,"total_tokens":35}}`+"\n\ndata: [DONE]\n\n"...)
	anthropic = append([]byte("event: message_start\n"+`data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}`+"\n\n"+
		"event: content_block_start\n"+`data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`+"\n\n"), anthropic...)
	anthropic = append(anthropic, "event: content_block_stop\n"+`data: {"type":"content_block_stop","index":0}`+"\n\n"+
		"event: message_delta\n"+`data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":30}}`+"\n\n"+
		"event: message_stop\n"+`data: {"type":"message_stop"}`+"\n\n"...)
	native := rsPIIStreamOf(deltas)
	nativeEvents := len(rsPIIEvents(t, native))

	for _, tc := range []struct {
		name     string
		kind     Kind
		mode     ResponsesMode
		upstream []byte
		path     string
	}{
		{"openai responses", OpenAI, ResponsesNative, native, "/v1/responses"},
		{"chat completions", OpenAI, ResponsesChat, chat, "/v1/chat/completions"},
		{"anthropic", Anthropic, "", anthropic, "/v1/messages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths := make(chan string, 4)
			base := rsPIIUpstream(t, tc.upstream, true, paths)
			if tc.kind == OpenAI {
				base += "/v1"
			}
			gw := rsPIIGateway(t, Provider{Kind: tc.kind, BaseURL: base, Responses: tc.mode})
			client := openai.NewClient(ooption.WithBaseURL(gw+"/v1/"), ooption.WithAPIKey("client-key"), ooption.WithMaxRetries(0))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{
				Model: "gpt-x",
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("What are my contact details?")},
			})
			var text strings.Builder
			var types []string
			var done, part, item, completed string
			for stream.Next() {
				ev := stream.Current()
				if ev.SequenceNumber != int64(len(types)) || ev.Type == "" {
					t.Errorf("event %d: %q sequence_number %d", len(types), ev.Type, ev.SequenceNumber)
				}
				types = append(types, ev.Type)
				raw := ev.RawJSON()
				if strings.Contains(raw, "jane") || strings.Contains(raw, "4111 1111 1111 1111") || strings.Contains(raw, "123-4567") {
					if ev.Type != "response.function_call_arguments.delta" && ev.Type != "response.function_call_arguments.done" &&
						!(ev.Type == "response.output_item.done" && ev.Item.Type == "function_call") && ev.Type != "response.completed" {
						t.Errorf("PII in %s", raw)
					}
				}
				switch ev.Type {
				case "response.output_text.delta":
					text.WriteString(ev.Delta)
				case "response.output_text.done":
					done = ev.Text
				case "response.content_part.done":
					part = ev.Part.Text
				case "response.output_item.done":
					if ev.Item.Type == "message" {
						item = ev.Item.Content[0].Text
					}
				case "response.completed":
					completed = ev.Response.OutputText()
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if p := <-paths; p != tc.path {
				t.Errorf("upstream path %s", p)
			}
			if len(types) < 8 || types[0] != "response.created" || types[len(types)-1] != "response.completed" {
				t.Errorf("events %v", types)
			}
			if tc.mode == ResponsesNative && len(types) != nativeEvents {
				t.Errorf("%d events, the provider sent %d", len(types), nativeEvents)
			}
			for what, got := range map[string]string{"deltas": text.String(), "output_text.done": done,
				"content_part.done": part, "output_item.done": item, "response.completed": completed} {
				if got != rsPIIWant {
					t.Errorf("%s: %q\nwant %q", what, got, rsPIIWant)
				}
			}
		})
	}

	t.Run("openai responses, not streamed", func(t *testing.T) {
		body := rsPIIResponse("completed", rsPIIMessage("msg_1", "completed", rsPIIText))
		paths := make(chan string, 4)
		gw := rsPIIGateway(t, Provider{Kind: OpenAI, BaseURL: rsPIIUpstream(t, []byte(body), false, paths) + "/v1", Responses: ResponsesNative})
		client := openai.NewClient(ooption.WithBaseURL(gw+"/v1/"), ooption.WithAPIKey("client-key"), ooption.WithMaxRetries(0))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := client.Responses.New(ctx, responses.ResponseNewParams{
			Model: "gpt-x",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("What are my contact details?")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if <-paths != "/v1/responses" || resp.OutputText() != rsPIIWant {
			t.Errorf("output text %q", resp.OutputText())
		}
	})
}
