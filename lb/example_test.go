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
		{Address: "c:80", Healthy: false},             // skipped while others are healthy
		{Address: "d:80", Healthy: true, Priority: 1}, // failover only
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
	// map[a:80:3 b:80:3]
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
