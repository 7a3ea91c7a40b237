package xds

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sort"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/porticoproxy/portico"
)

// flush sends the requests that are due, in type order (CDS, EDS, LDS,
// RDS, SDS). Every request carries the type's latest nonce, so that a
// subscription change is never dropped as stale by the server.
func (c *Client) flush(s *xdsSession, now time.Time) error {
	for _, ts := range c.types {
		if !ts.dirty || now.Before(ts.notBefore) {
			continue
		}
		if !ts.started && !ts.wants() {
			ts.dirty = false // nothing to subscribe to yet
			continue
		}
		var err error
		if s.delta {
			err = c.sendDelta(s, ts, now)
		} else {
			err = c.sendSotW(s, ts, now)
		}
		if err != nil {
			return err
		}
		ts.dirty = false
	}
	return nil
}

// sortedNames returns the set's names in order.
func sortedNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// startTimers starts the does-not-exist timers of names not received yet.
func (c *Client) startTimers(ts *subState, names []string, now time.Time) {
	for _, n := range names {
		if _, ok := ts.requested[n]; ok {
			continue
		}
		if e := ts.entries[n]; e != nil && (e.cur != nil || e.pending != nil || e.missing) {
			continue
		}
		if ts.requested == nil {
			ts.requested = map[string]time.Time{}
		}
		ts.requested[n] = now
		c.gw.RecordResourceState(rtInfo[ts.t].kind, n, portico.ResourceState{Status: portico.StatusRequested})
	}
}

func errorDetail(err error) *statuspb.Status {
	if err == nil {
		return nil
	}
	return &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

// sendSotW sends ts's state-of-the-world request: the last ACKed version,
// the latest nonce, every name subscribed (none for LDS and CDS, the
// legacy wildcard, which is what go-control-plane serves) and, while the
// last response stands NACKed, its error.
func (c *Client) sendSotW(s *xdsSession, ts *subState, now time.Time) error {
	info := rtInfo[ts.t]
	st, err := s.sotwFor(ts.t)
	if err != nil {
		return err
	}
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl:       info.url,
		VersionInfo:   ts.acked,
		ResponseNonce: ts.nonce,
		ErrorDetail:   errorDetail(ts.nack),
	}
	if !info.wildcard {
		req.ResourceNames = sortedNames(ts.names)
	}
	if s.takeNode(ts.t) {
		req.Node = c.node
	}
	if err := st.Send(req); err != nil {
		return fmt.Errorf("send %s request: %w", info.api, err)
	}
	ts.started = true
	c.stats.SetConnected(true)
	c.startTimers(ts, req.ResourceNames, now)
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug("xds: request", "type", info.api, "version", req.VersionInfo, "nonce", req.ResponseNonce,
			"resources", len(req.ResourceNames), "nack", ts.nack != nil)
	}
	return nil
}

// typedName checks that resource i of a response of type t has t's type
// URL and returns its name: name, or when that is empty the one decoded
// from payload.
func typedName(i int, t rtype, url, name string, payload []byte) (string, error) {
	if url != rtInfo[t].url {
		return "", fmt.Errorf("resources[%d]: type %s in a response of type %s", i, url, rtInfo[t].url)
	}
	if name != "" {
		return name, nil
	}
	n, err := resourceName(payload)
	if err != nil {
		return "", fmt.Errorf("resources[%d]: decode: %w", i, err)
	}
	return n, nil
}

// claimName records the name of resource i in seen, refusing an empty
// name or one seen before in the same response.
func claimName(i int, t rtype, name string, seen map[string]bool) error {
	if name == "" {
		return fmt.Errorf("resources[%d]: %s without a name", i, kindName[t])
	}
	if seen[name] {
		return fmt.Errorf("resources[%d]: duplicate %s name %q", i, kindName[t], name)
	}
	seen[name] = true
	return nil
}

// decodeSotW reads a response's resources: their names (without decoding
// the rest), unwrapping envoy.service.discovery.v3.Resource. A resource of
// another type, one without a name, or a name twice rejects the response.
func decodeSotW(t rtype, anys []*anypb.Any) ([]received, error) {
	out := make([]received, 0, len(anys))
	seen := make(map[string]bool, len(anys))
	for i, a := range anys {
		url, payload, name := a.GetTypeUrl(), a.GetValue(), ""
		if url == urlResource {
			var r discoveryv3.Resource
			if err := proto.Unmarshal(payload, &r); err != nil {
				return nil, fmt.Errorf("resources[%d]: decode: %w", i, err)
			}
			name = r.GetName()
			if r.GetResource() == nil {
				if name != "" {
					out = append(out, received{name: name}) // heartbeat
				}
				continue
			}
			url, payload = r.GetResource().GetTypeUrl(), r.GetResource().GetValue()
		}
		name, err := typedName(i, t, url, name, payload)
		if err != nil {
			return nil, err
		}
		if err := claimName(i, t, name, seen); err != nil {
			return nil, err
		}
		out = append(out, received{name: name, payload: payload})
	}
	return out, nil
}

// handleSotW processes a state-of-the-world response and schedules its
// ACK or NACK.
func (c *Client) handleSotW(resp *discoveryv3.DiscoveryResponse, stream rtype, now time.Time) {
	t, ok := rtypeOf(resp.GetTypeUrl())
	if !ok {
		if stream < 0 || resp.GetTypeUrl() != "" {
			c.log.Warn("xds: response of an unknown type ignored", "type_url", resp.GetTypeUrl())
			return
		}
		t = stream
	}
	ts := c.types[t]
	info := rtInfo[t]
	ts.nonce = resp.GetNonce()
	ts.dirty = true // every response is ACKed or NACKed
	if info.wildcard {
		c.stats.Count(info.api, "", portico.UpdateAttempt)
	}
	if t == rtCluster {
		c.live.cdsReceived = true
	}
	version := resp.GetVersionInfo()
	in, err := decodeSotW(t, resp.GetResources())
	var errs []resourceError
	if err != nil {
		errs = []resourceError{{version: version, err: fmt.Errorf("%s response version %q: %w", info.api, version, err)}}
	} else {
		for i := range in {
			in[i].version = version
		}
		errs = c.update(t, in, nil, info.wildcard, now)
	}
	c.settle(ts, version, resp.GetNonce(), errs, now, func(h *hasher) {
		h.add(version)
		for _, a := range resp.GetResources() {
			h.add(a.GetTypeUrl(), a.GetValue())
		}
	})
}

// hasher hashes a response's parts regardless of their order: servers
// such as go-control-plane list a snapshot's resources in map order, so
// a resend of the same update comes in another order.
type hasher struct {
	seed maphash.Seed
	sum  uint64
}

func (h *hasher) add(s string, b ...[]byte) {
	var mh maphash.Hash
	mh.SetSeed(h.seed)
	mh.WriteString(s)
	for _, p := range b {
		mh.Write(p)
	}
	h.sum += mh.Sum64()
}

// settle records a response's outcome: an ACK, or a NACK paced when it
// repeats the last one (hash feeds the response's content to h).
func (c *Client) settle(ts *subState, version, nonce string, errs []resourceError, now time.Time, hash func(*hasher)) {
	info := rtInfo[ts.t]
	if len(errs) == 0 {
		if !c.delta() {
			ts.acked = version
		}
		ts.nack, ts.nackCount, ts.lastNACK, ts.notBefore = nil, 0, 0, time.Time{}
		if info.wildcard {
			c.stats.Count(info.api, "", portico.UpdateSuccess)
		}
		return
	}
	ts.nack = joinErrors(errs)
	if info.wildcard {
		c.stats.Count(info.api, "", portico.UpdateRejected)
	}
	h := hasher{seed: c.seed}
	hash(&h)
	sum := h.sum
	if ts.nackCount > 0 && sum == ts.lastNACK {
		// The server resent the update just rejected (go-control-plane
		// does, at once, forever): NACK it again, but later.
		ts.nackCount++
		ts.notBefore = now.Add(c.cfg.NACKBackoff.delay(ts.nackCount-1, c.rng))
		return
	}
	ts.lastNACK, ts.nackCount, ts.notBefore = sum, 1, time.Time{}
	c.log.Warn("xds: update rejected", "type", info.api, "version", version, "nonce", nonce, "err", ts.nack)
	if c.cfg.OnNACK == nil {
		return
	}
	for _, e := range slices.Clone(errs) {
		v := e.version
		if v == "" {
			v = version
		}
		c.cfg.OnNACK(NACK{TypeURL: info.url, Version: v, Nonce: nonce, Resource: e.name, Err: e.err})
	}
}
