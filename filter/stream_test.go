package filter

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestServeStreaming checks that the client sees event N before the
// upstream writes event N+1, over an HTTP/1.1 and an h2 downstream.
func TestServeStreaming(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			const events = 5
			next := make(chan struct{})
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(200)
				rc := http.NewResponseController(w)
				rc.Flush()
				for i := range events {
					select {
					case <-next:
					case <-r.Context().Done():
						return
					case <-time.After(10 * time.Second):
						return
					}
					fmt.Fprintf(w, "data: %d\n\n", i)
					rc.Flush()
				}
			}))
			defer upstream.Close()

			var chunks int
			var mu sync.Mutex
			count := ResponseBodyFunc{FilterName: "count", Func: func(_ context.Context, _ *Exchange, c *Chunk) error {
				if !c.Flush {
					return fmt.Errorf("chunk of a stream without Flush")
				}
				mu.Lock()
				chunks++
				mu.Unlock()
				return nil
			}}
			done := make(chan error, 1)
			c := mustChain(t, DoneFunc{FilterName: "done", Func: func(_ context.Context, x *Exchange) { done <- x.Err }}, count)
			srv, client := startProxy(t, c, newProxyUpstream(t, upstream.URL), h2, nil)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
				t.Fatalf("downstream protocol major = %d, want %d", resp.ProtoMajor, want)
			}
			br := bufio.NewReader(resp.Body)
			for i := range events {
				select { // allow event i, and only it
				case next <- struct{}{}:
				case <-ctx.Done():
					t.Fatalf("event %d: upstream gone: %v", i, errOf(done))
				}
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if want := fmt.Sprintf("data: %d\n", i); line != want {
					t.Fatalf("event %d = %q, want %q", i, line, want)
				}
				if _, err := br.ReadString('\n'); err != nil {
					t.Fatalf("event %d end: %v", i, err)
				}
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("after the events: %q, %v; want EOF", rest, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if chunks < events {
				t.Errorf("body filter saw %d chunks, want at least %d", chunks, events)
			}
		})
	}
}

func TestServeTrailers(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		io.WriteString(w, "payload")
		w.Header().Set("X-Checksum", "abc123")
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	}))
	defer upstream.Close()
	for _, tt := range []struct {
		name    string
		h2      bool
		filters []Filter
	}{
		{"h1", false, nil},
		{"h2", true, nil},
		{"h2 with body filter", true, []Filter{upper}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := mustChain(t, tt.filters...)
			srv, client := startProxy(t, c, newProxyUpstream(t, upstream.URL), tt.h2, nil)
			resp, err := client.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if strings.ToLower(string(b)) != "payload" {
				t.Errorf("body = %q, want payload", b)
			}
			for k, want := range map[string]string{"X-Checksum": "abc123", "Grpc-Status": "0"} {
				if got := resp.Trailer.Get(k); got != want {
					t.Errorf("trailer %s = %q, want %q (trailers %v)", k, got, want, resp.Trailer)
				}
			}
		})
	}
}

func TestServeWebSocket(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		for {
			typ, msg, err := conn.Read(ctx)
			if err != nil {
				return
			}
			if err := conn.Write(ctx, typ, append([]byte("echo "), msg...)); err != nil {
				return
			}
		}
	}))
	defer upstream.Close()

	done := make(chan *Exchange, 1)
	c := mustChain(t, DoneFunc{FilterName: "done", Func: func(_ context.Context, x *Exchange) { done <- x }})
	srv, _ := startProxy(t, c, newProxyUpstream(t, upstream.URL), false, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	for _, m := range []string{"one", "two"} {
		if err := conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := "echo " + m; string(got) != want {
			t.Errorf("read %q, want %q", got, want)
		}
	}
	conn.Close(websocket.StatusNormalClosure, "")
	select {
	case x := <-done:
		if x.Status != http.StatusSwitchingProtocols || x.BytesSent == 0 || x.BytesReceived == 0 {
			t.Errorf("exchange status %d, sent %d, received %d; want 101 and bytes both ways", x.Status, x.BytesSent, x.BytesReceived)
		}
	case <-ctx.Done():
		t.Fatal("OnDone not called after the WebSocket closed")
	}
}

// TestServeUpstreamReset checks that an upstream failing mid-body aborts
// the downstream response instead of ending it cleanly.
func TestServeUpstreamReset(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial") // chunked: a stream, so headers go out first
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer upstream.Close()
	done := make(chan *Exchange, 1)
	c := mustChain(t, DoneFunc{FilterName: "done", Func: func(_ context.Context, x *Exchange) { done <- x }})
	srv, client := startProxy(t, c, newProxyUpstream(t, upstream.URL), false, nil)
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(b) != "partial" {
		t.Errorf("reading the body: %q, %v; want %q and an error", b, err, "partial")
	}
	select {
	case x := <-done:
		if !x.Flags.Has(FlagUpstreamConnectionTermination) || x.Err == nil {
			t.Errorf("exchange flags %v err %v, want UC and an error", x.Flags, x.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnDone not called")
	}
}

// brokenBody yields data, then fails with err.
type brokenBody struct {
	data string
	err  error
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.data == "" {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *brokenBody) Close() error { return nil }

// TestServeUpstreamEndsStream checks that a response body error carrying
// a *ReplyError aborts the stream with the reply's flags and details.
func TestServeUpstreamEndsStream(t *testing.T) {
	up := UpstreamFunc(func(_ context.Context, x *Exchange) (*http.Response, error) {
		re := &ReplyError{Status: http.StatusGatewayTimeout, Flags: FlagStreamIdleTimeout, Details: "stream_idle_timeout"}
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: -1, Request: x.Out,
			Body: &brokenBody{data: "partial", err: fmt.Errorf("stream idle timeout: %w", re)}}, nil
	})
	done := make(chan *Exchange, 1)
	c := mustChain(t, DoneFunc{FilterName: "done", Func: func(_ context.Context, x *Exchange) { done <- x }})
	srv, client := startProxy(t, c, up, false, nil)
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(b) != "partial" {
		t.Errorf("reading the body: %q, %v; want %q and an error", b, err, "partial")
	}
	select {
	case x := <-done:
		if x.Flags != FlagStreamIdleTimeout || x.Details != "stream_idle_timeout" || x.Err == nil {
			t.Errorf("exchange flags %v details %q err %v, want SI, stream_idle_timeout and an error", x.Flags, x.Details, x.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnDone not called")
	}
}

func TestServeConcurrent(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Path", r.URL.Path)
		w.Write(b)
	}))
	defer upstream.Close()
	key := NewKey[string]("path")
	var done sync.WaitGroup
	c := mustChain(t,
		RequestFunc{FilterName: "tag", Func: func(_ context.Context, x *Exchange) error {
			key.Set(x, x.In.URL.Path)
			x.Out.Header.Set("X-Tag", "1")
			return nil
		}},
		ResponseFunc{FilterName: "check", Func: func(_ context.Context, x *Exchange) error {
			p, _ := key.Get(x)
			if x.Resp.Header.Get("X-Path") != p {
				return Reply(500, "mixed up")
			}
			return nil
		}},
		upper,
		DoneFunc{FilterName: "done", Func: func(context.Context, *Exchange) { done.Done() }},
	)
	srv, client := startProxy(t, c, newProxyUpstream(t, upstream.URL), false, nil)
	const workers, per = 50, 10
	done.Add(workers * per)
	errs := make(chan error, workers*per)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range per {
				body := fmt.Sprintf("g%d-r%d", g, i)
				resp, err := client.Post(srv.URL+"/"+body, "text/plain", strings.NewReader(body))
				if err != nil {
					errs <- err
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(b) != strings.ToUpper(body) {
					errs <- fmt.Errorf("%s: got %d %q %v, want 200 %q", body, resp.StatusCode, b, err, strings.ToUpper(body))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	done.Wait()
}

// errOf returns the error on ch, if one is ready.
func errOf(ch chan error) error {
	select {
	case err := <-ch:
		return err
	default:
		return nil
	}
}
