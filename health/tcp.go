package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// TCP checks an endpoint over a new TCP connection, like Envoy's
// tcp_health_check. With Send and Expect both empty it only connects.
// Otherwise it writes Send, then, if Expect is set, reads until Expect
// appears anywhere in the bytes received (Envoy's fuzzy match; bytes
// before it are ignored). The connection is closed after every check.
//
// A TCP is safe for concurrent use; its fields must not change after the
// first Check.
type TCP struct {
	// Send is written once the connection is up; empty writes nothing.
	Send []byte
	// Expect must be found in the response; empty means the check passes
	// once Send is written.
	Expect []byte
}

var _ Checker = (*TCP)(nil)

// errClosedEarly reports a peer that closed before sending Expect.
var errClosedEarly = errors.New("connection closed before expected response")

// Check connects to address and runs the exchange.
func (c *TCP) Check(ctx context.Context, address string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return fmt.Errorf("health: tcp %s: %w", address, err)
	}
	defer conn.Close()
	if len(c.Send) == 0 && len(c.Expect) == 0 {
		return nil
	}
	// Unblock reads and writes once ctx is done; then ctx.Err() says why.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.exchange(conn); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return fmt.Errorf("health: tcp %s: %w", address, err)
	}
	return nil
}

func (c *TCP) exchange(conn net.Conn) error {
	if len(c.Send) > 0 {
		if _, err := conn.Write(c.Send); err != nil {
			return err
		}
	}
	if len(c.Expect) == 0 {
		return nil
	}
	// window holds the last len(Expect)-1 bytes already searched plus
	// the new read, so a match split across reads is found without
	// keeping the whole response.
	keep := len(c.Expect) - 1
	window := make([]byte, 0, keep+4096)
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		window = append(window, buf[:n]...)
		if bytes.Contains(window, c.Expect) {
			return nil
		}
		if len(window) > keep {
			window = append(window[:0], window[len(window)-keep:]...)
		}
		if err == io.EOF {
			return errClosedEarly
		}
		if err != nil {
			return err
		}
	}
}
