package xds

import (
	"encoding/hex"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/health"
)

// healthChecks translates health_checks into health.Configs.
//
// Envoy requires timeout, interval and both thresholds; its
// no_traffic_interval default (60 s) is health's. Envoy's HTTP check sends
// the cluster's name as Host when host is empty, and its gRPC check the
// cluster's name as :authority; the translation sets both explicitly.
// Portico's checkers speak plain TCP, so HTTP and gRPC checks, and TCP
// checks with payloads, are errors on a cluster with TLS.
func (x *clusterTx) healthChecks(cfg *cluster.Config) error {
	for i, hc := range x.c.GetHealthChecks() {
		path := fmt.Sprintf("health_checks[%d]", i)
		h, ok, err := x.healthCheck(hc, path, cfg)
		if err != nil {
			return err
		}
		if ok {
			cfg.HealthChecks = append(cfg.HealthChecks, h)
		}
	}
	return nil
}

// healthCheck translates one check; ok is false for a check dropped in
// lenient mode (an unsupported checker).
func (x *clusterTx) healthCheck(hc *corev3.HealthCheck, path string, cfg *cluster.Config) (h health.Config, ok bool, err error) {
	for _, d := range []struct {
		dst  *time.Duration
		src  *durationpb.Duration
		name string
	}{
		{&h.Timeout, hc.GetTimeout(), "timeout"},
		{&h.Interval, hc.GetInterval(), "interval"},
		{&h.IntervalJitter, hc.GetIntervalJitter(), "interval_jitter"},
		{&h.NoTrafficInterval, hc.GetNoTrafficInterval(), "no_traffic_interval"},
		{&h.UnhealthyInterval, hc.GetUnhealthyInterval(), "unhealthy_interval"},
		{&h.UnhealthyEdgeInterval, hc.GetUnhealthyEdgeInterval(), "unhealthy_edge_interval"},
		{&h.HealthyEdgeInterval, hc.GetHealthyEdgeInterval(), "healthy_edge_interval"},
	} {
		if *d.dst, err = duration(d.src, path+"."+d.name); err != nil {
			return h, false, err
		}
	}
	h.IntervalJitterPercent = hc.GetIntervalJitterPercent()
	// Envoy counts a threshold of 0 like 1: the first result decides.
	h.UnhealthyThreshold = max(1, int(hc.GetUnhealthyThreshold().GetValue()))
	h.HealthyThreshold = max(1, int(hc.GetHealthyThreshold().GetValue()))

	tlsErr := func(kind string) error {
		return fmt.Errorf("%s.%s: checks over the cluster's TLS transport socket: %w", path, kind, ErrUnsupported)
	}
	reuse := hc.GetReuseConnection()
	switch c := hc.GetHealthChecker().(type) {
	case *corev3.HealthCheck_HttpHealthCheck_:
		if cfg.TLS != nil {
			return h, false, tlsErr("http_health_check")
		}
		if reuse != nil && !reuse.GetValue() {
			x.report(path+".reuse_connection", "false: Portico's HTTP checks keep their connection")
		}
		hh, err := x.httpCheck(c.HttpHealthCheck, path+".http_health_check")
		if err != nil {
			return h, false, err
		}
		h.Checker = hh
	case *corev3.HealthCheck_TcpHealthCheck_:
		tc, err := tcpCheck(c.TcpHealthCheck, path+".tcp_health_check")
		if err != nil {
			return h, false, err
		}
		if cfg.TLS != nil && (len(tc.Send) > 0 || len(tc.Expect) > 0) {
			return h, false, tlsErr("tcp_health_check")
		}
		// Envoy's reuse_connection keeps a TCP check's connection; each
		// of Portico's checks connects anew, which tests the same.
		h.Checker = tc
	case *corev3.HealthCheck_GrpcHealthCheck_:
		if cfg.TLS != nil {
			return h, false, tlsErr("grpc_health_check")
		}
		g := c.GrpcHealthCheck
		h.Checker = &health.GRPC{Service: g.GetServiceName(), Authority: x.orName(g.GetAuthority())}
	default:
		// custom_health_check, reported by the allow-list.
		return h, false, nil
	}
	return h, true, nil
}

func (x *clusterTx) httpCheck(c *corev3.HealthCheck_HttpHealthCheck, path string) (*health.HTTP, error) {
	h := &health.HTTP{
		Path: c.GetPath(),
		Host: x.orName(c.GetHost()),
	}
	switch m := c.GetMethod(); m {
	case corev3.RequestMethod_METHOD_UNSPECIFIED:
		// GET, Envoy's default, is health's.
	case corev3.RequestMethod_CONNECT:
		return nil, fmt.Errorf("%s.method: CONNECT is not allowed", path)
	default:
		h.Method = m.String()
	}
	switch cc := c.GetCodecClientType(); cc {
	case typev3.CodecClientType_HTTP1:
	case typev3.CodecClientType_HTTP2:
		h.UseHTTP2 = true
	default:
		x.report(path+".codec_client_type", cc.String()+": Portico checks with HTTP/1.1 or HTTP/2")
	}
	for _, r := range c.GetExpectedStatuses() {
		// Both are [start, end), 200 only by default.
		h.ExpectedStatuses = append(h.ExpectedStatuses, health.Range{Start: int(r.GetStart()), End: int(r.GetEnd())})
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

func tcpCheck(c *corev3.HealthCheck_TcpHealthCheck, path string) (*health.TCP, error) {
	t := &health.TCP{}
	var err error
	if s := c.GetSend(); s != nil {
		if t.Send, err = payload(s, path+".send"); err != nil {
			return nil, err
		}
	}
	switch r := c.GetReceive(); len(r) {
	case 0:
	case 1:
		if t.Expect, err = payload(r[0], path+".receive[0]"); err != nil {
			return nil, err
		}
	default:
		// Envoy finds the blocks in order, not necessarily adjacent;
		// health.TCP looks for one.
		return nil, fmt.Errorf("%s.receive: %d blocks; only one is supported: %w", path, len(r), ErrUnsupported)
	}
	return t, nil
}

// payload decodes a health check Payload: text is hex, as in Envoy.
func payload(p *corev3.HealthCheck_Payload, path string) ([]byte, error) {
	switch v := p.GetPayload().(type) {
	case *corev3.HealthCheck_Payload_Text:
		b, err := hex.DecodeString(v.Text)
		if err != nil {
			return nil, fmt.Errorf("%s.text: %w", path, err)
		}
		return b, nil
	case *corev3.HealthCheck_Payload_Binary:
		return v.Binary, nil
	}
	return nil, nil
}

// orName returns s, or the cluster's name when s is empty.
func (x *clusterTx) orName(s string) string {
	if s == "" {
		return x.c.GetName()
	}
	return s
}
