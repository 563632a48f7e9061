package fsm

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Administration state: sessions, password hashes and settings. Passwords
// are hashed and tokens drawn by the member that receives the request,
// before proposing; Apply only stores hashes and decides with now_ms.

// Session modes.
const (
	ModeFull       = "full"
	ModeRestricted = "restricted"
)

// Remote administration policies.
const (
	PolicyFull       = "full"
	PolicyRestricted = "restricted"
	PolicyNone       = "none"
)

const (
	// DefaultSessionIdleTimeout closes a session nobody used for 30 minutes.
	DefaultSessionIdleTimeout = 30 * time.Minute
	minSessionIdleTimeout     = time.Second
	maxSessionIdleTimeout     = 24 * time.Hour
	// tombstoneMs is how long an ended session is remembered, so that its
	// token's next call says why it ended.
	tombstoneMs = int64(time.Hour / time.Millisecond)

	// DefaultExpiryWarningDays is how early a license's end raises an alarm.
	DefaultExpiryWarningDays = 7
	// ReasonDisplaced is the exact message a displaced session's next call gets.
	ReasonDisplaced = "disconnected: a local administrator took full access"
)

// Settings are the effective administration settings (defaults filled in).
type Settings struct {
	SessionIdleTimeout time.Duration
	// IsolationMinutes is 0 when never set: the member's own configuration applies.
	IsolationMinutes uint32
	Statistics       bool
	AutoRecycling    bool
	RemotePolicy     string
	// ExpiryWarningDays: licenses ending within this many days raise an alarm.
	ExpiryWarningDays uint32
	// Usage history retention (days of per-minute and per-hour buckets).
	HistoryMinuteDays, HistoryHourDays uint32
}

// adminState is the administration part of the replicated state.
type adminState struct {
	auth     *fsmpb.AdminAuth
	settings *fsmpb.AdminSettings
	// sessions holds live sessions and tombstones (ended_ms != 0), by id.
	sessions map[string]*fsmpb.AdminSession
	// activated is set by the first license enrolled and never cleared:
	// from then on remote administration follows the policy.
	activated bool
}

func newAdminState() adminState {
	return adminState{sessions: map[string]*fsmpb.AdminSession{}}
}

func (a *adminState) idleMs() int64 {
	if a.settings != nil && a.settings.SessionIdleTimeoutMs != nil {
		return a.settings.GetSessionIdleTimeoutMs()
	}
	return DefaultSessionIdleTimeout.Milliseconds()
}

func (a *adminState) effective() Settings {
	st := a.settings
	out := Settings{
		SessionIdleTimeout: time.Duration(a.idleMs()) * time.Millisecond,
		IsolationMinutes:   st.GetIsolationMinutes(),
		Statistics:         true,
		AutoRecycling:      st.GetAutoRecycling(),
		RemotePolicy:       PolicyFull,
		ExpiryWarningDays:  DefaultExpiryWarningDays,
		HistoryMinuteDays:  DefaultHistoryMinuteDays,
		HistoryHourDays:    DefaultHistoryHourDays,
	}
	if st != nil && st.HistoryMinuteDays != nil {
		out.HistoryMinuteDays = st.GetHistoryMinuteDays()
	}
	if st != nil && st.HistoryHourDays != nil {
		out.HistoryHourDays = st.GetHistoryHourDays()
	}
	if st != nil && st.ExpiryWarningDays != nil {
		out.ExpiryWarningDays = st.GetExpiryWarningDays()
	}
	if st != nil && st.Statistics != nil {
		out.Statistics = st.GetStatistics()
	}
	if st != nil && st.RemotePolicy != nil {
		out.RemotePolicy = st.GetRemotePolicy()
	}
	return out
}

// sortedSessionIDs returns every session id (tombstones included), sorted.
func (a *adminState) sortedSessionIDs() []string {
	ids := make([]string, 0, len(a.sessions))
	for id := range a.sessions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// fullHolder returns the live full session, if any (there is at most one).
func (a *adminState) fullHolder() *fsmpb.AdminSession {
	for _, id := range a.sortedSessionIDs() {
		if s := a.sessions[id]; s.EndedMs == 0 && s.Mode == ModeFull {
			return s
		}
	}
	return nil
}

func (a *adminState) idle(sess *fsmpb.AdminSession, now int64) bool {
	return sess.EndedMs == 0 && now-sess.LastUsedMs > a.idleMs()
}

func idleReason(idleMs int64) string {
	return fmt.Sprintf("disconnected: the session was idle for more than %s; connect again", time.Duration(idleMs)*time.Millisecond)
}

func end(sess *fsmpb.AdminSession, now int64, reason string) {
	sess.EndedMs = now
	sess.EndReason = reason
}

// expireIdle ends every session idle at now and prunes old tombstones.
// It returns how many sessions it ended.
func (a *adminState) expireIdle(now int64) int {
	n := 0
	for _, id := range a.sortedSessionIDs() {
		sess := a.sessions[id]
		switch {
		case a.idle(sess, now):
			end(sess, now, idleReason(a.idleMs()))
			n++
		case sess.EndedMs != 0 && sess.EndedMs < now-tombstoneMs:
			delete(a.sessions, id)
		}
	}
	return n
}

func age(now, since int64) string {
	return (time.Duration(now-since) * time.Millisecond).Round(time.Second).String()
}

// live returns the session id names if it is live at now, ending it first
// when it was idle; otherwise a NOT_FOUND result saying why.
func (a *adminState) live(id string, now int64) (*fsmpb.AdminSession, *fsmpb.OpResult) {
	sess, ok := a.sessions[id]
	if !ok {
		return nil, result(fsmpb.Code_NOT_FOUND, "unknown or closed session: connect again")
	}
	if a.idle(sess, now) {
		end(sess, now, idleReason(a.idleMs()))
	}
	if sess.EndedMs != 0 {
		return nil, result(fsmpb.Code_NOT_FOUND, "%s", sess.EndReason)
	}
	return sess, nil
}

func (s *state) applyOpenSession(now int64, c *fsmpb.OpenSession) *fsmpb.OpResult {
	a := &s.admin
	in := c.GetSession()
	switch {
	case s.cluster == nil:
		return result(fsmpb.Code_NOT_FORMED, "the cluster is not formed yet")
	case in.GetId() == "":
		return result(fsmpb.Code_INVALID_ARGUMENT, "session without an id")
	case in.GetMode() != ModeFull && in.GetMode() != ModeRestricted:
		return result(fsmpb.Code_INVALID_ARGUMENT, "unknown session mode %q: want %q or %q", in.GetMode(), ModeFull, ModeRestricted)
	case c.GetAuthVersion() != a.auth.GetVersion():
		return result(fsmpb.Code_INVALID_ARGUMENT, "the passwords changed while connecting: connect again")
	}
	if old, dup := a.sessions[in.Id]; dup {
		// Ids are hashes of random tokens: a duplicate is the same connect
		// retried after a leader change. Answer as the first time did.
		if old.EndedMs != 0 {
			return result(fsmpb.Code_NOT_FOUND, "%s", old.EndReason)
		}
		return result(fsmpb.Code_OK, "session opened")
	}
	a.expireIdle(now)
	if s.enforcing() {
		if r := a.sessionCapRefusal(in.GetLocal()); r != nil {
			return r
		}
	}
	msg := "session opened"
	if in.Mode == ModeFull {
		if h := a.fullHolder(); h != nil {
			if !in.GetLocal() {
				return result(fsmpb.Code_ALREADY_EXISTS,
					"full access is already held by %s, connected %s ago (last used %s ago): connect with --mode restricted, or wait until it disconnects or stays idle for %s",
					h.Origin, age(now, h.OpenedMs), age(now, h.LastUsedMs), time.Duration(a.idleMs())*time.Millisecond)
			}
			end(h, now, ReasonDisplaced)
			msg = fmt.Sprintf("session opened; the full session of %s was disconnected (local priority)", h.Origin)
		}
	}
	sess := proto.Clone(in).(*fsmpb.AdminSession)
	sess.OpenedMs, sess.LastUsedMs, sess.EndedMs, sess.EndReason = now, now, 0, ""
	a.sessions[sess.Id] = sess
	return result(fsmpb.Code_OK, "%s", msg)
}

func (s *state) applyCloseSession(c *fsmpb.CloseSession) *fsmpb.OpResult {
	if _, ok := s.admin.sessions[c.GetId()]; !ok {
		return result(fsmpb.Code_NOT_FOUND, "unknown or closed session")
	}
	delete(s.admin.sessions, c.GetId())
	return result(fsmpb.Code_OK, "session closed")
}

func (s *state) applyTouchSession(now int64, c *fsmpb.TouchSession) *fsmpb.OpResult {
	sess, refused := s.admin.live(c.GetId(), now)
	if refused != nil {
		return refused
	}
	sess.LastUsedMs = max(sess.LastUsedMs, now)
	return result(fsmpb.Code_OK, "session used")
}

func (s *state) applyExpireSessions(now int64) *fsmpb.OpResult {
	n := s.admin.expireIdle(now)
	return result(fsmpb.Code_OK, "%d idle session(s) closed", n)
}

// applySetPasswords runs once applyLocked checked the full session.
func (s *state) applySetPasswords(c *fsmpb.SetPasswords) *fsmpb.OpResult {
	a := &s.admin
	if c.GetAuthVersion() != a.auth.GetVersion() {
		if c.GetAuthVersion()+1 == a.auth.GetVersion() &&
			(len(c.GetFullHash()) == 0 || slices.Equal(c.GetFullHash(), a.auth.GetFullHash())) &&
			(len(c.GetRestrictedHash()) == 0 || slices.Equal(c.GetRestrictedHash(), a.auth.GetRestrictedHash())) {
			return result(fsmpb.Code_OK, "password set") // the same change, retried
		}
		return result(fsmpb.Code_INVALID_ARGUMENT, "the passwords changed meanwhile: retry")
	}
	if len(c.GetFullHash()) == 0 && len(c.GetRestrictedHash()) == 0 {
		return result(fsmpb.Code_INVALID_ARGUMENT, "no password given")
	}
	if len(c.GetRestrictedHash()) > 0 && len(c.GetFullHash()) == 0 && len(a.auth.GetFullHash()) == 0 {
		return result(fsmpb.Code_INVALID_ARGUMENT, "the restricted password can only be set once the full password is set: set the full password first")
	}
	next := &fsmpb.AdminAuth{FullHash: a.auth.GetFullHash(), RestrictedHash: a.auth.GetRestrictedHash(), Version: a.auth.GetVersion() + 1}
	what := "restricted"
	if len(c.GetFullHash()) > 0 {
		next.FullHash = slices.Clone(c.GetFullHash())
		what = "full"
	}
	if len(c.GetRestrictedHash()) > 0 {
		next.RestrictedHash = slices.Clone(c.GetRestrictedHash())
	}
	a.auth = next
	return result(fsmpb.Code_OK, "%s password set", what)
}

// applySetSettings runs once applyLocked checked the full session.
func (s *state) applySetSettings(c *fsmpb.SetSettings) *fsmpb.OpResult {
	a := &s.admin
	in := c.GetSettings()
	if in == nil {
		return result(fsmpb.Code_INVALID_ARGUMENT, "no settings given")
	}
	if in.SessionIdleTimeoutMs != nil {
		if d := time.Duration(in.GetSessionIdleTimeoutMs()) * time.Millisecond; d < minSessionIdleTimeout || d > maxSessionIdleTimeout {
			return result(fsmpb.Code_INVALID_ARGUMENT, "session idle timeout %s is out of range (%s to %s)", d, minSessionIdleTimeout, maxSessionIdleTimeout)
		}
	}
	if in.IsolationMinutes != nil && (in.GetIsolationMinutes() < 1 || in.GetIsolationMinutes() > 60) {
		return result(fsmpb.Code_INVALID_ARGUMENT, "isolation minutes %d is out of range (1 to 60)", in.GetIsolationMinutes())
	}
	if in.ExpiryWarningDays != nil && (in.GetExpiryWarningDays() < 1 || in.GetExpiryWarningDays() > 365) {
		return result(fsmpb.Code_INVALID_ARGUMENT, "expiry warning days %d is out of range (1 to 365)", in.GetExpiryWarningDays())
	}
	for _, d := range []*uint32{in.HistoryMinuteDays, in.HistoryHourDays} {
		if d != nil && (*d < 1 || *d > MaxHistoryDays) {
			return result(fsmpb.Code_INVALID_ARGUMENT, "history retention of %d days is out of range (1 to %d)", *d, MaxHistoryDays)
		}
	}
	if in.RemotePolicy != nil {
		switch in.GetRemotePolicy() {
		case PolicyFull, PolicyRestricted, PolicyNone:
		default:
			return result(fsmpb.Code_INVALID_ARGUMENT, "unknown remote policy %q: want full, restricted or none", in.GetRemotePolicy())
		}
	}
	next := &fsmpb.AdminSettings{}
	if a.settings != nil {
		next = proto.Clone(a.settings).(*fsmpb.AdminSettings)
	}
	proto.Merge(next, in)
	a.settings = next
	return result(fsmpb.Code_OK, "settings changed")
}

// snapshot/restore helpers, called from state.go.

func (a *adminState) toSnapshot(snap *fsmpb.Snapshot) {
	snap.AdminAuth = a.auth
	snap.AdminSettings = a.settings
	for _, id := range a.sortedSessionIDs() {
		snap.AdminSessions = append(snap.AdminSessions, a.sessions[id])
	}
}

func adminFromSnapshot(snap *fsmpb.Snapshot) (adminState, error) {
	a := newAdminState()
	a.auth = snap.AdminAuth
	a.settings = snap.AdminSettings
	for _, sess := range snap.AdminSessions {
		if sess.GetId() == "" {
			return a, fmt.Errorf("fsm: snapshot holds an admin session without an id")
		}
		if _, dup := a.sessions[sess.Id]; dup {
			return a, fmt.Errorf("fsm: snapshot holds admin session %s twice", sess.Id)
		}
		a.sessions[sess.Id] = sess
	}
	return a, nil
}

// Reads.

// Session returns a copy of a session record (live or ended), by id.
func (f *FSM) Session(id string) (*fsmpb.AdminSession, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	sess, ok := f.s.admin.sessions[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(sess).(*fsmpb.AdminSession), true
}

// Sessions returns copies of the live sessions, oldest first.
func (f *FSM) Sessions() []*fsmpb.AdminSession {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*fsmpb.AdminSession
	for _, id := range f.s.admin.sortedSessionIDs() {
		if sess := f.s.admin.sessions[id]; sess.EndedMs == 0 {
			out = append(out, proto.Clone(sess).(*fsmpb.AdminSession))
		}
	}
	slices.SortStableFunc(out, func(x, y *fsmpb.AdminSession) int { return cmp.Compare(x.OpenedMs, y.OpenedMs) })
	return out
}

// AdminAuth returns a copy of the password hashes (empty when none set).
func (f *FSM) AdminAuth() *fsmpb.AdminAuth {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.s.admin.auth == nil {
		return &fsmpb.AdminAuth{}
	}
	return proto.Clone(f.s.admin.auth).(*fsmpb.AdminAuth)
}

// Settings returns the effective administration settings.
func (f *FSM) Settings() Settings {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.admin.effective()
}

// Activated reports whether the cluster was activated, that is whether a
// license was ever enrolled (removing every license later does not undo
// it): before that, remote administration is allowed whatever the policy.
func (f *FSM) Activated() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.admin.activated
}

// HasIdleSessions reports whether an ExpireSessions command at nowMs would
// change anything. The leader asks every second.
func (f *FSM) HasIdleSessions(nowMs int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a := &f.s.admin
	for _, sess := range a.sessions { // order cannot show: any match answers
		if a.idle(sess, nowMs) || (sess.EndedMs != 0 && sess.EndedMs < nowMs-tombstoneMs) {
			return true
		}
	}
	return false
}
