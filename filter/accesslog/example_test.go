package accesslog_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/accesslog"
)

// fixedExchange stands in for an exchange that went through a chain.
func fixedExchange() *filter.Exchange {
	r := httptest.NewRequest("GET", "/v1/users?limit=10", nil)
	r.Host = "api.example.com"
	r.Header.Set("User-Agent", "curl/8.0")
	r.Header.Set("X-Request-Id", "7f3c")
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	x := filter.NewExchange(r)
	x.Start = time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC)
	x.End = x.Start.Add(42 * time.Millisecond)
	x.RequestEnd = x.Start // no request body
	x.Status = http.StatusOK
	x.BytesSent = 512
	x.Cluster, x.Endpoint, x.Attempts = "users", "10.0.0.5:8080", 1
	x.Resp = &http.Response{StatusCode: http.StatusOK, Header: http.Header{
		"X-Envoy-Upstream-Service-Time": {"40"},
	}}
	return x
}

func Example() {
	logger, err := accesslog.New(accesslog.Config{Output: os.Stdout})
	if err != nil {
		fmt.Println(err)
		return
	}
	// In a gateway the logger sits in a chain: filter.NewChain(logger, ...).
	logger.OnDone(context.Background(), fixedExchange())
	logger.Close() // flushes the queue and joins the writer goroutine
	// Output:
	// [2024-05-06T07:08:09.123Z] "GET /v1/users?limit=10 HTTP/1.1" 200 - 0 512 42 40 "203.0.113.7" "curl/8.0" "7f3c" "api.example.com" "10.0.0.5:8080"
}

func Example_json() {
	logger, err := accesslog.New(accesslog.Config{
		JSON: map[string]string{
			"status":   "%RESPONSE_CODE%",
			"path":     "%REQ(:PATH)%",
			"cluster":  "%UPSTREAM_CLUSTER%",
			"duration": "%DURATION%",
			"request":  "%REQUEST_DURATION%",
		},
		Output:        os.Stdout,
		StatusAtLeast: 200,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	logger.OnDone(context.Background(), fixedExchange())
	logger.Close()
	// Output:
	// {"cluster":"users","duration":42,"path":"/v1/users?limit=10","request":0,"status":200}
}

func ExampleNew_unknownOperator() {
	_, err := accesslog.New(accesslog.Config{Format: "%REQ(:PATH)% %BYTES%", Output: os.Stdout})
	fmt.Println(err)
	// Output:
	// accesslog: position 13: operator %BYTES%: unknown operator
}
