package lb_test

import (
	"errors"
	"fmt"

	"github.com/porticoproxy/portico/lb"
)

func ExampleNewRoundRobin() {
	b := lb.NewRoundRobin()
	b.Update([]lb.Endpoint{
		{Address: "a:80", Healthy: true},
		{Address: "b:80", Healthy: true},
		{Address: "c:80", Healthy: true},
		{Address: "d:80", Healthy: false},             // skipped while others are healthy
		{Address: "e:80", Healthy: true, Priority: 1}, // failover: 3 of 4 × 1.4 ≥ 100 %
	})
	p := b.Picker()
	counts := map[string]int{}
	for range 6 {
		res, err := p.Pick(lb.PickInfo{})
		if err != nil {
			fmt.Println(err)
			return
		}
		counts[res.Endpoint.Address]++
	}
	fmt.Println(counts)

	b.Update(nil)
	_, err := b.Picker().Pick(lb.PickInfo{})
	fmt.Println(errors.Is(err, lb.ErrNoEndpoint))
	// Output:
	// map[a:80:2 b:80:2 c:80:2]
	// true
}

func ExampleRoundRobin_weighted() {
	b := lb.NewRoundRobin()
	b.Update([]lb.Endpoint{
		{Address: "big:80", Weight: 3, Healthy: true},
		{Address: "small:80", Weight: 1, Healthy: true},
	})
	p := b.Picker()
	counts := map[string]int{}
	for range 400 {
		res, _ := p.Pick(lb.PickInfo{})
		counts[res.Endpoint.Address]++
	}
	fmt.Println(counts)
	// Output:
	// map[big:80:300 small:80:100]
}

func ExampleNewRoundRobinWith() {
	endpoints := []lb.Endpoint{
		{Address: "a:80", Healthy: true},
		{Address: "b:80", Healthy: false},
		{Address: "c:80", Healthy: false},
	}
	// One of three healthy is below Envoy's 50 % panic threshold: the
	// level balances over all of its endpoints rather than overload a:80.
	b := lb.NewRoundRobinWith(lb.Options{})
	b.Update(endpoints)
	counts := map[string]int{}
	for range 6 {
		res, _ := b.Picker().Pick(lb.PickInfo{})
		counts[res.Endpoint.Address]++
	}
	fmt.Println(counts)

	// A threshold of 0 disables panic mode.
	off := 0.0
	strict := lb.NewRoundRobinWith(lb.Options{PanicThreshold: &off})
	strict.Update(endpoints)
	counts = map[string]int{}
	for range 6 {
		res, _ := strict.Picker().Pick(lb.PickInfo{})
		counts[res.Endpoint.Address]++
	}
	fmt.Println(counts)
	// Output:
	// map[a:80:2 b:80:2 c:80:2]
	// map[a:80:6]
}

func ExampleOptions_priorities() {
	// Half of priority 0 is healthy: with Envoy's overprovisioning factor
	// 1.4 it keeps 70 % of the traffic and 30 % spills to priority 1.
	b := lb.NewRandomWith(lb.Options{})
	b.Update([]lb.Endpoint{
		{Address: "p0-a:80", Healthy: true},
		{Address: "p0-b:80", Healthy: false},
		{Address: "p1-a:80", Priority: 1, Healthy: true},
	})
	p0 := 0
	for range 100000 {
		res, _ := b.Picker().Pick(lb.PickInfo{})
		if res.Endpoint.Priority == 0 {
			p0++
		}
	}
	fmt.Printf("priority 0 share ≈ %.1f\n", float64(p0)/100000)
	// Output:
	// priority 0 share ≈ 0.7
}

func ExampleEndpoint_localityWeight() {
	// Locality weights split traffic between zones first; endpoints
	// within a zone then share their zone's part.
	b := lb.NewRoundRobin()
	b.Update([]lb.Endpoint{
		{Address: "east-1:80", Locality: "us-east", LocalityWeight: 1, Healthy: true},
		{Address: "west-1:80", Locality: "us-west", LocalityWeight: 4, Healthy: true},
		{Address: "west-2:80", Locality: "us-west", LocalityWeight: 4, Healthy: true},
	})
	east := 0
	for range 100000 {
		res, _ := b.Picker().Pick(lb.PickInfo{})
		if res.Endpoint.Locality == "us-east" {
			east++
		}
	}
	fmt.Printf("us-east share ≈ %.1f\n", float64(east)/100000)
	// Output:
	// us-east share ≈ 0.2
}
