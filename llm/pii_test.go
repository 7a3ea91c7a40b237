package llm

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/porticoproxy/portico/internal/sse"
)

func TestRedact(t *testing.T) {
	r := newRedactor(nil)
	for _, tc := range []struct{ in, want string }{
		{"mail john.doe+x@example.co.uk now", "mail [REDACTED_EMAIL] now"},
		{"end of sentence: a@b.com.", "end of sentence: [REDACTED_EMAIL]."},
		{"not an email: a@b, x@localhost, @foo.com", "not an email: a@b, x@localhost, @foo.com"},
		{"card 4111 1111 1111 1111 exp 12/25", "card [REDACTED_CARD] exp 12/25"},
		{"card 4111-1111-1111-1111", "card [REDACTED_CARD]"},
		{"card 4111111111111111.", "card [REDACTED_CARD]."},
		{"card 4111 1111 1111 1112 fails Luhn", "card 4111 1111 1111 1112 fails Luhn"},
		{"card 4111 1111 1111 1111 12", "card [REDACTED_CARD] 12"},
		{"iban DE89 3704 0044 0532 0130 00 please", "iban [REDACTED_IBAN] please"},
		{"iban GB82WEST12345698765432", "iban [REDACTED_IBAN]"},
		{"bad iban DE89 3704 0044 0532 0130 01", "bad iban DE89 3704 0044 0532 0130 01"},
		{"ref 12 4111 1111 1111 1111", "ref 12 4111 1111 1111 1111"}, // inside a run of digit groups
		{"ssn 123-45-6789, not 666-45-6789 or 123-00-6789", "ssn [REDACTED_SSN], not 666-45-6789 or 123-00-6789"},
		{"call +1 (555) 123-4567 or 555.123.4567", "call [REDACTED_PHONE] or [REDACTED_PHONE]"},
		{"+44 20 7946 0958 and +4915112345678", "[REDACTED_PHONE] and [REDACTED_PHONE]"},
		{"555-123-4567, 555-987-6543", "[REDACTED_PHONE], [REDACTED_PHONE]"},
		{"numbers 1712345678, 2024-01-15, 3.14159, v1.2.3", "numbers 1712345678, 2024-01-15, 3.14159, v1.2.3"},
		{"ünïcödé a@b.io ✓", "ünïcödé [REDACTED_EMAIL] ✓"},
		{"", ""},
	} {
		got, _ := r.redact(tc.in)
		if got != tc.want {
			t.Errorf("redact(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
	only := newRedactor([]string{"email"})
	if got, _ := only.redact("a@b.com 4111 1111 1111 1111"); got != "[REDACTED_EMAIL] 4111 1111 1111 1111" {
		t.Errorf("email only: %q", got)
	}
}

// piiCorpus mixes every recogniser with near misses and text around them.
var piiCorpus = []string{
	"Hi, I'm Jane (jane.doe@example.com), card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789.",
	"Call +1 (555) 123-4567 or 555.123.4567; not 2024-01-15 nor 4111 1111 1111 1112.",
	"x@y.z a@b.com. AB12 GB82WEST12345698765432 +4915112345678 123-45-67890 ünï@cödé.com",
	"4111111111111111 1234 5678 9012 3456 7 +44 20 7946 0958",
}

// TestRedactStreamSplitInvariant feeds every text in two pieces at every
// split point (and in three pieces at pairs of points for the short
// ones): the output must equal the whole text's, and the stream may hold
// back no more than what could still become a match.
func TestRedactStreamSplitInvariant(t *testing.T) {
	r := newRedactor(nil)
	for _, text := range piiCorpus {
		want, _ := r.redact(text)
		for i := 0; i <= len(text); i++ {
			var ts textStream
			out := ts.write(r, nil, text[:i], false)
			out = ts.write(r, out, text[i:], false)
			out = ts.write(r, out, "", true)
			if string(out) != want {
				t.Fatalf("split at %d of %q:\n got %q\nwant %q", i, text, out, want)
			}
		}
		if len(text) > 100 {
			continue
		}
		for i := 0; i <= len(text); i++ {
			for j := i; j <= len(text); j++ {
				var ts textStream
				out := ts.write(r, nil, text[:i], false)
				out = ts.write(r, out, text[i:j], false)
				out = ts.write(r, out, text[j:], false)
				out = ts.write(r, out, "", true)
				if string(out) != want {
					t.Fatalf("split at %d,%d of %q:\n got %q\nwant %q", i, j, text, out, want)
				}
			}
		}
	}
	// Byte by byte, too.
	for _, text := range piiCorpus {
		want, _ := r.redact(text)
		var ts textStream
		var out []byte
		for i := range len(text) {
			out = ts.write(r, out, text[i:i+1], false)
		}
		out = ts.write(r, out, "", true)
		if string(out) != want {
			t.Fatalf("byte by byte %q:\n got %q\nwant %q", text, out, want)
		}
	}
}

// TestRedactStreamHoldsBackLittle checks what a stream releases before
// the text is over.
func TestRedactStreamHoldsBackLittle(t *testing.T) {
	r := newRedactor(nil)
	for _, tc := range []struct{ in, released string }{
		{"Hello world, how are", "Hello world, how "},                  // "are" could be an email's local part
		{"my card is 4111 1111", "my card is "},                        // could become a card number
		{"reach me at jane@exa", "reach me at "},                       // an email in progress
		{"done. ", "done. "},                                           // nothing could match
		{"total: 42 items!", "total: 42 items!"},                       // a number that cannot grow
		{"total: 42 items.", "total: 42 "},                             // "items." could start an email
		{"ssn 123-45-6789", "ssn "},                                    // the next byte decides
		{"ssn 123-45-6789 ok!", "ssn [REDACTED_SSN] ok!"},              // decided
		{"x" + strings.Repeat("y", 70), "x" + strings.Repeat("y", 70)}, // longer than a local part
	} {
		var ts textStream
		got := ts.write(r, nil, tc.in, false)
		if string(got) != tc.released {
			t.Errorf("write(%q) released %q, want %q", tc.in, got, tc.released)
		}
	}
}

func FuzzRedactSplit(f *testing.F) {
	for _, s := range piiCorpus {
		f.Add(s, uint8(len(s)/2))
	}
	r := newRedactor(nil)
	f.Fuzz(func(t *testing.T, text string, at uint8) {
		i := int(at) % (len(text) + 1)
		want, _ := r.redact(text)
		var ts textStream
		out := ts.write(r, nil, text[:i], false)
		out = ts.write(r, out, text[i:], false)
		out = ts.write(r, out, "", true)
		if string(out) != want {
			t.Fatalf("split at %d of %q:\n got %q\nwant %q", i, text, out, want)
		}
	})
}

func TestRedactJSON(t *testing.T) {
	r := newRedactor(nil)
	in := `{"model":"m-555-123-4567","messages":[{"role":"user","content":"mail a@b.com"},` +
		`{"role":"user","content":[{"type":"text","text":"card 4111 1111 1111 1111"},{"type":"image_url","image_url":{"url":"data:image/png;base64,a@b.com"}}]},` +
		`{"role":"assistant","tool_calls":[{"id":"call_a@b.com","type":"function","function":{"name":"f","arguments":"{\"n\":4111111111111111}"}}]}],` +
		`"system":"ssn 123-45-6789","metadata":{"user_id":"a@b.com"}}`
	got := string(r.redactJSON([]byte(in), piiTextRoots))
	want := `{"model":"m-555-123-4567","messages":[{"role":"user","content":"mail [REDACTED_EMAIL]"},` +
		`{"role":"user","content":[{"type":"text","text":"card [REDACTED_CARD]"},{"type":"image_url","image_url":{"url":"data:image/png;base64,a@b.com"}}]},` +
		`{"role":"assistant","tool_calls":[{"id":"call_a@b.com","type":"function","function":{"name":"f","arguments":"{\"n\":4111111111111111}"}}]}],` +
		`"system":"ssn [REDACTED_SSN]","metadata":{"user_id":"a@b.com"}}`
	if got != want {
		t.Errorf("redactJSON:\n got %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Error("invalid JSON")
	}
	// Tool-call arguments stay as they are in Anthropic's schema too (a
	// nested "input"), in requests and responses; a top-level input is
	// text.
	in = `{"messages":[{"role":"assistant","content":[{"type":"text","text":"to a@b.com"},{"type":"tool_use","id":"t","name":"mail","input":{"to":"a@b.com"}}]}]}`
	want = `{"messages":[{"role":"assistant","content":[{"type":"text","text":"to [REDACTED_EMAIL]"},{"type":"tool_use","id":"t","name":"mail","input":{"to":"a@b.com"}}]}]}`
	if got := string(r.redactJSON([]byte(in), piiTextRoots)); got != want {
		t.Errorf("redactJSON, Anthropic tool_use:\n got %s\nwant %s", got, want)
	}
	resp := `{"type":"message","content":[{"type":"text","text":"sent to a@b.com"},{"type":"tool_use","id":"t","name":"mail","input":{"to":"a@b.com"}}]}`
	wantResp := `{"type":"message","content":[{"type":"text","text":"sent to [REDACTED_EMAIL]"},{"type":"tool_use","id":"t","name":"mail","input":{"to":"a@b.com"}}]}`
	if got := string(r.redactJSON([]byte(resp), map[string]bool{"content": true})); got != wantResp {
		t.Errorf("redactJSON, Anthropic response:\n got %s\nwant %s", got, wantResp)
	}
	in = `{"model":"m","input":"mail a@b.com"}`
	if got := string(r.redactJSON([]byte(in), piiTextRoots)); got != `{"model":"m","input":"mail [REDACTED_EMAIL]"}` {
		t.Errorf("redactJSON, top-level input: %s", got)
	}
	clean := `{"messages":[{"role":"user","content":"hello"}]}`
	if got := r.redactJSON([]byte(clean), piiTextRoots); &got[0] != &[]byte(clean)[0] && string(got) != clean {
		t.Errorf("clean body changed: %s", got)
	}
}

// TestPIIStreamSplitInvariant runs an OpenAI and an Anthropic stream whose
// text deltas split PII everywhere through the stream redactor: the text
// the client reassembles must be the redaction of the whole text however
// it was split.
func TestPIIStreamSplitInvariant(t *testing.T) {
	r := newRedactor(nil)
	text := piiCorpus[0]
	want, _ := r.redact(text)
	for _, api := range []API{ChatCompletions, Messages} {
		for i := 0; i <= len(text); i++ {
			for _, j := range []int{i, (i + len(text)) / 2, len(text)} {
				parts := []string{text[:i], text[i:j], text[j:]}
				var stream []byte
				if api == Messages {
					stream = append(stream, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n"...)
					stream = append(stream, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"...)
					for _, p := range parts {
						b, _ := json.Marshal(p)
						stream = append(stream, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"...)
						stream = append(stream, b...)
						stream = append(stream, "}}\n\n"...)
					}
					stream = append(stream, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"...)
					stream = append(stream, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
				} else {
					for _, p := range parts {
						b, _ := json.Marshal(p)
						stream = append(stream, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":`...)
						stream = append(stream, b...)
						stream = append(stream, "},\"finish_reason\":null}]}\n\n"...)
					}
					stream = append(stream, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"...)
					stream = append(stream, "data: [DONE]\n\n"...)
				}
				ps := newPIIStream(r, api)
				// One event per chunk, as the llm filter emits them.
				var out []byte
				events := strings.SplitAfter(string(stream), "\n\n")
				for k, ev := range events {
					out = append(out, ps.filter([]byte(ev), k == len(events)-1)...)
				}
				if got := reassemble(t, api, out); got != want {
					t.Fatalf("%v split %d,%d:\n got %q\nwant %q\nstream:\n%s", api, i, j, got, want, out)
				}
			}
		}
	}
}

// reassemble concatenates the text deltas of a client stream.
func reassemble(t *testing.T, api API, stream []byte) string {
	t.Helper()
	var b strings.Builder
	var dec sse.Decoder
	finished := false
	dec.Feed(stream, func(e sse.Event) error {
		if api == Messages {
			var ev struct {
				Type  string `json:"type"`
				Delta struct {
					Text string `json:"text"`
				} `json:"delta"`
			}
			if err := json.Unmarshal(e.Data, &ev); err != nil {
				t.Fatalf("bad event %q: %v", e.Data, err)
			}
			if ev.Type == "content_block_stop" {
				finished = true
			} else if ev.Type == "content_block_delta" {
				if finished {
					t.Error("text after content_block_stop")
				}
				b.WriteString(ev.Delta.Text)
			}
			return nil
		}
		if string(e.Data) == "[DONE]" {
			return nil
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content *string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(e.Data, &c); err != nil {
			t.Fatalf("bad chunk %q: %v", e.Data, err)
		}
		for _, ch := range c.Choices {
			if finished {
				t.Error("text after the finish chunk")
			}
			if ch.Delta.Content != nil {
				b.WriteString(*ch.Delta.Content)
			}
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				finished = true
			}
		}
		return nil
	})
	return b.String()
}
