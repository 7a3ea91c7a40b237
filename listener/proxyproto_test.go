package listener

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProxyProtocolV2TLVs(t *testing.T) {
	hdr := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x14" +
		"\xc6\x33\x64\x09\x0a\x00\x00\x01\x9c\x40\x01\xbb" +
		"\x01\x00\x02h2" + "\x04\x00\x00" + "GET")
	c1, c2 := net.Pipe()
	defer c1.Close()
	go func() { c2.Write(hdr[:5]); c2.Write(hdr[5:]); c2.Close() }()
	h, rest, err := readProxyHeader(c1, false)
	if err != nil {
		t.Fatal(err)
	}
	want := &ProxyHeader{
		Version:     2,
		Source:      netip.MustParseAddrPort("198.51.100.9:40000"),
		Destination: netip.MustParseAddrPort("10.0.0.1:443"),
		TLVs:        []TLV{{Type: 1, Value: []byte("h2")}, {Type: 4, Value: []byte{}}},
	}
	if d := cmp.Diff(want, h, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("header (-want +got):\n%s", d)
	}
	if string(rest) != "GET" && string(rest) != "" {
		t.Errorf("rest: got %q, want a prefix of %q", rest, "GET")
	}
}
