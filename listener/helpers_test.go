package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// checkLeaks fails t if goroutines started during the test outlive it. It
// must be called first so that its cleanup runs last.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: got %d, want <= %d\n%s", runtime.NumGoroutine(), before, buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond) // bounded wait for exits, not synchronisation
		}
	})
}

// pki is an in-test certificate authority.
type pki struct {
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	caPEM []byte
	pool  *x509.CertPool
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "portico test ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{ca: ca, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

func (p *pki) cert(t testing.TB, names ...string) Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Certificate{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
}

// chainHandler answers with the chain's name and the request protocol.
func chainHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Chain", name)
		fmt.Fprintf(w, "%s %s", name, r.Proto)
	})
}

// startListener creates and serves a listener, closing it at cleanup.
func startListener(t *testing.T, cfg Config) *Listener {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Serve(context.Background()) }()
	t.Cleanup(func() {
		l.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: got %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return l
}

// newClient returns an HTTP client for protocols p, closed at cleanup.
func newClient(t *testing.T, p func(*http.Protocols), tlsConf *tls.Config) *http.Client {
	t.Helper()
	var protos http.Protocols
	p(&protos)
	tr := &http.Transport{Protocols: &protos, TLSClientConfig: tlsConf, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func h1(p *http.Protocols)  { p.SetHTTP1(true) }
func h2(p *http.Protocols)  { p.SetHTTP2(true) }
func h2c(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }

// rawRequest writes req on a fresh TCP connection and reads one response.
func rawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp
}

// h2Conn is a raw h2c prior-knowledge client built on x/net's Framer, for
// observing frames (GOAWAY) and sending headers the stdlib client refuses.
type h2Conn struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	dec  *hpack.Decoder
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func dialH2C(t *testing.T, addr string) *h2Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	h := &h2Conn{t: t, c: c, fr: http2.NewFramer(c, c), dec: hpack.NewDecoder(4096, nil)}
	h.enc = hpack.NewEncoder(&h.hbuf)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// request opens stream id with a GET for path and extra header fields.
func (h *h2Conn) request(id uint32, path string, extra ...hpack.HeaderField) {
	h.t.Helper()
	h.hbuf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: "test"},
	}, extra...) {
		h.enc.WriteField(f)
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		h.t.Fatal(err)
	}
}

// event is a frame of interest read by next.
type event struct {
	goAway     bool
	lastStream uint32
	stream     uint32
	status     string // from HEADERS
	data       string
	endStream  bool
}

// next reads frames, answering SETTINGS, until one of interest arrives.
func (h *h2Conn) next() (event, error) {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return event{}, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := h.fr.WriteSettingsAck(); err != nil {
					return event{}, err
				}
			}
		case *http2.GoAwayFrame:
			return event{goAway: true, lastStream: f.LastStreamID}, nil
		case *http2.HeadersFrame:
			fields, err := h.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				return event{}, err
			}
			ev := event{stream: f.StreamID, endStream: f.StreamEnded()}
			for _, hf := range fields {
				if hf.Name == ":status" {
					ev.status = hf.Value
				}
			}
			return ev, nil
		case *http2.DataFrame:
			return event{stream: f.StreamID, data: string(f.Data()), endStream: f.StreamEnded()}, nil
		case *http2.RSTStreamFrame:
			return event{}, fmt.Errorf("stream %d reset: %v", f.StreamID, f.ErrCode)
		}
	}
}

// status returns the :status of stream id's response.
func (h *h2Conn) status(id uint32) string {
	h.t.Helper()
	for {
		ev, err := h.next()
		if err != nil {
			h.t.Fatalf("reading stream %d: %v", id, err)
		}
		if ev.stream == id && ev.status != "" {
			return ev.status
		}
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
