package eventstream_test

import (
	"fmt"

	"github.com/porticoproxy/portico/llm/internal/eventstream"
)

// Decode a stream delivered in arbitrary pieces.
func Example() {
	var stream []byte
	stream = eventstream.AppendMessage(stream, [][2]string{{":event-type", "contentBlockDelta"}, {":message-type", "event"}},
		[]byte(`{"contentBlockIndex":0,"delta":{"text":"Hello"}}`))
	stream = eventstream.AppendMessage(stream, [][2]string{{":event-type", "messageStop"}, {":message-type", "event"}},
		[]byte(`{"stopReason":"end_turn"}`))

	var d eventstream.Decoder
	emit := func(m eventstream.Message) error {
		typ, _ := m.String(":event-type")
		fmt.Printf("%s %s\n", typ, m.Payload)
		return nil
	}
	for len(stream) > 0 {
		n := min(len(stream), 7)
		if err := d.Feed(stream[:n], emit); err != nil {
			fmt.Println(err)
			return
		}
		stream = stream[n:]
	}
	fmt.Println(d.Flush())
	// Output:
	// contentBlockDelta {"contentBlockIndex":0,"delta":{"text":"Hello"}}
	// messageStop {"stopReason":"end_turn"}
	// <nil>
}
