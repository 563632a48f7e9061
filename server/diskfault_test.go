package server

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

func TestDescribeDiskError(t *testing.T) {
	for _, c := range []struct {
		err        error
		what, fix  string
		notAtStart string
	}{
		{&os.PathError{Op: "write", Path: "/d/raft/raft.db", Err: syscall.ENOSPC}, "data disk full", "free space", "restart this member"},
		{&os.PathError{Op: "write", Path: "/d/raft/raft.db", Err: syscall.EDQUOT}, "data disk full", "free space", "restart this member"},
		{&os.PathError{Op: "sync", Path: "/d/raft/raft.db", Err: syscall.EIO}, "data disk I/O error", "check the disk", "restart this member"},
		{&os.PathError{Op: "open", Path: "/d/raft/raft.db", Err: syscall.EROFS}, "data disk read-only", "writable", "restart this member"},
		{errors.New("something else"), "data disk write failed", "permissions", "restart this member"},
	} {
		f := describeDiskError("store log entries", "/d/raft/raft.db", c.err, false)
		if !strings.HasPrefix(f.What, c.what) || !strings.Contains(f.What, "/d/raft/raft.db") || !strings.Contains(f.What, c.err.Error()) {
			t.Errorf("%v: what = %q, want %q naming the file and the error", c.err, f.What, c.what)
		}
		if !strings.Contains(f.Fix, c.fix) || !strings.Contains(f.Fix, c.notAtStart) {
			t.Errorf("%v: fix = %q, want %q and %q", c.err, f.Fix, c.fix, c.notAtStart)
		}
		if s := describeDiskError("write", "/d/raft/x", c.err, true).Fix; strings.Contains(s, c.notAtStart) || !strings.Contains(s, "start this member again") {
			t.Errorf("%v at start: fix = %q", c.err, s)
		}
	}
}

// countingStore counts the writes that reach the real store.
type countingStore struct {
	*raft.InmemStore
	writes atomic.Int64
}

func (c *countingStore) StoreLogs(l []*raft.Log) error {
	c.writes.Add(1)
	return c.InmemStore.StoreLogs(l)
}

func (c *countingStore) SetUint64(k []byte, v uint64) error {
	c.writes.Add(1)
	return c.InmemStore.SetUint64(k, v)
}

func TestDiskGuardInjectsAndFencesForGood(t *testing.T) {
	dir := t.TempDir()
	faultFile := filepath.Join(dir, "fault")
	g := newDiskGuard(dir, faultFile)
	faults := make(chan *diskFault, 4)
	g.arm(func(f *diskFault) { faults <- f })
	inner := &countingStore{InmemStore: raft.NewInmemStore()}
	s := &guardedStore{g: g, logPath: filepath.Join(dir, "wal"), tablePath: filepath.Join(dir, "raft.db"), log: inner, table: inner}
	entry := func(i uint64) []*raft.Log { return []*raft.Log{{Index: i, Term: 1}} }

	if err := s.StoreLogs(entry(1)); err != nil || g.current() != nil {
		t.Fatalf("healthy write: %v, fault %v", err, g.current())
	}
	if err := os.WriteFile(faultFile, []byte("enospc"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.StoreLogs(entry(2))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write with the fault file = %v, want ENOSPC", err)
	}
	select {
	case f := <-faults:
		if !strings.HasPrefix(f.What, "data disk full") || f.Op != "store log entries" {
			t.Fatalf("fault %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("onFault was not called")
	}
	// Fenced until the process ends: the fault file going away does not
	// lift it, and no later write reaches the disk.
	os.Remove(faultFile)
	before := inner.writes.Load()
	if err := s.StoreLogs(entry(3)); err == nil || !strings.Contains(err.Error(), "fenced") {
		t.Fatalf("write after the fault = %v, want a fenced refusal", err)
	}
	if err := s.DeleteRange(1, 1); err == nil {
		t.Fatal("delete after the fault succeeded")
	}
	if n := inner.writes.Load(); n != before {
		t.Fatalf("%d writes reached the store after the fault", n-before)
	}
	// A second failure does not call onFault again.
	g.report("x", "y", syscall.EIO)
	select {
	case f := <-faults:
		t.Fatalf("onFault called twice (%+v)", f)
	default:
	}
	// Raft panics when it cannot persist its term: a stable-store write of
	// a fenced member never returns (it parks).
	done := make(chan error, 1)
	go func() { done <- s.SetUint64([]byte("CurrentTerm"), 7) }()
	select {
	case err := <-done:
		t.Fatalf("a fenced stable-store write returned (%v); Raft would panic on an error", err)
	case <-time.After(300 * time.Millisecond):
	}
	if inner.writes.Load() != before {
		t.Fatal("the fenced stable-store write reached the store")
	}
}

func TestDiskGuardBeforeArmReturnsStableErrors(t *testing.T) {
	dir := t.TempDir()
	faultFile := filepath.Join(dir, "fault")
	if err := os.WriteFile(faultFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	g := newDiskGuard(dir, faultFile)
	inner := &countingStore{InmemStore: raft.NewInmemStore()}
	s := &guardedStore{g: g, logPath: filepath.Join(dir, "wal"), tablePath: filepath.Join(dir, "raft.db"), log: inner, table: inner}
	if err := s.SetUint64([]byte("CurrentTerm"), 1); !errors.Is(err, syscall.EIO) {
		t.Fatalf("stable write while Raft starts = %v, want the EIO error", err)
	}
	// Arming afterwards acts on the fault recorded meanwhile.
	called := make(chan *diskFault, 1)
	g.arm(func(f *diskFault) { called <- f })
	select {
	case f := <-called:
		if !strings.HasPrefix(f.What, "data disk I/O error") {
			t.Fatalf("fault %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("arm did not act on the earlier fault")
	}
}

func TestGuardedSnapshotsReportSinkFailures(t *testing.T) {
	dir := t.TempDir()
	faultFile := filepath.Join(dir, "fault")
	inner, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	g := newDiskGuard(dir, faultFile)
	s := &guardedSnapshots{g: g, dir: filepath.Join(dir, "snapshots"), inner: inner}
	_, trans := raft.NewInmemTransport("")
	sink, err := s.Create(raft.SnapshotVersionMax, 10, 1, raft.Configuration{}, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(faultFile, []byte("eio"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with the fault = %v", err)
	}
	f := g.current()
	if f == nil || f.Op != "write snapshot" || !strings.Contains(f.Path, sink.ID()) {
		t.Fatalf("fault %+v", f)
	}
	if _, err := s.Create(raft.SnapshotVersionMax, 11, 1, raft.Configuration{}, 1, trans); err == nil {
		t.Fatal("a fenced member created a snapshot")
	}
	if list, _ := inner.List(); len(list) != 0 {
		t.Fatalf("the failed snapshot was kept: %v", list)
	}
}

func TestProbeWrite(t *testing.T) {
	dir := t.TempDir()
	faultFile := filepath.Join(dir, "fault")
	g := newDiskGuard(dir, faultFile)
	if err := probeWrite(dir, g); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".write-probe")); !os.IsNotExist(err) {
		t.Fatalf("the probe file was left behind: %v", err)
	}
	os.WriteFile(faultFile, []byte("enospc"), 0o600)
	err := probeWrite(dir, g)
	if err == nil || !strings.Contains(err.Error(), "data disk full") || !strings.Contains(err.Error(), "did not start") || !strings.Contains(err.Error(), "start this member again") {
		t.Fatalf("probe on a full disk: %v", err)
	}
}

// makeSnapshots writes n snapshots with a FileSnapshotStore and returns
// their directories, oldest first.
func makeSnapshots(t *testing.T, raftDir string, n int) []string {
	store, err := raft.NewFileSnapshotStoreWithLogger(raftDir, n, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("")
	var dirs []string
	for i := 0; i < n; i++ {
		sink, err := store.Create(raft.SnapshotVersionMax, uint64(10*(i+1)), 1, raft.Configuration{}, 1, trans)
		if err != nil {
			t.Fatal(err)
		}
		sink.Write(bytes.Repeat([]byte{byte(i)}, 1000))
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, filepath.Join(raftDir, "snapshots", sink.ID()))
	}
	return dirs
}

func TestVerifySnapshots(t *testing.T) {
	raftDir := t.TempDir()
	if err := verifySnapshots(raftDir); err != nil {
		t.Fatalf("no snapshots: %v", err)
	}
	dirs := makeSnapshots(t, raftDir, 2)
	// An unfinished snapshot (a crash while writing it) is ignored, as Raft does.
	os.MkdirAll(filepath.Join(raftDir, "snapshots", "1-99-1.tmp"), 0o700)
	if err := verifySnapshots(raftDir); err != nil {
		t.Fatalf("good snapshots: %v", err)
	}
	state := filepath.Join(dirs[1], "state.bin")
	b, _ := os.ReadFile(state)
	b[500] ^= 1
	os.WriteFile(state, b, 0o600)
	err := verifySnapshots(raftDir)
	if err == nil || !strings.Contains(err.Error(), dirs[1]+" is damaged") || !strings.Contains(err.Error(), "does not match the checksum") ||
		!strings.Contains(err.Error(), "mv "+raftDir+" "+raftDir+".damaged") {
		t.Fatalf("flipped bit in the newest snapshot: %v", err)
	}
	b[500] ^= 1
	os.WriteFile(state, b, 0o600)
	os.WriteFile(filepath.Join(dirs[0], "meta.json"), []byte("{not json"), 0o600)
	if err := verifySnapshots(raftDir); err == nil || !strings.Contains(err.Error(), dirs[0]) || !strings.Contains(err.Error(), "meta.json") {
		t.Fatalf("broken meta.json (which Raft would skip silently): %v", err)
	}
	os.Remove(filepath.Join(dirs[0], "meta.json"))
	if err := verifySnapshots(raftDir); err == nil || !strings.Contains(err.Error(), dirs[0]) {
		t.Fatalf("missing meta.json: %v", err)
	}
}

func makeBolt(t *testing.T, path string) {
	s, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		var logs []*raft.Log
		for j := 1; j <= 100; j++ {
			logs = append(logs, &raft.Log{Index: uint64(100*i + j), Term: 1, Data: make([]byte, 200)})
		}
		if err := s.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	s.SetUint64([]byte("CurrentTerm"), 1)
	s.Close()
}

func overwrite(t *testing.T, path string, off int64, n int) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, n), off); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyBolt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "raft.db")
	if err := verifyBolt(path); err != nil {
		t.Fatalf("no raft.db yet: %v", err)
	}
	makeBolt(t, path)
	if err := verifyBolt(path); err != nil {
		t.Fatalf("good raft.db: %v", err)
	}
	sum := func() []byte { b, _ := os.ReadFile(path); return b }
	// Broken pages in the middle: bbolt itself would panic while opening
	// for writing (in a goroutine of its own for some damage).
	before := sum()
	overwrite(t, path, 64<<10, 8192)
	damaged := sum()
	err := verifyBolt(path)
	if !errors.Is(err, errDamaged) {
		t.Fatalf("broken pages: %v, want errDamaged", err)
	}
	if msg := boltOpenError(path, err).Error(); !strings.Contains(msg, path+" is damaged") || !strings.Contains(msg, "never deletes") {
		t.Fatalf("message: %s", msg)
	}
	if !bytes.Equal(sum(), damaged) || bytes.Equal(before, damaged) {
		t.Fatal("verifyBolt changed the file")
	}
	// Broken meta pages: bbolt's own error.
	makeBolt(t, filepath.Join(dir, "b.db"))
	overwrite(t, filepath.Join(dir, "b.db"), 0, 8192)
	err = verifyBolt(filepath.Join(dir, "b.db"))
	if err == nil {
		t.Fatal("broken meta pages passed")
	}
	if msg := boltOpenError(filepath.Join(dir, "b.db"), err).Error(); !strings.Contains(msg, "is damaged") || !strings.Contains(msg, "mv "+dir) {
		t.Fatalf("broken meta pages: %s", msg)
	}
	// A truncated file.
	os.WriteFile(filepath.Join(dir, "c.db"), []byte("short"), 0o600)
	err = verifyBolt(filepath.Join(dir, "c.db"))
	if msg := boltOpenError(filepath.Join(dir, "c.db"), err).Error(); err == nil || !strings.Contains(msg, "is damaged") {
		t.Fatalf("truncated file: %v", err)
	}
}

func TestPeerDiskFaults(t *testing.T) {
	var p peerDiskFaults
	f := describeDiskError("store log entries", "/d/raft/raft.db", syscall.EIO, false)
	p.note("a:1", f.status())
	got, ok := p.get("a:1")
	if !ok || !strings.Contains(got.message, "data disk I/O error") {
		t.Fatalf("after a fenced answer: %+v %v", got, ok)
	}
	since := got.since
	p.note("a:1", f.status())
	if got, _ := p.get("a:1"); !got.since.Equal(since) {
		t.Fatal("a repeated refusal moved since")
	}
	// Other failures (a timeout, another Unavailable) and success clear it.
	for _, err := range []error{grpcstatus.Error(codes.Unavailable, "connection refused"), nil} {
		p.note("a:1", f.status())
		p.note("a:1", err)
		if _, ok := p.get("a:1"); ok {
			t.Fatalf("fault kept after %v", err)
		}
	}
}
