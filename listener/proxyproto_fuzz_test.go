package listener

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// chunkConn serves data in reads of at most step bytes, then io.EOF.
type chunkConn struct {
	net.Conn // nil: only Read is used
	data     []byte
	step     int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.step, len(c.data))
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzProxyHeader feeds arbitrary bytes, split into reads of every size,
// to the PROXY protocol reader: it must never panic, and what it hands back
// for replay, followed by what it left unread, must be exactly the input
// after the header.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n"), uint8(3), false)
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"), uint8(1), false)
	f.Add([]byte("PROXY UNKNOWN\r\n"), uint8(7), false)
	v2 := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb)
	f.Add(append(v2, "body"...), uint8(5), false)
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint8(2), true)
	f.Fuzz(func(t *testing.T, data []byte, step uint8, allowMissing bool) {
		c := &chunkConn{data: bytes.Clone(data), step: int(step%64) + 1}
		h, rest, err := readProxyHeader(c, allowMissing)
		if err != nil {
			return
		}
		after := append(bytes.Clone(rest), c.data...)
		if !bytes.HasSuffix(data, after) {
			t.Fatalf("replay %q + unread %q is not a suffix of the input %q", rest, c.data, data)
		}
		if h == nil && !bytes.Equal(after, data) {
			t.Fatalf("no header, but replay + unread %q is not the whole input %q", after, data)
		}
		if h == nil && !allowMissing {
			t.Fatal("no header and no error, although a header is required")
		}
	})
}
