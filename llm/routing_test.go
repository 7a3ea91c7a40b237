package llm

import (
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"
)

func splitGW(t testing.TB, res Resilience) *Gateway {
	t.Helper()
	g, err := New(Config{
		Providers: []Provider{{Name: "a", Kind: OpenAI}, {Name: "b", Kind: Anthropic}},
		Models: []Model{
			{Name: "m", Deployments: []Deployment{{Provider: "a", UpstreamModel: "gpt-x", Weight: 3}, {Provider: "b", UpstreamModel: "claude-x", Weight: 1}}},
			{Name: "solo", Provider: "a"},
		},
		Resilience: res,
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func newCall(model string) *Call {
	c := &Call{RequestModel: model}
	c.st = &state{}
	return c
}

func TestWeightedSplit(t *testing.T) {
	g := splitGW(t, Resilience{Cooldown: Cooldown{Disabled: true}})
	n := map[string]int{}
	const runs = 20000
	for range runs {
		call := newCall("m")
		tg, _ := g.route("m")
		tg = g.choose(tg, call)
		n[call.Provider+"/"+call.Model]++
		if tg.p.name != call.Provider || tg.upstream != call.Model {
			t.Fatalf("target %+v, call %+v", tg, call)
		}
	}
	if share := float64(n["a/gpt-x"]) / runs; math.Abs(share-0.75) > 0.02 {
		t.Errorf("split %v: a has %.3f, want 0.75", n, share)
	}
	// Route reports the heaviest deployment.
	if p, m, ok := g.Route("m"); !ok || p != "a" || m != "gpt-x" {
		t.Errorf("Route(m) = %s %s %v", p, m, ok)
	}
}

// TestDeploymentCooldown walks a deployment's breaker through its states
// with a fake clock (testing/synctest): closed (healthy) → open (cooling
// down, no traffic) after Failures consecutive failures → half-open after
// Duration (one probe) → closed after the probe succeeds; a failed probe
// reopens it.
func TestDeploymentCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := splitGW(t, Resilience{Cooldown: Cooldown{Failures: 2, Duration: 10 * time.Second}})
		a := g.deps["a\x00gpt-x"]
		b := g.deps["b\x00claude-x"]
		fail := func(d *deployment) {
			done, ok := d.allow()
			if !ok {
				t.Fatal("refused")
			}
			done(errAttemptFailed)
		}
		pick := func() string {
			call := newCall("m")
			tg, _ := g.route("m")
			g.choose(tg, call)
			call.st.pol.report(nil)
			return call.Provider
		}
		fail(a)
		if a.cb.State() != gobreaker.StateClosed {
			t.Fatal("open after one failure")
		}
		fail(a)
		if a.cb.State() != gobreaker.StateOpen {
			t.Fatalf("state %v after two failures", a.cb.State())
		}
		for range 50 {
			if p := pick(); p != "b" {
				t.Fatalf("picked %s while a cools down", p)
			}
		}
		time.Sleep(10*time.Second + time.Millisecond)
		if a.cb.State() != gobreaker.StateHalfOpen {
			t.Fatalf("state %v after the cooldown", a.cb.State())
		}
		probe, ok := a.allow()
		if !ok {
			t.Fatal("no probe allowed")
		}
		if _, ok := a.allow(); ok {
			t.Fatal("a second probe allowed")
		}
		probe(errAttemptFailed)
		if a.cb.State() != gobreaker.StateOpen {
			t.Fatalf("state %v after a failed probe", a.cb.State())
		}
		time.Sleep(10*time.Second + time.Millisecond)
		probe, _ = a.allow()
		probe(nil)
		if a.cb.State() != gobreaker.StateClosed {
			t.Fatalf("state %v after a good probe", a.cb.State())
		}
		// An attempt without an outcome counts for nothing.
		done, _ := a.allow()
		done(errNoOutcome)
		fail(a)
		if a.cb.State() != gobreaker.StateClosed {
			t.Fatal("an excluded attempt broke the streak")
		}

		// Panic mode: with every deployment cooling down, the heaviest
		// still gets the request.
		fail(a)
		fail(b)
		fail(b)
		if a.cb.State() != gobreaker.StateOpen || b.cb.State() != gobreaker.StateOpen {
			t.Fatal("not both open")
		}
		if p := pick(); p != "a" {
			t.Errorf("panic mode picked %s", p)
		}
	})
}

func TestNextCandidates(t *testing.T) {
	g, err := New(Config{
		Providers: []Provider{{Name: "a", Kind: OpenAI}, {Name: "b", Kind: Anthropic}, {Name: "c", Kind: OpenAI}},
		Models: []Model{
			{Name: "m", Deployments: []Deployment{{Provider: "a", Weight: 1}, {Provider: "b", Weight: 1}}, Fallbacks: []string{"f1", "f2"}},
			{Name: "f1", Provider: "c", UpstreamModel: "c-model"},
			{Name: "f*", Provider: "a"},
		},
		Resilience: Resilience{Cooldown: Cooldown{Disabled: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	call := newCall("m")
	tg, _ := g.route("m")
	g.choose(tg, call)
	first := call.Provider
	var got []string
	for {
		next, ok := g.next(call)
		if !ok {
			break
		}
		got = append(got, next.p.name+"/"+next.upstream)
	}
	other := "b/m"
	if first == "b" {
		other = "a/m"
	}
	want := []string{other, "c/c-model", "a/f2"}
	if len(got) != len(want) {
		t.Fatalf("candidates after %s: %v, want %v", first, got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("candidates after %s: %v, want %v", first, got, want)
			break
		}
	}
}
