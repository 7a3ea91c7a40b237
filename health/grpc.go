package health

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// GRPC checks an endpoint with the standard grpc.health.v1.Health/Check
// RPC over plain-text HTTP/2, like Envoy's grpc_health_check: the
// endpoint is healthy when the response status is SERVING. Each check
// uses its own connection.
//
// A GRPC is safe for concurrent use; its fields must not change after the
// first Check.
type GRPC struct {
	// Service is the service name sent in the request; empty asks about
	// the server as a whole.
	Service string
	// Authority is the :authority of the request. Empty means the
	// endpoint address; Envoy uses the cluster name instead.
	Authority string
}

var _ Checker = (*GRPC)(nil)

// Check calls Health/Check on address.
func (g *GRPC) Check(ctx context.Context, address string) error {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if g.Authority != "" {
		opts = append(opts, grpc.WithAuthority(g.Authority))
	}
	// passthrough: check exactly this address, without resolving and
	// balancing over a name's addresses.
	cc, err := grpc.NewClient("passthrough:///"+address, opts...)
	if err != nil {
		return fmt.Errorf("health: grpc %s: %w", address, err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: g.Service})
	if err != nil {
		return fmt.Errorf("health: grpc %s: %w", address, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health: grpc %s: service %q is %v", address, g.Service, s)
	}
	return nil
}
