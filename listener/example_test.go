package listener_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/porticoproxy/portico/listener"
)

func ExampleNew() {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The HCM has already added x-request-id and X-Forwarded-Proto.
		fmt.Fprintf(w, "hello over %s, id present: %v", r.Proto, r.Header.Get("X-Request-Id") != "")
	})
	l, err := listener.New(listener.Config{
		Name:    "ingress",
		Address: "127.0.0.1:0", // any free port; see Addr
		FilterChains: []listener.FilterChain{{
			Name: "http",
			HTTP: &listener.HTTPConfig{StatPrefix: "ingress", Handler: hello},
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve(context.Background()) }()

	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr}).Get("http://" + l.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	fmt.Println(string(body))

	fmt.Println(l.Shutdown(context.Background()), <-served)
	// Output:
	// hello over HTTP/1.1, id present: true
	// <nil> <nil>
}
