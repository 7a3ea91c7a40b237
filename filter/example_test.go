package filter_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/porticoproxy/portico/filter"
)

func ExampleChain_Serve() {
	auth := filter.RequestFunc{FilterName: "auth", Func: func(ctx context.Context, x *filter.Exchange) error {
		if x.In.Header.Get("Authorization") == "" {
			return filter.Reply(http.StatusUnauthorized, "no credentials").WithHeader("WWW-Authenticate", "Bearer")
		}
		x.Out.Header.Del("Authorization")
		return nil
	}}
	stamp := filter.ResponseFunc{FilterName: "stamp", Func: func(ctx context.Context, x *filter.Exchange) error {
		x.Resp.Header.Set("X-Served-By", "portico")
		return nil
	}}
	chain, err := filter.NewChain(stamp, auth)
	if err != nil {
		fmt.Println(err)
		return
	}
	upstream := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		return &http.Response{
			StatusCode:    http.StatusOK,
			Header:        http.Header{},
			Body:          io.NopCloser(strings.NewReader("hello")),
			ContentLength: 5,
		}, nil
	})

	for _, token := range []string{"", "Bearer t0k3n"} {
		r := httptest.NewRequest("GET", "/", nil)
		if token != "" {
			r.Header.Set("Authorization", token)
		}
		w := httptest.NewRecorder()
		chain.Serve(w, filter.NewExchange(r), upstream)
		fmt.Println(w.Code, w.Header().Get("X-Served-By"), w.Body.String())
	}
	// Output:
	// 401 portico no credentials
	// 200 portico hello
}

func ExampleExchange_HoldBack() {
	// Uppercase the whole body at once: hold every chunk back until the end.
	shout := filter.ResponseBodyFunc{FilterName: "shout", Func: func(ctx context.Context, x *filter.Exchange, c *filter.Chunk) error {
		all, err := x.HoldBack(c)
		if err != nil {
			return err // over the buffer limit: the stream is aborted
		}
		if c.EOS {
			c.Data = bytes.ToUpper(all)
		}
		return nil
	}}
	handler := filter.AsMiddleware(shout)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello, ")
		io.WriteString(w, "world")
	}))
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	fmt.Println(w.Body.String())
	// Output: HELLO, WORLD
}

func ExampleFromMiddleware() {
	cors := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			next.ServeHTTP(w, r)
		})
	}
	chain, err := filter.NewChain(filter.FromMiddleware("cors", cors))
	if err != nil {
		fmt.Println(err)
		return
	}
	h := chain.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	fmt.Println(w.Header().Get("Access-Control-Allow-Origin"), w.Body.String())
	// Output: * ok
}
