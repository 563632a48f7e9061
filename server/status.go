package server

import (
	"context"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/triadv1"
)

// addHealth fills the parts of the status that come from the heartbeat
// monitor and the local state: role, clock offsets, alarms, events, seats.
func (s *Server) addHealth(ctx context.Context, resp *triadv1.ClusterStatusResponse) {
	resp.Role = roleName(s.node.raft.State().String())
	resp.Insecure = s.cfg.Insecure
	if s.cfg.Insecure {
		resp.Alarms = append(resp.Alarms, &triadv1.Alarm{Kind: "insecure_transport", Member: s.cfg.Name, SinceUnixMs: s.startedMs,
			Message: "member " + s.cfg.Name + " runs without TLS (--insecure): passwords, session tokens and failover traffic are in plaintext"})
	}
	resp.Build = s.buildInfo()
	resp.Alarms = append(resp.Alarms, s.upgradeAlarms()...)
	resp.Isolated = s.mon.Isolated()
	for _, o := range s.mon.Offsets() {
		resp.ClockOffsets = append(resp.ClockOffsets, &triadv1.ClockOffset{Peer: o.Peer, OffsetMs: o.Offset.Milliseconds(), Skewed: o.Skewed})
	}
	for _, a := range s.mon.Alarms() {
		resp.Alarms = append(resp.Alarms, &triadv1.Alarm{Kind: a.Kind, Member: a.Member, Subject: a.Subject, Message: a.Message, SinceUnixMs: a.Since.UnixMilli()})
	}
	for _, a := range s.fsm.LicenseAlarms(s.nowMs(), s.expiryWarning().Milliseconds()) {
		resp.Alarms = append(resp.Alarms, &triadv1.Alarm{Kind: a.Kind, Subject: a.Subject, Message: a.Message, SinceUnixMs: a.SinceMs})
	}
	for _, e := range s.mon.Events() {
		resp.Events = append(resp.Events, &triadv1.Event{Kind: e.Kind, Member: e.Member, Message: e.Message, AtUnixMs: e.At.UnixMilli()})
	}
	resp.Features, _ = s.UsageFeatures(ctx, false)
}

// ready reports whether the member can serve leases: formed, with a
// leader, and reaching a majority, i.e. its status word is operational or
// partially operational (one member down still serves). The reason names
// the status word either way, as /readyz shows it.
func (s *Server) ready() (bool, string) {
	if h := s.fsm.Halted(); h != nil {
		return false, h.Reason
	}
	word, why := s.statusWord()
	if word == membership.StatusNotOperational {
		return false, word + " (" + why + ")"
	}
	return true, word
}

// statusWord is the cluster status word as this member sees it (DESIGN §4:
// from the links; never operational without a leader) and, when it is not
// operational, why.
func (s *Server) statusWord() (word, why string) {
	if s.mode() == ModeUnconfigured {
		return membership.StatusNotOperational, "the cluster is not formed"
	}
	_, leader := s.leaderAddr()
	links := s.mon.Links()
	word = membership.StatusWithLeader(links, leader)
	switch {
	case word != membership.StatusNotOperational:
	case leader == "":
		why = "no leader"
	default:
		why = "no link between members is up"
	}
	return word, why
}

// leaderForMonitor tells the heartbeat monitor the leader and whether the
// cluster is formed (for the no_leader alarm and leader events).
func (s *Server) leaderForMonitor() (string, bool) {
	if s.mode() == ModeUnconfigured {
		return "", false
	}
	_, leader := s.leaderAddr()
	return leader, true
}

// healthLoop keeps the grpc.health.v1 statuses current: the whole server
// ("") is SERVING while the process runs; the Licensing service is SERVING
// only while the member is ready (the same rule as /readyz). Each tick also
// adopts a formation this member learned from the leader (adoptFormation).
func (s *Server) healthLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.adoptFormation()
		s.watchHalt()
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ok, _ := s.ready(); ok {
			st = healthpb.HealthCheckResponse_SERVING
		}
		s.health.SetServingStatus(triadv1.Licensing_ServiceDesc.ServiceName, st)
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expiryWarning is how long before a license's end the expiring alarm is
// raised (setting, default 7 days).
func (s *Server) expiryWarning() time.Duration {
	return time.Duration(s.fsm.Settings().ExpiryWarningDays) * 24 * time.Hour
}
