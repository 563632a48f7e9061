package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Idempotent admin writes. RemoveLicense and RecycleNamedUser carry a
// request id chosen once per user action; the first answer is remembered
// and a retry (after a timeout whose attempt had in fact committed) gets
// it back instead of "no such license". The memory is bounded by count and
// age, and pruned in apply order, so it is a function of the log.
const (
	maxAdminRequests     = 1024
	adminRequestMemoryMs = 24 * 60 * 60 * 1000
)

// Kinds of admin request: the Command field numbers of the writes.
const (
	kindRemoveLicense    = 12
	kindRecycleNamedUser = 31
)

// adminRequests holds the records, oldest first.
type adminRequests struct {
	order []*fsmpb.AdminRequestRecord
	byID  map[string]*fsmpb.AdminRequestRecord
}

func newAdminRequests() adminRequests {
	return adminRequests{byID: map[string]*fsmpb.AdminRequestRecord{}}
}

// idempotent runs apply unless requestID was answered before; it returns
// the first answer to a retry. An empty request id (older tools) runs apply
// every time.
func (s *state) idempotent(now int64, requestID string, kind uint32, apply func() *fsmpb.OpResult) *fsmpb.OpResult {
	if requestID == "" {
		return apply()
	}
	a := &s.adminReqs
	if rec, ok := a.byID[requestID]; ok {
		if rec.GetKind() != kind {
			return result(fsmpb.Code_INVALID_ARGUMENT, "request id %q was used for another write: choose a new one per action", requestID)
		}
		return proto.Clone(rec.GetResult()).(*fsmpb.OpResult)
	}
	r := apply()
	a.prune(now)
	rec := &fsmpb.AdminRequestRecord{RequestId: requestID, AtMs: now, Kind: kind, Result: proto.Clone(r).(*fsmpb.OpResult)}
	a.order = append(a.order, rec)
	a.byID[requestID] = rec
	return r
}

// prune drops the oldest records beyond the count bound (keeping room for
// one more) and those older than the age bound.
func (a *adminRequests) prune(now int64) {
	n := 0
	for n < len(a.order) && (len(a.order)-n >= maxAdminRequests || a.order[n].GetAtMs() < now-adminRequestMemoryMs) {
		delete(a.byID, a.order[n].GetRequestId())
		n++
	}
	if n > 0 {
		a.order = append(a.order[:0:0], a.order[n:]...)
	}
}

func (a *adminRequests) toSnapshot(snap *fsmpb.Snapshot) {
	snap.AdminRequests = a.order
}

func adminRequestsFromSnapshot(snap *fsmpb.Snapshot) (adminRequests, error) {
	a := newAdminRequests()
	for _, r := range snap.GetAdminRequests() {
		if r.GetRequestId() == "" {
			return a, fmt.Errorf("fsm: snapshot holds an admin request without an id")
		}
		if _, dup := a.byID[r.GetRequestId()]; dup {
			return a, fmt.Errorf("fsm: snapshot holds admin request %q twice", r.GetRequestId())
		}
		a.order = append(a.order, r)
		a.byID[r.GetRequestId()] = r
	}
	return a, nil
}
