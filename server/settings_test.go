package server

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/fsmpb"
)

// settingsServer is the part of a member that applySettings touches: its
// configuration, FSM, membership monitor and admin side, wired as open does.
func settingsServer(t *testing.T, cfg Config) (*Server, func(*fsmpb.Command)) {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, fsm: fsm.New(), adm: newAdminSide(0), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.mon = membership.NewMonitor(cfg.Name, 0, 0, nil, nil)
	s.mon.SetIsolationAfter(s.cfg.IsolationAfter)
	var index uint64
	apply := func(cmd *fsmpb.Command) {
		t.Helper()
		index++
		cmd.NowMs = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		data, err := proto.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := s.fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(*fsmpb.OpResult); !ok || r.GetCode() != fsmpb.Code_OK {
			t.Fatalf("apply %v: %v", cmd, r)
		}
	}
	apply(&fsmpb.Command{Cmd: &fsmpb.Command_FormCluster{FormCluster: &fsmpb.FormCluster{Mode: ModeStandalone,
		Members: []*fsmpb.Member{{Name: cfg.Name, GrpcAddress: "127.0.0.1:4085", RaftAddress: "127.0.0.1:4086", ComputerId: "TRD-TEST"}}}}})
	apply(&fsmpb.Command{Cmd: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Session: &fsmpb.AdminSession{Id: "s1", Mode: fsm.ModeFull, Origin: "test", Member: cfg.Name}}}})
	return s, apply
}

func setIsolationMinutes(m uint32) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_SetSettings{SetSettings: &fsmpb.SetSettings{
		SessionId: "s1", Settings: &fsmpb.AdminSettings{IsolationMinutes: proto.Uint32(m)}}}}
}

// `server set --isolation-minutes` is a replicated setting; every member
// passes it to its membership monitor. Until it is set, the member's own
// configuration (default 5 minutes) stays in force.
func TestApplySettingsIsolationReachesMonitor(t *testing.T) {
	s, apply := settingsServer(t, Config{Name: "m1", DataDir: t.TempDir(), Insecure: true})
	if got := s.mon.IsolationAfter(); got != 5*time.Minute {
		t.Fatalf("isolation delay of a member with the default configuration = %s, want 5m", got)
	}
	s.applySettings()
	if got := s.mon.IsolationAfter(); got != 5*time.Minute {
		t.Fatalf("with the setting never set, applySettings changed the delay to %s; want the configured 5m", got)
	}
	apply(setIsolationMinutes(12))
	s.applySettings()
	if got := s.mon.IsolationAfter(); got != 12*time.Minute {
		t.Fatalf("after server set --isolation-minutes 12: monitor delay %s", got)
	}
	apply(setIsolationMinutes(1))
	s.applySettings()
	if got := s.mon.IsolationAfter(); got != time.Minute {
		t.Fatalf("after server set --isolation-minutes 1: monitor delay %s", got)
	}
}

// A member configured with --isolation-minutes keeps it until the cluster
// setting is set.
func TestApplySettingsKeepsConfiguredIsolation(t *testing.T) {
	s, apply := settingsServer(t, Config{Name: "m1", DataDir: t.TempDir(), Insecure: true, IsolationMinutes: 9})
	s.applySettings()
	if got := s.mon.IsolationAfter(); got != 9*time.Minute {
		t.Fatalf("configured 9 minutes, setting never set: monitor delay %s", got)
	}
	apply(setIsolationMinutes(3))
	s.applySettings()
	if got := s.mon.IsolationAfter(); got != 3*time.Minute {
		t.Fatalf("after the cluster setting 3 minutes: monitor delay %s", got)
	}
}
