package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hashicorp/raft-wal/types"
	"go.etcd.io/bbolt"
)

// oldRaftDB writes raft.db as releases before the WAL did: log entries
// first..last (each with its index in its data), a term and a vote.
func oldRaftDB(t *testing.T, raftDir string, first, last uint64) {
	t.Helper()
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db"), BoltOptions: &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := first; i <= last; i += 100 {
		var logs []*raft.Log
		for j := i; j <= min(last, i+99); j++ {
			logs = append(logs, testEntry(j))
		}
		if err := s.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("bravo")); err != nil {
		t.Fatal(err)
	}
}

func testEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 1 + i/1000, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d", i)), AppendedAt: time.Unix(int64(i), 0)}
}

// checkEntries reads first..last from s and compares them with testEntry.
func checkEntries(t *testing.T, s raft.LogStore, first, last uint64) {
	t.Helper()
	if f, _ := s.FirstIndex(); f != first {
		t.Fatalf("first index %d, want %d", f, first)
	}
	if l, _ := s.LastIndex(); l != last {
		t.Fatalf("last index %d, want %d", l, last)
	}
	for i := first; i <= last; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		want := testEntry(i)
		if got.Index != i || got.Term != want.Term || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("entry %d = %+v, want %+v", i, got, want)
		}
	}
}

// A member upgraded from a release that kept its log in raft.db starts
// with the same log, now in the WAL; raft.db keeps the term and vote and
// no longer any entry; a second start moves nothing.
func TestOpenLogStoresMovesBoltLogs(t *testing.T) {
	raftDir := filepath.Join(t.TempDir(), "raft")
	oldRaftDB(t, raftDir, 201, 3456) // a log compacted after a snapshot
	logs, store, guarded, err := openLogStores(raftDir, newDiskGuard(raftDir, ""), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, guarded, 201, 3456)
	if term, err := guarded.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Fatalf("term after the move: %d, %v", term, err)
	}
	if last, _ := store.LastIndex(); last != 0 {
		t.Fatalf("raft.db still holds entries up to %d", last)
	}
	// Raft sees an existing member, not a new one to bootstrap.
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(logs, store, snaps); err != nil || !has {
		t.Fatalf("existing state after the move: %v, %v", has, err)
	}
	// New entries go to the WAL, after the moved ones.
	if err := guarded.StoreLogs([]*raft.Log{testEntry(3457)}); err != nil {
		t.Fatal(err)
	}
	logs.Close()
	store.Close()

	logs, store, guarded, err = openLogStores(raftDir, newDiskGuard(raftDir, ""), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	defer logs.Close()
	checkEntries(t, guarded, 201, 3457)
	if v, err := guarded.Get([]byte("LastVoteCand")); err != nil || string(v) != "bravo" {
		t.Fatalf("vote after restart: %q, %v", v, err)
	}
}

func openTestWAL(t *testing.T, raftDir string) *walLog {
	t.Helper()
	w, err := openWAL(raftDir, hclog.NewNullLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func openTestBolt(t *testing.T, raftDir string) *raftboltdb.BoltStore {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A move interrupted after part of the log reached the WAL (a crash, a
// kill) resumes after the last entry the WAL has; one interrupted after
// all of it did, before raft.db was emptied, only empties raft.db.
func TestMigrateBoltLogsResumes(t *testing.T) {
	for _, done := range []uint64{1500, 3000} {
		t.Run(fmt.Sprint(done), func(t *testing.T) {
			raftDir := filepath.Join(t.TempDir(), "raft")
			oldRaftDB(t, raftDir, 101, 3000)
			w := openTestWAL(t, raftDir)
			var part []*raft.Log
			for i := uint64(101); i <= done; i++ {
				part = append(part, testEntry(i))
			}
			if err := w.StoreLogs(part); err != nil {
				t.Fatal(err)
			}
			b := openTestBolt(t, raftDir)
			defer b.Close()
			defer w.Close()
			moved, err := migrateBoltLogs(b, w)
			if err != nil {
				t.Fatal(err)
			}
			if moved != int(3000-done) {
				t.Fatalf("moved %d entries, want %d", moved, 3000-done)
			}
			checkEntries(t, w, 101, 3000)
			if last, _ := b.LastIndex(); last != 0 {
				t.Fatalf("raft.db still holds entries up to %d", last)
			}
		})
	}
}

// A WAL that does not continue raft.db's entries is refused: the member
// does not start, raft.db keeps its entries and the error says so.
func TestMigrateBoltLogsRefusesMismatch(t *testing.T) {
	raftDir := filepath.Join(t.TempDir(), "raft")
	oldRaftDB(t, raftDir, 1, 500)
	w := openTestWAL(t, raftDir)
	if err := w.StoreLogs([]*raft.Log{testEntry(40), testEntry(41)}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	_, _, _, err := openLogStores(raftDir, newDiskGuard(raftDir, ""), hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "do not line up") || !strings.Contains(err.Error(), "did not start") || !strings.Contains(err.Error(), "mv ") {
		t.Fatalf("open with a WAL that does not line up: %v", err)
	}
	b := openTestBolt(t, raftDir)
	defer b.Close()
	checkEntries(t, b, 1, 500)
}

// A damaged WAL stops the start with the repair to follow.
func TestOpenLogStoresDamagedWAL(t *testing.T) {
	raftDir := filepath.Join(t.TempDir(), "raft")
	w := openTestWAL(t, raftDir)
	if err := w.StoreLogs([]*raft.Log{testEntry(1), testEntry(2)}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := os.WriteFile(filepath.Join(walDir(raftDir), "wal-meta.db"), bytes.Repeat([]byte{0xA5}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := openLogStores(raftDir, newDiskGuard(raftDir, ""), hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), walDir(raftDir)) || !strings.Contains(err.Error(), "mv ") {
		t.Fatalf("open with a damaged WAL meta file: %v", err)
	}
}

// When the WAL cannot create its next segment (a full disk most often;
// here the segment's file name is taken), the append that finds the
// segment sealed fails with the rotation's error and fences the member
// with it, instead of an unexplained "segment sealed".
func TestWALRotationFailureFences(t *testing.T) {
	raftDir := t.TempDir()
	rot := &rotateErrors{}
	w, err := openWALSized(raftDir, 4096, hclog.NewNullLogger(), rot)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	g := newDiskGuard(raftDir, "")
	faults := make(chan *diskFault, 1)
	g.arm(func(f *diskFault) { faults <- f })
	s := &guardedStore{g: g, logPath: walDir(raftDir), tablePath: filepath.Join(raftDir, "raft.db"), log: w, table: raft.NewInmemStore(), rot: rot}
	// The first segment is 0, from index 1: take the name of segment 1,
	// from index 3 (two 3 KiB entries fill a 4 KiB segment).
	big := func(i uint64) []*raft.Log { return []*raft.Log{{Index: i, Term: 1, Data: make([]byte, 3000)}} }
	if err := s.StoreLogs(big(1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(walDir(raftDir), fmt.Sprintf("%020d-%016x.wal", 3, 1)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(big(2)); err != nil {
		t.Fatal(err) // seals segment 1; its rotation fails in the background
	}
	// The next append waits for the rotation, then finds the tail sealed.
	serr := s.StoreLogs(big(3))
	if !errors.Is(serr, syscall.EEXIST) || !strings.Contains(serr.Error(), "no new log segment") {
		t.Fatalf("append after the failed rotation = %v, want the rotation's EEXIST", serr)
	}
	select {
	case f := <-faults:
		if f.Op != "store log entries" || f.Path != walDir(raftDir) || !errors.Is(f.Err, syscall.EEXIST) {
			t.Fatalf("fault %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no fault reported")
	}
}

// A full disk met by a rotation is reported as one.
func TestRotateErrorsExplainSealed(t *testing.T) {
	rot := &rotateErrors{}
	if err := rot.explain(types.ErrSealed); !errors.Is(err, types.ErrSealed) {
		t.Fatalf("sealed without a rotation error = %v", err)
	}
	walLogger{Logger: hclog.NewNullLogger(), rot: rot}.Error("rotate error", "err", &os.PathError{Op: "fallocate", Path: "/d/raft/wal/x.wal", Err: syscall.ENOSPC})
	err := rot.explain(types.ErrSealed)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("sealed after a failed rotation = %v", err)
	}
	if f := describeDiskError("store log entries", "/d/raft/wal", err, false); !strings.HasPrefix(f.What, "data disk full") {
		t.Fatalf("fault %q", f.What)
	}
	if other := errors.New("x"); rot.explain(other) != other {
		t.Fatal("explain changed an unrelated error")
	}
}

// Entries removed from the head of the log (after a snapshot) are gone:
// Raft must send its snapshot to a member that needs them, not entries
// still physically in a segment.
func TestWALHeadTruncationHidesEntries(t *testing.T) {
	raftDir := t.TempDir()
	w := openTestWAL(t, raftDir)
	defer w.Close()
	var logs []*raft.Log
	for i := uint64(1); i <= 100; i++ {
		logs = append(logs, testEntry(i))
	}
	if err := w.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRange(1, 50); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	for _, i := range []uint64{1, 50} {
		if err := w.GetLog(i, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("entry %d after the head up to 50 was deleted: %v, want %v", i, err, raft.ErrLogNotFound)
		}
	}
	if err := w.GetLog(101, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry 101 of 100: %v", err)
	}
	checkEntries(t, w, 51, 100)
}

// walWithAppends writes entries 1..n to a new WAL in raftDir, 16 per
// append, and returns the path of its (only) segment.
func walWithAppends(t *testing.T, raftDir string, n uint64) string {
	t.Helper()
	w := openTestWAL(t, raftDir)
	for i := uint64(1); i <= n; i += 16 {
		var logs []*raft.Log
		for j := i; j < i+16 && j <= n; j++ {
			logs = append(logs, testEntry(j))
		}
		if err := w.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(walDir(raftDir), "*.wal"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	return segs[0]
}

// dataEnd is the offset just past the last non-zero byte of path.
func dataEnd(t *testing.T, path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(bytes.TrimRight(b, "\x00")))
}

// Damage to a WAL segment that is not the torn end of a crash refuses the
// start, naming the segment and the repair, and changes nothing: at its
// start (raft-wal alone would take the segment for empty and drop the
// whole log), inside a frame header (raft-wal alone panics), in the
// middle, and in the file header. A torn last append (what a crash
// leaves) is not damage: the member starts with the entries before it.
func TestWALDamageRefusesStart(t *testing.T) {
	const n = 3000
	cases := []struct {
		name string
		at   func(end int64) int64 // offset of 64 bytes of 0xA5
		torn bool
	}{
		{"start", func(int64) int64 { return 100 }, false},
		{"frame header", func(end int64) int64 { return 50000 }, false},
		{"middle", func(end int64) int64 { return end / 2 }, false},
		{"file header", func(int64) int64 { return 0 }, false},
		{"last append", func(end int64) int64 { return end - 200 }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raftDir := filepath.Join(t.TempDir(), "raft")
			seg := walWithAppends(t, raftDir, n)
			f, err := os.OpenFile(seg, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 64), c.at(dataEnd(t, seg))); err != nil {
				t.Fatal(err)
			}
			f.Close()
			before, _ := os.ReadFile(seg)
			logs, store, guarded, err := openLogStores(raftDir, newDiskGuard(raftDir, ""), hclog.NewNullLogger())
			if c.torn {
				if err != nil {
					t.Fatalf("torn last append: %v", err)
				}
				defer store.Close()
				defer logs.Close()
				last, _ := guarded.LastIndex()
				if last != n-n%16 && last != n-n%16-16 {
					t.Fatalf("after a torn last append the log ends at %d, want the append before it", last)
				}
				checkEntries(t, guarded, 1, last)
				return
			}
			if err == nil {
				logs.Close()
				store.Close()
				t.Fatal("the member opened a damaged WAL")
			}
			for _, want := range []string{walDir(raftDir) + " is damaged", filepath.Base(seg), "mv " + raftDir} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("refusal does not say %q: %v", want, err)
				}
			}
			if after, _ := os.ReadFile(seg); !bytes.Equal(after, before) {
				t.Fatal("the refused start changed the segment")
			}
		})
	}
}

// Damage in an older (sealed) segment refuses the start too.
func TestWALDamageInOlderSegment(t *testing.T) {
	raftDir := filepath.Join(t.TempDir(), "raft")
	w, err := openWALSized(raftDir, 64<<10, hclog.NewNullLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 3000; i += 16 {
		var logs []*raft.Log
		for j := i; j < i+16; j++ {
			logs = append(logs, testEntry(j))
		}
		if err := w.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	segs, _ := filepath.Glob(filepath.Join(walDir(raftDir), "*.wal"))
	if len(segs) < 3 {
		t.Fatalf("segments %v", segs)
	}
	slices.Sort(segs)
	if err := verifyWALSegments(walDir(raftDir)); err != nil {
		t.Fatalf("intact sealed segments: %v", err)
	}
	f, err := os.OpenFile(segs[1], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 16), 20000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, _, err = openLogStores(raftDir, newDiskGuard(raftDir, ""), hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), filepath.Base(segs[1])) {
		t.Fatalf("open with a damaged older segment: %v", err)
	}
}

// A run that stops after an append sealed a full segment but before the
// WAL recorded the seal (its rotation runs in the background; Close skips
// a pending one) left raft-wal answering every later append with "segment
// is sealed", restart after restart. The next start finishes the rotation:
// appends go on, with every entry kept.
func TestWALFinishesInterruptedRotation(t *testing.T) {
	raftDir := t.TempDir()
	big := func(i uint64) []*raft.Log {
		return []*raft.Log{{Index: i, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 3000)}}
	}
	open := func() *walLog {
		t.Helper()
		w, err := openWALSized(raftDir, 4096, hclog.NewNullLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := open()
	if err := w.StoreLogs(big(1)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	metaPath := filepath.Join(walDir(raftDir), "wal-meta.db")
	before, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	w = open()
	if err := w.StoreLogs(big(2)); err != nil { // fills and seals segment 0
		t.Fatal(err)
	}
	if err := w.StoreLogs(big(3)); err != nil { // after the rotation, in segment 1
		t.Fatal(err)
	}
	w.Close()
	// The state of a stop between the seal and its record: the index as
	// before the rotation, no next segment.
	if err := os.WriteFile(metaPath, before, 0o600); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(walDir(raftDir), "*.wal"))
	slices.Sort(segs)
	if len(segs) != 2 {
		t.Fatalf("segments %v", segs)
	}
	if err := os.Remove(segs[1]); err != nil {
		t.Fatal(err)
	}
	w = open()
	if last, _ := w.LastIndex(); last != 2 {
		t.Fatalf("last index %d after the restart, want 2", last)
	}
	for i := uint64(3); i <= 6; i++ {
		if err := w.StoreLogs(big(i)); err != nil {
			t.Fatalf("append %d after the restart: %v", i, err)
		}
	}
	w.Close()
	w = open()
	defer w.Close()
	for i := uint64(1); i <= 6; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil || !bytes.Equal(l.Data, big(i)[0].Data) {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if last, _ := w.LastIndex(); last != 6 {
		t.Fatalf("last index %d, want 6", last)
	}
}

// Raft sees the member's log store (cache, copies, disk guard, WAL) as
// monotonic, so that installing a snapshot clears the log: left with a
// gap before the snapshot's next entry, the WAL would refuse that entry
// and the member would fence itself for a disk fault.
func TestRaftLogChainIsMonotonic(t *testing.T) {
	chain := func(t *testing.T) (raft.LogStore, *diskGuard) {
		raftDir := t.TempDir()
		disk := newDiskGuard(raftDir, "")
		logs, store, guarded, err := openLogStores(raftDir, disk, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logs.Close(); store.Close() })
		cache, err := raft.NewLogCache(logCacheEntries, guarded)
		if err != nil {
			t.Fatal(err)
		}
		c := detachedLogs{cache}
		if err := c.StoreLogs([]*raft.Log{testEntry(1), testEntry(2)}); err != nil {
			t.Fatal(err)
		}
		return c, disk
	}
	c, _ := chain(t)
	if m, ok := c.(raft.MonotonicLogStore); !ok || !m.IsMonotonic() {
		t.Fatal("Raft does not see the WAL's log store as monotonic")
	}
	// Cleared first (what Raft does for a monotonic store), the entry
	// after a snapshot is taken.
	if err := c.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs([]*raft.Log{testEntry(10)}); err != nil {
		t.Fatalf("append after clearing the log: %v", err)
	}
	// Left with a gap, it is refused, and the member fences itself.
	c, disk := chain(t)
	if err := c.StoreLogs([]*raft.Log{testEntry(10)}); err == nil {
		t.Fatal("the WAL took an entry after a gap")
	}
	if disk.current() == nil {
		t.Fatal("no fault after the refused append")
	}
}

// After Raft removes entries from the end of the log (a new leader
// overwrote uncommitted ones), raft-wal seals the segment without writing
// its index; after a restart every entry in it answered "sealed segment has
// no index block". The start writes the index: every entry reads back,
// through any number of restarts, also when a run stopped after writing
// the index but before recording it.
func TestWALIndexesTruncatedSegments(t *testing.T) {
	for _, stopped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stopped=%v", stopped), func(t *testing.T) {
			raftDir := t.TempDir()
			w := openTestWAL(t, raftDir)
			for i := uint64(1); i <= 10; i++ {
				if err := w.StoreLogs([]*raft.Log{testEntry(i)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.DeleteRange(8, 10); err != nil {
				t.Fatal(err)
			}
			var newer []*raft.Log
			for i := uint64(8); i <= 12; i++ {
				e := testEntry(i)
				e.Term = 99 // the new leader's entries
				newer = append(newer, e)
			}
			if err := w.StoreLogs(newer); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if stopped {
				segs, _ := filepath.Glob(filepath.Join(walDir(raftDir), "*.wal"))
				slices.Sort(segs)
				if _, err := writeSegmentIndex(segs[0], 1, 7); err != nil {
					t.Fatal(err)
				}
			}
			for restart := 0; restart < 2; restart++ {
				w := openTestWAL(t, raftDir)
				for i := uint64(1); i <= 7; i++ {
					var l raft.Log
					if err := w.GetLog(i, &l); err != nil || !bytes.Equal(l.Data, testEntry(i).Data) || l.Term != testEntry(i).Term {
						t.Fatalf("restart %d, entry %d: %+v, %v", restart, i, l, err)
					}
				}
				for i := uint64(8); i <= 12; i++ {
					var l raft.Log
					if err := w.GetLog(i, &l); err != nil || l.Term != 99 {
						t.Fatalf("restart %d, entry %d: term %d, %v", restart, i, l.Term, err)
					}
				}
				if last, _ := w.LastIndex(); last != 12 {
					t.Fatalf("last index %d", last)
				}
				w.Close()
			}
			if err := verifyWALSegments(walDir(raftDir)); err != nil {
				t.Fatalf("segments after indexing: %v", err)
			}
		})
	}
}
