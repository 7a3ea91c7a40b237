package portico

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
)

// TestUpsertClusters: a batch is all or nothing; it adds and replaces
// clusters like UpsertCluster.
func TestUpsertClusters(t *testing.T) {
	g, _ := startGateway(t, simpleConfig("127.0.0.1:1"), Options{Admin: "-"})
	app := g.Cluster("app")
	err := g.UpsertClusters([]cluster.Config{
		{Name: "new", Endpoints: []cluster.Endpoint{{Address: "127.0.0.1:2"}}},
		{Name: "broken", Endpoints: []cluster.Endpoint{{Address: "no port"}}},
	})
	if err == nil || !strings.Contains(err.Error(), `cluster "broken"`) {
		t.Fatalf("UpsertClusters with an invalid cluster: %v, want an error naming it", err)
	}
	if g.Cluster("new") != nil {
		t.Fatal("a failed batch published a cluster")
	}
	appCfg := app.Config()
	appCfg.Endpoints = []cluster.Endpoint{{Address: "127.0.0.1:3"}}
	err = g.UpsertClusters([]cluster.Config{
		{Name: "new", Endpoints: []cluster.Endpoint{{Address: "127.0.0.1:2"}}},
		appCfg,
		{Name: "new", Endpoints: []cluster.Endpoint{{Address: "127.0.0.1:4"}}, ConnectTimeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if eps := g.Cluster("app").Endpoints(); len(eps) != 1 || eps[0].Address != "127.0.0.1:3" {
		t.Errorf("app endpoints %v, want 127.0.0.1:3", eps)
	}
	if c := g.Cluster("new"); c == nil || c.Config().ConnectTimeout != time.Second {
		t.Error("the last configuration of a name given twice did not win")
	}
}

// TestDiscoveryConfigDump: what a discovery client records shows in
// /config_dump: its version, client status and the rejection until an
// update is accepted; endpoint assignments and secrets in lists of their
// own.
func TestDiscoveryConfigDump(t *testing.T) {
	g, _ := startGateway(t, simpleConfig("127.0.0.1:1"), Options{Admin: "-"})
	g.RecordResourceState(KindCluster, "app", ResourceState{Version: "v3", Status: StatusAcked})
	g.RecordRejection(KindCluster, "app", "v4", nil, errors.New("lb_policy: not supported"))
	g.RecordResourceState(KindEndpoints, "app", ResourceState{Version: "e1", Status: StatusAcked})
	g.RecordResourceState(KindSecret, "cert", ResourceState{Status: StatusDoesNotExist})
	d := g.configDump()
	c := d.Clusters[0]
	if c.VersionInfo != "v3" || c.ClientStatus != "NACKED" || c.ErrorState == nil || c.ErrorState.VersionInfo != "v4" {
		t.Errorf("cluster meta = %+v, want v3 NACKED with the v4 error", c.resourceMeta)
	}
	if len(d.EndpointConfigs) != 1 || d.EndpointConfigs[0].VersionInfo != "e1" {
		t.Errorf("endpoint_configs = %+v", d.EndpointConfigs)
	}
	if len(d.Secrets) != 1 || d.Secrets[0].ClientStatus != "DOES_NOT_EXIST" {
		t.Errorf("secrets = %+v", d.Secrets)
	}
	g.RecordResourceState(KindCluster, "app", ResourceState{Version: "v5", Status: StatusAcked})
	if c := g.configDump().Clusters[0]; c.VersionInfo != "v5" || c.ErrorState != nil {
		t.Errorf("after an accepted update: %+v, want v5 without error_state", c.resourceMeta)
	}
	g.ForgetResource(KindSecret, "cert")
	if s := g.configDump().Secrets; len(s) != 0 {
		t.Errorf("forgotten secret still shown: %+v", s)
	}
}
