package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is an authoritative DNS server on 127.0.0.1 (UDP) whose
// answers a test changes while it runs.
type dnsServer struct {
	pc net.PacketConn

	mu      sync.Mutex
	records map[string][]netip.Addr // by lower-case FQDN
	ttl     uint32
	fail    bool // answer SERVFAIL
	queries int
}

func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{pc: pc, records: make(map[string][]netip.Addr), ttl: 30}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve()
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return s
}

// set makes name resolve to addrs; no addrs makes it NXDOMAIN.
func (s *dnsServer) set(name string, addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.ToLower(name) + "."
	if len(addrs) == 0 {
		delete(s.records, name)
		return
	}
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	s.records[name] = as
}

func (s *dnsServer) setFail(fail bool) {
	s.mu.Lock()
	s.fail = fail
	s.mu.Unlock()
}

func (s *dnsServer) setTTL(ttl uint32) {
	s.mu.Lock()
	s.ttl = ttl
	s.mu.Unlock()
}

func (s *dnsServer) queryCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// resolver returns a Go resolver that sends every query to s.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", s.pc.LocalAddr().String())
		},
	}
}

func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if msg := s.answer(buf[:n]); msg != nil {
			s.pc.WriteTo(msg, from)
		}
	}
}

func (s *dnsServer) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	addrs, known := s.records[strings.ToLower(q.Name.String())]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	switch {
	case s.fail:
		rh.RCode = dnsmessage.RCodeServerFailure
	case !known:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	if rh.RCode == dnsmessage.RCodeSuccess {
		res := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: s.ttl}
		for _, a := range addrs {
			switch {
			case q.Type == dnsmessage.TypeA && a.Is4():
				b.AResource(res, dnsmessage.AResource{A: a.As4()})
			case q.Type == dnsmessage.TypeAAAA && a.Is6():
				b.AAAAResource(res, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}

// addrs returns the addresses of eps.
func addrs(eps []Endpoint) []string {
	var out []string
	for _, ep := range eps {
		out = append(out, ep.Address)
	}
	return out
}

// waitEndpoints polls c until its endpoint addresses are want, in any
// order.
func waitEndpoints(t *testing.T, c *Cluster, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(testTimeout)
	for {
		got := addrs(c.Endpoints())
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoints = %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// samePortServers starts servers on 127.0.0.1 and 127.0.0.2 sharing a
// port, each answering with its address, and returns the port.
func samePortServers(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln2, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("127.0.0.2 not usable: %v", err)
		}
		port := strconv.Itoa(ln2.Addr().(*net.TCPAddr).Port)
		ln1, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			ln2.Close()
			continue
		}
		for _, ln := range []net.Listener{ln1, ln2} {
			name := ln.Addr().(*net.TCPAddr).IP.String()
			ts := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, name)
			})}}
			ts.Start()
			t.Cleanup(ts.Close)
		}
		return port
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return ""
}

func TestStrictDNS(t *testing.T) {
	dns := newDNSServer(t)
	port := samePortServers(t)
	dns.set("a.portico.test", "127.0.0.1", "127.0.0.2")
	dns.set("b.portico.test", "127.0.0.2")
	c := newTestCluster(t, Config{
		Type:            StrictDNS,
		Resolver:        dns.resolver(),
		DNSLookupFamily: DNSV4Only,
		DNSRefreshRate:  20 * time.Millisecond,
		Endpoints: []Endpoint{
			{Address: "a.portico.test:" + port, Weight: 3, Locality: "z1", Metadata: map[string]string{"k": "v"}},
			{Address: "b.portico.test:" + port, Weight: 5},
		},
	})
	ep1, ep2 := "127.0.0.1:"+port, "127.0.0.2:"+port
	// 127.0.0.2 appears under both names: one endpoint, the first name's.
	waitEndpoints(t, c, ep1, ep2)
	want := []Endpoint{
		{Address: ep1, Weight: 3, Locality: "z1", Metadata: map[string]string{"k": "v"}},
		{Address: ep2, Weight: 3, Locality: "z1", Metadata: map[string]string{"k": "v"}},
	}
	if diff := cmp.Diff(want, c.Endpoints()); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	seen := map[string]bool{}
	for range 4 {
		body, _ := get(t, c)
		seen[body] = true
	}
	if !seen["127.0.0.1"] || !seen["127.0.0.2"] {
		t.Errorf("requests reached %v, want both addresses", seen)
	}
	if got := c.Config().Endpoints[0].Address; got != "a.portico.test:"+port {
		t.Errorf("Config().Endpoints[0].Address = %q, want the configured name", got)
	}

	// Removed and added addresses are picked up at the next refresh.
	dns.set("a.portico.test", "127.0.0.1")
	waitEndpoints(t, c, ep1, ep2) // still 127.0.0.2 through b
	dns.set("b.portico.test")     // NXDOMAIN: b's addresses go
	waitEndpoints(t, c, ep1)
	for range 3 {
		if body, _ := get(t, c); body != "127.0.0.1" {
			t.Fatalf("request reached %q after 127.0.0.2 was removed", body)
		}
	}
	dns.set("b.portico.test", "127.0.0.2")
	waitEndpoints(t, c, ep1, ep2)

	// A failing DNS server keeps the last good set.
	dns.setFail(true)
	n := dns.queryCount()
	for dns.queryCount() < n+6 {
		time.Sleep(5 * time.Millisecond)
	}
	waitEndpoints(t, c, ep1, ep2)
	dns.set("a.portico.test", "127.0.0.2")
	dns.setFail(false)
	waitEndpoints(t, c, ep2)
}

func TestLogicalDNS(t *testing.T) {
	dns := newDNSServer(t)
	// Servers on both addresses with one port; the one on 127.0.0.1 can
	// hold a request open.
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var port string
	for range 20 {
		ln2, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("127.0.0.2 not usable: %v", err)
		}
		port = strconv.Itoa(ln2.Addr().(*net.TCPAddr).Port)
		ln1, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			ln2.Close()
			continue
		}
		s1 := &httptest.Server{Listener: ln1, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				started <- struct{}{}
				<-release
			}
			io.WriteString(w, "one")
		})}}
		s2 := &httptest.Server{Listener: ln2, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "two")
		})}}
		s1.Start()
		s2.Start()
		t.Cleanup(s1.Close)
		t.Cleanup(s2.Close)
		break
	}
	if port == "" {
		t.Fatal("no shared port")
	}
	dns.set("app.portico.test", "127.0.0.1", "127.0.0.2")
	c := newTestCluster(t, Config{
		Type:            LogicalDNS,
		Resolver:        dns.resolver(),
		DNSLookupFamily: DNSV4Only,
		DNSRefreshRate:  20 * time.Millisecond,
		Endpoints:       []Endpoint{{Address: "app.portico.test:" + port, Priority: 1}},
	})
	waitEndpoints(t, c, "127.0.0.1:"+port)
	if got := c.Endpoints()[0].Priority; got != 1 {
		t.Errorf("priority = %d, want the configured 1", got)
	}

	// A request in flight on the old address finishes there.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	slow := newReq(t, ctx, http.MethodGet, nil)
	slow.HTTP.URL.Path = "/slow"
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Send(slow)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	<-started
	dns.set("app.portico.test", "127.0.0.2")
	waitEndpoints(t, c, "127.0.0.2:"+port)
	if body, _ := get(t, c); body != "two" {
		t.Errorf("new request reached %q, want the new address", body)
	}
	close(release)
	if r := <-done; r.err != nil || r.body != "one" {
		t.Errorf("request in flight = %q, %v; want it to finish on the old address", r.body, r.err)
	}

	// An empty answer keeps the address.
	dns.set("app.portico.test")
	n := dns.queryCount()
	for dns.queryCount() < n+4 {
		time.Sleep(5 * time.Millisecond)
	}
	waitEndpoints(t, c, "127.0.0.2:"+port)
}

func TestRespectDNSTTL(t *testing.T) {
	dns := newDNSServer(t)
	dns.setTTL(1)
	dns.set("ttl.portico.test", "127.0.0.1")
	c := newTestCluster(t, Config{
		Type:            StrictDNS,
		Resolver:        dns.resolver(),
		DNSLookupFamily: DNSV4Only,
		DNSRefreshRate:  time.Hour,
		RespectDNSTTL:   true,
		Endpoints:       []Endpoint{{Address: "ttl.portico.test:80"}},
	})
	waitEndpoints(t, c, "127.0.0.1:80")
	dns.set("ttl.portico.test", "127.0.0.3")
	// The answer's 1 s TTL, not the hour, sets the next refresh.
	waitEndpoints(t, c, "127.0.0.3:80")
}

func TestDNSTLSUsesName(t *testing.T) {
	dns := newDNSServer(t)
	dns.set("secure.portico.test", "127.0.0.1")
	ts := tlsServerFor(t, "secure.portico.test")
	_, port, _ := net.SplitHostPort(hostOf(t, ts.URL))
	c := newTestCluster(t, Config{
		Type:            StrictDNS,
		Resolver:        dns.resolver(),
		DNSLookupFamily: DNSV4Only,
		Endpoints:       []Endpoint{{Address: "secure.portico.test:" + port}},
		TLS:             &TLSConfig{RootCAs: tlsTestCA.CertPEM},
	})
	waitEndpoints(t, c, "127.0.0.1:"+port)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r := newReq(t, ctx, http.MethodGet, nil)
	r.AutoHostRewrite = true
	resp, err := c.Send(r)
	if err != nil {
		t.Fatalf("Send() error = %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(b); got != "secure.portico.test|secure.portico.test" {
		t.Errorf("server saw SNI|Host %q, want the DNS name for both", got)
	}
}

// fakeResolver is an in-memory Resolver and TTLResolver for tests that
// run under synctest, where real sockets do not fit.
type fakeResolver struct {
	mu      sync.Mutex
	records map[string][]netip.Addr
	err     error
	ttl     time.Duration
	calls   []string // "network host"
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{records: make(map[string][]netip.Addr)}
}

func (f *fakeResolver) set(host string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	f.records[host] = as
}

func (f *fakeResolver) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeResolver) setTTL(ttl time.Duration) {
	f.mu.Lock()
	f.ttl = ttl
	f.mu.Unlock()
}

func (f *fakeResolver) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	addrs, _, err := f.LookupNetIPTTL(ctx, network, host)
	return addrs, err
}

func (f *fakeResolver) LookupNetIPTTL(_ context.Context, network, host string) ([]netip.Addr, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, network+" "+host)
	if f.err != nil {
		return nil, 0, f.err
	}
	var out []netip.Addr
	for _, a := range f.records[host] {
		if network == "ip" || network == "ip4" && a.Is4() || network == "ip6" && a.Is6() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, 0, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, f.ttl, nil
}

var errServFail = &net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}

func TestDNSRefreshAndBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeResolver()
		r.set("svc", "10.0.0.1", "10.0.0.2")
		c, err := New(Config{
			Name:                  "dns",
			Type:                  StrictDNS,
			Resolver:              r,
			DNSLookupFamily:       DNSV4Only,
			DNSFailureRefreshRate: RefreshRate{BaseInterval: time.Second, MaxInterval: 4 * time.Second},
			Endpoints:             []Endpoint{{Address: "svc:80"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		synctest.Wait()
		if got := addrs(c.Endpoints()); !slices.Equal(got, []string{"10.0.0.1:80", "10.0.0.2:80"}) {
			t.Fatalf("endpoints = %v", got)
		}

		// The default refresh rate is Envoy's 5 s.
		r.set("svc", "10.0.0.3")
		time.Sleep(DefaultDNSRefreshRate - time.Millisecond)
		synctest.Wait()
		if got := addrs(c.Endpoints()); len(got) != 2 {
			t.Fatalf("endpoints changed before the refresh: %v", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := addrs(c.Endpoints()); !slices.Equal(got, []string{"10.0.0.3:80"}) {
			t.Fatalf("endpoints after the refresh = %v", got)
		}

		// Failures keep the set and back off up to MaxInterval.
		r.setErr(errServFail)
		time.Sleep(DefaultDNSRefreshRate)
		synctest.Wait()
		n := r.callCount()
		time.Sleep(time.Minute)
		synctest.Wait()
		retries := r.callCount() - n
		if retries < 13 || retries > 33 {
			t.Errorf("%d retries in a minute, want them backing off to every 2-4 s", retries)
		}
		if got := addrs(c.Endpoints()); !slices.Equal(got, []string{"10.0.0.3:80"}) {
			t.Errorf("endpoints after failures = %v, want the last good set", got)
		}
		r.setErr(nil)
		r.set("svc", "10.0.0.4")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := addrs(c.Endpoints()); !slices.Equal(got, []string{"10.0.0.4:80"}) {
			t.Errorf("endpoints after recovery = %v", got)
		}
		// Close stops the resolution goroutines: synctest.Test fails if
		// any is left.
	})
}

func TestDNSRespectTTLSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeResolver()
		r.setTTL(30 * time.Second)
		r.set("svc", "10.0.0.1")
		c, err := New(Config{Name: "ttl", Type: LogicalDNS, Resolver: r, RespectDNSTTL: true, DNSLookupFamily: DNSV4Only,
			Endpoints: []Endpoint{{Address: "svc:80"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		synctest.Wait()
		n := r.callCount()
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if got := r.callCount() - n; got != 2 {
			t.Errorf("%d lookups in 61 s with a 30 s TTL, want 2", got)
		}
	})
}

func TestDNSLookupFamily(t *testing.T) {
	tests := []struct {
		family DNSLookupFamily
		v4, v6 bool // the name has addresses of the family
		want   []string
		calls  []string
	}{
		{DNSAuto, true, true, []string{"2001:db8::1"}, []string{"ip6 h"}},
		{DNSAuto, true, false, []string{"10.0.0.1"}, []string{"ip6 h", "ip4 h"}},
		{DNSV4Preferred, true, true, []string{"10.0.0.1"}, []string{"ip4 h"}},
		{DNSV4Preferred, false, true, []string{"2001:db8::1"}, []string{"ip4 h", "ip6 h"}},
		{DNSV4Only, true, true, []string{"10.0.0.1"}, []string{"ip4 h"}},
		{DNSV6Only, true, true, []string{"2001:db8::1"}, []string{"ip6 h"}},
		{DNSAll, true, true, []string{"10.0.0.1", "2001:db8::1"}, []string{"ip h"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/v4=%v/v6=%v", tt.family, tt.v4, tt.v6), func(t *testing.T) {
			r := newFakeResolver()
			var as []string
			if tt.v4 {
				as = append(as, "10.0.0.1")
			}
			if tt.v6 {
				as = append(as, "2001:db8::1")
			}
			r.set("h", as...)
			got, _, err := newDNSLookup(r, tt.family, false).lookup(context.Background(), "h")
			if err != nil {
				t.Fatal(err)
			}
			var gs []string
			for _, a := range got {
				gs = append(gs, a.String())
			}
			if !slices.Equal(gs, tt.want) {
				t.Errorf("addresses = %v, want %v", gs, tt.want)
			}
			if !slices.Equal(r.calls, tt.calls) {
				t.Errorf("lookups = %v, want %v", r.calls, tt.calls)
			}
		})
	}
	// IP addresses resolve to themselves.
	got, _, err := newDNSLookup(ResolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		return nil, errors.New("must not be called")
	}), DNSAuto, false).lookup(context.Background(), "::ffff:10.0.0.9")
	if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("10.0.0.9") {
		t.Errorf("lookup of an IP = %v, %v", got, err)
	}
}

func TestBackoff(t *testing.T) {
	r := RefreshRate{BaseInterval: time.Second, MaxInterval: 5 * time.Second}
	for n, hi := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		for range 20 {
			if d := r.backoff(n + 1); d < hi/2 || d > hi {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n+1, d, hi/2, hi)
			}
		}
	}
	plain := (RefreshRate{}).withDefaults(3 * time.Second)
	if d := plain.backoff(5); d != 3*time.Second {
		t.Errorf("zero RefreshRate waits %v after failures, want the refresh rate", d)
	}
	if got := (RefreshRate{BaseInterval: time.Second}).withDefaults(0).MaxInterval; got != 10*time.Second {
		t.Errorf("default max_interval = %v, want 10 × base", got)
	}
}
