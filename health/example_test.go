package health_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/porticoproxy/portico/health"
)

func Example() {
	// A checker that fails one endpoint; real code uses HTTP, TCP or GRPC.
	check := health.CheckerFunc(func(ctx context.Context, address string) error {
		if address == "10.0.0.2:8080" {
			return errors.New("connection refused")
		}
		return nil
	})
	events := make(chan health.Event, 8)
	m, err := health.NewMonitor("api", health.Config{
		Checker:           check,
		Interval:          10 * time.Millisecond,
		NoTrafficInterval: 10 * time.Millisecond,
	}, func(ev health.Event) {
		events <- ev // buffered: onChange must not block
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	m.SetEndpoints([]string{"10.0.0.1:8080", "10.0.0.2:8080"})
	for range 2 {
		<-events // first verdicts
	}
	for _, st := range m.Statuses() {
		fmt.Println(st.Endpoint, st.Status, st.LastError)
	}
	// Output:
	// 10.0.0.1:8080 Healthy <nil>
	// 10.0.0.2:8080 Unhealthy connection refused
}
