package filter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// copyBufSize is the size of the pooled body copy buffers.
const copyBufSize = 32 << 10

// bufPool holds *[]byte copy buffers of copyBufSize. It is a cache, not
// state: any buffer may be dropped at any time.
var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// replyResponse builds the *http.Response for a local reply, so response
// filters see it as they see upstream responses.
func replyResponse(x *Exchange, re *ReplyError) *http.Response {
	h := make(http.Header, len(re.Header)+2)
	for k, vv := range re.Header {
		h[k] = append([]string(nil), vv...) // a ReplyError may be reused
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(re.Body))}
	var body io.ReadCloser = http.NoBody
	if len(re.Body) > 0 {
		body = io.NopCloser(bytes.NewReader(re.Body))
	}
	return &http.Response{
		Status:        strconv.Itoa(re.Status) + " " + http.StatusText(re.Status),
		StatusCode:    re.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          body,
		ContentLength: int64(len(re.Body)),
		Request:       x.Out,
	}
}

// isStream reports whether a response must be flushed after every read.
func isStream(resp *http.Response) bool {
	if resp.ContentLength < 0 {
		return true
	}
	ct := resp.Header["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	return strings.HasPrefix(ct[0], "text/event-stream") || strings.HasPrefix(ct[0], "application/grpc")
}

// findFlusher returns the first http.Flusher along w's Unwrap chain.
func findFlusher(w http.ResponseWriter) http.Flusher {
	for {
		if f, ok := w.(http.Flusher); ok {
			return f
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
}

// write writes x.Resp to w through the body filters of seg, and closes
// its body.
func (c *Chain) write(ctx context.Context, w http.ResponseWriter, x *Exchange, seg *segment) {
	resp := x.Resp
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			c.upgrade(w, x, seg, resp, rwc)
			return
		}
	}
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	filters := len(seg.respBody) > 0
	if filters {
		delete(h, "Content-Length")
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = keys
	}
	stream := isStream(resp)
	w.WriteHeader(resp.StatusCode)
	if seg.index == 0 {
		x.Status = resp.StatusCode
		x.ResponseStart = time.Now()
	}
	c.copyBody(ctx, w, x, seg, resp, stream)
}

// copyBody streams resp.Body to w, then the trailers, and closes the body.
func (c *Chain) copyBody(ctx context.Context, w http.ResponseWriter, x *Exchange, seg *segment, resp *http.Response, stream bool) {
	var fl http.Flusher
	if stream {
		// A stream's headers go out at once: the first event may be
		// long in coming.
		if fl = findFlusher(w); fl != nil {
			fl.Flush()
		}
	}
	var ch *Chunk
	if len(seg.respBody) > 0 {
		ch = &x.respChunk
		ch.hold = &x.respHold
		x.respHold.size = len(c.filters)
		ch.Flush = stream
	}
	trailer := resp.Trailer
	bp := bufPool.Get().(*[]byte)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		eos := rerr == io.EOF
		data := buf[:n]
		if ch != nil && (n > 0 || eos) {
			ch.Data, ch.EOS, ch.Trailer = data, eos, nil
			if eos {
				ch.Trailer = resp.Trailer
			}
			if err := c.responseBody(ctx, x, seg, ch); err != nil {
				x.Err = err
				x.abort = true
				break
			}
			data = ch.Data
			trailer = ch.Trailer
			ch.Data = nil
		}
		if len(data) > 0 {
			wn, werr := w.Write(data)
			if seg.index == 0 {
				x.BytesSent += int64(wn)
			}
			if werr != nil {
				if !errors.Is(werr, errResponseReplaced) {
					x.Err = fmt.Errorf("write downstream: %w", werr)
					x.Flags |= FlagDownstreamConnectionTermination
				}
				break
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if rerr != nil {
			if eos {
				if ch == nil {
					// Transports fill resp.Trailer only at EOF (h2 even
					// assigns the map then), so read it now.
					trailer = resp.Trailer
				}
				for k, vv := range trailer {
					h := w.Header()
					h[http.TrailerPrefix+k] = vv
				}
			} else if ctx.Err() != nil {
				x.Err = fmt.Errorf("read upstream body: %w", rerr)
				x.Flags |= FlagDownstreamConnectionTermination
			} else if re := (*ReplyError)(nil); errors.As(rerr, &re) {
				// The upstream side ended the stream for a reason of its
				// own (the stream idle timeout): too late for its reply,
				// not for its flags and details.
				x.Err = fmt.Errorf("read upstream body: %w", rerr)
				x.Flags |= re.Flags
				if re.Details != "" {
					x.Details = re.Details
				}
				x.abort = true
			} else if errors.Is(rerr, context.DeadlineExceeded) || errors.Is(x.Out.Context().Err(), context.DeadlineExceeded) {
				// The route timeout cut the stream.
				x.Err = fmt.Errorf("read upstream body: %w", rerr)
				x.Flags |= FlagUpstreamRequestTimeout
				x.abort = true
			} else {
				x.Err = fmt.Errorf("read upstream body: %w", rerr)
				x.Flags |= FlagUpstreamConnectionTermination
				x.abort = true
			}
			break
		}
	}
	*bp = buf
	bufPool.Put(bp)
	resp.Body.Close()
}

// responseBody runs the response body phases of seg on ch.
func (c *Chain) responseBody(ctx context.Context, x *Exchange, seg *segment, ch *Chunk) error {
	for i := range seg.respBody {
		e := &seg.respBody[i]
		if e.pos >= x.reached {
			continue
		}
		x.respHold.cur = e.pos
		if err := e.f.OnResponseBody(ctx, x, ch); err != nil {
			return fmt.Errorf("filter %q: response body: %w", c.filters[e.pos].Name(), err)
		}
	}
	return nil
}

// upgrade completes a protocol switch (101): it hijacks the downstream
// connection, writes the 101 response and copies bytes both ways until the
// streams end.
func (c *Chain) upgrade(w http.ResponseWriter, x *Exchange, seg *segment, resp *http.Response, up io.ReadWriteCloser) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	x.upgraded = err == nil
	if err != nil {
		up.Close()
		x.Err = fmt.Errorf("upgrade: hijack downstream: %w", err)
		w.WriteHeader(http.StatusInternalServerError)
		x.Status = http.StatusInternalServerError
		return
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	resp.Header.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		up.Close()
		x.Err = fmt.Errorf("upgrade: write downstream: %w", err)
		x.Flags |= FlagDownstreamConnectionTermination
		return
	}
	x.Status = http.StatusSwitchingProtocols
	x.ResponseStart = time.Now()

	received := make(chan int64, 1)
	go copyUp(up, brw.Reader, received)
	bp := bufPool.Get().(*[]byte)
	n, _ := io.CopyBuffer(writerOnly{conn}, readerOnly{up}, *bp)
	bufPool.Put(bp)
	x.BytesSent += n
	// The upstream is done sending: pass the half-close on, or end both
	// directions when the downstream cannot half-close.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		conn.Close()
	}
	x.BytesReceived += <-received
	conn.Close()
	up.Close()
}

// copyUp copies the downstream's bytes of an upgraded connection upstream,
// then half-closes (or closes) the upstream, and reports the byte count.
func copyUp(up io.ReadWriteCloser, down *bufio.Reader, done chan<- int64) {
	bp := bufPool.Get().(*[]byte)
	n, _ := io.CopyBuffer(writerOnly{up}, down, *bp)
	bufPool.Put(bp)
	if cw, ok := up.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		up.Close()
	}
	done <- n
}

// writerOnly and readerOnly hide ReaderFrom/WriterTo so CopyBuffer uses
// the pooled buffer.
type writerOnly struct{ io.Writer }

type readerOnly struct{ io.Reader }
