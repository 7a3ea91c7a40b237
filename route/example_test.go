package route_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/porticoproxy/portico/route"
)

func Example() {
	t, err := route.New(route.Config{
		Name: "ingress",
		VirtualHosts: []route.VirtualHost{{
			Name:    "shop",
			Domains: []string{"shop.example.com", "*.shop.example.com"},
			Rules: []route.Rule{
				{
					Match:         route.Match{PathSeparatedPrefix: "/api"},
					Cluster:       "api",
					PrefixRewrite: "/v2",
					RequestHeadersToAdd: []route.HeaderValue{
						{Key: "x-client", Value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
					},
				},
				{
					Match:    route.Match{Prefix: "/old/"},
					Redirect: &route.Redirect{PrefixRewrite: "/new/", HTTPSRedirect: true},
				},
			},
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	in := httptest.NewRequest("GET", "http://eu.shop.example.com:80/api/cart?id=7", nil)
	in.RemoteAddr = "192.0.2.1:5555"
	rt := t.Match(in)
	out := in.Clone(in.Context())
	rt.RewriteRequest(out, in)
	fmt.Println(rt.VirtualHost(), rt.ClusterFor(in), out.URL.Path, out.Header.Get("X-Client"), rt.Timeout())

	in = httptest.NewRequest("GET", "http://shop.example.com/old/a?b=c", nil)
	status, h, _, _ := t.Match(in).Respond(in)
	fmt.Println(status, h.Get("Location"))
	// Output:
	// shop api /v2/cart 192.0.2.1 15s
	// 301 https://shop.example.com/new/a?b=c
}
