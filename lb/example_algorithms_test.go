package lb_test

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/porticoproxy/portico/lb"
)

func ExampleNewLeastRequest() {
	b := lb.NewLeastRequest(lb.LeastRequestConfig{}) // P2C, Envoy defaults
	b.Update([]lb.Endpoint{
		{Address: "a:80", Healthy: true},
		{Address: "b:80", Healthy: true},
	})
	res, err := b.Picker().Pick(lb.PickInfo{})
	if err != nil {
		fmt.Println(err)
		return
	}
	// ... proxy the request to res.Endpoint.Address, then report that it
	// finished so the endpoint's active request count drops again.
	defer res.Done(lb.DoneInfo{Status: 200})

	// A retry avoids the endpoint that just failed.
	retry, _ := b.Picker().Pick(lb.PickInfo{Exclude: res.Endpoint})
	defer retry.Done(lb.DoneInfo{})
	fmt.Println(retry.Endpoint.Address != res.Endpoint.Address)
	// Output:
	// true
}

func ExampleNewRandom() {
	b := lb.NewRandom()
	b.Update([]lb.Endpoint{
		{Address: "big:80", Weight: 3, Healthy: true},
		{Address: "small:80", Weight: 1, Healthy: true},
	})
	p := b.Picker()
	counts := map[string]int{}
	for range 10000 {
		res, _ := p.Pick(lb.PickInfo{})
		counts[res.Endpoint.Address]++
	}
	// About three quarters of the picks go to big:80.
	fmt.Println(counts["big:80"] > 7000 && counts["big:80"] < 8000)
	// Output:
	// true
}

func ExampleNewRingHash() {
	b := lb.NewRingHash(lb.RingHashConfig{}) // 1024..8M entries, xxHash
	b.Update([]lb.Endpoint{
		{Address: "10.0.0.1:80", Healthy: true},
		{Address: "10.0.0.2:80", Healthy: true},
		{Address: "10.0.0.3:80", Healthy: true},
	})
	// The route's hash policy supplies the hash, here of a session id.
	info := lb.PickInfo{Hash: xxhash.Sum64String("session-42"), HasHash: true}
	first, _ := b.Picker().Pick(info)
	again, _ := b.Picker().Pick(info)
	fmt.Println(first.Endpoint.Address == again.Endpoint.Address)
	// Output:
	// true
}

func ExampleNewMaglev() {
	cfg := lb.MaglevConfig{TableSize: 65537} // must be prime
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	b := lb.NewMaglev(cfg)
	b.Update([]lb.Endpoint{
		{Address: "10.0.0.1:80", Healthy: true},
		{Address: "10.0.0.2:80", Healthy: true},
	})
	info := lb.PickInfo{Hash: xxhash.Sum64String("user-7"), HasHash: true}
	res, _ := b.Picker().Pick(info)
	// The same key keeps its endpoint when an unrelated one joins.
	b.Update([]lb.Endpoint{
		{Address: "10.0.0.1:80", Healthy: true},
		{Address: "10.0.0.2:80", Healthy: true},
		{Address: "10.0.0.3:80", Healthy: false},
	})
	again, _ := b.Picker().Pick(info)
	fmt.Println(res.Endpoint.Address == again.Endpoint.Address)

	fmt.Println(lb.MaglevConfig{TableSize: 65536}.Validate())
	// Output:
	// true
	// lb: maglev: table size 65536 is not prime
}
