package fsm

import (
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

const (
	modeStandalone = "standalone"
	modeFailover   = "failover"
)

// applyFormCluster records the mode and the members, once and for good.
func (s *state) applyFormCluster(fc *fsmpb.FormCluster) *fsmpb.OpResult {
	if s.cluster != nil {
		return result(fsmpb.Code_ALREADY_FORMED, "the cluster is already formed (%s, %d members); its mode and members cannot change",
			s.cluster.Mode, len(s.cluster.Members))
	}
	want := 0
	switch fc.GetMode() {
	case modeStandalone:
		want = 1
	case modeFailover:
		want = 3
	default:
		return result(fsmpb.Code_INVALID_ARGUMENT, "unknown cluster mode %q: want %q or %q", fc.GetMode(), modeStandalone, modeFailover)
	}
	if n := len(fc.GetMembers()); n != want {
		return result(fsmpb.Code_INVALID_ARGUMENT, "a %s cluster has exactly %d member(s), got %d", fc.Mode, want, n)
	}
	names := map[string]bool{}
	ids := map[string]bool{}
	for i, m := range fc.Members {
		switch {
		case m.GetName() == "":
			return result(fsmpb.Code_INVALID_ARGUMENT, "member %d has no name", i+1)
		case m.GetComputerId() == "":
			return result(fsmpb.Code_INVALID_ARGUMENT, "member %s has no computer id", m.Name)
		case names[m.Name]:
			return result(fsmpb.Code_INVALID_ARGUMENT, "member name %s is used twice", m.Name)
		case ids[m.ComputerId]:
			return result(fsmpb.Code_INVALID_ARGUMENT, "computer id %s is used by two members", m.ComputerId)
		}
		names[m.Name] = true
		ids[m.ComputerId] = true
	}
	if fc.VendorTrust != nil {
		if r := s.recordTrust(fc.VendorTrust); r != nil {
			return r
		}
	}
	s.cluster = proto.Clone(fc).(*fsmpb.FormCluster)
	s.cluster.VendorTrust = nil // kept once, in s.trust
	return result(fsmpb.Code_OK, "%s cluster formed with %d member(s)", fc.Mode, want)
}

// memberComputerIDs returns the members' computer ids, sorted.
func (s *state) memberComputerIDs() []string {
	ids := make([]string, 0, len(s.cluster.GetMembers()))
	for _, m := range s.cluster.GetMembers() {
		ids = append(ids, m.ComputerId)
	}
	return sortedSet(ids)
}

// applyReplaceMember swaps a member of the record for a new machine and
// enrolls the licenses binding the new set, removing those bound to any
// other set, all at once. (The full session was checked by applyLocked.)
// Applied again with the same member and licenses (a retried replace that
// had committed), it answers OK and changes nothing.
func (s *state) applyReplaceMember(now int64, index uint64, rm *fsmpb.ReplaceMember) *fsmpb.OpResult {
	if s.cluster == nil {
		return result(fsmpb.Code_NOT_FORMED, "the cluster is not formed yet: there is no member to replace")
	}
	if s.cluster.Mode != modeFailover {
		return result(fsmpb.Code_INVALID_ARGUMENT, "a %s cluster has no other member to carry on: restore its backup instead (triadd restore)", s.cluster.Mode)
	}
	nm := rm.GetMember()
	if nm.GetName() == "" || nm.GetComputerId() == "" || nm.GetRaftAddress() == "" || nm.GetGrpcAddress() == "" {
		return result(fsmpb.Code_INVALID_ARGUMENT, "the new member needs a name, a computer id and its addresses")
	}
	if len(rm.GetLicenses()) == 0 {
		return result(fsmpb.Code_INVALID_ARGUMENT, "no license given: a replacement needs a license binding the new set of computer ids")
	}
	oldAt, done := -1, false
	var next []string
	for i, m := range s.cluster.Members {
		switch {
		case m.GetName() == rm.GetOldName():
			oldAt = i
			next = append(next, nm.GetComputerId())
		case proto.Equal(m, nm):
			done = true
			next = append(next, m.GetComputerId())
		case m.GetName() == nm.GetName():
			return result(fsmpb.Code_INVALID_ARGUMENT, "member name %s is already used by another member: give the new member another --name", nm.GetName())
		case m.GetComputerId() == nm.GetComputerId():
			return result(fsmpb.Code_INVALID_ARGUMENT, "computer id %s is already member %s's: the new member must be another machine", nm.GetComputerId(), m.GetName())
		default:
			next = append(next, m.GetComputerId())
		}
	}
	if oldAt >= 0 && done {
		return result(fsmpb.Code_INVALID_ARGUMENT, "%s is already a member of this cluster: the replacement is another machine", nm.GetName())
	}
	if oldAt < 0 && !done {
		var names []string
		for _, m := range s.cluster.Members {
			names = append(names, m.GetName())
		}
		return result(fsmpb.Code_NOT_FOUND, "no member %s in this cluster (members: %s)", rm.GetOldName(), strings.Join(names, ", "))
	}
	if done && oldAt < 0 {
		next = s.memberComputerIDs()
	}
	nextIDs := sortedSet(next)
	for _, lic := range rm.GetLicenses() {
		if res := checkLicense(lic); res != nil {
			return res
		}
		if res := s.verifyLicense(lic); res != nil {
			return res
		}
		if licIDs := sortedSet(lic.ComputerIds); lic.BindingMode != modeFailover || !slices.Equal(licIDs, nextIDs) {
			return result(fsmpb.Code_BINDING_MISMATCH,
				"license %s is bound to a %s cluster with computer ids %s, but after the replacement this cluster has computer ids %s: ask the vendor for a license binding the new set",
				lic.Serial, lic.BindingMode, formatSet(licIDs), formatSet(nextIDs))
		}
		if now > lic.ValidUntilMs {
			return result(fsmpb.Code_LICENSE_EXPIRED, "license %s expired on %s", lic.Serial, formatTime(lic.ValidUntilMs))
		}
		if old, ok := s.licenses[lic.Serial]; ok && !proto.Equal(withoutEnrollment(old), withoutEnrollment(lic)) {
			return result(fsmpb.Code_ALREADY_EXISTS, "another license with serial %s is already enrolled: issue the new one with a new serial", lic.Serial)
		}
	}
	if done && oldAt < 0 {
		return result(fsmpb.Code_OK, "member %s was already replaced by %s", rm.GetOldName(), nm.GetName())
	}
	// Licenses bound to another set than the new one no longer bind this
	// cluster: removed, as `license remove` would (live leases stay).
	var removed []string
	for _, serial := range append([]string(nil), s.serials...) {
		if l := s.licenses[serial]; !slices.Equal(sortedSet(l.ComputerIds), nextIDs) {
			s.deleteLicense(serial)
			removed = append(removed, serial)
		}
	}
	members := append([]*fsmpb.Member(nil), s.cluster.Members...)
	members[oldAt] = proto.Clone(nm).(*fsmpb.Member)
	sort.Slice(members, func(i, j int) bool { return members[i].GetName() < members[j].GetName() })
	s.cluster = &fsmpb.FormCluster{Mode: s.cluster.Mode, Members: members}
	var enrolled []string
	for _, lic := range rm.GetLicenses() {
		if _, ok := s.licenses[lic.Serial]; ok {
			continue
		}
		stored := proto.Clone(lic).(*fsmpb.License)
		stored.EnrolledAtMs = now
		stored.EnrolledIndex = index
		s.addLicense(stored)
		enrolled = append(enrolled, lic.Serial)
	}
	s.admin.activated = true
	s.updateLicenseStates(now)
	return result(fsmpb.Code_OK, "member %s replaced by %s (computer id %s); licenses enrolled: %s; removed: %s",
		rm.GetOldName(), nm.GetName(), nm.GetComputerId(), strings.Join(enrolled, ", "), orNone(removed))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
