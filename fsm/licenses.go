package fsm

import (
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// License states, as LicenseState reports them.
const (
	StateValid       = "valid"
	StateExpired     = "expired"
	StateNotYetValid = "not yet valid"
	StateSuperseded  = "superseded"
)

// applyEnrollLicense adds a license. The receiving member verified it, and
// so does every member here: signature against the replicated vendor
// trust, fields against the signed file, binding against the replicated
// cluster record and dates against the command's now, so every member
// decides alike.
// (The full session was checked by applyLocked.)
func (s *state) applyEnrollLicense(now int64, index uint64, el *fsmpb.EnrollLicense) *fsmpb.OpResult {
	if s.cluster == nil {
		return result(fsmpb.Code_NOT_FORMED, "the cluster is not formed yet: form it before enrolling licenses")
	}
	lic := el.GetLicense()
	if res := checkLicense(lic); res != nil {
		return res
	}
	if res := s.verifyLicense(lic); res != nil {
		return res
	}
	licIDs, clusterIDs := sortedSet(lic.ComputerIds), s.memberComputerIDs()
	if lic.BindingMode != s.cluster.Mode || !slices.Equal(licIDs, clusterIDs) {
		return result(fsmpb.Code_BINDING_MISMATCH,
			"license %s is bound to a %s cluster with computer ids %s, but this is a %s cluster with computer ids %s",
			lic.Serial, lic.BindingMode, formatSet(licIDs), s.cluster.Mode, formatSet(clusterIDs))
	}
	if now > lic.ValidUntilMs {
		return result(fsmpb.Code_LICENSE_EXPIRED, "license %s expired on %s", lic.Serial, formatTime(lic.ValidUntilMs))
	}
	if old, ok := s.licenses[lic.Serial]; ok {
		if proto.Equal(withoutEnrollment(old), withoutEnrollment(lic)) {
			return &fsmpb.OpResult{Code: fsmpb.Code_OK,
				Message: "license " + lic.Serial + " was already enrolled",
				License: proto.Clone(old).(*fsmpb.License)}
		}
		return result(fsmpb.Code_ALREADY_EXISTS,
			"another license with serial %s is already enrolled; remove it first or issue the new one with a new serial", lic.Serial)
	}
	if by := s.supersedersOf(lic.Serial); len(by) > 0 {
		return result(fsmpb.Code_SUPERSEDED, "license %s is superseded by enrolled license %s", lic.Serial, by[0])
	}
	stored := proto.Clone(lic).(*fsmpb.License)
	stored.EnrolledAtMs = now
	stored.EnrolledIndex = index
	s.addLicense(stored)
	s.admin.activated = true // sticky: removing the license does not undo it
	s.updateLicenseStates(now)
	return &fsmpb.OpResult{Code: fsmpb.Code_OK,
		Message: "license " + lic.Serial + " enrolled",
		License: proto.Clone(stored).(*fsmpb.License)}
}

// checkLicense refuses licenses no valid license file can produce.
func checkLicense(lic *fsmpb.License) *fsmpb.OpResult {
	switch {
	case lic.GetSerial() == "":
		return result(fsmpb.Code_INVALID_ARGUMENT, "the license has no serial")
	case len(lic.Features) == 0:
		return result(fsmpb.Code_INVALID_ARGUMENT, "license %s grants no features", lic.Serial)
	case slices.Contains(lic.Supersedes, lic.Serial):
		return result(fsmpb.Code_INVALID_ARGUMENT, "license %s supersedes itself", lic.Serial)
	}
	for i, f := range lic.Features {
		if f.GetName() == "" {
			return result(fsmpb.Code_INVALID_ARGUMENT, "license %s: feature %d has no name", lic.Serial, i+1)
		}
	}
	return nil
}

func withoutEnrollment(l *fsmpb.License) *fsmpb.License {
	c := proto.Clone(l).(*fsmpb.License)
	c.EnrolledAtMs = 0
	c.EnrolledIndex = 0
	return c
}

// supersedersOf lists, sorted, the enrolled licenses that supersede serial.
func (s *state) supersedersOf(serial string) []string {
	if s.supersededBy[serial] == 0 {
		return nil
	}
	var by []string
	for _, sn := range s.serials {
		if slices.Contains(s.licenses[sn].Supersedes, serial) {
			by = append(by, sn)
		}
	}
	return by
}

// applyRemoveLicense deletes a license. Live leases stay: they simply may
// no longer fit, and no new grant is made until they do.
func (s *state) applyRemoveLicense(now int64, rl *fsmpb.RemoveLicense) *fsmpb.OpResult {
	serial := rl.GetSerial()
	if _, ok := s.licenses[serial]; !ok {
		return result(fsmpb.Code_NOT_FOUND, "license %s is not enrolled", serial)
	}
	s.deleteLicense(serial)
	s.updateLicenseStates(now)
	return result(fsmpb.Code_OK, "license %s removed", serial)
}

// licenseState tells why a license does or does not give capacity at now.
// Superseded wins over the dates: a replaced license never comes back.
func (s *state) licenseState(l *fsmpb.License, now int64) string {
	switch {
	case s.supersededBy[l.Serial] > 0:
		return StateSuperseded
	case now > l.ValidUntilMs:
		return StateExpired
	case now < l.ValidAfterMs:
		return StateNotYetValid
	default:
		return StateValid
	}
}

func (s *state) licenseValid(l *fsmpb.License, now int64) bool {
	return l.ValidAfterMs <= now && now <= l.ValidUntilMs && s.supersededBy[l.Serial] == 0
}

func formatTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}
