package llm

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/porticoproxy/portico/llm/internal/resp"
	"github.com/porticoproxy/portico/llm/internal/resp/resptest"
)

// TestCounterStores runs the same admissions and charges against the
// local store and a real redis-server: they must agree.
func TestCounterStores(t *testing.T) {
	srv := resptest.Start(t)
	stores := map[string]func(t *testing.T) counterStore{
		"local": func(t *testing.T) counterStore { return newLocalStore() },
		"redis": func(t *testing.T) counterStore {
			s := newRedisStore(&Redis{Addr: srv.Addr, Timeout: time.Second}, "")
			t.Cleanup(func() { s.close() })
			return s
		},
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			ctx := context.Background()
			prefix := "test:" + t.Name() + ":"
			near := func(got, want float64) bool { return math.Abs(got-want) < 0.5 }

			// A request bucket: 10 per 10 s.
			req := func() []counter {
				return []counter{{key: prefix + "req", kind: bucketKind, capacity: 10, window: 10 * time.Second, need: 1, take: 1}}
			}
			for i := range 10 {
				cs := req()
				_, ok, err := s.admit(ctx, time.Now(), cs)
				if err != nil || !ok || !near(cs[0].level, float64(10-i)) {
					t.Fatalf("admission %d: ok=%v err=%v level=%v", i, ok, err, cs[0].level)
				}
			}
			cs := req()
			now, ok, err := s.admit(ctx, time.Now(), cs)
			if err != nil || ok || cs[0].ok {
				t.Fatalf("11th admission: ok=%v err=%v", ok, err)
			}
			if w := cs[0].wait(now); w < 900*time.Millisecond || w > time.Second {
				t.Errorf("wait %v, want about 1 s (one of 10 per 10 s)", w)
			}

			// A token bucket charged into debt.
			tok := func(need int64) []counter {
				return []counter{{key: prefix + "tok", kind: bucketKind, capacity: 10, window: 10 * time.Second, need: need}}
			}
			cs = tok(5)
			if _, ok, err := s.admit(ctx, time.Now(), cs); err != nil || !ok {
				t.Fatalf("token admission: %v %v", ok, err)
			}
			if err := s.charge(ctx, time.Now(), []charge{{key: prefix + "tok", kind: bucketKind, capacity: 10, window: 10 * time.Second, amount: 25}}); err != nil {
				t.Fatal(err)
			}
			cs = tok(1)
			now, ok, err = s.admit(ctx, time.Now(), cs)
			if err != nil || ok || !near(cs[0].level, -15) {
				t.Fatalf("in debt: ok=%v err=%v level=%v", ok, err, cs[0].level)
			}
			if w := cs[0].wait(now); w < 15*time.Second || w > 16*time.Second+500*time.Millisecond {
				t.Errorf("wait in debt %v, want about 16 s", w)
			}

			// A fixed window: admitted while under its capacity.
			win := func() []counter {
				return []counter{{key: prefix + "win", kind: windowKind, capacity: 100, window: time.Hour}}
			}
			if _, ok, err := s.admit(ctx, time.Now(), win()); err != nil || !ok {
				t.Fatalf("window admission: %v %v", ok, err)
			}
			s.charge(ctx, time.Now(), []charge{{key: prefix + "win", kind: windowKind, capacity: 100, window: time.Hour, amount: 150}})
			cs = win()
			if _, ok, err := s.admit(ctx, time.Now(), cs); err != nil || ok || cs[0].level != 150 {
				t.Fatalf("window over: ok=%v err=%v level=%v", ok, err, cs[0].level)
			}

			// All or nothing: a refusal by one counter takes nothing from the
			// others.
			two := func() []counter {
				return []counter{
					{key: prefix + "a", kind: bucketKind, capacity: 5, window: time.Minute, need: 1, take: 1},
					{key: prefix + "b", kind: bucketKind, capacity: 1, window: time.Minute, need: 1, take: 1},
				}
			}
			if _, ok, _ := s.admit(ctx, time.Now(), two()); !ok {
				t.Fatal("first of two")
			}
			for range 3 {
				if _, ok, _ := s.admit(ctx, time.Now(), two()); ok {
					t.Fatal("b is empty")
				}
			}
			cs = two()
			s.admit(ctx, time.Now(), cs)
			if !near(cs[0].level, 4) {
				t.Errorf("a's level %v after refusals, want 4: refusals took from it", cs[0].level)
			}
		})
	}
}

// TestRedisKeysExpire checks that the Redis keys of buckets and windows
// carry a TTL, so that idle counters cost Redis nothing.
func TestRedisKeysExpire(t *testing.T) {
	srv := resptest.Start(t)
	s := newRedisStore(&Redis{Addr: srv.Addr}, "")
	defer s.close()
	ctx := context.Background()
	s.admit(ctx, time.Now(), []counter{{key: "k:bucket", kind: bucketKind, capacity: 10, window: time.Minute, need: 1, take: 1}})
	s.charge(ctx, time.Now(), []charge{{key: "k:win", kind: windowKind, capacity: 10, window: time.Hour, amount: 3}})
	p := resp.New(resp.Config{Addr: srv.Addr})
	defer p.Close()
	v, err := p.Do(ctx, "PTTL", "k:bucket")
	// One token of 10 per minute refills in 6 s, plus a second of grace.
	if err != nil || v.Int < 6000 || v.Int > 7000 {
		t.Errorf("bucket PTTL %d %v, want about 7 s", v.Int, err)
	}
	keys, _ := p.Do(ctx, "KEYS", "k:win:*")
	if len(keys.Array) != 1 {
		t.Fatalf("window keys: %+v", keys)
	}
	v, _ = p.Do(ctx, "PTTL", keys.Array[0].String())
	if v.Int <= 0 || v.Int > 3601000 {
		t.Errorf("window PTTL %d", v.Int)
	}
}
