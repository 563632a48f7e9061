package server

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestRaftConfigSnapshotDefaults(t *testing.T) {
	c := raftConfig(&Config{Name: "m1"}, hclog.NewNullLogger())
	if c.SnapshotThreshold != 16384 || c.TrailingLogs != 10240 || c.SnapshotInterval != 60*time.Second {
		t.Errorf("snapshot settings = threshold %d, trailing %d, interval %s; want 16384, 10240, 60s",
			c.SnapshotThreshold, c.TrailingLogs, c.SnapshotInterval)
	}
	if c.LocalID != "m1" {
		t.Errorf("LocalID = %q, want the member name", c.LocalID)
	}
	if err := raft.ValidateConfig(c); err != nil {
		t.Errorf("default raft config invalid: %v", err)
	}
}

// The test-only overrides (--test-snapshot-threshold, --test-trailing-logs)
// reach Raft, and a small threshold is checked often enough for a test.
func TestRaftConfigSnapshotTestOverrides(t *testing.T) {
	c := raftConfig(&Config{Name: "m1", SnapshotThreshold: 64, TrailingLogs: 16}, hclog.NewNullLogger())
	if c.SnapshotThreshold != 64 || c.TrailingLogs != 16 {
		t.Errorf("threshold %d, trailing %d; want 64, 16", c.SnapshotThreshold, c.TrailingLogs)
	}
	if c.SnapshotInterval > time.Second {
		t.Errorf("snapshot check interval %s with a test threshold: a test would wait minutes", c.SnapshotInterval)
	}
	if err := raft.ValidateConfig(c); err != nil {
		t.Errorf("raft config with test overrides invalid: %v", err)
	}
}
