package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// Start-time checks of the data disk (docs/operator-guide.md, "Disk
// faults"). A member whose Raft files are damaged refuses to start with an
// error naming the file and the repair; it never deletes or rewrites them.

// repairHint is the repair of damaged Raft files: the member rebuilds its
// Raft state from the other two; the computer ID and the formation record
// stay in the data directory (moving the whole directory would change the
// computer ID that licenses are bound to).
func repairHint(raftDir string) string {
	return fmt.Sprintf("Triad never deletes or rewrites it. Repair: while the other two members serve, move the Raft directory aside "+
		"(mv %s %s.damaged) and start this member again: it rejoins and rebuilds its Raft state from the leader (keep %s.damaged for diagnosis "+
		"and delete it later). Do not move the whole data directory: it holds the computer ID that licenses are bound to. "+
		"If the other members are not running, restore this member from a backup instead (docs/operator-guide.md, Disk faults)", raftDir, raftDir, raftDir)
}

// probeWrite writes and fsyncs a small file in dir and removes it: a member
// that cannot write its data disk refuses to start rather than be fenced at
// its first write.
func probeWrite(dir string, g *diskGuard) error {
	path := filepath.Join(dir, ".write-probe")
	err := g.injected("write", path)
	if err == nil {
		err = writeSync(path, bytes.Repeat([]byte{0}, 4096))
	}
	os.Remove(path)
	if err != nil {
		f := describeDiskError("write", path, err, true)
		return fmt.Errorf("%s: the member did not start; %s", f.What, f.Fix)
	}
	return nil
}

func writeSync(path string, b []byte) error {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(b); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// snapshotMeta is hashicorp/raft's meta.json of a file snapshot.
type snapshotMeta struct {
	raft.SnapshotMeta
	CRC []byte
}

// verifySnapshots checks every snapshot Raft would consider at start: its
// meta.json decodes and its state.bin matches the CRC recorded there. Raft
// itself skips a snapshot whose meta.json it cannot read and falls back to
// an older one when one fails its CRC; with Triad's settings (a snapshot
// every 16384 entries, 10240 kept after it) the log no longer holds the
// entries after the older snapshot, so the fallback ends in a panic, or
// worse, hides the damage. So any damaged snapshot stops the start.
func verifySnapshots(raftDir string) error {
	dir := filepath.Join(raftDir, "snapshots")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the snapshot directory %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue // Raft ignores unfinished snapshots
		}
		snap := filepath.Join(dir, e.Name())
		if err := verifySnapshot(snap); err != nil {
			return fmt.Errorf("Raft snapshot %s is damaged (%v): the member did not start. %s", snap, err, repairHint(raftDir))
		}
	}
	return nil
}

func verifySnapshot(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return err
	}
	var meta snapshotMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return fmt.Errorf("meta.json: %v", err)
	}
	fh, err := os.Open(filepath.Join(dir, "state.bin"))
	if err != nil {
		return err
	}
	defer fh.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	n, err := io.Copy(h, fh)
	if err != nil {
		return fmt.Errorf("state.bin: %v", err)
	}
	if !bytes.Equal(h.Sum(nil), meta.CRC) {
		return fmt.Errorf("state.bin (%d bytes; meta.json says %d) does not match the checksum in meta.json", n, meta.Size)
	}
	return nil
}

// errDamaged marks a Raft file whose structure is broken.
var errDamaged = errors.New("damaged")

// verifyBolt opens raft.db read-only and walks every bucket and key before
// Raft opens it: bbolt has no error for most broken pages but panics
// ("page expected to be ...") when it meets one, and while opening for
// writing it does so where the panic cannot be recovered (the freelist is
// rebuilt by walking the whole file). Here the walk runs in this goroutine
// and a panic becomes an error wrapping errDamaged.
func verifyBolt(path string) (err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt: %v", errDamaged, r)
		}
	}()
	var walk func(b *bbolt.Bucket) error
	walk = func(b *bbolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					return walk(nb)
				}
			}
			return nil
		})
	}
	return db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error { return walk(b) })
	})
}

// boltOpenError explains why raft.db did not open.
func boltOpenError(path string, err error) error {
	raftDir := filepath.Dir(path)
	switch {
	case errors.Is(err, errDamaged):
		return fmt.Errorf("Raft log %s is damaged (%v): the member did not start. %s", path, err, repairHint(raftDir))
	case errors.Is(err, bbolt.ErrTimeout):
		return fmt.Errorf("open Raft log %s: %w (another triadd is using this data directory: stop it, or give this member its own --data-dir)", path, err)
	case errors.Is(err, bbolt.ErrInvalid), errors.Is(err, bbolt.ErrChecksum), errors.Is(err, bbolt.ErrVersionMismatch),
		strings.Contains(err.Error(), "file size too small"):
		return fmt.Errorf("Raft log %s is damaged (%v): the member did not start. %s", path, err, repairHint(raftDir))
	}
	f := describeDiskError("open Raft log", path, err, true)
	return fmt.Errorf("%s: the member did not start; %s", f.What, f.Fix)
}
