package cluster_test

import (
	"fmt"

	"github.com/porticoproxy/portico/cluster"
)

// ExampleCluster_EndpointStates renders endpoints the way Envoy's admin
// /clusters page does.
func ExampleCluster_EndpointStates() {
	c, err := cluster.New(cluster.Config{
		Name: "api",
		Endpoints: []cluster.Endpoint{
			{Address: "10.0.0.1:8080", Weight: 2},
			{Address: "10.0.0.2:8080", Health: cluster.Unhealthy},
		},
		OutlierDetection: &cluster.OutlierDetection{}, // Envoy's defaults
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, s := range c.EndpointStates() {
		prefix := c.Name() + "::" + s.Address + "::"
		fmt.Println(prefix + "health_flags::" + s.HealthFlags())
		fmt.Printf("%sweight::%d\n", prefix, s.Weight)
		fmt.Printf("%ssuccess_rate::%v\n", prefix, s.SuccessRate)
	}
	// Output:
	// api::10.0.0.1:8080::health_flags::healthy
	// api::10.0.0.1:8080::weight::2
	// api::10.0.0.1:8080::success_rate::-1
	// api::10.0.0.2:8080::health_flags::/failed_eds_health
	// api::10.0.0.2:8080::weight::1
	// api::10.0.0.2:8080::success_rate::-1
}
