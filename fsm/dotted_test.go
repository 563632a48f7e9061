package fsm

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

func dottedFeat(name string, version uint32, text string, count uint32) *fsmpb.Feature {
	f := feat(name, version, count)
	f.VersionText = text
	return f
}

func dottedGrant(req, feature string, version uint32, text string, count uint32) *fsmpb.Op {
	op := grantOp(req, feature, version, count)
	op.GetGrant().VersionText = text
	return op
}

// TestDottedVersionCapacity: versions compare component by component
// (2.1 < 2.9 < 2.10 < 3 == 3.0 < 3.1), a lease at a version sits on seats
// of that version or higher, rows and messages show the licensed text.
func TestDottedVersionCapacity(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("R1", t0, t0+365*day,
		dottedFeat("rhino", 2, "2.1", 2), dottedFeat("rhino", 2, "2.10", 1), feat("rhino", 3, 1),
		dottedFeat("cal", 2024, "2024.06", 1)))
	ok := func(op *fsmpb.Op) *fsmpb.Lease {
		t.Helper()
		r := h.op(t0+1, op)
		wantResult(t, r, fsmpb.Code_OK, "")
		return r.Lease
	}
	l := ok(dottedGrant("a", "rhino", 2, "2.10", 1))
	if l.Version != 2 || l.VersionText != "2.10" {
		t.Fatalf("lease version %d %q, want 2 \"2.10\"", l.Version, l.VersionText)
	}
	ok(dottedGrant("b", "rhino", 3, "3.0", 1)) // 3.0 == 3
	// Seats at 2.9 or higher: 2.10 and 3, both taken.
	wantResult(t, h.op(t0+1, dottedGrant("c", "rhino", 2, "2.9", 1)), fsmpb.Code_NO_SEAT, "no seat left for rhino v2.9 (2 of 2 in use)")
	wantResult(t, h.op(t0+1, dottedGrant("d", "rhino", 3, "3.1", 1)), fsmpb.Code_VERSION_TOO_NEW,
		"no license for rhino at version 3.1 (highest licensed version is 3)")
	ok(dottedGrant("e", "rhino", 2, "2.1", 2))
	wantResult(t, h.op(t0+1, grantOp("f", "rhino", 2, 1)), fsmpb.Code_NO_SEAT, "no seat left for rhino v 2 (4 of 4 in use)")
	ok(dottedGrant("g", "cal", 2024, "2024.6", 1))
	wantResult(t, h.op(t0+1, grantOp("h", "cal", 2025, 1)), fsmpb.Code_VERSION_TOO_NEW, "highest licensed version is 2024.06")

	// Bad versions are refused with what is wrong, whatever the server let through.
	wantResult(t, h.op(t0+1, dottedGrant("i", "rhino", 2, "2.x", 1)), fsmpb.Code_INVALID_ARGUMENT, `checkout of rhino: version "2.x": the minor component "x"`)
	wantResult(t, h.op(t0+1, dottedGrant("j", "rhino", 3, "2.1", 1)), fsmpb.Code_INVALID_ARGUMENT, "does not start with the version field's 3")

	want := []Usage{
		{"cal", 2024, 1, 1, "2024.06"},
		{"rhino", 2, 2, 2, "2.1"}, {"rhino", 2, 1, 1, "2.10"}, {"rhino", 3, 1, 1, ""},
	}
	if got := h.f.Usage(t0 + 2); !slices.Equal(got, want) {
		t.Fatalf("usage:\n got %v\nwant %v", got, want)
	}

	// Releasing the 2.10 lease frees a seat a 2.9 checkout may take.
	h.op(t0+3, &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{l.Id}, Secrets: [][]byte{l.Secret}}}})
	ok(dottedGrant("k", "rhino", 2, "2.9", 1))

	// Snapshot round trip keeps the texts and the accounting.
	g := roundTrip(t, h.f)
	if !slices.Equal(g.Usage(t0+4), h.f.Usage(t0+4)) {
		t.Fatalf("usage after restore:\n%v\nwant\n%v", g.Usage(t0+4), h.f.Usage(t0+4))
	}
	var texts []string
	for _, l := range g.Leases() {
		texts = append(texts, l.VersionText)
	}
	if strings.Join(texts, ",") != "3.0,2.1,2024.6,2.9" {
		t.Fatalf("lease version texts after restore: %q", texts)
	}
	r := g.Apply(commandLog(t, h.index+1, withNow(batchCmd(dottedGrant("l", "rhino", 2, "2.2", 1)), t0+5))).(*fsmpb.BatchResult)
	wantResult(t, r.Results[0], fsmpb.Code_NO_SEAT, "no seat left for rhino v2.2 (2 of 2 in use)")
}

func withNow(c *fsmpb.Command, now int64) *fsmpb.Command { c.NowMs = now; return c }

// A lease whose version no valid license reaches any more shows in a row
// of its own, in the version's shortest form, and raises the alarm.
func TestDottedOrphanRow(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("A", t0, t0+day, dottedFeat("rhino", 2, "2.5", 1)))
	h.mustEnroll(t0, lic("B", t0, t0+365*day, dottedFeat("rhino", 2, "2.1", 1)))
	h.mustGrant(t0, "a", "rhino", 2, 1) // whole 2 == 2.0: sits on 2.1
	r := h.op(t0, dottedGrant("b", "rhino", 2, "2.05", 1))
	wantResult(t, r, fsmpb.Code_OK, "")
	later := t0 + 2*day
	h.op(later, renewOp())
	want := []Usage{{"rhino", 2, 1, 1, "2.1"}, {"rhino", 2, 0, 1, "2.5"}}
	if got := h.f.Usage(later); !slices.Equal(got, want) {
		t.Fatalf("usage after A expired:\n got %v\nwant %v", got, want)
	}
	al := alarmsOf(h, later, AlarmOverCapacity)
	if len(al) != 1 || !strings.Contains(al[0].Message, "over capacity at version 2.5 and above: 1 seats in use, 0 licensed") {
		t.Fatalf("alarms: %+v", al)
	}
}

// Dotted versions need format 4; whole numbers stay format 1. A member of
// format 3 halts on them instead of applying them as version 2.
func TestDottedVersionsNeedFormat4(t *testing.T) {
	whole := grantOp("a", "cad", 2, 1)
	dotted := dottedGrant("b", "cad", 2, "2.1", 1)
	borrow := &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{Grant: dotted.GetGrant(), DurationMs: hour}}}
	for _, c := range []struct {
		cmd    *fsmpb.Command
		format uint32
		name   string
	}{
		{batchCmd(whole), 1, "batch"},
		{batchCmd(whole, dotted), 4, "batch.grant.version_text"},
		{batchCmd(borrow), 4, "batch.borrow.version_text"},
		{enrollCmd(lic("W", t0, t0+day, feat("cad", 2, 1))), 1, "enroll_license"},
		{enrollCmd(lic("D", t0, t0+day, feat("cad", 2, 1), dottedFeat("cad", 2, "2.1", 1))), 4, "enroll_license.version_text"},
		{&fsmpb.Command{Cmd: &fsmpb.Command_ReplaceMember{ReplaceMember: &fsmpb.ReplaceMember{
			Licenses: []*fsmpb.License{lic("D", t0, t0+day, dottedFeat("cad", 2, "2.1", 1))}}}}, 4, "replace_member.version_text"},
	} {
		if f, n := FormatOf(c.cmd); f != c.format || n != c.name {
			t.Errorf("FormatOf(%v) = %d %q, want %d %q", c.cmd, f, n, c.format, c.name)
		}
	}

	// A format-3 member halts on the dotted grant and changes nothing.
	build := func(maxFormat uint32) *FSM {
		h := formed(t)
		h.f.SetMaxFormat(maxFormat)
		h.mustEnroll(t0, lic("L", t0, t0+day, feat("cad", 2, 2)))
		h.mustGrant(t0, "w", "cad", 2, 1)
		before := h.f.MarshalSnapshot()
		h.apply(t0+1, batchCmd(dottedGrant("d", "cad", 1, "1.5", 1)))
		if maxFormat == 3 {
			if hl := h.f.Halted(); hl == nil || !strings.Contains(hl.Reason, "batch.grant.version_text") {
				t.Fatalf("format-3 member: Halted() = %+v", hl)
			}
			if !bytes.Equal(before, h.f.MarshalSnapshot()) {
				t.Fatal("the halted member applied the dotted grant")
			}
		}
		return h.f
	}
	build(3)
	if f := build(0); len(f.Leases()) != 2 {
		t.Fatalf("format-4 member: %d leases, want 2", len(f.Leases()))
	}
}

// Replaying the same dotted log gives the same bytes (determinism).
func TestDottedReplayDeterministic(t *testing.T) {
	run := func() *FSM {
		h := formed(t)
		h.mustEnroll(t0, lic("R", t0, t0+365*day, dottedFeat("rhino", 2, "2.1", 3), dottedFeat("rhino", 5, "5.3.1", 1)))
		h.mustGrant(t0+1, "a", "rhino", 2, 1)
		h.op(t0+2, dottedGrant("b", "rhino", 5, "5.3", 1))
		h.op(t0+3, dottedGrant("c", "rhino", 5, "5.3.1", 1))
		return h.f
	}
	a, b := run(), run()
	if !bytes.Equal(a.MarshalSnapshot(), b.MarshalSnapshot()) {
		t.Fatal("two replays of one dotted log differ")
	}
	ls := a.Leases()
	if len(ls) != 2 || ls[1].VersionText != "5.3" || !proto.Equal(ls[1], b.Leases()[1]) {
		t.Fatalf("leases: %v", ls)
	}
}
