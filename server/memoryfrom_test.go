package server

import (
	"testing"
	"time"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
)

// A new leader leaves RebaseLeases.memory_from_ms out only when a member is
// known, from its heartbeat, to run a format that ignores the field (every
// member must apply the rebase alike); a member not heard yet does not
// withhold it, since a leader change after a member died is when it matters.
func TestMemoryFromWithheldOnlyForKnownOlderMembers(t *testing.T) {
	s := &Server{cfg: Config{Name: "alpha"}, fsm: fsm.New()}
	s.formation = &fsmpb.FormCluster{Mode: ModeFailover, Members: []*fsmpb.Member{{Name: "alpha"}, {Name: "bravo"}, {Name: "charlie"}}}
	s.mon = membership.NewMonitor("alpha", 0, 0, nil, nil)
	s.mon.SetPeers([]membership.Peer{{Name: "bravo", Addr: "b"}, {Name: "charlie", Addr: "c"}})
	ping := func(from string, format uint32) {
		s.mon.HandlePing(&peerpb.PingRequest{From: from, NowMs: time.Now().UnixMilli(), FormatVersion: format})
	}
	if m, _, older := s.memberBelowFormat(memoryFromFormat); older {
		t.Fatalf("no member heard yet, but %s counted as older", m)
	}
	ping("bravo", memoryFromFormat)
	if m, _, older := s.memberBelowFormat(memoryFromFormat); older {
		t.Fatalf("%s counted as older at format %d", m, memoryFromFormat)
	}
	ping("charlie", memoryFromFormat-1)
	if m, f, older := s.memberBelowFormat(memoryFromFormat); !older || m != "charlie" || f != memoryFromFormat-1 {
		t.Fatalf("memberBelowFormat = %s %d %v, want charlie at format %d", m, f, older, memoryFromFormat-1)
	}
	ping("charlie", fsm.FormatVersion)
	if m, _, older := s.memberBelowFormat(memoryFromFormat); older {
		t.Fatalf("%s still counted as older after its upgrade", m)
	}
}
