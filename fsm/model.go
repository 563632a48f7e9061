package fsm

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/proto/fsmpb"
)

// The license model beyond plain concurrent seats: named-user seats,
// countdown pools, soft limits, borrowing, access rules and the committed
// validity of each license. Everything here is decided from the log only.

const (
	dayMs = 24 * 3600 * 1000
	// recycleIdleMs: a named user idle this long may be untied.
	recycleIdleMs = 30 * dayMs
)

// Feature models and limits as stored in fsmpb.Feature ("" = default).
const (
	modelConcurrent = "concurrent"
	modelNamedUser  = "named-user"
	modelCountdown  = "countdown"
	limitSoft       = "soft"
)

// modelState is the replicated license-model state; namedUse is derived.
type modelState struct {
	named     map[string]map[string]*fsmpb.NamedSeat // feature → user → seat
	rules     *fsmpb.AccessRules
	licStates map[string]*fsmpb.LicenseStateRecord // serial → committed state
	countdown map[string]int64                     // feature → seat-ms consumed by ended accounting

	namedUse map[string]map[string]int // feature → user → live leases
	// ri counts, per access rule, the seats its subject holds (rulecount.go).
	ri *ruleIndex
	// Live countdown leases per feature: Σ count and Σ count × accounted_ms,
	// so the unaccounted seat time at now is now × seats − weighted, in O(1).
	cdSeats    map[string]int64
	cdWeighted map[string]int64
}

func newModelState() modelState {
	return modelState{
		named:      map[string]map[string]*fsmpb.NamedSeat{},
		licStates:  map[string]*fsmpb.LicenseStateRecord{},
		countdown:  map[string]int64{},
		namedUse:   map[string]map[string]int{},
		cdSeats:    map[string]int64{},
		cdWeighted: map[string]int64{},
	}
}

func (m *modelState) toSnapshot(snap *fsmpb.Snapshot) {
	for _, f := range sortedKeys(m.named) {
		for _, u := range sortedKeys(m.named[f]) {
			snap.NamedSeats = append(snap.NamedSeats, m.named[f][u])
		}
	}
	snap.Rules = m.rules
	for _, serial := range sortedKeys(m.licStates) {
		snap.LicenseStates = append(snap.LicenseStates, m.licStates[serial])
	}
	for _, f := range sortedKeys(m.countdown) {
		snap.Countdown = append(snap.Countdown, &fsmpb.CountdownUsage{Feature: f, UsedMs: m.countdown[f]})
	}
}

// modelFromSnapshot restores the model; namedUse is rebuilt from the leases
// by the caller (addLeaseUse).
func modelFromSnapshot(snap *fsmpb.Snapshot) (modelState, error) {
	m := newModelState()
	for _, seat := range snap.NamedSeats {
		if m.named[seat.Feature] == nil {
			m.named[seat.Feature] = map[string]*fsmpb.NamedSeat{}
		}
		if _, dup := m.named[seat.Feature][seat.User]; dup {
			return m, fmt.Errorf("fsm: snapshot holds named seat %s/%s twice", seat.Feature, seat.User)
		}
		m.named[seat.Feature][seat.User] = seat
	}
	m.rules = snap.Rules
	for _, r := range snap.LicenseStates {
		m.licStates[r.Serial] = r
	}
	for _, c := range snap.Countdown {
		m.countdown[c.Feature] = c.UsedMs
	}
	return m, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// terms are a feature's rules at now, from its valid licenses.
type terms struct {
	model       string
	overdraft   uint64 // extra seats of soft limits
	poolMs      int64  // countdown pool, seat-ms
	maxBorrowMs int64
	licensed    bool // some valid license grants the feature
}

// terms combines the valid licenses of feature: overdrafts, pools and
// borrow limits add up or take the maximum; the model is that of the
// highest-version entry (ties: lowest serial). The model only decides how
// a new grant holds a seat; seats of every model are one pool (admit).
func (s *state) terms(feature string, now int64) terms {
	t := terms{model: modelConcurrent}
	var best featver.Key
	found := false
	for f := range s.validEntries(feature, now) {
		if f.Limit == limitSoft {
			t.overdraft += uint64(f.Overdraft)
		}
		if f.Model == modelCountdown {
			t.poolMs += int64(f.UsageHours) * 3600 * 1000
		}
		t.maxBorrowMs = max(t.maxBorrowMs, int64(f.MaxBorrowSeconds)*1000)
		t.licensed = true
		if k := featureVersion(f); !found || k > best {
			best, found = k, true
			t.model = cmp.Or(f.Model, modelConcurrent)
		}
	}
	return t
}

// knownFeature reports whether an enrolled license, valid or not, has an
// entry for feature.
func (s *state) knownFeature(feature string) bool {
	return len(s.features().entries[feature]) > 0
}

// admit decides whether n seats of g's feature may be granted at now, and
// returns the feature's terms for the grant.
func (s *state) admit(now int64, g *fsmpb.Grant, n uint64) (*fsmpb.OpResult, terms) {
	var t terms
	want, err := featver.Of(g.Version, g.GetVersionText())
	if err != nil {
		return result(fsmpb.Code_INVALID_ARGUMENT, "checkout of %s: %v", g.Feature, err), t
	}
	if !s.knownFeature(g.Feature) {
		return result(fsmpb.Code_UNKNOWN_FEATURE, "unknown feature %s: no enrolled license grants it", g.Feature), t
	}
	sup := s.supply(g.Feature, now, true)
	if len(sup) == 0 {
		return result(fsmpb.Code_LICENSE_EXPIRED,
			"no valid license for %s: every license granting it is expired, not yet valid or superseded", g.Feature), t
	}
	if highest := sup[len(sup)-1]; highest.version < want {
		return result(fsmpb.Code_VERSION_TOO_NEW,
			"no license for %s at version %s (highest licensed version is %s)", g.Feature,
			featver.Display(g.Version, g.GetVersionText()), featver.Display(highest.version.Major(), highest.text)), t
	}
	t = s.terms(g.Feature, now)
	if t.model == modelNamedUser {
		if g.User == "" {
			return result(fsmpb.Code_INVALID_ARGUMENT, "%s is licensed per named user: the checkout must carry a user name", g.Feature), t
		}
		if _, tied := s.model.named[g.Feature][g.User]; tied {
			n = 0 // a tied user's sessions share the user's seat
			if held := s.model.namedUse[g.Feature][g.User]; held >= maxNamedUserLeases && s.enforcing() {
				return result(fsmpb.Code_NO_SEAT, "user %s already holds %d leases of %s, the most one named user may hold at once: release one first",
					g.User, held, g.Feature), t
			}
		}
	}
	if res := s.checkRules(g, n, total(sup)); res != nil {
		return res, t
	}
	// One pool per feature, whatever the model of the license that brings
	// a seat: admission checks the demand the over-capacity alarm judges
	// (live leases by version, tied named seats at any version), so a grant
	// within hard limits never raises the alarm (docs/decisions.md).
	// Entries older builds wrote (before the cluster recorded its vendor
	// trust) replay under the admission those builds applied, so a member
	// replaying them reaches the state its peers served.
	if !s.enforcing() {
		return s.admitLegacy(now, g, want, n, sup, t), t
	}
	switch t.model {
	case modelNamedUser:
		if n == 0 {
			return nil, t
		}
		// A new named seat fits any version: demand at version 0.
		if ok, inUse, supply := s.seatCheck(g.Feature, 0, n, sup); !ok {
			if tied := uint64(len(s.model.named[g.Feature])); tied != inUse {
				return result(fsmpb.Code_NO_SEAT, "no seat left for %s %s (%d of %d in use: %d named users tied, %d by leases)",
					g.Feature, grantLabel(g), inUse, supply, tied, inUse-tied), t
			}
			return result(fsmpb.Code_NO_SEAT, "no seat left for %s %s (%d of %d named users tied)", g.Feature, grantLabel(g), inUse, supply), t
		}
		return nil, t
	case modelCountdown:
		if used := s.countdownUsed(g.Feature, now); used >= t.poolMs {
			return result(fsmpb.Code_POOL_EXHAUSTED, "the countdown pool of %s is used up (%s of %s hours)",
				g.Feature, hours(used), hours(t.poolMs)), t
		}
	}
	if ok, inUse, supply := s.seatCheck(g.Feature, want, n, sup); !ok {
		return result(fsmpb.Code_NO_SEAT, "no seat left for %s %s (%d of %d in use)", g.Feature, grantLabel(g), inUse, supply), t
	}
	return nil, t
}

// admitLegacy is the seat check of builds before issue 11: named demand
// against tied users only, other demand against live leases only. It
// decides only entries written before enforcement (see admit).
func (s *state) admitLegacy(now int64, g *fsmpb.Grant, want featver.Key, n uint64, sup []versionCount, t terms) *fsmpb.OpResult {
	switch t.model {
	case modelNamedUser:
		if n == 0 {
			return nil
		}
		if tied, limit := uint64(len(s.model.named[g.Feature])), total(sup); tied+1 > limit {
			return result(fsmpb.Code_NO_SEAT, "no seat left for %s %s (%d of %d named users tied)", g.Feature, grantLabel(g), tied, limit)
		}
		return nil
	case modelCountdown:
		if used := s.countdownUsed(g.Feature, now); used >= t.poolMs {
			return result(fsmpb.Code_POOL_EXHAUSTED, "the countdown pool of %s is used up (%s of %s hours)",
				g.Feature, hours(used), hours(t.poolMs))
		}
	}
	var use []versionCount
	if u := s.inUse[g.Feature]; u != nil {
		use = u.byVersion
	}
	if ok, inUse, supply := fits(use, want, n, sup); !ok {
		return result(fsmpb.Code_NO_SEAT, "no seat left for %s %s (%d of %d in use)", g.Feature, grantLabel(g), inUse, supply)
	}
	return nil
}

func total(sup []versionCount) uint64 {
	var n uint64
	for _, v := range sup {
		n += v.count
	}
	return n
}

func hours(ms int64) string { return fmt.Sprintf("%.1f", float64(ms)/3600000) }

// addLeaseUse counts a live lease in the derived indexes.
func (s *state) addLeaseUse(l *lease) {
	s.countLease(l, true)
	if l.Package != "" {
		s.suiteAdd(l)
		return
	}
	if l.AccountedMs != 0 {
		s.model.cdSeats[l.Feature] += int64(l.Count)
		s.model.cdWeighted[l.Feature] += int64(l.Count) * l.AccountedMs
	}
	if !l.NamedUser {
		s.addUse(l.Feature, leaseVersion(l), uint64(l.Count))
		return
	}
	if s.model.namedUse[l.Feature] == nil {
		s.model.namedUse[l.Feature] = map[string]int{}
	}
	s.model.namedUse[l.Feature][l.User]++
}

// dropLeaseUse undoes addLeaseUse and settles the lease's last accounts.
func (s *state) dropLeaseUse(now int64, l *lease) {
	s.markQueue(l.Feature)
	s.countLease(l, false)
	s.account(now, l)
	if l.Package != "" {
		s.suiteDrop(l)
		return
	}
	if l.AccountedMs != 0 {
		s.model.cdSeats[l.Feature] -= int64(l.Count)
		s.model.cdWeighted[l.Feature] -= int64(l.Count) * l.AccountedMs
		if s.model.cdSeats[l.Feature] == 0 {
			delete(s.model.cdSeats, l.Feature)
			delete(s.model.cdWeighted, l.Feature)
		}
	}
	if !l.NamedUser {
		s.subUse(l.Feature, leaseVersion(l), uint64(l.Count))
		return
	}
	s.touchSeat(now, l)
	if u := s.model.namedUse[l.Feature]; u != nil {
		if u[l.User]--; u[l.User] <= 0 {
			delete(u, l.User)
		}
		if len(u) == 0 {
			delete(s.model.namedUse, l.Feature)
		}
	}
}

// tieSeat ties the grant's user to a named seat (first checkout) and
// marks it used.
func (s *state) tieSeat(now int64, l *lease) {
	seats := s.model.named[l.Feature]
	if seats == nil {
		seats = map[string]*fsmpb.NamedSeat{}
		s.model.named[l.Feature] = seats
	}
	if seats[l.User] == nil {
		seats[l.User] = &fsmpb.NamedSeat{Feature: l.Feature, User: l.User, TiedMs: now}
		s.countSeat(seats[l.User], true)
	}
	seats[l.User].LastUsedMs = now
}

// touchSeat records use of a named seat (checkout, renewal, release).
func (s *state) touchSeat(now int64, l *lease) {
	if seat := s.model.named[l.Feature][l.User]; seat != nil && l.NamedUser {
		seat.LastUsedMs = max(seat.LastUsedMs, now)
	}
}

// account adds a countdown lease's seat time up to now to its feature's
// pool use. A new leader's clock may be behind: time never runs backwards.
func (s *state) account(now int64, l *lease) {
	if l.AccountedMs == 0 {
		return
	}
	if d := now - l.AccountedMs; d > 0 {
		s.model.countdown[l.Feature] += d * int64(l.Count)
		s.setAccounted(l, now)
	}
}

// setAccounted moves a live countdown lease's accounting mark.
func (s *state) setAccounted(l *lease, t int64) {
	s.model.cdWeighted[l.Feature] += int64(l.Count) * (t - l.AccountedMs)
	l.AccountedMs = t
}

// countdownUsed is the pool use of feature including live leases' seat
// time not yet accounted (O(1): see cdSeats).
func (s *state) countdownUsed(feature string, now int64) int64 {
	unaccounted := now*s.model.cdSeats[feature] - s.model.cdWeighted[feature]
	return s.model.countdown[feature] + max(unaccounted, 0)
}

// --- Access rules ---

func (s *state) applySetRules(r *fsmpb.SetRules) *fsmpb.OpResult {
	rules := r.GetRules()
	if rules == nil || (len(rules.Rules) == 0 && len(rules.Groups) == 0) {
		s.model.rules = nil
		s.rebuildRuleIndex()
		return result(fsmpb.Code_OK, "access rules cleared")
	}
	if res := s.checkTimeoutMinimums(rules); res != nil {
		return res
	}
	s.model.rules = proto.Clone(rules).(*fsmpb.AccessRules)
	s.rebuildRuleIndex()
	return result(fsmpb.Code_OK, "%d access rule(s) and %d group(s) set", len(rules.Rules), len(rules.Groups))
}

// matches reports whether a rule's subject covers user@host.
func (s *state) matches(r *fsmpb.AccessRule, user, host string) bool {
	switch r.Subject {
	case "user":
		return user == r.Value
	case "host":
		return host == r.Value
	case "group", "host_group":
		kind, who := "user", user
		if r.Subject == "host_group" {
			kind, who = "host", host
		}
		if ri := s.model.ri; ri != nil {
			return ri.groups[groupKey{kind, r.Value}][who]
		}
		for _, g := range s.model.rules.GetGroups() {
			if g.Name == r.Value && g.Kind == kind {
				return slices.Contains(g.Members, who)
			}
		}
	}
	return false
}

// seatsInUse counts a feature's seats in use (all versions).
func (s *state) seatsInUse(feature string) uint64 {
	n := uint64(len(s.model.named[feature]))
	if u := s.inUse[feature]; u != nil {
		for _, v := range u.byVersion {
			n += v.count
		}
	}
	return n
}

// checkRules applies the access rules to a request for n new seats of a
// feature whose total capacity is capacity, in this order: EXCLUDE denies;
// INCLUDE restricts the feature to its subjects; MAX caps a subject's
// seats; RESERVE keeps seats for a subject while it does not use them. A
// denial names its rule; changing rules never takes a seat already held.
func (s *state) checkRules(g *fsmpb.Grant, n, capacity uint64) *fsmpb.OpResult {
	if res := s.checkAccess(g); res != nil || s.model.rules == nil {
		return res
	}
	if n == 0 {
		return nil
	}
	mine := s.model.ri.byFeature[g.Feature]
	rules := s.model.rules.Rules
	var reservedForOthers uint64
	var reserve *fsmpb.AccessRule
	for _, i := range mine {
		r := rules[i]
		match := s.matches(r, g.User, g.Host)
		switch r.Kind {
		case "max":
			if used := s.usedBy(i); match && used+n > uint64(r.Count) {
				return result(fsmpb.Code_DENIED_BY_RULE, "denied by rule %s: at most %d seat(s) of %s, %d in use", r.Name, r.Count, g.Feature, used)
			}
		case "reserve":
			if used := s.usedBy(i); !match && used < uint64(r.Count) {
				reservedForOthers += uint64(r.Count) - used
				reserve = cmp.Or(reserve, r)
			}
		}
	}
	if reserve != nil && s.seatsInUse(g.Feature)+n+reservedForOthers > capacity {
		return result(fsmpb.Code_DENIED_BY_RULE, "denied by rule %s: the free seats of %s are reserved", reserve.Name, g.Feature)
	}
	return nil
}

// checkAccess applies the EXCLUDE and INCLUDE rules: the rules that refuse
// a user or host whatever the seats in use (a queued request they refuse
// is refused at once: queue.go).
func (s *state) checkAccess(g *fsmpb.Grant) *fsmpb.OpResult {
	if s.model.rules == nil {
		return nil
	}
	mine := s.model.ri.byFeature[g.Feature]
	rules := s.model.rules.Rules
	var include *fsmpb.AccessRule
	included := false
	for _, i := range mine {
		r := rules[i]
		match := s.matches(r, g.User, g.Host)
		switch {
		case r.Kind == "exclude" && match:
			return result(fsmpb.Code_DENIED_BY_RULE, "denied by rule %s", r.Name)
		case r.Kind == "include":
			include = cmp.Or(include, r)
			included = included || match
		}
	}
	if include != nil && !included {
		return result(fsmpb.Code_DENIED_BY_RULE, "denied by rule %s: only included users or hosts may use %s", include.Name, g.Feature)
	}
	return nil
}

// --- Borrowing ---

// applyBorrow takes or extends a borrowed lease.
func (s *state) applyBorrow(now int64, index uint64, b *fsmpb.Borrow) *fsmpb.OpResult {
	if b.GetDurationMs() <= 0 {
		return result(fsmpb.Code_INVALID_ARGUMENT, "a borrow needs a positive duration")
	}
	if b.GetLeaseId() == 0 {
		return s.grant(now, index, b.GetGrant(), b.GetDurationMs())
	}
	e, ok := s.leases[b.LeaseId]
	if !ok || !e.Borrowed {
		return result(fsmpb.Code_NOT_FOUND, "borrowed lease %d not found: it was returned or has ended", b.LeaseId)
	}
	if !ownedBy(e, b.GetSecret()) {
		return result(fsmpb.Code_WRONG_LEASE_SECRET, "lease %d: wrong lease secret", b.LeaseId)
	}
	t := s.terms(e.Feature, now)
	if res := borrowAllowed(e.Feature, b.DurationMs, t); res != nil {
		return res
	}
	s.account(now, e)
	e.ExpiresMs = now + b.DurationMs
	e.TtlMs = b.DurationMs
	e.RenewedMs = now
	heap.Fix(&s.expiry, int(e.heapIdx))
	return &fsmpb.OpResult{Code: fsmpb.Code_OK, Message: "borrow extended", Lease: s.answerLease(e)}
}

func borrowAllowed(feature string, durationMs int64, t terms) *fsmpb.OpResult {
	switch {
	case t.maxBorrowMs == 0:
		return result(fsmpb.Code_BORROW_NOT_ALLOWED, "%s cannot be borrowed: its license allows no offline use", feature)
	case durationMs > t.maxBorrowMs:
		return result(fsmpb.Code_BORROW_NOT_ALLOWED, "%s can be borrowed for at most %s hours; asked for %s", feature, hours(t.maxBorrowMs), hours(durationMs))
	}
	return nil
}

// --- Named-user recycling ---

func (s *state) applyRecycleNamedUser(now int64, r *fsmpb.RecycleNamedUser) *fsmpb.OpResult {
	seat := s.model.named[r.GetFeature()][r.GetUser()]
	if seat == nil {
		return result(fsmpb.Code_NOT_FOUND, "user %s holds no named seat of %s", r.GetUser(), r.GetFeature())
	}
	if s.model.namedUse[seat.Feature][seat.User] > 0 {
		return result(fsmpb.Code_RECYCLE_REFUSED, "user %s is using %s now: a seat in use is never recycled", seat.User, seat.Feature)
	}
	if idle := now - seat.LastUsedMs; idle < recycleIdleMs {
		return result(fsmpb.Code_RECYCLE_REFUSED, "user %s last used %s on %s: a named seat can be recycled 30 days after its last use, from %s",
			seat.User, seat.Feature, formatTime(seat.LastUsedMs), formatTime(seat.LastUsedMs+recycleIdleMs))
	}
	s.untie(seat)
	return result(fsmpb.Code_OK, "named seat of %s untied from user %s", seat.Feature, seat.User)
}

// applyRecycleSweep unties every named user idle for 30 days and not in use.
func (s *state) applyRecycleSweep(now int64) *fsmpb.OpResult {
	var untied []string
	for _, f := range sortedKeys(s.model.named) {
		for _, u := range sortedKeys(s.model.named[f]) {
			seat := s.model.named[f][u]
			if s.model.namedUse[f][u] == 0 && now-seat.LastUsedMs >= recycleIdleMs {
				s.untie(seat)
				untied = append(untied, f+"/"+u)
			}
		}
	}
	return result(fsmpb.Code_OK, "recycled %d named seat(s): %s", len(untied), strings.Join(untied, ", "))
}

func (s *state) untie(seat *fsmpb.NamedSeat) {
	s.markQueue(seat.Feature)
	s.countSeat(seat, false)
	delete(s.model.named[seat.Feature], seat.User)
	if len(s.model.named[seat.Feature]) == 0 {
		delete(s.model.named, seat.Feature)
	}
}

// --- License validity over time ---

// updateLicenseStates commits each license's validity at now and returns
// the changes, sorted by serial.
func (s *state) updateLicenseStates(now int64) []string {
	var changes []string
	for _, serial := range s.serials {
		st := s.licenseState(s.licenses[serial], now)
		if rec := s.model.licStates[serial]; rec == nil || rec.State != st {
			if rec != nil {
				changes = append(changes, fmt.Sprintf("license %s is now %s (was %s)", serial, st, rec.State))
			}
			s.model.licStates[serial] = &fsmpb.LicenseStateRecord{Serial: serial, State: st, SinceMs: now}
		}
	}
	for _, serial := range sortedKeys(s.model.licStates) {
		if _, ok := s.licenses[serial]; !ok {
			delete(s.model.licStates, serial)
		}
	}
	return changes
}

// applyLicenseTick records licenses that became valid or expired by the
// clock since the last command.
func (s *state) applyLicenseTick(now int64) *fsmpb.OpResult {
	return result(fsmpb.Code_OK, "%s", strings.Join(s.updateLicenseStates(now), "; "))
}

// needsLicenseTick reports whether some license's validity at now differs
// from the committed one.
func (s *state) needsLicenseTick(now int64) bool {
	for _, serial := range s.serials {
		if rec := s.model.licStates[serial]; rec == nil || rec.State != s.licenseState(s.licenses[serial], now) {
			return true
		}
	}
	return false
}

// grantLabel names a grant's version in refusals: "v2.1" for a dotted
// version. Whole numbers keep the wording older builds stored in denial
// records ("v 5"), so their entries replay to the same state.
func grantLabel(g *fsmpb.Grant) string {
	if t := g.GetVersionText(); t != "" {
		return "v" + t
	}
	return fmt.Sprintf("v %d", g.Version)
}
