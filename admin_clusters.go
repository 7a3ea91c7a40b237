package portico

import (
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/health"
)

// socketAddress is Envoy's core.v3.Address in JSON.
type socketAddress struct {
	SocketAddress struct {
		Address   string `json:"address"`
		PortValue int    `json:"port_value"`
	} `json:"socket_address"`
}

func jsonAddress(hostport string) socketAddress {
	var a socketAddress
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		a.SocketAddress.Address = hostport
		return a
	}
	a.SocketAddress.Address = host
	a.SocketAddress.PortValue, _ = strconv.Atoi(port)
	return a
}

// edsHealth is the name of Envoy's core.v3.HealthStatus for h.
func edsHealth(h cluster.HealthStatus) string {
	switch h {
	case cluster.Healthy:
		return "HEALTHY"
	case cluster.Unhealthy:
		return "UNHEALTHY"
	case cluster.Draining:
		return "DRAINING"
	case cluster.HealthCheckTimeout:
		return "TIMEOUT"
	case cluster.Degraded:
		return "DEGRADED"
	}
	return "UNKNOWN"
}

// locality splits "region/zone/sub_zone".
func locality(s string) (region, zone, subZone string) {
	parts := strings.SplitN(s, "/", 3)
	parts = append(parts, "", "", "")
	return parts[0], parts[1], parts[2]
}

type thresholdsJSON struct {
	Priority           string `json:"priority"`
	MaxConnections     uint32 `json:"max_connections"`
	MaxPendingRequests uint32 `json:"max_pending_requests"`
	MaxRequests        uint32 `json:"max_requests"`
	MaxRetries         uint32 `json:"max_retries"`
}

// thresholds returns a cluster's circuit-breaker thresholds with Envoy's
// defaults filled in, default priority first.
func thresholds(cb cluster.CircuitBreakers) []thresholdsJSON {
	fill := func(prio string, t cluster.Thresholds) thresholdsJSON {
		or := func(v, def uint32) uint32 {
			if v == 0 {
				return def
			}
			return v
		}
		return thresholdsJSON{prio,
			or(t.MaxConnections, cluster.DefaultMaxConnections),
			or(t.MaxPendingRequests, cluster.DefaultMaxPendingRequests),
			or(t.MaxRequests, cluster.DefaultMaxRequests),
			or(t.MaxRetries, cluster.DefaultMaxRetries)}
	}
	return []thresholdsJSON{fill("DEFAULT", cb.Default), fill("HIGH", cb.High)}
}

// adminClusters serves /clusters in Envoy's text format
// (cluster::endpoint::field::value lines) or, with ?format=json, as
// Envoy's ClusterStatuses, from each cluster's endpoint snapshots. Envoy's
// per-endpoint connection counters (cx_*) are left out: connections are
// pooled per cluster, not counted per endpoint.
func (g *Gateway) adminClusters(w http.ResponseWriter, r *http.Request) {
	set := g.clusters.Load()
	names := make([]string, 0, len(set.byName))
	for n := range set.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	if r.URL.Query().Get("format") == "json" {
		type stat struct {
			Name  string `json:"name"`
			Value string `json:"value,omitempty"`
			Type  string `json:"type,omitempty"`
		}
		type hostLocality struct {
			Region  string `json:"region,omitempty"`
			Zone    string `json:"zone,omitempty"`
			SubZone string `json:"sub_zone,omitempty"`
		}
		type percent struct {
			Value float64 `json:"value"`
		}
		type host struct {
			Address                socketAddress  `json:"address"`
			Stats                  []stat         `json:"stats"`
			HealthStatus           map[string]any `json:"health_status"`
			SuccessRate            *percent       `json:"success_rate,omitempty"`
			Weight                 uint32         `json:"weight"`
			Priority               uint32         `json:"priority,omitempty"`
			Locality               *hostLocality  `json:"locality,omitempty"`
			LocalOriginSuccessRate *percent       `json:"local_origin_success_rate,omitempty"`
		}
		type status struct {
			Name              string `json:"name"`
			ObservabilityName string `json:"observability_name"`
			CircuitBreakers   struct {
				Thresholds []thresholdsJSON `json:"thresholds"`
			} `json:"circuit_breakers"`
			HostStatuses []host `json:"host_statuses"`
		}
		out := struct {
			Statuses []status `json:"cluster_statuses"`
		}{Statuses: []status{}}
		for _, n := range names {
			c := set.byName[n].c
			s := status{Name: n, ObservabilityName: n, HostStatuses: []host{}}
			s.CircuitBreakers.Thresholds = thresholds(c.Config().CircuitBreakers)
			for _, e := range c.EndpointStates() {
				u := func(v uint64) string { return strconv.FormatUint(v, 10) }
				h := host{Address: jsonAddress(e.Address), Weight: max(e.Weight, 1), Priority: e.Priority,
					HealthStatus: map[string]any{"eds_health_status": edsHealth(e.Health)},
					Stats: []stat{
						{Name: "rq_error", Value: u(e.ErrorRequests)},
						{Name: "rq_success", Value: u(e.SuccessRequests)},
						{Name: "rq_timeout", Value: u(e.TimeoutRequests)},
						{Name: "rq_total", Value: u(e.TotalRequests)},
						{Name: "rq_active", Value: strconv.FormatInt(e.ActiveRequests, 10), Type: "GAUGE"},
					}}
				if e.Ejected {
					h.HealthStatus["failed_outlier_check"] = true
				}
				for _, chk := range e.Checks {
					if chk.Status != health.Healthy && chk.Status != health.Unknown {
						h.HealthStatus["failed_active_health_check"] = true
					}
					if chk.Degraded {
						h.HealthStatus["failed_active_degraded_check"] = true
					}
				}
				if e.SuccessRate >= 0 {
					h.SuccessRate = &percent{e.SuccessRate}
				}
				if e.LocalOriginSuccessRate >= 0 {
					h.LocalOriginSuccessRate = &percent{e.LocalOriginSuccessRate}
				}
				if e.Locality != "" {
					reg, zone, sub := locality(e.Locality)
					h.Locality = &hostLocality{reg, zone, sub}
				}
				s.HostStatuses = append(s.HostStatuses, h)
			}
			out.Statuses = append(out.Statuses, s)
		}
		writeJSON(w, out)
		return
	}
	var b strings.Builder
	for _, n := range names {
		c := set.byName[n].c
		fmt.Fprintf(&b, "%s::observability_name::%s\n", n, n)
		for _, t := range thresholds(c.Config().CircuitBreakers) {
			prio := strings.ToLower(t.Priority) + "_priority"
			fmt.Fprintf(&b, "%s::%s::max_connections::%d\n", n, prio, t.MaxConnections)
			fmt.Fprintf(&b, "%s::%s::max_pending_requests::%d\n", n, prio, t.MaxPendingRequests)
			fmt.Fprintf(&b, "%s::%s::max_requests::%d\n", n, prio, t.MaxRequests)
			fmt.Fprintf(&b, "%s::%s::max_retries::%d\n", n, prio, t.MaxRetries)
		}
		for _, e := range c.EndpointStates() {
			p := n + "::" + e.Address + "::"
			reg, zone, sub := locality(e.Locality)
			fmt.Fprintf(&b, "%srq_active::%d\n", p, e.ActiveRequests)
			fmt.Fprintf(&b, "%srq_error::%d\n", p, e.ErrorRequests)
			fmt.Fprintf(&b, "%srq_success::%d\n", p, e.SuccessRequests)
			fmt.Fprintf(&b, "%srq_timeout::%d\n", p, e.TimeoutRequests)
			fmt.Fprintf(&b, "%srq_total::%d\n", p, e.TotalRequests)
			fmt.Fprintf(&b, "%shostname::\n", p)
			fmt.Fprintf(&b, "%shealth_flags::%s\n", p, e.HealthFlags())
			fmt.Fprintf(&b, "%sweight::%d\n", p, max(e.Weight, 1))
			fmt.Fprintf(&b, "%sregion::%s\n", p, reg)
			fmt.Fprintf(&b, "%szone::%s\n", p, zone)
			fmt.Fprintf(&b, "%ssub_zone::%s\n", p, sub)
			fmt.Fprintf(&b, "%scanary::false\n", p)
			fmt.Fprintf(&b, "%spriority::%d\n", p, e.Priority)
			fmt.Fprintf(&b, "%ssuccess_rate::%s\n", p, strconv.FormatFloat(e.SuccessRate, 'f', -1, 64))
			fmt.Fprintf(&b, "%slocal_origin_success_rate::%s\n", p, strconv.FormatFloat(e.LocalOriginSuccessRate, 'f', -1, 64))
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, b.String())
}

// adminListeners serves /listeners: "name::address" lines or, with
// ?format=json, Envoy's ListenersStatus.
func (g *Gateway) adminListeners(w http.ResponseWriter, r *http.Request) {
	type li struct {
		Name         string        `json:"name"`
		LocalAddress socketAddress `json:"local_address"`
		addr         string
	}
	g.mu.Lock()
	ls := make([]li, 0, len(g.listeners))
	for _, ll := range g.listeners {
		a := ll.l.Addr().String()
		ls = append(ls, li{Name: ll.cfg.Name, LocalAddress: jsonAddress(a), addr: a})
	}
	g.mu.Unlock()
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, map[string]any{"listener_statuses": ls})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, l := range ls {
		fmt.Fprintf(w, "%s::%s\n", l.Name, l.addr)
	}
}
