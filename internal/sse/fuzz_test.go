package sse

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecoder feeds arbitrary bytes split at arbitrary points (each byte of
// splits is the length of the next chunk; zero adds an empty chunk before
// a one-byte one) and checks that
// the decoder does not panic, that the events and error do not depend on
// the splits, and that re-encoding the events with AppendEvent decodes
// back to the same events.
func FuzzDecoder(f *testing.F) {
	for _, s := range corpus {
		f.Add([]byte(s), []byte{1, 7, 0, 64, 3}, byte(0))
		f.Add([]byte(s), []byte{255}, byte(3))
	}
	f.Add([]byte("data: a\r\n\r\ndata: b\r\r"), []byte{8, 1, 1}, byte(1))
	f.Add([]byte("\xEF\xBB\xBF: c\nid: \x00\nretry: 12\n\n"), []byte{1, 1, 1, 2}, byte(6))
	f.Fuzz(func(t *testing.T, in, splits []byte, flags byte) {
		opts := Decoder{
			KeepComments:     flags&1 != 0,
			EmitUnterminated: flags&2 != 0,
		}
		if flags&4 != 0 {
			opts.MaxEventBytes = 1 + int(flags>>3)
		}
		fresh := func() *Decoder {
			d := opts
			return &d
		}
		want, wantErr := decode(fresh(), in)

		var chunks [][]byte
		rest := in
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(splits) > 0 {
				n = int(splits[i%len(splits)])
				if n == 0 {
					chunks = append(chunks, nil)
					n = 1
				}
				n = min(n, len(rest))
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		got, err := decode(fresh(), chunks...)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("split error = %v, whole error = %v", err, wantErr)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("split events differ from whole (-whole +split):\n%s", cmp.Diff(want, got))
		}

		if wantErr != nil {
			return
		}
		var stream []byte
		for _, e := range want {
			stream = AppendEvent(stream, e)
		}
		again, err := decode(&Decoder{KeepComments: opts.KeepComments, MaxEventBytes: 4 * (len(in) + 16)}, stream)
		if err != nil {
			t.Fatalf("decoding re-encoded %q: %v", stream, err)
		}
		if !reflect.DeepEqual(want, again) {
			t.Fatalf("re-encoded %q decodes differently (-first +again):\n%s", stream, cmp.Diff(want, again))
		}
	})
}
