package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/notify"
	"github.com/triadlm/triad/proto/triadv1"
)

// Disk faults (docs/operator-guide.md, "Disk faults").
//
// Every write Raft makes to this member's data disk goes through a
// diskGuard: the log and stable store (raft.db) and the snapshot store. The
// first write that fails (disk full, I/O or fsync error, read-only
// filesystem) fences the member for the rest of the process's life: it
// hands leadership over, stops Raft, answers licensing and admin requests
// UNAVAILABLE naming the fault and the repair, fails /readyz and shows a
// disk_fault alarm. It does not retry: after a failed fsync the kernel may
// have dropped the dirty pages and a later fsync can succeed without them
// (PostgreSQL's "fsyncgate"), so only a restart, which reads back what is
// really on disk, is a sound recovery. It does not exit either: a process
// that stays up keeps saying what is wrong (status, /readyz, log) instead
// of crash-looping under a service manager.
//
// hashicorp/raft panics when it cannot persist its current term, so once
// fenced (or on the failing write itself) the stable store's writes never
// return: Raft's main loop parks there, harmless, until the process ends.
// Log writes return the error, which makes a leader step down by itself.

// diskFault is what went wrong with the data disk and what to do about it.
type diskFault struct {
	Op    string // the failed operation ("store log", "set term", "snapshot")
	Path  string // the file or directory written
	Err   error
	What  string // one sentence: what happened
	Fix   string // one sentence: what the operator does
	Since time.Time
}

// Message is the fault and its repair in one line, as clients, /readyz and
// the alarm show it.
func (f *diskFault) Message() string { return f.What + ": " + f.Fix }

func (f *diskFault) status() error {
	return status.Error(codes.Unavailable, fencedPrefix+f.Message()+"; meanwhile use the other members")
}

// diskGuard records the first failed write to the data disk and, in tests,
// injects failures (--test-disk-fault-file).
type diskGuard struct {
	dir     string // the Raft directory
	inject  string // test only: while this file exists, writes fail
	fault   atomic.Pointer[diskFault]
	mu      sync.Mutex
	onFault func(*diskFault) // set by arm; called once, in its own goroutine
	called  bool
	parked  chan struct{} // never closed: where stable-store writes wait once fenced
}

func newDiskGuard(dir, inject string) *diskGuard {
	return &diskGuard{dir: dir, inject: inject, parked: make(chan struct{})}
}

// current is the fault, or nil while the disk is healthy.
func (g *diskGuard) current() *diskFault {
	if g == nil {
		return nil
	}
	return g.fault.Load()
}

// injected is the error the test-only fault file asks for: "enospc" for a
// full disk, anything else (or nothing) for an fsync I/O error.
func (g *diskGuard) injected(op, path string) error {
	if g.inject == "" {
		return nil
	}
	b, err := os.ReadFile(g.inject)
	if err != nil {
		return nil
	}
	sys, errno := "fsync", syscall.EIO
	if strings.Contains(strings.ToLower(string(b)), "enospc") {
		sys, errno = "write", syscall.ENOSPC
	}
	return fmt.Errorf("%w (injected by --test-disk-fault-file)", &os.PathError{Op: sys, Path: path, Err: errno})
}

// check runs before a write: a fenced guard refuses it, an injected fault
// fails it (and fences).
func (g *diskGuard) check(op, path string) error {
	if f := g.fault.Load(); f != nil {
		return fmt.Errorf("%s refused: the member is fenced after a data disk fault: %w", op, f.Err)
	}
	if err := g.injected(op, path); err != nil {
		g.report(op, path, err)
		return err
	}
	return nil
}

// report records a failed write; the first one fences the member.
func (g *diskGuard) report(op, path string, err error) {
	if err == nil {
		return
	}
	if g.fault.CompareAndSwap(nil, describeDiskError(op, path, err, false)) {
		g.notify()
	}
}

// arm starts fencing on faults (once Raft runs); a fault recorded earlier
// is acted on now.
func (g *diskGuard) arm(onFault func(*diskFault)) {
	g.mu.Lock()
	g.onFault = onFault
	g.mu.Unlock()
	g.notify()
}

func (g *diskGuard) armed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.onFault != nil
}

func (g *diskGuard) notify() {
	f := g.fault.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	if f == nil || g.onFault == nil || g.called {
		return
	}
	g.called = true
	go g.onFault(f)
}

// describeDiskError says what a failed write means and what to do.
// atStart: the member is starting (the fix ends "start it again").
func describeDiskError(op, path string, err error, atStart bool) *diskFault {
	f := &diskFault{Op: op, Path: path, Err: err, Since: time.Now()}
	dir := filepath.Dir(path)
	free := "unknown"
	if n, ok := freeBytes(dir); ok {
		free = fmt.Sprintf("%d bytes", n)
	}
	restart := "then restart this member (e.g. systemctl restart triadd): it rejoins and catches up from the other members, and its committed data is kept"
	if atStart {
		restart = "then start this member again"
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		f.What = fmt.Sprintf("data disk full: %s failed on %s (%s free): %v", op, path, free, err)
		f.Fix = "free space on that filesystem, " + restart
	case errors.Is(err, syscall.EROFS):
		f.What = fmt.Sprintf("data disk read-only: %s failed on %s: %v", op, path, err)
		f.Fix = "make the filesystem writable again (check the kernel log: it is often remounted read-only after I/O errors), " + restart
	case errors.Is(err, syscall.EIO):
		f.What = fmt.Sprintf("data disk I/O error: %s failed on %s: %v", op, path, err)
		f.Fix = "check the disk (kernel log, SMART); after a failed write or fsync this process cannot trust what reached the disk, so it stopped instead of retrying; " + restart +
			"; if it then refuses to start, follow the repair it prints (move the raft directory aside)"
	default:
		f.What = fmt.Sprintf("data disk write failed: %s on %s: %v", op, path, err)
		f.Fix = "check the data directory's filesystem and permissions, " + restart
	}
	return f
}

// guardedStore is the Raft log and stable store with every write checked.
type guardedStore struct {
	g         *diskGuard
	logPath   string // the WAL's directory
	tablePath string // raft.db
	log       raft.LogStore
	table     raft.StableStore
	rot       *rotateErrors // the WAL's failed rotations (nil: none kept)
}

// IsMonotonic: as the log store below (raft.MonotonicLogStore).
func (s *guardedStore) IsMonotonic() bool { return isMonotonic(s.log) }

func (s *guardedStore) FirstIndex() (uint64, error)            { return s.log.FirstIndex() }
func (s *guardedStore) LastIndex() (uint64, error)             { return s.log.LastIndex() }
func (s *guardedStore) GetLog(index uint64, l *raft.Log) error { return s.log.GetLog(index, l) }
func (s *guardedStore) StoreLog(l *raft.Log) error             { return s.StoreLogs([]*raft.Log{l}) }

func (s *guardedStore) StoreLogs(logs []*raft.Log) error {
	return s.write("store log entries", s.logPath, func() error { return s.rot.explain(s.log.StoreLogs(logs)) })
}

func (s *guardedStore) DeleteRange(min, max uint64) error {
	return s.write("delete log entries", s.logPath, func() error { return s.log.DeleteRange(min, max) })
}

func (s *guardedStore) write(op, path string, f func() error) error {
	if err := s.g.check(op, path); err != nil {
		return err
	}
	err := f()
	s.g.report(op, path, err)
	return err
}

// stableWrite: hashicorp/raft panics when it cannot persist its term, so a
// failed (or fenced) stable-store write never returns; the member is fenced
// and its Raft parks here until the process ends. (While Raft starts, before
// arm, the error is returned: the start fails, right after the write probe
// succeeded.)
func (s *guardedStore) stableWrite(op string, f func() error) error {
	err := s.write(op, s.tablePath, f)
	if err != nil && s.g.armed() {
		<-s.g.parked
	}
	return err
}

func (s *guardedStore) Set(k, v []byte) error {
	return s.stableWrite("store Raft state", func() error { return s.table.Set(k, v) })
}

func (s *guardedStore) SetUint64(k []byte, v uint64) error {
	return s.stableWrite("store Raft term", func() error { return s.table.SetUint64(k, v) })
}

func (s *guardedStore) Get(k []byte) ([]byte, error)       { return s.table.Get(k) }
func (s *guardedStore) GetUint64(k []byte) (uint64, error) { return s.table.GetUint64(k) }

// guardedSnapshots is the snapshot store with its writes checked.
type guardedSnapshots struct {
	g     *diskGuard
	dir   string
	inner raft.SnapshotStore
}

func (s *guardedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	if err := s.g.check("create snapshot", s.dir); err != nil {
		return nil, err
	}
	sink, err := s.inner.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		s.g.report("create snapshot", s.dir, err)
		return nil, err
	}
	return &guardedSink{SnapshotSink: sink, s: s}, nil
}

func (s *guardedSnapshots) List() ([]*raft.SnapshotMeta, error) { return s.inner.List() }

func (s *guardedSnapshots) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	return s.inner.Open(id)
}

type guardedSink struct {
	raft.SnapshotSink
	s *guardedSnapshots
}

func (k *guardedSink) path() string { return filepath.Join(k.s.dir, k.ID()) }

func (k *guardedSink) Write(p []byte) (int, error) {
	if err := k.s.g.check("write snapshot", k.path()); err != nil {
		return 0, err
	}
	n, err := k.SnapshotSink.Write(p)
	k.s.g.report("write snapshot", k.path(), err)
	return n, err
}

func (k *guardedSink) Close() error {
	if err := k.s.g.check("write snapshot", k.path()); err != nil {
		k.SnapshotSink.Cancel()
		return err
	}
	err := k.SnapshotSink.Close()
	k.s.g.report("write snapshot", k.path(), err)
	return err
}

// fenceDisk takes the member out of service after a data disk fault: it
// says so at ERROR, hands leadership over if it leads, and stops Raft so
// that it neither campaigns nor serves from a state it can no longer keep.
func (s *Server) fenceDisk(f *diskFault) {
	s.log.Error("data disk fault: this member stopped serving", "what", f.What, "fix", f.Fix, "op", f.Op, "path", f.Path)
	if s.notifier != nil {
		// Sent by the fenced member itself: mail and webhooks need no disk.
		s.notifier.Send(notify.Event{Kind: notify.DiskFault, Member: s.cfg.Name, Message: f.Message()})
	}
	if s.health != nil {
		s.health.SetServingStatus(triadv1.Licensing_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	if s.isLeader() {
		fut := s.node.raft.LeadershipTransfer()
		done := make(chan error, 1)
		go func() { done <- fut.Error() }()
		select {
		case err := <-done:
			if err != nil {
				s.log.Warn("leadership transfer after the disk fault failed; stopping Raft hands it over by election", "error", err)
			} else {
				s.log.Info("leadership transferred after the disk fault")
			}
		case <-time.After(5 * time.Second):
			s.log.Warn("leadership transfer after the disk fault timed out; stopping Raft hands it over by election")
		}
	}
	// Shutdown waits for Raft's main loop, which may be parked in a
	// stable-store write: do not wait for it here.
	fut := s.node.raft.Shutdown()
	go func() {
		if err := fut.Error(); err == nil {
			s.log.Info("Raft stopped after the disk fault")
		}
	}()
}

// fencedAllowed are the calls a fenced member still answers: sessions and
// the views of its own state that say what is wrong (status, server show).
var fencedAllowed = map[string]bool{
	triadv1.Admin_Connect_FullMethodName:       true,
	triadv1.Admin_Disconnect_FullMethodName:    true,
	triadv1.Admin_ClusterStatus_FullMethodName: true,
	triadv1.Admin_ServerShow_FullMethodName:    true,
	triadv1.Admin_Discover_FullMethodName:      true,
	triadv1.Admin_AuditVerify_FullMethodName:   true,
}

// fenceInterceptor answers UNAVAILABLE, naming the disk fault and its
// repair, to every licensing call and every admin call but fencedAllowed
// once the member is fenced: its state may be stale and it can no longer
// commit anything, so it must not look like a member that serves.
func (s *Server) fenceInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if f := s.diskFault(); f != nil && !fencedAllowed[info.FullMethod] {
		return nil, f.status()
	}
	return handler(ctx, req)
}

// diskFault is this member's data disk fault, or nil.
func (s *Server) diskFault() *diskFault {
	if s.node == nil {
		return nil
	}
	return s.node.disk.current()
}

// fencedPrefix starts the message of every call a fenced member refuses.
const fencedPrefix = "member stopped serving: "

// peerDiskFaults remembers which peers answer this member's heartbeat pings
// with a disk fault, so that every member's status names the fenced member
// and the reason, not only that its links are down.
type peerDiskFaults struct {
	mu     sync.Mutex
	byAddr map[string]peerDiskFault
}

type peerDiskFault struct {
	message string
	since   time.Time
}

// note records the outcome of a ping to addr: a fenced peer's refusal sets
// its fault, anything else clears it.
func (p *peerDiskFaults) note(addr string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), fencedPrefix) {
		delete(p.byAddr, addr)
		return
	}
	if p.byAddr == nil {
		p.byAddr = map[string]peerDiskFault{}
	}
	f, ok := p.byAddr[addr]
	if !ok {
		f.since = time.Now()
	}
	f.message = st.Message()
	p.byAddr[addr] = f
}

func (p *peerDiskFaults) get(addr string) (peerDiskFault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.byAddr[addr]
	return f, ok
}
