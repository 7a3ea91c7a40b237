package listener

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// TestMain runs the whole suite twice: once with plaintext HTTP/1 on the
// fast path (the default) and once through net/http's server.
func TestMain(m *testing.M) {
	code := m.Run()
	if os.Getenv("PORTICO_H1_FAST_ONLY") == "" && flag.Lookup("test.bench").Value.String() == "" {
		fmt.Fprintln(os.Stderr, "=== suite again with StdlibHTTP1 (net/http's HTTP/1 server)")
		testStdlibHTTP1 = true
		if c := m.Run(); c != 0 {
			code = c
		}
	}
	os.Exit(code)
}

func setStdlibHTTP1(hc *HTTPConfig, v bool) { hc.StdlibHTTP1 = v }
