package llm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/porticoproxy/portico/filter"
)

// Scope says which requests a Limit or Budget counts and how it splits
// them into counters.
//
// Key picks whose usage a counter holds:
//
//   - "" (or "global"): one counter for every request;
//   - "api_key": the client's credential (Authorization bearer token,
//     x-api-key or api-key header), stored only as a SHA-256 prefix;
//   - "header:<Name>": the value of a request header, such as a user or
//     tenant id set by an authenticating filter before the llm filter;
//   - "client_ip": the address of the direct peer.
//
// KeyFunc, when set, replaces Key: any identity the exchange carries (a
// JWT claim another filter stored, say). Requests without the chosen key
// share one counter. Models and Routes restrict the requests counted;
// PerModel and PerRoute keep a separate counter per requested model or
// per route.
type Scope struct {
	// Key selects the counter's identity (see Scope).
	Key string `json:"key,omitempty"`
	// KeyFunc, when set, computes the identity instead of Key. It runs on
	// the request path, concurrently.
	KeyFunc func(*filter.Exchange) string `json:"-"`
	// Models restricts the scope to requests for these model names or
	// "prefix*" patterns (the name the client asked for); empty means
	// every model.
	Models []string `json:"models,omitempty"`
	// Routes restricts the scope to these route names; empty means every
	// route.
	Routes []string `json:"routes,omitempty"`
	// PerModel keeps a counter per requested model.
	PerModel bool `json:"per_model,omitempty"`
	// PerRoute keeps a counter per route.
	PerRoute bool `json:"per_route,omitempty"`
}

// Limit is a rate limit on requests and tokens per Window, per Scope.
//
// Each of Requests and Tokens is a token bucket holding that many units,
// refilled continuously at that many per Window (so a full bucket allows
// a burst of the whole allowance, and usage ages out smoothly rather than
// at window boundaries — a sliding window without its bookkeeping).
// Local limits use golang.org/x/time/rate buckets; with Config.Redis the
// same buckets live in Redis, updated by Lua scripts that check and
// charge atomically, so replicas share them.
//
// Admission: a request takes one unit of each Requests bucket, and is
// admitted only if every bucket that applies has a unit for it and every
// Tokens bucket holds at least the request's estimated prompt tokens
// (about four bytes of prompt text per token, capped at the bucket's
// size). Tokens are charged when the response ends, from its Usage, so
// an admitted request — a stream above all — is never cut when it runs
// over; the bucket goes into debt and later requests wait until it has
// refilled. The in-flight slack is therefore the usage of the requests
// already admitted when the bucket ran dry: at most the concurrent
// requests' tokens beyond their estimates.
//
// Over the limit the gateway answers 429 in the client's error schema,
// with Retry-After (and retry-after-ms) and OpenAI's x-ratelimit-limit-*,
// x-ratelimit-remaining-* and x-ratelimit-reset-* headers for requests
// and tokens, which every response carries too.
type Limit struct {
	// Name identifies the limit in counters, Redis keys, errors and
	// metrics; required and unique among limits and budgets.
	Name string `json:"name"`
	Scope
	// Window is the period Requests and Tokens are allowed per: a minute,
	// an hour, a day (time.Minute …; in JSON a Go duration, "1m").
	// Required, at least a second.
	Window time.Duration `json:"window"`
	// Requests is the number of requests allowed per Window; zero means
	// no request limit.
	Requests int64 `json:"requests,omitempty"`
	// Tokens is the number of tokens allowed per Window; zero means no
	// token limit.
	Tokens int64 `json:"tokens,omitempty"`
	// Count selects the tokens Tokens counts: "total" (the default),
	// "input" or "output" (Usage's convention: input includes cached
	// tokens).
	Count string `json:"count,omitempty"`
}

// UnmarshalJSON reads Window as a Go duration string ("1m", "24h").
func (l *Limit) UnmarshalJSON(b []byte) error {
	type plain Limit
	aux := struct {
		*plain
		Window jsonDuration `json:"window"`
	}{plain: (*plain)(l)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	l.Window = time.Duration(aux.Window)
	return nil
}

// Redis shares the counters of limits and budgets across gateway replicas
// through one Redis server (or a primary with replicas; Redis Cluster is
// not supported: a request's counters are checked in one script).
type Redis struct {
	// Addr is the server's host:port; required.
	Addr string `json:"addr"`
	// Password is sent with AUTH; prefer PasswordEnv.
	Password Secret `json:"password,omitempty"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string `json:"password_env,omitempty"`
	// DB selects a database.
	DB int `json:"db,omitempty"`
	// Prefix starts every key; empty means "portico:llm".
	Prefix string `json:"prefix,omitempty"`
	// Timeout bounds each Redis call; zero means 100 ms.
	Timeout time.Duration `json:"timeout,omitempty"`
	// MaxConns bounds the connections to Redis; zero means 64.
	MaxConns int `json:"max_conns,omitempty"`
	// FailClosed makes the gateway refuse requests (503 in the client's
	// schema) when Redis cannot be reached; by default it admits them
	// (fail open). Either way the failure is counted in the
	// portico.llm.limit.decisions metric, and usage that cannot be
	// charged is dropped.
	FailClosed bool `json:"fail_closed,omitempty"`
}

// UnmarshalJSON reads Timeout as a Go duration string ("100ms").
func (r *Redis) UnmarshalJSON(b []byte) error {
	type plain Redis
	aux := struct {
		*plain
		Timeout jsonDuration `json:"timeout"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	r.Timeout = time.Duration(aux.Timeout)
	return nil
}

// jsonDuration is a duration in JSON: a Go duration string or a number of
// nanoseconds (time.Duration's own encoding).
type jsonDuration time.Duration

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = jsonDuration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string such as \"1m\", got %s", b)
	}
	*d = jsonDuration(n)
	return nil
}

func (s *Scope) validate() error {
	switch k := s.Key; {
	case k == "", k == "global", k == "api_key", k == "client_ip":
	case strings.HasPrefix(k, "header:"):
		if !validHeaderName(k[len("header:"):]) {
			return fmt.Errorf("key: %q: invalid header name", k)
		}
	default:
		return fmt.Errorf("key: %q: want \"\", \"api_key\", \"client_ip\" or \"header:<Name>\"", k)
	}
	for _, m := range s.Models {
		if m == "" || strings.Contains(strings.TrimSuffix(m, "*"), "*") {
			return fmt.Errorf("models: %q: a name or a pattern with one trailing *", m)
		}
	}
	return nil
}

func (l *Limit) validate() error {
	switch {
	case l.Window < time.Second:
		return fmt.Errorf("window: %v: at least 1s", l.Window)
	case l.Requests < 0 || l.Tokens < 0:
		return errors.New("requests and tokens must not be negative")
	case l.Requests == 0 && l.Tokens == 0:
		return errors.New("set requests, tokens or both")
	}
	switch l.Count {
	case "", "total", "input", "output":
	default:
		return fmt.Errorf("count: %q: want total, input or output", l.Count)
	}
	return l.Scope.validate()
}

func (r *Redis) validate() error {
	if r.Addr == "" {
		return errors.New("addr: required")
	}
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		return fmt.Errorf("addr: %v", err)
	}
	if r.Password != "" && r.PasswordEnv != "" {
		return errors.New("at most one of password and password_env")
	}
	if r.Timeout < 0 || r.MaxConns < 0 {
		return errors.New("timeout and max_conns must not be negative")
	}
	return nil
}

// scope is a compiled Scope.
type scope struct {
	keyKind  byte // 0 global, 'a' api key, 'h' header, 'i' client ip, 'f' func
	header   string
	keyFunc  func(*filter.Exchange) string
	models   []string
	routes   []string
	perModel bool
	perRoute bool
}

func compileScope(s Scope) scope {
	c := scope{keyFunc: s.KeyFunc, models: s.Models, routes: s.Routes, perModel: s.PerModel, perRoute: s.PerRoute}
	switch {
	case s.KeyFunc != nil:
		c.keyKind = 'f'
	case s.Key == "api_key":
		c.keyKind = 'a'
	case s.Key == "client_ip":
		c.keyKind = 'i'
	case strings.HasPrefix(s.Key, "header:"):
		c.keyKind, c.header = 'h', http.CanonicalHeaderKey(s.Key[len("header:"):])
	}
	return c
}

// matchName reports whether name matches one of patterns (exact names and
// "prefix*").
func matchName(patterns []string, name string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}

func (s *scope) applies(model, route string) bool {
	if len(s.models) > 0 && !matchName(s.models, model) {
		return false
	}
	if len(s.routes) > 0 {
		for _, r := range s.routes {
			if r == route {
				return true
			}
		}
		return false
	}
	return true
}

// identity appends the counter identity of a request to dst: the key
// value, then the model and route when the scope splits by them. Values
// are escaped so that the parts cannot run into each other, and long ones
// hashed.
func (s *scope) identity(dst []byte, x *filter.Exchange, ident *requestIdentity, model, route string) []byte {
	switch s.keyKind {
	case 'a':
		dst = appendKeyPart(dst, ident.apiKey(x))
	case 'h':
		dst = appendKeyPart(dst, x.In.Header.Get(s.header))
	case 'i':
		dst = appendKeyPart(dst, ident.clientIP(x))
	case 'f':
		dst = appendKeyPart(dst, s.keyFunc(x))
	default:
		dst = append(dst, '*')
	}
	if s.perModel {
		dst = append(dst, ':')
		dst = appendKeyPart(dst, model)
	}
	if s.perRoute {
		dst = append(dst, ':')
		dst = appendKeyPart(dst, route)
	}
	return dst
}

// appendKeyPart appends v, "-" when empty, escaping ':' and '%'; values
// over 96 bytes become their SHA-256 prefix.
func appendKeyPart(dst []byte, v string) []byte {
	switch {
	case v == "":
		return append(dst, '-')
	case len(v) > 96:
		h := sha256.Sum256([]byte(v))
		dst = append(dst, "h."...)
		return hex.AppendEncode(dst, h[:12])
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case ':', '%':
			dst = append(dst, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// requestIdentity caches the identities of one request that cost
// something to compute.
type requestIdentity struct {
	key    string
	keyOK  bool
	ip     string
	ipDone bool
}

// apiKey returns the SHA-256 prefix of the client's credential, or "".
// The credential itself never reaches a counter key, Redis or a log.
func (r *requestIdentity) apiKey(x *filter.Exchange) string {
	if r.keyOK {
		return r.key
	}
	r.keyOK = true
	h := x.In.Header
	v := h.Get("Authorization")
	if b, ok := strings.CutPrefix(v, "Bearer "); ok {
		v = b
	} else if v == "" {
		if v = h.Get("X-Api-Key"); v == "" {
			v = h.Get("Api-Key")
		}
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(v))
	r.key = "k." + hex.EncodeToString(sum[:12])
	return r.key
}

func (r *requestIdentity) clientIP(x *filter.Exchange) string {
	if !r.ipDone {
		r.ipDone = true
		r.ip = x.In.RemoteAddr
		if host, _, err := net.SplitHostPort(r.ip); err == nil {
			r.ip = host
		}
	}
	return r.ip
}

// counterKind is how a counter counts.
type counterKind uint8

const (
	// bucketKind is a token bucket: capacity units, refilled at capacity
	// per window.
	bucketKind counterKind = iota
	// windowKind is a fixed window: at most capacity units per window,
	// windows aligned to the Unix epoch.
	windowKind
)

// What a counter measures, for headers, charges and errors.
const (
	measureRequests uint8 = iota
	measureTokens
	measureCost // nano-dollars
)

// counter is one counter a request is checked against.
type counter struct {
	key      string
	kind     counterKind
	measure  uint8
	count    uint8 // tokens counted: 0 total, 1 input, 2 output
	capacity int64
	window   time.Duration
	need     int64 // units the counter must hold for admission (buckets)
	take     int64 // units taken at admission
	name     string
	budget   bool

	// Results of admission.
	level float64 // units held (buckets) or used (windows) before taking
	ok    bool
}

// remaining is the counter's allowance left after admission.
func (c *counter) remaining() int64 {
	switch c.kind {
	case bucketKind:
		return max(int64(math.Floor(c.level))-c.take, 0)
	default:
		return max(c.capacity-int64(c.level)-c.take, 0)
	}
}

// untilFull is how long until a bucket is full again, or a window resets.
func (c *counter) untilFull(now time.Time) time.Duration {
	switch c.kind {
	case bucketKind:
		missing := float64(c.capacity) - (c.level - float64(c.take))
		if missing <= 0 {
			return 0
		}
		return time.Duration(missing / float64(c.capacity) * float64(c.window))
	default:
		return windowEnd(now, c.window).Sub(now)
	}
}

// wait is how long until the counter would admit the request.
func (c *counter) wait(now time.Time) time.Duration {
	switch c.kind {
	case bucketKind:
		missing := float64(c.need) - c.level
		if missing <= 0 {
			return 0
		}
		return time.Duration(math.Ceil(missing / float64(c.capacity) * float64(c.window)))
	default:
		return windowEnd(now, c.window).Sub(now)
	}
}

// windowEnd returns the end of the fixed window holding now.
func windowEnd(now time.Time, window time.Duration) time.Time {
	ms := now.UnixMilli()
	w := window.Milliseconds()
	return time.UnixMilli((ms/w + 1) * w)
}

// charge is an amount charged to a counter when a request ends.
type charge struct {
	key      string
	kind     counterKind
	capacity int64
	window   time.Duration
	amount   int64
}

// counterStore keeps counters: in the process (localStore) or in Redis
// (redisStore). Both are safe for concurrent use.
type counterStore interface {
	// admit reads every counter's level into cs[i].level and, when every
	// counter admits the request, takes cs[i].take from each, all at
	// once. It reports whether the request was admitted, and the time it
	// judged by (the Redis server's clock for redisStore).
	admit(ctx context.Context, now time.Time, cs []counter) (time.Time, bool, error)
	// charge adds usage to counters; buckets may go into debt.
	charge(ctx context.Context, now time.Time, cs []charge) error
	close() error
}

// limiter is the compiled Limits and Budgets with their store.
type limiter struct {
	limits     []compiledLimit
	budgets    []compiledBudget
	store      counterStore
	failClosed bool
	prefix     string
}

type compiledLimit struct {
	name     string
	scope    scope
	window   time.Duration
	requests int64
	tokens   int64
	count    uint8
}

// admission is what a request's admission left for its response headers
// and its charge.
type admission struct {
	counters []counter
	buf      [6]counter
	now      time.Time
	checked  bool // counters were read (the store answered)
}

// admitLimits checks the request against the limits and budgets that
// apply to it. It returns a local reply when the request is refused.
func (g *Gateway) admitLimits(ctx context.Context, x *filter.Exchange, api API, call *Call) error {
	l := g.lim
	ps := &call.st.pol
	adm := &ps.adm
	adm.counters = adm.buf[:0]
	route := ""
	if x.Route != nil {
		route = x.Route.Name()
	}
	model := call.RequestModel
	var ident requestIdentity
	var kb [128]byte // ordinary keys fit: no allocation to build them
	key := kb[:0]
	var estimate int64 = -1
	for i := range l.limits {
		cl := &l.limits[i]
		if !cl.scope.applies(model, route) {
			continue
		}
		key = append(key[:0], l.prefix...)
		key = append(key, ':')
		key = append(key, cl.name...)
		key = append(key, ":r:"...)
		n := len(key)
		key = cl.scope.identity(key, x, &ident, model, route)
		if cl.requests > 0 {
			adm.counters = append(adm.counters, counter{key: string(key), kind: bucketKind, measure: measureRequests,
				capacity: cl.requests, window: cl.window, need: 1, take: 1, name: cl.name})
		}
		if cl.tokens > 0 {
			key[n-2] = 't'
			if estimate < 0 {
				estimate = admissionEstimate(call.st.body)
			}
			adm.counters = append(adm.counters, counter{key: string(key), kind: bucketKind, measure: measureTokens, count: cl.count,
				capacity: cl.tokens, window: cl.window, need: min(max(estimate, 1), cl.tokens), name: cl.name})
		}
	}
	for i := range l.budgets {
		b := &l.budgets[i]
		if !b.scope.applies(model, route) {
			continue
		}
		key = append(key[:0], l.prefix...)
		key = append(key, ':')
		key = append(key, b.name...)
		key = append(key, ":b:"...)
		key = b.scope.identity(key, x, &ident, model, route)
		adm.counters = append(adm.counters, counter{key: string(key), kind: windowKind, measure: b.measure,
			capacity: b.capacity, window: b.window, name: b.name, budget: true})
	}
	if len(adm.counters) == 0 {
		return nil
	}
	// The store bounds its own calls (Redis.Timeout).
	now, ok, err := l.store.admit(ctx, time.Now(), adm.counters)
	adm.now = now
	if err != nil {
		adm.counters = adm.counters[:0]
		if l.failClosed {
			g.tel.limitDecision(ctx, "store_error_refused", "")
			return reply(api, &apiError{status: http.StatusServiceUnavailable, typ: "api_error",
				message: "the gateway's rate limit service is unavailable"})
		}
		g.tel.limitDecision(ctx, "store_error_admitted", "")
		return nil
	}
	adm.checked = true
	if ok {
		g.tel.limitDecision(ctx, "admitted", "")
		return nil
	}
	// Refused: the counter that frees last says when to come back.
	var wait time.Duration
	var worst *counter
	for i := range adm.counters {
		c := &adm.counters[i]
		if c.ok {
			continue
		}
		if w := c.wait(now); worst == nil || w > wait {
			wait, worst = w, c
		}
	}
	var msg string
	if worst.budget {
		msg = fmt.Sprintf("budget %q is exhausted for this window; it resets in %s", worst.name, formatReset(wait))
	} else {
		what := "requests"
		if worst.measure == measureTokens {
			what = "tokens"
		}
		msg = fmt.Sprintf("rate limit %q reached for %s; please try again in %s", worst.name, what, formatReset(wait))
	}
	g.tel.limitDecision(ctx, "refused", worst.name)
	re := reply(api, &apiError{status: http.StatusTooManyRequests, typ: "rate_limit_error", message: msg})
	re.Flags |= filter.FlagRateLimited
	secs := int64(math.Ceil(wait.Seconds()))
	re.Header.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	re.Header.Set("Retry-After-Ms", strconv.FormatInt(max(wait.Milliseconds(), 1), 10))
	// Nothing was taken: describe the counters as they are.
	for i := range adm.counters {
		adm.counters[i].take = 0
	}
	setRateLimitHeaders(re.Header, adm.counters, now)
	adm.counters = adm.counters[:0] // nothing to charge
	return re
}

// setRateLimitHeaders sets OpenAI's x-ratelimit-* headers from the most
// restrictive request and token counters of cs (the one with the least
// remaining). Budgets are not rate limits and get no headers.
func setRateLimitHeaders(h http.Header, cs []counter, now time.Time) {
	var req, tok *counter
	for i := range cs {
		c := &cs[i]
		if c.budget {
			continue
		}
		switch c.measure {
		case measureRequests:
			if req == nil || c.remaining() < req.remaining() {
				req = c
			}
		case measureTokens:
			if tok == nil || c.remaining() < tok.remaining() {
				tok = c
			}
		}
	}
	if req == nil && tok == nil {
		return
	}
	// The values are written into one buffer and sliced out of one
	// string: two allocations instead of six.
	var buf [128]byte
	b := buf[:0]
	var ends [6]int // where each value ends in b
	for i, c := range [2]*counter{req, tok} {
		if c != nil {
			b = strconv.AppendInt(b, c.capacity, 10)
			ends[3*i] = len(b)
			b = strconv.AppendInt(b, c.remaining(), 10)
			ends[3*i+1] = len(b)
			b = appendReset(b, c.untilFull(now))
		}
		ends[3*i+2] = len(b)
	}
	all := string(b)
	vals := make([]string, 6)
	start := 0
	for i, end := range ends {
		if end >= start { // zero for an absent counter's first two
			vals[i] = all[start:end]
			start = end
		}
	}
	for i, c := range [2]*counter{req, tok} {
		if c == nil {
			continue
		}
		names := rateLimitHeaders[i]
		for j, name := range names {
			h[name] = vals[3*i+j : 3*i+j+1 : 3*i+j+1]
		}
	}
}

// rateLimitHeaders are the x-ratelimit-* names, for the request and the
// token counters: limit, remaining, reset.
var rateLimitHeaders = [2][3]string{
	{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"},
	{"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"},
}

// admissionEstimate estimates a request's prompt tokens for admission
// against token buckets, like estimateTokens (about four bytes of text per
// token, base64 payloads and signatures excluded) but in one pass over the
// bytes, without decoding: it counts the bytes of string values other than
// those of keys that never hold text, and data: URLs.
func admissionEstimate(body []byte) int64 {
	var n int64
	var key []byte // the last object key seen
	for i := 0; i < len(body); i++ {
		if body[i] != '"' {
			continue
		}
		end := stringEnd(body, i)
		if end < 0 {
			break
		}
		j := skipWS(body, end)
		if j < len(body) && body[j] == ':' {
			key = body[i+1 : end-1]
			i = j
			continue
		}
		v := body[i+1 : end-1]
		switch string(key) {
		case "data", "signature", "model", "type", "role", "media_type", "id", "tool_use_id", "tool_call_id":
		default:
			if !bytes.HasPrefix(v, []byte("data:")) {
				n += int64(len(v))
			}
		}
		i = end - 1
	}
	return (n + 3) / 4
}

// formatReset formats a duration as OpenAI's reset headers do ("1s",
// "6m0s", "120ms").
func formatReset(d time.Duration) string { return string(appendReset(nil, d)) }

// appendReset appends formatReset(d) to b.
func appendReset(b []byte, d time.Duration) []byte {
	switch {
	case d <= 0:
		return append(b, "0s"...)
	case d < time.Second:
		return append(strconv.AppendInt(b, max(d.Milliseconds(), 1), 10), "ms"...)
	}
	d = d.Round(time.Millisecond)
	if d%time.Second == 0 && d < time.Minute {
		return append(strconv.AppendInt(b, int64(d/time.Second), 10), 's')
	}
	return append(b, d.String()...)
}

// chargeLimits charges the request's usage and cost to its token buckets
// and budgets, once, when the exchange is done.
func (g *Gateway) chargeLimits(ctx context.Context, call *Call) {
	adm := &call.st.pol.adm
	if g.lim == nil || !adm.checked || len(adm.counters) == 0 {
		return
	}
	var buf [6]charge
	cs := buf[:0]
	u := call.Usage
	for i := range adm.counters {
		c := &adm.counters[i]
		var amount int64
		switch c.measure {
		case measureTokens:
			switch c.count {
			case 1:
				amount = u.InputTokens
			case 2:
				amount = u.OutputTokens
			default:
				amount = u.TotalTokens()
			}
		case measureCost:
			amount = int64(math.Round(call.Cost * 1e9))
		default:
			continue
		}
		if amount <= 0 {
			continue
		}
		cs = append(cs, charge{key: c.key, kind: c.kind, capacity: c.capacity, window: c.window, amount: amount})
	}
	adm.counters = adm.counters[:0]
	if len(cs) == 0 {
		return
	}
	// The exchange is over: its context may be cancelled already. The
	// store bounds its own calls.
	if err := g.lim.store.charge(context.WithoutCancel(ctx), time.Now(), cs); err != nil {
		g.tel.limitDecision(ctx, "charge_dropped", "")
	}
}

// responseLimitHeaders sets the x-ratelimit-* headers of an admitted
// request's response.
func (g *Gateway) responseLimitHeaders(h http.Header, call *Call) {
	adm := &call.st.pol.adm
	if !adm.checked || len(adm.counters) == 0 {
		return
	}
	setRateLimitHeaders(h, adm.counters, adm.now)
}
