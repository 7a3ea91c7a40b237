package accesslog

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/route"
)

var testStart = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

// fullExchange returns an exchange with every field an operator reads set.
func fullExchange(t testing.TB) *filter.Exchange {
	t.Helper()
	r := httptest.NewRequest("POST", "/a/b?c=d", nil)
	r.Host = "example.com"
	r.Header.Set("User-Agent", "curl/8.0")
	r.Header.Set("X-Request-Id", "req-1")
	r.Header.Set("X-Forwarded-For", "10.0.0.1")
	r.Header.Set("X-Long", "abcdefghij")
	r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey,
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}))
	r.TLS = &tls.ConnectionState{ServerName: "api.example.com"}

	tbl, err := route.New(route.Config{VirtualHosts: []route.VirtualHost{{
		Name:    "vh",
		Domains: []string{"*"},
		Rules:   []route.Rule{{Name: "r-api", Match: route.Match{Prefix: "/"}, Cluster: "api"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}

	x := filter.NewExchange(r)
	x.Route = tbl.Match(r)
	if x.Route == nil {
		t.Fatal("route did not match")
	}
	x.Cluster = "api"
	x.Endpoint = "10.1.2.3:9000"
	x.Attempts = 2
	x.Status = 503
	x.Details = "upstream_reset_before_response_started"
	x.Flags = filter.FlagUpstreamConnectionFailure | filter.FlagUpstreamRetryLimitExceeded
	x.Err = errors.New("connection refused")
	x.Start = testStart
	x.UpstreamStart = testStart.Add(2*time.Millisecond + 900*time.Microsecond)
	x.RequestEnd = testStart.Add(2*time.Millisecond + 950*time.Microsecond)
	x.ResponseStart = testStart.Add(15 * time.Millisecond)
	x.End = testStart.Add(42 * time.Millisecond)
	x.BytesReceived = 17
	x.BytesSent = 1234
	x.Resp = &http.Response{
		StatusCode: 503,
		Header:     http.Header{"X-Envoy-Upstream-Service-Time": {"12"}, "Content-Type": {"text/plain"}},
		Trailer:    http.Header{"Grpc-Status": {"14"}},
	}
	return x
}

// bareExchange has nothing set beyond a bare request.
func bareExchange() *filter.Exchange {
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = ""
	r.RemoteAddr = ""
	x := filter.NewExchange(r)
	x.Start = time.Time{}
	x.In.Proto, x.In.ProtoMajor, x.In.ProtoMinor = "", 0, 0
	return x
}

func formatString(t *testing.T, format string, x *filter.Exchange) string {
	t.Helper()
	ops, err := parseFormat(format)
	if err != nil {
		t.Fatalf("parseFormat(%q): %v", format, err)
	}
	return string(appendOps(nil, x, ops))
}

func TestOperators(t *testing.T) {
	tests := []struct {
		format string
		full   string // on fullExchange
		bare   string // on bareExchange
	}{
		{"%START_TIME%", "2024-05-06T07:08:09.123Z", "-"},
		{"%REQ(:METHOD)%", "POST", "GET"},
		{"%REQ(:PATH)%", "/a/b?c=d", "/"},
		{"%REQ(:AUTHORITY)%", "example.com", "-"},
		{"%REQ(HOST)%", "example.com", "-"},
		{"%REQ(:SCHEME)%", "https", "http"},
		{"%REQ(USER-AGENT)%", "curl/8.0", "-"},
		{"%REQ(user-agent)%", "curl/8.0", "-"},
		{"%RESP(CONTENT-TYPE)%", "text/plain", "-"},
		{"%RESP(X-MISSING)%", "-", "-"},
		{"%TRAILER(GRPC-STATUS)%", "14", "-"},
		{"%PROTOCOL%", "HTTP/1.1", "-"},
		{"%RESPONSE_CODE%", "503", "0"},
		{"%RESPONSE_CODE_DETAILS%", "upstream_reset_before_response_started", "-"},
		{"%RESPONSE_FLAGS%", "UF,URX", "-"},
		{"%BYTES_RECEIVED%", "17", "0"},
		{"%BYTES_SENT%", "1234", "0"},
		{"%DURATION%", "42", "-"},
		{"%REQUEST_DURATION%", "2", "-"},
		{"%RESPONSE_DURATION%", "15", "-"},
		{"%UPSTREAM_HOST%", "10.1.2.3:9000", "-"},
		{"%UPSTREAM_CLUSTER%", "api", "-"},
		{"%UPSTREAM_TRANSPORT_FAILURE_REASON%", "connection_refused", "-"},
		{"%DOWNSTREAM_REMOTE_ADDRESS%", "192.0.2.1:1234", "-"},
		{"%DOWNSTREAM_LOCAL_ADDRESS%", "127.0.0.1:8080", "-"},
		{"%REQUESTED_SERVER_NAME%", "api.example.com", "-"},
		{"%ROUTE_NAME%", "r-api", "-"},
		{"%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "2", "0"},
		{"%%", "%", "%"},
		{"100%% of %REQ(:METHOD)%!", "100% of POST!", "100% of GET!"},
		{"", "", ""},
		{"plain", "plain", "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			if got := formatString(t, tt.format, fullExchange(t)); got != tt.full {
				t.Errorf("full exchange: got %q, want %q", got, tt.full)
			}
			if got := formatString(t, tt.format, bareExchange()); got != tt.bare {
				t.Errorf("bare exchange: got %q, want %q", got, tt.bare)
			}
		})
	}
}

func TestProtocolHTTP2(t *testing.T) {
	x := bareExchange()
	x.In.Proto, x.In.ProtoMajor = "HTTP/2.0", 2
	if got := formatString(t, "%PROTOCOL%", x); got != "HTTP/2" {
		t.Errorf("got %q, want HTTP/2", got)
	}
}

func TestTransportFailureReasonNeedsFlags(t *testing.T) {
	x := fullExchange(t)
	x.Flags = filter.FlagUpstreamRequestTimeout
	if got := formatString(t, "%UPSTREAM_TRANSPORT_FAILURE_REASON%", x); got != "-" {
		t.Errorf("with UT only: got %q, want -", got)
	}
	x.Flags = filter.FlagUpstreamConnectionTermination
	if got := formatString(t, "%UPSTREAM_TRANSPORT_FAILURE_REASON%", x); got != "connection_refused" {
		t.Errorf("with UC: got %q, want the error, spaces as underscores", got)
	}
	// A local reply that hides its cause: the reason in its details.
	x.Flags = filter.FlagUpstreamConnectionFailure
	x.Details = "upstream_reset_before_response_started{connection_failure}"
	x.Err = &filter.ReplyError{Status: 503, Flags: x.Flags, Details: x.Details}
	if got := formatString(t, "%UPSTREAM_TRANSPORT_FAILURE_REASON%", x); got != "connection_failure" {
		t.Errorf("local reply: got %q, want connection_failure", got)
	}
}

func TestResponseCodeDetailsViaUpstream(t *testing.T) {
	x := fullExchange(t)
	x.Details, x.Err, x.Flags = "", nil, 0
	if got := formatString(t, "%RESPONSE_CODE_DETAILS%", x); got != "via_upstream" {
		t.Errorf("upstream response: got %q, want via_upstream", got)
	}
	x.Endpoint = "" // a direct response or redirect: no upstream
	if got := formatString(t, "%RESPONSE_CODE_DETAILS%", x); got != "-" {
		t.Errorf("no upstream: got %q, want -", got)
	}
}

func TestHeaderFallbackAndTruncation(t *testing.T) {
	x := fullExchange(t)
	x.In.Header.Set("X-Envoy-Original-Path", "/original")
	tests := []struct {
		format, want string
	}{
		{"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "/original"},
		{"%REQ(X-MISSING?:PATH)%", "/a/b?c=d"},
		{"%REQ(X-MISSING?USER-AGENT)%", "curl/8.0"},
		{"%REQ(X-MISSING?X-ALSO-MISSING)%", "-"},
		{"%REQ(X-LONG):4%", "abcd"},
		{"%REQ(X-LONG):10%", "abcdefghij"},
		{"%REQ(X-LONG):100%", "abcdefghij"},
		{"%REQ(X-MISSING?X-LONG):3%", "abc"},
		{"%REQ(X-LONG):0%", ""},
		{"%RESP(X-MISSING?CONTENT-TYPE):4%", "text"},
		{"%UPSTREAM_CLUSTER:2%", "ap"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			if got := formatString(t, tt.format, x); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStartTimeFormats(t *testing.T) {
	x := bareExchange()
	x.Start = time.Date(2024, 1, 2, 3, 4, 5, 6007008, time.FixedZone("X", 3600))
	tests := []struct {
		format, want string
	}{
		{"%START_TIME%", "2024-01-02T02:04:05.006Z"},
		{"%START_TIME()%", "2024-01-02T02:04:05.006Z"},
		{"%START_TIME(%Y/%m/%d %H:%M:%S)%", "2024/01/02 02:04:05"},
		{"%START_TIME(%s)%", "1704161045"},
		{"%START_TIME(%S.%3f)%", "05.006"},
		{"%START_TIME(%6f)%", "006007"},
		{"%START_TIME(%9f)%", "006007008"},
		{"%START_TIME(%E3S)%", "05.006"},
		{"%START_TIME(%F %T %z)%", "2024-01-02 02:04:05 +0000"},
		{"%START_TIME(Jan 2006 %%)%", "Jan 2006 %"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			if got := formatString(t, tt.format, x); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		format string
		want   []string // substrings of the error
	}{
		{"abc %FOO% def", []string{"position 4", "%FOO%", "unknown operator"}},
		{"%REQ(:METHOD)% %BYTES%", []string{"position 15", "%BYTES%"}},
		{"%REQ()%", []string{"position 0", "header name"}},
		{"%REQ(:BOGUS)%", []string{"pseudo-header"}},
		{"%PROTOCOL(X)%", []string{"no argument"}},
		{"%REQ(X%", []string{"position 0", "missing )"}},
		{"%DURATION", []string{"position 0", "missing closing"}},
		{"50% off", []string{"position 2"}},
		{"%", []string{"position 0"}},
		{"%REQ(X):abc%", []string{"bad length"}},
		{"%START_TIME(%Q)%", []string{"unsupported conversion %Q"}},
		{"%START_TIME(%)%", []string{"trailing %"}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			_, err := parseFormat(tt.format)
			if err == nil {
				t.Fatalf("parseFormat(%q) = nil error, want one", tt.format)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// New reports the same error.
			if _, err := New(Config{Format: tt.format, Output: discard{}}); err == nil {
				t.Errorf("New with format %q: nil error", tt.format)
			}
		})
	}
}

func TestJSONEscaping(t *testing.T) {
	in := "a\"b\\c\n\t\x01é\xff\u2028"
	got := string(appendJSONString(nil, []byte(in)))
	want := `"a\"b\\c\n\t\u0001é\ufffd\u2028"`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func BenchmarkFormat(b *testing.B) {
	x := fullExchange(b)
	x.Flags = 0
	ops, err := parseFormat(DefaultFormat)
	if err != nil {
		b.Fatal(err)
	}
	fields, err := compileJSON(map[string]string{
		"start": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"status": "%RESPONSE_CODE%", "duration": "%DURATION%", "ua": "%REQ(USER-AGENT)%",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("text", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := getBuf()
			*p = appendOps((*p)[:0], x, ops)
			putBuf(p)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := getBuf()
			*p = appendJSONObject((*p)[:0], x, fields)
			putBuf(p)
		}
	})
}
