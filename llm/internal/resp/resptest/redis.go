// Package resptest starts a real redis-server for tests.
package resptest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/porticoproxy/portico/llm/internal/resp"
)

// Server is a redis-server process started by a test.
type Server struct {
	Addr   string
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{}
	stop   sync.Once
}

// Stop kills the server and waits for it to exit, as a crash would; the
// test's cleanup does it too. It is idempotent.
func (s *Server) Stop() {
	s.stop.Do(func() {
		s.cmd.Process.Kill()
		<-s.exited
	})
}

// Start starts redis-server on a free loopback port, without persistence,
// and stops it when the test ends. It fails the test, naming the
// redis-server binary (Debian package redis-server), when it is missing:
// the tests that need it never skip.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH (install the Debian package redis-server; .ci/run does): %v", err)
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: &bytes.Buffer{}}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning")
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("redis-server: %v", err)
		}
		s.exited = make(chan struct{})
		go func() { s.cmd.Wait(); close(s.exited) }()
		if err := s.waitReady(s.exited); err != nil {
			s.Stop()
			lastErr = fmt.Errorf("%v: %s", err, s.out.String())
			continue // most likely the port was taken in between
		}
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls PING until the server answers, it exits, or 10 s pass.
func (s *Server) waitReady(exited <-chan struct{}) error {
	p := resp.New(resp.Config{Addr: s.Addr, Timeout: 200 * time.Millisecond})
	defer p.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := p.Do(context.Background(), "PING")
		if err == nil && v.String() == "PONG" {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %v", s.cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready: %v", s.Addr, err)
		}
	}
}
