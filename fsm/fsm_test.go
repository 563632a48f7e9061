package fsm

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/triadlm/triad/proto/fsmpb"
)

// step is one command of a table case, with the expected code and a piece
// of the expected message. For a Batch, the first op's result is checked.
type step struct {
	at    int64 // offset from t0
	cmd   *fsmpb.Command
	code  fsmpb.Code
	msg   string
	check func(t *testing.T, r *fsmpb.OpResult)
}

func firstResult(t *testing.T, res any) *fsmpb.OpResult {
	t.Helper()
	switch r := res.(type) {
	case *fsmpb.OpResult:
		return r
	case *fsmpb.BatchResult:
		if len(r.Results) == 0 {
			t.Fatalf("empty batch result")
		}
		return r.Results[0]
	}
	t.Fatalf("unexpected result type %T", res)
	return nil
}

func runSteps(t *testing.T, h *harness, steps []step) {
	t.Helper()
	for i, s := range steps {
		r := firstResult(t, h.apply(t0+s.at, s.cmd))
		if r.Code != s.code || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("step %d: got %v %q, want %v containing %q", i, r.Code, r.Message, s.code, s.msg)
		}
		if s.check != nil {
			s.check(t, r)
		}
		roundTrip(t, h.f)
	}
}

func withMember(cmd *fsmpb.Command, edit func(ms []*fsmpb.Member)) *fsmpb.Command {
	edit(cmd.GetFormCluster().Members)
	return cmd
}

func TestFormCluster(t *testing.T) {
	ok, invalid := fsmpb.Code_OK, fsmpb.Code_INVALID_ARGUMENT
	cases := []struct {
		name  string
		steps []step
	}{
		{"standalone", []step{{cmd: formCmd(modeStandalone, "x"), code: ok}}},
		{"failover", []step{{cmd: formCmd(modeFailover, clusterIDs...), code: ok}}},
		{"twice", []step{
			{cmd: formCmd(modeFailover, clusterIDs...), code: ok},
			{cmd: formCmd(modeStandalone, "x"), code: fsmpb.Code_ALREADY_FORMED, msg: "already formed"},
		}},
		{"standalone with three", []step{{cmd: formCmd(modeStandalone, clusterIDs...), code: invalid, msg: "exactly 1"}}},
		{"failover with one", []step{{cmd: formCmd(modeFailover, "x"), code: invalid, msg: "exactly 3"}}},
		{"failover with two", []step{{cmd: formCmd(modeFailover, "x", "y"), code: invalid, msg: "exactly 3"}}},
		{"failover with four", []step{{cmd: formCmd(modeFailover, "w", "x", "y", "z"), code: invalid, msg: "got 4"}}},
		{"unknown mode", []step{{cmd: formCmd("triple", clusterIDs...), code: invalid, msg: "unknown cluster mode"}}},
		{"duplicate computer id", []step{{cmd: formCmd(modeFailover, "x", "y", "x"), code: invalid, msg: "computer id x"}}},
		{"empty computer id", []step{{cmd: formCmd(modeFailover, "x", "", "z"), code: invalid, msg: "no computer id"}}},
		{"duplicate name", []step{{cmd: withMember(formCmd(modeFailover, clusterIDs...), func(ms []*fsmpb.Member) {
			ms[2].Name = ms[0].Name
		}), code: invalid, msg: "used twice"}}},
		{"empty name", []step{{cmd: withMember(formCmd(modeFailover, clusterIDs...), func(ms []*fsmpb.Member) {
			ms[1].Name = ""
		}), code: invalid, msg: "no name"}}},
		{"refused form can be retried", []step{
			{cmd: formCmd(modeFailover, "x"), code: invalid},
			{cmd: formCmd(modeFailover, clusterIDs...), code: ok},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			runSteps(t, h, c.steps)
		})
	}

	h := newHarness(t)
	if h.f.Cluster() != nil {
		t.Fatalf("Cluster() before formation is not nil")
	}
	h.apply(t0, formCmd(modeFailover, clusterIDs...))
	if c := h.f.Cluster(); c.GetMode() != modeFailover || len(c.Members) != 3 || c.Members[1].ComputerId != "cid-b" {
		t.Fatalf("Cluster() = %v", c)
	}
}

func TestEnrollAndRemoveLicense(t *testing.T) {
	ok := fsmpb.Code_OK
	valid := func(serial string, feats ...*fsmpb.Feature) *fsmpb.License {
		if len(feats) == 0 {
			feats = []*fsmpb.Feature{feat("cad", 5, 2)}
		}
		return lic(serial, t0-day, t0+30*day, feats...)
	}
	edit := func(l *fsmpb.License, f func(*fsmpb.License)) *fsmpb.License { f(l); return l }
	cases := []struct {
		name     string
		unformed bool
		steps    []step
	}{
		{"not formed", true, []step{{cmd: enrollCmd(valid("L1")), code: fsmpb.Code_NOT_FORMED}}},
		{"ok", false, []step{{at: 5, cmd: enrollCmd(valid("L1")), code: ok, check: func(t *testing.T, r *fsmpb.OpResult) {
			if r.License.GetSerial() != "L1" || r.License.EnrolledAtMs != t0+5 || r.License.EnrolledIndex != 3 { // 1 form, 2 open the session
				t.Fatalf("stored license = %v", r.License)
			}
		}}}},
		{"no serial", false, []step{{cmd: enrollCmd(valid("")), code: fsmpb.Code_INVALID_ARGUMENT, msg: "no serial"}}},
		{"no license", false, []step{{cmd: enrollCmd(nil), code: fsmpb.Code_INVALID_ARGUMENT}}},
		{"no features", false, []step{{cmd: enrollCmd(edit(valid("L1"), func(l *fsmpb.License) { l.Features = nil })),
			code: fsmpb.Code_INVALID_ARGUMENT, msg: "grants no features"}}},
		{"feature without name", false, []step{{cmd: enrollCmd(valid("L1", feat("", 1, 1))),
			code: fsmpb.Code_INVALID_ARGUMENT, msg: "no name"}}},
		{"supersedes itself", false, []step{{cmd: enrollCmd(edit(valid("L1"), func(l *fsmpb.License) { l.Supersedes = []string{"L1"} })),
			code: fsmpb.Code_INVALID_ARGUMENT, msg: "supersedes itself"}}},
		{"binding mode", false, []step{{cmd: enrollCmd(edit(valid("L1"), func(l *fsmpb.License) {
			l.BindingMode, l.ComputerIds = modeStandalone, []string{"cid-a"}
		})), code: fsmpb.Code_BINDING_MISMATCH, msg: "bound to a standalone cluster"}}},
		{"binding ids", false, []step{{cmd: enrollCmd(edit(valid("L1"), func(l *fsmpb.License) { l.ComputerIds[2] = "cid-z" })),
			code: fsmpb.Code_BINDING_MISMATCH, msg: "[cid-a, cid-b, cid-z], but this is a failover cluster with computer ids [cid-a, cid-b, cid-c]"}}},
		// No vendor signs a failover license for two computers.
		{"binding ids missing one", false, []step{{cmd: enrollCmd(edit(valid("L1"), func(l *fsmpb.License) { l.ComputerIds = l.ComputerIds[:2] })),
			code: fsmpb.Code_SIGNATURE_INVALID}}},
		{"binding ids in another order", false, []step{{cmd: enrollCmd(edit(valid("L1"), func(l *fsmpb.License) {
			l.ComputerIds = []string{"cid-c", "cid-a", "cid-b"}
		})), code: ok}}},
		{"expired", false, []step{{cmd: enrollCmd(lic("L1", t0-10*day, t0-day, feat("cad", 1, 1))),
			code: fsmpb.Code_LICENSE_EXPIRED, msg: "license L1 expired on 2023-11-13T22:13:20Z"}}},
		{"valid until now", false, []step{{cmd: enrollCmd(lic("L1", t0-10*day, t0, feat("cad", 1, 1))), code: ok}}},
		{"not yet valid is accepted", false, []step{{cmd: enrollCmd(lic("L1", t0+day, t0+10*day, feat("cad", 1, 1))), code: ok}}},
		{"same license twice", false, []step{
			{cmd: enrollCmd(valid("L1")), code: ok},
			{at: 10, cmd: enrollCmd(valid("L1")), code: ok, msg: "already enrolled", check: func(t *testing.T, r *fsmpb.OpResult) {
				if r.License.EnrolledAtMs != t0 || r.License.EnrolledIndex != 3 {
					t.Fatalf("re-enrollment changed the stored license: %v", r.License)
				}
			}},
		}},
		{"same serial, other content", false, []step{
			{cmd: enrollCmd(valid("L1")), code: ok},
			{cmd: enrollCmd(valid("L1", feat("cad", 5, 3))), code: fsmpb.Code_ALREADY_EXISTS, msg: "serial L1"},
		}},
		{"superseded", false, []step{
			{cmd: enrollCmd(edit(valid("L2"), func(l *fsmpb.License) { l.Supersedes = []string{"L1"} })), code: ok},
			{cmd: enrollCmd(valid("L1")), code: fsmpb.Code_SUPERSEDED, msg: "superseded by enrolled license L2"},
			{cmd: removeCmd("L2"), code: ok},
			{cmd: enrollCmd(valid("L1")), code: ok},
		}},
		{"remove", false, []step{
			{cmd: enrollCmd(valid("L1")), code: ok},
			{cmd: removeCmd("L1"), code: ok},
			{cmd: removeCmd("L1"), code: fsmpb.Code_NOT_FOUND, msg: "L1 is not enrolled"},
		}},
		{"remove unknown", false, []step{{cmd: removeCmd("nope"), code: fsmpb.Code_NOT_FOUND}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h *harness
			if c.unformed {
				h = newHarness(t)
			} else {
				h = formed(t)
			}
			runSteps(t, h, c.steps)
		})
	}
}

func TestLicenseStateAndGrace(t *testing.T) {
	h := formed(t)
	cur := lic("CUR", t0-day, t0+day, feat("cad", 1, 1), feat("sim", 1, 1))
	cur.Features[0].GraceSeconds = 600
	old := lic("OLD", t0-day, t0+day, feat("cad", 1, 1))
	old.Features[0].GraceSeconds = 99999
	next := lic("NEXT", t0-day, t0+day, feat("cad", 1, 1))
	next.Supersedes = []string{"OLD"}
	later := lic("LATER", t0+hour, t0+day, feat("cad", 1, 1))
	later.Features[0].GraceSeconds = 1200
	for _, l := range []*fsmpb.License{cur, old, next, later} {
		h.mustEnroll(t0, l)
	}
	for _, c := range []struct {
		serial string
		at     int64
		want   string
	}{
		{"CUR", t0, StateValid},
		{"CUR", t0 + day, StateValid},
		{"CUR", t0 + day + 1, StateExpired},
		{"LATER", t0, StateNotYetValid},
		{"LATER", t0 + hour, StateValid},
		{"OLD", t0, StateSuperseded},
		{"OLD", t0 + 2*day, StateSuperseded},
		{"NOPE", t0, ""},
	} {
		if got := h.f.LicenseState(c.serial, c.at); got != c.want {
			t.Errorf("LicenseState(%s, %d) = %q, want %q", c.serial, c.at-t0, got, c.want)
		}
	}
	if g := h.f.GraceSeconds("cad", t0); g != 600 {
		t.Errorf("grace cad now = %d, want 600 (superseded OLD does not count)", g)
	}
	if g := h.f.GraceSeconds("cad", t0+hour); g != 1200 {
		t.Errorf("grace cad later = %d, want 1200", g)
	}
	if g := h.f.GraceSeconds("sim", t0); g != 7200 {
		t.Errorf("grace sim = %d, want default 7200", g)
	}
	if g := h.f.GraceSeconds("cad", t0+2*day); g != 7200 {
		t.Errorf("grace after expiry = %d, want default 7200", g)
	}
	ls := h.f.Licenses()
	if len(ls) != 4 || ls[0].Serial != "CUR" || ls[1].Serial != "LATER" || ls[2].Serial != "NEXT" || ls[3].Serial != "OLD" {
		t.Fatalf("Licenses() not sorted by serial: %v", ls)
	}
	ls[0].Serial = "mutated"
	if h.f.Licenses()[0].Serial != "CUR" {
		t.Fatalf("Licenses() returned the stored message, not a copy")
	}
}

func TestGrant(t *testing.T) {
	ok := fsmpb.Code_OK
	cad := func(serial string, version, count uint32) *fsmpb.Command {
		return enrollCmd(lic(serial, t0-day, t0+day, feat("cad", version, count)))
	}
	grant := func(req string, version, count uint32) *fsmpb.Command {
		return batchCmd(grantOp(req, "cad", version, count))
	}
	leaseCheck := func(id uint64, ttl int64) func(*testing.T, *fsmpb.OpResult) {
		return func(t *testing.T, r *fsmpb.OpResult) {
			if r.Lease.GetId() != id || r.Lease.TtlMs != ttl {
				t.Fatalf("lease = %v, want id %d ttl %d", r.Lease, id, ttl)
			}
		}
	}
	cases := []struct {
		name     string
		unformed bool
		steps    []step
	}{
		{"ok", false, []step{
			{cmd: cad("L1", 5, 2), code: ok},
			{at: 7, cmd: grant("r1", 5, 1), code: ok, check: func(t *testing.T, r *fsmpb.OpResult) {
				l := r.Lease
				if l.Id != 1 || l.RequestId != "r1" || l.Feature != "cad" || l.Version != 5 || l.Count != 1 ||
					l.User != "alice" || l.Host != "ws1" || l.Pid != 42 || l.ClientId != "client-1" || l.ViaMember != "member-a" ||
					l.GrantedMs != t0+7 || l.RenewedMs != t0+7 || l.ExpiresMs != t0+7+30000 || l.TtlMs != 30000 || l.GrantedIndex != 4 {
					t.Fatalf("lease = %v", l)
				}
			}},
			{cmd: grant("r2", 0, 1), code: ok, check: leaseCheck(2, 30000)},
		}},
		{"no request id", false, []step{{cmd: grant("", 5, 1), code: fsmpb.Code_INVALID_ARGUMENT, msg: "request id"}}},
		{"no feature", false, []step{{cmd: batchCmd(grantOp("r1", "", 0, 1)), code: fsmpb.Code_INVALID_ARGUMENT}}},
		{"not formed", true, []step{{cmd: grant("r1", 5, 1), code: fsmpb.Code_NOT_FORMED}}},
		{"unknown feature", false, []step{
			{cmd: cad("L1", 5, 2), code: ok},
			{cmd: batchCmd(grantOp("r1", "sim", 0, 1)), code: fsmpb.Code_UNKNOWN_FEATURE,
				msg: "unknown feature sim: no enrolled license grants it"},
		}},
		{"version too new", false, []step{
			{cmd: cad("L1", 3, 2), code: ok},
			{cmd: cad("L2", 4, 2), code: ok},
			{cmd: grant("r1", 6, 1), code: fsmpb.Code_VERSION_TOO_NEW,
				msg: "no license for cad at version 6 (highest licensed version is 4)"},
		}},
		{"only license expired", false, []step{
			{cmd: cad("L1", 5, 2), code: ok},
			{at: day + 1, cmd: grant("r1", 1, 1), code: fsmpb.Code_LICENSE_EXPIRED,
				msg: "no valid license for cad: every license granting it is expired, not yet valid or superseded"},
		}},
		{"only license not yet valid", false, []step{
			{cmd: enrollCmd(lic("L1", t0+hour, t0+day, feat("cad", 1, 1))), code: ok},
			{cmd: grant("r1", 1, 1), code: fsmpb.Code_LICENSE_EXPIRED},
			{at: hour, cmd: grant("r2", 1, 1), code: ok},
			// A refused request id stays refused (issue 11 point 7).
			{cmd: grant("r1", 1, 1), code: fsmpb.Code_LICENSE_EXPIRED},
		}},
		{"only license superseded", false, []step{
			{cmd: cad("L1", 5, 2), code: ok},
			{cmd: enrollCmd(func() *fsmpb.License {
				l := lic("L2", t0-day, t0+day, feat("sim", 1, 1))
				l.Supersedes = []string{"L1"}
				return l
			}()), code: ok},
			{cmd: grant("r1", 1, 1), code: fsmpb.Code_LICENSE_EXPIRED},
		}},
		{"expired license with too low version", false, []step{
			{cmd: cad("L1", 9, 2), code: ok},
			{cmd: enrollCmd(lic("L2", t0-day, t0+10*day, feat("cad", 2, 1))), code: ok},
			{at: 2 * day, cmd: grant("r1", 5, 1), code: fsmpb.Code_VERSION_TOO_NEW, msg: "highest licensed version is 2"},
		}},
		{"no seat", false, []step{
			{cmd: cad("L1", 5, 2), code: ok},
			{cmd: grant("r1", 5, 1), code: ok},
			{cmd: grant("r2", 5, 1), code: ok},
			{cmd: grant("r3", 5, 1), code: fsmpb.Code_NO_SEAT, msg: "no seat left for cad v 5 (2 of 2 in use)"},
			{cmd: grant("r4", 2, 1), code: fsmpb.Code_NO_SEAT, msg: "no seat left for cad v 2 (2 of 2 in use)"},
		}},
		{"count too big", false, []step{
			{cmd: cad("L1", 5, 2), code: ok},
			{cmd: grant("r1", 5, 3), code: fsmpb.Code_NO_SEAT, msg: "(0 of 2 in use)"},
			{cmd: grant("r2", 5, 2), code: ok},
		}},
		{"count 0 takes one seat", false, []step{
			{cmd: cad("L1", 5, 1), code: ok},
			{cmd: grant("r1", 5, 0), code: ok, check: func(t *testing.T, r *fsmpb.OpResult) {
				if r.Lease.Count != 1 {
					t.Fatalf("count = %d", r.Lease.Count)
				}
			}},
			{cmd: grant("r2", 5, 0), code: fsmpb.Code_NO_SEAT, msg: "(1 of 1 in use)"},
		}},
		{"ttl", false, []step{
			{cmd: cad("L1", 5, 9), code: ok},
			{cmd: batchCmd(grantTTLOp("r1", "cad", 1, 0)), code: ok, check: leaseCheck(1, 30000)},
			{cmd: batchCmd(grantTTLOp("r2", "cad", 1, 10)), code: ok, check: leaseCheck(2, 1000)},
			{cmd: batchCmd(grantTTLOp("r3", "cad", 1, -5)), code: ok, check: leaseCheck(3, 1000)},
			{cmd: batchCmd(grantTTLOp("r4", "cad", 1, 5*hour)), code: ok, check: leaseCheck(4, hour)},
			{cmd: batchCmd(grantTTLOp("r5", "cad", 1, 12345)), code: ok, check: leaseCheck(5, 12345)},
		}},
		{"retry returns the same lease", false, []step{
			{cmd: cad("L1", 5, 1), code: ok},
			{cmd: grant("r1", 5, 1), code: ok, check: leaseCheck(1, 30000)},
			{at: 5, cmd: grant("r1", 5, 1), code: ok, msg: "already granted", check: leaseCheck(1, 30000)},
			{cmd: grant("r1", 2, 7), code: ok, check: leaseCheck(1, 30000)},
		}},
		{"retry after release", false, []step{
			{cmd: cad("L1", 5, 1), code: ok},
			{cmd: grant("r1", 5, 1), code: ok},
			{cmd: batchCmd(releaseOp(1)), code: ok},
			{cmd: grant("r1", 5, 1), code: fsmpb.Code_NOT_FOUND, msg: "request r1 already produced lease 1, which has ended"},
		}},
		{"retry is answered before the capacity checks", false, []step{
			{cmd: cad("L1", 5, 1), code: ok},
			{cmd: grant("r1", 5, 1), code: ok},
			{cmd: removeCmd("L1"), code: ok},
			{cmd: grant("r1", 5, 1), code: ok, check: leaseCheck(1, 30000)},
			{cmd: grant("r2", 5, 1), code: fsmpb.Code_UNKNOWN_FEATURE},
		}},
		{"removed license keeps live leases", false, []step{
			{cmd: cad("L1", 5, 2), code: ok},
			{cmd: cad("L2", 5, 1), code: ok},
			{cmd: grant("r1", 5, 2), code: ok},
			{cmd: grant("r2", 5, 1), code: ok},
			{cmd: removeCmd("L2"), code: ok},
			{cmd: grant("r3", 5, 1), code: fsmpb.Code_NO_SEAT, msg: "(3 of 2 in use)"},
			{cmd: batchCmd(releaseOp(2)), code: ok},
			{cmd: grant("r4", 5, 1), code: fsmpb.Code_NO_SEAT, msg: "(2 of 2 in use)"},
			{cmd: batchCmd(releaseOp(1)), code: ok},
			{cmd: grant("r5", 5, 1), code: ok},
			{cmd: grant("r3", 5, 1), code: fsmpb.Code_NO_SEAT, msg: "(3 of 2 in use)"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h *harness
			if c.unformed {
				h = newHarness(t)
			} else {
				h = formed(t)
			}
			runSteps(t, h, c.steps)
		})
	}
}

func TestIdempotentGrant(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 5, 3)))
	first := h.mustGrant(t0, "req-1", "cad", 5, 2)
	before := h.f.Usage(t0)
	for i := range 3 {
		again := h.mustGrant(t0+int64(i), "req-1", "cad", 5, 2)
		if again.Id != first.Id || again.GrantedIndex != first.GrantedIndex {
			t.Fatalf("retry %d gave lease %v, want %v", i, again, first)
		}
	}
	// A retry inside the same batch as the original is also the same lease.
	res := h.apply(t0, batchCmd(grantOp("req-2", "cad", 5, 1), grantOp("req-2", "cad", 5, 1))).(*fsmpb.BatchResult)
	if res.Results[0].Lease.GetId() != res.Results[1].Lease.GetId() || res.Results[1].Code != fsmpb.Code_OK {
		t.Fatalf("retry in one batch: %v", res)
	}
	after := h.f.Usage(t0)
	if before[0].InUse != 2 || after[0].InUse != 3 || len(h.f.Leases()) != 2 {
		t.Fatalf("in use before %v after %v, leases %d", before, after, len(h.f.Leases()))
	}
}

func TestRenewRelease(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 5, 3)))
	a := h.mustGrant(t0, "ra", "cad", 5, 1)
	h.op(t0, grantTTLOp("rb", "cad", 5, 5000))

	r := h.op(t0+10*second, renewOp(a.Id, 99, 2))
	if r.Code != fsmpb.Code_OK || len(r.Leases) != 3 {
		t.Fatalf("renew: %v", r)
	}
	if l := r.Leases[0]; l.LeaseId != a.Id || l.Code != fsmpb.Code_OK || l.ExpiresMs != t0+40*second || l.TtlMs != 30000 {
		t.Fatalf("renew a: %v", l)
	}
	if l := r.Leases[1]; l.LeaseId != 99 || l.Code != fsmpb.Code_NOT_FOUND || l.Message != "lease 99 not found: it expired or was released" {
		t.Fatalf("renew 99: %v", l)
	}
	if l := r.Leases[2]; l.ExpiresMs != t0+15*second || l.TtlMs != 5000 {
		t.Fatalf("renew b: %v", l)
	}
	got, ok := h.f.Lease(a.Id)
	if !ok || got.RenewedMs != t0+10*second || got.GrantedMs != t0 || got.ExpiresMs != t0+40*second {
		t.Fatalf("Lease(a) = %v %v", got, ok)
	}

	r = h.op(t0+11*second, releaseOp(a.Id, a.Id))
	if r.Leases[0].Code != fsmpb.Code_OK || r.Leases[1].Code != fsmpb.Code_NOT_FOUND {
		t.Fatalf("release twice: %v", r)
	}
	if _, ok := h.f.Lease(a.Id); ok {
		t.Fatalf("released lease still there")
	}
	if r := h.op(t0, renewOp(a.Id)); r.Leases[0].Code != fsmpb.Code_NOT_FOUND {
		t.Fatalf("renew released: %v", r)
	}
	if u := h.f.Usage(t0); u[0].InUse != 1 {
		t.Fatalf("usage after release: %v", u)
	}
	if r := h.op(t0, &fsmpb.Op{}); r.Code != fsmpb.Code_INVALID_ARGUMENT {
		t.Fatalf("empty op: %v", r)
	}
}

func TestBatchAppliesInOrder(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 5, 1)))
	res := h.apply(t0, batchCmd(
		grantOp("r1", "cad", 5, 1),
		grantOp("r2", "cad", 5, 1),
		releaseOp(1),
		grantOp("r3", "cad", 5, 1),
		renewOp(1, 2),
	)).(*fsmpb.BatchResult)
	want := []fsmpb.Code{fsmpb.Code_OK, fsmpb.Code_NO_SEAT, fsmpb.Code_OK, fsmpb.Code_OK, fsmpb.Code_OK}
	if len(res.Results) != len(want) {
		t.Fatalf("got %d results", len(res.Results))
	}
	for i, w := range want {
		if res.Results[i].Code != w {
			t.Fatalf("op %d: %v %s, want %v", i, res.Results[i].Code, res.Results[i].Message, w)
		}
	}
	if res.Results[3].Lease.Id != 2 {
		t.Fatalf("third grant got lease %d, want 2 (the refused grant takes no id)", res.Results[3].Lease.Id)
	}
	if rl := res.Results[4].Leases; rl[0].Code != fsmpb.Code_NOT_FOUND || rl[1].Code != fsmpb.Code_OK {
		t.Fatalf("renew in batch: %v", rl)
	}
	if empty := h.apply(t0, batchCmd()).(*fsmpb.BatchResult); len(empty.Results) != 0 {
		t.Fatalf("empty batch: %v", empty)
	}
}

func TestExpireLeases(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 5, 9)))
	h.op(t0, grantTTLOp("r1", "cad", 5, 10*second)) // expires t0+10s
	h.op(t0, grantTTLOp("r2", "cad", 5, 5*second))  // expires t0+5s
	h.op(t0, grantTTLOp("r3", "cad", 5, hour))      // expires t0+1h
	if h.f.HasExpired(t0 + 5*second) {
		t.Fatalf("HasExpired at the expiry instant: a lease expires strictly before now")
	}
	if !h.f.HasExpired(t0 + 5*second + 1) {
		t.Fatalf("HasExpired missed lease 2")
	}
	if r := h.apply(t0+5*second, expireCmd()).(*fsmpb.OpResult); len(r.Leases) != 0 || len(h.f.Leases()) != 3 {
		t.Fatalf("ExpireLeases at the expiry instant: %v", r)
	}
	// Renew lease 2 so that lease 1 is now the first to expire.
	h.op(t0+5*second, renewOp(2)) // expires t0+10s
	r := h.apply(t0+10*second+1, expireCmd()).(*fsmpb.OpResult)
	if r.Code != fsmpb.Code_OK || len(r.Leases) != 2 || r.Leases[0].LeaseId != 1 || r.Leases[1].LeaseId != 2 {
		t.Fatalf("expire: %v", r)
	}
	if ls := h.f.Leases(); len(ls) != 1 || ls[0].Id != 3 {
		t.Fatalf("leases after expire: %v", ls)
	}
	if h.f.HasExpired(t0 + 20*second) {
		t.Fatalf("HasExpired with nothing expired")
	}
	if g := h.op(t0+11*second, grantOp("r1", "cad", 5, 1)); g.Code != fsmpb.Code_NOT_FOUND || !strings.Contains(g.Message, "lease 1, which has ended") {
		t.Fatalf("retry of an expired request: %v", g)
	}
	// The request records are forgotten ten minutes after their lease ended.
	ended := t0 + 10*second + 1
	if h.f.HasExpired(ended + 10*minute) {
		t.Fatalf("HasExpired wants to prune a request record at exactly ten minutes")
	}
	if !h.f.HasExpired(ended + 10*minute + 1) {
		t.Fatalf("HasExpired does not report a request record due for pruning")
	}
	h.apply(ended+10*minute+1, expireCmd())
	if g := h.op(ended+10*minute+1, grantOp("r1", "cad", 5, 1)); g.Code != fsmpb.Code_OK || g.Lease.Id != 4 {
		t.Fatalf("request id after pruning: %v", g)
	}
	if g := h.op(ended+10*minute+1, grantOp("r3", "cad", 5, 1)); g.Lease.GetId() != 3 {
		t.Fatalf("record of a live lease was pruned: %v", g)
	}
}

func TestRebaseLeases(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 5, 9)))
	h.op(t0, grantTTLOp("r1", "cad", 5, 10*second))
	h.op(t0+second, grantTTLOp("r2", "cad", 5, 5*second))
	h.op(t0+2*second, renewOp(1))
	r := h.apply(t0+hour, rebaseCmd()).(*fsmpb.OpResult)
	if r.Code != fsmpb.Code_OK {
		t.Fatalf("rebase: %v", r)
	}
	ls := h.f.Leases()
	if ls[0].ExpiresMs != t0+hour+10*second || ls[0].RenewedMs != t0+2*second ||
		ls[1].ExpiresMs != t0+hour+5*second || ls[1].RenewedMs != t0+second {
		t.Fatalf("after rebase: %v", ls)
	}
	if h.f.HasExpired(t0 + hour + 5*second) {
		t.Fatalf("HasExpired after rebase")
	}
	if !h.f.HasExpired(t0 + hour + 5*second + 1) {
		t.Fatalf("HasExpired after rebase misses lease 2")
	}
}

func TestAppliedIndexAndLastNow(t *testing.T) {
	h := formed(t)
	if h.f.AppliedIndex() != 1 || h.f.LastNowMs() != t0 {
		t.Fatalf("AppliedIndex %d LastNowMs %d", h.f.AppliedIndex(), h.f.LastNowMs())
	}
	h.apply(t0+5, expireCmd())
	if h.f.AppliedIndex() != 2 || h.f.LastNowMs() != t0+5 {
		t.Fatalf("AppliedIndex %d LastNowMs %d", h.f.AppliedIndex(), h.f.LastNowMs())
	}
	// Entries that are not commands are not applied.
	if r := h.f.Apply(&raft.Log{Index: 3, Type: raft.LogNoop}); r != nil {
		t.Fatalf("noop entry gave %v", r)
	}
	if h.f.AppliedIndex() != 2 {
		t.Fatalf("AppliedIndex moved on a noop entry")
	}
	g := roundTrip(t, h.f)
	if g.AppliedIndex() != 2 || g.LastNowMs() != t0+5 {
		t.Fatalf("after restore: AppliedIndex %d LastNowMs %d", g.AppliedIndex(), g.LastNowMs())
	}
}
