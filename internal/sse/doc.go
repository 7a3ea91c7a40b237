// Package sse reads and writes Server-Sent Events (text/event-stream), the
// framing of LLM streaming APIs (OpenAI "data: {...}" chunks ending in
// "data: [DONE]", Anthropic "event:" + "data:" pairs) and of MCP streams.
//
// It owns the framing only: a Decoder turns upstream body chunks, split
// anywhere, into Events per the WHATWG event stream algorithm, and
// AppendEvent and AppendData encode Events canonically. What the data
// means (JSON chunks, usage, tool calls) belongs to the translators that
// use it.
//
// The decoder is made for response body filters: it is fed each chunk as
// it arrives, calls back for each complete event without copying it when
// the event lies within one chunk, buffers only what spans chunks (bounded
// by Decoder.MaxEventBytes), and does not allocate in steady state.
// Events passed to the callback borrow that memory and are valid only
// during the call.
//
// A minimal use, re-encoding every event of a stream:
//
//	var d sse.Decoder
//	var out []byte
//	emit := func(e sse.Event) error {
//		out = sse.AppendEvent(out, e)
//		return nil
//	}
//	for chunk := range upstreamChunks {
//		if err := d.Feed(chunk, emit); err != nil {
//			return err
//		}
//	}
//	return d.Flush(emit)
package sse
