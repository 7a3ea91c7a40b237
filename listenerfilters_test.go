package portico

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// proxyV2 builds a PROXY protocol v2 header for TCP over IPv4 with one TLV.
func proxyV2(src, dst [4]byte, sport, dport uint16) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x00")
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = append(b, 0x01, 0x00, 0x02, 'h', '2') // PP2_TYPE_ALPN
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-16))
	return b
}

// exchange writes chunks to addr one write at a time and returns all it
// reads back.
func exchange(t *testing.T, addr string, chunks ...[]byte) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, ch := range chunks {
		if _, err := c.Write(ch); err != nil {
			break // the gateway may close on a bad header
		}
		time.Sleep(time.Millisecond)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestProxyProtocolGateway(t *testing.T) {
	origin := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s", r.Header.Get("X-Forwarded-For"))
	}))
	start := func(allow bool) string {
		cfg := simpleConfig(origin)
		cfg.Listeners[0].ProxyProtocol = &listener.ProxyProtocolConfig{AllowRequestsWithoutProxyProtocol: allow}
		cfg.Listeners[0].FilterChains[0].HTTP.UseRemoteAddress = true
		_, addr := startGateway(t, cfg, Options{})
		return addr
	}
	strict, lax := start(false), start(true)
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	v2 := proxyV2([4]byte{198, 51, 100, 9}, [4]byte{10, 0, 0, 1}, 40000, 443)
	var split [][]byte
	for _, b := range append(append([]byte(nil), v2...), req...) {
		split = append(split, []byte{b})
	}
	tests := []struct {
		name, addr string
		chunks     [][]byte
		want       string // substring of the response; "" means closed without one
	}{
		{"v1", strict, [][]byte{[]byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n"), req}, "xff=203.0.113.7"},
		{"v1 same write", strict, [][]byte{append([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n"), req...)}, "xff=203.0.113.7"},
		{"v1 ipv6", strict, [][]byte{[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 5555 80\r\n"), req}, "xff=2001:db8::1"},
		{"v2", strict, [][]byte{v2, req}, "xff=198.51.100.9"},
		{"v2 split byte by byte", strict, split, "xff=198.51.100.9"},
		{"v1 unknown keeps peer", strict, [][]byte{[]byte("PROXY UNKNOWN\r\n"), req}, "xff=127.0.0.1"},
		{"missing header", strict, [][]byte{req}, ""},
		{"garbage", strict, [][]byte{[]byte("PROXY TCP4 not an address\r\n"), req}, ""},
		{"v2 bad version", strict, [][]byte{append(append([]byte("\r\n\r\n\x00\r\nQUIT\n\x31\x11"), 0, 0), req...)}, ""},
		{"missing header allowed", lax, [][]byte{req}, "xff=127.0.0.1"},
		{"v1 allowed", lax, [][]byte{[]byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n"), req}, "xff=203.0.113.7"},
		{"garbage allowed", lax, [][]byte{[]byte("PROXY bogus\r\n"), req}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := exchange(t, tt.addr, tt.chunks...)
			if tt.want == "" {
				if got != "" {
					t.Errorf("response: got %q, want the connection closed without one", got)
				}
				return
			}
			if !strings.HasPrefix(got, "HTTP/1.1 200") || !strings.Contains(got, tt.want) {
				t.Errorf("response: got %q, want 200 with %q", got, tt.want)
			}
		})
	}
}

const origDstChildEnv = "PORTICO_ORIGDST_NETNS"

// TestOriginalDstNetns redirects connections to 10.99.0.1:8080 to the
// gateway with iptables in a network namespace of its own; the gateway's
// original_dst filter and an OriginalDst cluster must send the request on
// to 10.99.0.1:8080, where the origin checks it came through the gateway.
func TestOriginalDstNetns(t *testing.T) {
	if os.Getenv(origDstChildEnv) != "" {
		originalDstChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (install iproute2 and iptables): %v", tool, err)
		}
	}
	ns := "portico-odst-" + strconv.Itoa(os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "set", "lo", "up")
	run("ip", "-n", ns, "addr", "add", "10.99.0.1/32", "dev", "lo")
	run("ip", "-n", ns, "addr", "add", "10.99.0.2/32", "dev", "lo")
	// Only the client's connections (from 10.99.0.2) are redirected, not
	// the gateway's own to the original destination.
	run("ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp",
		"-s", "10.99.0.2", "-d", "10.99.0.1", "--dport", "8080", "-j", "REDIRECT", "--to-ports", "15001")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestOriginalDstNetns$", "-test.v")
	cmd.Env = append(os.Environ(), origDstChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestOriginalDstNetns")) {
		t.Fatalf("in namespace %s: %v\n%s", ns, err, out)
	}
}

// originalDstChild runs inside the namespace set up by TestOriginalDstNetns.
func originalDstChild(t *testing.T) {
	ln, err := net.Listen("tcp", "10.99.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin %s from %s id=%t", r.Host, r.RemoteAddr[:strings.LastIndexByte(r.RemoteAddr, ':')], r.Header.Get("X-Request-Id") != "")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cfg := Config{
		Listeners: []listener.Config{{
			Name:        "ingress",
			Address:     "127.0.0.1:15001",
			OriginalDst: true,
			FilterChains: []listener.FilterChain{{
				Match: listener.ChainMatch{DestinationPorts: []uint16{8080}},
				HTTP:  &listener.HTTPConfig{StatPrefix: "ingress_http", RouteConfig: "local"},
			}},
		}},
		Routes: []route.Config{{
			Name: "local",
			VirtualHosts: []route.VirtualHost{{Name: "all", Domains: []string{"*"},
				Rules: []route.Rule{{Match: route.Match{Prefix: "/"}, Cluster: "odst"}}}},
		}},
		Clusters: []cluster.Config{{Name: "odst", Type: cluster.OriginalDst}},
	}
	startGateway(t, cfg, Options{})

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(10, 99, 0, 2)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", "10.99.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(c)
	// The gateway dials 10.99.0.1:8080 from 10.99.0.1 and adds an
	// x-request-id; a connection that bypassed it would come from
	// 10.99.0.2 without one.
	if want := "origin svc from 10.99.0.1 id=true"; !strings.Contains(string(b), want) {
		t.Errorf("response: got %q, want %q", b, want)
	}
}
