package filter

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// mwLog returns middleware that records around its next handler.
func mwLog(log *eventLog, name string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.add(name + ".before")
			w.Header().Set("X-Mw", name)
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), mwKey{}, name)))
			log.add(name + ".after")
		})
	}
}

type mwKey struct{}

// blockingMw answers 403 without calling next.
func blockingMw(log *eventLog) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.add("m.block")
			http.Error(w, "blocked", http.StatusForbidden)
		})
	}
}

// TestFromMiddlewareOrdering checks where a middleware sits among phase
// filters. The last chunk of a filter declared before the middleware comes
// after the middleware returns, since it may still write.
func TestFromMiddlewareOrdering(t *testing.T) {
	tests := []struct {
		name     string
		mw       func(*eventLog) Filter
		handler  bool // Chain.Handler instead of Serve
		wantLog  []string
		wantCode int
		wantBody string
	}{
		{
			name: "serve",
			mw:   func(l *eventLog) Filter { return FromMiddleware("m", mwLog(l, "m")) },
			wantLog: []string{
				"a.req", "m.before", "b.req", "upstream", "b.resp", "a.resp",
				"b.eos", "m.after", "a.eos", "b.done", "a.done",
			},
			wantCode: 200, wantBody: "ok",
		},
		{
			name:    "handler",
			mw:      func(l *eventLog) Filter { return FromMiddleware("m", mwLog(l, "m")) },
			handler: true,
			wantLog: []string{
				"a.req", "m.before", "b.req", "upstream", "b.resp", "a.resp",
				"b.eos", "m.after", "a.eos", "b.done", "a.done",
			},
			wantCode: 200, wantBody: "ok",
		},
		{
			name:     "short circuit",
			mw:       func(l *eventLog) Filter { return FromMiddleware("m", blockingMw(l)) },
			wantLog:  []string{"a.req", "m.block", "a.resp", "a.eos", "a.done"},
			wantCode: 403, wantBody: "blocked\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &eventLog{}
			c := mustChain(t, &recFilter{name: "a", log: log}, tt.mw(log), &recFilter{name: "b", log: log})
			w := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "/", nil)
			var sawCtx any
			if tt.handler {
				c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					log.add("upstream")
					sawCtx = r.Context().Value(mwKey{})
					io.WriteString(w, "ok")
				})).ServeHTTP(w, r)
			} else {
				up := UpstreamFunc(func(ctx context.Context, x *Exchange) (*http.Response, error) {
					sawCtx = x.Out.Context().Value(mwKey{})
					return (&staticUpstream{status: 200, body: "ok", log: log}).RoundTrip(ctx, x)
				})
				c.Serve(w, NewExchange(r), up)
			}
			if diff := cmp.Diff(tt.wantLog, log.get()); diff != "" {
				t.Errorf("phases (-want +got):\n%s", diff)
			}
			if w.Code != tt.wantCode || w.Body.String() != tt.wantBody {
				t.Errorf("response %d %q, want %d %q", w.Code, w.Body.String(), tt.wantCode, tt.wantBody)
			}
			if tt.wantCode == 200 {
				if sawCtx != "m" {
					t.Errorf("request after the middleware has context value %v, want %q", sawCtx, "m")
				}
				if diff := cmp.Diff([]string{"b", "a"}, w.Header()["X-Seen"]); diff != "" {
					t.Errorf("X-Seen (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestHandlerLocalReply(t *testing.T) {
	log := &eventLog{}
	c := mustChain(t,
		&recFilter{name: "a", log: log},
		&recFilter{name: "b", log: log, reqErr: Reply(401, "who are you")},
	)
	called := false
	h := c.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if called {
		t.Errorf("next was called after a local reply")
	}
	if w.Code != 401 || w.Body.String() != "who are you" {
		t.Errorf("response %d %q, want 401 %q", w.Code, w.Body.String(), "who are you")
	}
	want := []string{"a.req", "b.req", "b.resp", "a.resp", "b.eos", "a.eos", "b.done", "a.done"}
	if diff := cmp.Diff(want, log.get()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
}

func TestAsMiddleware(t *testing.T) {
	log := &eventLog{}
	h := AsMiddleware(&recFilter{name: "a", log: log})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add("handler")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "plain")
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if diff := cmp.Diff([]string{"a.req", "handler", "a.resp", "a.eos", "a.done"}, log.get()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if w.Code != 200 || w.Body.String() != "plain" || w.Header().Get("X-Seen") != "a" {
		t.Errorf("response %d %q X-Seen %q, want 200 %q %q", w.Code, w.Body.String(), w.Header().Get("X-Seen"), "plain", "a")
	}

	upperMw := AsMiddleware(upper)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "shout")
	}))
	w = httptest.NewRecorder()
	upperMw.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Body.String() != "SHOUT" || w.Header().Get("Content-Length") != "" {
		t.Errorf("body %q Content-Length %q, want %q and none", w.Body.String(), w.Header().Get("Content-Length"), "SHOUT")
	}
}

// TestWrappersResponseController checks that Flush and Hijack reach the
// real writer through every wrapper the package makes.
func TestWrappersResponseController(t *testing.T) {
	log := &eventLog{}
	passMw := func(next http.Handler) http.Handler { return next }
	wraps := []struct {
		name string
		wrap func(http.Handler) http.Handler
	}{
		{"Handler", func(h http.Handler) http.Handler { return mustChain(t, &recFilter{name: "a", log: log}).Handler(h) }},
		{"AsMiddleware", AsMiddleware(&recFilter{name: "a", log: log})},
		{"FromMiddleware", func(h http.Handler) http.Handler {
			return mustChain(t, &recFilter{name: "a", log: log}, FromMiddleware("m", passMw), upper).Handler(h)
		}},
	}
	for _, wr := range wraps {
		t.Run(wr.name+"/flush", func(t *testing.T) {
			next := make(chan struct{})
			srv := httptest.NewServer(wr.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				io.WriteString(w, "first\n")
				if err := rc.Flush(); err != nil {
					t.Errorf("Flush: %v", err)
					return
				}
				if err := rc.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
					t.Errorf("SetWriteDeadline: %v", err)
				}
				select {
				case <-next:
				case <-time.After(10 * time.Second):
				}
				io.WriteString(w, "second\n")
			})))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if err != nil || (line != "first\n" && line != "FIRST\n") {
				t.Fatalf("first line %q, %v", line, err)
			}
			close(next)
			if line, err = br.ReadString('\n'); err != nil || (line != "second\n" && line != "SECOND\n") {
				t.Fatalf("second line %q, %v", line, err)
			}
		})
		t.Run(wr.name+"/hijack", func(t *testing.T) {
			srv := httptest.NewServer(wr.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("Hijack: %v", err)
					return
				}
				defer conn.Close()
				brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
				brw.Flush()
			})))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != "hijacked" {
				t.Errorf("body %q, %v; want %q", b, err, "hijacked")
			}
		})
	}
}

func TestHandlerRequestBody(t *testing.T) {
	upperReq := RequestBodyFunc{FilterName: "upper", Func: func(_ context.Context, _ *Exchange, c *Chunk) error {
		c.Data = bytes.ToUpper(c.Data)
		return nil
	}}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	tests := []struct {
		name string
		h    http.Handler
	}{
		{"Handler", mustChain(t, upperReq).Handler(echo)},
		{"AsMiddleware", AsMiddleware(upperReq)(echo)},
		{"before middleware", mustChain(t, upperReq, FromMiddleware("m", func(h http.Handler) http.Handler { return h })).Handler(echo)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			tt.h.ServeHTTP(w, httptest.NewRequest("POST", "/", strings.NewReader("quiet")))
			if got := w.Body.String(); got != "QUIET" {
				t.Errorf("body = %q, want %q", got, "QUIET")
			}
		})
	}
}
