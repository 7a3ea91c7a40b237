package filter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// errResponseReplaced is returned by a responseWriter's Write after a
// response filter replaced the handler's response with a local reply.
var errResponseReplaced = errors.New("response replaced by a local reply")

// responseWriter runs the response phases of one segment when the handler
// below it writes the headers, and its body phases on every write. The
// x.Resp it builds shares its Header map with the underlying writer, so
// response filters edit that map in place; a filter that replaces x.Resp
// (a local reply) replaces what the handler wrote.
type responseWriter struct {
	w   http.ResponseWriter
	x   *Exchange
	c   *Chain
	seg *segment
	ctx context.Context

	wroteHeader bool
	upgraded    bool // 101: the handler owns the connection
	replaced    bool // a local reply replaced the handler's response
	err         error
	chunk       Chunk
}

// Header returns the underlying writer's header map, which is also
// x.Resp.Header once the headers are written.
func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

// Unwrap returns the underlying writer, for http.ResponseController.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }

// WriteHeader runs the response phases, then writes the (possibly
// changed) status. Informational statuses other than 101 pass through.
func (rw *responseWriter) WriteHeader(code int) {
	if rw.wroteHeader {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		rw.w.WriteHeader(code)
		return
	}
	rw.wroteHeader = true
	x := rw.x
	h := rw.w.Header()
	cl := int64(-1)
	if v := h["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil {
			cl = n
		}
	}
	resp := &http.Response{
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         x.In.Proto,
		ProtoMajor:    x.In.ProtoMajor,
		ProtoMinor:    x.In.ProtoMinor,
		Header:        h,
		Body:          http.NoBody,
		ContentLength: cl,
		Request:       x.Out,
	}
	x.Resp = resp
	rw.c.response(rw.ctx, x, rw.seg)
	if x.Resp != resp {
		rw.replaced = true
		clear(h)
		rw.c.write(rw.ctx, rw.w, x, rw.seg)
		return
	}
	if len(rw.seg.respBody) > 0 {
		delete(h, "Content-Length")
	}
	code = x.Resp.StatusCode
	rw.upgraded = code == http.StatusSwitchingProtocols
	rw.w.WriteHeader(code)
	if rw.seg.index == 0 {
		x.Status = code
		x.ResponseStart = time.Now()
	}
}

// Write passes p through the body filters to the underlying writer.
func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.replaced {
		return 0, errResponseReplaced
	}
	if rw.err != nil {
		return 0, rw.err
	}
	data := p
	if len(rw.seg.respBody) > 0 {
		if len(p) == 0 {
			return 0, nil
		}
		if err := rw.filter(p, false); err != nil {
			return 0, err
		}
		data = rw.chunk.Data
		rw.chunk.Data = nil
	}
	if len(data) > 0 {
		n, err := rw.w.Write(data)
		if rw.seg.index == 0 {
			rw.x.BytesSent += int64(n)
		}
		if err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (rw *responseWriter) filter(p []byte, eos bool) error {
	ch := &rw.chunk
	ch.hold = &rw.x.respHold
	rw.x.respHold.size = len(rw.c.filters)
	ch.Data, ch.EOS, ch.Flush = p, eos, false
	if err := rw.c.responseBody(rw.ctx, rw.x, rw.seg, ch); err != nil {
		rw.err = err
		rw.x.Err = err
		rw.x.abort = true
		return err
	}
	return nil
}

// Flush flushes the underlying writer, writing the headers first if needed.
func (rw *responseWriter) Flush() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if f := findFlusher(rw.w); f != nil {
		f.Flush()
	}
}

// finish ends the handler's response: headers if none were written, and
// the last chunk through the body filters.
func (rw *responseWriter) finish() {
	if rw.x.abort || rw.x.upgraded {
		return
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.replaced || rw.upgraded || rw.err != nil || len(rw.seg.respBody) == 0 {
		return
	}
	if err := rw.filter(nil, true); err != nil {
		return
	}
	if data := rw.chunk.Data; len(data) > 0 {
		rw.chunk.Data = nil
		n, err := rw.w.Write(data)
		if rw.seg.index == 0 {
			rw.x.BytesSent += int64(n)
		}
		if err != nil && !errors.Is(err, errResponseReplaced) {
			rw.x.Err = fmt.Errorf("write downstream: %w", err)
			rw.x.Flags |= FlagDownstreamConnectionTermination
		}
	}
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ http.Flusher        = (*responseWriter)(nil)
)
