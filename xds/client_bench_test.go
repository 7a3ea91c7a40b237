package xds

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/porticoproxy/portico"
)

// The benchmarks drive the client's update path directly, as Run does
// on a response: decoding, translation, and application to a serving
// gateway through its per-resource API.

// applier is a client fed responses by hand instead of a stream.
type applier struct {
	tb    testing.TB
	c     *Client
	nonce int
}

func newApplier(tb testing.TB, gw *portico.Gateway) *applier {
	c, err := NewClient(gw, ClientConfig{Target: "unused", InitialFetchTimeout: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	return &applier{tb: tb, c: c}
}

// apply handles resp and fails on a NACK.
func (a *applier) apply(resp *discoveryv3.DiscoveryResponse) {
	a.nonce++
	resp.Nonce = fmt.Sprint(a.nonce)
	a.c.handleSotW(resp, -1, time.Now())
	t, _ := rtypeOf(resp.GetTypeUrl())
	if err := a.c.types[t].nack; err != nil {
		a.tb.Fatalf("%s version %s NACKed: %v", resp.GetTypeUrl(), resp.GetVersionInfo(), err)
	}
}

// endpoints returns n distinct loopback addresses, shifted by base.
func endpoints(n, base int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.%d.%d.%d:%d", 1+(i>>16)&0xff, (i>>8)&0xff, i&0xff, 1024+base)
	}
	return out
}

// staticClusters returns n STATIC clusters with one endpoint each; the
// connect timeout varies with gen so that every cluster changes.
func staticClusters(tb testing.TB, n, gen int, addr string) []proto.Message {
	out := make([]proto.Message, n)
	for i := range out {
		c := &clusterv3.Cluster{
			Name:                 fmt.Sprintf("c%04d", i),
			ConnectTimeout:       durationpb.New(time.Duration(1+gen%2) * time.Second),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment:       cla(fmt.Sprintf("c%04d", i), addr),
		}
		out[i] = c
	}
	return out
}

// BenchmarkApplyEDS10k applies an EDS update of 10 000 endpoints to a
// live cluster (alternating between two endpoint sets).
func BenchmarkApplyEDS10k(b *testing.B) {
	gw := newTestGateway(b)
	a := newApplier(b, gw)
	a.apply(response(b, urlCluster, "1", "", edsCluster("app")))
	var resps [2]*discoveryv3.DiscoveryResponse
	for i := range resps {
		resps[i] = response(b, urlEndpoints, fmt.Sprint(i), "", cla("app", endpoints(10000, i)...))
	}
	a.apply(resps[1])
	if n := len(gw.Cluster("app").Endpoints()); n != 10000 {
		b.Fatalf("cluster has %d endpoints, want 10000", n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		a.apply(resps[i%2])
	}
}

// BenchmarkApplyCDS1k applies a CDS update in which all of 1 000
// clusters change.
func BenchmarkApplyCDS1k(b *testing.B) {
	gw := newTestGateway(b)
	a := newApplier(b, gw)
	var resps [2]*discoveryv3.DiscoveryResponse
	for i := range resps {
		resps[i] = response(b, urlCluster, fmt.Sprint(i), "", staticClusters(b, 1000, i, "127.0.0.1:1")...)
	}
	a.apply(resps[1])
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		a.apply(resps[i%2])
	}
	b.StopTimer()
	if gw.Cluster("c0999") == nil {
		b.Fatal("clusters not applied")
	}
}

// TestApplyDoesNotBlockRequests: while large EDS and CDS updates apply,
// requests through the gateway keep completing — some start and finish
// inside a single update — and none fails.
func TestApplyDoesNotBlockRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("large updates")
	}
	gw := newTestGateway(t)
	a := newApplier(t, gw)
	addr := origin(t, "ok")
	a.apply(response(t, urlCluster, "1", "", edsCluster("app")))
	a.apply(response(t, urlEndpoints, "1", "", cla("app", addr)))
	a.apply(response(t, urlListener, "1", "", httpListener(t, "ingress", 0, "local")))
	a.apply(response(t, urlRoute, "1", "", routes("local", "/", "app")))
	wantBody(t, gw, "ingress", "/", "ok")

	type span struct{ start, end time.Time }
	var (
		mu       sync.Mutex
		requests []span
		failed   atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				code, _, err := get(gw, "ingress", "/")
				if err != nil || code != 200 {
					failed.Add(1)
					continue
				}
				mu.Lock()
				requests = append(requests, span{start, time.Now()})
				mu.Unlock()
			}
		}()
	}

	// A 10 000-endpoint EDS update of a second cluster, then 1 000
	// clusters changing, twice.
	var updates []span
	var big [2]*discoveryv3.DiscoveryResponse
	for i := range big {
		big[i] = response(t, urlCluster, fmt.Sprint("big", i), "", append(staticClusters(t, 1000, i, "127.0.0.1:1"),
			edsCluster("app"), edsCluster("wide"))...)
	}
	for i := range 4 {
		start := time.Now()
		if i%2 == 0 {
			a.apply(big[i/2])
		} else {
			a.apply(response(t, urlEndpoints, fmt.Sprint("eds", i), "", cla("app", addr), cla("wide", endpoints(10000, i)...)))
		}
		updates = append(updates, span{start, time.Now()})
	}
	close(stop)
	wg.Wait()

	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed during the updates", n)
	}
	for _, u := range updates {
		inside := 0
		for _, r := range requests {
			if r.start.After(u.start) && r.end.Before(u.end) {
				inside++
			}
		}
		t.Logf("update of %v: %d requests started and finished during it", u.end.Sub(u.start), inside)
		if inside == 0 && u.end.Sub(u.start) > 200*time.Millisecond {
			t.Errorf("no request completed during an update of %v: requests are blocked", u.end.Sub(u.start))
		}
	}
	if n := len(gw.Cluster("wide").Endpoints()); n != 10000 {
		t.Errorf("cluster wide has %d endpoints, want 10000", n)
	}
}
