// Package portico is an embeddable gateway library: Envoy's architecture —
// listeners, filter chains, routes, clusters, load balancers — as small
// composable Go types, assembled in your own main.
//
// # The data path
//
// A request travels as in Envoy:
//
//	net.Listener ─ filter-chain match (destination port, SNI, ALPN, source IP)
//	   └─ HTTP connection manager (HTTP/1.1, h2 via ALPN, h2c prior knowledge)
//	        └─ route.Table.Match → virtual host → route → action
//	             └─ the route's compiled filter.Chain (request phases in order)
//	                  └─ router: cluster → lb.Picker → endpoint → upstream
//	             ← response phases in reverse, body chunks streamed and flushed
//	             ← OnDone once: access log, stats, accounting
//
// Package listener accepts connections and runs the connection manager;
// package route compiles route configurations into immutable tables;
// package filter defines the filter contract; packages cluster and lb send
// requests upstream. A Gateway assembles them from a Config and keeps them
// up to date: Apply swaps a whole configuration atomically, and the
// per-resource methods (UpsertListener, UpsertRoutes, UpsertCluster,
// UpdateEndpoints and their Remove counterparts) change one resource at a
// time. Requests in flight finish on the snapshot they started on.
//
// # Errors
//
// Failures become responses with Envoy's response flags: no route 404 (NR),
// no healthy endpoint 503 (UH), connection failure 503 (UF), overflow 503
// (UO), upstream timeout 504 (UT), client gone 499 (DC), a request not
// received whole within the listener's RequestTimeout 408 (details
// request_overall_timeout). After response headers are sent a failure
// aborts the stream; there is never a second status.
//
// # A gateway in a few lines
//
//	gw, err := portico.New(portico.Config{
//		Listeners: []listener.Config{{
//			Name:    "ingress",
//			Address: ":8080",
//			FilterChains: []listener.FilterChain{{
//				HTTP: &listener.HTTPConfig{StatPrefix: "ingress_http", RouteConfig: "local"},
//			}},
//		}},
//		Routes: []route.Config{{
//			Name: "local",
//			VirtualHosts: []route.VirtualHost{{
//				Name: "all", Domains: []string{"*"},
//				Rules: []route.Rule{{Match: route.Match{Prefix: "/"}, Cluster: "app"}},
//			}},
//		}},
//		Clusters: []cluster.Config{{
//			Name:      "app",
//			Endpoints: []cluster.Endpoint{{Address: "127.0.0.1:9000"}},
//		}},
//	}, portico.Options{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	log.Fatal(gw.Serve(ctx))
//
// The admin API (Options.Admin, 127.0.0.1:9901 by default, optionally
// behind Options.AdminToken) serves Envoy's admin endpoints: /ready, /stats,
// /stats/prometheus, /config_dump, /clusters, /listeners, /server_info,
// /memory, /certs, POST /healthcheck/fail|ok, /drain_listeners and
// /logging, and pprof. Stats carry Envoy's names and, with
// Options.StatsPrefix "envoy", Envoy's exact Prometheus names and labels;
// docs/observability.md lists them.
package portico
