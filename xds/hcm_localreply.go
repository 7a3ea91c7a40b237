package xds

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/route"
)

// localReply is a compiled local_reply_config: Envoy's local reply
// mapping. Mappers are tried in order; the first whose filter matches may
// override the status and the body, add headers, and choose the body
// format; then the body format (the mapper's, else the config's
// body_format, else the body as is) renders the body. It applies to every
// response the gateway makes itself: error replies (no route, no healthy
// upstream, filters' replies...) and the routes' direct responses and
// redirects. It is immutable and safe for concurrent use.
type localReply struct {
	mappers []replyMapper
	format  *replyFormat // nil: the body as is
}

type replyMapper struct {
	match   logPredicate
	status  int    // 0: keep
	body    []byte // nil: keep
	hasBody bool
	format  *replyFormat
	headers []route.HeaderValue
}

func newLocalReply(c *hcmv3.LocalReplyConfig, path string) (*localReply, error) {
	out := &localReply{}
	for i, m := range c.GetMappers() {
		p := fmt.Sprintf("%s.mappers[%d]", path, i)
		match, err := compileLogFilter(m.GetFilter(), p+".filter")
		if err != nil {
			return nil, err
		}
		rm := replyMapper{match: match, status: int(m.GetStatusCode().GetValue())}
		if b := m.GetBody(); b != nil {
			if rm.body, err = dataSourceBytes(b, p+".body"); err != nil {
				return nil, err
			}
			rm.hasBody = true
		}
		if f := m.GetBodyFormatOverride(); f != nil {
			if rm.format, err = compileReplyFormat(f, p+".body_format_override"); err != nil {
				return nil, err
			}
		}
		if rm.headers, err = headerValues(m.GetHeadersToAdd(), p+".headers_to_add"); err != nil {
			return nil, err
		}
		for j, h := range rm.headers {
			if strings.Contains(h.Value, "%") {
				return nil, fmt.Errorf("%s.headers_to_add[%d]: header formatters in local replies: %w", p, j, ErrUnsupported)
			}
		}
		out.mappers = append(out.mappers, rm)
	}
	if f := c.GetBodyFormat(); f != nil {
		var err error
		if out.format, err = compileReplyFormat(f, path+".body_format"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// apply rewrites x.Resp, a local reply.
func (lr *localReply) apply(x *filter.Exchange) {
	resp := x.Resp
	status := resp.StatusCode
	format := lr.format
	var (
		body    []byte
		hasBody bool
		mapper  *replyMapper
	)
	for i := range lr.mappers {
		m := &lr.mappers[i]
		if m.match(x, status) {
			mapper = m
			break
		}
	}
	if mapper == nil && format == nil {
		return
	}
	if mapper != nil {
		if mapper.status != 0 {
			status = mapper.status
		}
		if mapper.hasBody {
			body, hasBody = mapper.body, true
		}
		if mapper.format != nil {
			format = mapper.format
		}
		for _, h := range mapper.headers {
			switch h.Append {
			case route.AddIfAbsent:
				if _, ok := resp.Header[http.CanonicalHeaderKey(h.Key)]; !ok {
					resp.Header.Add(h.Key, h.Value)
				}
			case route.OverwriteIfExistsOrAdd:
				resp.Header.Set(h.Key, h.Value)
			case route.OverwriteIfExists:
				if _, ok := resp.Header[http.CanonicalHeaderKey(h.Key)]; ok {
					resp.Header.Set(h.Key, h.Value)
				}
			default:
				resp.Header.Add(h.Key, h.Value)
			}
		}
	}
	if !hasBody && format != nil {
		// The format may use %LOCAL_REPLY_BODY%: read the reply's own body,
		// which is small and in memory.
		if resp.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		hasBody = true
	}
	if format != nil {
		body = format.render(&replyEnv{x: x, status: status, body: string(body)})
		resp.Header.Set("Content-Type", format.contentType)
	}
	if status != resp.StatusCode {
		resp.StatusCode = status
		resp.Status = strconv.Itoa(status) + " " + http.StatusText(status)
	}
	if hasBody {
		if resp.Body != nil {
			resp.Body.Close()
		}
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
}
