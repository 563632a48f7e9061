package server

import (
	"context"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// Denials lists the cluster-wide checkout denial counts kept in the
// replicated usage history (admin.Backend): every member answers the same
// once it applied the same log. Counted while the statistics setting is on,
// since the history started.
func (s *Server) Denials(ctx context.Context) *triadv1.UsageDenialsResponse {
	// Catch up with the leader's commit index first (best effort: a member
	// cut off answers with what it applied).
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = s.readIndex(rctx)
	cancel()
	since, totals := s.fsm.DenialTotals()
	resp := &triadv1.UsageDenialsResponse{Member: s.cfg.Name, SinceUnixMs: since, StatisticsOff: !s.fsm.Settings().Statistics}
	for _, d := range totals {
		resp.Denials = append(resp.Denials, &triadv1.DenialCount{Feature: d.Feature, Reason: d.Reason, Count: d.Count, LastUnixMs: d.LastMs})
	}
	return resp
}

// UsageFeatures lists capacity and use per feature and version with each
// feature's model and, for a countdown feature, its pool and the pool's use
// as of now (admin.Backend; /v1/status). A consistent read first catches
// up with the leader's commit index.
func (s *Server) UsageFeatures(ctx context.Context, consistent bool) ([]*triadv1.FeatureUsage, error) {
	if consistent {
		if err := s.readIndex(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	rows := featureUsageRows(s.fsm.FeatureRows(s.nowMs()))
	queued := s.fsm.QueueLengths()
	for _, r := range rows {
		r.QueueLength = uint32(queued[r.Feature])
	}
	return rows, nil
}

// UsageLeases lists every live lease (admin.Backend); a consistent read
// first catches up with the leader's commit index.
func (s *Server) UsageLeases(ctx context.Context, consistent bool) ([]*triadv1.Lease, error) {
	if consistent {
		if err := s.readIndex(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	return s.Leases(ctx), nil
}

func featureUsageRows(rows []fsm.FeatureRow) []*triadv1.FeatureUsage {
	var out []*triadv1.FeatureUsage
	for _, u := range rows {
		out = append(out, &triadv1.FeatureUsage{Feature: u.Feature, Version: u.Version, Capacity: u.Capacity, InUse: u.InUse,
			VersionText: u.VersionText, Package: u.Package, Model: u.Model, PoolSeconds: float64(u.PoolMs) / 1000, PoolUsedSeconds: float64(u.PoolUsedMs) / 1000})
	}
	return out
}

// UsageUsers sums the seats of live leases per user, host, feature and
// licensed version (admin.Backend).
func (s *Server) UsageUsers(ctx context.Context) []*triadv1.UserUsage {
	type key struct {
		user, host, feature string
		version             featver.Key
	}
	rows := map[key]*triadv1.UserUsage{}
	seats := s.fsm.LicensedVersions(s.nowMs()) // show licensed versions, never 0 for "any"
	for _, l := range s.fsm.Leases() {
		lv, ok := seats[l.GetId()]
		if !ok {
			lv = fsm.LicensedVersion{Version: l.GetVersion(), Text: l.GetVersionText()}
		}
		v, err := featver.Of(lv.Version, lv.Text)
		if err != nil {
			v = featver.Whole(lv.Version)
		}
		k := key{l.GetUser(), l.GetHost(), l.GetFeature(), v}
		r, ok := rows[k]
		if !ok {
			r = &triadv1.UserUsage{User: k.user, Host: k.host, Feature: k.feature, Version: lv.Version, VersionText: lv.Text,
				OldestGrantedUnixMs: l.GetGrantedMs()}
			rows[k] = r
		}
		if !l.GetNamedUser() { // a named user's seat is counted once, below
			r.Seats += l.GetCount()
		}
		r.Leases++
		r.OldestGrantedUnixMs = min(r.OldestGrantedUnixMs, l.GetGrantedMs())
	}
	// Named seats stay tied to their user between sessions.
	for _, seat := range s.fsm.NamedSeats() {
		k := key{seat.GetUser(), "", seat.GetFeature(), 0}
		found := false
		for kk := range rows { // the live session with the lowest host, if any
			if kk.user == k.user && kk.feature == k.feature && (!found || kk.host < k.host || kk.host == k.host && kk.version < k.version) {
				k, found = kk, true
			}
		}
		r, ok := rows[k]
		if !ok {
			r = &triadv1.UserUsage{User: k.user, Host: k.host, Feature: k.feature}
			rows[k] = r
		}
		r.Seats++
		r.Named = true
		r.LastUsedUnixMs = seat.GetLastUsedMs()
	}
	out := make([]*triadv1.UserUsage, 0, len(rows))
	for _, r := range rows {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.User != b.User:
			return a.User < b.User
		case a.Host != b.Host:
			return a.Host < b.Host
		case a.Feature != b.Feature:
			return a.Feature < b.Feature
		}
		va, _ := featver.Of(a.Version, a.VersionText)
		vb, _ := featver.Of(b.Version, b.VersionText)
		return va < vb
	})
	return out
}

// ReleaseLease force-releases one lease without its secret through the
// AdminRelease operation, distinct from a holder's Release, which the FSM
// performs only under a live full session (admin.Backend).
func (s *Server) ReleaseLease(ctx context.Context, sessionID string, id uint64) (bool, error) {
	op := &fsmpb.Op{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{LeaseId: id, SessionId: sessionID}}}
	res, err := s.submitOps(ctx, []*fsmpb.Op{op}, false)
	if err != nil {
		return false, toStatus(err)
	}
	if len(res) == 1 {
		if c := res[0].GetCode(); c == fsmpb.Code_SESSION_REFUSED || c == fsmpb.Code_PERMISSION_DENIED {
			return false, resultStatus(c, res[0].GetMessage())
		}
	}
	released := len(res) == 1 && len(res[0].GetLeases()) == 1 && res[0].GetLeases()[0].GetCode() == fsmpb.Code_OK
	s.log.Info("lease force-released by an administrator", "lease_id", id, "released", released)
	if !released {
		// Lease ids are handed out in order: after catching up with the
		// leader, an id at or above the next one was never granted.
		if err := s.readIndex(ctx); err != nil {
			return false, toStatus(err)
		}
		if next := s.fsm.NextLeaseID(); id >= next {
			return false, status.Errorf(codes.NotFound, "lease %d never existed: this cluster has granted lease ids 1 to %d so far; see `triadctl usage leases`", id, next-1)
		}
	}
	return released, nil
}

// RemoveLicense removes an enrolled license from the cluster (admin.Backend).
func (s *Server) RemoveLicense(ctx context.Context, sessionID, serial, requestID string) (string, error) {
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_RemoveLicense{RemoveLicense: &fsmpb.RemoveLicense{Serial: serial, SessionId: sessionID, RequestId: requestID}}}, false)
	if err != nil {
		return "", toStatus(err)
	}
	if err := resultStatus(res.GetCode(), res.GetMessage()); err != nil {
		return "", err
	}
	s.log.Info("license removed", "serial", serial)
	if err := s.readIndex(ctx); err != nil {
		return "", toStatus(err)
	}
	return res.GetMessage(), nil
}

// RecycleNamedUser unties a named user idle for 30 days (admin.Backend).
func (s *Server) RecycleNamedUser(ctx context.Context, sessionID, user, feature, requestID string) (string, error) {
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_RecycleNamedUser{RecycleNamedUser: &fsmpb.RecycleNamedUser{User: user, Feature: feature, SessionId: sessionID, RequestId: requestID}}}, false)
	if err != nil {
		return "", toStatus(err)
	}
	if err := resultStatus(res.GetCode(), res.GetMessage()); err != nil {
		return "", err
	}
	s.log.Info("named seat recycled", "user", user, "feature", feature)
	return res.GetMessage(), toStatus(s.readIndex(ctx))
}

// SetRules parses a rules file on this member (errors name the line) and
// replicates the result (admin.Backend).
func (s *Server) SetRules(ctx context.Context, sessionID, text string) (*triadv1.RulesShowResponse, error) {
	rules, err := license.ParseRules([]byte(text))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_SetRules{SetRules: &fsmpb.SetRules{Rules: rules, SessionId: sessionID}}}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := resultStatus(res.GetCode(), res.GetMessage()); err != nil {
		return nil, err
	}
	s.log.Info("access rules set", "rules", len(rules.GetRules()), "groups", len(rules.GetGroups()))
	if err := s.readIndex(ctx); err != nil {
		return nil, toStatus(err)
	}
	return s.Rules(ctx), nil
}

// Rules shows the access rules in force (admin.Backend).
func (s *Server) Rules(ctx context.Context) *triadv1.RulesShowResponse {
	r := s.fsm.Rules()
	return &triadv1.RulesShowResponse{Text: r.GetText(), Rules: uint32(len(r.GetRules())), Groups: uint32(len(r.GetGroups()))}
}
