package server

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/triadlm/triad/proto/fsmpb"
)

// The leader's reconciliation: removals of voters the record no longer
// has, additions (or address changes) of the record's new members, nothing
// when they agree.
func TestVoterChanges(t *testing.T) {
	rec := &fsmpb.FormCluster{Mode: ModeFailover, Members: []*fsmpb.Member{
		{Name: "a", RaftAddress: "a:1"}, {Name: "c", RaftAddress: "c:1"}, {Name: "d", RaftAddress: "d:1"}}}
	voter := func(id, addr string) raft.Server {
		return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)}
	}
	cases := []struct {
		name        string
		cfg         []raft.Server
		add, remove string
	}{
		{"agree", []raft.Server{voter("a", "a:1"), voter("c", "c:1"), voter("d", "d:1")}, "", ""},
		{"before the swap", []raft.Server{voter("a", "a:1"), voter("b", "b:1"), voter("c", "c:1")}, "d", "b"},
		{"old removed, new not added", []raft.Server{voter("a", "a:1"), voter("c", "c:1")}, "d", ""},
		{"same name, new address", []raft.Server{voter("a", "a:1"), voter("c", "c:1"), voter("d", "old:1")}, "d", ""},
		{"new member a non-voter", []raft.Server{voter("a", "a:1"), voter("c", "c:1"), {Suffrage: raft.Nonvoter, ID: "d", Address: "d:1"}}, "d", ""},
	}
	for _, tc := range cases {
		add, remove := voterChanges(rec, raft.Configuration{Servers: tc.cfg})
		ids := func(ss []raft.Server) string {
			out := ""
			for _, s := range ss {
				out += string(s.ID)
			}
			return out
		}
		if ids(add) != tc.add || ids(remove) != tc.remove {
			t.Errorf("%s: add %q remove %q, want %q %q", tc.name, ids(add), ids(remove), tc.add, tc.remove)
		}
		for _, s := range add {
			if s.Address != "d:1" || s.Suffrage != raft.Voter {
				t.Errorf("%s: adds %+v", tc.name, s)
			}
		}
	}
}
