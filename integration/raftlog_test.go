package integration

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// raftLog reads a stopped member's Raft log (its WAL directory), for the
// robustness suite's same-log check.
type raftLog struct {
	w     *wal.WAL
	meta  *metadb.BoltMetaDB
	first uint64
}

func openRaftLog(m *member) (*raftLog, error) {
	dir := filepath.Join(m.dir, "raft", "wal")
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(hclog.NewNullLogger()))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("%s: open %s: %w", m.name, dir, err)
	}
	first, err := w.FirstIndex()
	if err != nil {
		w.Close()
		meta.Close()
		return nil, fmt.Errorf("%s: first index: %w", m.name, err)
	}
	return &raftLog{w: w, meta: meta, first: first}, nil
}

// entry describes log entry i by what every member must agree on: term,
// type and a digest of its data and extensions (not AppendedAt, which is
// each member's own clock).
func (l *raftLog) entry(i uint64) (string, error) {
	var e raft.Log
	if err := l.w.GetLog(i, &e); err != nil {
		return "", err
	}
	return fmt.Sprintf("term %d %v data %x ext %x", e.Term, e.Type, sha256.Sum256(e.Data), sha256.Sum256(e.Extensions)), nil
}

func (l *raftLog) close() {
	l.w.Close()
	l.meta.Close()
}
