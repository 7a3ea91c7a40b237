package xds

// A scripted management server for the protocol cases go-control-plane
// cannot be made to produce: each stream is handed to the test, which
// reads the client's requests and writes responses itself.

import (
	"context"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/porticoproxy/portico"
)

type fakeServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	addr   string
	gs     *grpc.Server
	sotw   chan *fakeStream
	deltas chan *fakeDeltaStream
}

type fakeStream struct {
	reqs chan *discoveryv3.DiscoveryRequest
	out  chan *discoveryv3.DiscoveryResponse
	done chan struct{} // closing it ends the stream
}

type fakeDeltaStream struct {
	reqs chan *discoveryv3.DeltaDiscoveryRequest
	out  chan *discoveryv3.DeltaDiscoveryResponse
	done chan struct{}
}

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{addr: ln.Addr().String(), gs: grpc.NewServer(),
		sotw: make(chan *fakeStream, 16), deltas: make(chan *fakeDeltaStream, 16)}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(fs.gs, fs)
	go fs.gs.Serve(ln)
	t.Cleanup(fs.gs.Stop)
	return fs
}

func (fs *fakeServer) StreamAggregatedResources(st grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	s := &fakeStream{reqs: make(chan *discoveryv3.DiscoveryRequest, 1024), out: make(chan *discoveryv3.DiscoveryResponse, 16), done: make(chan struct{})}
	fs.sotw <- s
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			s.reqs <- r
		}
	}()
	for {
		select {
		case r := <-s.out:
			if err := st.Send(r); err != nil {
				return err
			}
		case <-s.done:
			return nil
		case err := <-errc:
			return err
		}
	}
}

func (fs *fakeServer) DeltaAggregatedResources(st grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	s := &fakeDeltaStream{reqs: make(chan *discoveryv3.DeltaDiscoveryRequest, 1024), out: make(chan *discoveryv3.DeltaDiscoveryResponse, 16), done: make(chan struct{})}
	fs.deltas <- s
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			s.reqs <- r
		}
	}()
	for {
		select {
		case r := <-s.out:
			if err := st.Send(r); err != nil {
				return err
			}
		case <-s.done:
			return nil
		case err := <-errc:
			return err
		}
	}
}

func (fs *fakeServer) stream(t testing.TB) *fakeStream {
	t.Helper()
	select {
	case s := <-fs.sotw:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no stream")
	}
	return nil
}

func (fs *fakeServer) deltaStream(t testing.TB) *fakeDeltaStream {
	t.Helper()
	select {
	case s := <-fs.deltas:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no delta stream")
	}
	return nil
}

// next returns the next request of type url, skipping others.
func (s *fakeStream) next(t testing.TB, url string) *discoveryv3.DiscoveryRequest {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-s.reqs:
			if r.GetTypeUrl() == url {
				return r
			}
		case <-timeout:
			t.Fatalf("no %s request", url)
			return nil
		}
	}
}

// until returns the next request of type url for which ok holds.
func (s *fakeStream) until(t testing.TB, url string, ok func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	for {
		if r := s.next(t, url); ok(r) {
			return r
		}
	}
}

// none checks that no request of type url arrives within d.
func (s *fakeStream) none(t testing.TB, url string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case r := <-s.reqs:
			if r.GetTypeUrl() == url {
				t.Fatalf("unexpected request %v", r)
			}
		case <-timeout:
			return
		}
	}
}

func (s *fakeDeltaStream) next(t testing.TB, url string) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-s.reqs:
			if r.GetTypeUrl() == url {
				return r
			}
		case <-timeout:
			t.Fatalf("no delta %s request", url)
			return nil
		}
	}
}

func packAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func response(t testing.TB, url, version, nonce string, res ...proto.Message) *discoveryv3.DiscoveryResponse {
	r := &discoveryv3.DiscoveryResponse{TypeUrl: url, VersionInfo: version, Nonce: nonce}
	for _, m := range res {
		r.Resources = append(r.Resources, packAny(t, m))
	}
	return r
}

// runFakeClient runs a client against fs.
func runFakeClient(t testing.TB, gw *portico.Gateway, fs *fakeServer, cfg ClientConfig) {
	t.Helper()
	cfg.Target = fs.addr
	if cfg.Node == nil {
		cfg.Node = &corev3.Node{Id: testNode}
	}
	if cfg.ReconnectBackoff == (Backoff{}) {
		cfg.ReconnectBackoff = Backoff{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := NewClient(gw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
