package portico

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// statValue is one counter or gauge under its Envoy name.
type statValue struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	kind  dto.MetricType
}

// histValue is one histogram under its Envoy name.
type histValue struct {
	name string
	h    *dto.Histogram
}

// supportedQuantiles are Envoy's, in percent.
var supportedQuantiles = []float64{0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100}

// adminStats serves Envoy's /stats: counters and gauges under their dotted
// Envoy names, rebuilt from the Prometheus families and their tag labels,
// then histograms as Envoy's quantile summaries. Portico keeps no flush
// intervals, so every interval value is nan (null in JSON), as in an Envoy
// that has not flushed yet; the cumulative values are interpolated within
// the histogram buckets.
//
// usedonly keeps the stats that are non-zero (histograms with samples):
// Prometheus does not track whether a stat was ever written, so a gauge
// that went back to zero is left out.
func (g *Gateway) adminStats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("format") == "prometheus" {
		promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
		return
	}
	var re *regexp.Regexp
	if f := q.Get("filter"); f != "" {
		var err error
		if re, err = regexp.Compile(f); err != nil {
			http.Error(w, fmt.Sprintf("invalid filter regex: %v", err), http.StatusBadRequest)
			return
		}
	}
	_, usedOnly := q["usedonly"]
	var wantCounters, wantGauges, wantHists bool
	switch t := q.Get("type"); t {
	case "", "All":
		wantCounters, wantGauges, wantHists = true, true, true
	case "Counters":
		wantCounters = true
	case "Gauges":
		wantGauges = true
	case "Histograms":
		wantHists = true
	default:
		http.Error(w, fmt.Sprintf("invalid type %q: want All, Counters, Gauges or Histograms", t), http.StatusBadRequest)
		return
	}
	fams, err := g.metrics.reg.Gather()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	stats, hists := envoyStats(g.metrics.prefix, fams)
	match := func(name string) bool { return re == nil || re.MatchString(name) }
	var kept []statValue
	for _, s := range stats {
		want := (s.kind == dto.MetricType_COUNTER && wantCounters) || (s.kind == dto.MetricType_GAUGE && wantGauges)
		if want && match(s.Name) && (!usedOnly || s.Value != 0) {
			kept = append(kept, s)
		}
	}
	var keptH []histValue
	for _, h := range hists {
		if wantHists && match(h.name) && (!usedOnly || h.h.GetSampleCount() > 0) {
			keptH = append(keptH, h)
		}
	}
	if q.Get("format") == "json" {
		writeJSON(w, statsJSON(kept, keptH))
		return
	}
	var b strings.Builder
	for _, s := range kept {
		b.WriteString(s.Name)
		b.WriteString(": ")
		b.WriteString(strconv.FormatFloat(s.Value, 'f', -1, 64))
		b.WriteByte('\n')
	}
	for _, h := range keptH {
		b.WriteString(h.name)
		b.WriteString(":")
		if h.h.GetSampleCount() == 0 {
			b.WriteString(" No recorded values\n")
			continue
		}
		for _, q := range supportedQuantiles {
			fmt.Fprintf(&b, " P%s(nan,%s)", strconv.FormatFloat(q, 'f', -1, 64),
				strconv.FormatFloat(quantile(h.h, q/100), 'g', 6, 64))
		}
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, b.String())
}

// statsJSON builds Envoy's /stats?format=json document: the counters and
// gauges, then one element holding the histograms.
func statsJSON(stats []statValue, hists []histValue) map[string][]any {
	out := make([]any, 0, len(stats)+1)
	for _, s := range stats {
		out = append(out, s)
	}
	if len(hists) > 0 {
		type qv struct {
			Interval   *float64 `json:"interval"`
			Cumulative *float64 `json:"cumulative"`
		}
		type cq struct {
			Name   string `json:"name"`
			Values []qv   `json:"values"`
		}
		computed := make([]cq, 0, len(hists))
		for _, h := range hists {
			c := cq{Name: h.name, Values: make([]qv, len(supportedQuantiles))}
			if h.h.GetSampleCount() > 0 {
				for i, q := range supportedQuantiles {
					v := quantile(h.h, q/100)
					c.Values[i].Cumulative = &v
				}
			}
			computed = append(computed, c)
		}
		out = append(out, map[string]any{"histograms": map[string]any{
			"supported_quantiles": supportedQuantiles,
			"computed_quantiles":  computed,
		}})
	}
	return map[string][]any{"stats": out}
}

// quantile estimates the q-quantile (0..1) of h by linear interpolation
// within its buckets. Values beyond the last finite bucket are reported as
// that bucket's bound.
func quantile(h *dto.Histogram, q float64) float64 {
	n := float64(h.GetSampleCount())
	if n == 0 {
		return math.NaN()
	}
	rank := q * n
	lower, prev := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, cum := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if math.IsInf(upper, 1) {
			break
		}
		if cum > prev { // a non-empty bucket
			if rank == 0 {
				return lower
			}
			if cum >= rank {
				return lower + (upper-lower)*(rank-prev)/(cum-prev)
			}
		}
		lower, prev = upper, cum
	}
	return lower
}

// untaggedScopes are the Envoy scopes of families without a tag label,
// longest first: cluster_manager_active_clusters is
// cluster_manager.active_clusters.
var untaggedScopes = []string{"cluster_manager", "listener_manager", "server"}

// dottedScopes are the sub-scopes of stat names whose Envoy form has a dot
// where the family name has an underscore.
var dottedScopes = []struct{ family, envoy string }{
	{"ssl_", "ssl."},
	{"circuit_breakers_default_", "circuit_breakers.default."},
	{"circuit_breakers_high_", "circuit_breakers.high."},
	{"outlier_detection_", "outlier_detection."},
	{"health_check_", "health_check."},
}

// envoyStats turns the families named <prefix>_... back into Envoy's
// dotted stat names, sorted by name: counters and gauges, and histograms.
func envoyStats(prefix string, fams []*dto.MetricFamily) ([]statValue, []histValue) {
	p := prefix + "_"
	tag := func(name string) string { return p + name }
	var out []statValue
	var hists []histValue
	for _, f := range fams {
		name, ok := strings.CutPrefix(f.GetName(), p)
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			en := envoyName(name, labels, tag)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out = append(out, statValue{Name: en, Value: m.GetCounter().GetValue(), kind: dto.MetricType_COUNTER})
			case dto.MetricType_GAUGE:
				out = append(out, statValue{Name: en, Value: m.GetGauge().GetValue(), kind: dto.MetricType_GAUGE})
			case dto.MetricType_HISTOGRAM:
				hists = append(hists, histValue{name: en, h: m.GetHistogram()})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	sort.Slice(hists, func(i, j int) bool { return hists[i].name < hists[j].name })
	return out, hists
}

// envoyName rebuilds one stat's Envoy name from its family name (without
// the prefix) and its labels: the inverse of Envoy's tag extraction.
func envoyName(name string, labels map[string]string, tag func(string) string) string {
	scoped := false
	if rest, cut := strings.CutPrefix(name, "vhost_route_"); cut {
		vh, ok1 := labels[tag("virtual_host")]
		rt, ok2 := labels[tag("route")]
		if ok1 && ok2 {
			name = "vhost." + vh + ".route." + rt + "." + rest
			scoped = true
		}
	}
	if rest, cut := strings.CutPrefix(name, "listener_http_"); cut {
		lis, ok1 := labels[tag("listener_address")]
		hcm, ok2 := labels[tag("http_conn_manager_prefix")]
		if ok1 && ok2 {
			name = "listener." + lis + ".http." + hcm + "." + rest
			scoped = true
		}
	}
	if rest, cut := strings.CutPrefix(name, "cluster_endpoint_"); cut {
		c, ok1 := labels[tag("cluster_name")]
		ep, ok2 := labels[tag("endpoint_address")]
		if ok1 && ok2 {
			name = "cluster." + c + ".endpoint." + strings.ReplaceAll(ep, ":", "_") + "." + rest
			scoped = true
		}
	}
	for _, sc := range []struct{ scope, label string }{
		{"cluster", "cluster_name"},
		{"http", "http_conn_manager_prefix"},
		{"listener", "listener_address"},
	} {
		if scoped {
			break
		}
		v, ok := labels[tag(sc.label)]
		if rest, cut := strings.CutPrefix(name, sc.scope+"_"); ok && cut {
			for _, d := range dottedScopes {
				if r, ok := strings.CutPrefix(rest, d.family); ok {
					rest = d.envoy + r
					break
				}
			}
			name = sc.scope + "." + v + "." + rest
			scoped = true
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
