package health

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

func TestGRPCCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authorities := make(chan string, 100)
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if a := md.Get(":authority"); len(a) > 0 {
			authorities <- a[0]
		}
		return h(ctx, req)
	}))
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	defer gs.Stop()
	addr := ln.Addr().String()

	check := func(g *GRPC) error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return g.Check(ctx, addr)
	}
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	checkErr(t, check(&GRPC{}), "")
	checkErr(t, check(&GRPC{Service: "api"}), "")
	checkErr(t, check(&GRPC{Service: "missing"}), "NotFound")

	hs.SetServingStatus("api", healthpb.HealthCheckResponse_NOT_SERVING)
	checkErr(t, check(&GRPC{Service: "api"}), `service "api" is NOT_SERVING`)
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	checkErr(t, check(&GRPC{Service: "api"}), "")

	for len(authorities) > 0 {
		<-authorities
	}
	checkErr(t, check(&GRPC{Authority: "api.internal"}), "")
	if got := <-authorities; got != "api.internal" {
		t.Errorf("server saw :authority %q, want %q", got, "api.internal")
	}

	checkErr(t, check(&GRPC{}), "")
	if got := <-authorities; got != addr {
		t.Errorf("server saw default :authority %q, want %q", got, addr)
	}
}

func TestGRPCTimeout(t *testing.T) {
	// A listener that accepts and never speaks HTTP/2.
	addr := startTCP(t, func(c net.Conn) { time.Sleep(2 * time.Second) })
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := (&GRPC{}).Check(ctx, addr)
	if err == nil {
		t.Fatal("Check = nil, want timeout")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Check took %v, want about the 200ms timeout", d)
	}
}
