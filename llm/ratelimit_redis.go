package llm

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/porticoproxy/portico/llm/internal/resp"
)

// redisStore keeps counters in Redis, so that gateway replicas share them.
// Every operation is one EVALSHA of a Lua script, which Redis runs
// atomically: admission reads all of a request's counters and takes from
// them only if all admit it. Time is the Redis server's (TIME), so that
// replicas with skewed clocks agree on refills and windows.
//
// Keys: a token bucket is a hash {tokens, ts} at "<prefix>:<limit>:r:<id>"
// (requests) or ":t:" (tokens) that expires once it would be full again; a
// budget window is an integer at "<prefix>:<budget>:b:<id>:<window
// number>" that expires a second after its window ends.
type redisStore struct {
	pool *resp.Pool
}

// redisAdmit is the admission script. KEYS are the counters; ARGV holds
// five values per key: kind (0 token bucket, 1 fixed window), capacity,
// window in ms, units needed (buckets), units taken. It returns
// {admitted, now in ms, level 1, …, level n}, levels as strings: the
// units a bucket held, or a window had used, before anything was taken.
var redisAdmit = resp.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local levels = {}
local ok = 1
for i = 1, #KEYS do
  local a = (i - 1) * 5
  local kind, cap, win, need = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), tonumber(ARGV[a+4])
  local level
  if kind == 0 then
    local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    level = cap
    if v[1] then
      level = math.min(cap, tonumber(v[1]) + math.max(now - tonumber(v[2]), 0) * cap / win)
    end
    if level < need then ok = 0 end
  else
    level = tonumber(redis.call('GET', KEYS[i] .. ':' .. math.floor(now / win)) or '0')
    if level >= cap then ok = 0 end
  end
  levels[i] = level
end
if ok == 1 then
  for i = 1, #KEYS do
    local a = (i - 1) * 5
    local kind, cap, win, take = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), tonumber(ARGV[a+5])
    if take > 0 then
      if kind == 0 then
        local level = levels[i] - take
        redis.call('HSET', KEYS[i], 'tokens', tostring(level), 'ts', now)
        redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) * win / cap) + 1000)
      else
        local k = KEYS[i] .. ':' .. math.floor(now / win)
        redis.call('INCRBY', k, take)
        redis.call('PEXPIRE', k, win - now % win + 1000)
      end
    end
  end
end
local out = {ok, now}
for i = 1, #KEYS do out[i + 2] = tostring(levels[i]) end
return out
`)

// redisCharge charges usage. KEYS are the counters; ARGV holds four
// values per key: kind, capacity, window in ms, amount. Buckets go into
// debt: a negative level that refills like any other.
var redisCharge = resp.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  local a = (i - 1) * 4
  local kind, cap, win, amount = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), tonumber(ARGV[a+4])
  if kind == 0 then
    local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local level = cap
    if v[1] then
      level = math.min(cap, tonumber(v[1]) + math.max(now - tonumber(v[2]), 0) * cap / win)
    end
    level = level - amount
    redis.call('HSET', KEYS[i], 'tokens', tostring(level), 'ts', now)
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) * win / cap) + 1000)
  else
    local k = KEYS[i] .. ':' .. math.floor(now / win)
    redis.call('INCRBY', k, amount)
    redis.call('PEXPIRE', k, win - now % win + 1000)
  end
end
return 1
`)

func newRedisStore(cfg *Redis, password string) *redisStore {
	return &redisStore{pool: resp.New(resp.Config{
		Addr:     cfg.Addr,
		Password: password,
		DB:       cfg.DB,
		Timeout:  cfg.Timeout,
		MaxConns: cfg.MaxConns,
	})}
}

func (s *redisStore) admit(ctx context.Context, now time.Time, cs []counter) (time.Time, bool, error) {
	var kbuf [6]string
	var abuf [30]string
	keys, args := kbuf[:0], abuf[:0]
	for i := range cs {
		c := &cs[i]
		keys = append(keys, c.key)
		args = append(args, strconv.Itoa(int(c.kind)), strconv.FormatInt(c.capacity, 10),
			strconv.FormatInt(c.window.Milliseconds(), 10), strconv.FormatInt(c.need, 10), strconv.FormatInt(c.take, 10))
	}
	v, err := redisAdmit.Run(ctx, s.pool, keys, args...)
	if err != nil {
		return now, false, err
	}
	if len(v.Array) != 2+len(cs) {
		return now, false, fmt.Errorf("redis: admission script returned %d values for %d counters", len(v.Array), len(cs))
	}
	now = time.UnixMilli(v.Array[1].Int)
	for i := range cs {
		c := &cs[i]
		level, err := strconv.ParseFloat(v.Array[2+i].String(), 64)
		if err != nil {
			return now, false, fmt.Errorf("redis: admission script: level %q", v.Array[2+i].Str)
		}
		c.level = level
		if c.kind == bucketKind {
			c.ok = level >= float64(c.need)
		} else {
			c.ok = level < float64(c.capacity)
		}
	}
	return now, v.Array[0].Int == 1, nil
}

func (s *redisStore) charge(ctx context.Context, now time.Time, cs []charge) error {
	var kbuf [6]string
	var abuf [24]string
	keys, args := kbuf[:0], abuf[:0]
	for _, c := range cs {
		keys = append(keys, c.key)
		args = append(args, strconv.Itoa(int(c.kind)), strconv.FormatInt(c.capacity, 10),
			strconv.FormatInt(c.window.Milliseconds(), 10), strconv.FormatInt(c.amount, 10))
	}
	_, err := redisCharge.Run(ctx, s.pool, keys, args...)
	return err
}

func (s *redisStore) close() error { return s.pool.Close() }
