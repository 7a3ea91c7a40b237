// Package eventstream decodes and encodes the AWS event stream binary
// framing (application/vnd.amazon.eventstream), which Amazon Bedrock's
// ConverseStream and InvokeModelWithResponseStream answer with.
//
// A message is a 12-byte prelude (total length, headers length, and the
// CRC32 of those eight bytes, all big-endian), the headers, the payload,
// and the CRC32 of everything before it:
//
//	[total len u32][headers len u32][prelude crc u32][headers][payload][message crc u32]
//
// A header is a one-byte name length, the name, a one-byte value type and
// the value. The Decoder checks both CRCs and every length, and parses
// messages incrementally from chunks exactly as they arrive: a message
// may be split anywhere, and the messages emitted do not depend on where.
//
// Use:
//
//	var d eventstream.Decoder
//	for chunk := range chunks {
//		err := d.Feed(chunk, func(m eventstream.Message) error {
//			typ, _ := m.String(":event-type")
//			handle(typ, m.Payload) // valid until the callback returns
//			return nil
//		})
//		...
//	}
//	err := d.Flush() // ErrTruncated if the stream ended inside a message
package eventstream
