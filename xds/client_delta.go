package xds

import (
	"fmt"
	"maps"
	"sort"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/porticoproxy/portico"
)

// sendDelta sends ts's incremental request, if it has anything to say.
// The first request of a type on a stream subscribes to everything wanted
// ("*" for LDS and CDS) and lists in initial_resource_versions the
// versions cached, so that the server sends only what changed. Later ones
// carry the subscription's changes, and the ACK or NACK of the last
// response (its nonce; a spontaneous change has none).
func (c *Client) sendDelta(s *xdsSession, ts *subState, now time.Time) error {
	info := rtInfo[ts.t]
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: info.url}
	switch {
	case !ts.started:
		if info.wildcard {
			req.ResourceNamesSubscribe = []string{"*"}
		} else {
			req.ResourceNamesSubscribe = sortedNames(ts.names)
		}
		req.InitialResourceVersions = c.knownVersions(ts)
		ts.sent = maps.Clone(ts.names)
	case !info.wildcard:
		for n := range ts.names {
			if !ts.sent[n] {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			}
		}
		for n := range ts.sent {
			if !ts.names[n] {
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
			}
		}
		sort.Strings(req.ResourceNamesSubscribe)
		sort.Strings(req.ResourceNamesUnsubscribe)
		ts.sent = maps.Clone(ts.names)
	}
	if ts.pendingAck {
		req.ResponseNonce = ts.nonce
		req.ErrorDetail = errorDetail(ts.nack)
	}
	if ts.started && !ts.pendingAck && len(req.ResourceNamesSubscribe) == 0 && len(req.ResourceNamesUnsubscribe) == 0 {
		return nil
	}
	st, err := s.deltaFor(ts.t)
	if err != nil {
		return err
	}
	if s.takeNode(ts.t) {
		req.Node = c.node
	}
	if err := st.Send(req); err != nil {
		return fmt.Errorf("send delta %s request: %w", info.api, err)
	}
	ts.started, ts.pendingAck = true, false
	c.stats.SetConnected(true)
	if !info.wildcard {
		c.startTimers(ts, req.ResourceNamesSubscribe, now)
	}
	c.log.Debug("xds: delta request", "type", info.api, "subscribe", len(req.ResourceNamesSubscribe),
		"unsubscribe", len(req.ResourceNamesUnsubscribe), "initial_versions", len(req.InitialResourceVersions),
		"nonce", req.ResponseNonce, "nack", req.ErrorDetail != nil)
	return nil
}

// knownVersions returns the version of every resource of ts cached (the
// latest received, accepted), for initial_resource_versions.
func (c *Client) knownVersions(ts *subState) map[string]string {
	out := map[string]string{}
	wildcard := rtInfo[ts.t].wildcard
	for name, e := range ts.entries {
		if !wildcard && !ts.names[name] {
			continue
		}
		r := e.pending
		if r == nil {
			r = e.cur
		}
		if r != nil && r.version != "" {
			out[name] = r.version
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// handleDelta processes an incremental response and schedules its ACK or
// NACK.
func (c *Client) handleDelta(resp *discoveryv3.DeltaDiscoveryResponse, stream rtype, now time.Time) {
	t, ok := rtypeOf(resp.GetTypeUrl())
	if !ok {
		if stream < 0 || resp.GetTypeUrl() != "" {
			c.log.Warn("xds: delta response of an unknown type ignored", "type_url", resp.GetTypeUrl())
			return
		}
		t = stream
	}
	ts := c.types[t]
	info := rtInfo[t]
	ts.nonce = resp.GetNonce()
	ts.pendingAck = true
	ts.dirty = true
	if info.wildcard {
		c.stats.Count(info.api, "", portico.UpdateAttempt)
	}
	if t == rtCluster {
		c.live.cdsReceived = true
	}
	in, err := decodeDelta(t, resp.GetResources())
	var errs []resourceError
	if err != nil {
		errs = []resourceError{{err: fmt.Errorf("delta %s response: %w", info.api, err)}}
	} else {
		errs = c.update(t, in, resp.GetRemovedResources(), false, now)
	}
	c.settle(ts, resp.GetSystemVersionInfo(), resp.GetNonce(), errs, now, func(h *hasher) {
		for _, r := range resp.GetResources() {
			h.add(r.GetName()+"\x00"+r.GetVersion(), r.GetResource().GetValue())
		}
		for _, n := range resp.GetRemovedResources() {
			h.add("removed\x00" + n)
		}
	})
}

// decodeDelta reads a delta response's resources.
func decodeDelta(t rtype, list []*discoveryv3.Resource) ([]received, error) {
	out := make([]received, 0, len(list))
	seen := make(map[string]bool, len(list))
	for i, r := range list {
		name := r.GetName()
		var payload []byte
		if a := r.GetResource(); a != nil {
			payload = a.GetValue()
			n, err := typedName(i, t, a.GetTypeUrl(), name, payload)
			if err != nil {
				return nil, err
			}
			name = n
		}
		if err := claimName(i, t, name, seen); err != nil {
			return nil, err
		}
		out = append(out, received{name: name, version: r.GetVersion(), payload: payload})
	}
	return out, nil
}
