package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/lb"
)

func Example() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s%s", r.Host, r.URL.Path)
	}))
	defer upstream.Close()

	c, err := cluster.New(cluster.Config{
		Name:      "api",
		Endpoints: []cluster.Endpoint{{Address: strings.TrimPrefix(upstream.URL, "http://")}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	// The URL's host is a placeholder: Send points it at the endpoint and
	// leaves the Host header as set.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://api.internal/v1/items", nil)
	resp, err := c.Send(&cluster.Request{HTTP: req})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// 200 hello from api.internal/v1/items
}

func ExampleUpstreamError() {
	c, err := cluster.New(cluster.Config{Name: "empty"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	req, _ := http.NewRequest(http.MethodGet, "http://empty/", nil)
	_, err = c.Send(&cluster.Request{HTTP: req})
	var ue *cluster.UpstreamError
	if errors.As(err, &ue) {
		fmt.Println(ue.Kind, errors.Is(err, lb.ErrNoEndpoint))
	}
	// Output:
	// NoHealthyUpstream true
}

func ExampleConfig_Validate() {
	cfg := cluster.Config{
		Name:      "api",
		Endpoints: []cluster.Endpoint{{Address: "10.0.0.1:8080"}, {Address: "10.0.0.2"}},
	}
	fmt.Println(cfg.Validate())
	// Output:
	// endpoints[1].address: address 10.0.0.2: missing port in address
}
