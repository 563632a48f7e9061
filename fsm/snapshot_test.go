package fsm

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

var update = flag.Bool("update", false, "rewrite testdata/ golden files")

// goldenScenario builds a small state touching every field of the format.
func goldenScenario(t testing.TB) *FSM {
	h := formed(t)
	old := lic("OLD", t0-10*day, t0+10*day, feat("cad", 4, 2))
	cur := lic("CUR", t0-day, t0+365*day, feat("cad", 5, 3), feat("sim", 1, 10))
	cur.Supersedes = []string{"OLD"}
	cur.Features[0].GraceSeconds = 3600
	h.mustEnroll(t0, old)
	h.mustEnroll(t0+1, cur)
	h.mustGrant(t0+2, "req-1", "cad", 5, 1)
	h.mustGrant(t0+3, "req-2", "cad", 3, 2)
	h.mustGrant(t0+4, "req-3", "sim", 0, 1)
	h.op(t0+5, renewOp(1))
	h.op(t0+6, releaseOp(3))
	h.apply(t0+7, rebaseCmd())
	return h.f
}

// TestGoldenSnapshot pins format version 2: the same scenario must keep
// producing these bytes, and a build must keep reading them.
func TestGoldenSnapshot(t *testing.T) {
	path := filepath.Join("testdata", "snapshot-v2.bin")
	got := goldenScenario(t).MarshalSnapshot()
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("snapshot bytes changed from %s; if the format changed on purpose, bump snapshotFormat and add a new golden file", path)
	}
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(want))); err != nil {
		t.Fatalf("restore golden: %v", err)
	}
	if !bytes.Equal(f.MarshalSnapshot(), want) {
		t.Fatalf("golden snapshot does not survive a restore")
	}
	if ls := f.Leases(); len(ls) != 2 || ls[0].Id != 1 || ls[1].Id != 2 || f.LicenseState("OLD", t0) != StateSuperseded {
		t.Fatalf("restored golden state: %v", ls)
	}
	if keys, recorded := f.VendorTrust(); !recorded || len(keys) != 1 || !bytes.Equal(keys[0], vendorPub) {
		t.Fatalf("restored golden vendor trust: %x recorded %v", keys, recorded)
	}
}

// TestGoldenSnapshotV1 loads the snapshot of a build from before vendor
// trust was replicated: the state is all there and no trust is recorded.
// Entries of that build that follow it in the log apply as they did then
// (no session, no signature check in Apply); the leader's one-time
// AdoptVendorTrust records the trust and from then on both are enforced;
// a second adoption is refused.
func TestGoldenSnapshotV1(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "snapshot-v1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(want))); err != nil {
		t.Fatalf("restore golden v1: %v", err)
	}
	if ls := f.Leases(); len(ls) != 2 || ls[0].Id != 1 || ls[1].Id != 2 || f.LicenseState("OLD", t0) != StateSuperseded || len(f.Licenses()) != 2 {
		t.Fatalf("restored v1 state: %v", ls)
	}
	if keys, recorded := f.VendorTrust(); recorded || len(keys) != 0 {
		t.Fatalf("a v1 snapshot has vendor trust %x", keys)
	}
	snap := &fsmpb.Snapshot{}
	if err := proto.Unmarshal(roundTrip(t, f).MarshalSnapshot(), snap); err != nil || snap.FormatVersion != snapshotFormat {
		t.Fatalf("re-written v1 snapshot: format %d, %v", snap.GetFormatVersion(), err)
	}
	h := &harness{t: t, f: f, index: f.AppliedIndex(), noAutoSession: true}
	oldStyle := lic("OLDSTYLE", t0-day, t0+365*day, feat("viz", 1, 1)) // raw as an older build stored it, no session
	wantCode(t, "an older build's enrollment replays", h.res(t0+10, rawEnrollCmd(oldStyle)), fsmpb.Code_OK, "enrolled")
	adopt := &fsmpb.Command{Cmd: &fsmpb.Command_AdoptVendorTrust{AdoptVendorTrust: &fsmpb.AdoptVendorTrust{
		Trust: &fsmpb.VendorTrust{Keys: [][]byte{vendorPub}}}}}
	wantCode(t, "adopt", h.res(t0+11, adopt), fsmpb.Code_OK, "1 key(s)")
	newLic := lic("NEW", t0-day, t0+365*day, feat("viz", 1, 1))
	wantCode(t, "no session after adoption", h.res(t0+12, enrollCmd(newLic)), fsmpb.Code_SESSION_REFUSED, "no admin session")
	h.noAutoSession = false
	wantCode(t, "unsigned after adoption", h.res(t0+12, rawEnrollCmd(lic("NEW", t0-day, t0+365*day, feat("viz", 1, 1)))), fsmpb.Code_SIGNATURE_INVALID, "not a signed license file")
	h.mustEnroll(t0+12, newLic)
	again := &fsmpb.Command{Cmd: &fsmpb.Command_AdoptVendorTrust{AdoptVendorTrust: &fsmpb.AdoptVendorTrust{
		Trust: &fsmpb.VendorTrust{Keys: [][]byte{otherPub}}}}}
	wantCode(t, "adopt twice", h.res(t0+13, again), fsmpb.Code_ALREADY_EXISTS, "already recorded")
	if keys, _ := f.VendorTrust(); len(keys) != 1 || !bytes.Equal(keys[0], vendorPub) {
		t.Fatalf("a second adoption changed the trust: %x", keys)
	}
}

func snapshotBytes(t *testing.T, s *fsmpb.Snapshot) []byte {
	b, err := proto.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// closeTracker records whether Restore closed its reader.
type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	lease := &fsmpb.Lease{Id: 1, Feature: "cad", Count: 1}
	cases := []struct {
		name string
		data []byte
		msg  string
	}{
		{"format 4", snapshotBytes(t, &fsmpb.Snapshot{FormatVersion: newestSnapshotFormat + 1, NextLeaseId: 1}), "format version 4 is not supported"},
		{"trust key too short", snapshotBytes(t, &fsmpb.Snapshot{FormatVersion: 2, NextLeaseId: 1,
			VendorTrust: &fsmpb.VendorTrust{Keys: [][]byte{{1, 2, 3}}}}), "vendor key 1 is 3 bytes"},
		{"trust unsorted", snapshotBytes(t, &fsmpb.Snapshot{FormatVersion: 2, NextLeaseId: 1,
			VendorTrust: &fsmpb.VendorTrust{Keys: [][]byte{bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{1}, 32)}}}), "not sorted"},
		{"format 0", snapshotBytes(t, &fsmpb.Snapshot{NextLeaseId: 1}), "format version 0"},
		{"garbage", []byte{0xff, 0xff, 0xff}, "decoding snapshot"},
		{"lease twice", snapshotBytes(t, &fsmpb.Snapshot{FormatVersion: 1, NextLeaseId: 2, Leases: []*fsmpb.Lease{lease, lease}}), "twice"},
		{"lease id not below next", snapshotBytes(t, &fsmpb.Snapshot{FormatVersion: 1, NextLeaseId: 1, Leases: []*fsmpb.Lease{lease}}), "outside"},
		{"license twice", snapshotBytes(t, &fsmpb.Snapshot{FormatVersion: 1, NextLeaseId: 1,
			Licenses: []*fsmpb.License{{Serial: "A"}, {Serial: "A"}}}), "twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := goldenScenario(t)
			before := f.MarshalSnapshot()
			rc := &closeTracker{Reader: bytes.NewReader(c.data)}
			err := f.Restore(rc)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Restore error %v, want %q", err, c.msg)
			}
			if !rc.closed {
				t.Fatalf("Restore did not close its reader")
			}
			if !bytes.Equal(f.MarshalSnapshot(), before) {
				t.Fatalf("a refused Restore changed the state")
			}
		})
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	failWrite         bool
	closed, cancelled bool
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrite {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) ID() string    { return "mem" }

func TestSnapshotPersist(t *testing.T) {
	f := goldenScenario(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	want := f.MarshalSnapshot()
	// Apply after Snapshot does not change what is persisted.
	f.Apply(commandLog(t, 100, batchCmd(grantOp("late", "sim", 0, 1))))

	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled || !bytes.Equal(sink.Bytes(), want) {
		t.Fatalf("persist: closed %v cancelled %v, bytes equal %v", sink.closed, sink.cancelled, bytes.Equal(sink.Bytes(), want))
	}

	bad := &memSink{failWrite: true}
	if err := snap.Persist(bad); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("persist to a failing sink: %v", err)
	}
	if !bad.cancelled || bad.closed {
		t.Fatalf("failing sink: closed %v cancelled %v", bad.closed, bad.cancelled)
	}
	var _ raft.SnapshotSink = sink
}

func TestReadsReturnCopies(t *testing.T) {
	f := goldenScenario(t)
	before := f.MarshalSnapshot()
	f.Cluster().Members[0].Name = "x"
	f.Licenses()[0].Features[0].Count = 99
	f.Leases()[0].ExpiresMs = 0
	l, _ := f.Lease(1)
	l.Count = 99
	if !bytes.Equal(f.MarshalSnapshot(), before) {
		t.Fatalf("mutating a read result changed the state")
	}
	// Results returned by Apply are copies too.
	r := f.Apply(commandLog(t, 50, batchCmd(grantOp("req-1", "cad", 5, 1)))).(*fsmpb.BatchResult)
	r.Results[0].Lease.Count = 77
	if l, _ := f.Lease(1); l.Count != 1 {
		t.Fatalf("mutating an Apply result changed the state")
	}
}
