package xds_test

import (
	"context"
	"log"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/xds"
)

// A gateway driven by a management server over ADS: the client applies
// listeners, routes, clusters, endpoints and secrets as they come, and
// reports rejected updates.
func ExampleNewClient() {
	gw, err := portico.New(portico.Config{}, portico.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer gw.Close()
	c, err := xds.NewClient(gw, xds.ClientConfig{
		Target: "127.0.0.1:18000",
		Node:   &corev3.Node{Id: "gateway-1", Cluster: "edge"},
		Mode:   xds.ADS,
		OnNACK: func(n xds.NACK) {
			log.Printf("rejected %s %q version %s: %v", n.TypeURL, n.Resource, n.Version, n.Err)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	if err := gw.Serve(ctx); err != nil {
		log.Print(err)
	}
}
