package portico

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminEndpoint is one admin endpoint: its path, whether it changes state
// (POST only), and its help line for the index page.
type adminEndpoint struct {
	path    string
	mutates bool
	help    string
	h       http.HandlerFunc
}

func (g *Gateway) adminEndpoints() []adminEndpoint {
	prom := promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{})
	return []adminEndpoint{
		{"/ready", false, "print server state, 200 when live, 503 when draining or failing health checks", g.adminReady},
		{"/stats", false, "print server stats (?format=json|prometheus, ?filter=<regex>, ?usedonly, ?type=Counters|Gauges|Histograms)", g.adminStats},
		{"/stats/prometheus", false, "print server stats in prometheus format", prom.ServeHTTP},
		{"/config_dump", false, "dump current configuration (?resource=<field>, ?mask=<field paths>, ?name_regex=<regex>)", g.adminConfigDump},
		{"/clusters", false, "upstream cluster status (?format=json)", g.adminClusters},
		{"/listeners", false, "print listener info (?format=json)", g.adminListeners},
		{"/server_info", false, "print server version, state, uptime and options", g.adminServerInfo},
		{"/memory", false, "print current allocation and heap usage", g.adminMemory},
		{"/certs", false, "print certificates in use, with their expiry", g.adminCerts},
		{"/healthcheck/fail", true, "cause the server to fail health checks", g.adminHealthFail},
		{"/healthcheck/ok", true, "cause the server to pass health checks", g.adminHealthOK},
		{"/drain_listeners", true, "stop the listeners, draining their connections (?graceful: fail readiness for the drain time first)", g.adminDrainListeners},
		{"/logging", true, "change the log level (?level=trace|debug|info|warning|error|critical|off)", g.adminLogging},
	}
}

// AdminHandler returns the admin API, Envoy's admin endpoints:
//
//	GET  /ready               200 LIVE, or 503 when draining or failing health checks
//	GET  /stats               Envoy-named stats as "name: value" lines (?format=json|prometheus, ?filter=RE2, ?usedonly, ?type=)
//	GET  /stats/prometheus    Envoy-named stats in Prometheus text format
//	GET  /config_dump         the live configuration as JSON, with versions and rejected updates (?resource=, ?mask=, ?name_regex=)
//	GET  /clusters            clusters, their circuit breakers and endpoints (?format=json)
//	GET  /listeners           listeners and their bound addresses (?format=json)
//	GET  /server_info         version, state, uptime, options and node
//	GET  /memory              Go runtime memory in Envoy's terms
//	GET  /certs               certificates in use by listeners and clusters, with expiry
//	POST /healthcheck/fail    make this gateway fail its health checks
//	POST /healthcheck/ok      undo /healthcheck/fail
//	POST /drain_listeners     stop and drain every listener (?graceful, ?inboundonly)
//	POST /logging             change the log level (?level=)
//	GET  /debug/pprof/...     Go profiling
//
// Mutating endpoints answer 405 to anything but POST. When
// Options.AdminToken is set, every endpoint but /ready requires it as a
// bearer token. There is no /runtime: Portico has no runtime flags.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	eps := g.adminEndpoints()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { g.adminIndex(w, r, eps) })
	for _, e := range eps {
		h := e.h
		if e.mutates {
			h = postOnly(h)
		}
		mux.HandleFunc(e.path, h)
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if g.opts.AdminToken == "" {
		return mux
	}
	return &adminAuth{next: mux, want: []byte("Bearer " + g.opts.AdminToken)}
}

// adminAuth requires a bearer token on every admin request but /ready,
// which load balancers and orchestrators probe without credentials and
// which reveals nothing but the serving state.
type adminAuth struct {
	next http.Handler
	want []byte // "Bearer <token>"
}

func (a *adminAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/ready" {
		// Constant time in the token's contents; the length may leak, as
		// with any comparison of secrets of unknown length.
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, a.want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="portico admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	a.next.ServeHTTP(w, r)
}

// HealthCheckFailed reports whether /healthcheck/fail is in force; health
// check filters answer 503 while it is.
func (g *Gateway) HealthCheckFailed() bool { return g.hcFailed.Load() }

func postOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed: use POST", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	}
}

func (g *Gateway) adminIndex(w http.ResponseWriter, r *http.Request, eps []adminEndpoint) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	var b strings.Builder
	b.WriteString("admin commands are:\n")
	for _, e := range eps {
		method := ""
		if e.mutates {
			method = " (POST)"
		}
		fmt.Fprintf(&b, "  %s%s: %s\n", e.path, method, e.help)
	}
	b.WriteString("  /debug/pprof/: Go profiling\n")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, b.String())
}

func (g *Gateway) adminReady(w http.ResponseWriter, r *http.Request) {
	switch {
	case g.draining.Load():
		http.Error(w, "DRAINING", http.StatusServiceUnavailable)
	case g.hcFailed.Load():
		http.Error(w, "FAILING", http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "LIVE")
	}
}

func (g *Gateway) adminHealthFail(w http.ResponseWriter, r *http.Request) {
	g.hcFailed.Store(true)
	fmt.Fprintln(w, "OK")
}

func (g *Gateway) adminHealthOK(w http.ResponseWriter, r *http.Request) {
	g.hcFailed.Store(false)
	fmt.Fprintln(w, "OK")
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// isLoopback reports whether a is a loopback address.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
