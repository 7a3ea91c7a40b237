package xds

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/porticoproxy/portico/health"
)

func TestHealthChecks(t *testing.T) {
	// Envoy requires these four; every case starts with them.
	const base = `"timeout": "2s", "interval": "10s", "unhealthy_threshold": 3, "healthy_threshold": 2`
	tests := []struct {
		name string
		hc   string
		want health.Config
	}{{
		name: "http defaults: GET /, Host is the cluster name",
		hc:   base + `, "http_health_check": {"path": "/"}`,
		want: health.Config{
			Timeout: 2 * time.Second, Interval: 10 * time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2,
			Checker: &health.HTTP{Path: "/", Host: "svc"},
		},
	}, {
		name: "http with every field",
		hc: base + `, "interval_jitter": "1s", "interval_jitter_percent": 10, "no_traffic_interval": "30s",
			"unhealthy_interval": "20s", "unhealthy_edge_interval": "5s", "healthy_edge_interval": "3s", "reuse_connection": true,
			"http_health_check": {"path": "/healthz", "host": "hc.test", "method": "HEAD", "codec_client_type": "HTTP2",
				"expected_statuses": [{"start": 200, "end": 300}, {"start": 404, "end": 405}]}`,
		want: health.Config{
			Timeout: 2 * time.Second, Interval: 10 * time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2,
			IntervalJitter: time.Second, IntervalJitterPercent: 10, NoTrafficInterval: 30 * time.Second,
			UnhealthyInterval: 20 * time.Second, UnhealthyEdgeInterval: 5 * time.Second, HealthyEdgeInterval: 3 * time.Second,
			Checker: &health.HTTP{Path: "/healthz", Host: "hc.test", Method: "HEAD", UseHTTP2: true,
				ExpectedStatuses: []health.Range{{Start: 200, End: 300}, {Start: 404, End: 405}}},
		},
	}, {
		name: "tcp with hex and binary payloads",
		hc:   base + `, "tcp_health_check": {"send": {"text": "50494e470a"}, "receive": [{"binary": "UE9ORw=="}]}`,
		want: health.Config{
			Timeout: 2 * time.Second, Interval: 10 * time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2,
			Checker: &health.TCP{Send: []byte("PING\n"), Expect: []byte("PONG")},
		},
	}, {
		name: "tcp connect only, thresholds of 0 count as 1",
		hc:   `"timeout": "1s", "interval": "1s", "unhealthy_threshold": 0, "healthy_threshold": 0, "tcp_health_check": {}`,
		want: health.Config{
			Timeout: time.Second, Interval: time.Second, UnhealthyThreshold: 1, HealthyThreshold: 1,
			Checker: &health.TCP{},
		},
	}, {
		name: "grpc, authority defaults to the cluster name",
		hc:   base + `, "grpc_health_check": {"service_name": "pkg.Svc"}`,
		want: health.Config{
			Timeout: 2 * time.Second, Interval: 10 * time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2,
			Checker: &health.GRPC{Service: "pkg.Svc", Authority: "svc"},
		},
	}, {
		name: "grpc with an authority",
		hc:   base + `, "grpc_health_check": {"authority": "grpc.test"}`,
		want: health.Config{
			Timeout: 2 * time.Second, Interval: 10 * time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2,
			Checker: &health.GRPC{Authority: "grpc.test"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := (&Translator{}).Cluster(parseCluster(t, `{"name": "svc", `+staticLA+`, "health_checks": [{`+tt.hc+`}]}`))
			if err != nil {
				t.Fatalf("Cluster() error = %v", err)
			}
			if len(cfg.HealthChecks) != 1 {
				t.Fatalf("len(HealthChecks) = %d, want 1", len(cfg.HealthChecks))
			}
			if diff := cmp.Diff(tt.want, cfg.HealthChecks[0], cmpopts.IgnoreUnexported(health.HTTP{})); diff != "" {
				t.Errorf("health check mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHealthCheckErrors(t *testing.T) {
	const base = `"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1`
	tests := []struct {
		name, hc, want string
	}{
		{"missing interval", `"timeout": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1, "tcp_health_check": {}`,
			"invalid HealthCheck.Interval: value is required"},
		{"bad hex", base + `, "tcp_health_check": {"send": {"text": "zz"}}`,
			"health_checks[0].tcp_health_check.send.text: encoding/hex: invalid byte"},
		{"relative path", base + `, "http_health_check": {"path": "healthz"}`,
			`health_checks[0].http_health_check: health: HTTP.Path "healthz" does not start with /`},
		{"http3", base + `, "http_health_check": {"path": "/", "codec_client_type": "HTTP3"}`,
			"health_checks[0].http_health_check.codec_client_type: HTTP3: Portico checks with HTTP/1.1 or HTTP/2: not supported"},
		{"custom checker", base + `, "custom_health_check": {"name": "x"}`,
			"health_checks[0].custom_health_check: not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := (&Translator{}).Cluster(parseCluster(t, `{"name": "svc", `+staticLA+`, "health_checks": [{`+tt.hc+`}]}`))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Cluster() error = %v, want one containing %q", err, tt.want)
			}
		})
	}

	// Lenient mode drops a check whose checker it does not implement.
	cfg, _, err := (&Translator{Options: TranslateOptions{Lenient: true}}).Cluster(parseCluster(t,
		`{"name": "svc", `+staticLA+`, "health_checks": [{`+base+`, "custom_health_check": {"name": "x"}}, {`+base+`, "tcp_health_check": {}}]}`))
	if err != nil {
		t.Fatalf("lenient Cluster() error = %v", err)
	}
	if len(cfg.HealthChecks) != 1 {
		t.Errorf("lenient Cluster() kept %d health checks, want the tcp one", len(cfg.HealthChecks))
	}
}
