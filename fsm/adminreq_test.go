package fsm

import (
	"strconv"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

func removeReq(serial, reqID string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_RemoveLicense{RemoveLicense: &fsmpb.RemoveLicense{Serial: serial, RequestId: reqID}}}
}

func recycleReq(user, feature, reqID string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_RecycleNamedUser{RecycleNamedUser: &fsmpb.RecycleNamedUser{User: user, Feature: feature, RequestId: reqID}}}
}

// A remove retried after an ambiguous failure (the first attempt had
// committed) gets the first answer, also after a snapshot round trip; a new
// request id for the same serial is a new action.
func TestAdminRemoveLicenseRetried(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, feat("cad", 1, 2)))
	first := h.apply(t0+minute, removeReq("S1", "rm-1")).(*fsmpb.OpResult)
	wantResult(t, first, fsmpb.Code_OK, "")
	wantResult(t, h.apply(t0+2*minute, removeReq("S1", "rm-1")).(*fsmpb.OpResult), fsmpb.Code_OK, first.Message)
	wantResult(t, h.apply(t0+2*minute, removeReq("S1", "rm-2")).(*fsmpb.OpResult), fsmpb.Code_NOT_FOUND, "")
	h.f = roundTrip(t, h.f)
	wantResult(t, h.apply(t0+3*minute, removeReq("S1", "rm-1")).(*fsmpb.OpResult), fsmpb.Code_OK, first.Message)
	// The id of a remove cannot answer a recycle.
	wantResult(t, h.apply(t0+3*minute, recycleReq("bob", "cad", "rm-1")).(*fsmpb.OpResult), fsmpb.Code_INVALID_ARGUMENT, "another write")
}

// A recycle retried after it committed gets "untied", not "holds no named
// seat".
func TestAdminRecycleRetried(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 2)
	f.Model = modelNamedUser
	h.mustEnroll(t0, lic("N1", t0, t0+365*day, f))
	b := h.op(t0, grantAs("b1", "cad", 1, "bob", "h3")).Lease
	h.op(t0+hour, releaseOp(b.Id))
	now := t0 + hour + 31*day
	wantResult(t, h.apply(now, recycleReq("bob", "cad", "rc-1")).(*fsmpb.OpResult), fsmpb.Code_OK, "untied from user bob")
	wantResult(t, h.apply(now+1, recycleReq("bob", "cad", "rc-1")).(*fsmpb.OpResult), fsmpb.Code_OK, "untied from user bob")
	wantResult(t, h.apply(now+1, recycleReq("bob", "cad", "rc-2")).(*fsmpb.OpResult), fsmpb.Code_NOT_FOUND, "holds no named seat")
}

// The memory is bounded in count and in age, and identical on two FSMs fed
// the same log (the determinism test's snapshot comparison).
func TestAdminRequestsBounded(t *testing.T) {
	h := formed(t)
	g := formed(t)
	for i := range maxAdminRequests + 10 {
		h.apply(t0+int64(i), removeReq("none", "id-"+strconv.Itoa(i)))
		g.apply(t0+int64(i), removeReq("none", "id-"+strconv.Itoa(i)))
	}
	if n := len(h.f.s.adminReqs.order); n > maxAdminRequests || len(h.f.s.adminReqs.byID) != n {
		t.Fatalf("%d records (%d by id), want at most %d", n, len(h.f.s.adminReqs.byID), maxAdminRequests)
	}
	if _, ok := h.f.s.adminReqs.byID["id-0"]; ok {
		t.Fatal("the oldest request id is still remembered past the count bound")
	}
	if string(h.f.MarshalSnapshot()) != string(g.f.MarshalSnapshot()) {
		t.Fatal("two FSMs fed the same log differ")
	}
	h.apply(t0+adminRequestMemoryMs+maxAdminRequests+20, removeReq("none", "late"))
	if n := len(h.f.s.adminReqs.order); n != 1 {
		t.Fatalf("%d records a day later, want only the new one", n)
	}
}
