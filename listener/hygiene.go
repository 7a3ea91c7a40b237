package listener

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// UnderscoreAction is what the HCM does with a request header whose name
// contains an underscore: Envoy's headers_with_underscores_action. Such
// names are legal HTTP, but CGI-style servers turn both "x-user_id" and
// "x-user-id" into X_USER_ID, which lets a client smuggle a header past a
// proxy that filters only one spelling.
type UnderscoreAction uint8

const (
	// AllowUnderscores passes such headers through (Envoy's ALLOW, the
	// default).
	AllowUnderscores UnderscoreAction = iota
	// RejectUnderscores answers an HTTP/1 request 400 and closes the
	// connection, and resets an HTTP/2 stream (Envoy's REJECT_REQUEST).
	RejectUnderscores
	// DropUnderscores removes such headers before the request is routed
	// (Envoy's DROP_HEADER).
	DropUnderscores
)

// String returns Envoy's name for a.
func (a UnderscoreAction) String() string {
	switch a {
	case AllowUnderscores:
		return "ALLOW"
	case RejectUnderscores:
		return "REJECT_REQUEST"
	case DropUnderscores:
		return "DROP_HEADER"
	}
	return "UnderscoreAction(" + strconv.Itoa(int(a)) + ")"
}

// dropUnderscores deletes the headers whose names contain an underscore.
func dropUnderscores(h http.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
		}
	}
}

// cleanPath applies normalize_path and merge_slashes to r's path. It
// allocates only when the path changes.
func cleanPath(r *http.Request, normalize, merge bool) {
	p := r.URL.EscapedPath()
	if !needsCleaning(p, normalize, merge) {
		return
	}
	if normalize {
		p = normalizeEscapes(p)
	}
	if merge {
		p = mergeSlashes(p)
	}
	if normalize {
		p = removeDotSegments(p)
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		return // net/http rejects such paths before they get here
	}
	r.URL.Path, r.URL.RawPath = dec, p
	// RequestURI is what access logs print as :path; keep it in step, as
	// Envoy rewrites :path itself.
	if r.RequestURI != "" && r.RequestURI != "*" && !strings.Contains(r.RequestURI, "://") {
		r.RequestURI = r.URL.RequestURI()
	}
}

func needsCleaning(p string, normalize, merge bool) bool {
	if merge && strings.Contains(p, "//") {
		return true
	}
	if !normalize {
		return false
	}
	if strings.IndexByte(p, '%') >= 0 {
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '.' || (i > 0 && p[i-1] != '/') {
			continue
		}
		// A segment starting with '.': is it "." or ".."?
		j := i + 1
		if j < len(p) && p[j] == '.' {
			j++
		}
		if j == len(p) || p[j] == '/' {
			return true
		}
	}
	return false
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// normalizeEscapes decodes percent-encoded unreserved characters and
// upper-cases the hex digits of the other percent-encodings (RFC 3986
// §6.2.2.1–2).
func normalizeEscapes(p string) string {
	if strings.IndexByte(p, '%') < 0 {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' || i+2 >= len(p) {
			b = append(b, c)
			continue
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			b = append(b, c)
			continue
		}
		if d := hi<<4 | lo; isUnreserved(d) {
			b = append(b, d)
		} else {
			b = append(b, '%', upperHex[hi], upperHex[lo])
		}
		i += 2
	}
	return string(b)
}

const upperHex = "0123456789ABCDEF"

// mergeSlashes replaces runs of slashes with one.
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// removeDotSegments is RFC 3986 §5.2.4 for an absolute path: "." segments
// go, ".." removes the segment before it (never climbing above the root),
// and a path ending in a dot segment keeps its trailing slash.
func removeDotSegments(p string) string {
	if p == "" || p[0] != '/' {
		return p
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			trailing = last
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	res := "/" + strings.Join(out, "/")
	if trailing && !strings.HasSuffix(res, "/") {
		res += "/"
	}
	return res
}
