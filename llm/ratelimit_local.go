package llm

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// localStore keeps counters in the process: token buckets are
// golang.org/x/time/rate limiters, fixed windows plain counts. One mutex
// makes a request's admission atomic across its counters; every operation
// under it is a few arithmetic steps.
type localStore struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	windows map[string]*fixedWindow
	prune   int // map size at which to drop idle counters next
}

type fixedWindow struct {
	size  int64 // window length in milliseconds
	index int64 // window number since the epoch
	used  int64
}

// localPruneMin is the number of counters below which the store never
// looks for idle ones.
const localPruneMin = 4096

func newLocalStore() *localStore {
	return &localStore{buckets: map[string]*rate.Limiter{}, windows: map[string]*fixedWindow{}, prune: localPruneMin}
}

func (s *localStore) bucket(key string, capacity int64, window time.Duration, now time.Time) *rate.Limiter {
	l := s.buckets[key]
	if l == nil {
		if len(s.buckets)+len(s.windows) >= s.prune {
			s.pruneIdle(now)
		}
		l = rate.NewLimiter(rate.Limit(float64(capacity)/window.Seconds()), int(capacity)) // starts full
		s.buckets[key] = l
	}
	return l
}

func (s *localStore) window(key string, window time.Duration, now time.Time) *fixedWindow {
	size := window.Milliseconds()
	idx := now.UnixMilli() / size
	w := s.windows[key]
	if w == nil {
		if len(s.buckets)+len(s.windows) >= s.prune {
			s.pruneIdle(now)
		}
		w = &fixedWindow{size: size, index: idx}
		s.windows[key] = w
	}
	if w.index != idx {
		w.index, w.used = idx, 0
	}
	return w
}

// pruneIdle drops full buckets and past windows: they hold nothing a
// fresh counter would not. It runs when the maps have doubled since the
// last time, so its cost is amortised over the insertions.
func (s *localStore) pruneIdle(now time.Time) {
	for k, l := range s.buckets {
		if l.TokensAt(now) >= float64(l.Burst()) {
			delete(s.buckets, k)
		}
	}
	for k, w := range s.windows {
		if w.index < now.UnixMilli()/w.size {
			delete(s.windows, k)
		}
	}
	s.prune = max(2*(len(s.buckets)+len(s.windows)), localPruneMin)
}

func (s *localStore) admit(ctx context.Context, now time.Time, cs []counter) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := true
	for i := range cs {
		c := &cs[i]
		switch c.kind {
		case bucketKind:
			c.level = s.bucket(c.key, c.capacity, c.window, now).TokensAt(now)
			c.ok = c.level >= float64(c.need)
		default:
			c.level = float64(s.window(c.key, c.window, now).used)
			c.ok = c.level < float64(c.capacity)
		}
		ok = ok && c.ok
	}
	if !ok {
		return now, false, nil
	}
	for i := range cs {
		c := &cs[i]
		if c.take == 0 {
			continue
		}
		switch c.kind {
		case bucketKind:
			s.buckets[c.key].ReserveN(now, int(c.take))
		default:
			s.windows[c.key].used += c.take
		}
	}
	return now, true, nil
}

func (s *localStore) charge(ctx context.Context, now time.Time, cs []charge) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		switch c.kind {
		case bucketKind:
			l := s.bucket(c.key, c.capacity, c.window, now)
			// A reservation is at most a burst: charge more in parts, which
			// takes the bucket into debt.
			for n := c.amount; n > 0; {
				part := min(n, c.capacity)
				l.ReserveN(now, int(part))
				n -= part
			}
		default:
			s.window(c.key, c.window, now).used += c.amount
		}
	}
	return nil
}

func (s *localStore) close() error { return nil }
