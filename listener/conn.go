package listener

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// chanListener is the in-memory net.Listener through which the accept loop
// hands connections to a chain's http.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// push hands c to the server; false means the server is gone.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// trackedConn is a downstream connection owned by a chain. It replays bytes
// the TLS inspector peeked and does the connection accounting exactly once
// on Close.
type trackedConn struct {
	net.Conn
	prefix []byte // replayed; never counted again in ctr.RxBytes
	cs     *chain
	l      *Listener
	closed atomic.Bool
	h2     bool      // seen by the HTTP/1.1 fast path: h2c prior knowledge
	opened time.Time // when handed to the chain; set only with an Observer

	ctr     *ConnCounters // the chain's; nil: nothing counted
	proto   atomic.Uint32 // protoUnknown, protoHTTP1, protoHTTP2 or protoClosed
	sniff   bool          // classify from the bytes read (sniffProto)
	matched uint8         // bytes of the h2c preface matched so far
	// readDL is the last non-zero read deadline set, in Unix nanoseconds:
	// for a request net/http serves, the header deadline it set when the
	// request's first bytes came (hcm.serveTimed).
	readDL atomic.Int64
}

// Connection protocols, as counted in ConnCounters.
const (
	protoUnknown uint32 = iota
	protoHTTP1
	protoHTTP2
	protoClosed // closed before or after being classified
)

func (c *trackedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		if c.sniff {
			c.sniffProto(p[:n])
		}
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if c.ctr != nil && n > 0 {
		c.ctr.RxBytes.Add(uint64(n))
		if c.sniff {
			c.sniffProto(p[:n])
		}
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.ctr != nil && n > 0 {
		c.ctr.TxBytes.Add(uint64(n))
	}
	return n, err
}

// sniffProto classifies a plaintext connection net/http serves from its
// first bytes: HTTP/2 if they are the h2c preface, else HTTP/1. Reads of a
// connection are serialized, so the sniffing state needs no atomics.
func (c *trackedConn) sniffProto(b []byte) {
	i := int(c.matched)
	for _, x := range b {
		if x != h2Preface[i] {
			c.sniff = false
			c.setProto(protoHTTP1)
			return
		}
		if i++; i == len(h2Preface) {
			c.sniff = false
			c.setProto(protoHTTP2)
			return
		}
	}
	c.matched = uint8(i)
}

// setProto counts the connection as HTTP/1 or HTTP/2, once, unless it is
// closed already.
func (c *trackedConn) setProto(p uint32) {
	if c.ctr == nil || !c.proto.CompareAndSwap(protoUnknown, p) {
		return
	}
	if p == protoHTTP2 {
		c.ctr.HTTP2Total.Add(1)
		c.ctr.HTTP2Active.Add(1)
	} else {
		c.ctr.HTTP1Total.Add(1)
		c.ctr.HTTP1Active.Add(1)
	}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		if c.ctr != nil {
			switch c.proto.Swap(protoClosed) {
			case protoHTTP1:
				c.ctr.HTTP1Active.Add(-1)
			case protoHTTP2:
				c.ctr.HTTP2Active.Add(-1)
			}
		}
		c.l.connGone()
		if obs := c.cs.observer; obs != nil {
			obs.OnConnClose(c.cs.name, time.Since(c.opened))
		}
		if c.cs.active.Add(-1) == 0 && c.cs.retired.Load() {
			c.cs.ln.Close()
		}
	}
	return err
}

// SetReadDeadline sets the connection's read deadline and records it when
// it is not zero.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		c.readDL.Store(t.UnixNano())
	}
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite lets net/http half-close the connection before closing it.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// errSniffed aborts the inspector's throwaway handshake once the
// ClientHello has been read.
var errSniffed = errors.New("listener: client hello captured")

// errNoWrite makes the inspector's throwaway handshake unable to answer.
var errNoWrite = errors.New("listener: tls inspector does not write")

// sniffConn feeds the TLS inspector's throwaway handshake from the
// connection while recording every byte read, so that they can be replayed.
type sniffConn struct {
	net.Conn
	r    io.Reader
	sni  string
	alpn []string
	ok   bool
	err  error // first read error
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *sniffConn) Write([]byte) (int, error) { return 0, errNoWrite }
func (c *sniffConn) Close() error              { return nil }

// captureHello is the inspector's GetConfigForClient: it records SNI and
// ALPN and aborts the handshake.
func captureHello(h *tls.ClientHelloInfo) (*tls.Config, error) {
	if s, ok := h.Conn.(*sniffConn); ok {
		s.sni, s.alpn, s.ok = h.ServerName, h.SupportedProtos, true
	}
	return nil, errSniffed
}

// connInfo is what chain selection looks at.
type connInfo struct {
	port      uint16
	sni       string
	transport string
	alpn      []string
	src       net.Addr
}

// inspect reads the start of c (bounded by the deadline already set) and
// reports whether it is TLS, its SNI and ALPN, and the bytes to replay.
func (l *Listener) inspect(c net.Conn, info *connInfo) (prefix []byte, err error) {
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return nil, err
	}
	if first[0] != 0x16 { // not a TLS handshake record
		info.transport = TransportRawBuffer
		return first[:], nil
	}
	var buf bytes.Buffer
	buf.WriteByte(first[0])
	s := &sniffConn{Conn: c, r: io.MultiReader(bytes.NewReader(first[:]), io.TeeReader(c, &buf))}
	_ = tls.Server(s, l.sniffConfig).Handshake()
	if !s.ok {
		if s.err != nil {
			return nil, s.err // timeout, reset or EOF before a whole ClientHello
		}
		// Not a ClientHello we understand: opaque bytes, as for Envoy's
		// inspector.
		info.transport = TransportRawBuffer
		return buf.Bytes(), nil
	}
	info.transport = TransportTLS
	info.sni = s.sni
	info.alpn = s.alpn
	return buf.Bytes(), nil
}

// aLongTimeAgo is a deadline that unblocks pending reads at once.
var aLongTimeAgo = time.Unix(1, 0)
