package fsm

import (
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
