package filter

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// wrapRequestBody makes x.Out.Body pass through the request body filters of
// seg. A body already buffered with Exchange.Body is filtered at once, as a
// single last chunk, and stays replayable; a streamed body is wrapped in a
// reader that filters each chunk as the transport reads it.
func (c *Chain) wrapRequestBody(ctx context.Context, x *Exchange, seg *segment) (*requestBody, error) {
	if len(seg.reqBody) == 0 || x.Out.Body == nil || x.Out.Body == http.NoBody {
		return nil, nil
	}
	rb := &requestBody{c: c, x: x, seg: seg, ctx: ctx, src: x.Out.Body}
	rb.hold.size = len(c.filters)
	rb.chunk.hold = &rb.hold
	if x.bodyRead {
		rb.chunk.Data = append([]byte(nil), x.body...)
		rb.chunk.EOS = true
		if err := rb.filter(); err != nil {
			return nil, err
		}
		x.SetBody(rb.chunk.Data)
		return nil, nil
	}
	x.Out.Body = rb
	x.Out.ContentLength = -1 // filters may change the length
	x.Out.GetBody = nil
	x.Out.Header.Del("Content-Length")
	return rb, nil
}

// requestBody is the outgoing request body seen through request body
// filters. The transport reads it on its own goroutine, so it keeps its own
// chunk and hold-back state instead of the Exchange's.
type requestBody struct {
	c     *Chain
	x     *Exchange
	seg   *segment
	ctx   context.Context
	src   io.ReadCloser
	chunk Chunk
	hold  holdState
	pend  []byte // filtered bytes not yet returned
	err   error  // sticky: io.EOF, a read error or a filter error
	ferr  error  // the filter error, if one stopped the body
}

func (r *requestBody) Read(p []byte) (int, error) {
	for len(r.pend) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		n, err := r.src.Read(p)
		switch {
		case err == io.EOF:
			r.err = io.EOF
		case err != nil:
			r.err = err
			if n == 0 {
				return 0, err
			}
		}
		if n == 0 && err == nil {
			continue
		}
		r.chunk.Data, r.chunk.EOS = p[:n], err == io.EOF
		if ferr := r.filter(); ferr != nil {
			r.ferr, r.err = ferr, ferr
			return 0, ferr
		}
		data := r.chunk.Data
		r.chunk.Data = nil
		if len(data) == 0 {
			continue
		}
		m := copy(p, data)
		if m < len(data) {
			r.pend = append(r.pend[:0], data[m:]...)
		}
		return m, nil
	}
	m := copy(p, r.pend)
	r.pend = r.pend[m:]
	return m, nil
}

// filter runs the request body phases on r.chunk.
func (r *requestBody) filter() error {
	for i := range r.seg.reqBody {
		e := &r.seg.reqBody[i]
		r.hold.cur = e.pos
		if err := e.f.OnRequestBody(r.ctx, r.x, &r.chunk); err != nil {
			return fmt.Errorf("filter %q: request body: %w", r.c.filters[e.pos].Name(), err)
		}
	}
	return nil
}

// Close closes the downstream body. The transport may call it concurrently
// with Read.
func (r *requestBody) Close() error { return r.src.Close() }
