package fsm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

// TestLicensedVersions: each lease shows the version of the seat it sits
// on, never 0 for "any version", placed as the usage rows count them.
func TestLicensedVersions(t *testing.T) {
	h := v5v3(t) // cad v5 ×2, v3 ×2
	var ids []uint64
	for i, v := range []uint32{0, 5, 4, 0} {
		r := h.op(t0, grantOp(fmt.Sprint("r", i), "cad", v, 1))
		if r.Code != fsmpb.Code_OK {
			t.Fatalf("grant v%d: %v %s", v, r.Code, r.Message)
		}
		ids = append(ids, r.GetLease().GetId())
	}
	got := h.f.LicensedVersions(t0)
	// v5 and v4 take the two v5 seats; the two "any" leases the v3 seats.
	want := map[uint64]uint32{ids[0]: 3, ids[1]: 5, ids[2]: 5, ids[3]: 3}
	for id, v := range want {
		if got[id].Version != v || got[id].Text != "" {
			t.Errorf("lease %d sits on v%d, want v%d (all: %v)", id, got[id].Version, v, got)
		}
	}
	// The rows agree: each version's in-use count is the leases shown there.
	count := map[uint32]uint32{}
	for _, v := range got {
		count[v.Version]++
	}
	for _, u := range h.f.Usage(t0) {
		if u.Feature == "cad" && u.InUse != count[u.Version] {
			t.Errorf("row v%d in use %d, listing shows %d there", u.Version, u.InUse, count[u.Version])
		}
	}
	// A lease whose license went away shows its requested version.
	h.mustEnroll(t0, lic("Z", t0-day, t0+day, feat("zed", 0, 1)))
	r := h.op(t0, grantOp("z", "zed", 0, 1))
	if r.Code != fsmpb.Code_OK {
		t.Fatal(r.Message)
	}
	if v := h.f.LicensedVersions(t0 + 2*day)[r.GetLease().GetId()]; v.Version != 0 || v.Text != "" {
		t.Errorf("orphan lease shows v%d, want its requested v0", v.Version)
	}
}

// TestNeverFitsOnceAllFormat4: a grant for more seats than its feature has
// in all (at its version or above, overdraft included) is refused "can
// never fit" once the log has committed StartHistory (every member on
// format 4), a retry of its request id gets the same answer, and entries
// before StartHistory answer as older builds did ("no seat left").
func TestNeverFitsOnceAllFormat4(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("S", t0, t0+365*day, feat("cad", 2, 3)))
	wantResult(t, h.op(t0+1, grantOp("old", "cad", 0, 4)), fsmpb.Code_NO_SEAT, "no seat left for cad")
	h.apply(t0+2, startHistoryCmd())
	want := "can never fit: 4 seats of cad asked, 3 licensed; ask for at most 3"
	wantResult(t, h.op(t0+3, grantOp("new", "cad", 0, 4)), fsmpb.Code_NO_SEAT, want)
	wantResult(t, h.op(t0+4, grantOp("new", "cad", 0, 4)), fsmpb.Code_NO_SEAT, want)
	wantResult(t, h.op(t0+5, grantOp("v3", "cad", 3, 1)), fsmpb.Code_VERSION_TOO_NEW, "")
	wantResult(t, h.op(t0+6, grantOp("at2", "cad", 2, 4)), fsmpb.Code_NO_SEAT, "can never fit: 4 seats of cad asked, 3 licensed at version 2 or above")
	// Three seats fit in all: busy, not never.
	for i := 0; i < 3; i++ {
		wantResult(t, h.op(t0+7, grantOp(fmt.Sprint("ok", i), "cad", 0, 1)), fsmpb.Code_OK, "")
	}
	r := h.op(t0+8, grantOp("busy", "cad", 0, 1))
	if r.Code != fsmpb.Code_NO_SEAT || strings.HasPrefix(r.Message, NeverFitsPrefix) {
		t.Fatalf("a busy feature: %v %q, want a plain no seat", r.Code, r.Message)
	}
}
