package integration

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// raftLog reads a stopped member's Raft log (its bolt file), for the
// robustness suite's same-log check.
type raftLog struct {
	s     *raftboltdb.BoltStore
	first uint64
}

func openRaftLog(m *member) (*raftLog, error) {
	path := filepath.Join(m.dir, "raft", "raft.db")
	s, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: 5 * time.Second}})
	if err != nil {
		return nil, fmt.Errorf("%s: open %s: %w", m.name, path, err)
	}
	first, err := s.FirstIndex()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: first index: %w", m.name, err)
	}
	return &raftLog{s: s, first: first}, nil
}

// entry describes log entry i by what every member must agree on: term,
// type and a digest of its data and extensions (not AppendedAt, which is
// each member's own clock).
func (l *raftLog) entry(i uint64) (string, error) {
	var e raft.Log
	if err := l.s.GetLog(i, &e); err != nil {
		return "", err
	}
	return fmt.Sprintf("term %d %v data %x ext %x", e.Term, e.Type, sha256.Sum256(e.Data), sha256.Sum256(e.Extensions)), nil
}

func (l *raftLog) close() { l.s.Close() }
