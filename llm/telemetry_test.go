package llm

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/porticoproxy/portico/filter"
)

const anStreamResp = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x-2025\",\"content\":[],\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n" +
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi there\"}}\n\n" +
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n" +
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

// TestGenAITelemetry checks the OpenTelemetry GenAI metrics and spans
// with the SDK's in-memory reader and exporter: names, units, attribute
// sets and values, exactly.
func TestGenAITelemetry(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	g := policyGW(t, Anthropic, func(c *Config) {
		c.Telemetry = Telemetry{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), TracerProvider: tp}
		c.Pricing = &Pricing{Models: map[string]Price{"claude-x": {Input: 3, Output: 15}}}
	})
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	var upstreamTraceparent string
	up := func(body string, status int) filter.UpstreamFunc {
		a := answer(status, body)
		return func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
			upstreamTraceparent = x.Out.Header.Get("Traceparent")
			return a(ctx, x)
		}
	}
	hdr := http.Header{"Traceparent": {parent}}
	w, _ := do(t, g, ChatCompletions, `{"model":"claude-x","max_tokens":50,"temperature":0.5,"messages":[{"role":"user","content":"Hi"}]}`, hdr, up(anMsgResp, 200))
	if w.Code != 200 {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	if ms, err := strconv.ParseFloat(w.Header().Get("X-Portico-Overhead-Ms"), 64); err != nil || ms < 0 || ms > 5000 {
		t.Errorf("overhead header %q", w.Header().Get("X-Portico-Overhead-Ms"))
	}
	if !strings.HasPrefix(upstreamTraceparent, "00-0af7651916cd43dd8448eb211c80319c-") || upstreamTraceparent == parent {
		t.Errorf("upstream traceparent %q: want the GenAI span's, in the caller's trace", upstreamTraceparent)
	}
	if w, _ := do(t, g, ChatCompletions, `{"model":"claude-x","stream":true,"messages":[{"role":"user","content":"Hi"}]}`, nil, up(anStreamResp, 200)); w.Code != 200 {
		t.Fatalf("stream status %d", w.Code)
	}
	if w, _ := do(t, g, ChatCompletions, `{"model":"claude-y","messages":[{"role":"user","content":"Hi"}]}`, nil, up(`{"type":"error","error":{"type":"api_error","message":"boom"}}`, 500)); w.Code != 500 {
		t.Fatalf("error status %d", w.Code)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	metrics := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			metrics[m.Name] = m
		}
	}
	base := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", "chat"),
		attribute.String("gen_ai.provider.name", "anthropic"),
		attribute.String("gen_ai.request.model", "claude-x"),
		attribute.String("gen_ai.response.model", "claude-x-2025"),
		attribute.String("server.address", "upstream.test"),
		attribute.Int("server.port", 80),
	}
	with := func(kv ...attribute.KeyValue) attribute.Set {
		return attribute.NewSet(append(append([]attribute.KeyValue{}, base...), kv...)...)
	}
	failed := attribute.NewSet(
		attribute.String("gen_ai.operation.name", "chat"),
		attribute.String("gen_ai.provider.name", "anthropic"),
		attribute.String("gen_ai.request.model", "claude-y"),
		attribute.String("error.type", "500"),
		attribute.String("server.address", "upstream.test"),
		attribute.Int("server.port", 80),
	)

	type point struct {
		attrs string
		count uint64
		sum   float64
	}
	points := func(name, unit string) []point {
		t.Helper()
		m, ok := metrics[name]
		if !ok {
			t.Fatalf("no metric %s; have %v", name, keys(metrics))
		}
		if m.Unit != unit {
			t.Errorf("%s: unit %q, want %q", name, m.Unit, unit)
		}
		var out []point
		switch d := m.Data.(type) {
		case metricdata.Histogram[int64]:
			for _, dp := range d.DataPoints {
				out = append(out, point{dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Count, float64(dp.Sum)})
			}
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				out = append(out, point{dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Count, dp.Sum})
			}
		case metricdata.Sum[float64]:
			for _, dp := range d.DataPoints {
				out = append(out, point{dp.Attributes.Encoded(attribute.DefaultEncoder()), 1, dp.Value})
			}
		default:
			t.Fatalf("%s: data %T", name, m.Data)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].attrs < out[j].attrs })
		return out
	}
	enc := func(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }
	sorted := func(ps ...point) []point {
		sort.Slice(ps, func(i, j int) bool { return ps[i].attrs < ps[j].attrs })
		return ps
	}
	cmpPoints := func(name string, got, want []point, sums bool) {
		t.Helper()
		if !sums {
			for i := range got {
				got[i].sum = 0
			}
		}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(point{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	// Usage: 10+7 input and 20+5 output tokens for the two successes; the
	// failure has no usage.
	cmpPoints("gen_ai.client.token.usage", points("gen_ai.client.token.usage", "{token}"), sorted(
		point{enc(with(attribute.String("gen_ai.token.type", "input"))), 2, 17},
		point{enc(with(attribute.String("gen_ai.token.type", "output"))), 2, 25},
	), true)
	cmpPoints("gen_ai.server.request.duration", points("gen_ai.server.request.duration", "s"), sorted(
		point{enc(with()), 2, 0}, point{enc(failed), 1, 0},
	), false)
	cmpPoints("gen_ai.server.time_to_first_token", points("gen_ai.server.time_to_first_token", "s"), []point{{enc(with()), 1, 0}}, false)
	cmpPoints("gen_ai.server.time_per_output_token", points("gen_ai.server.time_per_output_token", "s"), []point{{enc(with()), 1, 0}}, false)
	// (10×3 + 20×15 + 7×3 + 5×15) / 1e6 dollars.
	cost := points("portico.llm.cost", "USD")
	if len(cost) != 1 || cost[0].sum < 0.000425 || cost[0].sum > 0.000427 {
		t.Errorf("cost %+v", cost)
	}
	if h := metrics["gen_ai.client.token.usage"].Data.(metricdata.Histogram[int64]); len(h.DataPoints[0].Bounds) != len(tokenBuckets) {
		t.Errorf("token buckets %v", h.DataPoints[0].Bounds)
	}

	got := spans.GetSpans()
	if len(got) != 3 {
		t.Fatalf("%d spans", len(got))
	}
	s := got[0]
	if s.Name != "chat claude-x" || s.SpanKind != trace.SpanKindClient || s.Parent.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("span %q kind %v parent %v", s.Name, s.SpanKind, s.Parent)
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		attrs[kv.Key] = kv.Value
	}
	for k, want := range map[attribute.Key]string{
		"gen_ai.operation.name":                    "chat",
		"gen_ai.provider.name":                     "anthropic",
		"gen_ai.request.model":                     "claude-x",
		"gen_ai.response.model":                    "claude-x-2025",
		"gen_ai.request.max_tokens":                "50",
		"gen_ai.request.temperature":               "0.5",
		"gen_ai.usage.input_tokens":                "10",
		"gen_ai.usage.output_tokens":               "20",
		"gen_ai.usage.cache_read.input_tokens":     "0",
		"gen_ai.usage.cache_creation.input_tokens": "0",
		"gen_ai.response.finish_reasons":           `["end_turn"]`,
	} {
		if v, ok := attrs[k]; !ok || v.Emit() != want {
			t.Errorf("span attribute %s = %q, want %q", k, v.Emit(), want)
		}
	}
	if e := got[2]; e.Status.Code.String() != "Error" || e.Name != "chat claude-y" {
		t.Errorf("failed span %q status %v", e.Name, e.Status)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
