package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewChainRejects(t *testing.T) {
	tests := []struct {
		name    string
		filters []Filter
	}{
		{"nil filter", []Filter{DoneFunc{FilterName: "a", Func: func(context.Context, *Exchange) {}}, nil}},
		{"empty name", []Filter{RequestFunc{Func: func(context.Context, *Exchange) error { return nil }}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := NewChain(tt.filters...); err == nil {
				t.Fatalf("NewChain() = %v, nil; want an error", c)
			}
		})
	}
}

func TestServeOrdering(t *testing.T) {
	log := &eventLog{}
	c := mustChain(t, &recFilter{name: "a", log: log}, &recFilter{name: "b", log: log}, &recFilter{name: "c", log: log})
	w := httptest.NewRecorder()
	x := NewExchange(httptest.NewRequest("GET", "/", nil))
	c.Serve(w, x, &staticUpstream{status: 200, body: "hi", log: log})
	want := []string{
		"a.req", "b.req", "c.req", "upstream",
		"c.resp", "b.resp", "a.resp",
		"c.eos", "b.eos", "a.eos",
		"c.done", "b.done", "a.done",
	}
	if diff := cmp.Diff(want, log.get()); diff != "" {
		t.Errorf("phase order (-want +got):\n%s", diff)
	}
	if got := w.Body.String(); got != "hi" {
		t.Errorf("body = %q, want %q", got, "hi")
	}
	if diff := cmp.Diff([]string{"c", "b", "a"}, w.Header()["X-Seen"]); diff != "" {
		t.Errorf("X-Seen (-want +got):\n%s", diff)
	}
	if x.Status != 200 || x.BytesSent != 2 || x.End.IsZero() || x.ResponseStart.IsZero() {
		t.Errorf("exchange: status %d, bytes sent %d, end %v, response start %v; want 200, 2, set, set",
			x.Status, x.BytesSent, x.End, x.ResponseStart)
	}
}

func TestServeLocalReply(t *testing.T) {
	log := &eventLog{}
	limited := Reply(http.StatusTooManyRequests, "slow down").WithHeader("Retry-After", "3").WithFlags(FlagRateLimited)
	c := mustChain(t,
		&recFilter{name: "a", log: log},
		&recFilter{name: "b", log: log, reqErr: limited},
		&recFilter{name: "c", log: log},
	)
	w := httptest.NewRecorder()
	x := NewExchange(httptest.NewRequest("GET", "/", nil))
	c.Serve(w, x, &staticUpstream{status: 200, body: "upstream", log: log})

	want := []string{"a.req", "b.req", "b.resp", "a.resp", "b.eos", "a.eos", "b.done", "a.done"}
	if diff := cmp.Diff(want, log.get()); diff != "" {
		t.Errorf("phase order (-want +got):\n%s", diff)
	}
	if w.Code != 429 || w.Body.String() != "slow down" {
		t.Errorf("reply = %d %q, want 429 %q", w.Code, w.Body.String(), "slow down")
	}
	for k, want := range map[string]string{"Retry-After": "3", "Content-Type": "text/plain; charset=utf-8"} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if !x.Flags.Has(FlagRateLimited) || x.Status != 429 {
		t.Errorf("exchange flags %v status %d, want RL 429", x.Flags, x.Status)
	}
}

func TestServeResponseFilterError(t *testing.T) {
	log := &eventLog{}
	c := mustChain(t,
		&recFilter{name: "a", log: log},
		&recFilter{name: "b", log: log, respErr: Reply(403, "denied")},
		&recFilter{name: "c", log: log},
	)
	w := httptest.NewRecorder()
	x := NewExchange(httptest.NewRequest("GET", "/", nil))
	c.Serve(w, x, &staticUpstream{status: 200, body: "secret"})
	if w.Code != 403 || w.Body.String() != "denied" {
		t.Errorf("reply = %d %q, want 403 %q", w.Code, w.Body.String(), "denied")
	}
	// a ran on the local reply, so only its header is on it.
	if diff := cmp.Diff([]string{"a"}, w.Header()["X-Seen"]); diff != "" {
		t.Errorf("X-Seen (-want +got):\n%s", diff)
	}
}

func TestServeUpstreamError(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantCode  int
		wantFlags Flags
	}{
		{"status error", fmt.Errorf("attempt: %w", statusErr{503, FlagNoHealthyUpstream}), 503, FlagNoHealthyUpstream},
		{"deadline", fmt.Errorf("round trip: %w", context.DeadlineExceeded), 504, FlagUpstreamRequestTimeout},
		{"other", errBoom, 500, 0},
		{"reply", Reply(418, "teapot"), 418, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &eventLog{}
			c := mustChain(t, &recFilter{name: "a", log: log})
			w := httptest.NewRecorder()
			x := NewExchange(httptest.NewRequest("GET", "/", nil))
			c.Serve(w, x, &staticUpstream{err: tt.err})
			if w.Code != tt.wantCode {
				t.Errorf("status = %d, want %d", w.Code, tt.wantCode)
			}
			if x.Flags != tt.wantFlags {
				t.Errorf("flags = %v, want %v", x.Flags, tt.wantFlags)
			}
			if !errors.Is(x.Err, tt.err) {
				t.Errorf("x.Err = %v, want %v", x.Err, tt.err)
			}
			if diff := cmp.Diff([]string{"a.req", "a.resp", "a.eos", "a.done"}, log.get()); diff != "" {
				t.Errorf("phases (-want +got):\n%s", diff)
			}
		})
	}
}

var upper = ResponseBodyFunc{FilterName: "upper", Func: func(_ context.Context, _ *Exchange, c *Chunk) error {
	c.Data = bytes.ToUpper(c.Data)
	return nil
}}

// holdUpper holds the whole body back and uppercases it at the end.
var holdUpper = ResponseBodyFunc{FilterName: "hold", Func: func(_ context.Context, x *Exchange, c *Chunk) error {
	all, err := x.HoldBack(c)
	if err != nil {
		return err
	}
	if c.EOS {
		c.Data = append(bytes.ToUpper(all), '!')
	}
	return nil
}}

func TestServeResponseBody(t *testing.T) {
	tests := []struct {
		name      string
		filters   []Filter
		limit     int64
		wantBody  string
		wantAbort bool
	}{
		{"rewrite", []Filter{upper}, 0, "HELLO WORLD", false},
		{"hold back", []Filter{holdUpper}, 0, "HELLO WORLD!", false},
		{"hold back at limit", []Filter{holdUpper}, 11, "HELLO WORLD!", false},
		{"hold back over limit", []Filter{holdUpper}, 5, "", true},
		{"two filters", []Filter{holdUpper, upper}, 0, "HELLO WORLD!", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doneErr error
			fs := append([]Filter{DoneFunc{FilterName: "done", Func: func(_ context.Context, x *Exchange) { doneErr = x.Err }}}, tt.filters...)
			c := mustChain(t, fs...)
			w := httptest.NewRecorder()
			x := NewExchange(httptest.NewRequest("GET", "/", nil))
			x.BufferLimit = tt.limit
			p := serveRecover(c, w, x, &staticUpstream{status: 200, body: "hello world", header: http.Header{"Content-Length": {"11"}}})
			if tt.wantAbort {
				if p != http.ErrAbortHandler {
					t.Fatalf("panic = %v, want http.ErrAbortHandler", p)
				}
				if !errors.Is(doneErr, ErrBufferLimit) {
					t.Errorf("x.Err in OnDone = %v, want ErrBufferLimit", doneErr)
				}
				return
			}
			if p != nil {
				t.Fatalf("panic = %v", p)
			}
			if got := w.Body.String(); got != tt.wantBody {
				t.Errorf("body = %q, want %q", got, tt.wantBody)
			}
			if got := w.Header().Get("Content-Length"); got != "" {
				t.Errorf("Content-Length = %q, want none (body filters may change the length)", got)
			}
		})
	}
}

func TestServeRequestBody(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Write(b)
	}))
	defer upstream.Close()

	upperReq := RequestBodyFunc{FilterName: "upper", Func: func(_ context.Context, _ *Exchange, c *Chunk) error {
		c.Data = bytes.ToUpper(c.Data)
		return nil
	}}
	holdReq := RequestBodyFunc{FilterName: "hold", Func: func(_ context.Context, x *Exchange, c *Chunk) error {
		all, err := x.HoldBack(c)
		if err != nil {
			return err
		}
		if c.EOS {
			c.Data = append([]byte("<"), append(all, '>')...)
		}
		return nil
	}}
	buffer := RequestFunc{FilterName: "buffer", Func: func(_ context.Context, x *Exchange) error {
		_, err := x.Body()
		return err
	}}
	tests := []struct {
		name     string
		filters  []Filter
		limit    int64
		body     string
		wantCode int
		wantBody string
	}{
		{"rewrite", []Filter{upperReq}, 0, "hello", 200, "HELLO"},
		{"hold back", []Filter{upperReq, holdReq}, 0, "hello", 200, "<HELLO>"},
		{"buffered first", []Filter{buffer, holdReq, upperReq}, 0, "hello", 200, "<HELLO>"},
		{"hold back over limit", []Filter{holdReq}, 3, "hello", 413, "payload too large"},
		{"buffered over limit", []Filter{buffer, upperReq}, 3, "hello", 413, "payload too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustChain(t, tt.filters...)
			srv, client := startProxy(t, c, newProxyUpstream(t, upstream.URL), false, func(x *Exchange) { x.BufferLimit = tt.limit })
			resp, err := client.Post(srv.URL, "text/plain", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode || string(b) != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, b, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestForRoute(t *testing.T) {
	log := &eventLog{}
	a := &recFilter{name: "a", log: log}
	b := &recFilter{name: "b", log: log}
	conf := &confFilter{name: "conf", log: log, tag: "base"}
	c := mustChain(t, a, b, conf)

	tests := []struct {
		name    string
		config  map[string]any
		want    []string
		wantErr bool
	}{
		{"none", nil, []string{"a.req", "b.req", "base.req"}, false},
		{"disable", map[string]any{"b": Disabled}, []string{"a.req", "base.req"}, false},
		{"configure", map[string]any{"conf": "route"}, []string{"a.req", "b.req", "route.req"}, false},
		{"not configurable", map[string]any{"a": 1}, nil, true},
		{"config error", map[string]any{"conf": 7}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log.mu.Lock()
			log.ev = nil
			log.mu.Unlock()
			rc, err := c.ForRoute(tt.config)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ForRoute() error = nil, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			x := NewExchange(httptest.NewRequest("GET", "/", nil))
			rc.Serve(httptest.NewRecorder(), x, &staticUpstream{status: 204})
			var reqs []string
			for _, e := range log.get() {
				if strings.HasSuffix(e, ".req") {
					reqs = append(reqs, e)
				}
			}
			if diff := cmp.Diff(tt.want, reqs); diff != "" {
				t.Errorf("request phases (-want +got):\n%s", diff)
			}
		})
	}
}

// confFilter takes a string per-route config that becomes its tag.
type confFilter struct {
	name, tag string
	log       *eventLog
}

func (f *confFilter) Name() string { return f.name }

func (f *confFilter) OnRequest(ctx context.Context, x *Exchange) error {
	f.log.add(f.tag + ".req")
	return nil
}

func (f *confFilter) ForRoute(config any) (Filter, error) {
	s, ok := config.(string)
	if !ok {
		return nil, fmt.Errorf("config is %T, want string", config)
	}
	return &confFilter{name: f.name, tag: s, log: f.log}, nil
}

var _ RouteConfigurable = (*confFilter)(nil)
