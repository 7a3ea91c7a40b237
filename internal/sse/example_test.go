package sse_test

import (
	"fmt"

	"github.com/porticoproxy/portico/internal/sse"
)

// An upstream body arrives in arbitrary chunks; here an Anthropic-style
// event and a CRLF are split mid-line. The decoder emits each event once it
// is complete, and AppendEvent re-encodes it canonically.
func Example() {
	chunks := []string{
		"event: message_start\r\ndata: {\"type\":\"mess",
		"age_start\"}\r",
		"\n\r\n: keep-alive\n\nda",
		"ta: [DONE]\n\n",
	}
	var d sse.Decoder
	var out []byte
	emit := func(e sse.Event) error {
		fmt.Printf("type=%q data=%s\n", e.Type, e.Data)
		out = sse.AppendEvent(out, e) // copies: e is valid only during emit
		return nil
	}
	for _, c := range chunks {
		if err := d.Feed([]byte(c), emit); err != nil {
			fmt.Println("error:", err)
			return
		}
	}
	if err := d.Flush(emit); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("%q\n", out)
	// Output:
	// type="message_start" data={"type":"message_start"}
	// type="" data=[DONE]
	// "event: message_start\ndata: {\"type\":\"message_start\"}\n\ndata: [DONE]\n\n"
}

// AppendData writes the OpenAI chat completion streaming shape.
func ExampleAppendData() {
	var b []byte
	b = sse.AppendData(b, []byte(`{"choices":[{"delta":{"content":"Hi"}}]}`))
	b = sse.AppendData(b, []byte("[DONE]"))
	fmt.Print(string(b))
	// Output:
	// data: {"choices":[{"delta":{"content":"Hi"}}]}
	//
	// data: [DONE]
}
