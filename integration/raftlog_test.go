package integration

import (
	"crypto/sha256"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/triadlm/triad/server"
)

// raftLog reads a stopped member's Raft log (its WAL), for the robustness
// suite's same-log check.
type raftLog struct {
	l     server.RaftLog
	first uint64
}

func openRaftLog(m *member) (*raftLog, error) {
	l, err := server.OpenRaftLog(m.dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.name, err)
	}
	first, err := l.FirstIndex()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("%s: first index: %w", m.name, err)
	}
	return &raftLog{l: l, first: first}, nil
}

// entry describes log entry i by what every member must agree on: term,
// type and a digest of its data and extensions (not AppendedAt, which is
// each member's own clock).
func (l *raftLog) entry(i uint64) (string, error) {
	var e raft.Log
	if err := l.l.GetLog(i, &e); err != nil {
		return "", err
	}
	return fmt.Sprintf("term %d %v data %x ext %x", e.Term, e.Type, sha256.Sum256(e.Data), sha256.Sum256(e.Extensions)), nil
}

func (l *raftLog) close() { l.l.Close() }
