package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/porticoproxy/portico/lb"
)

// hostServer answers with the Host it saw.
func hostServer(t *testing.T) (port string) {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host)
	}))
	t.Cleanup(ts.Close)
	_, port, _ = net.SplitHostPort(hostOf(t, ts.URL))
	return port
}

func sendHost(t *testing.T, c *Cluster, host string) (*Request, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r := newReq(t, ctx, http.MethodGet, nil)
	r.HTTP.Host = host
	resp, err := c.Send(r)
	if err != nil {
		return r, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return r, string(b), err
}

func TestDynamicForwardProxy(t *testing.T) {
	port := hostServer(t)
	res := newFakeResolver()
	res.set("app.portico.test", "127.0.0.1")
	res.set("two.portico.test", "127.0.0.1")
	res.set("three.portico.test", "127.0.0.1")
	cache, err := NewDNSCache(DNSCacheConfig{Resolver: res, LookupFamily: DNSV4Only, MaxHosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	// Two clusters share the cache.
	c := newTestCluster(t, Config{Type: DynamicForwardProxy, DNSCache: cache})
	other := newTestCluster(t, Config{Name: "other", Type: DynamicForwardProxy, DNSCache: cache})

	r, body, err := sendHost(t, c, "app.portico.test:"+port)
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	if body != "app.portico.test:"+port || r.Endpoint != "app.portico.test:"+port {
		t.Errorf("upstream saw Host %q, endpoint %q; want the name for both", body, r.Endpoint)
	}
	if _, _, err := sendHost(t, other, "APP.portico.test:"+port); err != nil {
		t.Fatalf("Send() on the second cluster: %v", err)
	}
	if _, _, err := sendHost(t, other, "two.portico.test:"+port); err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	if got := cache.Hosts(); !slices.Equal(got, []string{"app.portico.test", "two.portico.test"}) {
		t.Errorf("cache hosts = %v", got)
	}
	lookups := res.callCount()

	// A third name overflows the cache.
	_, _, err = sendHost(t, c, "three.portico.test:"+port)
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Kind != Overflow || !errors.Is(err, ErrDNSCacheOverflow) || !strings.Contains(err.Error(), "dns cache overflow") {
		t.Errorf("third host: error = %v, want Kind Overflow wrapping ErrDNSCacheOverflow", err)
	}
	// IP authorities bypass the cache.
	if _, body, err := sendHost(t, c, "127.0.0.1:"+port); err != nil || body != "127.0.0.1:"+port {
		t.Errorf("IP authority: %q, %v", body, err)
	}
	if n := res.callCount(); n != lookups {
		t.Errorf("%d lookups after the cache filled, want none", n-lookups)
	}

	// Unknown names fail to connect.
	c2 := newTestCluster(t, Config{Name: "c2", Type: DynamicForwardProxy, DNSCache: mustCache(t, DNSCacheConfig{Resolver: res})})
	if _, _, err := sendHost(t, c2, "nowhere.portico.test:"+port); !errors.As(err, &ue) || ue.Kind != ConnectFailure {
		t.Errorf("unknown name: error = %v, want ConnectFailure", err)
	}
	if s := c2.ConnStats(); s != (ConnStats{}) {
		t.Errorf("ConnStats = %+v after a failed resolution, want no connection counted", s)
	}
}

func mustCache(t *testing.T, cfg DNSCacheConfig) *DNSCache {
	t.Helper()
	c, err := NewDNSCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDynamicForwardProxyTLS(t *testing.T) {
	ts := tlsServerFor(t, "secure.portico.test")
	_, port, _ := net.SplitHostPort(hostOf(t, ts.URL))
	res := newFakeResolver()
	res.set("secure.portico.test", "127.0.0.1")
	for _, proto := range []Protocol{HTTP1, HTTP2} {
		// No DNSCache: the cluster makes its own.
		c := newTestCluster(t, Config{Type: DynamicForwardProxy, Protocol: proto, TLS: &TLSConfig{RootCAs: tlsTestCA.CertPEM}})
		c.disc.dfp.cache.lookup = newDNSLookup(res, DNSAuto, true)
		_, body, err := sendHost(t, c, "secure.portico.test:"+port)
		if err != nil {
			t.Fatalf("%v: Send() error = %v", proto, err)
		}
		if want := "secure.portico.test|secure.portico.test:" + port; body != want {
			t.Errorf("%v: server saw SNI|Host %q, want %q", proto, body, want)
		}
	}
}

func TestDynamicForwardProxyPick(t *testing.T) {
	for _, tt := range []struct {
		tls       bool
		authority string
		want      string
	}{
		{false, "Example.COM", "example.com:80"},
		{true, "example.com", "example.com:443"},
		{true, "example.com.:8443", "example.com:8443"},
		{false, "[2001:db8::1]", "[2001:db8::1]:80"},
		{false, "10.0.0.1:81", "10.0.0.1:81"},
	} {
		cfg := Config{Type: DynamicForwardProxy}
		if tt.tls {
			cfg.TLS = &TLSConfig{}
		}
		c := newTestCluster(t, cfg)
		req, _ := http.NewRequest(http.MethodGet, "http://placeholder/", nil)
		req.Host = tt.authority
		ep, err := pickOf(t, c, req)
		if err != nil || ep.Address != tt.want {
			t.Errorf("tls=%v authority %q: endpoint %+v, %v; want %q", tt.tls, tt.authority, ep, err, tt.want)
			continue
		}
		if again, _ := pickOf(t, c, req); again != ep {
			t.Errorf("second pick returned a different *lb.Endpoint")
		}
		if n := testing.AllocsPerRun(100, func() { pickOf(t, c, req) }); n != 0 {
			t.Errorf("pick of a known authority allocates %v times", n)
		}
	}
	c := newTestCluster(t, Config{Type: DynamicForwardProxy})
	req, _ := http.NewRequest(http.MethodGet, "http://placeholder/", nil)
	for _, bad := range []string{"bad host:80", "a..b", "example.com:http", "example.com:0"} {
		req.Host = bad
		if _, err := pickOf(t, c, req); !errors.Is(err, lb.ErrNoEndpoint) {
			t.Errorf("authority %q: error = %v, want lb.ErrNoEndpoint", bad, err)
		}
	}
}

func TestDNSCacheExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := newFakeResolver()
		res.set("a", "10.0.0.1")
		res.set("b", "10.0.0.2")
		cache, err := NewDNSCache(DNSCacheConfig{Resolver: res, LookupFamily: DNSV4Only})
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close()
		ctx := context.Background()
		for _, h := range []string{"a", "b"} {
			if got, err := cache.Resolve(ctx, h); err != nil || len(got) != 1 {
				t.Fatalf("Resolve(%q) = %v, %v", h, got, err)
			}
		}
		// Both refresh every 60 s (no TTL); "a" stays in use.
		res.set("a", "10.0.0.9")
		for range 6 {
			time.Sleep(time.Minute)
			synctest.Wait()
			cache.touch("a")
		}
		if got := cache.Hosts(); !slices.Equal(got, []string{"a"}) {
			t.Errorf("hosts after 6 min = %v, want b expired after its 5 min host_ttl", got)
		}
		if got, _ := cache.Resolve(ctx, "a"); len(got) != 1 || got[0].String() != "10.0.0.9" {
			t.Errorf("Resolve(a) = %v, want the refreshed address", got)
		}
		// A failed refresh keeps the last addresses.
		res.setErr(errServFail)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got, err := cache.Resolve(ctx, "a"); err != nil || len(got) != 1 {
			t.Errorf("Resolve(a) after failures = %v, %v", got, err)
		}
		// A TTL drives the refresh, floored at 5 s.
		res.setErr(nil)
		res.setTTL(time.Second)
		time.Sleep(time.Minute)
		synctest.Wait()
		n := res.callCount()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := res.callCount() - n; got != 12 {
			t.Errorf("%d refreshes in a minute with a 1 s TTL, want 12 (5 s floor)", got)
		}
	})
}

func TestDFPClusterKeepsCacheWarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := newFakeResolver()
		res.set("busy", "10.0.0.1")
		res.set("idle", "10.0.0.2")
		cache, err := NewDNSCache(DNSCacheConfig{Resolver: res, LookupFamily: DNSV4Only})
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close()
		c, err := New(Config{Name: "dfp", Type: DynamicForwardProxy, DNSCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := func(host string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, "http://placeholder/", nil)
			r.Host = host
			return r
		}
		// Connections resolved both names; later requests reuse them and
		// never ask the cache.
		cache.Resolve(context.Background(), "busy")
		cache.Resolve(context.Background(), "idle")
		pickOf(t, c, req("busy"))
		pickOf(t, c, req("idle"))
		for range 20 {
			time.Sleep(30 * time.Second)
			synctest.Wait()
			pickOf(t, c, req("busy"))
		}
		if got := cache.Hosts(); !slices.Equal(got, []string{"busy"}) {
			t.Errorf("cache hosts = %v, want the busy host kept by the cluster's picks", got)
		}
		if n := c.disc.dfp.hosts.len(); n != 1 {
			t.Errorf("cluster holds %d hosts, want 1", n)
		}
	})
}

func TestDFPOwnCacheClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(Config{Name: "dfp", Type: DynamicForwardProxy})
		if err != nil {
			t.Fatal(err)
		}
		res := newFakeResolver()
		res.set("a", "10.0.0.1")
		c.disc.dfp.cache.lookup = newDNSLookup(res, DNSV4Only, true)
		if _, err := c.disc.dfp.cache.Resolve(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
		// Close closes the cluster's own cache: synctest.Test fails if its
		// refresh goroutine is left running.
		c.Close()
	})
}
