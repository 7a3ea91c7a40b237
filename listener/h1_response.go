package listener

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// h1Response is the fast path's http.ResponseWriter. One lives in each
// connection and is reused for every request on it, so that neither it nor
// its header map is allocated per request. It must not be used after
// ServeHTTP returns; until then it may be used from one goroutine at a time,
// while another reads the request body (full duplex is always on).
//
// Headers are written to the connection's bufio.Writer when the final
// status is set, which is net/http's snapshot semantics without the clone;
// the framing (Content-Length or chunked, Connection, Date) follows when
// the body starts. A body of up to h1StageSize bytes written without a
// Content-Length is held back so that a handler that returns without
// flushing gets a Content-Length, as with net/http.
type h1Response struct {
	c   *h1Conn
	req *http.Request
	hdr http.Header

	status      int
	wroteHeader bool // final status set, head written up to the framing
	committed   bool // header block terminated
	head        bool
	bodyOK      bool
	chunked     bool
	closeAfter  bool
	connClose   bool // the handler's Connection header says close
	hasConn     bool
	hasDate     bool
	trailer     bool   // trailers declared or set
	teChunked   bool   // the handler asked for chunked
	clStr       string // the handler's Content-Length, verbatim
	cl          int64  // -1 when unknown
	written     int64
	stage       []byte
	wroteDL     bool // the handler set a write deadline
	readDL      bool // the handler set a read deadline
	timedOut    bool // the request timer's 408 went out; the handler's writes are dropped
}

var (
	_ http.ResponseWriter                            = (*h1Response)(nil)
	_ http.Flusher                                   = (*h1Response)(nil)
	_ http.Hijacker                                  = (*h1Response)(nil)
	_ interface{ FlushError() error }                = (*h1Response)(nil)
	_ interface{ EnableFullDuplex() error }          = (*h1Response)(nil)
	_ interface{ SetReadDeadline(time.Time) error }  = (*h1Response)(nil)
	_ interface{ SetWriteDeadline(time.Time) error } = (*h1Response)(nil)
)

func (w *h1Response) reset(req *http.Request) {
	hdr, stage, c := w.hdr, w.stage[:0], w.c
	clear(hdr)
	*w = h1Response{c: c, req: req, hdr: hdr, stage: stage, cl: -1}
}

// Header returns the response header map. It is reused by the next request
// on the connection: handlers must not keep it.
func (w *h1Response) Header() http.Header { return w.hdr }

// WriteHeader writes informational (1xx but 101) responses at once and
// records the final status, writing the header fields.
func (w *h1Response) WriteHeader(code int) {
	if w.c.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	c := w.c
	if code < 200 && code != http.StatusSwitchingProtocols {
		if c.rt.state.Load() == rtFired {
			return // no interim response for a request that timed out
		}
		locked := c.cont.Load() != contNone
		if locked {
			c.wmu.Lock()
			if code == http.StatusContinue {
				c.cont.CompareAndSwap(contPending, contSent)
			}
		}
		c.bw.WriteString(statusLine(code))
		w.writeFields(true)
		c.bw.WriteString("\r\n")
		c.bw.Flush()
		if locked {
			c.wmu.Unlock()
		}
		return
	}
	// The response starts: that disarms the request timer, unless it
	// fired, and then the 408 goes out instead.
	if c.rt.state.Load() != rtOff && c.disarmRequestTimer() {
		w.writeTimeout()
		return
	}
	w.writeFinal(code)
}

// writeTimeout writes the 408 that answers a request whose timer expired,
// in place of the handler's response, and flushes it.
func (w *h1Response) writeTimeout() {
	timeoutHeader(w.hdr, true)
	w.timedOut = true
	w.writeFinal(http.StatusRequestTimeout)
	if !w.head {
		w.writeBody([]byte(requestTimeoutBody))
	}
	w.written = int64(len(requestTimeoutBody))
	w.c.bw.Flush()
}

// writeFinal records the final status and writes the header fields.
func (w *h1Response) writeFinal(code int) {
	c := w.c
	if c.cont.Load() == contPending {
		c.wmu.Lock()
		if c.cont.CompareAndSwap(contPending, contRefused) {
			// The client never got 100 Continue: its body may or may not
			// follow, so the connection cannot be reused.
			w.closeAfter = true
		}
		c.wmu.Unlock()
	}
	w.wroteHeader = true
	w.status = code
	w.head = w.req.Method == http.MethodHead
	w.bodyOK = code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	c.bw.WriteString(statusLine(code))
	w.writeFields(false)
	switch {
	case code == http.StatusSwitchingProtocols:
		w.closeAfter = true // unless hijacked
		w.commit(false)
	case w.cl >= 0 && !w.trailer || !w.bodyOK:
		w.commit(false)
	}
}

// writeFields writes the handler's header fields but the framing ones and
// notes what the framing needs. informational writes a 1xx head.
func (w *h1Response) writeFields(informational bool) {
	bw := w.c.bw
	for k, vs := range w.hdr {
		if len(vs) == 0 {
			continue
		}
		switch k {
		case "Content-Length":
			if !informational {
				if n, err := strconv.ParseInt(strings.TrimSpace(vs[0]), 10, 64); err == nil && n >= 0 && !w.teChunked {
					w.cl, w.clStr = n, vs[0]
				}
			}
			continue
		case "Transfer-Encoding":
			if !informational && hasToken(vs, "chunked") {
				w.teChunked, w.cl = true, -1
			}
			continue
		case "Connection":
			if !informational {
				w.hasConn = true
				w.connClose = hasToken(vs, "close")
			}
		case "Trailer":
			w.trailer = true
		case "Date":
			w.hasDate = true
		default:
			if len(k) > len(http.TrailerPrefix) && k[0] == 'T' && strings.HasPrefix(k, http.TrailerPrefix) {
				w.trailer = true
				continue
			}
		}
		writeField(bw, k, vs)
	}
	if w.teChunked {
		w.cl, w.clStr = -1, ""
	}
	if _, ok := w.hdr["Date"]; ok {
		w.hasDate = true // an empty Date suppresses it, as in net/http
	}
}

// writeField writes one field, dropping invalid names and turning line
// breaks in values into spaces, as net/http's Header.Write does.
func writeField(bw *bufio.Writer, k string, vs []string) {
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return
		}
	}
	for _, v := range vs {
		bw.WriteString(k)
		bw.WriteString(": ")
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(v)
		}
		bw.WriteString(strings.TrimSpace(v))
		bw.WriteString("\r\n")
	}
}

func isTokenByte(c byte) bool { return tokenTable[c] }

// tokenTable marks the bytes of an RFC 9110 token.
var tokenTable = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c)
	}
	return t
}()

// commit writes the framing fields and ends the header block. final means
// the handler has returned, so a held-back body has its full length.
func (w *h1Response) commit(final bool) {
	if w.committed {
		return
	}
	w.committed = true
	c := w.c
	bw := c.bw
	req := w.req
	switch {
	case w.status == http.StatusSwitchingProtocols:
	case !w.bodyOK:
		if w.status == http.StatusNotModified && w.cl >= 0 {
			bw.WriteString("Content-Length: ")
			bw.WriteString(w.clStr)
			bw.WriteString("\r\n")
		}
	case w.cl >= 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(w.clStr)
		bw.WriteString("\r\n")
	case w.head:
		if final && w.written > 0 && w.written <= h1StageSize {
			writeCL(bw, w.written)
		}
	case final && !w.trailer && !w.teChunked && !w.prefixTrailers():
		w.cl = int64(len(w.stage))
		w.written = w.cl
		writeCL(bw, w.cl)
	case req.ProtoAtLeast(1, 1):
		w.chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	default:
		w.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if req.Close || w.connClose || c.l.h1.draining.Load() {
		w.closeAfter = true
	}
	switch {
	case w.status == http.StatusSwitchingProtocols:
	case w.closeAfter && !w.connClose:
		bw.WriteString("Connection: close\r\n")
	case !w.closeAfter && req.ProtoMinor == 0 && !w.hasConn:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	if !w.hasDate {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if len(w.stage) > 0 {
		w.writeBody(w.stage)
		w.stage = w.stage[:0]
	}
}

// prefixTrailers reports whether the handler set http.TrailerPrefix keys.
func (w *h1Response) prefixTrailers() bool {
	for k := range w.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

func writeCL(bw *bufio.Writer, n int64) {
	bw.WriteString("Content-Length: ")
	b := strconv.AppendInt(bw.AvailableBuffer(), n, 10)
	bw.Write(b)
	bw.WriteString("\r\n")
}

func (w *h1Response) writeBody(p []byte) {
	bw := w.c.bw
	if !w.chunked {
		bw.Write(p)
		return
	}
	b := strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16)
	b = append(b, '\r', '\n')
	bw.Write(b)
	bw.Write(p)
	bw.WriteString("\r\n")
}

// Write writes body bytes, sending a 200 first if no status was set.
func (w *h1Response) Write(p []byte) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.timedOut {
		return len(p), nil
	}
	if !w.bodyOK {
		return 0, http.ErrBodyNotAllowed
	}
	n := len(p)
	var err error
	if w.cl >= 0 && w.written+int64(n) > w.cl {
		n = int(w.cl - w.written)
		p = p[:n]
		err = http.ErrContentLength
	}
	w.written += int64(n)
	if w.head {
		return n, err
	}
	if !w.committed {
		if len(w.stage)+n <= cap(w.stage) {
			w.stage = append(w.stage, p...)
			return n, err
		}
		w.commit(false)
	}
	if n > 0 {
		w.writeBody(p)
	}
	return n, err
}

// WriteString is Write without the conversion of s.
func (w *h1Response) WriteString(s string) (int, error) {
	// Write only copies from p.
	return w.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// FlushError sends the head if needed and everything buffered.
func (w *h1Response) FlushError() error {
	if w.c.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(false)
	return w.c.bw.Flush()
}

// Flush implements http.Flusher.
func (w *h1Response) Flush() { _ = w.FlushError() }

// Hijack hands the connection and its buffers to the handler; the loop
// then leaves them alone. The connection's accounting happens when the
// handler closes it.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	// The handler owns the connection from now: no request timer.
	if w.timedOut || c.rt.state.Load() != rtOff && c.disarmRequestTimer() {
		if !w.wroteHeader {
			w.writeTimeout()
		}
		return nil, nil, ErrRequestTimeout
	}
	if w.wroteHeader {
		w.commit(false)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	c.hijacked = true
	c.l.h1.remove(c)
	c.tc.SetDeadline(time.Time{})
	return c.tc, bufio.NewReadWriter(c.br, c.bw), nil
}

// EnableFullDuplex is a no-op: the fast path never consumes the request
// body when the response starts.
func (w *h1Response) EnableFullDuplex() error { return nil }

// SetReadDeadline sets the connection's read deadline, for
// http.ResponseController; the loop clears it after the request.
func (w *h1Response) SetReadDeadline(t time.Time) error {
	w.readDL = true
	return w.c.tc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline, for
// http.ResponseController; the loop clears it after the request.
func (w *h1Response) SetWriteDeadline(t time.Time) error {
	w.wroteDL = true
	return w.c.tc.SetWriteDeadline(t)
}

// finish completes the response after the handler returned and reports
// whether the connection may carry another request.
func (w *h1Response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(true)
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		w.writeTrailers()
		bw.WriteString("\r\n")
	}
	if w.bodyOK && !w.head && w.cl >= 0 && w.written != w.cl {
		w.closeAfter = true // the response is short; the framing is broken
	}
	return !w.closeAfter && !w.req.Close && !w.c.l.h1.draining.Load()
}

// writeTrailers writes the declared trailers and the http.TrailerPrefix
// ones.
func (w *h1Response) writeTrailers() {
	bw := w.c.bw
	for _, v := range w.hdr["Trailer"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok = strings.TrimSpace(tok)
			if tok == "" {
				continue
			}
			k := http.CanonicalHeaderKey(tok)
			switch k {
			case "Content-Length", "Transfer-Encoding", "Trailer":
				continue
			}
			if vs := w.hdr[k]; len(vs) > 0 {
				writeField(bw, k, vs)
			}
		}
	}
	for k, vs := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && name != "" {
			writeField(bw, name, vs)
		}
	}
}
