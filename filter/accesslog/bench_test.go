package accesslog

import (
	"context"
	"testing"
)

func BenchmarkOnDone(b *testing.B) {
	l, err := New(Config{Output: discard{}, BufferSize: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	x := fullExchange(b)
	x.Flags = 0
	b.ReportAllocs()
	for b.Loop() {
		l.OnDone(context.Background(), x)
	}
}
