package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// adminSide is this member's part of administration that is not
// replicated: member-only sessions, checkout denial counts, the Unix
// socket server.
type adminSide struct {
	mu sync.Mutex
	// memberOnly holds sessions opened while the member was not formed, or
	// restricted sessions opened while no leader answered: valid here only.
	// The one-full-session and local-priority rules hold among them as in
	// the replicated state; formation ends those opened before it.
	memberOnly map[string]*memberSession
	// memberEnded remembers for a while why a member-only session ended
	// (displaced, formation, idle), so that its token's next call says why.
	memberEnded map[string]endedSession

	localSrv *grpc.Server
	localLis net.Listener
	// isolationMinutes last applied to the monitor from the settings.
	isolationMinutes uint32
}

func newAdminSide(nowMs int64) *adminSide {
	return &adminSide{memberOnly: map[string]*memberSession{}, memberEnded: map[string]endedSession{}}
}

// memberSession is a session known to this member only.
type memberSession struct {
	admin.Session
	// beforeFormation: opened while the member was not formed. Formation
	// ends it: the replicated state does not know it, so it could neither
	// hold nor yield the cluster's full access.
	beforeFormation bool
}

// endedSession is why a member-only session ended, and when.
type endedSession struct {
	atMs   int64
	reason string
}

// ReasonFormed is the exact message a session opened before formation gets
// on its next call once the member is formed.
const ReasonFormed = "disconnected: the cluster was formed; connect again"

// memberEndedKeepMs is how long an ended member-only session is remembered
// (as long as the replicated tombstones).
const memberEndedKeepMs = int64(time.Hour / time.Millisecond)

const (
	// restrictedConnectBudget bounds how long a restricted connect waits
	// for the leader before it settles for a member-only session, so that
	// read-only commands keep working on a member without a leader.
	restrictedConnectBudget = 1500 * time.Millisecond
	// sessionWriteBudget bounds touches and disconnects, which are best effort.
	sessionWriteBudget = 1500 * time.Millisecond
	// sessionCatchUpBudget bounds how long a session check waits to catch
	// up with the leader's commit index.
	sessionCatchUpBudget = 2 * time.Second
)

// reasonClosed is what a closed session's token gets.
const reasonClosed = "unknown or closed session: connect again"

// MemberName is this member's name (admin.Backend).
func (s *Server) MemberName() string { return s.cfg.Name }

// AuthState is what a connect is judged on (admin.Backend).
func (s *Server) AuthState(ctx context.Context) admin.AuthState {
	stale := false
	if s.cluster() != nil {
		// Judge on current state: a member that just restarted has not
		// replayed the log yet. Without a leader, the local state is all
		// there is (and only member-only restricted sessions can open).
		if addr, _ := s.leaderAddr(); addr == "" && !s.isLeader() {
			stale = true
		} else {
			cctx, cancel := context.WithTimeout(ctx, restrictedConnectBudget)
			stale = s.readIndex(cctx) != nil
			cancel()
		}
	}
	a := s.fsm.AdminAuth()
	st := s.fsm.Settings()
	return admin.AuthState{
		FullHash: a.GetFullHash(), RestrictedHash: a.GetRestrictedHash(), Version: a.GetVersion(),
		Policy: st.RemotePolicy, Activated: s.fsm.Activated(), IdleTimeout: st.SessionIdleTimeout, Stale: stale,
	}
}

// Settings returns the effective replicated settings (admin.Backend).
func (s *Server) Settings(ctx context.Context) *triadv1.ServerSettings {
	st := s.fsm.Settings()
	a := s.fsm.AdminAuth()
	iso := st.IsolationMinutes
	if iso == 0 {
		iso = uint32(s.cfg.IsolationMinutes)
	}
	return &triadv1.ServerSettings{
		SessionIdleTimeoutMs: st.SessionIdleTimeout.Milliseconds(), IsolationMinutes: iso,
		Statistics: st.Statistics, AutoRecycling: st.AutoRecycling, RemotePolicy: st.RemotePolicy,
		ExpiryWarningDays: st.ExpiryWarningDays,
		HistoryMinuteDays: st.HistoryMinuteDays, HistoryHourDays: st.HistoryHourDays,
		FullPasswordSet: len(a.GetFullHash()) > 0, RestrictedPasswordSet: len(a.GetRestrictedHash()) > 0,
		Activated: s.fsm.Activated(),
	}
}

// PeerMember says whether ip is one of the other members' addresses
// (licensing or Raft address host, names resolved). An IP this member
// itself uses does not count: on a host running several members, a tool
// on that host must use the Unix socket to be local (admin.Backend).
func (s *Server) PeerMember(ip net.IP) (string, bool) {
	c := s.cluster()
	if c == nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	ips := func(m *fsmpb.Member) []net.IP {
		var out []net.IP
		for _, a := range []string{m.GetGrpcAddress(), m.GetRaftAddress()} {
			host, _, err := net.SplitHostPort(a)
			if err != nil || host == "" {
				continue
			}
			if p := net.ParseIP(host); p != nil {
				out = append(out, p)
				continue
			}
			addrs, _ := net.DefaultResolver.LookupIP(ctx, "ip", host)
			out = append(out, addrs...)
		}
		return out
	}
	for _, m := range c.GetMembers() {
		if m.GetName() == s.cfg.Name {
			for _, own := range ips(m) {
				if own.Equal(ip) {
					return "", false
				}
			}
		}
	}
	for _, m := range c.GetMembers() {
		if m.GetName() == s.cfg.Name {
			continue
		}
		for _, p := range ips(m) {
			if p.Equal(ip) {
				return m.GetName(), true
			}
		}
	}
	return "", false
}

// sessionStatus maps the FSM's answer to a session command.
func sessionStatus(res *fsmpb.OpResult) error {
	msg := res.GetMessage()
	switch res.GetCode() {
	case fsmpb.Code_OK:
		return nil
	case fsmpb.Code_NOT_FOUND:
		return status.Error(codes.Unauthenticated, msg)
	case fsmpb.Code_ALREADY_EXISTS, fsmpb.Code_NOT_FORMED:
		return status.Error(codes.FailedPrecondition, msg)
	case fsmpb.Code_INVALID_ARGUMENT:
		if strings.HasPrefix(msg, "permission denied") {
			return status.Error(codes.PermissionDenied, msg)
		}
		return status.Error(codes.InvalidArgument, msg)
	}
	return resultStatus(res.GetCode(), msg)
}

// OpenSession records a session (admin.Backend). Before formation there is
// no log to record it in: the session is member-only.
func (s *Server) OpenSession(ctx context.Context, sess *admin.Session, authVersion uint64) error {
	now := s.nowMs()
	if s.cluster() == nil {
		return s.putMemberOnly(sess, now, true)
	}
	if sess.MemberOnly && sess.Mode == admin.ModeRestricted {
		return s.putMemberOnly(sess, now, false)
	}
	cmd := &fsmpb.Command{Cmd: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Session:     &fsmpb.AdminSession{Id: sess.ID, Mode: sess.Mode, Origin: sess.Origin, Local: sess.Local, Member: sess.Member},
		AuthVersion: authVersion,
	}}}
	cctx := ctx
	if sess.Mode == admin.ModeRestricted {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, restrictedConnectBudget)
		defer cancel()
	}
	res, err := s.applyCommand(cctx, cmd, false)
	if err != nil {
		if sess.Mode == admin.ModeRestricted && ctx.Err() == nil {
			s.log.Warn("no leader answered a restricted connect: opening a member-only read-only session", "error", err)
			return s.putMemberOnly(sess, now, false)
		}
		return toStatus(err)
	}
	if err := sessionStatus(res); err != nil {
		return err
	}
	s.log.Info("admin session opened", "mode", sess.Mode, "origin", sess.Origin, "result", res.GetMessage())
	// Read your write: the next call may come right back to this member.
	for {
		if _, ok := s.fsm.Session(sess.ID); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// putMemberOnly records a session on this member only. The rules of the
// replicated state hold among member-only sessions: one full session, which
// a local tool takes over (the holder's next call says why).
func (s *Server) putMemberOnly(sess *admin.Session, now int64, beforeFormation bool) error {
	formed := s.cluster() != nil
	idle := s.fsm.Settings().SessionIdleTimeout
	s.adm.mu.Lock()
	defer s.adm.mu.Unlock()
	s.sweepMemberOnlyLocked(now, formed, idle)
	if beforeFormation && formed {
		return status.Error(codes.FailedPrecondition, "the cluster was formed while connecting: connect again")
	}
	msg := "admin session opened (this member only)"
	if sess.Mode == admin.ModeFull {
		if h := s.memberFullHolderLocked(); h != nil {
			if !sess.Local {
				return status.Errorf(codes.FailedPrecondition,
					"full access is already held by %s, connected %s ago (last used %s ago): connect with --mode restricted, or wait until it disconnects or stays idle for %s",
					h.Origin, msAge(now, h.OpenedMs), msAge(now, h.LastUsed), idle)
			}
			s.endMemberOnlyLocked(h.ID, now, fsm.ReasonDisplaced)
			msg = fmt.Sprintf("admin session opened (this member only); the full session of %s was disconnected (local priority)", h.Origin)
		}
	}
	cp := &memberSession{Session: *sess, beforeFormation: beforeFormation}
	cp.MemberOnly, cp.OpenedMs, cp.LastUsed = true, now, now
	s.adm.memberOnly[sess.ID] = cp
	s.log.Info(msg, "mode", sess.Mode, "origin", sess.Origin)
	return nil
}

func msAge(now, since int64) string {
	return (time.Duration(now-since) * time.Millisecond).Round(time.Second).String()
}

// memberFullHolderLocked returns the live member-only full session, if any
// (there is at most one). Call after a sweep.
func (s *Server) memberFullHolderLocked() *memberSession {
	for _, ms := range s.adm.memberOnly { // at most one matches: order cannot show
		if ms.Mode == admin.ModeFull {
			return ms
		}
	}
	return nil
}

func (s *Server) endMemberOnlyLocked(id string, now int64, reason string) {
	delete(s.adm.memberOnly, id)
	s.adm.memberEnded[id] = endedSession{atMs: now, reason: reason}
}

func memberIdleReason(idle time.Duration) string {
	return fmt.Sprintf("disconnected: the session was idle for more than %s; connect again", idle)
}

// sweepMemberOnlyLocked ends the member-only sessions that are idle, and,
// once the member is formed, every one opened before formation; it forgets
// ended ones after an hour. It returns how many formation ended.
func (s *Server) sweepMemberOnlyLocked(now int64, formed bool, idle time.Duration) int {
	n := 0
	for id, ms := range s.adm.memberOnly {
		switch {
		case formed && ms.beforeFormation:
			s.endMemberOnlyLocked(id, now, ReasonFormed)
			n++
		case now-ms.LastUsed > idle.Milliseconds():
			s.endMemberOnlyLocked(id, now, memberIdleReason(idle))
		}
	}
	for id, e := range s.adm.memberEnded {
		if now-e.atMs > memberEndedKeepMs {
			delete(s.adm.memberEnded, id)
		}
	}
	return n
}

// sweepMemberOnly runs the sweep; watchSettings calls it every second, so
// the sessions opened before formation are gone from listings within a
// second of formation (UseSession refuses them at once).
func (s *Server) sweepMemberOnly() {
	formed := s.cluster() != nil
	idle := s.fsm.Settings().SessionIdleTimeout
	s.adm.mu.Lock()
	n := s.sweepMemberOnlyLocked(s.nowMs(), formed, idle)
	s.adm.mu.Unlock()
	if n > 0 {
		s.log.Info("admin sessions opened before formation closed: the cluster was formed", "sessions", n)
	}
}

// leaderKnown: this member leads or knows a leader to ask.
func (s *Server) leaderKnown() bool {
	addr, _ := s.leaderAddr()
	return addr != "" || s.isLeader()
}

// touchAfter: a session used more recently than this is not touched
// through the log again (a quarter of the idle timeout, at most a minute).
func touchAfter(idle time.Duration) int64 {
	return min(idle/4, time.Minute).Milliseconds()
}

// UseSession returns a live session and marks it used (admin.Backend).
func (s *Server) UseSession(ctx context.Context, id string) (*admin.Session, error) {
	now := s.nowMs()
	idle := s.fsm.Settings().SessionIdleTimeout
	formed := s.cluster() != nil
	s.adm.mu.Lock()
	if ms, ok := s.adm.memberOnly[id]; ok {
		defer s.adm.mu.Unlock()
		switch {
		case formed && ms.beforeFormation:
			s.endMemberOnlyLocked(id, now, ReasonFormed)
			return nil, status.Error(codes.Unauthenticated, ReasonFormed)
		case now-ms.LastUsed > idle.Milliseconds():
			s.endMemberOnlyLocked(id, now, memberIdleReason(idle))
			return nil, status.Error(codes.Unauthenticated, memberIdleReason(idle))
		}
		ms.LastUsed = now
		cp := ms.Session
		return &cp, nil
	}
	if e, ok := s.adm.memberEnded[id]; ok {
		s.adm.mu.Unlock()
		return nil, status.Error(codes.Unauthenticated, e.reason)
	}
	s.adm.mu.Unlock()

	// Judge the session on the replicated state as of now, not on this
	// member's last applied entry: a disconnect or a local takeover
	// committed through another member an instant ago must already count
	// here (and a session opened through another member be known). Without
	// a reachable leader, the member's own state is all there is; no write
	// can commit then, and the FSM checks the session of every write again.
	if formed && s.leaderKnown() {
		cctx, cancel := context.WithTimeout(ctx, sessionCatchUpBudget)
		if err := s.readIndex(cctx); err != nil {
			s.log.Debug("admin session judged on this member's state: could not catch up with the leader", "error", err)
		}
		cancel()
	}
	rec, ok := s.fsm.Session(id)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, reasonClosed)
	}
	if rec.GetEndedMs() != 0 {
		return nil, status.Error(codes.Unauthenticated, rec.GetEndReason())
	}
	if now-rec.GetLastUsedMs() > touchAfter(idle) {
		cctx, cancel := context.WithTimeout(ctx, sessionWriteBudget)
		res, err := s.applyCommand(cctx, &fsmpb.Command{Cmd: &fsmpb.Command_TouchSession{TouchSession: &fsmpb.TouchSession{Id: id}}}, false)
		cancel()
		switch {
		case err == nil:
			if err := sessionStatus(res); err != nil {
				return nil, err
			}
		case now-rec.GetLastUsedMs() > idle.Milliseconds():
			// No leader to ask: judge idleness on this member's clock.
			return nil, status.Error(codes.Unauthenticated, memberIdleReason(idle))
		}
	}
	return sessionFromFSM(rec, false), nil
}

func sessionFromFSM(r *fsmpb.AdminSession, memberOnly bool) *admin.Session {
	return &admin.Session{ID: r.GetId(), Mode: r.GetMode(), Origin: r.GetOrigin(), Local: r.GetLocal(), Member: r.GetMember(),
		OpenedMs: r.GetOpenedMs(), LastUsed: r.GetLastUsedMs(), MemberOnly: memberOnly}
}

// CloseSession ends a session; closing one already gone is not an error
// (admin.Backend).
func (s *Server) CloseSession(ctx context.Context, id string) error {
	s.adm.mu.Lock()
	if _, ok := s.adm.memberOnly[id]; ok {
		delete(s.adm.memberOnly, id)
		s.adm.mu.Unlock()
		return nil
	}
	if _, ok := s.adm.memberEnded[id]; ok {
		s.adm.mu.Unlock()
		return nil // already ended
	}
	s.adm.mu.Unlock()
	if rec, ok := s.fsm.Session(id); ok && rec.GetEndedMs() != 0 {
		return nil // already ended; its tombstone goes with the pruning
	}
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{Id: id}}}, false)
	if err != nil {
		return toStatus(err)
	}
	if res.GetCode() != fsmpb.Code_NOT_FOUND {
		if err := sessionStatus(res); err != nil {
			return err
		}
	}
	// The token is dead from this answer on: on this member at once (the
	// close may not be applied here yet when a follower served it), and on
	// every member once it catches up, which each session check does first.
	// Wait for it here too, so this member's state shows it when we answer.
	s.adm.mu.Lock()
	s.adm.memberEnded[id] = endedSession{atMs: s.nowMs(), reason: reasonClosed}
	s.adm.mu.Unlock()
	return toStatus(s.readIndex(ctx))
}

// Sessions lists the live sessions: replicated ones, then this member's own
// (admin.Backend).
func (s *Server) Sessions(ctx context.Context) []*admin.Session {
	var out []*admin.Session
	for _, r := range s.fsm.Sessions() {
		out = append(out, sessionFromFSM(r, false))
	}
	formed := s.cluster() != nil
	idle := s.fsm.Settings().SessionIdleTimeout
	s.adm.mu.Lock()
	defer s.adm.mu.Unlock()
	s.sweepMemberOnlyLocked(s.nowMs(), formed, idle)
	var local []*admin.Session
	for _, ms := range s.adm.memberOnly {
		cp := ms.Session
		local = append(local, &cp)
	}
	sortSessions(local)
	return append(out, local...)
}

func sortSessions(ss []*admin.Session) {
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && (ss[j].OpenedMs < ss[j-1].OpenedMs || (ss[j].OpenedMs == ss[j-1].OpenedMs && ss[j].ID < ss[j-1].ID)); j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
}

func (s *Server) requireFormed(what string) error {
	if s.cluster() == nil {
		return status.Errorf(codes.FailedPrecondition, "%s are replicated cluster state: form the cluster first (triadctl cluster create)", what)
	}
	return nil
}

// SetPasswords stores new password hashes (admin.Backend).
func (s *Server) SetPasswords(ctx context.Context, sessionID string, fullHash, restrictedHash []byte, authVersion uint64) error {
	if err := s.requireFormed("passwords"); err != nil {
		return err
	}
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_SetPasswords{SetPasswords: &fsmpb.SetPasswords{
		SessionId: sessionID, FullHash: fullHash, RestrictedHash: restrictedHash, AuthVersion: authVersion,
	}}}, false)
	if err != nil {
		return toStatus(err)
	}
	if err := sessionStatus(res); err != nil {
		return err
	}
	s.log.Info("admin password changed", "which", map[bool]string{true: "full", false: "restricted"}[len(fullHash) > 0])
	return toStatus(s.readIndex(ctx))
}

// SetSettings changes the replicated settings (admin.Backend).
func (s *Server) SetSettings(ctx context.Context, sessionID string, req *triadv1.ServerSetRequest) (*triadv1.ServerSettings, error) {
	if err := s.requireFormed("settings"); err != nil {
		return nil, err
	}
	in := &fsmpb.AdminSettings{
		SessionIdleTimeoutMs: req.SessionIdleTimeoutMs, IsolationMinutes: req.IsolationMinutes,
		Statistics: req.Statistics, AutoRecycling: req.AutoRecycling, RemotePolicy: req.RemotePolicy,
		ExpiryWarningDays: req.ExpiryWarningDays,
		HistoryMinuteDays: req.HistoryMinuteDays, HistoryHourDays: req.HistoryHourDays,
	}
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_SetSettings{SetSettings: &fsmpb.SetSettings{SessionId: sessionID, Settings: in}}}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := sessionStatus(res); err != nil {
		return nil, err
	}
	if err := s.readIndex(ctx); err != nil {
		return nil, toStatus(err)
	}
	s.applySettings()
	out := s.Settings(ctx)
	s.log.Info("settings changed", "idle_timeout_ms", out.SessionIdleTimeoutMs, "isolation_minutes", out.IsolationMinutes,
		"statistics", out.Statistics, "auto_recycling", out.AutoRecycling, "remote_policy", out.RemotePolicy)
	return out, nil
}

// applySettings passes replicated settings that a member acts on to the
// parts concerned: the isolation delay to the membership monitor. A
// setting never set leaves the member's own configuration in force.
func (s *Server) applySettings() {
	m := s.fsm.Settings().IsolationMinutes
	s.adm.mu.Lock()
	changed := m != 0 && m != s.adm.isolationMinutes
	s.adm.isolationMinutes = m
	s.adm.mu.Unlock()
	if changed {
		s.mon.SetIsolationAfter(time.Duration(m) * time.Minute)
		s.log.Info("isolation notice delay set from the cluster settings", "minutes", m)
	}
}

// watchSettings applies replicated settings changed through any member,
// and sweeps the member-only sessions.
func (s *Server) watchSettings() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.applySettings()
			s.sweepMemberOnly()
		}
	}
}
