// Package resp is a small Redis client: RESP2 over net.Conn with a
// connection pool, enough for the llm package's shared limits (EVALSHA,
// EVAL, SCRIPT LOAD, PING, AUTH, SELECT).
//
// A Pool is safe for concurrent use. Each command takes a pooled
// connection (dialling one when none is idle, up to Config.MaxConns),
// writes the command, reads one reply under a deadline and returns the
// connection to the pool; a connection that failed in any way is closed,
// never reused, so a reply can never be read by the wrong caller.
package resp

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of Config fields.
const (
	// DefaultTimeout bounds a dial or a command.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultMaxConns bounds the open connections.
	DefaultMaxConns = 64
	// DefaultMaxIdle bounds the idle connections kept.
	DefaultMaxIdle = 16
)

// Config configures a Pool.
type Config struct {
	// Addr is the server's host:port.
	Addr string
	// Password, when set, is sent with AUTH on every new connection.
	Password string
	// DB, when non-zero, is selected on every new connection.
	DB int
	// Timeout bounds dialling and each command when the context has no
	// earlier deadline; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxConns bounds the connections open at once; zero means
	// DefaultMaxConns. A command waits for a free one until its deadline.
	MaxConns int
	// MaxIdle bounds the idle connections kept; zero means DefaultMaxIdle.
	MaxIdle int
	// Dial dials the server; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Pool is a pool of connections to one Redis server.
type Pool struct {
	cfg    Config
	slots  chan struct{} // one token per open connection
	idle   chan *conn    // idle connections, each holding a slot
	closed atomic.Bool
}

// ErrClosed is returned by commands on a closed Pool.
var ErrClosed = errors.New("resp: pool closed")

// Error is an error reply from the server (a RESP "-" line). The
// connection that carried it stays usable.
type Error string

// Error implements error.
func (e Error) Error() string { return "redis: " + string(e) }

// Kind is the type of a reply.
type Kind byte

// Reply kinds, by their RESP2 type byte.
const (
	SimpleString Kind = '+'
	ErrorReply   Kind = '-'
	Integer      Kind = ':'
	BulkString   Kind = '$'
	Array        Kind = '*'
)

// Value is one RESP2 reply.
type Value struct {
	Kind  Kind
	Str   []byte  // SimpleString, BulkString, ErrorReply
	Int   int64   // Integer
	Array []Value // Array
	Nil   bool    // a null bulk string or null array
}

// String returns the value of a string reply.
func (v Value) String() string { return string(v.Str) }

// New returns a Pool for cfg. It dials nothing until the first command.
func New(cfg Config) *Pool {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = DefaultMaxIdle
	}
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = d.DialContext
	}
	return &Pool{cfg: cfg, slots: make(chan struct{}, cfg.MaxConns), idle: make(chan *conn, min(cfg.MaxIdle, cfg.MaxConns))}
}

// Close closes the idle connections and makes later commands fail with
// ErrClosed; connections in use are closed when they are returned.
func (p *Pool) Close() error {
	p.closed.Store(true)
	for {
		select {
		case c := <-p.idle:
			p.discard(c)
		default:
			return nil
		}
	}
}

type conn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// Do sends one command and returns its reply. An error reply is returned
// as an Error, with the connection kept; any other failure closes the
// connection.
func (p *Pool) Do(ctx context.Context, args ...string) (Value, error) {
	deadline := time.Now().Add(p.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c, err := p.get(ctx, deadline)
	if err != nil {
		return Value{}, err
	}
	v, err := c.do(deadline, args)
	if err != nil {
		var re Error
		if errors.As(err, &re) {
			p.put(c)
		} else {
			p.discard(c)
		}
		return Value{}, err
	}
	p.put(c)
	return v, nil
}

func (p *Pool) get(ctx context.Context, deadline time.Time) (*conn, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	select {
	case c := <-p.idle:
		return c, nil
	default:
	}
	select {
	case c := <-p.idle:
		return c, nil
	case p.slots <- struct{}{}:
	default:
		// Every connection is in use: wait for one to come back or close.
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case c := <-p.idle:
			return c, nil
		case p.slots <- struct{}{}:
		case <-t.C:
			return nil, fmt.Errorf("resp: %s: no free connection: %w", p.cfg.Addr, context.DeadlineExceeded)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c, err := p.dial(ctx, deadline)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

func (p *Pool) dial(ctx context.Context, deadline time.Time) (*conn, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := p.cfg.Dial(dctx, "tcp", p.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("resp: dial %s: %w", p.cfg.Addr, err)
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096)}
	if p.cfg.Password != "" {
		if _, err := c.do(deadline, []string{"AUTH", p.cfg.Password}); err != nil {
			nc.Close()
			var re Error
			if errors.As(err, &re) {
				// The server's message may quote the command; never the
				// password.
				return nil, fmt.Errorf("resp: %s: AUTH refused", p.cfg.Addr)
			}
			return nil, err
		}
	}
	if p.cfg.DB != 0 {
		if _, err := c.do(deadline, []string{"SELECT", strconv.Itoa(p.cfg.DB)}); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (p *Pool) put(c *conn) {
	if p.closed.Load() {
		p.discard(c)
		return
	}
	select {
	case p.idle <- c:
		if p.closed.Load() {
			p.Close() // raced with Close: drain again
		}
	default:
		p.discard(c)
	}
}

func (p *Pool) discard(c *conn) {
	c.nc.Close()
	<-p.slots
}

func (c *conn) do(deadline time.Time, args []string) (Value, error) {
	if err := c.nc.SetDeadline(deadline); err != nil {
		return Value{}, err
	}
	c.bw.Write(AppendCommand(nil, args...))
	if err := c.bw.Flush(); err != nil {
		return Value{}, fmt.Errorf("resp: write: %w", err)
	}
	v, err := ReadValue(c.br)
	if err != nil {
		return Value{}, fmt.Errorf("resp: read: %w", err)
	}
	if v.Kind == ErrorReply {
		return Value{}, Error(v.Str)
	}
	return v, nil
}

// AppendCommand appends args as a RESP array of bulk strings.
func AppendCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// Limits on replies, against a broken or hostile server.
const (
	maxBulk  = 512 << 20 // Redis's own proto-max-bulk-len
	maxArray = 1 << 20
	maxDepth = 8
)

var errProtocol = errors.New("resp: protocol error")

// ReadValue reads one RESP2 value.
func ReadValue(r *bufio.Reader) (Value, error) { return readValue(r, 0) }

func readValue(r *bufio.Reader, depth int) (Value, error) {
	line, err := readLine(r)
	if err != nil {
		return Value{}, err
	}
	if len(line) == 0 {
		return Value{}, fmt.Errorf("%w: empty line", errProtocol)
	}
	v := Value{Kind: Kind(line[0])}
	body := line[1:]
	switch v.Kind {
	case SimpleString, ErrorReply:
		v.Str = append([]byte(nil), body...)
		return v, nil
	case Integer:
		n, err := strconv.ParseInt(string(body), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: integer %q", errProtocol, body)
		}
		v.Int = n
		return v, nil
	case BulkString:
		n, err := strconv.ParseInt(string(body), 10, 64)
		switch {
		case err != nil || n < -1 || n > maxBulk:
			return Value{}, fmt.Errorf("%w: bulk length %q", errProtocol, body)
		case n == -1:
			v.Nil = true
			return v, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return Value{}, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return Value{}, fmt.Errorf("%w: bulk string not terminated by CRLF", errProtocol)
		}
		v.Str = buf[:n]
		return v, nil
	case Array:
		n, err := strconv.ParseInt(string(body), 10, 64)
		switch {
		case err != nil || n < -1 || n > maxArray:
			return Value{}, fmt.Errorf("%w: array length %q", errProtocol, body)
		case n == -1:
			v.Nil = true
			return v, nil
		case depth >= maxDepth:
			return Value{}, fmt.Errorf("%w: arrays nested too deep", errProtocol)
		}
		v.Array = make([]Value, 0, min(n, 64))
		for range n {
			e, err := readValue(r, depth+1)
			if err != nil {
				return Value{}, err
			}
			v.Array = append(v.Array, e)
		}
		return v, nil
	}
	return Value{}, fmt.Errorf("%w: unknown type %q", errProtocol, line[0])
}

// readLine reads a CRLF-terminated line without its terminator. The
// returned slice is valid until the next read.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("%w: line longer than %d bytes", errProtocol, r.Size())
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line not terminated by CRLF", errProtocol)
	}
	return line[:len(line)-2], nil
}

// Script is a Lua script run with EVALSHA, falling back to EVAL when the
// server does not have it cached (after a restart or SCRIPT FLUSH).
type Script struct {
	src string
	sha string
}

// NewScript returns a Script for src.
func NewScript(src string) *Script {
	h := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(h[:])}
}

// Run runs the script with keys and args.
func (s *Script) Run(ctx context.Context, p *Pool, keys []string, args ...string) (Value, error) {
	cmd := make([]string, 0, 3+len(keys)+len(args))
	cmd = append(cmd, "EVALSHA", s.sha, strconv.Itoa(len(keys)))
	cmd = append(cmd, keys...)
	cmd = append(cmd, args...)
	v, err := p.Do(ctx, cmd...)
	var re Error
	if errors.As(err, &re) && strings.HasPrefix(string(re), "NOSCRIPT") {
		cmd[0], cmd[1] = "EVAL", s.src
		return p.Do(ctx, cmd...)
	}
	return v, err
}
