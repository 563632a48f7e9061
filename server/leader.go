package server

import (
	"context"
	"time"

	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/fsmpb"
)

// watchLeadership starts the leader's duties when this member becomes
// leader and stops them when it loses leadership.
func (s *Server) watchLeadership() {
	var stop context.CancelFunc
	done := make(chan struct{})
	close(done)
	for {
		select {
		case <-s.ctx.Done():
			if stop != nil {
				stop()
			}
			<-done
			return
		case leader := <-s.notify:
			if stop != nil {
				stop()
				<-done
				stop = nil
			}
			if leader {
				var ctx context.Context
				ctx, stop = context.WithCancel(s.ctx)
				done = make(chan struct{})
				go func() {
					defer close(done)
					s.leaderLoop(ctx)
				}()
			}
		}
	}
}

// leaderLoop: catch up (Barrier), record a pending formation, rebase every
// lease's TTL on this leader's clock, then expire unrenewed leases every
// second until leadership ends.
func (s *Server) leaderLoop(ctx context.Context) {
	s.log.Info("became leader")
	defer s.lclock.follow()
	defer s.consistentReady.Store(false)
	for ctx.Err() == nil {
		if err := s.node.raft.Barrier(applyTimeout).Error(); err == nil {
			break
		} else if !s.isLeader() {
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	// After the barrier the FSM holds every committed entry: its last now
	// is the floor of this leader's clock, and the commit index is one of
	// this term, good for consistent reads.
	committed := s.fsm.LastNowMs()
	s.lclock.lead(committed)
	s.consistentReady.Store(true)
	if s.fsm.Cluster() == nil {
		s.formMu.Lock()
		fc := s.formation
		s.formMu.Unlock()
		if fc != nil {
			s.leaderApply(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_FormCluster{FormCluster: fc}})
		}
	}
	s.adoptTrust(ctx)
	s.startHistory(ctx)
	// Rebase even with no leases: it is cheap and keeps one rule for all.
	rebase := &fsmpb.RebaseLeases{MemoryFromMs: committed}
	if m, format, older := s.memberBelowFormat(memoryFromFormat); older {
		// An older build ignores memory_from_ms: every member must apply
		// the rebase alike, so it goes without (docs/decisions.md).
		s.log.Warn("member runs an older command format: request memory is not kept across this leader change's clock jump",
			"member", m, "format", format, "needs", memoryFromFormat)
		rebase.MemoryFromMs = 0
	}
	s.leaderApply(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_RebaseLeases{RebaseLeases: rebase}})
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastSweep time.Time
	for {
		select {
		case <-ctx.Done():
			s.log.Info("leadership lost")
			return
		case <-t.C:
			s.reconcileVoters()
			if s.fsm.HasExpired(s.stampMs()) {
				s.leaderApply(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_ExpireLeases{ExpireLeases: &fsmpb.ExpireLeases{}}})
			}
			// Licenses become valid and expire on time by themselves: the
			// leader commits the change when the clock crosses a date.
			if s.fsm.NeedsLicenseTick(s.stampMs()) {
				s.leaderApply(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_LicenseTick{LicenseTick: &fsmpb.LicenseTick{}}})
			}
			if s.fsm.HasIdleSessions(s.stampMs()) {
				s.leaderApply(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_ExpireSessions{ExpireSessions: &fsmpb.ExpireSessions{}}})
			}
			// A cluster formed before vendor trust was replicated adopts it
			// once every member runs a format that knows the command.
			if _, recorded := s.fsm.VendorTrust(); !recorded && s.fsm.Cluster() != nil &&
				s.checkFormatNeed(2, "adopt_vendor_trust", "") == nil {
				s.adoptTrust(ctx)
			}
			s.startHistory(ctx)
			if day, due := sweepDue(s.now(), lastSweep, s.fsm.Settings().AutoRecycling); due {
				lastSweep = day
				s.leaderApply(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_RecycleSweep{RecycleSweep: &fsmpb.RecycleSweep{}}})
			}
		}
	}
}

// sweepDue tells whether the daily automatic recycling runs now: at the
// first tick of a UTC day (00:00), once per day, when the setting is on.
// A leader that takes over later that day does not run it: the next
// midnight does.
func sweepDue(now time.Time, last time.Time, on bool) (time.Time, bool) {
	now = now.UTC()
	day := now.Truncate(24 * time.Hour)
	return day, on && now.Sub(day) < time.Minute && day.After(last)
}

// leaderApply applies a leader-only command, retrying while this member
// still leads.
func (s *Server) leaderApply(ctx context.Context, cmd *fsmpb.Command) {
	if err := s.checkFormat(cmd); err != nil {
		s.log.Warn("leader command waits for an upgrade", "command", cmdName(cmd), "reason", status.Convert(err).Message())
		return
	}
	for ctx.Err() == nil && s.isLeader() {
		resp, err := s.applyLocal(cmd)
		if err == nil {
			if r, ok := resp.(*fsmpb.OpResult); ok {
				s.logLeaderResult(cmd, r)
			}
			return
		}
		s.log.Warn("leader command failed", "command", cmdName(cmd), "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Server) logLeaderResult(cmd *fsmpb.Command, r *fsmpb.OpResult) {
	switch cmd.GetCmd().(type) {
	case *fsmpb.Command_ExpireLeases:
		for _, l := range r.GetLeases() {
			s.log.Info("lease expired", "lease_id", l.GetLeaseId())
		}
	case *fsmpb.Command_FormCluster:
		s.log.Info("formation recorded", "code", r.GetCode().String(), "message", r.GetMessage())
	case *fsmpb.Command_AdoptVendorTrust:
		s.log.Info("vendor trust adoption", "code", r.GetCode().String(), "message", r.GetMessage())
	case *fsmpb.Command_LicenseTick, *fsmpb.Command_RecycleSweep:
		if r.GetMessage() != "" {
			s.log.Warn(r.GetMessage(), "command", cmdName(cmd))
		}
	case *fsmpb.Command_ExpireSessions:
		s.log.Info("idle admin sessions expired", "message", r.GetMessage())
	}
}

func cmdName(cmd *fsmpb.Command) string {
	switch cmd.GetCmd().(type) {
	case *fsmpb.Command_ExpireLeases:
		return "ExpireLeases"
	case *fsmpb.Command_RebaseLeases:
		return "RebaseLeases"
	case *fsmpb.Command_FormCluster:
		return "FormCluster"
	case *fsmpb.Command_ExpireSessions:
		return "ExpireSessions"
	case *fsmpb.Command_AdoptVendorTrust:
		return "AdoptVendorTrust"
	}
	return "command"
}
