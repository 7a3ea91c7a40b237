package health

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults applied by [NewMonitor] to zero [Config] fields. Envoy requires
// interval, timeout and both thresholds explicitly; these are Portico's
// choices. NoTrafficInterval is Envoy's default.
const (
	DefaultInterval           = 5 * time.Second
	DefaultTimeout            = 1 * time.Second
	DefaultUnhealthyThreshold = 3
	DefaultHealthyThreshold   = 2
	DefaultNoTrafficInterval  = 60 * time.Second
)

// Config configures a [Monitor], after Envoy's config.core.v3.HealthCheck.
// The zero value of every field but Checker is useful.
//
// Which interval separates two checks of an endpoint follows Envoy:
//
//   - NoTrafficInterval until [Monitor.SetTraffic] reports traffic;
//   - otherwise Interval for a healthy endpoint and UnhealthyInterval for
//     an unhealthy one;
//   - UnhealthyEdgeInterval while a healthy endpoint is failing but has
//     not yet reached UnhealthyThreshold, and HealthyEdgeInterval while an
//     unhealthy endpoint is passing but has not yet reached
//     HealthyThreshold;
//
// plus a random jitter in [0, IntervalJitterPercent% of that interval) and
// another in [0, IntervalJitter). The first check of an endpoint runs as
// soon as it is added.
type Config struct {
	// Checker probes one endpoint. Required.
	Checker Checker
	// Interval separates checks of a healthy endpoint; zero means
	// [DefaultInterval].
	Interval time.Duration
	// Timeout bounds one check; zero means [DefaultTimeout]. A check that
	// times out fails.
	Timeout time.Duration
	// IntervalJitter adds a random delay in [0, IntervalJitter) to every
	// interval.
	IntervalJitter time.Duration
	// IntervalJitterPercent adds a random delay in [0, p% of the
	// interval) to every interval; at most 100.
	IntervalJitterPercent uint32
	// UnhealthyThreshold is the number of consecutive failures that make
	// a healthy endpoint unhealthy; zero means [DefaultUnhealthyThreshold].
	UnhealthyThreshold int
	// HealthyThreshold is the number of consecutive successes that make
	// an unhealthy endpoint healthy; zero means [DefaultHealthyThreshold].
	HealthyThreshold int
	// NoTrafficInterval separates checks until [Monitor.SetTraffic]
	// reports that the cluster has traffic; zero means
	// [DefaultNoTrafficInterval]. Set it to Interval to check at the same
	// pace regardless of traffic.
	NoTrafficInterval time.Duration
	// UnhealthyInterval separates checks of an unhealthy endpoint; zero
	// means Interval.
	UnhealthyInterval time.Duration
	// UnhealthyEdgeInterval separates checks of a healthy endpoint that
	// has started failing; zero means UnhealthyInterval, as in Envoy.
	UnhealthyEdgeInterval time.Duration
	// HealthyEdgeInterval separates checks of an unhealthy endpoint that
	// has started passing; zero means Interval.
	HealthyEdgeInterval time.Duration
	// Logger receives status transitions at Info and failed checks at
	// Debug; nil discards.
	Logger *slog.Logger
	// OnCheck, if not nil, is called after every completed check, with
	// From == To when the status did not change; a status change reaches
	// NewMonitor's onChange first. It runs on the endpoint's goroutine
	// under onChange's rules: it must not block and must not call
	// SetEndpoints or Close. A cluster uses it to return an
	// outlier-ejected endpoint on its first passing check, as Envoy does.
	OnCheck func(Event)
}

// Validate reports the first field that cannot work, by name, including
// the Checker's own fields when it has a Validate method.
func (c *Config) Validate() error {
	if c.Checker == nil {
		return errors.New("health: Config.Checker is nil")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Interval", c.Interval},
		{"Timeout", c.Timeout},
		{"IntervalJitter", c.IntervalJitter},
		{"NoTrafficInterval", c.NoTrafficInterval},
		{"UnhealthyInterval", c.UnhealthyInterval},
		{"UnhealthyEdgeInterval", c.UnhealthyEdgeInterval},
		{"HealthyEdgeInterval", c.HealthyEdgeInterval},
	} {
		if d.v < 0 {
			return fmt.Errorf("health: Config.%s %v is negative", d.name, d.v)
		}
	}
	if c.IntervalJitterPercent > 100 {
		return fmt.Errorf("health: Config.IntervalJitterPercent %d is over 100", c.IntervalJitterPercent)
	}
	if c.UnhealthyThreshold < 0 {
		return fmt.Errorf("health: Config.UnhealthyThreshold %d is negative", c.UnhealthyThreshold)
	}
	if c.HealthyThreshold < 0 {
		return fmt.Errorf("health: Config.HealthyThreshold %d is negative", c.HealthyThreshold)
	}
	if v, ok := c.Checker.(validator); ok {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.UnhealthyThreshold == 0 {
		c.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	if c.HealthyThreshold == 0 {
		c.HealthyThreshold = DefaultHealthyThreshold
	}
	if c.NoTrafficInterval == 0 {
		c.NoTrafficInterval = DefaultNoTrafficInterval
	}
	if c.UnhealthyInterval == 0 {
		c.UnhealthyInterval = c.Interval
	}
	if c.UnhealthyEdgeInterval == 0 {
		c.UnhealthyEdgeInterval = c.UnhealthyInterval
	}
	if c.HealthyEdgeInterval == 0 {
		c.HealthyEdgeInterval = c.Interval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// baseInterval is the interval before jitter for an endpoint in status s
// with the given consecutive counts (Envoy's HealthCheckerImplBase::interval).
func (c *Config) baseInterval(s Status, successes, failures int, traffic bool) time.Duration {
	if !traffic {
		return c.NoTrafficInterval
	}
	if s == Unhealthy {
		if successes > 0 {
			return c.HealthyEdgeInterval
		}
		return c.UnhealthyInterval
	}
	if s == Healthy && failures > 0 {
		return c.UnhealthyEdgeInterval
	}
	return c.Interval
}

// jitter adds the configured jitter to base; randN returns a value in
// [0, n) for n > 0.
func (c *Config) jitter(base time.Duration, randN func(n int64) int64) time.Duration {
	d := base
	if c.IntervalJitterPercent > 0 {
		if n := int64(base) / 100 * int64(c.IntervalJitterPercent); n > 0 {
			d += time.Duration(randN(n))
		}
	}
	if c.IntervalJitter > 0 {
		d += time.Duration(randN(int64(c.IntervalJitter)))
	}
	return d
}
