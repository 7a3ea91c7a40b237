package listener

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
	"unsafe"
)

// hcm is the HTTP connection manager's request hygiene in front of the
// chain's Handler. It is immutable after construction and safe for
// concurrent use; per-request work touches only the request.
type hcm struct {
	next           http.Handler
	maxHeaderBytes int
	maxHeaders     int
	maxBody        int64
	useRemote      bool
	genID          bool
	underscores    UnderscoreAction
	normalizePath  bool
	mergeSlashes   bool
	drain          time.Duration // DrainTimeout, read by the listener
	// requestTimeout is RequestTimeout (reqtimeout.go); headerTimeout the
	// header deadline net/http sets on HTTP/1 when it is on.
	requestTimeout time.Duration
	headerTimeout  time.Duration
	ctr            *ConnCounters // the chain's; nil: none kept
}

func newHCM(c *HTTPConfig) *hcm {
	h := &hcm{
		next:           c.Handler,
		maxHeaderBytes: c.MaxRequestHeadersBytes,
		maxHeaders:     c.MaxRequestHeaders,
		maxBody:        c.MaxRequestBodyBytes,
		useRemote:      c.UseRemoteAddress,
		genID:          !c.DisableRequestID,
		underscores:    c.HeadersWithUnderscores,
		normalizePath:  c.NormalizePath,
		mergeSlashes:   c.MergeSlashes,
		requestTimeout: c.RequestTimeout,
		headerTimeout:  readHeaderTimeout(c),
	}
	if h.maxHeaderBytes == 0 {
		h.maxHeaderBytes = DefaultMaxRequestHeadersBytes
	}
	if h.maxHeaders == 0 {
		h.maxHeaders = DefaultMaxRequestHeaders
	}
	return h
}

// scratch holds the header values the HCM may add to one request, so that
// X-Forwarded-For, X-Forwarded-Proto and a generated x-request-id cost one
// allocation together.
type scratch struct {
	xff, proto, id [1]string
	idb            [36]byte
}

func (h *hcm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := r.Header
	n, size := 1, len("Host")+len(r.Host)
	underscore := false
	for k, vs := range hdr {
		n += len(vs)
		for _, v := range vs {
			size += len(k) + len(v)
		}
		if h.underscores != AllowUnderscores && strings.IndexByte(k, '_') >= 0 {
			underscore = true
		}
	}
	if n > h.maxHeaders || size > h.maxHeaderBytes {
		localReply(w, http.StatusRequestHeaderFieldsTooLarge, false)
		return
	}
	if underscore {
		if h.underscores == RejectUnderscores {
			if r.ProtoMajor >= 2 {
				panic(http.ErrAbortHandler) // resets the stream, as Envoy does
			}
			localReply(w, http.StatusBadRequest, true)
			return
		}
		dropUnderscores(hdr)
	}
	if h.normalizePath || h.mergeSlashes {
		cleanPath(r, h.normalizePath, h.mergeSlashes)
	}
	if h.maxBody > 0 {
		if r.ContentLength > h.maxBody {
			localReply(w, http.StatusRequestEntityTooLarge, r.ProtoMajor == 1)
			return
		}
		if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, h.maxBody)
		}
	}
	stripHopByHop(hdr)

	var s *scratch
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if h.useRemote {
		ip := hostOnly(r.RemoteAddr)
		if vs := hdr["X-Forwarded-For"]; len(vs) > 0 {
			if last := vs[len(vs)-1]; last == "" {
				vs[len(vs)-1] = ip
			} else {
				vs[len(vs)-1] = last + ", " + ip
			}
		} else if ip != "" {
			s = new(scratch)
			s.xff[0] = ip
			hdr["X-Forwarded-For"] = s.xff[:]
		}
	}
	if vs := hdr["X-Forwarded-Proto"]; len(vs) == 0 || h.useRemote {
		if len(vs) == 1 {
			vs[0] = scheme
		} else {
			if s == nil {
				s = new(scratch)
			}
			s.proto[0] = scheme
			hdr["X-Forwarded-Proto"] = s.proto[:]
		}
	}
	if h.genID {
		if vs := hdr["X-Request-Id"]; len(vs) == 0 || vs[0] == "" {
			if s == nil {
				s = new(scratch)
			}
			uuid4(&s.idb)
			// idb is never written again, so the string is immutable.
			s.id[0] = unsafe.String(&s.idb[0], len(s.idb))
			hdr["X-Request-Id"] = s.id[:]
		}
	}
	// (An HTTP/2 request without body has a Body that reads EOF, and a
	// ContentLength of 0.)
	if h.requestTimeout > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		if _, fast := w.(*h1Response); !fast { // the fast path times its own
			h.serveTimed(w, r)
			return
		}
	}
	h.next.ServeHTTP(w, r)
}

// readHeaderTimeout is the chains' http.Server.ReadHeaderTimeout: the
// request headers timeout, or the request timeout when it is shorter.
func readHeaderTimeout(c *HTTPConfig) time.Duration {
	d := c.RequestHeadersTimeout
	if t := c.RequestTimeout; t > 0 && (d <= 0 || t < d) {
		d = t
	}
	return d
}

// localReply answers a request the HCM rejects before the Handler.
func localReply(w http.ResponseWriter, code int, closeConn bool) {
	wh := w.Header()
	wh.Set("Content-Type", "text/plain; charset=utf-8")
	if closeConn {
		// HTTP/1 only: the unread body would otherwise have to be drained.
		// (On HTTP/2 it would make net/http GOAWAY the whole connection.)
		wh.Set("Connection", "close")
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(http.StatusText(code) + "\n"))
}

// stripHopByHop removes hop-by-hop request headers (RFC 9110 §7.6.1): the
// Connection header and the fields it names, Keep-Alive, Proxy-Connection,
// Transfer-Encoding, Upgrade, and TE unless it is "trailers". On an upgrade
// request (Connection: upgrade with an Upgrade other than h2c) Connection
// and Upgrade are kept so WebSocket and similar upgrades pass through.
func stripHopByHop(h http.Header) {
	upgrade := false
	if cv, ok := h["Connection"]; ok {
		for _, v := range cv {
			for v != "" {
				var tok string
				tok, v, _ = strings.Cut(v, ",")
				tok = strings.TrimSpace(tok)
				switch {
				case tok == "":
				case strings.EqualFold(tok, "upgrade"):
					upgrade = true
				case strings.EqualFold(tok, "te"), strings.EqualFold(tok, "close"), strings.EqualFold(tok, "keep-alive"):
					// TE is handled below; the others name no field or
					// one deleted anyway.
				default:
					delete(h, http.CanonicalHeaderKey(tok))
				}
			}
		}
	}
	if upgrade {
		uv := h["Upgrade"]
		upgrade = len(uv) > 0 && uv[0] != "" && !strings.EqualFold(uv[0], "h2c")
	}
	if !upgrade {
		delete(h, "Connection")
		delete(h, "Upgrade")
	}
	delete(h, "Keep-Alive")
	delete(h, "Proxy-Connection")
	delete(h, "Transfer-Encoding")
	if tv, ok := h["Te"]; ok {
		if len(tv) == 1 && strings.EqualFold(tv[0], "trailers") {
			return
		}
		if hasToken(tv, "trailers") {
			h["Te"] = []string{"trailers"}
		} else {
			delete(h, "Te")
		}
	}
}

// hasToken reports whether the comma-separated values vs contain tok
// (ignoring case and parameters).
func hasToken(vs []string, tok string) bool {
	for _, v := range vs {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			t, _, _ = strings.Cut(t, ";")
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// hostOnly strips the port from an "ip:port" or "[ipv6]:port" address
// without allocating.
func hostOnly(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	if j := strings.IndexByte(addr, ']'); j >= 0 && j < i && addr[0] == '[' {
		return addr[1:j]
	}
	if strings.IndexByte(addr[:i], ':') >= 0 {
		return addr // bare IPv6 without port
	}
	return addr[:i]
}

const hexDigits = "0123456789abcdef"

// uuid4 writes a random (version 4, RFC 9562) UUID in canonical form. It
// uses math/rand/v2's runtime generator (per-thread ChaCha8, no lock).
func uuid4(dst *[36]byte) {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	j := 0
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j] = hexDigits[x>>4]
		dst[j+1] = hexDigits[x&0x0f]
		j += 2
	}
}

// ClientIP returns the downstream client address of r per Envoy's
// X-Forwarded-For rules: the (trustedHops+1)-th address from the right of
// X-Forwarded-For, or the direct peer (r.RemoteAddr without port) when the
// header has fewer addresses. Applied to a request that went through an HCM
// with UseRemoteAddress (which appended the peer address), this is Envoy's
// trusted client address for use_remote_address true as well.
//
// ClientIP does not allocate: it returns a substring of a header value or of
// r.RemoteAddr. It only reads r, so concurrent calls are safe.
func ClientIP(r *http.Request, trustedHops int) string {
	if trustedHops < 0 {
		trustedHops = 0
	}
	skip := trustedHops
	vs := r.Header["X-Forwarded-For"]
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		for v != "" {
			var tok string
			if k := strings.LastIndexByte(v, ','); k >= 0 {
				tok, v = v[k+1:], v[:k]
			} else {
				tok, v = v, ""
			}
			tok = strings.TrimSpace(tok)
			if tok == "" {
				continue
			}
			if skip == 0 {
				return tok
			}
			skip--
		}
	}
	return hostOnly(r.RemoteAddr)
}
