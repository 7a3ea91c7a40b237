package xds

import (
	"errors"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestIntegrationCDSResendKeepsCluster: a CDS update that re-sends a
// cluster unchanged, next to a new one, leaves the live cluster as it is:
// the same cluster object, whose pooled upstream connection serves the
// next request.
func TestIntegrationCDSResendKeepsCluster(t *testing.T) {
	cp := newControlPlane(t, true)
	v1 := origin(t, "v1")
	cp.set("1", basic(t, v1))
	gw := newTestGateway(t)
	runClient(t, gw, cp, ClientConfig{})
	wantBody(t, gw, "ingress", "/", "v1")
	first := gw.Cluster("app")
	conns := first.ConnStats().Total

	cp.set("2", basic(t, v1).
		add(resourcev3.ClusterType, edsCluster("other")).
		add(resourcev3.EndpointType, cla("other", v1)))
	eventually(t, 5*time.Second, func() error {
		if gw.Cluster("other") == nil {
			return errors.New("cluster other not added yet")
		}
		return nil
	})
	if gw.Cluster("app") != first {
		t.Fatal("re-sending cluster app unchanged replaced it")
	}
	wantBody(t, gw, "ingress", "/", "v1")
	if got := first.ConnStats().Total; got != conns {
		t.Errorf("cluster app opened %d connections in all, want %d: its pool was dropped", got, conns)
	}
}
