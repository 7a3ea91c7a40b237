package portico

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/route"
)

// killable is an origin that can die abruptly (listener and every
// connection closed at once, no graceful shutdown) and come back on the
// same address.
type killable struct {
	t       *testing.T
	name    string
	addr    string
	handler http.Handler

	mu  sync.Mutex
	srv *http.Server
}

func newKillable(t *testing.T, name string, h http.Handler) *killable {
	k := &killable{t: t, name: name, handler: h}
	k.start("127.0.0.1:0")
	t.Cleanup(k.kill)
	return k
}

func (k *killable) start(addr string) {
	k.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		k.t.Errorf("restart %s on %s: %v", k.name, addr, err)
		return
	}
	srv := &http.Server{Handler: k.handler}
	k.mu.Lock()
	k.addr, k.srv = ln.Addr().String(), srv
	k.mu.Unlock()
	go srv.Serve(ln)
}

func (k *killable) kill() {
	k.mu.Lock()
	srv := k.srv
	k.srv = nil
	k.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (k *killable) restart() { k.start(k.addr) }

// TestChaosZeroErrors is issue 3's chaos test: three endpoints behind a
// round-robin cluster under steady load for 30 s, while one endpoint is
// killed and restarted twice and another answers 503 for 5 s. With the
// quickstart's retry policy and outlier detection on, the clients see no
// error at all.
func TestChaosZeroErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s chaos test; not run with -short")
	}
	const (
		clients  = 8
		duration = 30 * time.Second
	)
	var served [3]atomic.Int64
	var sick atomic.Bool
	var sick503 atomic.Int64
	origin := func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			if i == 1 && sick.Load() {
				sick503.Add(1)
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
			served[i].Add(1)
			w.Header().Set("X-Origin", fmt.Sprint(i))
			w.Write(body) // echo, so the client checks what arrived
		})
	}
	a := newKillable(t, "a", origin(0))
	b := newKillable(t, "b", origin(1))
	c := newKillable(t, "c", origin(2))

	cfg := simpleConfig(a.addr)
	cfg.Routes[0].VirtualHosts[0].Rules[0].Retry = &route.RetryPolicy{
		RetryOn:              []string{route.RetryConnectFailure, route.RetryRefusedStream, route.RetryReset, route.RetryRetriableStatusCodes},
		RetriableStatusCodes: []int{http.StatusServiceUnavailable},
		NumRetries:           2,
	}
	cfg.Clusters[0].Endpoints = []cluster.Endpoint{{Address: a.addr}, {Address: b.addr}, {Address: c.addr}}
	// Envoy's outlier defaults, except that ejections are short, so that
	// the killed endpoint is back in rotation (and killed again) within
	// the test rather than ejected for its whole length.
	cfg.Clusters[0].OutlierDetection = &cluster.OutlierDetection{Interval: time.Second, BaseEjectionTime: 2 * time.Second}
	cfg.Clusters[0].CircuitBreakers.Default.RetryBudget = &cluster.RetryBudget{BudgetPercent: 20, MinRetryConcurrency: 16}
	g, addr := startGateway(t, cfg, Options{})
	url := "http://" + addr + "/chaos"

	stop := make(chan struct{})
	var (
		total, failed atomic.Int64
		firstErrs     sync.Map
		wg            sync.WaitGroup
	)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				payload := fmt.Sprintf("client %d request %d", w, n)
				var resp *http.Response
				var err error
				if n%3 == 0 {
					resp, err = client.Post(url, "text/plain", strings.NewReader(payload))
				} else {
					resp, err = client.Get(url)
					payload = ""
				}
				total.Add(1)
				if err != nil {
					failed.Add(1)
					firstErrs.LoadOrStore(err.Error(), time.Now())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, []byte(payload)) {
					failed.Add(1)
					firstErrs.LoadOrStore(fmt.Sprintf("status %d flags %q body %.60q err %v", resp.StatusCode, resp.Header.Get("X-Envoy-Response-Flags"), body, err), time.Now())
				}
			}
		}()
	}

	start := time.Now()
	at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }
	at(3 * time.Second)
	a.kill()
	at(8 * time.Second)
	aAtRestart := served[0].Load()
	a.restart()
	at(12 * time.Second)
	sick.Store(true)
	at(17 * time.Second)
	sick.Store(false)
	at(20 * time.Second)
	aBetweenKills := served[0].Load()
	a.kill()
	at(24 * time.Second)
	a.restart()
	at(duration)
	close(stop)
	wg.Wait()

	t.Logf("%d requests in %v from %d clients; served by a/b/c: %d/%d/%d; b answered 503 %d times",
		total.Load(), duration, clients, served[0].Load(), served[1].Load(), served[2].Load(), sick503.Load())
	fams := scrape(t, "http://"+g.AdminAddr().String())
	for _, name := range []string{"portico_cluster_upstream_rq_retry", "portico_cluster_upstream_rq_retry_success", "portico_cluster_outlier_detection_ejections_enforced_total"} {
		if f := fams[name]; f != nil && len(f.Metric) > 0 {
			t.Logf("%s = %v", name, f.Metric[0].GetCounter().GetValue())
		} else {
			t.Logf("%s: not exported", name)
		}
	}
	if n := failed.Load(); n != 0 {
		firstErrs.Range(func(k, v any) bool {
			t.Errorf("at +%v: %v", v.(time.Time).Sub(start).Round(time.Millisecond), k)
			return true
		})
		t.Fatalf("%d of %d requests failed; want none", n, total.Load())
	}
	// The faults must really have happened, or zero errors proves nothing.
	if total.Load() < 1000 {
		t.Errorf("only %d requests in %v; the load was not steady", total.Load(), duration)
	}
	if sick503.Load() == 0 {
		t.Error("the sick endpoint never answered 503")
	}
	if aBetweenKills == aAtRestart {
		t.Error("endpoint a served nothing between its restart and its second kill; it never came back into rotation")
	}
	if served[0].Load() == aBetweenKills {
		t.Error("endpoint a served nothing after its second restart")
	}
}
