package xds

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	fixedheapv2 "github.com/envoyproxy/go-control-plane/envoy/config/resource_monitor/fixed_heap/v2alpha"
	fixedheapv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Names of the overload manager parts Portico implements.
const (
	fixedHeapMonitor      = "envoy.resource_monitors.fixed_heap"
	shrinkHeapAction      = "envoy.overload_actions.shrink_heap"
	stopAcceptingRequests = "envoy.overload_actions.stop_accepting_requests"
)

// overloadManager is the part of Envoy's overload manager Portico
// implements: the fixed_heap resource monitor (pressure = heap memory in
// use / max_heap_size_bytes) and two actions with threshold triggers:
// shrink_heap (returns free heap memory to the OS, at most every 10 s,
// while active) and stop_accepting_requests (connection managers answer
// new requests 503 while active). Its run goroutine is the only writer;
// stopAccepting is read on the request path.
type overloadManager struct {
	interval      time.Duration
	maxHeap       uint64
	shrinkAt      []float64 // thresholds of shrink_heap's triggers
	stopAt        []float64 // thresholds of stop_accepting_requests' triggers
	stopAccepting atomic.Bool
	heapInUse     func() uint64
	freeOSMemory  func()
	lastShrink    time.Time
	log           *slog.Logger
}

// DefaultOverloadRefreshInterval is Envoy's overload manager
// refresh_interval default.
const DefaultOverloadRefreshInterval = time.Second

func newOverloadManager(om *overloadv3.OverloadManager, path string, log *slog.Logger) (*overloadManager, error) {
	m := &overloadManager{
		interval:     DefaultOverloadRefreshInterval,
		heapInUse:    heapInUse,
		freeOSMemory: debug.FreeOSMemory,
		log:          log,
	}
	if d := om.GetRefreshInterval(); d != nil {
		v, err := duration(d, path+".refresh_interval")
		if err != nil {
			return nil, err
		}
		if v <= 0 {
			return nil, fmt.Errorf("%s.refresh_interval: must be positive", path)
		}
		m.interval = v
	}
	monitors := map[string]bool{}
	for i, rm := range om.GetResourceMonitors() {
		p := fmt.Sprintf("%s.resource_monitors[%d]", path, i)
		if rm.GetName() != fixedHeapMonitor {
			return nil, fmt.Errorf("%s.name: %q: only %s is supported: %w", p, rm.GetName(), fixedHeapMonitor, ErrUnsupported)
		}
		heapMax, err := fixedHeapMax(rm.GetTypedConfig(), p+".typed_config")
		if err != nil {
			return nil, err
		}
		m.maxHeap = heapMax
		monitors[rm.GetName()] = true
	}
	for i, a := range om.GetActions() {
		p := fmt.Sprintf("%s.actions[%d]", path, i)
		var into *[]float64
		switch a.GetName() {
		case shrinkHeapAction:
			into = &m.shrinkAt
		case stopAcceptingRequests:
			into = &m.stopAt
		default:
			return nil, fmt.Errorf("%s.name: %q: only %s and %s are supported: %w", p, a.GetName(), shrinkHeapAction, stopAcceptingRequests, ErrUnsupported)
		}
		for j, t := range a.GetTriggers() {
			tp := fmt.Sprintf("%s.triggers[%d]", p, j)
			if !monitors[t.GetName()] {
				return nil, fmt.Errorf("%s.name: %q is not a configured resource monitor", tp, t.GetName())
			}
			if t.GetThreshold() == nil {
				return nil, fmt.Errorf("%s: only threshold triggers are supported: %w", tp, ErrUnsupported)
			}
			*into = append(*into, t.GetThreshold().GetValue())
		}
	}
	return m, nil
}

// fixedHeapMax reads a FixedHeapConfig, v2alpha or v3.
func fixedHeapMax(a *anypb.Any, path string) (uint64, error) {
	if a == nil {
		return 0, fmt.Errorf("%s: required", path)
	}
	var (
		msg    proto.Message
		getMax func() uint64
	)
	switch messageName(a.GetTypeUrl()) {
	case "envoy.config.resource_monitor.fixed_heap.v2alpha.FixedHeapConfig":
		c := &fixedheapv2.FixedHeapConfig{}
		msg, getMax = c, c.GetMaxHeapSizeBytes
	case "envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig":
		c := &fixedheapv3.FixedHeapConfig{}
		msg, getMax = c, c.GetMaxHeapSizeBytes
	default:
		return 0, fmt.Errorf("%s: type %s: %w", path, a.GetTypeUrl(), ErrUnsupported)
	}
	if err := a.UnmarshalTo(msg); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if v, ok := msg.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return 0, fmt.Errorf("%s: invalid: %w", path, err)
		}
	}
	var errs []error
	walkAllowed(bootstrapSupportedSet, msg.ProtoReflect(), path, func(p, m string) {
		errs = append(errs, fmt.Errorf("%s: %s", p, m))
	})
	if len(errs) > 0 {
		return 0, fmt.Errorf("%w: %w", errs[0], ErrUnsupported)
	}
	if getMax() == 0 {
		return 0, fmt.Errorf("%s.max_heap_size_bytes: required", path)
	}
	return getMax(), nil
}

// heapInUse is the heap memory the Go runtime holds and uses: mapped
// memory less what is free or returned to the OS, the Go counterpart of
// Envoy's heap_size - pageheap_unmapped - pageheap_free.
func heapInUse() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(s)
	return s[0].Value.Uint64() - s[1].Value.Uint64() - s[2].Value.Uint64()
}

// run samples the monitor every interval until ctx is done.
func (m *overloadManager) run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.sample(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample updates the actions from the current pressure.
func (m *overloadManager) sample(now time.Time) {
	if m.maxHeap == 0 {
		return
	}
	pressure := float64(m.heapInUse()) / float64(m.maxHeap)
	stop := reached(pressure, m.stopAt)
	if m.stopAccepting.Swap(stop) != stop {
		m.log.Warn("overload action "+stopAcceptingRequests, "active", stop, "pressure", pressure)
	}
	if reached(pressure, m.shrinkAt) && now.Sub(m.lastShrink) >= 10*time.Second {
		m.lastShrink = now
		m.freeOSMemory()
	}
}

func reached(pressure float64, thresholds []float64) bool {
	for _, t := range thresholds {
		if pressure >= t {
			return true
		}
	}
	return false
}
