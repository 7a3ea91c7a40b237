package xds

import (
	"context"
	"fmt"
	"sync"

	clustersvc "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointsvc "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenersvc "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routesvc "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretsvc "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"

	"github.com/porticoproxy/portico"
)

// rtype is a resource type. The order is the order requests are flushed
// in, Envoy's: clusters and their endpoints before listeners and their
// routes.
type rtype int

const (
	rtCluster rtype = iota
	rtEndpoints
	rtListener
	rtRoute
	rtSecret
	numRT
)

const typePrefix = "type.googleapis.com/"

// Type URLs of the resources the client subscribes to.
const (
	urlListener  = typePrefix + "envoy.config.listener.v3.Listener"
	urlRoute     = typePrefix + "envoy.config.route.v3.RouteConfiguration"
	urlCluster   = typePrefix + "envoy.config.cluster.v3.Cluster"
	urlEndpoints = typePrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment"
	urlSecret    = typePrefix + "envoy.extensions.transport_sockets.tls.v3.Secret"
	urlResource  = typePrefix + "envoy.service.discovery.v3.Resource"
)

var rtInfo = [numRT]struct {
	url      string
	api      string // stats: "lds", ...
	kind     string // /config_dump kind
	wildcard bool   // LDS and CDS: full state, always wildcard
}{
	rtCluster:   {urlCluster, "cds", portico.KindCluster, true},
	rtEndpoints: {urlEndpoints, "eds", portico.KindEndpoints, false},
	rtListener:  {urlListener, "lds", portico.KindListener, true},
	rtRoute:     {urlRoute, "rds", portico.KindRoute, false},
	rtSecret:    {urlSecret, "sds", portico.KindSecret, false},
}

func rtypeOf(url string) (rtype, bool) {
	for t := range numRT {
		if rtInfo[t].url == url {
			return t, true
		}
	}
	return 0, false
}

type (
	sotwStream  = grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	deltaStream = grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
)

// streamEvent is what a stream's receiving goroutine hands to Run's loop.
type streamEvent struct {
	s     *xdsSession
	t     rtype // the stream's type; -1 for an aggregated stream
	sotw  *discoveryv3.DiscoveryResponse
	delta *discoveryv3.DeltaDiscoveryResponse
	err   error
}

// session is one connection attempt: the streams opened on it and their
// receiving goroutines, which it owns and stop joins.
type xdsSession struct {
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	conn       *grpc.ClientConn
	events     chan<- streamEvent
	aggregated bool
	delta      bool
	healthy    bool // a response arrived

	sotw     [numRT]sotwStream // with ADS every slot holds the same stream
	deltas   [numRT]deltaStream
	nodeSent [numRT]bool // slot 0 for an aggregated stream
}

func newXDSSession(ctx context.Context, conn *grpc.ClientConn, events chan<- streamEvent, aggregated, delta bool) *xdsSession {
	s := &xdsSession{conn: conn, events: events, aggregated: aggregated, delta: delta}
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s
}

// stop ends the session's streams and waits for its goroutines.
func (s *xdsSession) stop() {
	s.cancel()
	s.wg.Wait()
}

// slot is the index of t's stream.
func (s *xdsSession) slot(t rtype) int {
	if s.aggregated {
		return 0
	}
	return int(t)
}

// takeNode reports whether the next request on t's stream is the
// stream's first, which carries the node.
func (s *xdsSession) takeNode(t rtype) bool {
	i := s.slot(t)
	first := !s.nodeSent[i]
	s.nodeSent[i] = true
	return first
}

// sotwFor returns t's state-of-the-world stream, opening it on first use.
func (s *xdsSession) sotwFor(t rtype) (sotwStream, error) {
	if st := s.sotw[t]; st != nil {
		return st, nil
	}
	var (
		st  sotwStream
		err error
	)
	if s.aggregated {
		st, err = discoveryv3.NewAggregatedDiscoveryServiceClient(s.conn).StreamAggregatedResources(s.ctx)
	} else {
		switch t {
		case rtListener:
			st, err = listenersvc.NewListenerDiscoveryServiceClient(s.conn).StreamListeners(s.ctx)
		case rtRoute:
			st, err = routesvc.NewRouteDiscoveryServiceClient(s.conn).StreamRoutes(s.ctx)
		case rtCluster:
			st, err = clustersvc.NewClusterDiscoveryServiceClient(s.conn).StreamClusters(s.ctx)
		case rtEndpoints:
			st, err = endpointsvc.NewEndpointDiscoveryServiceClient(s.conn).StreamEndpoints(s.ctx)
		case rtSecret:
			st, err = secretsvc.NewSecretDiscoveryServiceClient(s.conn).StreamSecrets(s.ctx)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s stream: %w", s.streamName(t), err)
	}
	src := install(s, s.sotw[:], t, st)
	pump(s, st.Recv, func(resp *discoveryv3.DiscoveryResponse, err error) streamEvent {
		return streamEvent{s: s, t: src, sotw: resp, err: err}
	})
	return st, nil
}

// deltaFor returns t's incremental stream, opening it on first use.
func (s *xdsSession) deltaFor(t rtype) (deltaStream, error) {
	if st := s.deltas[t]; st != nil {
		return st, nil
	}
	var (
		st  deltaStream
		err error
	)
	if s.aggregated {
		st, err = discoveryv3.NewAggregatedDiscoveryServiceClient(s.conn).DeltaAggregatedResources(s.ctx)
	} else {
		switch t {
		case rtListener:
			st, err = listenersvc.NewListenerDiscoveryServiceClient(s.conn).DeltaListeners(s.ctx)
		case rtRoute:
			st, err = routesvc.NewRouteDiscoveryServiceClient(s.conn).DeltaRoutes(s.ctx)
		case rtCluster:
			st, err = clustersvc.NewClusterDiscoveryServiceClient(s.conn).DeltaClusters(s.ctx)
		case rtEndpoints:
			st, err = endpointsvc.NewEndpointDiscoveryServiceClient(s.conn).DeltaEndpoints(s.ctx)
		case rtSecret:
			st, err = secretsvc.NewSecretDiscoveryServiceClient(s.conn).DeltaSecrets(s.ctx)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s stream: %w", s.streamName(t), err)
	}
	src := install(s, s.deltas[:], t, st)
	pump(s, st.Recv, func(resp *discoveryv3.DeltaDiscoveryResponse, err error) streamEvent {
		return streamEvent{s: s, t: src, delta: resp, err: err}
	})
	return st, nil
}

// install puts a newly opened stream in its slots: every slot for an
// aggregated stream, t's alone otherwise. It returns the type the stream's
// events carry: -1 for an aggregated stream, else t.
func install[S any](s *xdsSession, slots []S, t rtype, st S) rtype {
	if s.aggregated {
		for i := range slots {
			slots[i] = st
		}
		return -1
	}
	slots[t] = st
	return t
}

// pump forwards a stream's responses, and finally its error, to the
// session's event loop from a goroutine the session joins, until the
// stream fails or the session ends.
func pump[R any](s *xdsSession, recv func() (*R, error), event func(*R, error) streamEvent) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			resp, err := recv()
			if err != nil {
				resp = nil
			}
			select {
			case s.events <- event(resp, err):
			case <-s.ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
}

func (s *xdsSession) streamName(t rtype) string {
	name := "ADS"
	if !s.aggregated {
		name = rtInfo[t].api
	}
	if s.delta {
		name = "delta " + name
	}
	return name
}
