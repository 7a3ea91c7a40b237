// Package route owns route configuration and its compiled, immutable form,
// the Table: Envoy's RouteConfiguration as plain Go.
//
// A Config lists virtual hosts; each virtual host serves a set of domains
// and holds Rules, matched first-match in declaration order. A Rule pairs a
// Match (path prefix, exact path, RE2 regex or path-separated prefix;
// headers; query parameters; methods; gRPC) with one action: a cluster,
// weighted clusters, a cluster named by a request header, a redirect or a
// direct response. Cluster actions carry the upstream options: path and
// host rewrites, header mutations, timeouts, retry, hash and mirror
// policies, per-filter configuration and a buffer limit. Zero values mean
// Envoy's documented defaults, which each field's doc names; every config
// type has a Validate method whose errors name the field by its Envoy path.
//
// New validates and compiles a Config into a *Table. A Table is immutable
// and safe for concurrent use; an update compiles a new one and swaps it
// in. Table.Match picks the virtual host by host name through maps and the
// rule through a radix tree of literal path prefixes, so matching costs
// nearly the same for ten routes or ten thousand and does not allocate for
// the common matchers.
//
// The data path looks like this:
//
//	t, err := route.New(route.Config{
//		VirtualHosts: []route.VirtualHost{{
//			Name:    "api",
//			Domains: []string{"api.example.com"},
//			Rules: []route.Rule{{
//				Match:   route.Match{Prefix: "/v1/"},
//				Cluster: "api-v1",
//			}},
//		}},
//	})
//	if err != nil {
//		return err
//	}
//	rt := t.Match(req)             // nil: answer 404
//	if status, h, body, ok := rt.Respond(req); ok {
//		// redirect or direct response
//	}
//	rt.RewriteRequest(out, req)    // path, host, headers
//	cluster := rt.ClusterFor(req)
//
// Besides the standard library, this package imports only xxhash, the
// hash Envoy's hash policies use.
package route
