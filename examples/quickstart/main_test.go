package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pb "google.golang.org/grpc/examples/features/proto/echo"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/internal/testcert"
)

// startQuickstart runs the quickstart with args and returns its gateway.
func startQuickstart(t *testing.T, args ...string) *portico.Gateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *portico.Gateway, 1)
	done := make(chan error, 1)
	args = append([]string{"-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0"}, args...)
	go func() { done <- run(ctx, args, io.Discard, ready) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("quickstart returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("quickstart did not stop within 10s")
		}
	})
	select {
	case gw := <-ready:
		return gw
	case err := <-done:
		t.Fatalf("quickstart: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("quickstart did not start within 10s")
	}
	return nil
}

func needCurl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("this test needs curl on PATH (apt-get install curl; .ci/run installs it)")
	}
	return p
}

func curl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, needCurl(t), append([]string{"-sS", "--max-time", "15"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// origin is a real HTTP/1.1 + h2c server that says who it is.
func origin(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin=%s proto=%s xff=%s xfp=%s rid=%t\n", name, r.Proto,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Request-Id") != "")
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(name+":"), msg...)); err != nil {
				return
			}
		}
	})
	srv := &http.Server{Handler: mux}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestQuickstartHTTP(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	gw := startQuickstart(t, "-upstream", a+","+b)
	addr := gw.ListenerAddr("http").String()

	t.Run("curl http1.1 round robin", func(t *testing.T) {
		seen := map[string]int{}
		for range 4 {
			out := curl(t, "--http1.1", "http://"+addr+"/")
			if !strings.Contains(out, "proto=HTTP/1.1") || !strings.Contains(out, "rid=true") {
				t.Fatalf("got %q, want an HTTP/1.1 answer with an x-request-id", out)
			}
			seen[strings.Fields(out)[0]]++
		}
		if seen["origin=a"] != 2 || seen["origin=b"] != 2 {
			t.Errorf("got %v, want 2 requests on each origin", seen)
		}
	})
	t.Run("curl h2c prior knowledge", func(t *testing.T) {
		out := curl(t, "-i", "--http2-prior-knowledge", "http://"+addr+"/")
		if !strings.HasPrefix(out, "HTTP/2 200") {
			t.Fatalf("got %q, want HTTP/2 200", out)
		}
	})
	t.Run("websocket echo", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
		if err != nil {
			t.Fatalf("dial through gateway: %v (response %v)", err, resp)
		}
		defer c.CloseNow()
		for i := range 3 {
			msg := fmt.Sprintf("ping %d", i)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(got), ":"+msg) {
				t.Errorf("got %q, want an echo of %q", got, msg)
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	t.Run("admin", func(t *testing.T) {
		out := curl(t, "http://"+gw.AdminAddr().String()+"/stats/prometheus")
		if !strings.Contains(out, `portico_http_downstream_rq_total{portico_http_conn_manager_prefix="ingress_http"}`) {
			t.Errorf("stats lack the downstream request total:\n%s", out)
		}
	})
}

func TestQuickstartTLSBySNI(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA()
	aCert, aKey := ca.WriteLeaf(dir, "a", "a.test")
	bCert, bKey := ca.WriteLeaf(dir, "b", "b.test")
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startQuickstart(t, "-upstream", origin(t, "o"), "-tls-listen", "127.0.0.1:0",
		"-cert", aCert+","+aKey, "-cert", bCert+","+bKey)
	_, port, _ := net.SplitHostPort(gw.ListenerAddr("https").String())
	for _, host := range []string{"a.test", "b.test"} {
		t.Run(host, func(t *testing.T) {
			// curl verifies the chain and the name against the CA: it only
			// succeeds when the listener chose the certificate by SNI.
			out := curl(t, "-i", "--http2", "--cacert", caFile, "--resolve", host+":"+port+":127.0.0.1",
				"https://"+host+":"+port+"/")
			if !strings.HasPrefix(out, "HTTP/2 200") || !strings.Contains(out, "origin=o") {
				t.Fatalf("got %q, want HTTP/2 200 from the origin", out)
			}
			conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{ServerName: host, RootCAs: ca.Pool(), NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := conn.ConnectionState().PeerCertificates[0].DNSNames[0]; got != host {
				t.Errorf("got certificate for %q, want %q", got, host)
			}
		})
	}
}

// echoServer is a gRPC echo service.
type echoServer struct {
	pb.UnimplementedEchoServer
	calls atomic.Int32
}

func (s *echoServer) UnaryEcho(ctx context.Context, in *pb.EchoRequest) (*pb.EchoResponse, error) {
	s.calls.Add(1)
	return &pb.EchoResponse{Message: "echo: " + in.Message}, nil
}

func (s *echoServer) BidirectionalStreamingEcho(stream pb.Echo_BidirectionalStreamingEchoServer) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&pb.EchoResponse{Message: "echo: " + in.Message}); err != nil {
			return err
		}
	}
}

func TestQuickstartGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	es := &echoServer{}
	pb.RegisterEchoServer(srv, es)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	gw := startQuickstart(t, "-upstream", ln.Addr().String(), "-upstream-h2c")
	cc, err := grpc.NewClient("passthrough:///"+gw.ListenerAddr("http").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := pb.NewEchoClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		resp, err := client.UnaryEcho(ctx, &pb.EchoRequest{Message: "hi"})
		if err != nil {
			t.Fatalf("UnaryEcho through the gateway: %v", err)
		}
		if resp.Message != "echo: hi" {
			t.Errorf("got %q, want %q", resp.Message, "echo: hi")
		}
	})
	t.Run("bidirectional streaming", func(t *testing.T) {
		stream, err := client.BidirectionalStreamingEcho(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Each reply must arrive before the next message is sent: the
		// gateway streams both directions.
		for i := range 5 {
			msg := fmt.Sprintf("m%d", i)
			if err := stream.Send(&pb.EchoRequest{Message: msg}); err != nil {
				t.Fatal(err)
			}
			got, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv %d: %v", i, err)
			}
			if got.Message != "echo: "+msg {
				t.Errorf("got %q, want %q", got.Message, "echo: "+msg)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("got %v after CloseSend, want io.EOF (status OK through trailers)", err)
		}
	})
}

func TestQuickstartDemoUpstream(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	gw := startQuickstart(t, "-access-log", logFile)
	resp, err := http.Get("http://" + gw.ListenerAddr("http").String() + "/sse?n=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !bytes.Contains(body, []byte("data: event 2 of 2")) {
		t.Errorf("got %q, want two SSE events", body)
	}
	// The access log line is written by a background writer: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	var log []byte
	for time.Now().Before(deadline) {
		log, _ = os.ReadFile(logFile)
		if len(log) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !bytes.Contains(log, []byte(`"GET /sse?n=2 HTTP/1.1" 200 - 0 `)) {
		t.Errorf("access log %q lacks the request in Envoy's default format", log)
	}
}

// killableOrigin is an HTTP/1.1 origin that says who it is, with a kill
// switch that closes its listener and every connection.
func killableOrigin(t *testing.T, name string) (addr string, kill func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin=%s\n", name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() { srv.Close() }
}

// hammer sends n requests from each of clients goroutines and returns the
// failed ones (transport errors and non-200 answers) and the answers seen.
func hammer(t *testing.T, url string, clients, n int) (failed []string, seen map[string]int) {
	t.Helper()
	var mu sync.Mutex
	seen = map[string]int{}
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for range n {
				resp, err := client.Get(url)
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				if resp.StatusCode != http.StatusOK {
					failed = append(failed, fmt.Sprintf("%d %s", resp.StatusCode, body))
				} else {
					seen[strings.Fields(string(body) + " ")[0]]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed, seen
}

// TestQuickstartSurvivesAKilledUpstream: with the default retry policy
// and outlier detection, killing one of two upstreams costs the clients
// nothing; with retries and outlier detection off, it shows.
func TestQuickstartSurvivesAKilledUpstream(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantErrors bool
	}{
		{"defaults", nil, false},
		{"retries off", []string{"-retries", "0", "-outlier-detection=false"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := origin(t, "a")
			b, killB := killableOrigin(t, "b")
			gw := startQuickstart(t, append([]string{"-upstream", a + "," + b}, tc.args...)...)
			url := "http://" + gw.ListenerAddr("http").String() + "/"
			if failed, seen := hammer(t, url, 2, 4); len(failed) > 0 || seen["origin=b"] == 0 {
				t.Fatalf("before the kill: failures %q, answers %v; want none failed and both upstreams used", failed, seen)
			}
			killB()
			failed, seen := hammer(t, url, 4, 25)
			if tc.wantErrors {
				if len(failed) == 0 {
					t.Error("no request failed with retries and outlier detection off: the test cannot tell them apart")
				}
				return
			}
			if len(failed) > 0 {
				t.Errorf("%d of 100 requests failed after an upstream was killed, first: %s", len(failed), failed[0])
			}
			if seen["origin=a"] != 100 {
				t.Errorf("got answers %v, want 100 from origin a", seen)
			}
			stats := curl(t, "http://"+gw.AdminAddr().String()+"/stats/prometheus")
			if !strings.Contains(stats, "portico_cluster_upstream_rq_retry{") {
				t.Errorf("stats lack upstream_rq_retry")
			}
		})
	}
}
