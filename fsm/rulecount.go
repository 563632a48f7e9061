package fsm

import (
	"github.com/triadlm/triad/proto/fsmpb"
)

// Counters for the access rules, so that a grant checks its feature's rules
// in O(rules), never O(leases) (issue 11, point 6).
//
// ruleIndex is derived: a function of the rules, the live leases and the
// tied named seats. It is rebuilt from them by SetRules and by a restore,
// and kept current on every lease added or ended (grant, release, expiry,
// force release, a countdown pool used up) and every seat tied or untied.
// Renewals and rebases change none of what it counts. Snapshots do not
// hold it.

// maxNamedUserLeases caps the live leases one tied named user may hold of
// one feature: they share the user's seat, so without a cap one user (or
// a runaway script under that name) could fill the lease table through a
// single seat (docs/decisions.md).
const maxNamedUserLeases = 64

type groupKey struct{ kind, name string }

type ruleIndex struct {
	// byFeature lists, per feature, the indexes of its rules in rule order.
	byFeature map[string][]int
	// groups holds the members of the first group of each kind and name
	// (matches looks no further).
	groups map[groupKey]map[string]bool
	// leaseUsed is, per rule, the seats of non-named leases of its feature
	// that its subject holds.
	leaseUsed []uint64
	// seatUsed is, per user or group rule, the tied named seats of its
	// feature whose user it matches; per host rule, the tied users holding
	// a named lease from a matching host (see namedOn).
	seatUsed []uint64
	// namedOn is, per host rule, the named leases of each user from
	// matching hosts.
	namedOn []map[string]int
	// emptyHost is, per host rule, whether it matches the empty host: then
	// every tied seat counts for it (as it would for a user rule).
	emptyHost []bool
}

func isHostRule(r *fsmpb.AccessRule) bool {
	return r.Subject == "host" || r.Subject == "host_group"
}

// rebuildRuleIndex recomputes the rule counters from the rules, the live
// leases and the tied seats: O(rules + leases × rules of their feature).
func (s *state) rebuildRuleIndex() {
	rules := s.model.rules
	if rules == nil {
		s.model.ri = nil
		return
	}
	n := len(rules.Rules)
	ri := &ruleIndex{
		byFeature: map[string][]int{},
		groups:    map[groupKey]map[string]bool{},
		leaseUsed: make([]uint64, n),
		seatUsed:  make([]uint64, n),
		namedOn:   make([]map[string]int, n),
		emptyHost: make([]bool, n),
	}
	for _, g := range rules.Groups {
		k := groupKey{g.Kind, g.Name}
		if _, seen := ri.groups[k]; seen {
			continue
		}
		set := make(map[string]bool, len(g.Members))
		for _, m := range g.Members {
			set[m] = true
		}
		ri.groups[k] = set
	}
	for i, r := range rules.Rules {
		ri.byFeature[r.Feature] = append(ri.byFeature[r.Feature], i)
		if isHostRule(r) {
			ri.namedOn[i] = map[string]int{}
		}
	}
	s.model.ri = ri
	for i, r := range rules.Rules {
		ri.emptyHost[i] = isHostRule(r) && s.matches(r, "", "")
	}
	// Sums: the order of the walks does not show.
	for _, e := range s.leases {
		s.countLease(e, true)
	}
	for _, seats := range s.model.named {
		for _, seat := range seats {
			s.countSeat(seat, true)
		}
	}
}

// countLease adds (add) or removes a live lease from the rule counters.
func (s *state) countLease(l *lease, add bool) {
	ri := s.model.ri
	if ri == nil {
		return
	}
	for _, i := range ri.byFeature[l.Feature] {
		r := s.model.rules.Rules[i]
		if !s.matches(r, l.User, l.Host) {
			continue
		}
		switch {
		case !l.NamedUser:
			if add {
				ri.leaseUsed[i] += uint64(l.Count)
			} else {
				ri.leaseUsed[i] -= uint64(l.Count)
			}
		case isHostRule(r):
			// A named seat counts for a host rule while its user holds
			// a lease from a matching host: count users, not leases.
			on := ri.namedOn[i]
			if add {
				if on[l.User]++; on[l.User] == 1 {
					ri.seatUsed[i]++
				}
			} else {
				if on[l.User]--; on[l.User] == 0 {
					delete(on, l.User)
					ri.seatUsed[i]--
				}
			}
		}
	}
}

// countSeat adds (add) or removes a tied named seat from the counters of
// the user and group rules that match its user.
func (s *state) countSeat(seat *fsmpb.NamedSeat, add bool) {
	ri := s.model.ri
	if ri == nil {
		return
	}
	for _, i := range ri.byFeature[seat.Feature] {
		r := s.model.rules.Rules[i]
		if isHostRule(r) || !s.matches(r, seat.User, "") {
			continue
		}
		if add {
			ri.seatUsed[i]++
		} else {
			ri.seatUsed[i]--
		}
	}
}

// usedBy is the seats of rule i's feature held by its subject: seats of
// non-named leases, and tied named seats (for a host rule, those whose
// user holds a lease from a matching host). O(1).
func (s *state) usedBy(i int) uint64 {
	ri := s.model.ri
	r := s.model.rules.Rules[i]
	if ri.emptyHost[i] {
		return ri.leaseUsed[i] + uint64(len(s.model.named[r.Feature]))
	}
	return ri.leaseUsed[i] + ri.seatUsed[i]
}
