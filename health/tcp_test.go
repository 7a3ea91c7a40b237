package health

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// startTCP serves each accepted connection with serve on a loopback
// listener until the test ends.
func startTCP(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTCPCheck(t *testing.T) {
	// pingPong answers "PING" with noise then "PONG" split across writes.
	pingPong := func(c net.Conn) {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "PING" {
			return
		}
		c.Write([]byte("+noise P"))
		time.Sleep(10 * time.Millisecond)
		c.Write([]byte("ONG\r\n"))
		io.Copy(io.Discard, c)
	}
	tests := []struct {
		name    string
		checker TCP
		serve   func(net.Conn)
		addr    string // overrides the listener
		wantErr string
	}{
		{name: "connect", serve: func(net.Conn) {}},
		{name: "connect refused", addr: "closed", wantErr: "refused"},
		{name: "send expect", checker: TCP{Send: []byte("PING"), Expect: []byte("PONG")}, serve: pingPong},
		{name: "send only", checker: TCP{Send: []byte("PING")}, serve: func(c net.Conn) { io.Copy(io.Discard, c) }},
		{name: "expect only", checker: TCP{Expect: []byte("220 ")}, serve: func(c net.Conn) { c.Write([]byte("220 smtp ready\r\n")) }},
		{name: "wrong reply", checker: TCP{Send: []byte("PING"), Expect: []byte("PONG")},
			serve: func(c net.Conn) { io.ReadFull(c, make([]byte, 4)); c.Write([]byte("-ERR\r\n")) }, wantErr: "closed before expected response"},
		{name: "stalls", checker: TCP{Send: []byte("PING"), Expect: []byte("PONG")},
			serve: func(c net.Conn) { io.Copy(io.Discard, c) }, wantErr: "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr
			if addr == "closed" {
				addr = closedAddr(t)
			} else {
				addr = startTCP(t, tt.serve)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			checkErr(t, tt.checker.Check(ctx, addr), tt.wantErr)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Check took %v, want at most about the 300ms timeout", d)
			}
		})
	}
}

func TestTCPCancel(t *testing.T) {
	addr := startTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	c := &TCP{Expect: []byte("never")}
	checkErr(t, c.Check(ctx, addr), "context canceled")
}
