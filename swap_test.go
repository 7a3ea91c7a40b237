package portico

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/route"
)

// TestConfigSwapsUnderLoad holds a steady load for 30 s while the routes and
// clusters are swapped 100 times, through Apply and through the
// per-resource API, and requires zero failed requests.
func TestConfigSwapsUnderLoad(t *testing.T) {
	const (
		loadFor = 30 * time.Second
		swaps   = 100
		clients = 8
	)
	var origins [2]string
	for i := range origins {
		name := fmt.Sprintf("origin-%d", i)
		origins[i] = startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Origin", name)
			w.Write(b)
			if r.URL.Query().Get("stream") != "" {
				// A response that spans several swaps.
				for range 5 {
					w.(http.Flusher).Flush()
					time.Sleep(20 * time.Millisecond)
					io.WriteString(w, ".")
				}
			}
		}))
	}
	// version v sends /v to cluster "blue" or "green"; every version keeps
	// both clusters, but changes their settings so that new cluster objects
	// (with new connection pools) replace the old ones.
	config := func(v int) Config {
		c := simpleConfig(origins[v%2])
		target := []string{"blue", "green"}[v%2]
		c.Routes[0].VirtualHosts[0].Rules = []route.Rule{
			{Name: fmt.Sprintf("v%d", v), Match: route.Match{Prefix: "/"}, Cluster: target},
		}
		c.Listeners[0].FilterChains[0].HTTP.Filters = []filter.Filter{errLogger{t}}
		c.Clusters = []cluster.Config{
			{Name: "blue", Endpoints: []cluster.Endpoint{{Address: origins[0]}}, ConnectTimeout: time.Duration(1+v) * time.Second},
			{Name: "green", Endpoints: []cluster.Endpoint{{Address: origins[1]}}, ConnectTimeout: time.Duration(1+v) * time.Second},
		}
		return c
	}
	g, addr := startGateway(t, config(0), Options{})

	ctx, cancel := context.WithTimeout(context.Background(), loadFor)
	defer cancel()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 4}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf("client %d request %d", c, i)
				url := "http://" + addr + "/x"
				if i%10 == 0 {
					url += "?stream=1"
				}
				resp, err := client.Post(url, "text/plain", bytes.NewBufferString(body))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !bytes.HasPrefix(got, []byte(body)) {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d body %q err %v", resp.StatusCode, got, err))
					continue
				}
				ok.Add(1)
			}
		}()
	}

	interval := loadFor / (swaps + 5)
	for v := 1; v <= swaps; v++ {
		time.Sleep(interval)
		var err error
		switch v % 3 {
		case 0: // whole snapshot
			err = g.Apply(config(v))
		case 1: // clusters first, then the routes that use them
			next := config(v)
			for _, cc := range next.Clusters {
				if err = g.UpsertCluster(cc); err != nil {
					break
				}
			}
			if err == nil {
				err = g.UpsertRoutes(next.Routes[0])
			}
		case 2: // endpoints only, in place, then routes
			next := config(v)
			if err = g.UpdateEndpoints("blue", next.Clusters[0].Endpoints); err == nil {
				err = g.UpsertRoutes(next.Routes[0])
			}
		}
		if err != nil {
			t.Fatalf("swap %d: %v", v, err)
		}
	}
	wg.Wait()
	t.Logf("%d requests succeeded, %d failed, across %d config swaps in %v", ok.Load(), failed.Load(), swaps, loadFor)
	if failed.Load() != 0 {
		t.Errorf("got %d failed requests, want 0; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() < 1000 {
		t.Errorf("only %d requests succeeded: the load was not steady", ok.Load())
	}
}

// TestInvalidUpdateKeepsServing checks that a rejected update changes
// nothing and names what is wrong.
func TestInvalidUpdateKeepsServing(t *testing.T) {
	origin := startOrigin(t, hello("origin"))
	g, addr := startGateway(t, simpleConfig(origin), Options{})
	bad := simpleConfig(origin)
	bad.Routes[0].VirtualHosts[0].Rules[0].Match = route.Match{Regex: "(["}
	err := g.Apply(bad)
	if err == nil {
		t.Fatal("Apply accepted an invalid regex")
	}
	t.Logf("rejected as: %v", err)
	if err := g.UpsertCluster(cluster.Config{Name: "x", Endpoints: []cluster.Endpoint{{Address: "no-port"}}}); err == nil {
		t.Error("UpsertCluster accepted an endpoint without a port")
	}
	// A per-route filter configuration the filter cannot take.
	bad = simpleConfig(origin)
	bad.Routes[0].VirtualHosts[0].Rules[0].FilterConfig = map[string]any{"errlog": "verbose"}
	bad.Listeners[0].FilterChains[0].HTTP.Filters = []filter.Filter{errLogger{t}}
	if err := g.Apply(bad); err == nil {
		t.Error("Apply accepted a per-route config for a filter that takes none")
	} else {
		t.Logf("rejected as: %v", err)
	}
	// A new listener on an address in use, next to a cluster change that
	// must not be applied either.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad = simpleConfig(origin)
	bad.Clusters[0].Endpoints = []cluster.Endpoint{{Address: "127.0.0.1:1"}}
	bad.Listeners = append(bad.Listeners, bad.Listeners[0])
	bad.Listeners[1].Name = "second"
	bad.Listeners[1].Address = busy.Addr().String()
	if err := g.Apply(bad); err == nil {
		t.Error("Apply accepted a listener on an address in use")
	} else {
		t.Logf("rejected as: %v", err)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello from origin" {
		t.Errorf("got %q after a rejected update, want the old config serving", b)
	}
}

// errLogger logs exchanges that failed, so a failed run says why.
type errLogger struct{ t *testing.T }

func (e errLogger) Name() string { return "errlog" }

func (e errLogger) OnDone(ctx context.Context, x *filter.Exchange) {
	if x.Err != nil || x.Flags != 0 {
		e.t.Logf("exchange %s: status %d flags %s err %v endpoint %s", x.In.URL, x.Status, x.Flags, x.Err, x.Endpoint)
	}
}
