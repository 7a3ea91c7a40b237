package xds

import (
	"fmt"
	"io"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterprovidedv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/cluster_provided/v3"
	lbcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	maglevv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/maglev/v3"
	randomv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/random/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/lb"
)

type lbKind int

const (
	lbRoundRobin lbKind = iota
	lbLeastRequest
	lbRandom
	lbRingHash
	lbMaglev
)

// lbSpec is a translated load-balancing policy.
type lbSpec struct {
	kind         lbKind
	path         string // where the policy was configured, for errors
	opts         lb.Options
	leastRequest lb.LeastRequestConfig
	ringHash     lb.RingHashConfig
	maglev       lb.MaglevConfig
	// localityWeighted is Envoy's locality_weighted_lb_config: without
	// it Envoy ignores the localities' load_balancing_weight.
	localityWeighted bool
}

// validate reports what the lb constructors would silently replace by
// their defaults.
func (s *lbSpec) validate() error {
	err := s.opts.Validate()
	if err == nil {
		switch s.kind {
		case lbLeastRequest:
			err = s.leastRequest.Validate()
		case lbRingHash:
			err = s.ringHash.Validate()
		case lbMaglev:
			err = s.maglev.Validate()
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	return nil
}

func (s lbSpec) builder() lb.Builder {
	var b lb.Builder
	switch s.kind {
	case lbLeastRequest:
		b = func() lb.Balancer { return lb.NewLeastRequestWith(s.leastRequest, s.opts) }
	case lbRandom:
		b = func() lb.Balancer { return lb.NewRandomWith(s.opts) }
	case lbRingHash:
		b = func() lb.Balancer { return lb.NewRingHashWith(s.ringHash, s.opts) }
	case lbMaglev:
		b = func() lb.Balancer { return lb.NewMaglevWith(s.maglev, s.opts) }
	default:
		b = func() lb.Balancer { return lb.NewRoundRobinWith(s.opts) }
	}
	if s.localityWeighted {
		return b
	}
	return func() lb.Balancer { return localityBlind{b()} }
}

// localityBlind hides locality weights from a balancer. Envoy weighs
// localities only with locality_weighted_lb_config, while package lb
// weighs them whenever an endpoint carries one, and Endpoints translates
// ClusterLoadAssignments without knowing the cluster's policy.
type localityBlind struct{ lb.Balancer }

var _ io.Closer = localityBlind{}

// Update clears the locality weights, in place: the balancer owns eps.
func (b localityBlind) Update(eps []lb.Endpoint) {
	for i := range eps {
		eps[i].LocalityWeight = 0
	}
	b.Balancer.Update(eps)
}

// Close closes the balancer if it is an io.Closer.
func (b localityBlind) Close() error {
	if c, ok := b.Balancer.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// lbConfigField names the cluster's lb_config field, or "".
func lbConfigField(c *clusterv3.Cluster) string {
	switch c.GetLbConfig().(type) {
	case *clusterv3.Cluster_RingHashLbConfig_:
		return "ring_hash_lb_config"
	case *clusterv3.Cluster_MaglevLbConfig_:
		return "maglev_lb_config"
	case *clusterv3.Cluster_OriginalDstLbConfig_:
		return "original_dst_lb_config"
	case *clusterv3.Cluster_LeastRequestLbConfig_:
		return "least_request_lb_config"
	case *clusterv3.Cluster_RoundRobinLbConfig_:
		return "round_robin_lb_config"
	}
	return ""
}

// balancer translates the load-balancing policy into cfg.Balancer: the
// typed load_balancing_policy when set (its first policy Portico
// implements wins, as in Envoy), else lb_policy with its lb_config, plus
// common_lb_config.
func (x *clusterTx) balancer(cfg *cluster.Config) error {
	c := x.c
	if cfg.Type == cluster.OriginalDst || cfg.Type == cluster.DynamicForwardProxy {
		return x.clusterProvided(cfg)
	}
	if c.GetLbPolicy() == clusterv3.Cluster_CLUSTER_PROVIDED {
		return fmt.Errorf("lb_policy: CLUSTER_PROVIDED applies only to ORIGINAL_DST and dynamic forward proxy clusters")
	}
	if lbConfigField(c) == "original_dst_lb_config" {
		x.report("original_dst_lb_config", "only applies to type ORIGINAL_DST")
	}
	var spec lbSpec
	var err error
	if p := c.GetLoadBalancingPolicy(); p != nil {
		if lp := c.GetLbPolicy(); lp != clusterv3.Cluster_ROUND_ROBIN && lp != clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG {
			x.report("lb_policy", "ignored with load_balancing_policy")
		}
		if f := lbConfigField(c); f != "" && f != "original_dst_lb_config" {
			x.report(f, "ignored with load_balancing_policy")
		}
		spec, err = x.typedPolicy(p)
	} else {
		spec, err = x.enumPolicy()
	}
	if err != nil {
		return err
	}
	if cl := c.GetCommonLbConfig(); cl != nil {
		if t := cl.GetHealthyPanicThreshold(); t != nil {
			// Envoy's default is 50 %, lb.DefaultPanicThreshold; 0
			// disables panic mode.
			v := t.GetValue()
			spec.opts.PanicThreshold = &v
		}
		if cl.GetLocalityWeightedLbConfig() != nil {
			spec.localityWeighted = true
		}
	}
	if err := spec.validate(); err != nil {
		return err
	}
	cfg.Balancer = spec.builder()
	return nil
}

// clusterProvided checks the policy of a cluster type that picks its
// hosts itself: Envoy requires lb_policy CLUSTER_PROVIDED (or the typed
// cluster_provided policy); unset is accepted too.
func (x *clusterTx) clusterProvided(cfg *cluster.Config) error {
	c := x.c
	switch lp := c.GetLbPolicy(); lp {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_CLUSTER_PROVIDED:
	case clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG:
		if c.GetLoadBalancingPolicy() == nil {
			return fmt.Errorf("lb_policy: LOAD_BALANCING_POLICY_CONFIG without load_balancing_policy")
		}
	default:
		return fmt.Errorf("lb_policy: %v: a cluster of type %v picks its hosts itself; use CLUSTER_PROVIDED", lp, cfg.Type)
	}
	if p := c.GetLoadBalancingPolicy(); p != nil {
		found := false
		for i, pol := range p.GetPolicies() {
			a := pol.GetTypedExtensionConfig().GetTypedConfig()
			if a.MessageName() != proto.MessageName(&clusterprovidedv3.ClusterProvided{}) {
				continue
			}
			if _, err := x.unpack(a, fmt.Sprintf("load_balancing_policy.policies[%d].typed_extension_config.typed_config", i), &clusterprovidedv3.ClusterProvided{}); err != nil {
				return err
			}
			found = true
			break
		}
		if !found {
			return fmt.Errorf("load_balancing_policy: a cluster of type %v needs envoy.load_balancing_policies.cluster_provided", cfg.Type)
		}
	}
	if f := lbConfigField(c); f != "" && !(f == "original_dst_lb_config" && cfg.Type == cluster.OriginalDst) {
		x.report(f, fmt.Sprintf("does not apply to a cluster of type %v", cfg.Type))
	}
	if c.GetCommonLbConfig() != nil {
		x.report("common_lb_config", fmt.Sprintf("does not apply to a cluster of type %v", cfg.Type))
	}
	return nil
}

// enumPolicy translates lb_policy and its lb_config.
func (x *clusterTx) enumPolicy() (lbSpec, error) {
	c := x.c
	spec := lbSpec{path: "lb_policy"}
	want := ""
	var err error
	switch lp := c.GetLbPolicy(); lp {
	case clusterv3.Cluster_ROUND_ROBIN:
		spec.kind = lbRoundRobin
		want = "round_robin_lb_config"
		if rc := c.GetRoundRobinLbConfig(); rc != nil {
			spec.path = want
			s := rc.GetSlowStartConfig()
			if spec.opts.SlowStart, err = slowStart(s.GetSlowStartWindow(), s.GetAggression(), s.GetMinWeightPercent(), want+".slow_start_config"); err != nil {
				return spec, err
			}
		}
	case clusterv3.Cluster_LEAST_REQUEST:
		spec.kind = lbLeastRequest
		want = "least_request_lb_config"
		if lc := c.GetLeastRequestLbConfig(); lc != nil {
			spec.path = want
			spec.leastRequest = leastRequestConfig(lc.GetChoiceCount(), lc.GetActiveRequestBias())
			s := lc.GetSlowStartConfig()
			if spec.opts.SlowStart, err = slowStart(s.GetSlowStartWindow(), s.GetAggression(), s.GetMinWeightPercent(), want+".slow_start_config"); err != nil {
				return spec, err
			}
		}
	case clusterv3.Cluster_RANDOM:
		spec.kind = lbRandom
	case clusterv3.Cluster_RING_HASH:
		spec.kind = lbRingHash
		want = "ring_hash_lb_config"
		if rc := c.GetRingHashLbConfig(); rc != nil {
			spec.path = want
			if spec.ringHash, err = ringHashConfig(rc.GetMinimumRingSize(), rc.GetMaximumRingSize(), want); err != nil {
				return spec, err
			}
		}
	case clusterv3.Cluster_MAGLEV:
		spec.kind = lbMaglev
		want = "maglev_lb_config"
		if mc := c.GetMaglevLbConfig(); mc != nil {
			spec.path = want
			if spec.maglev.TableSize, err = explicitCount64(mc.GetTableSize(), want+".table_size"); err != nil {
				return spec, err
			}
		}
	case clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG:
		return spec, fmt.Errorf("lb_policy: LOAD_BALANCING_POLICY_CONFIG without load_balancing_policy")
	default:
		return spec, fmt.Errorf("lb_policy: unknown value %d", lp)
	}
	if f := lbConfigField(c); f != "" && f != want && f != "original_dst_lb_config" {
		x.report(f, fmt.Sprintf("does not apply to lb_policy %v", c.GetLbPolicy()))
	}
	return spec, nil
}

// typedPolicies are the load_balancing_policy extensions Portico
// implements.
var typedPolicies = []proto.Message{
	&roundrobinv3.RoundRobin{},
	&leastrequestv3.LeastRequest{},
	&randomv3.Random{},
	&ringhashv3.RingHash{},
	&maglevv3.Maglev{},
}

// typedPolicy translates the first policy of load_balancing_policy that
// Portico implements; Envoy, too, skips the ones it does not know.
func (x *clusterTx) typedPolicy(p *clusterv3.LoadBalancingPolicy) (lbSpec, error) {
	var skipped []string
	for i, pol := range p.GetPolicies() {
		a := pol.GetTypedExtensionConfig().GetTypedConfig()
		known := false
		for _, m := range typedPolicies {
			if a.MessageName() == proto.MessageName(m) {
				known = true
				break
			}
		}
		if !known {
			skipped = append(skipped, a.GetTypeUrl())
			continue
		}
		path := fmt.Sprintf("load_balancing_policy.policies[%d].typed_extension_config.typed_config", i)
		m, err := x.unpack(a, path, typedPolicies...)
		if err != nil {
			return lbSpec{}, err
		}
		return x.typedSpec(m, path)
	}
	return lbSpec{}, fmt.Errorf("load_balancing_policy: no policy Portico implements (round_robin, least_request, random, ring_hash, maglev) among [%s]: %w", strings.Join(skipped, ", "), ErrUnsupported)
}

func (x *clusterTx) typedSpec(m proto.Message, path string) (lbSpec, error) {
	spec := lbSpec{path: path}
	var err error
	switch m := m.(type) {
	case *roundrobinv3.RoundRobin:
		spec.kind = lbRoundRobin
		spec.localityWeighted = localityWeighted(m.GetLocalityLbConfig())
		spec.opts.SlowStart, err = typedSlowStart(m.GetSlowStartConfig(), path+".slow_start_config")
	case *leastrequestv3.LeastRequest:
		spec.kind = lbLeastRequest
		spec.localityWeighted = localityWeighted(m.GetLocalityLbConfig())
		spec.leastRequest = leastRequestConfig(m.GetChoiceCount(), m.GetActiveRequestBias())
		spec.opts.SlowStart, err = typedSlowStart(m.GetSlowStartConfig(), path+".slow_start_config")
	case *randomv3.Random:
		spec.kind = lbRandom
		spec.localityWeighted = localityWeighted(m.GetLocalityLbConfig())
	case *ringhashv3.RingHash:
		spec.kind = lbRingHash
		spec.localityWeighted = m.GetLocalityWeightedLbConfig() != nil
		if m.GetHashFunction() == ringhashv3.RingHash_MURMUR_HASH_2 {
			x.report(path+".hash_function", "MURMUR_HASH_2: Portico's ring hashes with xxHash")
		}
		spec.ringHash, err = ringHashConfig(m.GetMinimumRingSize(), m.GetMaximumRingSize(), path)
	case *maglevv3.Maglev:
		spec.kind = lbMaglev
		spec.localityWeighted = m.GetLocalityWeightedLbConfig() != nil
		spec.maglev.TableSize, err = explicitCount64(m.GetTableSize(), path+".table_size")
	}
	return spec, err
}

func localityWeighted(c *lbcommonv3.LocalityLbConfig) bool {
	return c.GetLocalityWeightedLbConfig() != nil
}

func leastRequestConfig(choice *wrapperspb.UInt32Value, bias *corev3.RuntimeDouble) lb.LeastRequestConfig {
	// Envoy's defaults, choice_count 2 and active_request_bias 1.0, are
	// lb's; Envoy's validation keeps choice_count at 2 or more.
	cfg := lb.LeastRequestConfig{ChoiceCount: choice.GetValue()}
	if bias != nil {
		b := bias.GetDefaultValue()
		cfg.ActiveRequestBias = &b
	}
	return cfg
}

func ringHashConfig(lo, hi *wrapperspb.UInt64Value, path string) (lb.RingHashConfig, error) {
	// Envoy's defaults, 1024 and 8M entries, are lb's.
	var cfg lb.RingHashConfig
	var err error
	if cfg.MinimumRingSize, err = explicitCount64(lo, path+".minimum_ring_size"); err != nil {
		return cfg, err
	}
	cfg.MaximumRingSize, err = explicitCount64(hi, path+".maximum_ring_size")
	return cfg, err
}

// slowStart translates a slow_start_config; Envoy's defaults (aggression
// 1.0, min_weight_percent 10) are lb's, and a zero window disables slow
// start in both.
func slowStart(window *durationpb.Duration, aggression *corev3.RuntimeDouble, minWeight *typev3.Percent, path string) (lb.SlowStartConfig, error) {
	var s lb.SlowStartConfig
	var err error
	if s.Window, err = duration(window, path+".slow_start_window"); err != nil {
		return s, err
	}
	if aggression != nil {
		a := aggression.GetDefaultValue()
		s.Aggression = &a
	}
	if minWeight != nil {
		m := minWeight.GetValue()
		s.MinWeightPercent = &m
	}
	return s, nil
}

func typedSlowStart(c *lbcommonv3.SlowStartConfig, path string) (lb.SlowStartConfig, error) {
	if c == nil {
		return lb.SlowStartConfig{}, nil
	}
	return slowStart(c.GetSlowStartWindow(), c.GetAggression(), c.GetMinWeightPercent(), path)
}

// explicitCount64 is explicitCount for UInt64Value.
func explicitCount64(v *wrapperspb.UInt64Value, path string) (uint64, error) {
	if v == nil {
		return 0, nil
	}
	if v.GetValue() == 0 {
		return 0, fmt.Errorf("%s: explicit 0 (Portico's zero means Envoy's default): %w", path, ErrUnsupported)
	}
	return v.GetValue(), nil
}
