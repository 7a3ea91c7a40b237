package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/lb"
)

// Endpoints translates a ClusterLoadAssignment into the endpoint set of
// cluster.Cluster.UpdateEndpoints (or a cluster.Config's Endpoints), in
// the assignment's order:
//
//   - LocalityLbEndpoints.priority becomes Endpoint.Priority, its
//     load_balancing_weight Endpoint.LocalityWeight (used only by
//     clusters with locality_weighted_lb_config, as in Envoy), and its
//     locality Endpoint.Locality, "region/zone/sub_zone" ("" when all
//     three are empty);
//   - LbEndpoint's socket address becomes Address (host:port, IPv6 in
//     brackets), load_balancing_weight Weight (absent is 1, Envoy's
//     default) and health_status Health (UNKNOWN, HEALTHY, UNHEALTHY,
//     DRAINING, TIMEOUT as HealthCheckTimeout, DEGRADED);
//   - metadata.filter_metadata is flattened into Metadata: key
//     "<filter>.<field>" (e.g. "envoy.lb.canary") for every top-level
//     field of each filter's Struct, with strings as they are, numbers in
//     the shortest decimal form that reads back the same ("1", "0.5"),
//     booleans as "true"/"false", null as "", and lists and structs as
//     compact JSON with sorted keys.
//
// Two endpoints with the same address are an error. policy's
// overprovisioning_factor must be Envoy's default, 140: package lb takes
// the factor per balancer, when the cluster is built, not per
// assignment.
//
// Validation and the allow-list work as in Cluster; errors are prefixed
// with the assignment's cluster_name. Endpoints does not retain or
// modify cla and is safe for concurrent use.
func (t *Translator) Endpoints(cla *endpointv3.ClusterLoadAssignment) ([]cluster.Endpoint, error) {
	if cla == nil {
		return nil, errors.New("cluster load assignment: nil")
	}
	x := &upstreamTx{opts: t.Options}
	eps, err := x.assignment(cla)
	if err != nil {
		return nil, fmt.Errorf("cluster load assignment %q: %w", cla.GetClusterName(), err)
	}
	return eps, nil
}

func (x *upstreamTx) assignment(cla *endpointv3.ClusterLoadAssignment) ([]cluster.Endpoint, error) {
	if err := cla.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid: %w", err)
	}
	x.check(cla.ProtoReflect(), "")
	eps, err := x.endpoints(cla, "")
	if err := errors.Join(x.unsupported(), err); err != nil {
		return nil, err
	}
	return eps, nil
}

// endpoints translates an assignment whose fields were checked already;
// prefix is its path with a trailing dot, or "".
func (x *upstreamTx) endpoints(cla *endpointv3.ClusterLoadAssignment, prefix string) ([]cluster.Endpoint, error) {
	if f := cla.GetPolicy().GetOverprovisioningFactor(); f != nil && f.GetValue() != lb.DefaultOverprovisioningFactor {
		return nil, fmt.Errorf("%spolicy.overprovisioning_factor: %d: only Envoy's default %d is supported: %w",
			prefix, f.GetValue(), lb.DefaultOverprovisioningFactor, ErrUnsupported)
	}
	n := 0
	for _, le := range cla.GetEndpoints() {
		n += len(le.GetLbEndpoints())
	}
	eps := make([]cluster.Endpoint, 0, n)
	// seen maps an address to its position, for duplicate errors.
	type pos struct{ i, j int32 }
	seen := make(map[string]pos, n)
	path := func(i, j int) string {
		return prefix + "endpoints[" + strconv.Itoa(i) + "].lb_endpoints[" + strconv.Itoa(j) + "]"
	}
	var addr []byte // reused: each address costs one allocation, its string
	for i, le := range cla.GetEndpoints() {
		loc := locality(le.GetLocality())
		for j, lbe := range le.GetLbEndpoints() {
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("%s.endpoint.address: no socket_address", path(i, j))
			}
			if sa.GetPortValue() == 0 {
				return nil, fmt.Errorf("%s.endpoint.address.socket_address.port_value: must be 1-65535", path(i, j))
			}
			addr = hostPort(addr[:0], sa.GetAddress(), sa.GetPortValue())
			ep := cluster.Endpoint{
				Address:        string(addr),
				Weight:         lbe.GetLoadBalancingWeight().GetValue(),
				Priority:       le.GetPriority(),
				Locality:       loc,
				LocalityWeight: le.GetLoadBalancingWeight().GetValue(),
			}
			var err error
			if ep.Health, err = healthStatus(lbe.GetHealthStatus()); err != nil {
				return nil, fmt.Errorf("%s.health_status: %w", path(i, j), err)
			}
			if fm := lbe.GetMetadata().GetFilterMetadata(); len(fm) > 0 {
				if ep.Metadata, err = flattenMetadata(fm); err != nil {
					return nil, fmt.Errorf("%s.metadata: %w", path(i, j), err)
				}
			}
			if p, dup := seen[ep.Address]; dup {
				return nil, fmt.Errorf("%s.endpoint.address: %s duplicates %s", path(i, j), ep.Address, path(int(p.i), int(p.j)))
			}
			seen[ep.Address] = pos{int32(i), int32(j)}
			eps = append(eps, ep)
		}
	}
	return eps, nil
}

// hostPort appends host:port to b, bracketing an IPv6 host, as
// net.JoinHostPort does.
func hostPort(b []byte, host string, port uint32) []byte {
	if strings.IndexByte(host, ':') >= 0 {
		b = append(b, '[')
		b = append(b, host...)
		b = append(b, ']')
	} else {
		b = append(b, host...)
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(port), 10)
}

// locality formats a Locality as "region/zone/sub_zone".
func locality(l *corev3.Locality) string {
	if l.GetRegion() == "" && l.GetZone() == "" && l.GetSubZone() == "" {
		return ""
	}
	return l.GetRegion() + "/" + l.GetZone() + "/" + l.GetSubZone()
}

func healthStatus(s corev3.HealthStatus) (cluster.HealthStatus, error) {
	switch s {
	case corev3.HealthStatus_UNKNOWN:
		return cluster.Unknown, nil
	case corev3.HealthStatus_HEALTHY:
		return cluster.Healthy, nil
	case corev3.HealthStatus_UNHEALTHY:
		return cluster.Unhealthy, nil
	case corev3.HealthStatus_DRAINING:
		return cluster.Draining, nil
	case corev3.HealthStatus_TIMEOUT:
		return cluster.HealthCheckTimeout, nil
	case corev3.HealthStatus_DEGRADED:
		return cluster.Degraded, nil
	}
	return 0, fmt.Errorf("unknown value %d", s)
}

// flattenMetadata applies the key scheme documented on Endpoints.
func flattenMetadata(fm map[string]*structpb.Struct) (map[string]string, error) {
	n := 0
	for _, s := range fm {
		n += len(s.GetFields())
	}
	out := make(map[string]string, n)
	for filter, s := range fm {
		for k, v := range s.GetFields() {
			var str string
			switch kind := v.GetKind().(type) {
			case *structpb.Value_StringValue:
				str = kind.StringValue
			case *structpb.Value_NumberValue:
				str = strconv.FormatFloat(kind.NumberValue, 'g', -1, 64)
			case *structpb.Value_BoolValue:
				str = strconv.FormatBool(kind.BoolValue)
			case *structpb.Value_NullValue, nil:
			default:
				// encoding/json sorts map keys, unlike protojson, whose
				// output is deliberately unstable.
				b, err := json.Marshal(v.AsInterface())
				if err != nil {
					return nil, fmt.Errorf("filter_metadata[%q].%s: %w", filter, k, err)
				}
				str = string(b)
			}
			out[filter+"."+k] = str
		}
	}
	return out, nil
}
