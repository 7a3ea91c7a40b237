package healthcheck_test

import (
	"fmt"

	"github.com/porticoproxy/portico/filter/healthcheck"
)

func Example() {
	failing := false
	hc, err := healthcheck.New(healthcheck.Config{
		Path:    "/healthz",
		Failing: func() bool { return failing }, // e.g. gateway.HealthCheckFailed
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(hc.Name())
	// Output: envoy.filters.http.health_check
}
