package eventstream

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// Vectors from AWS's own event stream tests (awslabs/aws-c-event-stream,
// tests/message_deserializer_test.c).
var (
	vectorEmpty = []byte{0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00,
		0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff}
	vectorNoHeaders = []byte{0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, 0x7b,
		0x27, 0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0xc3, 0x65, 0x39, 0x36}
	vectorOneHeader = []byte{0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96,
		0x0C, 'c', 'o', 'n', 't', 'e', 'n', 't', '-', 't', 'y', 'p', 'e',
		0x07, 0x00, 0x10, 'a', 'p', 'p', 'l', 'i', 'c', 'a', 't', 'i', 'o', 'n', '/', 'j', 's', 'o', 'n',
		0x7b, 0x27, 0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d,
		0x8D, 0x9C, 0x08, 0xB1}
)

// decoded is a message copied out of the Decoder.
type decoded struct {
	headers string
	payload string
}

func decodeAll(t testing.TB, chunks [][]byte) ([]decoded, error) {
	t.Helper()
	var d Decoder
	var out []decoded
	emit := func(m Message) error {
		var h bytes.Buffer
		for _, hd := range m.Headers {
			fmt.Fprintf(&h, "%s:%d:%q;", hd.Name, hd.Type, hd.Value)
		}
		out = append(out, decoded{h.String(), string(m.Payload)})
		return nil
	}
	for _, c := range chunks {
		if err := d.Feed(c, emit); err != nil {
			return out, err
		}
	}
	return out, d.Flush()
}

func TestAWSVectors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		headers string
		payload string
	}{
		{"empty", vectorEmpty, "", ""},
		{"no headers", vectorNoHeaders, "", "{'foo':'bar'}"},
		{"one header", vectorOneHeader, `content-type:7:"application/json";`, "{'foo':'bar'}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAll(t, [][]byte{tc.in})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].headers != tc.headers || got[0].payload != tc.payload {
				t.Fatalf("got %+v, want headers %q payload %q", got, tc.headers, tc.payload)
			}
		})
	}
	// The encoder reproduces AWS's bytes.
	if got := AppendMessage(nil, nil, nil); !bytes.Equal(got, vectorEmpty) {
		t.Errorf("AppendMessage(empty) = % x", got)
	}
	if got := AppendMessage(nil, [][2]string{{"content-type", "application/json"}}, []byte("{'foo':'bar'}")); !bytes.Equal(got, vectorOneHeader) {
		t.Errorf("AppendMessage(one header) = % x", got)
	}
}

func stream() []byte {
	var b []byte
	b = append(b, vectorOneHeader...)
	b = AppendMessage(b, [][2]string{{":event-type", "contentBlockDelta"}, {":content-type", "application/json"}, {":message-type", "event"}},
		[]byte(`{"contentBlockIndex":0,"delta":{"text":"Hello, “world”"},"p":"abcdefghijklmnopqrstuvwxyz"}`))
	b = append(b, vectorEmpty...)
	b = AppendMessage(b, [][2]string{{":event-type", "metadata"}}, bytes.Repeat([]byte("x"), 300))
	return b
}

// TestSplitInvariance feeds a stream of several messages in every two-way
// split, byte by byte and in random chunkings: the messages are the same
// every time.
func TestSplitInvariance(t *testing.T) {
	b := stream()
	want, err := decodeAll(t, [][]byte{b})
	if err != nil || len(want) != 4 {
		t.Fatalf("whole: %d messages, %v", len(want), err)
	}
	check := func(desc string, chunks [][]byte) {
		t.Helper()
		got, err := decodeAll(t, chunks)
		if err != nil {
			t.Fatalf("%s: %v", desc, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: got %v, want %v", desc, got, want)
		}
	}
	for k := 0; k <= len(b); k++ {
		check(fmt.Sprintf("split at %d", k), [][]byte{clone(b[:k]), clone(b[k:])})
	}
	var bytewise [][]byte
	for i := range b {
		bytewise = append(bytewise, []byte{b[i]})
	}
	check("byte by byte", bytewise)
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 200 {
		var chunks [][]byte
		for rest := b; len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 40))
			chunks = append(chunks, clone(rest[:n]))
			rest = rest[n:]
		}
		check(fmt.Sprintf("random %d", i), chunks)
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func TestErrors(t *testing.T) {
	flip := func(b []byte, i int) []byte {
		b = clone(b)
		b[i] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"prelude crc", flip(vectorOneHeader, 9), ErrCRC},
		{"length corrupted", flip(vectorOneHeader, 3), ErrCRC},
		{"payload corrupted", flip(vectorOneHeader, 50), ErrCRC},
		{"message crc", flip(vectorOneHeader, len(vectorOneHeader)-1), ErrCRC},
		{"truncated", vectorOneHeader[:40], ErrTruncated},
		{"truncated prelude", vectorOneHeader[:5], ErrTruncated},
		{"too short", malformed(8, 0), ErrMalformed},
		{"headers longer than the message", malformed(16, 4), ErrMalformed},
		{"too large", malformed(DefaultMaxMessageBytes+1, 0), ErrTooLarge},
		{"bad header type", withHeaderBytes([]byte{1, 'a', 42}), ErrMalformed},
		{"header value overruns", withHeaderBytes([]byte{1, 'a', TypeString, 0, 9, 'x'}), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, split := range []bool{false, true} {
				chunks := [][]byte{tc.in}
				if split {
					chunks = nil
					for i := range tc.in {
						chunks = append(chunks, tc.in[i:i+1])
					}
				}
				_, err := decodeAll(t, chunks)
				if !errors.Is(err, tc.want) {
					t.Errorf("split=%v: error %v, want %v", split, err, tc.want)
				}
			}
		})
	}
	// Errors stick.
	var d Decoder
	d.Feed(flip(vectorEmpty, 9), func(Message) error { return nil })
	if err := d.Feed(vectorEmpty, func(Message) error { t.Error("emitted after an error"); return nil }); !errors.Is(err, ErrCRC) {
		t.Errorf("after an error: %v", err)
	}
	d.Reset()
	if err := d.Feed(vectorEmpty, func(Message) error { return nil }); err != nil {
		t.Errorf("after Reset: %v", err)
	}
}

// malformed returns a prelude with a valid CRC claiming the given lengths.
func malformed(total, hlen uint32) []byte {
	b := []byte{byte(total >> 24), byte(total >> 16), byte(total >> 8), byte(total), byte(hlen >> 24), byte(hlen >> 16), byte(hlen >> 8), byte(hlen)}
	return fixPrelude(append(b, make([]byte, 8)...))
}

func fixPrelude(b []byte) []byte {
	c := crc32IEEE(b[:8])
	b[8], b[9], b[10], b[11] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	return b
}

// withHeaderBytes frames raw header bytes with valid lengths and CRCs.
func withHeaderBytes(h []byte) []byte {
	total := uint32(12 + len(h) + 4)
	b := []byte{byte(total >> 24), byte(total >> 16), byte(total >> 8), byte(total), 0, 0, 0, byte(len(h)), 0, 0, 0, 0}
	b = fixPrelude(b)
	b = append(b, h...)
	c := crc32IEEE(b)
	return append(b, byte(c>>24), byte(c>>16), byte(c>>8), byte(c))
}

func TestHeaderTypes(t *testing.T) {
	h := []byte{
		1, 't', TypeTrue,
		1, 'f', TypeFalse,
		1, 'b', TypeByte, 7,
		1, 's', TypeInt16, 0, 2,
		1, 'i', TypeInt32, 0, 0, 0, 3,
		1, 'l', TypeInt64, 0, 0, 0, 0, 0, 0, 0, 4,
		1, 'y', TypeBytes, 0, 2, 'h', 'i',
		1, 'm', TypeTimestamp, 0, 0, 0, 0, 0, 0, 0, 5,
		1, 'u', TypeUUID, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
		1, 'x', TypeString, 0, 3, 'a', 'b', 'c',
	}
	var got []Header
	var d Decoder
	err := d.Feed(withHeaderBytes(h), func(m Message) error {
		got = append(got, m.Headers...)
		if v, ok := m.String("x"); !ok || v != "abc" {
			t.Errorf("String(x) = %q %v", v, ok)
		}
		if v, ok := m.String("y"); !ok || v != "hi" {
			t.Errorf("String(y) = %q %v", v, ok)
		}
		if _, ok := m.String("i"); ok {
			t.Error("String of an int32 header")
		}
		return nil
	})
	if err != nil || len(got) != 10 {
		t.Fatalf("%d headers, %v", len(got), err)
	}
	sizes := []int{0, 0, 1, 2, 4, 8, 2, 8, 16, 3}
	for i, h := range got {
		if len(h.Value) != sizes[i] {
			t.Errorf("header %s: %d value bytes, want %d", h.Name, len(h.Value), sizes[i])
		}
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add(stream(), 5)
	f.Add(vectorOneHeader, 1)
	f.Fuzz(func(t *testing.T, b []byte, step int) {
		if step <= 0 {
			step = 1
		}
		whole, errWhole := decodeAll(t, [][]byte{b})
		var chunks [][]byte
		for i := 0; i < len(b); i += step {
			chunks = append(chunks, b[i:min(i+step, len(b))])
		}
		split, errSplit := decodeAll(t, chunks)
		if (errWhole == nil) != (errSplit == nil) || fmt.Sprint(whole) != fmt.Sprint(split) {
			t.Fatalf("whole %v %v, split %v %v", whole, errWhole, split, errSplit)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	s := stream()
	var d Decoder
	emit := func(Message) error { return nil }
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		d.Reset()
		if err := d.Feed(s, emit); err != nil {
			b.Fatal(err)
		}
	}
}

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }
