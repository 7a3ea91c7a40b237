package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/llm/mock"
)

// BenchmarkChat is one non-streaming chat completion over loopback, in
// one process: straight to the mock (direct), through Portico as a plain
// reverse proxy (plain), and through the full llm chain of the loadgen
// gateway (llm). The differences are what the proxy hop and the llm
// chain cost in CPU and allocations; the client is a raw keep-alive
// connection, the same for all three.
func BenchmarkChat(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: &mock.Server{}}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	mockAddr := ln.Addr().String()

	gateway := func(b *testing.B, newGW func(string) (*portico.Gateway, func(), error)) string {
		gw, shutdown, err := newGW(mockAddr)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { gw.Serve(ctx); close(done) }()
		b.Cleanup(func() { cancel(); <-done; shutdown() })
		return gw.ListenerAddr("llm").String()
	}
	b.Run("direct", func(b *testing.B) { benchChat(b, mockAddr) })
	b.Run("plain", func(b *testing.B) { benchChat(b, gateway(b, newPlainGateway)) })
	b.Run("llm", func(b *testing.B) { benchChat(b, gateway(b, newGateway)) })
}

func benchChat(b *testing.B, addr string) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}],"max_tokens":64}`
	req := []byte(fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Authorization: Bearer sk-bench-client\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body))
	br := bufio.NewReader(conn)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n == 0 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}
