package fsm

import (
	"time"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Enforcement in the state machine: an admin write in the log carries the
// admin session it was made under, and Apply refuses it unless that session
// is open, full, not displaced and not idle at the command's now_ms. The
// member that proposed the command checked the same at its edge; checking
// again here means a bug at the edge, a stale member or a forwarded command
// (Peer.ForwardCommand) cannot change the cluster without a live full
// session. See docs/security.md, "Enforcement in the state machine".

// Kinds of commands, by who may issue them.
const (
	// kindAdmin: an administrator's write; needs a live full session.
	kindAdmin = "admin"
	// kindSession: opens, uses or closes a session (authorised by the
	// password or the token at the edge).
	kindSession = "session"
	// kindLeader: housekeeping only the leader proposes, decided by now_ms.
	kindLeader = "leader"
	// kindClient: licensed processes' requests (lease operations).
	kindClient = "client"
	// kindFormation: FormCluster and AdoptVendorTrust, accepted once each.
	kindFormation = "formation"
)

// commandKinds classifies every Command field (by its proto name). A new
// command must be added here; a test fails until it is.
var commandKinds = map[string]string{
	"form_cluster":       kindFormation,
	"adopt_vendor_trust": kindFormation,
	"enroll_license":     kindAdmin,
	"remove_license":     kindAdmin,
	"set_passwords":      kindAdmin,
	"set_settings":       kindAdmin,
	"recycle_named_user": kindAdmin,
	"set_rules":          kindAdmin,
	"add_vendor_key":     kindAdmin,
	"remove_vendor_key":  kindAdmin,
	"open_session":       kindSession,
	"close_session":      kindSession,
	"touch_session":      kindSession,
	"batch":              kindClient, // its AdminRelease ops are checked one by one
	"expire_leases":      kindLeader,
	"rebase_leases":      kindLeader,
	"expire_sessions":    kindLeader,
	"license_tick":       kindLeader,
	"recycle_sweep":      kindLeader,
	"replace_member":     kindAdmin,
	"set_trace":          kindAdmin,
	"start_history":      kindFormation, // accepted once, like AdoptVendorTrust
}

// enforcing reports whether the rules of this file apply: from the entry
// that recorded the vendor trust on (FormCluster of this build, or the
// one-time AdoptVendorTrust on a cluster formed before). Entries before it
// were written by builds that checked sessions and signatures only at the
// edge; they must replay exactly as they applied then (a member restarting
// after the upgrade replays them), so they are not refused now.
func (s *state) enforcing() bool { return s.trust != nil }

// checkedBefore reports whether cmd's session was checked by Apply before
// enforcement too (passwords and settings always carried their session;
// vendor-key commands are new).
func checkedBefore(cmd *fsmpb.Command) bool {
	switch cmd.Cmd.(type) {
	case *fsmpb.Command_SetPasswords, *fsmpb.Command_SetSettings,
		*fsmpb.Command_AddVendorKey, *fsmpb.Command_RemoveVendorKey,
		*fsmpb.Command_ReplaceMember, *fsmpb.Command_SetTrace:
		return true
	}
	return false
}

// adminSessionOf returns the session id an admin write carries, and false
// for commands that are not admin writes.
func adminSessionOf(cmd *fsmpb.Command) (string, bool) {
	switch c := cmd.Cmd.(type) {
	case *fsmpb.Command_EnrollLicense:
		return c.EnrollLicense.GetSessionId(), true
	case *fsmpb.Command_RemoveLicense:
		return c.RemoveLicense.GetSessionId(), true
	case *fsmpb.Command_SetPasswords:
		return c.SetPasswords.GetSessionId(), true
	case *fsmpb.Command_SetSettings:
		return c.SetSettings.GetSessionId(), true
	case *fsmpb.Command_RecycleNamedUser:
		return c.RecycleNamedUser.GetSessionId(), true
	case *fsmpb.Command_SetRules:
		return c.SetRules.GetSessionId(), true
	case *fsmpb.Command_AddVendorKey:
		return c.AddVendorKey.GetSessionId(), true
	case *fsmpb.Command_RemoveVendorKey:
		return c.RemoveVendorKey.GetSessionId(), true
	case *fsmpb.Command_ReplaceMember:
		return c.ReplaceMember.GetSessionId(), true
	case *fsmpb.Command_SetTrace:
		return c.SetTrace.GetSessionId(), true
	}
	return "", false
}

// requireFull checks that id is a live full session at now and marks it
// used. A session found idle is ended on the way (its tombstone says why).
func (s *state) requireFull(now int64, id string) *fsmpb.OpResult {
	if id == "" {
		return result(fsmpb.Code_SESSION_REFUSED, "this change carries no admin session: connect with --mode full and retry")
	}
	sess, refused := s.admin.live(id, now)
	if refused != nil {
		return result(fsmpb.Code_SESSION_REFUSED, "%s", refused.Message)
	}
	if sess.Mode != ModeFull {
		return result(fsmpb.Code_PERMISSION_DENIED, "permission denied: this needs a full-mode session; this session is %s: connect with --mode full", sess.Mode)
	}
	sess.LastUsedMs = max(sess.LastUsedMs, now)
	return nil
}

// applyAdminRelease force-releases one lease for an administrator.
func (s *state) applyAdminRelease(now int64, r *fsmpb.AdminRelease) *fsmpb.OpResult {
	if res := s.requireFull(now, r.GetSessionId()); res != nil {
		return res
	}
	if r.GetLeaseId() == 0 {
		return result(fsmpb.Code_INVALID_ARGUMENT, "no lease id given")
	}
	// An administrator's release needs no lease secret.
	return s.release(now, []uint64{r.GetLeaseId()}, byAdmin, func(int, *lease) bool { return true })
}

// Session cap: live sessions are replicated state, so their number is
// bounded. A tool on a member's host (local) may open localReserve more,
// so that an administrator can always get in to clean up.
const (
	MaxSessions  = 64
	localReserve = 8
)

// sessionCapRefusal returns the refusal for a new session when the cap is
// reached (call after expiring idle sessions), else nil. Not called before
// enforcement: older logs replay as written.
func (a *adminState) sessionCapRefusal(local bool) *fsmpb.OpResult {
	n := 0
	for _, sess := range a.sessions { // counting: order cannot show
		if sess.EndedMs == 0 {
			n++
		}
	}
	limit := MaxSessions
	if local {
		limit += localReserve
	}
	if n < limit {
		return nil
	}
	if local {
		return result(fsmpb.Code_TOO_MANY_SESSIONS,
			"too many open admin sessions (%d, at most %d plus %d for tools on a member's host): end unused ones with `triadctl disconnect`, or wait until idle ones close after %s",
			n, MaxSessions, localReserve, time.Duration(a.idleMs())*time.Millisecond)
	}
	return result(fsmpb.Code_TOO_MANY_SESSIONS,
		"too many open admin sessions (%d, at most %d): end unused ones with `triadctl disconnect` (a script holding a token should disconnect when done), wait until idle ones close after %s, or connect on a member's host with --local (which may open %d more)",
		n, MaxSessions, time.Duration(a.idleMs())*time.Millisecond, localReserve)
}
