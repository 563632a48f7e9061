package fsm

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

func replaceCmd(old string, m *fsmpb.Member, lics ...*fsmpb.License) *fsmpb.Command {
	var signed []*fsmpb.License
	for _, l := range lics {
		signed = append(signed, signLic(l, vendorPriv))
	}
	return &fsmpb.Command{Cmd: &fsmpb.Command_ReplaceMember{ReplaceMember: &fsmpb.ReplaceMember{OldName: old, Member: m, Licenses: signed}}}
}

// licFor is lic bound to ids.
func licFor(serial string, ids []string, feats ...*fsmpb.Feature) *fsmpb.License {
	l := lic(serial, t0-day, t0+365*day, feats...)
	l.ComputerIds = ids
	return l
}

// A replacement swaps the member in the record, enrolls the license of the
// new set and removes the old set's, in one command; live leases stay; a
// retry of the same replacement changes nothing; refusals change nothing.
func TestReplaceMember(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("OLD-1", t0-day, t0+365*day, feat("cad", 1, 2)))
	lease := h.mustGrant(t0, "req-1", "cad", 1, 1)
	newM := &fsmpb.Member{Name: "member-d", GrpcAddress: "d:4085", RaftAddress: "d:4086", ComputerId: "cid-d"}
	newSet := []string{"cid-a", "cid-c", "cid-d"}
	before := h.f.MarshalSnapshot()
	unchanged := func(what string) {
		t.Helper()
		snap := &fsmpb.Snapshot{}
		proto.Unmarshal(h.f.MarshalSnapshot(), snap)
		old := &fsmpb.Snapshot{}
		proto.Unmarshal(before, old)
		if !proto.Equal(snap.Cluster, old.Cluster) || len(snap.Licenses) != len(old.Licenses) || snap.Licenses[0].Serial != "OLD-1" {
			t.Fatalf("%s changed the state", what)
		}
	}
	now := t0 + minute
	wantCode(t, "license of the old set", h.res(now, replaceCmd("member-b", newM, licFor("NEW-1", clusterIDs, feat("cad", 1, 3)))), fsmpb.Code_BINDING_MISMATCH, "ask the vendor for a license binding the new set")
	unchanged("a license of the old set")
	wantCode(t, "license of another set", h.res(now, replaceCmd("member-b", newM, licFor("NEW-1", []string{"cid-a", "cid-d", "cid-x"}, feat("cad", 1, 3)))), fsmpb.Code_BINDING_MISMATCH, "cid-a, cid-c, cid-d")
	wantCode(t, "unknown old member", h.res(now, replaceCmd("member-x", newM, licFor("NEW-1", newSet, feat("cad", 1, 3)))), fsmpb.Code_NOT_FOUND, "no member member-x")
	dup := proto.Clone(newM).(*fsmpb.Member)
	dup.ComputerId = "cid-a"
	wantCode(t, "computer id of a survivor", h.res(now, replaceCmd("member-b", dup, licFor("NEW-1", []string{"cid-a", "cid-c", "cid-x"}, feat("cad", 1, 3)))), fsmpb.Code_INVALID_ARGUMENT, "already member member-a's")
	dupName := proto.Clone(newM).(*fsmpb.Member)
	dupName.Name = "member-c"
	wantCode(t, "name of a survivor", h.res(now, replaceCmd("member-b", dupName, licFor("NEW-1", newSet, feat("cad", 1, 3)))), fsmpb.Code_INVALID_ARGUMENT, "already used")
	survivor := proto.Clone(h.f.Cluster().Members[2]).(*fsmpb.Member)
	wantCode(t, "a survivor as the replacement", h.res(now, replaceCmd("member-b", survivor, licFor("NEW-1", newSet, feat("cad", 1, 3)))), fsmpb.Code_INVALID_ARGUMENT, "already a member")
	wantCode(t, "no license", h.res(now, replaceCmd("member-b", newM)), fsmpb.Code_INVALID_ARGUMENT, "no license given")
	untrusted := &fsmpb.Command{Cmd: &fsmpb.Command_ReplaceMember{ReplaceMember: &fsmpb.ReplaceMember{OldName: "member-b", Member: newM,
		Licenses: []*fsmpb.License{signLic(licFor("NEW-1", newSet, feat("cad", 1, 3)), otherPriv)}}}}
	wantCode(t, "license of an untrusted vendor", h.res(now, untrusted), fsmpb.Code_SIGNATURE_INVALID, "")
	unchanged("the refusals")

	wantCode(t, "replace", h.res(now, replaceCmd("member-b", newM, licFor("NEW-1", newSet, feat("cad", 1, 3)))), fsmpb.Code_OK, "removed: OLD-1")
	c := h.f.Cluster()
	var names, ids []string
	for _, m := range c.Members {
		names, ids = append(names, m.Name), append(ids, m.ComputerId)
	}
	if got := names; len(got) != 3 || got[0] != "member-a" || got[1] != "member-c" || got[2] != "member-d" || ids[2] != "cid-d" {
		t.Fatalf("members after the replacement: %v %v", names, ids)
	}
	if ls := h.f.Licenses(); len(ls) != 1 || ls[0].Serial != "NEW-1" {
		t.Fatalf("licenses after the replacement: %v", ls)
	}
	if ls := h.f.Leases(); len(ls) != 1 || ls[0].Id != lease.Id {
		t.Fatalf("leases after the replacement: %v, want lease %d", ls, lease.Id)
	}
	h.mustGrant(now, "req-2", "cad", 1, 2) // capacity is the new license's 3
	snap := h.f.MarshalSnapshot()
	wantCode(t, "the same replacement again", h.res(now, replaceCmd("member-b", newM, licFor("NEW-1", newSet, feat("cad", 1, 3)))), fsmpb.Code_OK, "already replaced")
	a, b := &fsmpb.Snapshot{}, &fsmpb.Snapshot{}
	proto.Unmarshal(snap, a)
	proto.Unmarshal(h.f.MarshalSnapshot(), b)
	a.AppliedIndex, b.AppliedIndex, a.LastNowMs, b.LastNowMs, a.AdminSessions, b.AdminSessions = 0, 0, 0, 0, nil, nil
	if !proto.Equal(a, b) {
		t.Fatal("a retried replacement changed the state")
	}
	// A license of the old set is now refused by enroll.
	wantCode(t, "enroll for the old set", h.res(now, enrollCmd(lic("OLD-2", t0-day, t0+365*day, feat("cad", 1, 1)))), fsmpb.Code_BINDING_MISMATCH, "cid-d")
	g := roundTrip(t, h.f)
	if !bytes.Equal(g.MarshalSnapshot(), h.f.MarshalSnapshot()) {
		t.Fatal("snapshot round trip")
	}
}

func TestReplaceMemberNeedsFullSession(t *testing.T) {
	h := formed(t)
	h.noAutoSession = true
	newM := &fsmpb.Member{Name: "member-d", GrpcAddress: "d:4085", RaftAddress: "d:4086", ComputerId: "cid-d"}
	wantCode(t, "no session", h.res(t0, replaceCmd("member-b", newM, licFor("NEW-1", []string{"cid-a", "cid-c", "cid-d"}, feat("cad", 1, 3)))), fsmpb.Code_SESSION_REFUSED, "carries no admin session")
	if h.f.Cluster().Members[1].Name != "member-b" {
		t.Fatal("refused replacement changed the record")
	}
}
