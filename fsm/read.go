package fsm

import (
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// defaultGraceSeconds is the client grace period when no license says.
const defaultGraceSeconds = 7200

// Cluster returns a copy of the cluster record, or nil before formation.
func (f *FSM) Cluster() *fsmpb.FormCluster {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.s.cluster == nil {
		return nil
	}
	return proto.Clone(f.s.cluster).(*fsmpb.FormCluster)
}

// MemberGRPCAddress returns the licensing address of the formed member
// named name, without copying the cluster record (it is on the request
// path: every checkout answer names the leader).
func (f *FSM) MemberGRPCAddress(name string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, m := range f.s.cluster.GetMembers() {
		if m.GetName() == name {
			return m.GetGrpcAddress(), true
		}
	}
	return "", false
}

// Licenses returns copies of the enrolled licenses, by serial.
func (f *FSM) Licenses() []*fsmpb.License {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*fsmpb.License, 0, len(f.s.serials))
	for _, serial := range f.s.serials {
		out = append(out, proto.Clone(f.s.licenses[serial]).(*fsmpb.License))
	}
	return out
}

// LicenseState returns StateValid, StateExpired, StateNotYetValid or
// StateSuperseded for an enrolled license at nowMs, and "" for an unknown
// serial. A superseded license reports superseded whatever its dates.
func (f *FSM) LicenseState(serial string, nowMs int64) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	l, ok := f.s.licenses[serial]
	if !ok {
		return ""
	}
	return f.s.licenseState(l, nowMs)
}

// Leases returns copies of the live leases, by id, without their secrets:
// reads feed listings, and a secret only ever goes to its holder in the
// result of its grant.
func (f *FSM) Leases() []*fsmpb.Lease {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ids := f.s.sortedLeaseIDs()
	out := make([]*fsmpb.Lease, 0, len(ids))
	for _, id := range ids {
		out = append(out, publicLease(f.s.leases[id]))
	}
	return out
}

// Lease returns a copy of one live lease, without its secret.
func (f *FSM) Lease(id uint64) (*fsmpb.Lease, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.s.leases[id]
	if !ok {
		return nil, false
	}
	return publicLease(e), true
}

func publicLease(l *lease) *fsmpb.Lease {
	c := l.toProto()
	c.Secret = nil
	return c
}

// Usage returns, sorted by feature then version, one row per version that
// valid licenses grant at nowMs, with the live leases assigned to rows (see
// state.usage for how leases that do not fit are shown).
func (f *FSM) Usage(nowMs int64) []Usage {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.usage(nowMs)
}

// HasExpired reports whether an ExpireLeases command at nowMs would change
// anything: a lease expired before nowMs, or a request record is due to be
// forgotten, an idle lease reached its TIMEOUT, or a queued checkout's
// wait or TTL ended. It costs O(1) plus O(idle leases) plus O(queued
// checkouts); the leader asks every second.
func (f *FSM) HasExpired(nowMs int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	if len(s.expiry) > 0 && s.expiry[0].ExpiresMs < nowMs {
		return true
	}
	if s.endedRequests > 0 && s.minEndedMs < nowMs-requestMemoryMs {
		return true
	}
	if s.queueExpired(nowMs) {
		return true
	}
	return s.hasIdleWork(nowMs)
}

// GraceSeconds returns the client grace period for feature: the largest one
// the licenses valid at nowMs give, or 7200 (2 h) when none gives one.
func (f *FSM) GraceSeconds(feature string, nowMs int64) uint32 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var grace uint32
	for _, serial := range f.s.serials {
		l := f.s.licenses[serial]
		if !f.s.licenseValid(l, nowMs) {
			continue
		}
		for _, ft := range l.Features {
			if ft.Name == feature {
				grace = max(grace, ft.GraceSeconds)
			}
		}
	}
	if grace == 0 {
		return defaultGraceSeconds
	}
	return grace
}

// AppliedIndex returns the Raft index of the last command applied (or of
// the restored snapshot); 0 for a new FSM.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.appliedIndex
}

// LastNowMs returns now_ms of the last command applied (or restored): the
// replicated notion of "now", for reads that must not use a local clock.
func (f *FSM) LastNowMs() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.lastNowMs
}
