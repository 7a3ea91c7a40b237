package cluster

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// TestHTTP2Windows checks that HTTP2Options reach the wire: an h2c
// listener reads the client preface and checks the advertised stream
// window (SETTINGS_INITIAL_WINDOW_SIZE) and the connection window (the
// WINDOW_UPDATE on stream 0; Go grows the window by the full size).
func TestHTTP2Windows(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		stream, connIncrement uint32
		err                   error
	}
	got := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer conn.Close()
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(conn, preface); err != nil || !bytes.Equal(preface, []byte(http2.ClientPreface)) {
			got <- result{err: err}
			return
		}
		fr := http2.NewFramer(io.Discard, conn)
		var r result
		for r.stream == 0 || r.connIncrement == 0 {
			f, err := fr.ReadFrame()
			if err != nil {
				got <- result{err: err}
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					r.stream = v
				}
			case *http2.WindowUpdateFrame:
				if f.StreamID == 0 {
					r.connIncrement = f.Increment
				}
			}
		}
		got <- r
	}()

	c := newTestCluster(t, Config{
		Endpoints: []Endpoint{{Address: ln.Addr().String()}},
		Protocol:  HTTP2,
		HTTP2:     HTTP2Options{InitialStreamWindowSize: 65536, InitialConnectionWindowSize: 1 << 20},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// The listener never answers; the request only opens the connection.
		if resp, err := c.Send(newReq(t, ctx, http.MethodGet, nil)); err == nil {
			resp.Body.Close()
		}
	}()
	r := <-got
	if r.err != nil {
		t.Fatalf("reading the client preface: %v", r.err)
	}
	if r.stream != 65536 {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE = %d, want 65536", r.stream)
	}
	if want := uint32(1 << 20); r.connIncrement != want {
		t.Errorf("connection WINDOW_UPDATE = %d, want %d", r.connIncrement, want)
	}
}

func TestHTTP2OptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		opts HTTP2Options
		want string
	}{
		{HTTP2Options{}, ""},
		{HTTP2Options{InitialStreamWindowSize: 1, InitialConnectionWindowSize: 65535}, ""},
		{HTTP2Options{InitialStreamWindowSize: 1 << 31}, "http2.initial_stream_window_size"},
		{HTTP2Options{InitialConnectionWindowSize: 1000}, "http2.initial_connection_window_size"},
	} {
		cfg := Config{Name: "c", HTTP2: tt.opts}
		err := cfg.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tt.opts, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tt.opts, err, tt.want)
		}
	}
}
