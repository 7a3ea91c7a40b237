package cluster

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/porticoproxy/portico/lb"
)

func pickOf(t *testing.T, c *Cluster, req *http.Request) (*lb.Endpoint, error) {
	t.Helper()
	res, err := c.balancer.Picker().Pick(lb.PickInfo{Request: req})
	return res.Endpoint, err
}

func TestOriginalDstSend(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	c := newTestCluster(t, Config{Type: OriginalDst, OriginalDst: OriginalDstConfig{UseHTTPHeader: true}})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	// The listener's original destination.
	r := newReq(t, WithOriginalDestination(ctx, netip.MustParseAddrPort(hostOf(t, a.URL))), http.MethodGet, nil)
	resp, err := c.Send(r)
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	resp.Body.Close()
	if r.Endpoint != hostOf(t, a.URL) {
		t.Errorf("endpoint = %q, want the original destination %q", r.Endpoint, hostOf(t, a.URL))
	}

	// The header overrides it.
	r = newReq(t, WithOriginalDestination(ctx, netip.MustParseAddrPort(hostOf(t, a.URL))), http.MethodGet, nil)
	r.HTTP.Header.Set("x-envoy-original-dst-host", hostOf(t, b.URL))
	resp, err = c.Send(r)
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	resp.Body.Close()
	if r.Endpoint != hostOf(t, b.URL) {
		t.Errorf("endpoint = %q, want the header's %q", r.Endpoint, hostOf(t, b.URL))
	}

	// No destination, or a header that is not IP:port.
	if ue := sendErr(t, c, ctx); ue.Kind != NoHealthyUpstream || !errors.Is(ue, lb.ErrNoEndpoint) {
		t.Errorf("no destination: %v, want NoHealthyUpstream wrapping lb.ErrNoEndpoint", ue)
	}
	r = newReq(t, ctx, http.MethodGet, nil)
	r.HTTP.Header.Set("x-envoy-original-dst-host", "example.com:80")
	if _, err := c.Send(r); err == nil || err.(*UpstreamError).Kind != NoHealthyUpstream {
		t.Errorf("bad header: error = %v, want NoHealthyUpstream", err)
	}
}

func TestOriginalDstPick(t *testing.T) {
	c := newTestCluster(t, Config{Type: OriginalDst, OriginalDst: OriginalDstConfig{UseHTTPHeader: true, HTTPHeaderName: "x-dst"}})
	if c.Config().Balancer != nil {
		t.Errorf("Config().Balancer set for an OriginalDst cluster")
	}
	dst := netip.MustParseAddrPort("10.1.2.3:8080")
	req, _ := http.NewRequestWithContext(WithOriginalDestination(context.Background(), dst), http.MethodGet, "http://x/", nil)
	ep1, err := pickOf(t, c, req)
	if err != nil || ep1.Address != "10.1.2.3:8080" || !ep1.Healthy {
		t.Fatalf("pick = %+v, %v", ep1, err)
	}
	ep2, _ := pickOf(t, c, req)
	if ep1 != ep2 {
		t.Errorf("second pick returned a different *lb.Endpoint")
	}
	hreq, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	hreq.Header.Set("X-Dst", "[2001:db8::1]:443")
	if ep, err := pickOf(t, c, hreq); err != nil || ep.Address != "[2001:db8::1]:443" {
		t.Errorf("header pick = %+v, %v", ep, err)
	}
	hreq.Header.Set("X-Dst", "10.0.0.1") // no port
	if _, err := pickOf(t, c, hreq); !errors.Is(err, lb.ErrNoEndpoint) {
		t.Errorf("header without port: error = %v", err)
	}

	// Picks of known hosts allocate nothing.
	if n := testing.AllocsPerRun(100, func() { pickOf(t, c, req) }); n != 0 {
		t.Errorf("pick by context allocates %v times", n)
	}
	hreq.Header.Set("X-Dst", "10.9.9.9:80")
	pickOf(t, c, hreq)
	if n := testing.AllocsPerRun(100, func() { pickOf(t, c, hreq) }); n != 0 {
		t.Errorf("pick by header allocates %v times", n)
	}
}

func TestOriginalDstCleanup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(Config{Name: "od", Type: OriginalDst})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		busy := netip.MustParseAddrPort("10.0.0.1:80")
		idle := netip.MustParseAddrPort("10.0.0.2:80")
		reqTo := func(dst netip.AddrPort) *http.Request {
			r, _ := http.NewRequestWithContext(WithOriginalDestination(context.Background(), dst), http.MethodGet, "http://x/", nil)
			return r
		}
		first, _ := pickOf(t, c, reqTo(busy))
		pickOf(t, c, reqTo(idle))
		if n := c.disc.orig.hosts.len(); n != 2 {
			t.Fatalf("%d hosts, want 2", n)
		}
		// Envoy's 5 s cleanup interval: a host unused between two
		// cleanups goes; one in use stays, with the same endpoint.
		for range 3 {
			time.Sleep(DefaultCleanupInterval)
			synctest.Wait()
			pickOf(t, c, reqTo(busy))
		}
		if n := c.disc.orig.hosts.len(); n != 1 {
			t.Errorf("%d hosts after cleanups, want only the busy one", n)
		}
		if ep, _ := pickOf(t, c, reqTo(busy)); ep != first {
			t.Errorf("busy host was recreated")
		}
		time.Sleep(2 * DefaultCleanupInterval)
		synctest.Wait()
		if n := c.disc.orig.hosts.len(); n != 0 {
			t.Errorf("%d hosts after the busy one went idle, want 0", n)
		}
	})
}
