package cluster

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Circuit-breaker defaults, Envoy's documented values for every threshold
// that is left zero.
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
)

// Thresholds are one routing priority's circuit-breaker limits (Envoy's
// CircuitBreakers.Thresholds). A zero limit means its Envoy default.
type Thresholds struct {
	// MaxConnections bounds the connections open to all of the cluster's
	// endpoints; default 1024.
	MaxConnections uint32
	// MaxPendingRequests bounds requests waiting for a connection;
	// default 1024.
	MaxPendingRequests uint32
	// MaxRequests bounds requests in flight; default 1024.
	MaxRequests uint32
	// MaxRetries bounds retries in flight; default 3. A RetryBudget, when
	// set, replaces it.
	MaxRetries uint32
	// RetryBudget, when set, limits retries in flight to a fraction of
	// the requests in flight instead of MaxRetries.
	RetryBudget *RetryBudget
}

// RetryBudget is Envoy's retry budget: retries in flight may be at most
// BudgetPercent of the requests in flight, but never fewer than
// MinRetryConcurrency.
type RetryBudget struct {
	// BudgetPercent of active requests that may be retries; default 20.
	BudgetPercent float64
	// MinRetryConcurrency is the floor; default 3.
	MinRetryConcurrency uint32
}

// CircuitBreakers holds the thresholds per routing priority.
type CircuitBreakers struct {
	// Default applies to requests of the default routing priority.
	Default Thresholds
	// High applies to requests of the high routing priority.
	High Thresholds
}

func (t *Thresholds) validate(path string) []error {
	var errs []error
	if b := t.RetryBudget; b != nil {
		if b.BudgetPercent < 0 || b.BudgetPercent > 100 {
			errs = append(errs, fmt.Errorf("%s.retry_budget.budget_percent: %v not in [0, 100]", path, b.BudgetPercent))
		}
	}
	return errs
}

func (t Thresholds) withDefaults() Thresholds {
	if t.MaxConnections == 0 {
		t.MaxConnections = DefaultMaxConnections
	}
	if t.MaxPendingRequests == 0 {
		t.MaxPendingRequests = DefaultMaxPendingRequests
	}
	if t.MaxRequests == 0 {
		t.MaxRequests = DefaultMaxRequests
	}
	if t.MaxRetries == 0 {
		t.MaxRetries = DefaultMaxRetries
	}
	if b := t.RetryBudget; b != nil {
		bb := *b
		if bb.BudgetPercent == 0 {
			bb.BudgetPercent = 20
		}
		if bb.MinRetryConcurrency == 0 {
			bb.MinRetryConcurrency = 3
		}
		t.RetryBudget = &bb
	}
	return t
}

// ErrRetryOverflow is the error of a retry refused by the max-retries
// circuit breaker or the retry budget.
var ErrRetryOverflow = errors.New("retry circuit breaker open")

// breakers is a cluster's live circuit-breaker state: lock-free counters
// checked on the data path.
type breakers struct {
	limits        Thresholds
	activeRetries atomic.Int64
	activeRq      atomic.Int64
	retryOverflow atomic.Uint64
}

// AllowRetry asks the retry circuit breaker for one retry. When it
// allows, release must be called once the retry attempt has finished;
// when it refuses, the retry must not be made and the refusal is counted
// as upstream_rq_retry_overflow.
func (c *Cluster) AllowRetry() (release func(), ok bool) {
	b := &c.breakers
	limit := int64(b.limits.MaxRetries)
	if bud := b.limits.RetryBudget; bud != nil {
		limit = int64(float64(b.activeRq.Load()) * bud.BudgetPercent / 100)
		if m := int64(bud.MinRetryConcurrency); limit < m {
			limit = m
		}
	}
	if b.activeRetries.Add(1) > limit {
		b.activeRetries.Add(-1)
		b.retryOverflow.Add(1)
		return nil, false
	}
	return c.releaseRetry, true
}

func (c *Cluster) releaseRetry() { c.breakers.activeRetries.Add(-1) }
