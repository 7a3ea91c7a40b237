package resp_test

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/porticoproxy/portico/llm/internal/resp"
	"github.com/porticoproxy/portico/llm/internal/resp/resptest"
)

func TestReadValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want resp.Value
	}{
		{"+OK\r\n", resp.Value{Kind: resp.SimpleString, Str: []byte("OK")}},
		{"-ERR boom\r\n", resp.Value{Kind: resp.ErrorReply, Str: []byte("ERR boom")}},
		{":-42\r\n", resp.Value{Kind: resp.Integer, Int: -42}},
		{"$5\r\nhe\r\nl\r\n", resp.Value{Kind: resp.BulkString, Str: []byte("he\r\nl")}},
		{"$-1\r\n", resp.Value{Kind: resp.BulkString, Nil: true}},
		{"*-1\r\n", resp.Value{Kind: resp.Array, Nil: true}},
		{"*2\r\n:1\r\n*1\r\n$0\r\n\r\n", resp.Value{Kind: resp.Array, Array: []resp.Value{
			{Kind: resp.Integer, Int: 1},
			{Kind: resp.Array, Array: []resp.Value{{Kind: resp.BulkString, Str: []byte{}}}},
		}}},
	} {
		got, err := resp.ReadValue(bufio.NewReader(strings.NewReader(tc.in)))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q: (-want +got)\n%s", tc.in, diff)
		}
	}
	for _, bad := range []string{"", "+OK\n", "?x\r\n", ":x\r\n", "$3\r\nab\r\n", "$2\r\nabcd", "*2\r\n:1\r\n", "$-2\r\n", strings.Repeat("*1\r\n", 20) + ":1\r\n"} {
		if _, err := resp.ReadValue(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzReadValue(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "*2\r\n$1\r\na\r\n:3\r\n", "$-1\r\n", "-ERR x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := resp.ReadValue(bufio.NewReader(strings.NewReader(string(b))))
		if err == nil && v.Kind == 0 {
			t.Fatal("a value without a kind")
		}
	})
}

func TestAppendCommand(t *testing.T) {
	got := string(resp.AppendCommand(nil, "SET", "k", ""))
	if want := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPoolAgainstRedis(t *testing.T) {
	srv := resptest.Start(t)
	p := resp.New(resp.Config{Addr: srv.Addr, MaxConns: 4, Timeout: time.Second})
	defer p.Close()
	ctx := context.Background()
	if v, err := p.Do(ctx, "SET", "k", "v\r\n1"); err != nil || v.String() != "OK" {
		t.Fatalf("SET: %v %v", v, err)
	}
	if v, err := p.Do(ctx, "GET", "k"); err != nil || v.String() != "v\r\n1" {
		t.Fatalf("GET: %q %v", v.String(), err)
	}
	if v, err := p.Do(ctx, "GET", "missing"); err != nil || !v.Nil {
		t.Fatalf("GET missing: %+v %v", v, err)
	}
	// An error reply keeps the connection usable.
	_, err := p.Do(ctx, "INCR", "k")
	var re resp.Error
	if !errors.As(err, &re) {
		t.Fatalf("INCR on a string: %v", err)
	}
	if v, err := p.Do(ctx, "PING"); err != nil || v.String() != "PONG" {
		t.Fatalf("PING after an error: %v %v", v, err)
	}

	// EVALSHA falls back to EVAL, then the script is cached.
	s := resp.NewScript(`return {KEYS[1], tonumber(ARGV[1]) + 1}`)
	for range 2 {
		v, err := s.Run(ctx, p, []string{"a"}, "41")
		if err != nil || len(v.Array) != 2 || v.Array[0].String() != "a" || v.Array[1].Int != 42 {
			t.Fatalf("script: %+v %v", v, err)
		}
	}

	// Many goroutines over few connections.
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for range 20 {
				if _, err := p.Do(ctx, "INCR", "counter"); err != nil {
					t.Errorf("goroutine %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if v, err := p.Do(ctx, "GET", "counter"); err != nil || v.String() != "640" {
		t.Fatalf("counter = %q %v", v.String(), err)
	}
}

func TestPoolServerDown(t *testing.T) {
	srv := resptest.Start(t)
	p := resp.New(resp.Config{Addr: srv.Addr, Timeout: 200 * time.Millisecond})
	defer p.Close()
	if _, err := p.Do(context.Background(), "PING"); err != nil {
		t.Fatal(err)
	}
	p2 := resp.New(resp.Config{Addr: "127.0.0.1:1", Timeout: 200 * time.Millisecond})
	defer p2.Close()
	if _, err := p2.Do(context.Background(), "PING"); err == nil {
		t.Fatal("no error from a closed port")
	}
	p.Close()
	if _, err := p.Do(context.Background(), "PING"); !errors.Is(err, resp.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
