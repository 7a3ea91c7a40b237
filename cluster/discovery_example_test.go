package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"time"

	"github.com/porticoproxy/portico/cluster"
)

// A StrictDNS cluster serves every address its names resolve to, and
// follows them as DNS changes.
func ExampleType_strictDNS() {
	c, err := cluster.New(cluster.Config{
		Name:            "api",
		Type:            cluster.StrictDNS,
		Endpoints:       []cluster.Endpoint{{Address: "api.internal:8080", Locality: "eu-west-1a"}},
		DNSLookupFamily: cluster.DNSV4Only,
		DNSRefreshRate:  10 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close() // stops re-resolution
}

// An OriginalDst cluster sends each request where its downstream
// connection was going; the listener records that on the context.
func ExampleWithOriginalDestination() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "reached the original destination")
	}))
	defer upstream.Close()
	dst := netip.MustParseAddrPort(strings.TrimPrefix(upstream.URL, "http://"))

	c, err := cluster.New(cluster.Config{Name: "passthrough", Type: cluster.OriginalDst})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := cluster.WithOriginalDestination(context.Background(), dst) // done by the listener
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://app.internal/", nil)
	resp, err := c.Send(&cluster.Request{HTTP: req})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: reached the original destination
}

// Dynamic forward proxy clusters share one DNS cache.
func ExampleNewDNSCache() {
	cache, err := cluster.NewDNSCache(cluster.DNSCacheConfig{MaxHosts: 4096})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cache.Close()
	for _, name := range []string{"egress-http", "egress-https"} {
		cfg := cluster.Config{Name: name, Type: cluster.DynamicForwardProxy, DNSCache: cache}
		if name == "egress-https" {
			cfg.TLS = &cluster.TLSConfig{} // port 443 by default, SNI from the Host
		}
		c, err := cluster.New(cfg)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer c.Close()
	}
}

// Transport middleware runs once per upstream attempt, after the
// endpoint is picked: the place for request signing.
func ExampleConfig_middleware() {
	sign := func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			req.Header.Set("X-Signature", "sig-for-"+req.URL.Host)
			return next.RoundTrip(req)
		})
	}
	c, err := cluster.New(cluster.Config{
		Name:                     "signed",
		Endpoints:                []cluster.Endpoint{{Address: "10.0.0.1:443"}},
		TLS:                      &cluster.TLSConfig{ServerName: "api.example.com"},
		MaxRequestsPerConnection: 1000,
		MaxConnectionDuration:    10 * time.Minute,
		Middleware:               []func(http.RoundTripper) http.RoundTripper{sign},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
