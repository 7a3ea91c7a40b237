package cluster

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestDial(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	go func() {
		for {
			c, err := live.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	deadLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := deadLn.Addr().String()
	deadLn.Close()

	c, err := New(Config{Name: "tcp", Endpoints: []Endpoint{{Address: dead}, {Address: live.Addr().String()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Excluding one endpoint picks the other.
	conn, addr, err := c.Dial(context.Background(), dead)
	if err != nil || addr != live.Addr().String() {
		t.Fatalf("Dial excluding %s: got %s, %v; want %s", dead, addr, err, live.Addr())
	}
	if _, ok := conn.(interface{ CloseWrite() error }); !ok {
		t.Errorf("conn %T: no CloseWrite", conn)
	}
	conn.Close()
	_, addr, err = c.Dial(context.Background(), live.Addr().String())
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Kind != ConnectFailure || addr != dead || ue.Endpoint != dead {
		t.Fatalf("Dial to %s: got %s, %v; want a ConnectFailure", dead, addr, err)
	}
	c.Close()
	if _, _, err := c.Dial(context.Background(), ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Dial after Close: got %v, want ErrClosed", err)
	}
}
