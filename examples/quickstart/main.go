// Command quickstart runs a Portico gateway in front of a small built-in
// demo upstream, or in front of real servers given with -upstream.
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -upstream 127.0.0.1:9000,127.0.0.1:9001
//	go run ./examples/quickstart -upstream 127.0.0.1:50051 -upstream-h2c   # gRPC
//	go run ./examples/quickstart -tls-listen :8443 -cert a.pem,a.key -cert b.pem,b.key
//
// Requests are retried by default, as a production Envoy route usually
// is: on a connect failure, a refused HTTP/2 stream, a reset before the
// response or a 503, up to twice (-retries; 0 turns retries off), each
// retry on another upstream than the attempt before. Outlier detection,
// with Envoy's defaults, takes an upstream that keeps failing (five
// failures in a row) out of rotation for a while (-outlier-detection).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/accesslog"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type certFlag []listener.Certificate

func (c *certFlag) String() string { return fmt.Sprint(len(*c), " certificates") }

func (c *certFlag) Set(v string) error {
	cert, key, ok := strings.Cut(v, ",")
	if !ok || cert == "" || key == "" {
		return errors.New("want CERT_FILE,KEY_FILE")
	}
	*c = append(*c, listener.Certificate{CertFile: cert, KeyFile: key})
	return nil
}

// run starts the gateway and blocks until ctx is done. When ready is not
// nil it receives the gateway once it is serving (tests use it).
func run(ctx context.Context, args []string, stdout io.Writer, ready chan<- *portico.Gateway) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address of the HTTP listener (HTTP/1.1 and h2c)")
	admin := fs.String("admin", "127.0.0.1:9901", "address of the admin API")
	upstreams := fs.String("upstream", "", "upstream servers host:port[,host:port...] (default: a built-in demo upstream)")
	h2c := fs.Bool("upstream-h2c", false, "talk h2c (HTTP/2 prior knowledge) to the upstreams, as gRPC needs")
	tlsListen := fs.String("tls-listen", "", "address of an HTTPS listener (HTTP/1.1 and h2); needs -cert")
	var certs certFlag
	fs.Var(&certs, "cert", "CERT_FILE,KEY_FILE for the HTTPS listener; repeat for several, chosen by SNI")
	statsPrefix := fs.String("stats-prefix", "portico", "prefix of metric names (envoy for Envoy's)")
	accessLog := fs.String("access-log", "", "write Envoy-format access logs to this file (- for stdout)")
	timeout := fs.Duration("route-timeout", 15*time.Second, "route timeout (Envoy's default 15s); 0 disables it, as long streams need")
	retries := fs.Int("retries", 2, "retries per request on connect failure, refused stream, reset or 503; 0 turns retries off")
	outlier := fs.Bool("outlier-detection", true, "eject upstreams that keep failing (Envoy's outlier detection defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tlsListen != "" && len(certs) == 0 {
		return errors.New("-tls-listen needs at least one -cert")
	}
	if *retries < 0 {
		return errors.New("-retries must not be negative")
	}

	var eps []cluster.Endpoint
	if *upstreams == "" {
		addr, stopDemo, err := startDemo()
		if err != nil {
			return err
		}
		defer stopDemo()
		eps = append(eps, cluster.Endpoint{Address: addr})
	} else {
		for _, a := range strings.Split(*upstreams, ",") {
			eps = append(eps, cluster.Endpoint{Address: strings.TrimSpace(a)})
		}
	}
	routeTimeout := *timeout
	if routeTimeout == 0 {
		routeTimeout = -1 // route.Rule: negative disables
	}
	proto := cluster.HTTP1
	if *h2c {
		proto = cluster.HTTP2
	}
	// The retry policy: every retry avoids the endpoint the attempt before
	// used (Envoy's previous_hosts predicate), which the router always does.
	var retry *route.RetryPolicy
	if *retries > 0 {
		retry = &route.RetryPolicy{
			RetryOn:              []string{route.RetryConnectFailure, route.RetryRefusedStream, route.RetryReset, route.RetryRetriableStatusCodes},
			RetriableStatusCodes: []int{http.StatusServiceUnavailable},
			NumRetries:           *retries,
		}
	}
	upstream := cluster.Config{Name: "upstream", Endpoints: eps, Protocol: proto}
	if retry != nil {
		// Envoy's default retry circuit breaker allows 3 retries in flight
		// per cluster, which a few concurrent clients of a dead upstream
		// exceed at once (the overflow answers 503, flag UO). A retry
		// budget, Envoy's recommended form, scales with the load instead:
		// 20 % of the requests in flight, here never fewer than 16.
		upstream.CircuitBreakers.Default.RetryBudget = &cluster.RetryBudget{BudgetPercent: 20, MinRetryConcurrency: 16}
	}
	if *outlier {
		upstream.OutlierDetection = &cluster.OutlierDetection{} // Envoy's defaults
	}

	var filters []filter.Filter
	if *accessLog != "" {
		out := stdout
		if *accessLog != "-" {
			f, err := os.OpenFile(*accessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			out = f
		}
		al, err := accesslog.New(accesslog.Config{Output: out})
		if err != nil {
			return err
		}
		defer al.Close()
		filters = append(filters, al)
	}
	httpChain := listener.FilterChain{Name: "http", HTTP: &listener.HTTPConfig{StatPrefix: "ingress_http", RouteConfig: "local", Filters: filters}}
	cfg := portico.Config{
		Listeners: []listener.Config{{Name: "http", Address: *listen, FilterChains: []listener.FilterChain{httpChain}}},
		Routes: []route.Config{{
			Name: "local",
			VirtualHosts: []route.VirtualHost{{
				Name:    "all",
				Domains: []string{"*"},
				Rules:   []route.Rule{{Name: "all", Match: route.Match{Prefix: "/"}, Cluster: "upstream", Timeout: routeTimeout, Retry: retry}},
			}},
		}},
		Clusters: []cluster.Config{upstream},
	}
	if *tlsListen != "" {
		cfg.Listeners = append(cfg.Listeners, listener.Config{
			Name:    "https",
			Address: *tlsListen,
			FilterChains: []listener.FilterChain{{
				Name: "https",
				TLS:  &listener.TLSConfig{Certificates: certs},
				HTTP: &listener.HTTPConfig{StatPrefix: "ingress_https", RouteConfig: "local", Filters: filters},
			}},
		})
	}
	gw, err := portico.New(cfg, portico.Options{Admin: *admin, StatsPrefix: *statsPrefix})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "portico quickstart: listening on %s, admin on http://%s\n", gw.ListenerAddr("http"), gw.AdminAddr())
	if *tlsListen != "" {
		fmt.Fprintf(stdout, "  https on %s\n", gw.ListenerAddr("https"))
	}
	addr := gw.ListenerAddr("http").String()
	if strings.HasPrefix(addr, "[::]") || strings.HasPrefix(addr, "0.0.0.0") {
		_, port, _ := net.SplitHostPort(addr)
		addr = "localhost:" + port
	}
	fmt.Fprintf(stdout, "retries: %s; outlier detection: %s\n", retryNote(*retries), onOff(*outlier))
	fmt.Fprintf(stdout, `upstreams: %s
try:
  curl -i http://%[2]s/
  curl -i --http2-prior-knowledge http://%[2]s/
  curl -N http://%[2]s/sse?n=5           (server-sent events, streamed)
  curl http://%[3]s/stats/prometheus | grep downstream_rq
  curl http://%[3]s/config_dump
`, *upstreams+demoNote(*upstreams), addr, gw.AdminAddr())

	errc := make(chan error, 1)
	go func() { errc <- gw.Serve(ctx) }()
	if ready != nil {
		ready <- gw
	}
	return <-errc
}

func retryNote(n int) string {
	if n == 0 {
		return "off"
	}
	return fmt.Sprintf("up to %d on connect failure, refused stream, reset or 503", n)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func demoNote(upstreams string) string {
	if upstreams == "" {
		return "the built-in demo upstream"
	}
	return ""
}

// startDemo starts the built-in demo upstream on a loopback port.
func startDemo() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("demo upstream: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the demo upstream\nmethod=%s path=%s proto=%s\nx-request-id=%s\nx-forwarded-proto=%s\n",
			r.Method, r.URL.Path, r.Proto, r.Header.Get("X-Request-Id"), r.Header.Get("X-Forwarded-Proto"))
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		n := 5
		fmt.Sscan(r.URL.Query().Get("n"), &n)
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "data: event %d of %d\n\n", i, n)
			rc.Flush()
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		io.Copy(w, r.Body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}
