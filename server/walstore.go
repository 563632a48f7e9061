package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// The Raft log lives in DATA_DIR/raft/wal (hashicorp/raft-wal: append-only
// segment files, one fsync per group commit); raft.db (bbolt) keeps Raft's
// term and vote. Until this release raft.db held the log too: a bolt commit
// is two fsyncs and ~20 KB of allocations, and it was the largest cost of a
// checkout after gRPC (docs/performance.md, session 5). Logs still in
// raft.db are moved to the WAL when the member starts (migrateBoltLogs).

// walSegmentBytes is the size of one WAL segment file, allocated on disk
// when the segment is created: writes inside it never grow the file (an
// fsync is then a data flush only), and a full disk shows when the next
// segment cannot be created. Snapshots let Raft drop whole old segments;
// with 10,240 trailing entries a member keeps two or three segments.
const walSegmentBytes = 8 << 20

// walDir is where a member's Raft log segments are.
func walDir(raftDir string) string { return filepath.Join(raftDir, "wal") }

// walLog is the WAL with its meta database, which WAL.Close leaves open
// (raft-wal v0.4.0): Close closes both, so the directory can be opened
// again in the same process.
type walLog struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

// GetLog reads entry index, or answers raft.ErrLogNotFound below
// FirstIndex (above LastIndex raft-wal does so itself). raft-wal v0.4.0
// still returns entries a head truncation removed while their segment
// lives on: a leader would then replay its whole log to a new follower
// instead of sending its snapshot, and the log would answer for entries it
// says it does not have.
func (w *walLog) GetLog(index uint64, l *raft.Log) error {
	first, err := w.WAL.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	return w.WAL.GetLog(index, l)
}

func (w *walLog) Close() error {
	err := w.WAL.Close()
	return errors.Join(err, w.meta.Close())
}

// openWAL opens (or creates) the Raft log in raftDir/wal. The rotation
// errors the WAL can only log (its segments roll over in the background)
// are kept in rot, so that the append that fails after one says why.
func openWAL(raftDir string, logger hclog.Logger, rot *rotateErrors) (*walLog, error) {
	return openWALSized(raftDir, walSegmentBytes, logger, rot)
}

func openWALSized(raftDir string, segBytes int, logger hclog.Logger, rot *rotateErrors) (*walLog, error) {
	dir := walDir(raftDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if last, err := finishRotation(dir, segBytes); err != nil {
		return nil, fmt.Errorf("finish the interrupted rotation of a log segment: %w", err)
	} else if last > 0 {
		logger.Warn("finished a log segment rotation the last run left half done", "sealed_up_to", last)
	}
	if n, err := indexTruncatedSegments(dir); err != nil {
		return nil, fmt.Errorf("index a log segment sealed by a truncation: %w", err)
	} else if n > 0 {
		logger.Info("indexed log segments sealed by a truncation", "segments", n)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := func() (w *wal.WAL, err error) {
		// Damage verifyWALSegments cannot see may still make the
		// WAL's recovery panic: a refusal to start, not a crash.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: raft-wal: %v", errDamaged, r)
			}
		}()
		return wal.Open(dir, wal.WithSegmentSize(segBytes), wal.WithMetaStore(meta), wal.WithLogger(walLogger{Logger: logger, rot: rot}))
	}()
	if err != nil {
		meta.Close()
		return nil, err
	}
	return &walLog{WAL: w, meta: meta}, nil
}

// walOpenError explains why the WAL did not open.
func walOpenError(raftDir string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		f := describeDiskError("open Raft log", walDir(raftDir), err, true)
		return fmt.Errorf("%s: the member did not start; %s", f.What, f.Fix)
	}
	return fmt.Errorf("Raft log %s is damaged (%v): the member did not start. %s", walDir(raftDir), err, repairHint(raftDir))
}

// rotateErrors remembers the WAL's last failed segment rotation.
type rotateErrors struct {
	mu  sync.Mutex
	err error
}

func (r *rotateErrors) set(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func (r *rotateErrors) get() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// explain turns the WAL's "segment sealed" (an append after a failed
// rotation) into the rotation's own error, a full disk most often.
func (r *rotateErrors) explain(err error) error {
	if r == nil || !errors.Is(err, types.ErrSealed) {
		return err
	}
	if rerr := r.get(); rerr != nil {
		return fmt.Errorf("no new log segment: %w", rerr)
	}
	return err
}

// walLogger is the WAL's logger: it also keeps rotation errors.
type walLogger struct {
	hclog.Logger
	rot *rotateErrors
}

func (l walLogger) Error(msg string, args ...interface{}) {
	if msg == "rotate error" && l.rot != nil {
		for i := 0; i+1 < len(args); i += 2 {
			if err, ok := args[i+1].(error); ok {
				l.rot.set(err)
			}
		}
	}
	l.Logger.Error(msg, args...)
}

// migrateBatch is how many entries one WAL append carries while migrating.
const migrateBatch = 1024

// migrateBoltLogs moves the log entries still in raft.db (written by an
// earlier release) to the WAL, then deletes them from raft.db. Each step is
// durable before the next, so an interrupted migration resumes where it
// stopped: entries already in the WAL are not copied again. It returns how
// many entries were moved.
func migrateBoltLogs(bolt *raftboltdb.BoltStore, w raft.LogStore) (int, error) {
	first, err := bolt.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := bolt.LastIndex()
	if err != nil {
		return 0, err
	}
	if last == 0 {
		return 0, nil
	}
	wfirst, err := w.FirstIndex()
	if err != nil {
		return 0, err
	}
	wlast, err := w.LastIndex()
	if err != nil {
		return 0, err
	}
	next := first
	if wlast > 0 {
		// A migration that stopped part way: the WAL holds a prefix of
		// raft.db's entries (or all of them). Anything else is not ours to
		// guess at.
		if wfirst != first || wlast > last {
			return 0, fmt.Errorf("raft.db holds log entries %d-%d and the WAL %d-%d: they do not line up, so neither is trusted", first, last, wfirst, wlast)
		}
		next = wlast + 1
	}
	moved := 0
	for next <= last {
		end := min(last, next+migrateBatch-1)
		batch := make([]*raft.Log, 0, end-next+1)
		for i := next; i <= end; i++ {
			l := new(raft.Log)
			if err := bolt.GetLog(i, l); err != nil {
				return moved, fmt.Errorf("read log entry %d from raft.db: %w", i, err)
			}
			batch = append(batch, l)
		}
		if err := w.StoreLogs(batch); err != nil {
			return moved, fmt.Errorf("write log entries %d-%d to the WAL: %w", next, end, err)
		}
		moved += len(batch)
		next = end + 1
	}
	if err := bolt.DeleteRange(first, last); err != nil {
		return moved, fmt.Errorf("delete the moved entries from raft.db: %w", err)
	}
	return moved, nil
}

// WAL segment format (raft-wal v0.4.0, segment/format.go): a 32-byte file
// header, then 8-byte-aligned frames of an 8-byte header (type, three zero
// bytes, then the payload length, or for a commit frame the CRC-32C of
// everything since the previous commit frame, the file header included for
// the first).
const (
	segHeaderLen    = 32
	segMagic        = 0x58eb6b0d
	frameHdrLen     = 8
	frameEntry      = 1
	frameIndex      = 2
	frameCommit     = 3
	maxFramePayload = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// verifyWALSegments checks every segment in dir before the WAL opens it.
// raft-wal assumes committed data is never damaged afterwards: it reads
// any damage in the last segment as the torn write of a crash and drops
// the entries from there on (all of them, for damage near its start), and
// damage inside a frame header can make it panic. Here a segment is
// damaged (errDamaged) when a frame or commit checksum is wrong and the
// segment goes on with at least one more complete, checksummed append
// after it: a crash tears only the last append. Damage in the last append
// of the last segment is left to raft-wal (that append was never
// acknowledged as written); damage anywhere in an older segment is
// damage.
func verifyWALSegments(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		return err
	}
	slices.Sort(names) // named by base index: the last is the tail
	for i, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		if err := verifySegment(b, i == len(names)-1); err != nil {
			return fmt.Errorf("%w: segment %s: %v", errDamaged, filepath.Base(name), err)
		}
	}
	return nil
}

// verifySegment checks one segment's bytes; tail: it is the segment being
// written, whose last append may be torn.
func verifySegment(b []byte, tail bool) error {
	end, bad, commits := walkFrames(b, segHeaderLen, 0)
	if bad == "" {
		if commits > 0 && (len(b) < segHeaderLen || binary.LittleEndian.Uint32(b[0:4]) != segMagic) {
			return errors.New("its file header is damaged")
		}
		return nil
	}
	if !tail {
		return fmt.Errorf("%s at offset %d", bad, end)
	}
	// Damage at end: a crash tears only the last append, so no complete
	// append (frames ending in a commit whose checksum covers exactly
	// them) may follow it. Appends start right after a commit frame,
	// which may be the damaged part: try every frame boundary.
	for y := end + frameHdrLen; y+frameHdrLen <= len(b); y += frameHdrLen {
		if _, _, n := walkFrames(b, y, y); n > 0 {
			return fmt.Errorf("%s at offset %d, with later appends intact", bad, end)
		}
	}
	return nil
}

// walkFrames reads frames from off, checking each commit's checksum over
// the bytes since crcStart (then since the previous commit). It stops at a
// zero frame header or the end of b (bad == ""), or at the first frame that
// is malformed or whose checksum is wrong (bad says which, at offset end).
// commits counts the commit frames that checked out.
func walkFrames(b []byte, off, crcStart int) (end int, bad string, commits int) {
	for off+frameHdrLen <= len(b) {
		h := b[off : off+frameHdrLen]
		switch {
		case h[0] == 0 && binary.LittleEndian.Uint64(h) == 0:
			return off, "", commits
		case h[1] != 0 || h[2] != 0 || h[3] != 0:
			return off, "a malformed frame header", commits
		case h[0] == frameCommit:
			if crc32.Checksum(b[crcStart:off], castagnoli) != binary.LittleEndian.Uint32(h[4:8]) {
				return off, "a commit checksum mismatch", commits
			}
			commits++
			off += frameHdrLen
			crcStart = off
		case h[0] == frameEntry || h[0] == frameIndex:
			n := int(binary.LittleEndian.Uint32(h[4:8]))
			size := frameHdrLen + n + (frameHdrLen-n%frameHdrLen)%frameHdrLen
			if n > maxFramePayload || off+size > len(b) {
				return off, "a frame longer than the segment", commits
			}
			off += size
		default:
			return off, fmt.Sprintf("a frame of unknown type %d", h[0]), commits
		}
	}
	return off, "", commits
}

// finishRotation completes a segment rotation the last run left half done.
// raft-wal seals a full segment on disk (an index frame, then a commit)
// in the append that fills it, and records the seal, with the next
// segment, in its index database afterwards, in the background. A process
// that stops in between (killed, or closed right after the append: Close
// then skips the pending rotation) leaves a segment sealed on disk that the
// index still lists as the one being written; raft-wal v0.4.0 then answers
// every later append with "segment is sealed", restart after restart.
// Here the rotation is finished as raft-wal would have: the segment is
// recorded as sealed and a next segment is added (its file is created
// when the WAL opens). It returns the sealed segment's last index, 0 when
// there was nothing to do.
func finishRotation(dir string, segBytes int) (uint64, error) {
	if _, err := os.Stat(filepath.Join(dir, metadb.FileName)); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	st, err := meta.Load(dir)
	if err != nil {
		return 0, err
	}
	if len(st.Segments) == 0 {
		return 0, nil
	}
	tail := &st.Segments[len(st.Segments)-1]
	if !tail.SealTime.IsZero() {
		return 0, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, segment.FileName(*tail)))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	entries, indexStart, sealed := sealedOnDisk(b)
	if !sealed {
		return 0, nil
	}
	now := time.Now()
	tail.SealTime = now
	tail.MaxIndex = tail.BaseIndex + uint64(entries) - 1
	tail.IndexStart = indexStart
	last := tail.MaxIndex
	st.Segments = append(st.Segments, types.SegmentInfo{ID: st.NextSegmentID, BaseIndex: last + 1, MinIndex: last + 1,
		SizeLimit: uint32(segBytes), Codec: wal.CodecBinaryV1, CreateTime: now})
	st.NextSegmentID++
	if err := meta.CommitState(st); err != nil {
		return 0, err
	}
	return last, nil
}

// sealedOnDisk says whether a segment's bytes end in a seal: an index
// frame then a commit whose checksum holds; entries counts the entry
// frames before it and indexStart is where the index frame's payload is.
func sealedOnDisk(b []byte) (entries int, indexStart uint64, sealed bool) {
	off, crcStart, index := segHeaderLen, 0, -1
	for off+frameHdrLen <= len(b) {
		h := b[off : off+frameHdrLen]
		if h[1] != 0 || h[2] != 0 || h[3] != 0 {
			return 0, 0, false
		}
		switch h[0] {
		case frameCommit:
			if crc32.Checksum(b[crcStart:off], castagnoli) != binary.LittleEndian.Uint32(h[4:8]) {
				return 0, 0, false
			}
			if index >= 0 {
				return entries, uint64(index + frameHdrLen), true
			}
			off += frameHdrLen
			crcStart = off
		case frameEntry, frameIndex:
			l := int(binary.LittleEndian.Uint32(h[4:8]))
			size := frameHdrLen + l + (frameHdrLen-l%frameHdrLen)%frameHdrLen
			if l > maxFramePayload || off+size > len(b) {
				return 0, 0, false
			}
			if h[0] == frameIndex {
				index = off
			} else if index < 0 {
				entries++
			}
			off += size
		default:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// indexTruncatedSegments writes the missing index of segments a tail
// truncation sealed. When Raft removes entries from the end of the log (a
// new leader overwrote entries this member had not committed), raft-wal
// v0.4.0 records the current segment as sealed, up to the last entry kept,
// and starts a new one, but writes no index into the old segment's file;
// after a restart it reads sealed segments only through that index, and
// every entry of the segment answered "sealed segment has no index block"
// (Raft cannot replay or replicate them; found by the robustness suite's
// same-log check). Here the index is appended to the segment as raft-wal
// writes one when it seals a full segment (an index frame of the entries'
// offsets, then a commit), synced, then recorded in the WAL's index
// database. A run stopped in between finds its own index frame and records
// it. It returns how many segments it indexed.
func indexTruncatedSegments(dir string) (int, error) {
	if _, err := os.Stat(filepath.Join(dir, metadb.FileName)); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	st, err := meta.Load(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range st.Segments {
		seg := &st.Segments[i]
		if seg.SealTime.IsZero() || seg.IndexStart != 0 {
			continue
		}
		start, err := writeSegmentIndex(filepath.Join(dir, segment.FileName(*seg)), seg.BaseIndex, seg.MaxIndex)
		if err != nil {
			return n, fmt.Errorf("segment %s: %w", segment.FileName(*seg), err)
		}
		seg.IndexStart = start
		if err := meta.CommitState(st); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// writeSegmentIndex appends to a segment file an index of its entries
// base..max and a commit frame, unless it already ends in one, and returns
// where the index's payload starts.
func writeSegmentIndex(path string, base, max uint64) (uint64, error) {
	if max < base {
		return 0, fmt.Errorf("sealed with no entries (%d-%d)", base, max)
	}
	want := int(max - base + 1)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var offsets []uint32
	off, crcStart := segHeaderLen, 0
	for off+frameHdrLen <= len(b) {
		h := b[off : off+frameHdrLen]
		if binary.LittleEndian.Uint64(h) == 0 {
			break
		}
		l := int(binary.LittleEndian.Uint32(h[4:8]))
		switch h[0] {
		case frameCommit:
			if crc32.Checksum(b[crcStart:off], castagnoli) != binary.LittleEndian.Uint32(h[4:8]) {
				return 0, fmt.Errorf("%w: a commit checksum mismatch at offset %d", errDamaged, off)
			}
			off += frameHdrLen
			crcStart = off
			continue
		case frameIndex:
			// Written by an earlier run that stopped before recording it.
			if l == 4*want && off+frameHdrLen+l <= len(b) {
				return uint64(off + frameHdrLen), nil
			}
			return 0, fmt.Errorf("%w: an index frame of %d bytes at offset %d for %d entries", errDamaged, l, off, want)
		case frameEntry:
			offsets = append(offsets, uint32(off))
		default:
			return 0, fmt.Errorf("%w: a frame of unknown type %d at offset %d", errDamaged, h[0], off)
		}
		off += frameHdrLen + l + (frameHdrLen-l%frameHdrLen)%frameHdrLen
	}
	if crcStart != off {
		return 0, fmt.Errorf("%w: frames after the last commit at offset %d", errDamaged, crcStart)
	}
	if len(offsets) < want {
		return 0, fmt.Errorf("%w: %d entries, the WAL's index says %d", errDamaged, len(offsets), want)
	}
	payload := 4 * want
	size := frameHdrLen + payload + (frameHdrLen-payload%frameHdrLen)%frameHdrLen
	frames := make([]byte, size+frameHdrLen)
	frames[0] = frameIndex
	binary.LittleEndian.PutUint32(frames[4:8], uint32(payload))
	for i, o := range offsets[:want] {
		binary.LittleEndian.PutUint32(frames[frameHdrLen+4*i:], o)
	}
	frames[size] = frameCommit
	binary.LittleEndian.PutUint32(frames[size+4:], crc32.Checksum(frames[:size], castagnoli))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	if _, err := f.WriteAt(frames, int64(off)); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return uint64(off + frameHdrLen), nil
}

// RaftLog is a member's Raft log opened offline.
type RaftLog interface {
	raft.LogStore
	Close() error
}

// OpenRaftLog opens the Raft log of a stopped member (DATA_DIR/raft/wal)
// the way the member does at start: checked, and with what a stopped run
// left half done finished. For offline inspection (the robustness
// suite's same-log check).
func OpenRaftLog(dataDir string) (RaftLog, error) {
	raftDir := filepath.Join(dataDir, "raft")
	if err := verifyWALSegments(walDir(raftDir)); err != nil {
		return nil, walOpenError(raftDir, err)
	}
	w, err := openWAL(raftDir, hclog.NewNullLogger(), nil)
	if err != nil {
		return nil, walOpenError(raftDir, err)
	}
	return w, nil
}
