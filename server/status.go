package server

import (
	"context"

	"github.com/triadlm/triad/proto/triadv1"
)

// addHealth fills the parts of the status that come from the heartbeat
// monitor and the local state: role, clock offsets, alarms, events, seats.
func (s *Server) addHealth(ctx context.Context, resp *triadv1.ClusterStatusResponse) {
	resp.Role = roleName(s.node.raft.State().String())
	resp.Isolated = s.mon.Isolated()
	for _, o := range s.mon.Offsets() {
		resp.ClockOffsets = append(resp.ClockOffsets, &triadv1.ClockOffset{Peer: o.Peer, OffsetMs: o.Offset.Milliseconds(), Skewed: o.Skewed})
	}
	for _, a := range s.mon.Alarms() {
		resp.Alarms = append(resp.Alarms, &triadv1.Alarm{Kind: a.Kind, Member: a.Member, Message: a.Message, SinceUnixMs: a.Since.UnixMilli()})
	}
	for _, e := range s.mon.Events() {
		resp.Events = append(resp.Events, &triadv1.Event{Kind: e.Kind, Message: e.Message, AtUnixMs: e.At.UnixMilli()})
	}
	resp.Features, _ = s.Usage(ctx, false)
}
