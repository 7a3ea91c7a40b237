package xds_test

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/xds"
)

func ExampleParseBootstrap() {
	bootstrap := `
static_resources:
  listeners:
  - name: web
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: "hello"}}
          http_filters:
          - name: envoy.filters.http.router
`
	b, err := xds.ParseBootstrap([]byte(bootstrap), xds.BootstrapOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Config.Listeners[0].Name, b.Config.Routes[0].Name, b.Options.StatsPrefix)

	// What Portico does not implement is refused with its path.
	_, err = xds.ParseBootstrap([]byte(bootstrap+"stats_flush_interval: 5s\n"), xds.BootstrapOptions{})
	fmt.Println(err, errors.Is(err, xds.ErrUnsupported))

	// gw, err := b.NewGateway(); then b.Run(ctx, gw) serves it.

	// Output:
	// web web/filter_chains[0] envoy
	// bootstrap: stats_flush_interval: not supported true
}

// acmeHeader is an application's HTTP filter: it sets a response header.
type acmeHeader struct{ value string }

func (f acmeHeader) Name() string { return "acme.header" }

func (f acmeHeader) OnResponse(_ context.Context, x *filter.Exchange) error {
	x.Resp.Header.Set("X-Acme", f.value)
	return nil
}

func ExampleFilterRegistry_Register() {
	reg := xds.DefaultFilters()
	// A filter whose configuration is a google.protobuf.StringValue.
	reg.Register("type.googleapis.com/google.protobuf.StringValue", func(_ xds.FactoryContext, cfg *anypb.Any) (filter.Filter, error) {
		v, err := cfg.UnmarshalNew()
		if err != nil {
			return nil, err
		}
		return acmeHeader{value: fmt.Sprint(v)}, nil
	})
	b, err := xds.ParseBootstrap([]byte(`
static_resources:
  listeners:
  - name: web
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          route_config: {name: r}
          http_filters:
          - name: acme.header
            typed_config: {"@type": type.googleapis.com/google.protobuf.StringValue, value: hi}
          - name: envoy.filters.http.router
`), xds.BootstrapOptions{Filters: reg})
	if err != nil {
		fmt.Println(err)
		return
	}
	f := b.Config.Listeners[0].FilterChains[0].HTTP.Filters[0]
	fmt.Println(f.Name())
	// Output: acme.header
}
