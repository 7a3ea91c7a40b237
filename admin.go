package portico

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// AdminHandler returns the admin API (Envoy's admin endpoints):
//
//	GET  /ready               200 LIVE, or 503 when draining or failing health checks
//	GET  /stats               Envoy-named stats as "name: value" lines (?format=json, ?filter=RE2, ?usedonly)
//	GET  /stats/prometheus    Envoy-named stats in Prometheus text format
//	GET  /config_dump         the live configuration as JSON, with versions
//	GET  /clusters            clusters and their endpoints (?format=json)
//	GET  /listeners           listeners and their bound addresses (?format=json)
//	POST /healthcheck/fail    make this gateway fail its health checks
//	POST /healthcheck/ok      undo /healthcheck/fail
//	GET  /debug/pprof/...     Go profiling
//
// Mutating endpoints answer 405 to anything but POST.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", g.adminIndex)
	mux.HandleFunc("/stats", g.adminStats)
	mux.HandleFunc("/ready", g.adminReady)
	mux.Handle("/stats/prometheus", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/config_dump", g.adminConfigDump)
	mux.HandleFunc("/clusters", g.adminClusters)
	mux.HandleFunc("/listeners", g.adminListeners)
	mux.HandleFunc("/healthcheck/fail", postOnly(func(w http.ResponseWriter, r *http.Request) {
		g.hcFailed.Store(true)
		fmt.Fprintln(w, "OK")
	}))
	mux.HandleFunc("/healthcheck/ok", postOnly(func(w http.ResponseWriter, r *http.Request) {
		g.hcFailed.Store(false)
		fmt.Fprintln(w, "OK")
	}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
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

func (g *Gateway) adminIndex(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	fmt.Fprint(w, `admin commands are:
  /ready: print server state, 200 when live
  /stats: print server stats (?format=json, ?filter=<regex>, ?usedonly)
  /stats/prometheus: print server stats in prometheus format
  /config_dump: dump current configuration
  /clusters: upstream cluster status
  /listeners: print listener info
  /healthcheck/fail (POST): cause the server to fail health checks
  /healthcheck/ok (POST): cause the server to pass health checks
  /debug/pprof/: Go profiling
`)
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

type dumpListener struct {
	Name         string            `json:"name"`
	Address      string            `json:"address"`
	BoundAddress string            `json:"bound_address"`
	FilterChains []dumpFilterChain `json:"filter_chains"`
	Default      *dumpFilterChain  `json:"default_filter_chain,omitempty"`
	resourceInfo
}

type dumpFilterChain struct {
	Name        string              `json:"name"`
	Match       listener.ChainMatch `json:"filter_chain_match"`
	TLS         bool                `json:"tls"`
	StatPrefix  string              `json:"stat_prefix,omitempty"`
	RouteConfig string              `json:"route_config_name,omitempty"`
	HTTPFilters []string            `json:"http_filters,omitempty"`
}

type dumpRoutes struct {
	Name         string `json:"name"`
	VirtualHosts []any  `json:"virtual_hosts"`
	resourceInfo
}

type dumpCluster struct {
	Name      string `json:"name"`
	Protocol  string `json:"protocol"`
	Endpoints []any  `json:"endpoints"`
	resourceInfo
}

func dumpChain(fc *listener.FilterChain) dumpFilterChain {
	d := dumpFilterChain{Name: fc.Name, Match: fc.Match, TLS: fc.TLS != nil}
	if fc.HTTP != nil {
		d.StatPrefix = fc.HTTP.StatPrefix
		d.RouteConfig = fc.HTTP.RouteConfig
		for _, f := range fc.HTTP.Filters {
			d.HTTPFilters = append(d.HTTPFilters, f.Name())
		}
	}
	return d
}

func (g *Gateway) adminConfigDump(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	var out struct {
		Listeners []dumpListener `json:"listeners"`
		Routes    []dumpRoutes   `json:"route_configs"`
		Clusters  []dumpCluster  `json:"clusters"`
	}
	for _, ll := range g.listeners {
		d := dumpListener{Name: ll.cfg.Name, Address: ll.cfg.Address, BoundAddress: ll.l.Addr().String(),
			resourceInfo: g.versions["listener:"+ll.cfg.Name]}
		for i := range ll.cfg.FilterChains {
			d.FilterChains = append(d.FilterChains, dumpChain(&ll.cfg.FilterChains[i]))
		}
		if ll.cfg.DefaultFilterChain != nil {
			dc := dumpChain(ll.cfg.DefaultFilterChain)
			d.Default = &dc
		}
		out.Listeners = append(out.Listeners, d)
	}
	for name, t := range g.routes {
		out.Routes = append(out.Routes, dumpRoutes{Name: name, VirtualHosts: vhostsJSON(t), resourceInfo: g.versions["route:"+name]})
	}
	for name, lc := range g.clusters.Load().byName {
		cfg := lc.c.Config()
		d := dumpCluster{Name: name, Protocol: cfg.Protocol.String(), resourceInfo: g.versions["cluster:"+name]}
		for _, ep := range lc.c.Endpoints() {
			d.Endpoints = append(d.Endpoints, map[string]any{"address": ep.Address, "weight": ep.Weight,
				"priority": ep.Priority, "locality": ep.Locality, "health_status": ep.Health.String()})
		}
		out.Clusters = append(out.Clusters, d)
	}
	g.mu.Unlock()
	sort.Slice(out.Listeners, func(i, j int) bool { return out.Listeners[i].Name < out.Listeners[j].Name })
	sort.Slice(out.Routes, func(i, j int) bool { return out.Routes[i].Name < out.Routes[j].Name })
	sort.Slice(out.Clusters, func(i, j int) bool { return out.Clusters[i].Name < out.Clusters[j].Name })
	if res := r.URL.Query().Get("resource"); res != "" {
		var v any
		switch res {
		case "listeners", "dynamic_listeners", "static_listeners":
			v = out.Listeners
		case "route_configs", "dynamic_route_configs", "static_route_configs":
			v = out.Routes
		case "clusters", "dynamic_active_clusters", "static_clusters":
			v = out.Clusters
		default:
			http.Error(w, fmt.Sprintf("unknown resource %q: want listeners, route_configs or clusters", res), http.StatusBadRequest)
			return
		}
		writeJSON(w, v)
		return
	}
	writeJSON(w, out)
}

// vhostsJSON renders a route table's virtual hosts; per-filter configs are
// shown by filter name only, since they are arbitrary Go values.
func vhostsJSON(t *route.Table) []any {
	cfg := t.Config()
	out := make([]any, 0, len(cfg.VirtualHosts))
	for _, vh := range cfg.VirtualHosts {
		rules := make([]any, 0, len(vh.Rules))
		for _, ru := range vh.Rules {
			ru.FilterConfig = nil
			b, err := json.Marshal(ru)
			if err != nil {
				rules = append(rules, map[string]string{"name": ru.Name, "error": err.Error()})
				continue
			}
			rules = append(rules, json.RawMessage(b))
		}
		out = append(out, map[string]any{"name": vh.Name, "domains": vh.Domains, "routes": rules})
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (g *Gateway) adminClusters(w http.ResponseWriter, r *http.Request) {
	set := g.clusters.Load()
	names := make([]string, 0, len(set.byName))
	for n := range set.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	if r.URL.Query().Get("format") == "json" {
		type ep struct {
			Address  string `json:"address"`
			Health   string `json:"health_status"`
			Weight   uint32 `json:"weight"`
			Priority uint32 `json:"priority"`
			Locality string `json:"locality,omitempty"`
		}
		type cl struct {
			Name      string `json:"name"`
			Endpoints []ep   `json:"host_statuses"`
		}
		var out struct {
			Clusters []cl `json:"cluster_statuses"`
		}
		for _, n := range names {
			c := cl{Name: n, Endpoints: []ep{}}
			for _, e := range set.byName[n].c.Endpoints() {
				c.Endpoints = append(c.Endpoints, ep{e.Address, e.Health.String(), e.Weight, e.Priority, e.Locality})
			}
			out.Clusters = append(out.Clusters, c)
		}
		writeJSON(w, out)
		return
	}
	var b strings.Builder
	for _, n := range names {
		for _, e := range set.byName[n].c.Endpoints() {
			fmt.Fprintf(&b, "%s::%s::health_flags::%s\n", n, e.Address, strings.ToLower(e.Health.String()))
			fmt.Fprintf(&b, "%s::%s::weight::%d\n", n, e.Address, max(e.Weight, 1))
			fmt.Fprintf(&b, "%s::%s::priority::%d\n", n, e.Address, e.Priority)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, b.String())
}

func (g *Gateway) adminListeners(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	type li struct {
		Name    string `json:"name"`
		Address string `json:"local_address"`
	}
	var ls []li
	for _, ll := range g.listeners {
		ls = append(ls, li{ll.cfg.Name, ll.l.Addr().String()})
	}
	g.mu.Unlock()
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, map[string]any{"listener_statuses": ls})
		return
	}
	for _, l := range ls {
		fmt.Fprintf(w, "%s::%s\n", l.Name, l.Address)
	}
}

type statValue struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// adminStats serves Envoy's /stats: counters and gauges under their dotted
// Envoy names, rebuilt from the Prometheus families and their tag labels.
// Histograms are left out.
func (g *Gateway) adminStats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var re *regexp.Regexp
	if f := q.Get("filter"); f != "" {
		var err error
		if re, err = regexp.Compile(f); err != nil {
			http.Error(w, fmt.Sprintf("invalid filter regex: %v", err), http.StatusBadRequest)
			return
		}
	}
	_, usedOnly := q["usedonly"]
	fams, err := g.metrics.reg.Gather()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	stats := envoyStats(g.metrics.prefix, fams)
	kept := stats[:0]
	for _, s := range stats {
		if (re == nil || re.MatchString(s.Name)) && (!usedOnly || s.Value != 0) {
			kept = append(kept, s)
		}
	}
	if q.Get("format") == "json" {
		writeJSON(w, map[string][]statValue{"stats": kept})
		return
	}
	var b strings.Builder
	for _, s := range kept {
		b.WriteString(s.Name)
		b.WriteString(": ")
		b.WriteString(strconv.FormatFloat(s.Value, 'f', -1, 64))
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, b.String())
}

// untaggedScopes are the Envoy scopes of families without a tag label,
// longest first: server_uptime is server.uptime.
var untaggedScopes = []string{"cluster_manager", "server"}

// envoyStats turns the families named <prefix>_... back into Envoy's
// dotted stat names, sorted by name.
func envoyStats(prefix string, fams []*dto.MetricFamily) []statValue {
	p := prefix + "_"
	tag := func(name string) string { return p + name }
	var out []statValue
	for _, f := range fams {
		name, ok := strings.CutPrefix(f.GetName(), p)
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				continue
			}
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out = append(out, statValue{Name: envoyName(name, labels, tag), Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// envoyName rebuilds one stat's Envoy name from its family name (without
// the prefix) and its labels.
func envoyName(name string, labels map[string]string, tag func(string) string) string {
	scoped := false
	for _, sc := range []struct{ scope, label string }{
		{"cluster", "cluster_name"},
		{"http", "http_conn_manager_prefix"},
		{"listener", "listener_address"},
	} {
		v, ok := labels[tag(sc.label)]
		if rest, cut := strings.CutPrefix(name, sc.scope+"_"); ok && cut {
			name = sc.scope + "." + v + "." + rest
			scoped = true
			break
		}
	}
	if !scoped {
		for _, sc := range untaggedScopes {
			if rest, cut := strings.CutPrefix(name, sc+"_"); cut {
				name = sc + "." + rest
				break
			}
		}
	}
	if v, ok := labels[tag("response_code_class")]; ok {
		if base, cut := strings.CutSuffix(name, "_xx"); cut {
			name = base + "_" + v + "xx"
		}
	}
	if v, ok := labels[tag("response_code")]; ok {
		name += "_" + v
	}
	return name
}
