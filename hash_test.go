package portico

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/lb"
	"github.com/porticoproxy/portico/route"
)

// hashedGateway runs a ring-hash cluster of four origins behind a route
// with the given hash policies; each origin answers its own name.
func hashedGateway(t *testing.T, policies ...route.HashPolicy) string {
	t.Helper()
	var eps []cluster.Endpoint
	for i := range 4 {
		eps = append(eps, cluster.Endpoint{Address: startOrigin(t, hello(fmt.Sprint("o", i)))})
	}
	cfg := simpleConfig(eps[0].Address)
	cfg.Routes[0].VirtualHosts[0].Rules[0].HashPolicy = policies
	cfg.Clusters[0].Endpoints = eps
	cfg.Clusters[0].Balancer = func() lb.Balancer { return lb.NewRingHash(lb.RingHashConfig{}) }
	_, addr := startGateway(t, cfg, Options{})
	return "http://" + addr
}

func getWith(t *testing.T, c *http.Client, url string, hdr ...string) (string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b), resp
}

func TestHashPolicyHeaderIsSticky(t *testing.T) {
	base := hashedGateway(t, route.HashPolicy{Header: "x-user"})
	c := &http.Client{}
	owners := map[string]bool{}
	for u := range 40 {
		user := fmt.Sprint("user-", u)
		first, _ := getWith(t, c, base+"/", "x-user", user)
		owners[first] = true
		for range 3 {
			if got, _ := getWith(t, c, base+"/", "x-user", user); got != first {
				t.Fatalf("%s: answered by %q then %q; a header hash must stick", user, first, got)
			}
		}
	}
	if len(owners) < 3 {
		t.Errorf("40 users landed on %d of 4 endpoints; the hash does not spread", len(owners))
	}
}

func TestHashPolicyMintsCookie(t *testing.T) {
	base := hashedGateway(t, route.HashPolicy{Cookie: &route.CookieHash{Name: "sticky", TTL: time.Hour, Path: "/"}})
	for range 5 {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		first, resp := getWith(t, c, base+"/")
		if len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != "sticky" {
			t.Fatalf("first response set cookies %v, want one minted \"sticky\"", resp.Cookies())
		}
		for range 4 {
			got, resp := getWith(t, c, base+"/")
			if got != first {
				t.Fatalf("with the minted cookie: answered by %q then %q", first, got)
			}
			if len(resp.Cookies()) != 0 {
				t.Fatalf("cookie minted again although the request carried it: %v", resp.Cookies())
			}
		}
	}
}

func TestHighPriorityRouteUsesHighThresholds(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	slow := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	}))
	cfg := simpleConfig(slow, route.Rule{Name: "high", Match: route.Match{Prefix: "/high"}, Cluster: "app", HighPriority: true})
	cfg.Clusters[0].CircuitBreakers.Default.MaxRequests = 1
	cfg.Clusters[0].CircuitBreakers.Default.MaxPendingRequests = 1
	_, addr := startGateway(t, cfg, Options{})
	base := "http://" + addr

	// Fill the default priority's single request slot.
	held := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "/default")
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	<-arrived
	resp, err := http.Get(base + "/default")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second default-priority request: %d, want 503 (overflow)", resp.StatusCode)
	}
	// The high-priority route has its own (default 1024) thresholds.
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/high")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("high-priority request: %d, want 200 while the default priority is full", code)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}
