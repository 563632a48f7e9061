package fsm

import (
	"container/heap"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/triadlm/triad/proto/fsmpb"
)

// snapshotFormat is the fsmpb.Snapshot format_version this code writes.
// Bump it (and keep a golden file under testdata/) whenever the meaning of
// the stored state changes. It reads every format from oldestSnapshotFormat.
// 2: vendor trust is replicated (a format-1 snapshot has none recorded, and
// an older build must not load a snapshot whose trust it would drop).
// 3: the state holds something that an older build would drop or
// misread: idle-timeout or linger data (idlelinger.go), queued checkouts
// (queue.go), a usage trace setting (trace.go) or usage history
// (history.go). Written only then, so other snapshots keep format 2 and
// their bytes.
const (
	snapshotFormat           = 2
	idleLingerSnapshotFormat = 3
	newestSnapshotFormat     = idleLingerSnapshotFormat
	oldestSnapshotFormat     = 1
)

// state is everything the FSM knows. The first block is the replicated
// state (exactly what a snapshot holds); the second is derived from it and
// rebuilt by Restore.
type state struct {
	cluster  *fsmpb.FormCluster
	licenses map[string]*fsmpb.License
	leases   map[uint64]*lease
	requests requestTable
	// denied holds the messages of the refusals among requests (see
	// requestRecord).
	denied      map[requestKey]string
	nextLeaseID uint64
	lastNowMs   int64
	// admin holds sessions, password hashes and settings (sessions.go).
	admin adminState
	// model holds named seats, access rules, committed license states and
	// countdown use (model.go).
	model modelState
	// trust is the set of trusted vendor keys (trust.go); nil when never
	// recorded (a cluster formed before trust was replicated).
	trust *fsmpb.VendorTrust
	// adminReqs remembers the answers to admin writes' request ids
	// (adminreq.go).
	adminReqs adminRequests
	// queue holds the queued checkouts (queue.go).
	queue queueState
	// trace says which lease events members log (trace.go); nil when
	// nothing is traced.
	trace *fsmpb.TraceSettings
	// hist is the usage history (history.go); nil until StartHistory.
	hist *history

	// observing is set while a lease observer listens; events collects
	// the lease events of the command being applied (trace.go).
	observing bool
	events    []LeaseEvent
	// quiet is set while applying an entry whose answers nobody reads
	// (FSM.AnswerProposedOnly): grants answer without a copy of the lease.
	quiet bool
	// serials is the sorted key set of licenses.
	serials []string
	// supersededBy counts, per serial, the supersedes entries of enrolled
	// licenses naming it; > 0 means superseded.
	supersededBy map[string]int
	// inUse holds, per feature, the seats held by live leases by requested
	// version.
	inUse map[string]*featureUse
	// expiry orders live leases by expires_ms, for HasExpired and
	// ExpireLeases.
	expiry expiryHeap
	// endedRequests counts request records whose lease has ended;
	// minEndedMs is the smallest ended_ms among them (exact: records only
	// leave through pruning, which recomputes it).
	endedRequests int
	minEndedMs    int64
	// suites groups the live leases of a package by user and host: each
	// group holds one package seat (packages.go). Derived from the leases.
	suites map[suiteKey]*suiteGroup
	// idl indexes idle and lingering leases (idlelinger.go).
	idl idleState
	// strs shares the strings that leases repeat (lease.go).
	strs interner
	// fidx indexes the licenses' entries by feature (featindex.go); nil
	// after a license is added or removed.
	fidx atomic.Pointer[featureIndex]
}

func newState() *state {
	return &state{
		licenses:     map[string]*fsmpb.License{},
		leases:       map[uint64]*lease{},
		requests:     newRequestTable(),
		denied:       map[requestKey]string{},
		nextLeaseID:  1,
		supersededBy: map[string]int{},
		inUse:        map[string]*featureUse{},
		admin:        newAdminState(),
		model:        newModelState(),
		adminReqs:    newAdminRequests(),
		suites:       map[suiteKey]*suiteGroup{},
		idl:          newIdleState(),
		queue:        newQueueState(),
	}
}

// toSnapshot returns the state as a Snapshot message, every list sorted by
// its key. The message shares pointers with the state: marshal it under the
// lock and drop it.
func (s *state) toSnapshot() *fsmpb.Snapshot {
	snap := &fsmpb.Snapshot{
		FormatVersion: s.snapshotFormatNeeded(),
		Cluster:       s.cluster,
		NextLeaseId:   s.nextLeaseID,
		LastNowMs:     s.lastNowMs,
	}
	snap.Licenses = make([]*fsmpb.License, 0, len(s.serials))
	for _, serial := range s.serials {
		snap.Licenses = append(snap.Licenses, s.licenses[serial])
	}
	snap.Leases = make([]*fsmpb.Lease, 0, len(s.leases))
	for _, id := range s.sortedLeaseIDs() {
		snap.Leases = append(snap.Leases, s.leases[id].toProto())
	}
	snap.Requests = make([]*fsmpb.RequestRecord, 0, s.requests.len())
	for k, rec := range s.requests.all() {
		snap.Requests = append(snap.Requests, rec.toProto(k, s.denied[k]))
	}
	slices.SortFunc(snap.Requests, func(a, b *fsmpb.RequestRecord) int {
		return requestKey{a.ClientId, a.RequestId}.less(requestKey{b.ClientId, b.RequestId})
	})
	s.admin.toSnapshot(snap)
	// Written only when no license implies it (see fsm.proto).
	snap.Activated = s.admin.activated && len(s.serials) == 0
	s.model.toSnapshot(snap)
	snap.VendorTrust = s.trust
	s.adminReqs.toSnapshot(snap)
	s.queueToSnapshot(snap)
	if len(snap.Queue) > 0 {
		snap.FormatVersion = newestSnapshotFormat
	}
	if s.trace != nil {
		snap.FormatVersion = newestSnapshotFormat
		snap.Trace = s.trace
	}
	if s.hist != nil {
		snap.FormatVersion = newestSnapshotFormat
		snap.History = s.hist.toSnapshot()
	}
	return snap
}

func (s *state) sortedLeaseIDs() []uint64 {
	ids := make([]uint64, 0, len(s.leases))
	for id := range s.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// stateFromSnapshot builds a state, derived indexes included, from a
// decoded snapshot. It takes ownership of snap.
func stateFromSnapshot(snap *fsmpb.Snapshot) (*state, error) {
	if v := snap.GetFormatVersion(); v < oldestSnapshotFormat || v > newestSnapshotFormat {
		return nil, fmt.Errorf("fsm: snapshot format version %d is not supported (this build reads versions %d to %d)", v, oldestSnapshotFormat, newestSnapshotFormat)
	}
	s := newState()
	var err error
	if s.trust, err = trustFromSnapshot(snap); err != nil {
		return nil, err
	}
	s.cluster = snap.Cluster
	s.nextLeaseID = snap.NextLeaseId
	s.lastNowMs = snap.LastNowMs
	admin, err := adminFromSnapshot(snap)
	if err != nil {
		return nil, err
	}
	s.admin = admin
	if s.model, err = modelFromSnapshot(snap); err != nil {
		return nil, err
	}
	if s.adminReqs, err = adminRequestsFromSnapshot(snap); err != nil {
		return nil, err
	}
	if s.queue, err = queueFromSnapshot(snap); err != nil {
		return nil, err
	}
	if s.trace, err = traceFromSnapshot(snap); err != nil {
		return nil, err
	}
	s.hist = historyFromSnapshot(snap.History)
	for _, l := range snap.Licenses {
		if l.GetSerial() == "" {
			return nil, fmt.Errorf("fsm: snapshot holds a license without a serial")
		}
		if _, dup := s.licenses[l.Serial]; dup {
			return nil, fmt.Errorf("fsm: snapshot holds license %s twice", l.Serial)
		}
		s.addLicense(l)
	}
	// A snapshot holding a license is activated, whatever the flag says:
	// the flag is written only when no license implies it (fsm.proto).
	s.admin.activated = snap.GetActivated() || len(s.serials) > 0
	for _, m := range snap.Leases {
		if m.GetId() == 0 || m.Id >= s.nextLeaseID {
			return nil, fmt.Errorf("fsm: snapshot holds lease %d outside [1, next lease id %d)", m.GetId(), s.nextLeaseID)
		}
		if _, dup := s.leases[m.Id]; dup {
			return nil, fmt.Errorf("fsm: snapshot holds lease %d twice", m.Id)
		}
		l := leaseFromProto(m, &s.strs)
		s.leases[l.Id] = l
		s.expiry = append(s.expiry, l)
		s.addLeaseUse(l)
		s.indexLease(l)
	}
	for i, e := range s.expiry {
		e.heapIdx = int32(i)
	}
	s.rebuildRuleIndex()
	heap.Init(&s.expiry)
	for _, r := range snap.Requests {
		k := requestKey{client: r.GetClientId(), request: r.GetRequestId()}
		if _, dup := s.requests.get(k); dup {
			return nil, fmt.Errorf("fsm: snapshot holds request %q of client %q twice", r.GetRequestId(), r.GetClientId())
		}
		s.requests.set(k, requestRecord{LeaseId: r.GetLeaseId(), EndedMs: r.GetEndedMs(), DeniedCode: r.GetDeniedCode(),
			IdleTimeout: r.GetIdleTimeout()})
		s.setDenied(k, r.GetDeniedMessage())
		if _, live := s.leases[r.LeaseId]; !live {
			s.noteEnded(r.EndedMs)
			if r.IdleTimeout && r.LeaseId != 0 {
				s.idl.idleEnded[r.LeaseId] = k
			}
		}
	}
	return s, nil
}

// addLicense stores l (already checked) and updates the derived indexes.
func (s *state) addLicense(l *fsmpb.License) {
	s.licenses[l.Serial] = l
	s.fidx.Store(nil)
	i, _ := slices.BinarySearch(s.serials, l.Serial)
	s.serials = slices.Insert(s.serials, i, l.Serial)
	for _, sup := range l.Supersedes {
		s.supersededBy[sup]++
	}
}

func (s *state) deleteLicense(serial string) {
	l := s.licenses[serial]
	delete(s.licenses, serial)
	s.fidx.Store(nil)
	if i, ok := slices.BinarySearch(s.serials, serial); ok {
		s.serials = slices.Delete(s.serials, i, i+1)
	}
	for _, sup := range l.Supersedes {
		if s.supersededBy[sup]--; s.supersededBy[sup] <= 0 {
			delete(s.supersededBy, sup)
		}
	}
}

func (s *state) noteEnded(endedMs int64) {
	if s.endedRequests == 0 || endedMs < s.minEndedMs {
		s.minEndedMs = endedMs
	}
	s.endedRequests++
}

func sortedSet(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

func formatSet(ids []string) string {
	return "[" + strings.Join(ids, ", ") + "]"
}
