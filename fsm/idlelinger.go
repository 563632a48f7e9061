package fsm

import (
	"cmp"
	"container/heap"
	"slices"
	"strconv"
	"time"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Idle timeout (FlexNet TIMEOUT) and linger (FlexNet LINGER, RLM hold=),
// issue 13 points 2 and 3 (docs/rules.md, docs/license-format.md).
//
// Idle timeout: a client reports, with each renewal, how long its product
// has been idle on a lease (Renew.idle_ms); Apply stores now - idle_ms as
// the lease's idle_since_ms. A TIMEOUT rule of the feature (never shorter
// than the licenses' min_timeout) makes ExpireLeases release a lease once
// now - idle_since_ms reaches the timeout. The request record remembers
// the reason (idle_timeout), so the holder's next renewal is told.
//
// Linger: a concurrent lease released by its holder or expired stays in the
// lease table, flagged lingering, for the feature's linger (the licenses'
// linger option, lengthened by a LINGER rule): it counts as in use for
// admission, rules, the alarm and the listings. A checkout of the same
// feature by the same user and host takes it back (ends it and admits the
// new grant as if its seats were free); ExpireLeases ends it when its
// linger is over; an administrator's release ends it at once. Borrowed,
// named-user and countdown leases do not linger (a named user's seat is
// already his; a countdown seat would burn the pool unused).
//
// Both are derived from replicated state only: idle_since_ms, lingering,
// linger_ms and the request records are in the snapshot; the indexes
// below are rebuilt by Restore.

// Access-rule kinds of issue 13 (fsmpb.AccessRule.Kind; license.RuleTimeout
// and license.RuleLinger name the same).
const (
	ruleTimeout = "timeout"
	ruleLinger  = "linger"
)

// lingerKey finds a user's lingering seats of a feature.
type lingerKey struct{ feature, user, host string }

// idleState holds the derived indexes of idle and lingering leases.
type idleState struct {
	// idle holds the live, non-lingering leases with idle_since_ms > 0.
	idle map[uint64]*lease
	// lingering lists, per feature, user and host, the ids of its
	// lingering leases, ascending.
	lingering map[lingerKey][]uint64
	// idleEnded maps the id of a lease ended by an idle timeout to its
	// request record's key, while the record is kept.
	idleEnded map[uint64]requestKey
}

func newIdleState() idleState {
	return idleState{idle: map[uint64]*lease{}, lingering: map[lingerKey][]uint64{}, idleEnded: map[uint64]requestKey{}}
}

// indexLease adds a live lease to the idle and linger indexes (grant,
// restore).
func (s *state) indexLease(l *lease) {
	switch {
	case l.Lingering:
		k := lingerKey{l.Feature, l.User, l.Host}
		ids := s.idl.lingering[k]
		i, _ := slices.BinarySearch(ids, l.Id)
		s.idl.lingering[k] = slices.Insert(ids, i, l.Id)
	case l.IdleSinceMs > 0:
		s.idl.idle[l.Id] = l
	}
}

// unindexLease removes a lease from the idle and linger indexes.
func (s *state) unindexLease(l *lease) {
	delete(s.idl.idle, l.Id)
	if !l.Lingering {
		return
	}
	k := lingerKey{l.Feature, l.User, l.Host}
	ids := s.idl.lingering[k]
	if i, ok := slices.BinarySearch(ids, l.Id); ok {
		ids = slices.Delete(ids, i, i+1)
	}
	if len(ids) == 0 {
		delete(s.idl.lingering, k)
	} else {
		s.idl.lingering[k] = ids
	}
}

// ruleDuration is the duration of feature's rule of kind (timeout or
// linger), 0 when it has none.
func (s *state) ruleDuration(feature, kind string) int64 {
	if s.model.ri == nil {
		return 0
	}
	for _, i := range s.model.ri.byFeature[feature] {
		if r := s.model.rules.Rules[i]; r.Kind == kind {
			return r.DurationMs
		}
	}
	return 0
}

// lingerFor is how long a released seat of feature lingers at now: the
// longest linger of its valid licenses, or its LINGER rule when longer.
func (s *state) lingerFor(feature string, now int64) int64 {
	var ms int64
	for f := range s.validEntries(feature, now) {
		ms = max(ms, int64(f.LingerSeconds)*1000)
	}
	return max(ms, s.ruleDuration(feature, ruleLinger))
}

// idleTimeout is the idle timeout of feature at now: its TIMEOUT rule,
// raised to the largest min_timeout of its valid licenses (a license
// enrolled after the rule may set a higher minimum); 0 without a rule.
func (s *state) idleTimeout(feature string, now int64) int64 {
	ms := s.ruleDuration(feature, ruleTimeout)
	if ms == 0 {
		return 0
	}
	for f := range s.validEntries(feature, now) {
		ms = max(ms, int64(f.MinTimeoutSeconds)*1000)
	}
	return ms
}

// mayLinger reports whether l lingers when it ends by release or expiry,
// and for how long.
func (s *state) mayLinger(now int64, l *lease) int64 {
	if l.Lingering || l.Borrowed || l.NamedUser || l.AccountedMs != 0 || l.Package != "" {
		return 0 // packages and their components share a suite seat: no linger
	}
	return s.lingerFor(l.Feature, now)
}

// startLinger turns a live lease (out of the expiry heap) into a lingering
// seat that ends at now + ms, and puts it back in the heap.
func (s *state) startLinger(now, ms int64, e *lease) {
	s.unindexLease(e)
	e.Lingering = true
	e.LingerMs = ms
	e.IdleSinceMs = 0
	e.ExpiresMs = now + ms
	heap.Push(&s.expiry, e)
	s.indexLease(e)
}

// takeBack ends the lingering seats of g's user and host on g's feature
// that a grant of n seats needs (oldest first), provided admit then admits
// the grant; otherwise it puts their use back. It returns admit's answer
// and the ids taken back.
func (s *state) admitTakingBack(now int64, g *fsmpb.Grant, n uint64) (*fsmpb.OpResult, terms, []uint64) {
	ids := s.idl.lingering[lingerKey{g.Feature, g.User, g.Host}]
	if len(ids) == 0 {
		res, t := s.admit(now, g, n)
		return res, t, nil
	}
	var taken []*lease
	var freed uint64
	for _, id := range ids {
		if freed >= n {
			break
		}
		e := s.leases[id]
		taken = append(taken, e)
		freed += uint64(e.Count)
		s.dropLeaseUse(now, e) // a concurrent lease: exactly undone by addLeaseUse
	}
	res, t := s.admit(now, g, n)
	if res != nil {
		for _, e := range taken {
			s.addLeaseUse(e)
		}
		return res, t, nil
	}
	back := make([]uint64, 0, len(taken))
	for _, e := range taken {
		heap.Remove(&s.expiry, int(e.heapIdx))
		s.forgetLease(now, e)
		back = append(back, e.Id)
	}
	return nil, t, back
}

// setIdle records the idleness a renewal reported for a live lease.
// A borrowed lease is offline by design: it is never idle-released.
func (s *state) setIdle(now int64, e *lease, idleMs int64) {
	if idleMs <= 0 || e.Borrowed {
		if e.IdleSinceMs != 0 {
			e.IdleSinceMs = 0
			delete(s.idl.idle, e.Id)
		}
		return
	}
	e.IdleSinceMs = now - idleMs
	s.idl.idle[e.Id] = e
}

// idleTimedOut returns the idle leases a TIMEOUT rule releases at now,
// sorted by id.
func (s *state) idleTimedOut(now int64) []*lease {
	if len(s.idl.idle) == 0 || s.model.rules == nil {
		return nil
	}
	timeouts := map[string]int64{}
	var out []*lease
	for _, e := range s.idl.idle { // sorted below
		t, ok := timeouts[e.Feature]
		if !ok {
			t = s.idleTimeout(e.Feature, now)
			timeouts[e.Feature] = t
		}
		if t > 0 && now-e.IdleSinceMs >= t {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *lease) int { return cmp.Compare(a.Id, b.Id) })
	return out
}

// expireIdle releases the leases idle at least their feature's timeout.
func (s *state) expireIdle(now int64) []*fsmpb.LeaseResult {
	var out []*fsmpb.LeaseResult
	for _, l := range s.idleTimedOut(now) {
		idle := now - l.IdleSinceMs
		heap.Remove(&s.expiry, int(l.heapIdx))
		s.endLease(now, l)
		s.emitLease(now, EventRelease, "idle timeout", l)
		k := requestKeyOf(l)
		if rec, ok := s.requests.get(k); ok && rec.LeaseId == l.Id {
			rec.IdleTimeout = true
			s.requests.set(k, rec)
			s.idl.idleEnded[l.Id] = k
		}
		out = append(out, &fsmpb.LeaseResult{LeaseId: l.Id, IdleTimeout: true,
			Message: "idle timeout: idle for " + (time.Duration(idle) * time.Millisecond).String()})
	}
	return out
}

// endedNotFound is the answer for a renewal or release of a lease that is
// not live: an idle-timeout release says so.
func (s *state) endedNotFound(id uint64) *fsmpb.LeaseResult {
	if k, ok := s.idl.idleEnded[id]; ok && s.remembered(k) {
		return &fsmpb.LeaseResult{LeaseId: id, Code: fsmpb.Code_NOT_FOUND, IdleTimeout: true,
			Message: "lease " + uitoa(id) + " was released: idle timeout (the product was idle longer than its feature's TIMEOUT rule allows); check out again when active"}
	}
	return leaseNotFound(id)
}

// lingeringNotFound answers a renewal or holder release of a lingering
// seat: for its holder it has ended.
func lingeringNotFound(l *lease) *fsmpb.LeaseResult {
	return &fsmpb.LeaseResult{LeaseId: l.Id, Code: fsmpb.Code_NOT_FOUND,
		Message: "lease " + uitoa(l.Id) + " was released and lingers for " + l.User + "@" + l.Host +
			" until " + formatTime(l.ExpiresMs) + ": check out " + l.Feature + " again to take it back"}
}

func uitoa(n uint64) string { return strconv.FormatUint(n, 10) }

// hasIdleWork reports whether ExpireLeases at now would release an idle
// lease (O(idle leases)).
func (s *state) hasIdleWork(now int64) bool {
	return len(s.idleTimedOut(now)) > 0
}

func joinIDs(ids []uint64) string {
	var b []byte
	for i, id := range ids {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendUint(b, id, 10)
	}
	return string(b)
}

// Format hooks (fsm/format.go): an older build would ignore these fields
// and apply the entry differently, so they need format 4.
func init() {
	commandFormatHooks = append(commandFormatHooks, idleLingerCommandFormat)
	opFormatHooks = append(opFormatHooks, idleLingerOpFormat)
}

// lingerLicense reports whether a license uses the linger or min_timeout
// feature options.
func lingerLicense(l *fsmpb.License) bool {
	for _, f := range l.GetFeatures() {
		if f.GetLingerSeconds() > 0 || f.GetMinTimeoutSeconds() > 0 {
			return true
		}
	}
	return false
}

func idleLingerCommandFormat(cmd *fsmpb.Command) (uint32, string) {
	switch c := cmd.GetCmd().(type) {
	case *fsmpb.Command_EnrollLicense:
		if lingerLicense(c.EnrollLicense.GetLicense()) {
			return 4, "enroll_license.linger_min_timeout"
		}
	case *fsmpb.Command_ReplaceMember:
		for _, l := range c.ReplaceMember.GetLicenses() {
			if lingerLicense(l) {
				return 4, "replace_member.linger_min_timeout"
			}
		}
	case *fsmpb.Command_SetRules:
		for _, r := range c.SetRules.GetRules().GetRules() {
			if r.GetKind() == ruleTimeout || r.GetKind() == ruleLinger || r.GetDurationMs() != 0 {
				return 4, "set_rules.timeout_linger"
			}
		}
	}
	return 1, ""
}

func idleLingerOpFormat(o *fsmpb.Op) (uint32, string) {
	for _, ms := range o.GetRenew().GetIdleMs() {
		if ms != 0 {
			return 4, "batch.renew.idle_ms"
		}
	}
	return 1, ""
}

// checkTimeoutMinimums refuses a TIMEOUT rule shorter than the vendor's
// minimum (min_timeout) of an enrolled license of its feature. A license
// enrolled later with a higher minimum raises the rule instead
// (idleTimeout).
func (s *state) checkTimeoutMinimums(rules *fsmpb.AccessRules) *fsmpb.OpResult {
	for _, r := range rules.GetRules() {
		if r.GetKind() != ruleTimeout {
			continue
		}
		var minMs int64
		serial := ""
		for _, sn := range s.serials {
			for _, f := range s.licenses[sn].Features {
				if f.Name == r.Feature && int64(f.MinTimeoutSeconds)*1000 > minMs {
					minMs, serial = int64(f.MinTimeoutSeconds)*1000, sn
				}
			}
		}
		if r.DurationMs < minMs {
			return result(fsmpb.Code_INVALID_ARGUMENT,
				"rule %s: the idle timeout of %s is %s, shorter than the minimum of %s that license %s sets: use TIMEOUT %s %s or longer",
				r.Name, r.Feature, msDuration(r.DurationMs), msDuration(minMs), serial, r.Feature, msDuration(minMs))
		}
	}
	return nil
}

func msDuration(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}

// snapshotFormatNeeded is the snapshot format the state needs: 3 when it
// holds anything of idle timeouts or linger (a lingering or idle lease, an
// idle-timeout request record, a TIMEOUT or LINGER rule, a license with
// linger or min_timeout), which a build reading format 2 at most would
// drop or misread (a lingering seat renewable again, say); 2 otherwise.
func (s *state) snapshotFormatNeeded() uint32 {
	if len(s.idl.idle) > 0 || len(s.idl.lingering) > 0 || len(s.idl.idleEnded) > 0 {
		return idleLingerSnapshotFormat
	}
	for _, r := range s.model.rules.GetRules() {
		if r.Kind == ruleTimeout || r.Kind == ruleLinger {
			return idleLingerSnapshotFormat
		}
	}
	for _, serial := range s.serials {
		if lingerLicense(s.licenses[serial]) {
			return idleLingerSnapshotFormat
		}
	}
	return snapshotFormat
}
