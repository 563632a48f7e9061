package server

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// Rolling upgrades (docs/upgrading.md). Every member reports its build
// (version, command format, whether it halted) in each heartbeat. A command
// of a format above 1 is proposed only when this member and every other
// member last reported a format that knows it; otherwise the caller gets
// FAILED_PRECONDITION naming the member to upgrade. A member whose FSM
// halted at a command it does not know (fsm.Halted) refuses to serve and
// hands leadership over until it is upgraded.

// build is what this member reports in its heartbeats.
func (s *Server) build() membership.Build {
	b := membership.Build{Version: Version, Format: s.fsm.MaxFormat()}
	if h := s.fsm.Halted(); h != nil {
		b.Halted = h.Reason
	}
	return b
}

// VersionLine is `triadd --version`: version, commit, Go version and the
// command format this build applies.
func VersionLine() string {
	return fmt.Sprintf("%s; command format %d", buildinfo.Get(), fsm.FormatVersion)
}

// buildInfo is this member's build for /v1/status.
func (s *Server) buildInfo() *triadv1.BuildInfo {
	bi := buildinfo.Get()
	return &triadv1.BuildInfo{Version: Version, Commit: bi.Commit, GoVersion: bi.GoVersion, FormatVersion: s.fsm.MaxFormat()}
}

// opUse names the gated commands as an administrator knows them.
var opUse = map[string]string{
	"add_vendor_key":              "`vendor trust add`",
	"remove_vendor_key":           "`vendor trust remove`",
	"adopt_vendor_trust":          "the adoption of vendor trust",
	"batch.admin_release":         "`usage release`",
	"replace_member":              "`cluster replace-member`",
	"enroll_license.version_text": "`license enroll` of a license with dotted versions",
	"replace_member.version_text": "`cluster replace-member` with a license with dotted versions",
	"batch.grant.version_text":    "checkouts at a dotted version",
	"batch.borrow.version_text":   "borrows at a dotted version",
	"enroll_license.components":   "`license enroll` of a license that defines a package",
	"replace_member.components":   "`cluster replace-member` with a license that defines a package",
	// Issue 13: idle timeout and linger.
	"batch.renew.idle_ms":               "idle reports of client renewals (Lease.SetIdle)",
	"set_rules.timeout_linger":          "`rules set` with TIMEOUT or LINGER",
	"enroll_license.linger_min_timeout": "`license enroll` of a license with linger or min_timeout",
	"replace_member.linger_min_timeout": "`cluster replace-member` with a license with linger or min_timeout",
	// Issue 13: queued checkouts.
	"batch.dequeue":             "cancelling a queued checkout",
	"batch.grant.queue_wait_ms": "a queued checkout (`checkout --queue`)",
	// Issue 14: usage tracing.
	"set_trace": "`trace on` / `trace off`",
	// Issue 14: usage history.
	"start_history":                  "the start of the usage history",
	"set_settings.history_retention": "`settings set --history-minute-days/--history-hour-days`",
}

func opDisplay(op string) string {
	if u, ok := opUse[op]; ok {
		return fmt.Sprintf("%s (%s)", u, op)
	}
	return op
}

// checkFormat refuses cmd unless every member applies its format. A
// member replacement does not wait for the member it replaces (it is
// dead); the replacement's own format is checked before it is proposed.
func (s *Server) checkFormat(cmd *fsmpb.Command) error {
	need, op := fsm.FormatOf(cmd)
	return s.checkFormatNeed(need, op, cmd.GetReplaceMember().GetOldName())
}

// checkOpsFormat is checkFormat for lease operations before batching.
func (s *Server) checkOpsFormat(ops []*fsmpb.Op) error {
	for _, o := range ops {
		if need, op := fsm.OpsFormat(o); need > 1 {
			if err := s.checkFormatNeed(need, op, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Server) checkFormatNeed(need uint32, op, except string) error {
	if need <= 1 {
		return nil // every build applies format 1
	}
	if own := s.fsm.MaxFormat(); own < need {
		return status.Errorf(codes.FailedPrecondition,
			"member %s (this member) runs command format %d (version %s); upgrade it before using %s, which needs format %d on every member: see docs/upgrading.md",
			s.cfg.Name, own, Version, opDisplay(op), need)
	}
	for _, m := range s.cluster().GetMembers() {
		name := m.GetName()
		if name == s.cfg.Name || (except != "" && name == except) {
			continue
		}
		b, heard := s.mon.PeerBuild(name)
		switch {
		case !heard:
			return status.Errorf(codes.FailedPrecondition,
				"member %s has not reported its command format since member %s started (it is unreachable): %s needs format %d on every member; start %s (upgraded), wait until `cluster status` shows its version, and retry: see docs/upgrading.md",
				name, s.cfg.Name, opDisplay(op), need, name)
		case b.Format < need:
			return status.Errorf(codes.FailedPrecondition,
				"member %s runs command format %d (version %s); upgrade it before using %s, which needs format %d on every member: see docs/upgrading.md",
				name, b.Format, orUnknown(b.Version), opDisplay(op), need)
		}
	}
	return nil
}

// memoryFromFormat is the command format whose builds apply
// RebaseLeases.memory_from_ms (a field added to a format-1 command).
const memoryFromFormat = 3

// memberBelowFormat names a member known, from its last heartbeat, to
// apply only formats below need. Unlike checkFormatNeed, a member not heard
// yet does not count: fields that older builds ignore are withheld only
// when an older build is known to be there.
func (s *Server) memberBelowFormat(need uint32) (name string, format uint32, older bool) {
	for _, m := range s.cluster().GetMembers() {
		if m.GetName() == s.cfg.Name {
			continue
		}
		if b, heard := s.mon.PeerBuild(m.GetName()); heard && b.Format < need {
			return m.GetName(), b.Format, true
		}
	}
	return "", 0, false
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown: a build from before versions were reported"
	}
	return v
}

// haltedError is the refusal of a member whose FSM halted, or nil.
func (s *Server) haltedError() error {
	if h := s.fsm.Halted(); h != nil {
		return status.Errorf(codes.Unavailable, "member %s cannot serve: %s; meanwhile use the other members", s.cfg.Name, h.Reason)
	}
	return nil
}

// haltedAllowed are the public methods a halted member still answers:
// self-description and status, which say what is wrong.
func haltedAllowed(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.") ||
		method == triadv1.Admin_Discover_FullMethodName || method == triadv1.Admin_ClusterStatus_FullMethodName
}

// haltedUnary refuses every call but haltedAllowed ones while the FSM is
// halted (UNAVAILABLE: clients go on to another member).
func (s *Server) haltedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !haltedAllowed(info.FullMethod) {
		if err := s.haltedError(); err != nil {
			return nil, err
		}
	}
	return h(ctx, req)
}

func (s *Server) haltedStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !haltedAllowed(info.FullMethod) {
		if err := s.haltedError(); err != nil {
			return err
		}
	}
	return h(srv, ss)
}

// upgradeAlarms are the alarms of members that halted: this one, and the
// peers that said so in their heartbeats.
func (s *Server) upgradeAlarms() []*triadv1.Alarm {
	var out []*triadv1.Alarm
	if h := s.fsm.Halted(); h != nil {
		out = append(out, &triadv1.Alarm{Kind: "upgrade_required", Member: s.cfg.Name, SinceUnixMs: s.haltedSince.Load(),
			Message: "member " + s.cfg.Name + ": " + h.Reason})
	}
	for _, m := range s.cluster().GetMembers() {
		if m.GetName() == s.cfg.Name {
			continue
		}
		if b, ok := s.mon.PeerBuild(m.GetName()); ok && b.Halted != "" {
			out = append(out, &triadv1.Alarm{Kind: "upgrade_required", Member: m.GetName(),
				Message: "member " + m.GetName() + ": " + b.Halted})
		}
	}
	return out
}

// watchHalt (every healthLoop tick) logs once when the FSM halts and hands
// leadership over: a halted member cannot answer what it proposes.
func (s *Server) watchHalt() {
	h := s.fsm.Halted()
	if h == nil {
		s.haltedSince.Store(0)
		return
	}
	if s.haltedSince.CompareAndSwap(0, s.nowMs()) {
		s.log.Error("stopped applying the replicated log: upgrade this member", "entry", h.Index, "reason", h.Reason)
	}
	if s.isLeader() {
		if err := s.node.raft.LeadershipTransfer().Error(); err != nil {
			s.log.Warn("halted leader: leadership transfer failed", "error", err)
		} else {
			s.log.Info("halted leader: leadership transferred")
		}
	}
}
