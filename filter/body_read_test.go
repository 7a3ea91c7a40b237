package filter

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// eofReader records whether its reader was read to EOF, as a pooled
// connection's body must be to be released.
type eofReader struct {
	r   io.Reader
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

func TestReadBody(t *testing.T) {
	for _, tt := range []struct {
		name        string
		body        string
		size, limit int64
		want        string
		err         error
	}{
		{"announced", "hello", 5, 10, "hello", nil},
		{"unknown size", "hello", -1, 10, "hello", nil},
		{"shorter than announced", "hel", 5, 10, "hel", nil},
		{"longer than announced", "hello world", 5, 20, "hello world", nil},
		{"longer than announced, over the limit", "hello world", 5, 8, "", ErrBufferLimit},
		{"announced over the limit", "hello", 5, 4, "", ErrBufferLimit},
		{"unknown size over the limit", "hello", -1, 4, "", ErrBufferLimit},
		{"at the limit", "hello", -1, 5, "hello", nil},
		{"empty", "", 0, 5, "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &eofReader{r: strings.NewReader(tt.body)}
			got, err := ReadBody(r, tt.size, tt.limit)
			if !errors.Is(err, tt.err) || string(got) != tt.want {
				t.Fatalf("ReadBody = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
			if err == nil && !r.eof {
				t.Errorf("body not read to EOF")
			}
		})
	}
	// A body of known size is read in one allocation.
	src := strings.Repeat("x", 1000)
	sr := strings.NewReader(src)
	allocs := testing.AllocsPerRun(50, func() {
		sr.Reset(src)
		ReadBody(sr, int64(len(src)), 1<<20)
	})
	if allocs > 1 {
		t.Errorf("ReadBody of a sized body: %v allocations, want 1", allocs)
	}
}
