package tracing

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// method returns m if it is a standard HTTP method and "_OTHER" otherwise, as
// the conventions ask, so that attribute values stay bounded.
func method(m string) (string, bool) {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodConnect,
		http.MethodOptions, http.MethodTrace:
		return m, true
	}
	return "_OTHER", false
}

// protocol returns the network.protocol.version of an HTTP version.
func protocol(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "1.1"
	case major == 2:
		return "2"
	case major == 1 && minor == 0:
		return "1.0"
	case major == 3:
		return "3"
	}
	return ""
}

// splitHostPort splits "host:port", "[v6]:port", "host" or "[v6]" without
// allocating; port is 0 when absent or invalid.
func splitHostPort(hostport string) (host string, port int) {
	host = hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		if strings.Count(hostport, ":") > 1 && !strings.HasPrefix(hostport, "[") {
			return hostport, 0 // a bare IPv6 address
		}
		host = hostport[:i]
		if p, err := strconv.Atoi(hostport[i+1:]); err == nil && p > 0 && p < 1<<16 {
			port = p
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return host, port
}

// errorType is the error.type of a failed exchange: its status code when it
// has one worth reporting, else the error's Go type.
func errorType(err error, status int) string {
	if status >= 400 {
		return strconv.Itoa(status)
	}
	return fmt.Sprintf("%T", err)
}
