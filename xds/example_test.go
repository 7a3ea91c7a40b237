package xds_test

import (
	"fmt"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/porticoproxy/portico/route"
	"github.com/porticoproxy/portico/xds"
)

func ExampleTranslateRouteConfiguration() {
	rc := &routev3.RouteConfiguration{
		Name: "local_route",
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "backend",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{
					PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/service/1"},
				},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "service1"},
				}},
			}},
		}},
	}
	cfg, err := xds.TranslateRouteConfiguration(rc, xds.TranslateOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	table, err := route.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(table.Name(), len(cfg.VirtualHosts), "virtual host")
	fmt.Println(cfg.VirtualHosts[0].Rules[0].Cluster)
	// Output:
	// local_route 1 virtual host
	// service1
}

func ExampleTranslateOptions_lenient() {
	rc := &routev3.RouteConfiguration{
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "backend",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{
					PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				},
				Decorator: &routev3.Decorator{Operation: "checkout"},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "shop"},
				}},
			}},
		}},
	}
	_, err := xds.TranslateRouteConfiguration(rc, xds.TranslateOptions{})
	fmt.Println(err)

	_, err = xds.TranslateRouteConfiguration(rc, xds.TranslateOptions{
		Lenient:       true,
		OnUnsupported: func(w xds.Warning) { fmt.Println("warning:", w) },
	})
	fmt.Println(err)
	// Output:
	// route configuration "": virtual_hosts[0].routes[0].decorator: not supported
	// warning: virtual_hosts[0].routes[0].decorator: not supported
	// <nil>
}
