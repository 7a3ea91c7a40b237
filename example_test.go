package portico_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// A gateway in front of one upstream, with a filter written as plain Go.
func Example() {
	// An upstream to proxy to.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw X-Hello: %s", r.Header.Get("X-Hello"))
	}))
	defer ln.Close()

	hello := filter.RequestFunc{FilterName: "hello", Func: func(ctx context.Context, x *filter.Exchange) error {
		x.Out.Header.Set("X-Hello", "portico")
		return nil
	}}
	gw, err := portico.New(portico.Config{
		Listeners: []listener.Config{{
			Name:    "ingress",
			Address: "127.0.0.1:0",
			FilterChains: []listener.FilterChain{{
				HTTP: &listener.HTTPConfig{StatPrefix: "ingress_http", RouteConfig: "local", Filters: []filter.Filter{hello}},
			}},
		}},
		Routes: []route.Config{{
			Name: "local",
			VirtualHosts: []route.VirtualHost{{
				Name: "all", Domains: []string{"*"},
				Rules: []route.Rule{{Match: route.Match{Prefix: "/"}, Cluster: "app"}},
			}},
		}},
		Clusters: []cluster.Config{{Name: "app", Endpoints: []cluster.Endpoint{{Address: ln.Addr().String()}}}},
	}, portico.Options{Admin: "-"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gw.Serve(ctx)

	resp, err := http.Get("http://" + gw.ListenerAddr("ingress").String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
	// Output: 200 upstream saw X-Hello: portico
}
