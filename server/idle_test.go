package server

import (
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
)

// Idle times are validated, and dropped from renewals (never refused)
// while some member is not known to run format 4.
func TestIdleReportsAndUpgradeGate(t *testing.T) {
	s := &Server{cfg: Config{Name: "alpha"}, fsm: fsm.New()}
	s.formation = &fsmpb.FormCluster{Mode: ModeFailover, Members: []*fsmpb.Member{{Name: "alpha"}, {Name: "bravo"}, {Name: "charlie"}}}
	s.mon = membership.NewMonitor("alpha", 0, 0, nil, nil)
	s.mon.SetPeers([]membership.Peer{{Name: "bravo", Addr: "b"}, {Name: "charlie", Addr: "c"}})
	ping := func(from string, format uint32) {
		s.mon.HandlePing(&peerpb.PingRequest{From: from, NowMs: time.Now().UnixMilli(), FormatVersion: format})
	}
	for _, tt := range []struct {
		idle []int64
		want string
	}{
		{[]int64{1, 2, 3}, "3 idle times for 2 lease ids"},
		{[]int64{-1}, "idle time of lease 7 is negative"},
		{[]int64{maxIdleMs + 1}, "more than a year"},
	} {
		if _, err := s.idleReports([]uint64{7, 8}, tt.idle); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("idleReports(%v) = %v, want %q", tt.idle, err, tt.want)
		}
	}
	if got, err := s.idleReports([]uint64{7, 8}, []int64{0, 0}); err != nil || got != nil {
		t.Fatalf("all active: %v %v, want no idle list", got, err)
	}
	renew := func() []*fsmpb.Op {
		return []*fsmpb.Op{{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: []uint64{7}, IdleMs: []int64{5000}}}}}
	}
	ops := renew()
	s.dropIdleUnlessAllKnow(ops) // nobody heard yet
	if ops[0].GetRenew().IdleMs != nil {
		t.Fatal("idle times kept while the other members are not heard")
	}
	ping("bravo", fsm.FormatVersion)
	ping("charlie", 3)
	ops = renew()
	s.dropIdleUnlessAllKnow(ops)
	if ops[0].GetRenew().IdleMs != nil {
		t.Fatal("idle times kept while charlie runs format 3")
	}
	if err := s.checkOpsFormat(ops); err != nil {
		t.Fatalf("the renewal without idle times is refused: %v", err)
	}
	ping("charlie", fsm.FormatVersion)
	ops = renew()
	s.dropIdleUnlessAllKnow(ops)
	if len(ops[0].GetRenew().IdleMs) != 1 {
		t.Fatal("idle times dropped though every member runs format 4")
	}
	if err := s.checkOpsFormat(ops); err != nil {
		t.Fatal(err)
	}
}
