package portico

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// Resource kinds, as in the keys of Gateway.versions.
const (
	kindListener = "listener"
	kindRoute    = "route"
	kindCluster  = "cluster"
)

// updateFailure is the last rejected update of one resource: Envoy's
// UpdateFailureState, shown as error_state in /config_dump.
type updateFailure struct {
	FailedConfiguration any       `json:"failed_configuration,omitempty"`
	LastUpdateAttempt   time.Time `json:"last_update_attempt"`
	Details             string    `json:"details"`
	VersionInfo         string    `json:"version_info,omitempty"`
}

// rejections holds the last rejected update per resource. It has its own
// lock so that a discovery client may record a rejection whether or not it
// holds the gateway's update lock.
type rejections struct {
	mu    sync.Mutex
	byKey map[string]updateFailure // "<kind>:<name>"
}

// recordRejection records that an update of the resource kind/name (kind
// is "listener", "route" or "cluster") at version was rejected with err;
// failed is the rejected configuration, shown as JSON, or nil. The
// resource keeps serving its last accepted version; /config_dump shows the
// rejection as the resource's error_state until a later update of it is
// accepted. The discovery (xDS) client calls it when it NACKs an update.
func (g *Gateway) recordRejection(kind, name, version string, failed any, err error) {
	r := &g.rejected
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil {
		r.byKey = map[string]updateFailure{}
	}
	r.byKey[kind+":"+name] = updateFailure{
		FailedConfiguration: failed,
		LastUpdateAttempt:   time.Now(),
		Details:             err.Error(),
		VersionInfo:         version,
	}
}

// snapshot returns a copy of the rejections.
func (r *rejections) snapshot() map[string]updateFailure {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]updateFailure, len(r.byKey))
	for k, v := range r.byKey {
		out[k] = v
	}
	return out
}

// resourceMeta is what /config_dump shows of every resource besides its
// configuration: Envoy's version_info, last_updated and error_state.
type resourceMeta struct {
	VersionInfo  string         `json:"version_info,omitempty"`
	LastUpdated  *time.Time     `json:"last_updated,omitempty"`
	ClientStatus string         `json:"client_status,omitempty"` // set by a discovery client
	ErrorState   *updateFailure `json:"error_state,omitempty"`
}

// meta builds the metadata of one resource. A rejection older than the
// last accepted update of the resource is no longer shown.
func meta(ri resourceInfo, live bool, fail updateFailure, failed bool) resourceMeta {
	var m resourceMeta
	if live {
		m.VersionInfo = strconv.Itoa(ri.Version)
		t := ri.LastUpdated
		m.LastUpdated = &t
	}
	if failed && (!live || fail.LastUpdateAttempt.After(ri.LastUpdated)) {
		f := fail
		m.ErrorState = &f
	}
	return m
}

type dumpListener struct {
	Name         string            `json:"name"`
	Address      string            `json:"address,omitempty"`
	BoundAddress string            `json:"bound_address,omitempty"`
	FilterChains []dumpFilterChain `json:"filter_chains,omitempty"`
	Default      *dumpFilterChain  `json:"default_filter_chain,omitempty"`
	resourceMeta
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
	VirtualHosts []any  `json:"virtual_hosts,omitempty"`
	resourceMeta
}

type dumpCluster struct {
	Name            string `json:"name"`
	Protocol        string `json:"protocol,omitempty"`
	ConnectTimeout  string `json:"connect_timeout,omitempty"`
	TLS             bool   `json:"tls,omitempty"`
	CircuitBreakers any    `json:"circuit_breakers,omitempty"`
	Endpoints       []any  `json:"endpoints,omitempty"`
	resourceMeta
}

type configDump struct {
	Listeners []dumpListener `json:"listeners"`
	Routes    []dumpRoutes   `json:"route_configs"`
	Clusters  []dumpCluster  `json:"clusters"`
	// Endpoint assignments and secrets a discovery client reported
	// (discovery.go): name and state only.
	EndpointConfigs []dumpDiscovered `json:"endpoint_configs,omitempty"`
	Secrets         []dumpDiscovered `json:"secrets,omitempty"`
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

// configDump snapshots the live configuration, with the rejected updates.
func (g *Gateway) configDump() configDump {
	fails := g.rejected.snapshot()
	states := g.discovery.snapshot()
	failFor := func(key string) (updateFailure, bool) {
		f, ok := fails[key]
		delete(fails, key)
		return f, ok
	}
	metaFor := func(key string) resourceMeta {
		f, failed := failFor(key)
		m := meta(g.versions[key], true, f, failed)
		if st, ok := states[key]; ok {
			delete(states, key)
			m.discovered(st, f, failed)
		}
		return m
	}
	var out configDump
	g.mu.Lock()
	for _, ll := range g.listeners {
		d := dumpListener{Name: ll.cfg.Name, Address: ll.cfg.Address, BoundAddress: ll.l.Addr().String(),
			resourceMeta: metaFor(kindListener + ":" + ll.cfg.Name)}
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
		out.Routes = append(out.Routes, dumpRoutes{Name: name, VirtualHosts: vhostsJSON(t),
			resourceMeta: metaFor(kindRoute + ":" + name)})
	}
	for name, lc := range g.clusters.Load().byName {
		cfg := lc.c.Config()
		d := dumpCluster{Name: name, Protocol: cfg.Protocol.String(), ConnectTimeout: cfg.ConnectTimeout.String(),
			TLS: cfg.TLS != nil, CircuitBreakers: cfg.CircuitBreakers,
			resourceMeta: metaFor(kindCluster + ":" + name)}
		for _, ep := range lc.c.Endpoints() {
			d.Endpoints = append(d.Endpoints, map[string]any{"address": ep.Address, "weight": max(ep.Weight, 1),
				"priority": ep.Priority, "locality": ep.Locality, "health_status": ep.Health.String()})
		}
		out.Clusters = append(out.Clusters, d)
	}
	g.mu.Unlock()
	// Rejected resources that were never accepted, and resources a
	// discovery client holds that do not serve (yet).
	out.addUnlisted(fails, states)
	sort.Slice(out.Listeners, func(i, j int) bool { return out.Listeners[i].Name < out.Listeners[j].Name })
	sort.Slice(out.Routes, func(i, j int) bool { return out.Routes[i].Name < out.Routes[j].Name })
	sort.Slice(out.Clusters, func(i, j int) bool { return out.Clusters[i].Name < out.Clusters[j].Name })
	sort.Slice(out.EndpointConfigs, func(i, j int) bool { return out.EndpointConfigs[i].Name < out.EndpointConfigs[j].Name })
	sort.Slice(out.Secrets, func(i, j int) bool { return out.Secrets[i].Name < out.Secrets[j].Name })
	return out
}

// resourceFields maps ?resource= values, ours and Envoy's, to the
// configDump field that holds them.
var resourceFields = map[string]string{
	"listeners": "listeners", "dynamic_listeners": "listeners", "static_listeners": "listeners",
	"route_configs": "route_configs", "dynamic_route_configs": "route_configs", "static_route_configs": "route_configs",
	"clusters": "clusters", "dynamic_active_clusters": "clusters", "static_clusters": "clusters",
	"endpoint_configs": "endpoint_configs", "dynamic_endpoint_configs": "endpoint_configs",
	"secrets": "secrets", "dynamic_active_secrets": "secrets",
}

// adminConfigDump serves /config_dump. Without parameters it is the whole
// configuration. ?resource=<field> returns only the resources of that
// field ("listeners", "route_configs", "clusters", or Envoy's names such
// as "dynamic_active_clusters") as {"configs": [...]}; ?name_regex= keeps
// the resources whose name matches. ?mask= is a comma-separated list of
// dotted field paths (a protobuf FieldMask) applied to each resource with
// ?resource=, or to the whole dump without: only those fields are kept;
// paths go through lists element by element.
func (g *Gateway) adminConfigDump(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var masks [][]string
	if m := q.Get("mask"); m != "" {
		for _, p := range strings.Split(m, ",") {
			if p = strings.TrimSpace(p); p != "" {
				masks = append(masks, strings.Split(p, "."))
			}
		}
	}
	var nameRE *regexp.Regexp
	if s := q.Get("name_regex"); s != "" {
		var err error
		if nameRE, err = regexp.Compile(s); err != nil {
			http.Error(w, fmt.Sprintf("invalid name_regex: %v", err), http.StatusBadRequest)
			return
		}
	}
	res := q.Get("resource")
	field := ""
	if res != "" {
		var ok bool
		if field, ok = resourceFields[res]; !ok {
			http.Error(w, fmt.Sprintf("unknown resource %q: want listeners, route_configs, clusters, endpoint_configs or secrets", res), http.StatusBadRequest)
			return
		}
	}
	doc, err := toJSONValue(g.configDump())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	top := doc.(map[string]any)
	if nameRE != nil {
		for k, v := range top {
			top[k] = filterByName(v, nameRE)
		}
	}
	if field == "" {
		if masks != nil {
			doc = applyMask(doc, masks)
		}
		writeJSON(w, doc)
		return
	}
	items, _ := top[field].([]any)
	configs := make([]any, 0, len(items))
	for _, it := range items {
		if masks != nil {
			it = applyMask(it, masks)
		}
		configs = append(configs, it)
	}
	writeJSON(w, map[string]any{"configs": configs})
}

// toJSONValue round-trips v through JSON into maps, slices and scalars.
func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}

// filterByName keeps the elements of a list of resources whose "name"
// matches re.
func filterByName(v any, re *regexp.Regexp) any {
	list, ok := v.([]any)
	if !ok {
		return v
	}
	kept := make([]any, 0, len(list))
	for _, it := range list {
		if m, ok := it.(map[string]any); ok {
			if name, _ := m["name"].(string); re.MatchString(name) {
				kept = append(kept, it)
			}
		}
	}
	return kept
}

// applyMask keeps only the fields of v named by paths. A path that ends at
// a field keeps all of it; lists are masked element by element.
func applyMask(v any, paths [][]string) any {
	switch t := v.(type) {
	case []any:
		out := make([]any, 0, len(t))
		for _, e := range t {
			out = append(out, applyMask(e, paths))
		}
		return out
	case map[string]any:
		sub := map[string][][]string{}
		whole := map[string]bool{}
		for _, p := range paths {
			if len(p) == 1 {
				whole[p[0]] = true
			} else {
				sub[p[0]] = append(sub[p[0]], p[1:])
			}
		}
		out := map[string]any{}
		for k, fv := range t {
			switch {
			case whole[k]:
				out[k] = fv
			case sub[k] != nil:
				out[k] = applyMask(fv, sub[k])
			}
		}
		return out
	}
	// A scalar under a path that goes deeper: nothing to select in it.
	return v
}

// vhostsJSON renders a route table's virtual hosts; per-filter configs are
// shown by filter name only, since they are arbitrary Go values.
func vhostsJSON(t *route.Table) []any {
	cfg := t.Config()
	out := make([]any, 0, len(cfg.VirtualHosts))
	for _, vh := range cfg.VirtualHosts {
		rules := make([]any, 0, len(vh.Rules))
		for _, ru := range vh.Rules {
			var filters []string
			for name := range ru.FilterConfig {
				filters = append(filters, name)
			}
			sort.Strings(filters)
			ru.FilterConfig = nil
			b, err := json.Marshal(ru)
			if err != nil {
				rules = append(rules, map[string]string{"name": ru.Name, "error": err.Error()})
				continue
			}
			if len(filters) > 0 {
				var m map[string]any
				if json.Unmarshal(b, &m) == nil {
					m["typed_per_filter_config"] = filters
					rules = append(rules, m)
					continue
				}
			}
			rules = append(rules, json.RawMessage(b))
		}
		out = append(out, map[string]any{"name": vh.Name, "domains": vh.Domains, "routes": rules})
	}
	return out
}
