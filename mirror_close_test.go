package portico

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/route"
)

// Shadows and the gateway's lifetime: Close cancels and joins the shadows
// in flight and starts no new one; Shutdown lets them finish within its
// deadline first.

// shadowGoroutines counts the goroutines running a shadow request, once
// those that have finished have had a moment to exit.
func shadowGoroutines() int {
	// A shadow's last act is to tell the group it is done, which can let
	// Close return while the goroutine is still unwinding that deferred
	// call: give such goroutines a moment to exit.
	deadline := time.Now().Add(time.Second)
	for {
		n := countShadowGoroutines()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(time.Millisecond)
	}
}

func countShadowGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), ".(*router).shadow(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func shadowGauge(t *testing.T, g interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// blockingShadow is a shadow origin that reads the request body, reports
// the request on started and then holds it until release is closed
// (answering 204) or the gateway gives up on it; outcome receives
// "answered" or "cancelled".
type blockingShadow struct {
	addr    string
	started chan struct{}
	outcome chan string
	release chan struct{}
}

func startBlockingShadow(t *testing.T) *blockingShadow {
	s := &blockingShadow{started: make(chan struct{}, 16), outcome: make(chan string, 16), release: make(chan struct{})}
	s.addr = startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server watches the connection
		s.started <- struct{}{}
		select {
		case <-s.release:
			w.WriteHeader(http.StatusNoContent)
			s.outcome <- "answered"
		case <-r.Context().Done():
			s.outcome <- "cancelled"
		}
	}))
	return s
}

func shadowWait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// slowUnwind is a cluster middleware for the shadow cluster that takes
// its time to return from a cancelled attempt, as a shadow busy in a
// filter or a slow transport would, and counts the attempts that
// returned.
type slowUnwind struct{ returned atomic.Int32 }

func (s *slowUnwind) wrap(next http.RoundTripper) http.RoundTripper {
	return slowUnwindRT{s, next}
}

type slowUnwindRT struct {
	s    *slowUnwind
	next http.RoundTripper
}

func (rt slowUnwindRT) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(r)
	if r.Context().Err() != nil {
		time.Sleep(100 * time.Millisecond)
	}
	rt.s.returned.Add(1)
	return resp, err
}

// shadowGateway is mirrorGateway with cluster middleware on the shadow
// cluster.
func shadowGateway(t *testing.T, main, shadow string, mw func(http.RoundTripper) http.RoundTripper) (*Gateway, string) {
	t.Helper()
	g, addr, _ := retryGateway(t, []string{main}, route.Rule{Mirrors: []route.MirrorPolicy{{Cluster: "shadow"}}}, func(c *Config) {
		c.Clusters = append(c.Clusters, cluster.Config{
			Name:       "shadow",
			Endpoints:  []cluster.Endpoint{{Address: shadow}},
			Middleware: []func(http.RoundTripper) http.RoundTripper{mw},
		})
	})
	return g, addr
}

// TestCloseCancelsShadows: Close returns promptly with shadows blocked
// at their origin (one without a body on the synchronous HTTP/1.1 path,
// one with a streamed body on the Transport), cancelling them and
// waiting until they have returned, even slowly: when Close returns no
// shadow goroutine is left, and the origin sees each request cancelled.
func TestCloseCancelsShadows(t *testing.T) {
	shadow := startBlockingShadow(t)
	unwind := &slowUnwind{}
	g, addr := shadowGateway(t, echoOrigin(t), shadow.addr, unwind.wrap)
	get(t, addr, "/")
	req, _ := http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader(bytes.Repeat([]byte("b"), 64<<10)))
	if got := do(t, req); got.status != 200 {
		t.Fatalf("main POST: got %d, want 200", got.status)
	}
	for range 2 {
		shadowWait(t, shadow.started, "the shadows to reach their origin")
	}

	start := time.Now()
	g.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v with two shadows blocked", took)
	}
	if n := unwind.returned.Load(); n != 2 {
		t.Errorf("%d of 2 shadow attempts had returned when Close returned", n)
	}
	if n := shadowGoroutines(); n != 0 {
		t.Errorf("got %d shadow goroutines after Close returned, want 0", n)
	}
	if got := g.shadows.n.Load(); got != shadowsClosed {
		t.Errorf("got shadow group state %#x after Close, want closed and empty", got)
	}
	if got := shadowGauge(t, retryStatsOf(t, g, "shadow").rqActive); got != 0 {
		t.Errorf("got shadow upstream_rq_active %v after Close, want 0", got)
	}
	for range 2 {
		if got := shadowWait(t, shadow.outcome, "the origin to see the shadow end"); got != "cancelled" {
			t.Errorf("origin: shadow %s, want cancelled", got)
		}
	}
}

// shadowHook is a cluster middleware counting the shadow attempts in
// flight and those that begin once closed is set.
type shadowHook struct {
	closed          atomic.Bool
	running, late   atomic.Int32
	begun, finished atomic.Int32
}

type shadowHookRT struct {
	h    *shadowHook
	next http.RoundTripper
}

func (rt shadowHookRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if rt.h.closed.Load() {
		rt.h.late.Add(1)
	}
	rt.h.begun.Add(1)
	rt.h.running.Add(1)
	defer func() {
		if r.Context().Err() != nil {
			time.Sleep(20 * time.Millisecond) // a cancelled shadow returns slowly
		}
		rt.h.running.Add(-1)
		rt.h.finished.Add(1)
	}()
	return rt.next.RoundTrip(r)
}

// TestCloseRacesShadows closes the gateway under a steady stream of
// mirrored requests: shadows that started just before Close either
// completed or were cancelled when Close returns, and none starts after.
func TestCloseRacesShadows(t *testing.T) {
	var answered atomic.Int32
	shadowOrigin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		answered.Add(1)
	}))
	main := echoOrigin(t)
	for round := range 5 {
		hook := &shadowHook{}
		g, addr := shadowGateway(t, main, shadowOrigin, func(next http.RoundTripper) http.RoundTripper { return shadowHookRT{hook, next} })
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				tr := &http.Transport{}
				defer tr.CloseIdleConnections()
				client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var body io.Reader
					method := "GET"
					if (w+i)%2 == 1 {
						method, body = "POST", strings.NewReader("shadow me")
					}
					req, _ := http.NewRequest(method, "http://"+addr+"/", body)
					resp, err := client.Do(req)
					if err != nil {
						continue // the gateway is closing
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		for deadline := time.Now().Add(5 * time.Second); hook.finished.Load() < 50; {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d shadows finished in 5s", round, hook.finished.Load())
			}
			time.Sleep(time.Millisecond)
		}

		g.Close()
		hook.closed.Store(true)
		running := hook.running.Load()
		goroutines := shadowGoroutines()
		close(stop)
		wg.Wait()
		if running != 0 || goroutines != 0 {
			t.Errorf("round %d: %d shadow attempts and %d shadow goroutines running after Close returned, want none", round, running, goroutines)
		}
		if n := hook.late.Load(); n != 0 {
			t.Errorf("round %d: %d shadows began after Close returned", round, n)
		}
		if b, f := hook.begun.Load(), hook.finished.Load(); b != f {
			t.Errorf("round %d: %d shadow attempts began and %d finished", round, b, f)
		}
	}
	if answered.Load() == 0 {
		t.Error("no shadow reached its origin")
	}
}

// holdFilter holds each request in its request phase until release is
// closed, and reports the exchange's end on done.
type holdFilter struct {
	entered, done chan struct{}
	release       chan struct{}
}

func (*holdFilter) Name() string { return "hold" }

func (f *holdFilter) OnRequest(ctx context.Context, x *filter.Exchange) error {
	f.entered <- struct{}{}
	<-f.release
	return nil
}

func (f *holdFilter) OnDone(ctx context.Context, x *filter.Exchange) { f.done <- struct{}{} }

// TestNoShadowAfterClose: a request that reaches the router once Close
// has begun starts no shadow, even though its exchange goes on.
func TestNoShadowAfterClose(t *testing.T) {
	var shadowHits atomic.Int32
	shadowOrigin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { shadowHits.Add(1) }))
	hook := &shadowHook{}
	hold := &holdFilter{entered: make(chan struct{}, 1), done: make(chan struct{}, 1), release: make(chan struct{})}
	g, addr, _ := retryGateway(t, []string{echoOrigin(t)}, route.Rule{Mirrors: []route.MirrorPolicy{{Cluster: "shadow"}}}, func(c *Config) {
		c.Clusters = append(c.Clusters, cluster.Config{
			Name:       "shadow",
			Endpoints:  []cluster.Endpoint{{Address: shadowOrigin}},
			Middleware: []func(http.RoundTripper) http.RoundTripper{func(next http.RoundTripper) http.RoundTripper { return shadowHookRT{hook, next} }},
		})
		c.Listeners[0].FilterChains[0].HTTP.Filters = []filter.Filter{hold}
	})
	go func() {
		if resp, err := http.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	shadowWait(t, hold.entered, "the request to reach the filter")
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		g.Close()
	}()
	for deadline := time.Now().Add(5 * time.Second); g.shadows.n.Load()&shadowsClosed == 0; {
		if time.Now().After(deadline) {
			t.Fatal("Close never began")
		}
		time.Sleep(time.Millisecond)
	}
	close(hold.release)
	shadowWait(t, hold.done, "the exchange to end")
	shadowWait(t, closed, "Close to return")
	if n := counterValue(retryStatsOf(t, g, "shadow").rqTotal); n != 0 {
		t.Errorf("%v shadows started after Close began, want none", n)
	}
	if n := hook.begun.Load(); n != 0 {
		t.Errorf("%d shadow attempts began after Close began, want none", n)
	}
	if n := shadowGoroutines(); n != 0 {
		t.Errorf("got %d shadow goroutines, want 0", n)
	}
	if n := shadowHits.Load(); n != 0 {
		t.Errorf("the shadow origin got %d requests, want none", n)
	}
}

// TestShutdownWaitsForShadows: Shutdown lets a shadow in flight finish
// within its deadline instead of cancelling it.
func TestShutdownWaitsForShadows(t *testing.T) {
	shadow := startBlockingShadow(t)
	g, addr := mirrorGateway(t, echoOrigin(t), shadow.addr, route.MirrorPolicy{}, route.Rule{})
	get(t, addr, "/")
	shadowWait(t, shadow.started, "the shadow to reach its origin")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- g.Shutdown(ctx)
	}()
	// The listeners have drained once Shutdown closes the shadow group.
	for deadline := time.Now().Add(5 * time.Second); g.shadows.n.Load()&shadowsClosed == 0; {
		if time.Now().After(deadline) {
			t.Fatal("Shutdown never got to the shadows")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a shadow in flight", err)
	default:
	}
	close(shadow.release)
	if got := shadowWait(t, shadow.outcome, "the shadow to end"); got != "answered" {
		t.Errorf("origin: shadow %s, want answered", got)
	}
	shadowWait(t, done, "Shutdown to return")
	if got := counterValue(retryStatsOf(t, g, "shadow").rqDone); got != 1 {
		t.Errorf("got shadow upstream_rq_completed %v, want 1", got)
	}
}

// TestShutdownCancelsShadowsAtDeadline: a shadow still in flight when
// Shutdown's deadline passes is cancelled and joined before it returns.
func TestShutdownCancelsShadowsAtDeadline(t *testing.T) {
	shadow := startBlockingShadow(t)
	unwind := &slowUnwind{}
	g, addr := shadowGateway(t, echoOrigin(t), shadow.addr, unwind.wrap)
	get(t, addr, "/")
	shadowWait(t, shadow.started, "the shadow to reach its origin")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	g.Shutdown(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Shutdown with a 200ms deadline took %v", took)
	}
	if n := unwind.returned.Load(); n != 1 {
		t.Errorf("the shadow attempt had not returned when Shutdown returned")
	}
	if n := shadowGoroutines(); n != 0 {
		t.Errorf("got %d shadow goroutines after Shutdown returned, want 0", n)
	}
	if got := shadowWait(t, shadow.outcome, "the origin to see the shadow end"); got != "cancelled" {
		t.Errorf("origin: shadow %s, want cancelled", got)
	}
}

// TestShadowGroup: once close was called, add fails; the channel close
// returns is closed when every shadow admitted before has ended, and no
// shadow is admitted after.
func TestShadowGroup(t *testing.T) {
	for round := range 50 {
		s := shadowGroup{idle: make(chan struct{})}
		var running, late atomic.Int32
		var idle atomic.Bool
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 200 {
					if !s.add() {
						return
					}
					if idle.Load() {
						late.Add(1)
					}
					running.Add(1)
					runtime.Gosched()
					running.Add(-1)
					s.done()
				}
			})
		}
		runtime.Gosched()
		<-s.close()
		idle.Store(true)
		if n := running.Load(); n != 0 {
			t.Fatalf("round %d: %d shadows running when the group went idle", round, n)
		}
		wg.Wait()
		if n := late.Load(); n != 0 {
			t.Fatalf("round %d: %d shadows admitted after the group went idle", round, n)
		}
		select {
		case <-s.close(): // closing again is fine
		default:
			t.Fatalf("round %d: a second close returned an open channel", round)
		}
		if s.add() {
			t.Fatalf("round %d: add succeeded on a closed group", round)
		}
	}
}
