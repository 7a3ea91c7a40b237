package sse

import (
	"fmt"
	"testing"
)

// openAIStream returns an OpenAI-style chat completion stream of n events
// ending in "data: [DONE]".
func openAIStream(n int) []byte {
	var b []byte
	for i := range n - 1 {
		b = AppendData(b, fmt.Appendf(nil,
			`{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1732590000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_123","choices":[{"index":0,"delta":{"content":"token %d "},"logprobs":null,"finish_reason":null}]}`, i))
	}
	return AppendData(b, []byte("[DONE]"))
}

// anthropicStream returns an Anthropic-style stream of n named events.
func anthropicStream(n int) []byte {
	var b []byte
	for i := range n {
		b = AppendEvent(b, named("content_block_delta", fmt.Sprintf(
			`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"token %d "}}`, i)))
	}
	return b
}

// chunked splits b into chunks of size bytes, as an upstream body read
// into a fixed buffer would be.
func chunked(b []byte, size int) [][]byte {
	var chunks [][]byte
	for len(b) > 0 {
		n := min(size, len(b))
		chunks = append(chunks, b[:n])
		b = b[n:]
	}
	return chunks
}

func benchDecode(b *testing.B, stream []byte, events int) {
	chunks := chunked(stream, 1024)
	var d Decoder
	n := 0
	emit := func(e Event) error {
		n += len(e.Data)
		return nil
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range chunks {
			if err := d.Feed(c, emit); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.Flush(emit); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
	_ = n
}

// BenchmarkDecode decodes a 200-event OpenAI stream fed in 1 KiB chunks.
func BenchmarkDecode(b *testing.B) {
	b.Run("openai", func(b *testing.B) { benchDecode(b, openAIStream(200), 200) })
	b.Run("anthropic", func(b *testing.B) { benchDecode(b, anthropicStream(200), 200) })
}

func BenchmarkAppendData(b *testing.B) {
	payload := []byte(`{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"token"}}]}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendData(buf[:0], payload)
	}
}

// TestDecodeNoAllocs proves that steady-state decoding, including events
// split across chunks, does not allocate once the buffers have grown.
func TestDecodeNoAllocs(t *testing.T) {
	for name, stream := range map[string][]byte{"openai": openAIStream(200), "anthropic": anthropicStream(200)} {
		chunks := chunked(stream, 1024)
		var d Decoder
		count := 0
		emit := func(Event) error { count++; return nil }
		run := func() {
			for _, c := range chunks {
				if err := d.Feed(c, emit); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Flush(emit); err != nil {
				t.Fatal(err)
			}
		}
		run() // grow the buffers
		if count != 200 {
			t.Fatalf("%s: decoded %d events, want 200", name, count)
		}
		if n := testing.AllocsPerRun(20, run); n != 0 {
			t.Errorf("%s: decoding allocs = %v per stream, want 0", name, n)
		}
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = AppendEvent(buf[:0], named("ping", "{}")) }); n != 0 {
		t.Errorf("AppendEvent allocs = %v, want 0", n)
	}
}
