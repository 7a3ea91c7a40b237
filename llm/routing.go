package llm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Deployment is one provider serving a model: an entry of a Model's
// weighted split.
type Deployment struct {
	// Provider names the provider; required.
	Provider string `json:"provider"`
	// UpstreamModel is the model name sent to the provider; empty means
	// the name the client asked for.
	UpstreamModel string `json:"upstream_model,omitempty"`
	// Weight is the deployment's share of the model's traffic relative to
	// the others; zero means 1.
	Weight uint32 `json:"weight,omitempty"`
}

// deployment is a resolved Deployment with its cooldown state.
type deployment struct {
	p        *provider
	upstream string // empty: the requested name
	weight   uint32
	// cb is the deployment's health: closed is healthy, open is cooling
	// down after repeated failures, half-open lets probes through. Nil
	// when cooldown is disabled.
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// modelRoute is what a Model entry routes to: one or more deployments and
// the models to fall back on.
type modelRoute struct {
	name      string
	deps      []*deployment // by descending weight
	total     uint32        // sum of weights
	fallbacks []string
}

// newTarget resolves a Model entry. Deployments are shared by every entry
// that names the same provider and upstream model, so that their cooldown
// is shared too.
func (g *Gateway) newTarget(m Model, byName map[string]*provider) target {
	r := &modelRoute{name: m.Name, fallbacks: m.Fallbacks}
	deps := m.Deployments
	if len(deps) == 0 {
		deps = []Deployment{{Provider: m.Provider, UpstreamModel: m.UpstreamModel}}
	}
	for _, d := range deps {
		w := d.Weight
		if w == 0 {
			w = 1
		}
		dep := g.deployment(byName[d.Provider], d.UpstreamModel)
		r.deps = append(r.deps, &deployment{p: dep.p, upstream: dep.upstream, weight: w, cb: dep.cb})
		r.total += w
	}
	slices.SortStableFunc(r.deps, func(a, b *deployment) int { return int(b.weight) - int(a.weight) })
	return target{p: r.deps[0].p, upstream: r.deps[0].upstream, r: r, dep: r.deps[0]}
}

// deployment returns the shared state of (p, upstream), made on first use.
func (g *Gateway) deployment(p *provider, upstream string) *deployment {
	key := p.name + "\x00" + upstream
	if d, ok := g.deps[key]; ok {
		return d
	}
	d := &deployment{p: p, upstream: upstream}
	if !g.res.cooldown.Disabled {
		c := g.res.cooldown
		name := p.name
		if upstream != "" {
			name += "/" + upstream
		}
		d.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        name,
			MaxRequests: c.Probes,
			Timeout:     c.Duration,
			ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= c.Failures },
			IsExcluded:  func(err error) bool { return err == errNoOutcome },
			OnStateChange: func(name string, from, to gobreaker.State) {
				g.tel.cooldown(name, to)
			},
		})
	}
	g.deps[key] = d
	return d
}

// errNoOutcome reports an attempt that says nothing about the
// deployment's health (the client went away, a context-length error); the
// breaker neither counts it as a success nor as a failure.
var errNoOutcome = errors.New("llm: no outcome")

// errAttemptFailed is the failure reported to a deployment's breaker.
var errAttemptFailed = errors.New("llm: attempt failed")

// allow asks the deployment's breaker for an attempt. It returns the
// callback that reports the outcome, or ok false while the deployment
// cools down (or, half-open, has its probes in flight).
func (d *deployment) allow() (done func(error), ok bool) {
	if d.cb == nil {
		return nil, true
	}
	done, err := d.cb.Allow()
	return done, err == nil
}

// name returns the deployment's model name for a request for model.
func (d *deployment) model(requested string) string {
	if d.upstream == "" {
		return requested
	}
	return d.upstream
}

// choose picks the deployment that serves a request routed to t: a
// weighted random choice among the deployments whose breaker lets the
// attempt through. When every deployment is cooling down it picks as if
// none were (Envoy's panic mode): refusing all traffic would turn a
// degraded model into an outage. It records the choice on the call.
func (g *Gateway) choose(t target, call *Call) target {
	ps := &call.st.pol
	ps.route, ps.root, ps.model = t.r, t.r, call.RequestModel
	ps.tried = ps.triedBuf[:0]
	r := t.r
	var dep *deployment
	if r == nil {
		dep = t.dep
	} else if len(r.deps) == 1 {
		dep = r.deps[0]
		ps.done, _ = dep.allow()
	} else {
		dep = g.pickWeighted(r, ps)
	}
	ps.dep = dep
	ps.tried = append(ps.tried[:0], dep)
	t.p, t.upstream, t.dep = dep.p, dep.model(call.RequestModel), dep
	call.Provider, call.ProviderKind, call.Model = dep.p.name, dep.p.kind, t.upstream
	call.st.p = dep.p
	return t
}

// pickWeighted picks among r's deployments by weight, skipping those whose
// breaker refuses; it sets ps.done for the one picked.
func (g *Gateway) pickWeighted(r *modelRoute, ps *polState) *deployment {
	var skipped uint64 // bit i: r.deps[i] refused
	total := r.total
	for total > 0 {
		n := rand.Uint32N(total)
		i := 0
		for ; i < len(r.deps); i++ {
			if skipped&(1<<i) != 0 {
				continue
			}
			if n < r.deps[i].weight {
				break
			}
			n -= r.deps[i].weight
		}
		d := r.deps[i]
		if done, ok := d.allow(); ok {
			ps.done = done
			return d
		}
		skipped |= 1 << i
		total -= d.weight
	}
	// Panic mode: every deployment is cooling down.
	return r.deps[0]
}

// next returns the next candidate after a failed attempt: another
// deployment of the model that has not been tried (by descending weight),
// then the fallback models in order, each by a weighted choice; ok false
// when none is left. Deployments that cool down are skipped.
func (g *Gateway) next(call *Call) (t target, ok bool) {
	ps := &call.st.pol
	for {
		r := ps.route
		if r == nil {
			return target{}, false
		}
		for _, d := range r.deps {
			if slices.Contains(ps.tried, d) {
				continue
			}
			ps.tried = append(ps.tried, d)
			if done, ok := d.allow(); ok {
				ps.done = done
				return g.targetOf(d, r, ps.model), true
			}
		}
		// Move on to the next fallback model.
		root := ps.root
		if root == nil || ps.fallback >= len(root.fallbacks) {
			return target{}, false
		}
		name := root.fallbacks[ps.fallback]
		ps.fallback++
		ft, ok := g.route(name)
		if !ok || ft.r == nil {
			continue
		}
		ps.route, ps.model = ft.r, name
		ps.tried = ps.tried[:0]
		if len(ft.r.deps) > 1 {
			ps.done = nil
			d := g.pickWeighted(ft.r, ps)
			if d.cb != nil && ps.done == nil {
				continue // every deployment of this fallback cools down
			}
			ps.tried = append(ps.tried, d)
			return g.targetOf(d, ft.r, name), true
		}
	}
}

func (g *Gateway) targetOf(d *deployment, r *modelRoute, model string) target {
	return target{p: d.p, upstream: d.model(model), r: r, dep: d}
}

// routable reports whether a model name is served by one of models, as
// Gateway.route would find it.
func routable(name string, models []Model) bool {
	for _, m := range models {
		if m.Name == name {
			return true
		}
		if prefix, ok := strings.CutSuffix(m.Name, "*"); ok && strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// validateModelTarget checks where a Model entry sends its requests.
func validateModelTarget(m Model, providers map[string]int) error {
	if len(m.Deployments) == 0 {
		if _, ok := providers[m.Provider]; !ok {
			return fmt.Errorf("provider: %q is not a configured provider", m.Provider)
		}
		return nil
	}
	if m.Provider != "" || m.UpstreamModel != "" {
		return errors.New("provider and upstream_model: set them on the deployments, not beside them")
	}
	if len(m.Deployments) > 64 {
		return errors.New("deployments: at most 64")
	}
	for j, d := range m.Deployments {
		if _, ok := providers[d.Provider]; !ok {
			return fmt.Errorf("deployments[%d].provider: %q is not a configured provider", j, d.Provider)
		}
	}
	return nil
}

// validateFallbacks checks that every fallback of every model is routable.
func validateFallbacks(models []Model) error {
	for i, m := range models {
		for j, f := range m.Fallbacks {
			if f == m.Name {
				return fmt.Errorf("models[%d].fallbacks[%d]: %q falls back on itself", i, j, f)
			}
			if !routable(f, models) {
				return fmt.Errorf("models[%d].fallbacks[%d]: %q is served by no model entry", i, j, f)
			}
		}
	}
	return nil
}

// cooldownDefaults are the defaults of Cooldown.
const (
	// DefaultCooldownFailures is Cooldown.Failures' default: Envoy's
	// outlier detection default of 5 consecutive failures.
	DefaultCooldownFailures = 5
	// DefaultCooldownDuration is Cooldown.Duration's default: Envoy's
	// base ejection time.
	DefaultCooldownDuration = 30 * time.Second
)
