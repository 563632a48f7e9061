package fsm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

func pkgFeat(name string, version, count uint32, comps ...string) *fsmpb.Feature {
	f := feat(name, version, count)
	f.Components = comps
	return f
}

func suiteGrant(req, feature, user, host string) *fsmpb.Op {
	op := grantOp(req, feature, 0, 1)
	g := op.GetGrant()
	g.User, g.Host, g.ClientId, g.Secret = user, host, "client-"+user, []byte("s-"+req)
	return op
}

func releaseWithSecret(l *fsmpb.Lease) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{l.Id}, Secrets: [][]byte{l.Secret}}}}
}

func rowsString(rows []FeatureRow) string {
	var out []string
	for _, r := range rows {
		s := fmt.Sprintf("%s v%d %d/%d", r.Feature, r.Version, r.InUse, r.Capacity)
		if r.Package != "" {
			s += " in " + r.Package
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// TestPackageSuite: one package seat serves every component a user and
// host take; components count against the package; the seat is held while
// any lease of the group lives; snapshots rebuild the groups.
func TestPackageSuite(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("P", t0, t0+365*day, pkgFeat("suite", 2, 2, "cad", "cam"), feat("viewer", 1, 1)))
	grant := func(req, feature, user, host string) *fsmpb.OpResult {
		t.Helper()
		return h.op(t0+1, suiteGrant(req, feature, user, host))
	}
	ok := func(req, feature, user, host string) *fsmpb.Lease {
		t.Helper()
		r := grant(req, feature, user, host)
		wantResult(t, r, fsmpb.Code_OK, "")
		return r.Lease
	}
	rows := func(want string) {
		t.Helper()
		if got := rowsString(h.f.FeatureRows(t0 + 2)); got != want {
			t.Fatalf("rows:\n got %s\nwant %s", got, want)
		}
	}
	rows("suite v2 0/2; cad v2 0/2 in suite; cam v2 0/2 in suite; viewer v1 0/1")

	aSuite := ok("a1", "suite", "alice", "h1")
	aCad := ok("a2", "cad", "alice", "h1") // covered by alice's seat
	aCam := ok("a3", "cam", "alice", "h1")
	if aSuite.Package != "suite" || aCad.Package != "suite" {
		t.Fatalf("lease packages %q %q, want suite", aSuite.Package, aCad.Package)
	}
	rows("suite v2 1/2; cad v2 1/2 in suite; cam v2 1/2 in suite; viewer v1 0/1")
	ok("b1", "cam", "bob", "h2") // a component checkout takes a package seat
	rows("suite v2 2/2; cad v2 1/2 in suite; cam v2 2/2 in suite; viewer v1 0/1")
	wantResult(t, grant("c1", "cad", "carol", "h3"), fsmpb.Code_NO_SEAT,
		"no seat left for cad v 0 (a component of package suite) (2 of 2 seats of suite in use)")
	wantResult(t, grant("c2", "suite", "carol", "h3"), fsmpb.Code_NO_SEAT, "no seat left for suite v 0 (2 of 2 seats of suite in use)")
	// Same user on another host is another seat.
	wantResult(t, grant("a4", "cad", "alice", "h9"), fsmpb.Code_NO_SEAT, "")
	wantResult(t, h.op(t0+1, dottedGrant("a5", "cad", 2, "2.1", 1)), fsmpb.Code_VERSION_TOO_NEW,
		"no license for cad (a component of package suite) at version 2.1 (highest licensed version of suite is 2)")
	// Ordinary features are untouched.
	ok("v1", "viewer", "carol", "h3")

	// Alice releases the package lease: her component leases keep the seat.
	if r := h.op(t0+3, releaseWithSecret(aSuite)).Leases[0]; r.Code != fsmpb.Code_OK {
		t.Fatalf("release alice's package lease: %v %s", r.Code, r.Message)
	}
	wantResult(t, grant("c3", "cad", "carol", "h3"), fsmpb.Code_NO_SEAT, "")

	// Snapshot round trip: the groups are rebuilt from the leases.
	g := roundTrip(t, h.f)
	if a, b := rowsString(g.FeatureRows(t0+4)), rowsString(h.f.FeatureRows(t0+4)); a != b {
		t.Fatalf("rows after restore %s, want %s", a, b)
	}
	if !slices.Equal(g.PackageComponents("suite"), []string{"cad", "cam"}) {
		t.Fatalf("components %v", g.PackageComponents("suite"))
	}

	// Alice's last leases go: her seat frees, carol gets it.
	for _, l := range []*fsmpb.Lease{aCad, aCam} {
		if r := h.op(t0+5, releaseWithSecret(l)).Leases[0]; r.Code != fsmpb.Code_OK {
			t.Fatalf("release: %v %s", r.Code, r.Message)
		}
	}
	rows("suite v2 1/2; cad v2 0/2 in suite; cam v2 1/2 in suite; viewer v1 1/1")
	ok("c4", "cad", "carol", "h3")
	rows("suite v2 2/2; cad v2 1/2 in suite; cam v2 1/2 in suite; viewer v1 1/1")

	// Leases without a user or host never share a seat.
	h2 := formed(t)
	h2.mustEnroll(t0, lic("P", t0, t0+365*day, pkgFeat("suite", 1, 2, "cad")))
	for i, want := range []fsmpb.Code{fsmpb.Code_OK, fsmpb.Code_OK, fsmpb.Code_NO_SEAT} {
		wantResult(t, h2.op(t0, suiteGrant(fmt.Sprint("anon-", i), "cad", "", "")), want, "")
	}

	// Borrowing a package or a component is refused.
	b := &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{Grant: suiteGrant("bor", "cad", "dan", "h4").GetGrant(), DurationMs: hour}}}
	wantResult(t, h.op(t0+6, b), fsmpb.Code_BORROW_NOT_ALLOWED, "borrowing a package or its components is not supported")
}

// A count > 1 and a higher version move the group's seats; the capacity
// check sees the whole move.
func TestPackageGroupGrows(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("P", t0, t0+365*day, pkgFeat("suite", 1, 1, "cad"), pkgFeat("suite", 2, 1, "cad")))
	ok := func(op *fsmpb.Op) {
		t.Helper()
		wantResult(t, h.op(t0, op), fsmpb.Code_OK, "")
	}
	ok(suiteGrant("a1", "cad", "alice", "h1")) // v0 seat
	op := suiteGrant("a2", "cad", "alice", "h1")
	op.GetGrant().Version = 2
	ok(op) // the group now needs a v2 seat: still one seat
	op = suiteGrant("b1", "cad", "bob", "h2")
	op.GetGrant().Version = 2
	wantResult(t, h.op(t0, op), fsmpb.Code_NO_SEAT, "(1 of 1 seats of suite in use)") // the v2 seat is alice's
	ok(suiteGrant("b2", "cad", "bob", "h2"))                                          // the v1 seat is free
	op = suiteGrant("a3", "cad", "alice", "h1")
	op.GetGrant().Count = 2
	wantResult(t, h.op(t0, op), fsmpb.Code_NO_SEAT, "") // two seats for alice: none left
	if got := rowsString(h.f.FeatureRows(t0)); got != "suite v1 1/1; suite v2 1/1; cad v2 2/2 in suite" {
		t.Fatalf("rows %s", got)
	}
}

func TestPackagesNeedFormat4(t *testing.T) {
	for _, c := range []struct {
		cmd    *fsmpb.Command
		format uint32
		name   string
	}{
		{enrollCmd(lic("W", t0, t0+day, feat("cad", 2, 1))), 1, "enroll_license"},
		{enrollCmd(lic("P", t0, t0+day, pkgFeat("suite", 1, 1, "cad"))), 4, "enroll_license.components"},
		{&fsmpb.Command{Cmd: &fsmpb.Command_ReplaceMember{ReplaceMember: &fsmpb.ReplaceMember{
			Licenses: []*fsmpb.License{lic("P", t0, t0+day, pkgFeat("suite", 1, 1, "cad"))}}}}, 4, "replace_member.components"},
	} {
		if f, n := FormatOf(c.cmd); f != c.format || n != c.name {
			t.Errorf("FormatOf = %d %q, want %d %q", f, n, c.format, c.name)
		}
	}
}

// TestPackageNoLingerNoQueue: a package's leases share a suite seat, so
// they never linger (the seat frees with the group's last lease) and a
// package or component checkout cannot wait in a queue: it is refused,
// saying so, and remembered like any refusal.
func TestPackageNoLingerNoQueue(t *testing.T) {
	h := formed(t)
	p := pkgFeat("suite", 1, 1, "cad")
	p.LingerSeconds = 600
	h.mustEnroll(t0, lic("P", t0, t0+365*day, p))
	r := h.op(t0+1, suiteGrant("a1", "suite", "alice", "h1"))
	wantResult(t, r, fsmpb.Code_OK, "")
	wantResult(t, h.op(t0+2, releaseWithSecret(r.Lease)), fsmpb.Code_OK, "")
	if l, ok := h.f.Lease(r.Lease.Id); ok {
		t.Fatalf("released package lease still held (lingering %v)", l.Lingering)
	}
	// Bob takes the freed seat: nothing lingered for alice.
	b := h.op(t0+3, suiteGrant("b1", "cad", "bob", "h2"))
	wantResult(t, b, fsmpb.Code_OK, "")
	q := suiteGrant("c1", "cad", "carol", "h3")
	q.GetGrant().QueueWaitMs = 60_000
	wantResult(t, h.op(t0+4, q), fsmpb.Code_NO_SEAT, "a package and its components cannot be waited for in a queue")
	if n := len(h.f.Queue()); n != 0 {
		t.Fatalf("%d waiters after a package checkout asked to queue", n)
	}
	// Refused once, refused forever, even when the seat is free again.
	wantResult(t, h.op(t0+5, releaseWithSecret(b.Lease)), fsmpb.Code_OK, "")
	wantResult(t, h.op(t0+6, q), fsmpb.Code_NO_SEAT, "cannot be waited for in a queue")
}
