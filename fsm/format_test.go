package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/triadlm/triad/proto/fsmpb"
)

// newerCommand is a log entry a newer build wrote: a Command whose oneof
// field (999) this build's fsmpb does not know.
func newerCommand(now int64) []byte {
	b, _ := proto.Marshal(&fsmpb.Command{NowMs: now})
	b = protowire.AppendTag(b, 999, protowire.BytesType)
	return protowire.AppendBytes(b, []byte{0x08, 0x01})
}

// newerOpBatch is a Batch whose second op is of a type this build does not
// know (Op field 99), after a grant it knows.
func newerOpBatch(t *testing.T, now int64) []byte {
	unknownOp := protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte{0x08, 0x01})
	grant, _ := proto.Marshal(grantOp("r-batch", "cad", 1, 1))
	var batch []byte
	for _, op := range [][]byte{grant, unknownOp} {
		batch = protowire.AppendTag(batch, 1, protowire.BytesType) // Batch.ops
		batch = protowire.AppendBytes(batch, op)
	}
	b, err := proto.Marshal(&fsmpb.Command{NowMs: now})
	if err != nil {
		t.Fatal(err)
	}
	b = protowire.AppendTag(b, 13, protowire.BytesType) // Command.batch
	return protowire.AppendBytes(b, batch)
}

// upgradeLog is a log with an entry at index 6 that a member of the
// previous build cannot apply (made by unknownAt), followed by entries it
// could: a grant, a renewal and a release after it must not be applied.
func upgradeLog(t *testing.T, unknownAt func(index uint64) *raft.Log) []*raft.Log {
	var logs []*raft.Log
	for _, c := range []*fsmpb.Command{
		formCmd(modeFailover, clusterIDs...),
		openCmd("adm", ModeFull, true, 0),
		withSession(enrollCmd(lic("L1", t0-day, t0+30*day, feat("cad", 1, 5))), "adm"),
		batchCmd(grantOp("r1", "cad", 1, 1)),
		batchCmd(grantOp("r2", "cad", 1, 1)),
	} {
		c.NowMs = t0 + int64(len(logs))*second
		logs = append(logs, commandLog(t, uint64(len(logs)+1), c))
	}
	logs = append(logs, unknownAt(uint64(len(logs)+1)))
	for _, c := range []*fsmpb.Command{
		batchCmd(grantOp("r3", "cad", 1, 2)),
		batchCmd(renewOp(1)),
		batchCmd(releaseOp(2)),
		expireCmd(),
	} {
		c.NowMs = t0 + int64(len(logs))*second
		logs = append(logs, commandLog(t, uint64(len(logs)+1), c))
	}
	return logs
}

func withSession(cmd *fsmpb.Command, id string) *fsmpb.Command {
	setSession(cmd, id)
	return cmd
}

// applyAll applies logs one by one or as one batch, failing on a panic.
func applyAll(t *testing.T, f *FSM, logs []*raft.Log, batch bool) (out []any) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Apply panicked: %v", r)
		}
	}()
	if batch {
		return f.ApplyBatch(logs)
	}
	for _, l := range logs {
		out = append(out, f.Apply(l))
	}
	return out
}

// TestUnknownCommandHaltsWithoutDiverging: a member that meets a command
// it does not know (a newer build's command type, a newer op inside a
// batch, or a command above its format) neither panics nor skips it: it
// halts there, keeps exactly the state before it (the entries after it,
// which the other members apply, are not applied either), answers HALTED,
// refuses snapshots and says to upgrade; once upgraded it replays the log
// from its last snapshot and ends byte-identical with a member that never
// halted.
func TestUnknownCommandHaltsWithoutDiverging(t *testing.T) {
	const at = 6
	cases := []struct {
		name      string
		maxFormat uint32
		entry     func(t *testing.T) *raft.Log
		why       string
	}{
		{"newer command type", 0, func(t *testing.T) *raft.Log {
			return &raft.Log{Index: at, Term: 1, Type: raft.LogCommand, Data: newerCommand(t0 + 5*second)}
		}, "command type this build (command format 2) does not know"},
		{"newer op in a batch", 0, func(t *testing.T) *raft.Log {
			return &raft.Log{Index: at, Term: 1, Type: raft.LogCommand, Data: newerOpBatch(t, t0+5*second)}
		}, "op 1 of its batch is of a type this build"},
		{"command above the format", 1, func(t *testing.T) *raft.Log {
			c := withSession(trustCmd(true, otherPub), "adm")
			c.NowMs = t0 + 5*second
			return commandLog(t, at, c)
		}, "add_vendor_key, a command of format 2, and this build applies formats up to 1"},
	}
	for _, c := range cases {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch=%v", c.name, batch), func(t *testing.T) {
				logs := upgradeLog(t, func(uint64) *raft.Log { return c.entry(t) })
				// The state every member has before the entry.
				prefix := New()
				applyAll(t, prefix, logs[:at-1], false)
				before, err := prefix.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				var saved memSink
				if err := before.Persist(&saved); err != nil {
					t.Fatal(err)
				}

				old := New()
				old.SetMaxFormat(c.maxFormat)
				res := applyAll(t, old, logs, batch)
				h := old.Halted()
				if h == nil || h.Index != at || !strings.Contains(h.Reason, c.why) ||
					!strings.Contains(h.Reason, fmt.Sprintf("stopped applying the replicated log at entry %d", at)) ||
					!strings.Contains(h.Reason, "upgrade this member") {
					t.Fatalf("Halted() = %+v, want entry %d, %q and an upgrade hint", h, at, c.why)
				}
				if !bytes.Equal(old.MarshalSnapshot(), prefix.MarshalSnapshot()) {
					t.Fatal("the halted member's state differs from the state before the unknown entry: it applied something after it")
				}
				if old.AppliedIndex() != at-1 {
					t.Fatalf("applied index %d, want %d", old.AppliedIndex(), at-1)
				}
				for i := at - 1; i < len(res); i++ {
					var code fsmpb.Code
					switch r := res[i].(type) {
					case *fsmpb.OpResult:
						code = r.Code
					case *fsmpb.BatchResult:
						code = r.Results[0].Code
					}
					if code != fsmpb.Code_HALTED {
						t.Fatalf("entry %d after the halt answered %v, want HALTED", i+1, res[i])
					}
				}
				var eh *ErrHalted
				if _, err := old.Snapshot(); !errors.As(err, &eh) || eh.Index != at {
					t.Fatalf("Snapshot of a halted FSM: %v, want ErrHalted at %d", err, at)
				}

				// The upgraded member: its last snapshot, then the log after it.
				if c.maxFormat == 0 {
					return // a newer build's entries: no build here knows them
				}
				all := New()
				applyAll(t, all, logs, false)
				if all.Halted() != nil {
					t.Fatalf("the current build halted: %v", all.Halted())
				}
				upgraded := New()
				if err := upgraded.Restore(io.NopCloser(bytes.NewReader(saved.Bytes()))); err != nil {
					t.Fatal(err)
				}
				applyAll(t, upgraded, logs[at-1:], batch)
				if upgraded.Halted() != nil || !bytes.Equal(upgraded.MarshalSnapshot(), all.MarshalSnapshot()) {
					t.Fatal("after the upgrade the member's state differs from a member that never halted")
				}
			})
		}
	}
}

// TestCorruptLogEntryHalts: an entry that is not a Command, or has no
// command, halts the FSM (every member fails alike) instead of crashing
// the member; the lock is released and later entries are not applied.
func TestCorruptLogEntryHalts(t *testing.T) {
	noCmd, _ := proto.Marshal(&fsmpb.Command{NowMs: t0})
	for _, c := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff}, "is not a fsmpb.Command"},
		{"no command", noCmd, "has no command set"},
		{"empty", nil, "has no command set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, batch := range []bool{false, true} {
				f := New()
				l := &raft.Log{Index: 7, Term: 2, Type: raft.LogCommand, Data: c.data}
				applyAll(t, f, []*raft.Log{l}, batch)
				h := f.Halted()
				if h == nil || !strings.Contains(h.Reason, c.msg) || !strings.Contains(h.Reason, "entry 7 (term 2)") {
					t.Fatalf("Halted() = %+v, want %q at entry 7", h, c.msg)
				}
				_ = f.MarshalSnapshot() // the lock was released
				f.Apply(commandLog(t, 8, formCmd(modeFailover, clusterIDs...)))
				if f.Cluster() != nil || f.AppliedIndex() != 0 {
					t.Fatal("a halted FSM applied a later entry")
				}
				// A snapshot from a member that applied past the entry (Raft's
				// InstallSnapshot) replaces the state and ends the halt.
				good := New()
				good.Apply(commandLog(t, 8, formCmd(modeFailover, clusterIDs...)))
				if err := f.Restore(io.NopCloser(bytes.NewReader(good.MarshalSnapshot()))); err != nil {
					t.Fatal(err)
				}
				if f.Halted() != nil || f.Cluster() == nil {
					t.Fatalf("after Restore: halted %v, cluster %v", f.Halted(), f.Cluster())
				}
				if _, err := f.Snapshot(); err != nil {
					t.Fatalf("Snapshot after Restore: %v", err)
				}
			}
		})
	}
}

// TestFormatOf: format-1 commands need 1; the ops of opFormats need their
// format, also inside a batch, where the newest op decides.
func TestFormatOf(t *testing.T) {
	for _, c := range []struct {
		cmd    *fsmpb.Command
		format uint32
		op     string
	}{
		{batchCmd(grantOp("r", "cad", 1, 1)), 1, "batch"},
		{expireCmd(), 1, "expire_leases"},
		{trustCmd(true, otherPub), 2, "add_vendor_key"},
		{trustCmd(false, otherPub), 2, "remove_vendor_key"},
		{batchCmd(grantOp("r", "cad", 1, 1), &fsmpb.Op{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{LeaseId: 1}}}), 2, "batch.admin_release"},
	} {
		if f, op := FormatOf(c.cmd); f != c.format || op != c.op {
			t.Errorf("FormatOf(%s) = %d %s, want %d %s", commandName(c.cmd), f, op, c.format, c.op)
		}
	}
	if FormatVersion < OpFormats()[len(OpFormats())-1].Format {
		t.Fatalf("FormatVersion %d is below the newest op's format", FormatVersion)
	}
}

// TestFormatTableIsComplete: every opFormats entry names a real command or
// batch op, and both format tables (fsm/DESIGN.md, docs/upgrading.md) list
// exactly these rows, so the documentation cannot drift from the code.
func TestFormatTableIsComplete(t *testing.T) {
	cmdFields := cmdOneof.Fields()
	opFields := (&fsmpb.Op{}).ProtoReflect().Descriptor().Oneofs().ByName(opOneof).Fields()
	for _, row := range OpFormats() {
		name, inBatch := strings.CutPrefix(row.Op, "batch.")
		fields := cmdFields
		if inBatch {
			fields = opFields
		}
		if fields.ByName(protoreflect.Name(name)) == nil {
			t.Errorf("opFormats lists %q, which is not a command or batch op", row.Op)
		}
		if row.Format < 2 || row.Format > FormatVersion {
			t.Errorf("opFormats: %s has format %d, outside 2..%d", row.Op, row.Format, FormatVersion)
		}
	}
	row := regexp.MustCompile("(?m)^\\| *`([a-z_.]+)` *\\| *([0-9]+) *\\|")
	for _, doc := range []string{"DESIGN.md", "../docs/upgrading.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, m := range row.FindAllStringSubmatch(string(b), -1) {
			got[m[1]] = m[2]
		}
		want := map[string]string{}
		for _, r := range OpFormats() {
			want[r.Op] = fmt.Sprint(r.Format)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s format table %v, want %v (fsm/format.go opFormats)", doc, got, want)
		}
	}
}

// format1 are the commands and batch ops of the first format. Never add
// to it: a new command or op goes into opFormats with the next format.
var format1 = []string{
	"form_cluster", "enroll_license", "remove_license", "batch", "expire_leases", "rebase_leases",
	"open_session", "close_session", "touch_session", "expire_sessions", "set_passwords", "set_settings",
	"license_tick", "recycle_named_user", "recycle_sweep", "set_rules",
	"batch.grant", "batch.renew", "batch.release", "batch.borrow",
}

// TestEveryCommandHasAFormat: a command or batch op added to fsmpb must be
// given its format in opFormats (so the leader gates it until every member
// knows it), and no format-1 op may move.
func TestEveryCommandHasAFormat(t *testing.T) {
	known := map[string]bool{}
	for _, n := range format1 {
		known[n] = true
		if _, gated := opFormats[n]; gated {
			t.Errorf("%s is of format 1 and must stay ungated", n)
		}
	}
	check := func(prefix string, fields protoreflect.FieldDescriptors) {
		for i := 0; i < fields.Len(); i++ {
			n := prefix + string(fields.Get(i).Name())
			if _, gated := opFormats[n]; !known[n] && !gated {
				t.Errorf("command %s has no format: add it to opFormats in fsm/format.go with the next format (raise FormatVersion) and to the tables of fsm/DESIGN.md and docs/upgrading.md", n)
			}
		}
	}
	check("", cmdOneof.Fields())
	check("batch.", (&fsmpb.Op{}).ProtoReflect().Descriptor().Oneofs().ByName(opOneof).Fields())
}
