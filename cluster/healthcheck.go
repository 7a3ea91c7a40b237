package cluster

import (
	"fmt"

	"github.com/porticoproxy/portico/health"
)

// Active health checking: one health.Monitor per Config.HealthChecks
// entry, each running one goroutine per endpoint, so that check state is
// kept per (cluster, endpoint, check). UpdateEndpoints hands every
// monitor the new address set, which starts checks of added endpoints
// and stops (and joins) those of removed ones; Close stops them all.
// Results reach the cluster through OnCheck, which only flags the change
// and wakes the control loop: the loop recomputes effective health under
// c.mu and republishes the balancer's endpoints.

// initHealthChecks creates the monitors; they start with the first
// UpdateEndpoints.
func (c *Cluster) initHealthChecks() error {
	hs := &c.hs
	for i, hc := range c.cfg.HealthChecks {
		user := hc.OnCheck
		hc.OnCheck = func(ev health.Event) {
			c.onCheck(ev)
			if user != nil {
				user(ev)
			}
		}
		m, err := health.NewMonitor(c.cfg.Name, hc, nil)
		if err != nil {
			hs.monitors = nil // none started: nothing to close
			return fmt.Errorf("health_checks[%d]: %w", i, err)
		}
		hs.monitors = append(hs.monitors, m)
	}
	return nil
}

// noteTraffic switches health checks from NoTrafficInterval to their
// regular intervals on the cluster's first request, once.
func (c *Cluster) noteTraffic() {
	if c.hs.traffic.Swap(true) {
		return
	}
	for _, m := range c.hs.monitors {
		m.SetTraffic(true)
	}
}

// onCheck receives every active check's result from its monitor's
// goroutine. It must not block and must not take c.mu: UpdateEndpoints
// holds c.mu while it waits for removed endpoints' check goroutines.
func (c *Cluster) onCheck(ev health.Event) {
	wake := ev.Changed()
	if ev.Err == nil && c.outlier != nil {
		// A passing check may return an outlier-ejected endpoint.
		if h := c.hostFor(ev.Endpoint); h != nil && h.od.ejectedNow.Load() {
			h.od.events.Or(evCheckPassed)
			wake = true
		}
	}
	if wake {
		c.hs.wakeup()
	}
}

// checksPassing reports whether every active check passes for h; with no
// checks it is true.
func (c *Cluster) checksPassing(h *host) bool {
	for _, m := range c.hs.monitors {
		if m.Status(h.addr) != health.Healthy {
			return false
		}
	}
	return true
}

// checksDegraded reports whether an active check found h degraded on its
// last pass (an HTTP check answered with x-envoy-degraded).
func (c *Cluster) checksDegraded(h *host) bool {
	for _, m := range c.hs.monitors {
		if m.Degraded(h.addr) {
			return true
		}
	}
	return false
}
