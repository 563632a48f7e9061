package fsm

import (
	"fmt"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

// TestOlderGrantsReplayAsWritten: the admission fixes of issue 11 (one seat
// pool across licensing models, the cap on a named user's leases, refusals
// remembered per request id) change what Apply answers. Entries written by
// older builds, before the cluster recorded its vendor trust, must replay
// as those builds answered them, or a member replaying its log would drop
// leases its peers granted. From the entry that adopts the trust on, the
// fixed admission decides.
func TestOlderGrantsReplayAsWritten(t *testing.T) {
	h := newHarness(t)
	h.noAutoSession = true
	legacyForm := formCmd(modeFailover, clusterIDs...)
	legacyForm.GetFormCluster().VendorTrust = nil
	h.res(t0, legacyForm)
	named := feat("cad", 1, 1)
	named.Model = modelNamedUser
	wantCode(t, "enroll N1", h.res(t0, rawEnrollCmd(lic("N1", t0, t0+365*day, named))), fsmpb.Code_OK, "")
	a := h.op(t0, grantAs("alice-1", "cad", 1, "alice", "h1"))
	wantResult(t, a, fsmpb.Code_OK, "")
	h.op(t0, releaseOp(a.Lease.Id))
	wantCode(t, "enroll C2", h.res(t0, rawEnrollCmd(lic("C2", t0, t0+365*day, feat("cad", 2, 1)))), fsmpb.Code_OK, "")
	view := feat("view", 1, 1)
	view.Model = modelNamedUser
	wantCode(t, "enroll V", h.res(t0, rawEnrollCmd(lic("V", t0, t0+365*day, view))), fsmpb.Code_OK, "")
	wantCode(t, "enroll S", h.res(t0, rawEnrollCmd(lic("S", t0, t0+365*day, feat("solo", 1, 1)))), fsmpb.Code_OK, "")

	// Older admission: carol gets the seat the fixed pool would refuse.
	wantResult(t, h.op(t0, grantAs("bob-1", "cad", 1, "bob", "h2")), fsmpb.Code_OK, "")
	wantResult(t, h.op(t0, grantAs("carol-1", "cad", 1, "carol", "h3")), fsmpb.Code_OK, "")
	// Older builds let a tied user hold any number of leases.
	for i := range maxNamedUserLeases + 1 {
		wantResult(t, h.op(t0, grantAs(fmt.Sprint("alice-more-", i), "view", 1, "alice", "h1")), fsmpb.Code_OK, "")
	}
	// Older builds forgot a refusal: the same request id later got a seat.
	held := h.op(t0, grantAs("solo-1", "solo", 1, "u", "h"))
	wantResult(t, held, fsmpb.Code_OK, "")
	wantResult(t, h.op(t0, grantAs("solo-2", "solo", 1, "v", "h")), fsmpb.Code_NO_SEAT, "")
	h.op(t0, releaseOp(held.Lease.Id))
	late := h.op(t0, grantAs("solo-2", "solo", 1, "v", "h"))
	wantResult(t, late, fsmpb.Code_OK, "")
	h.op(t0, releaseOp(late.Lease.Id))

	// The same state, once the trust is adopted, admits by the fixed rules.
	adopt := &fsmpb.Command{Cmd: &fsmpb.Command_AdoptVendorTrust{AdoptVendorTrust: &fsmpb.AdoptVendorTrust{Trust: &fsmpb.VendorTrust{Keys: [][]byte{vendorPub}}}}}
	wantCode(t, "adopt", h.res(t0, adopt), fsmpb.Code_OK, "")
	wantResult(t, h.op(t0, grantAs("dave-1", "cad", 1, "dave", "h4")), fsmpb.Code_NO_SEAT, "no seat left for cad")
	wantResult(t, h.op(t0, grantAs("alice-last", "view", 1, "alice", "h1")), fsmpb.Code_NO_SEAT, "the most one named user may hold at once")
	held = h.op(t0, grantAs("solo-3", "solo", 1, "u", "h"))
	wantResult(t, held, fsmpb.Code_OK, "")
	wantResult(t, h.op(t0, grantAs("solo-4", "solo", 1, "v", "h")), fsmpb.Code_NO_SEAT, "")
	h.op(t0, releaseOp(held.Lease.Id))
	wantResult(t, h.op(t0, grantAs("solo-4", "solo", 1, "v", "h")), fsmpb.Code_NO_SEAT, "")
}
