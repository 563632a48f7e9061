package fsm

import (
	"fmt"
	"sort"
	"strings"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Command formats and rolling upgrades (docs/upgrading.md).
//
// Each build applies the commands of formats up to FormatVersion. A
// command type (or batch op) added after the first format is listed in
// opFormats with the format that introduced it; the leader proposes it only
// once every member reports a format that knows it (server: the heartbeat
// carries each member's format). If a member still meets a command it does
// not know (it was rolled back after the command was used, or the log was
// written by a newer build), Apply neither panics nor skips the entry: the
// FSM halts at that entry, applies nothing more, refuses snapshots, and
// the member refuses to serve, naming the entry and asking for an upgrade.
// Raft goes on replicating and storing the log on that member, so once it
// runs a build that knows the command, it replays the log from its last
// snapshot and catches up to exactly the state of the others.

// FormatVersion is the highest command format this build applies.
const FormatVersion = 4

// opFormats lists the commands (Command oneof field names) and batch ops
// ("batch." + Op oneof field name) introduced after format 1, with the
// format that introduced them. Every entry needs a row in the table of
// fsm/DESIGN.md and docs/upgrading.md; a test checks that the table and
// this map agree. Never change a row: append.
var opFormats = map[string]uint32{
	// Format 2: vendor trust replicated and enforced in Apply; the
	// administrator's force-release as its own op.
	"add_vendor_key":      2,
	"remove_vendor_key":   2,
	"adopt_vendor_trust":  2,
	"batch.admin_release": 2,
	// Format 3: replacing a dead member's machine (cluster replace-member).
	"replace_member": 3,
	// Format 4 (issue 13): queued checkouts.
	"batch.dequeue": 4,
	// Format 4 (issue 14): usage tracing switched on and off.
	"set_trace": 4,
	// Format 4: the usage history (issue 14).
	"start_history": 4,
}

// OpFormat is one row of the format table.
type OpFormat struct {
	Op     string // command field name, or "batch." + op field name
	Format uint32
}

// OpFormats returns the command types introduced after format 1, sorted by
// format then name.
func OpFormats() []OpFormat {
	out := make([]OpFormat, 0, len(opFormats))
	for op, f := range opFormats {
		out = append(out, OpFormat{op, f})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Format != out[j].Format {
			return out[i].Format < out[j].Format
		}
		return out[i].Op < out[j].Op
	})
	return out
}

// FormatOf returns the command format a member needs to apply cmd, and the
// name of the newest op that needs it (for messages). Commands of format 1
// return 1 and their own name.
func FormatOf(cmd *fsmpb.Command) (uint32, string) {
	name := string(commandName(cmd))
	format, op := uint32(1), name
	if f, ok := opFormats[name]; ok {
		format = f
	}
	if b := cmd.GetBatch(); b != nil {
		for _, o := range b.GetOps() {
			if f, n := OpsFormat(o); f > format {
				format, op = f, n
			}
		}
	}
	for _, hook := range commandFormatHooks {
		if f, n := hook(cmd); f > format {
			format, op = f, n
		}
	}
	return format, op
}

// commandFormatHooks and opFormatHooks let a new field of an existing
// command or op (or a license using a new option) need a newer format: an
// older build would ignore the field and apply the entry differently, so
// the leader must not propose it before every member knows it, and a
// member that does not must halt on it. Each hook returns the format the
// command needs for what it checks (1 when nothing new is used) and a name
// for messages, like "batch.grant.queue". Files register hooks in init;
// every hook needs a row in the tables of fsm/DESIGN.md and
// docs/upgrading.md like an op.
var (
	commandFormatHooks []func(*fsmpb.Command) (uint32, string)
	opFormatHooks      []func(*fsmpb.Op) (uint32, string)
)

// OpsFormat is FormatOf for one batch op.
func OpsFormat(o *fsmpb.Op) (uint32, string) {
	// Every op of every batch comes here twice (when it is submitted and
	// when each member applies it): the name and base format of each op
	// type are looked up once, not built per op.
	k := opKind{name: "batch.", format: 1}
	if fd := o.ProtoReflect().WhichOneof(opOneofDesc); fd != nil {
		k = opKinds[fd.Index()]
	}
	format, op := k.format, k.name
	for _, hook := range opFormatHooks {
		if f, n := hook(o); f > format {
			format, op = f, n
		}
	}
	return format, op
}

const opOneof = "op"

var opOneofDesc = (&fsmpb.Op{}).ProtoReflect().Descriptor().Oneofs().ByName(opOneof)

// opKind is an op type's name for messages ("batch." + its field name) and
// the format that introduced it.
type opKind struct {
	name   string
	format uint32
}

// opKinds holds the opKind of each field of Op, by field index.
var opKinds = func() []opKind {
	fields := (&fsmpb.Op{}).ProtoReflect().Descriptor().Fields()
	out := make([]opKind, fields.Len())
	for i := range out {
		name := "batch." + string(fields.Get(i).Name())
		out[i] = opKind{name: name, format: 1}
		if f, ok := opFormats[name]; ok {
			out[i].format = f
		}
	}
	return out
}()

// Halt describes why the FSM stopped applying the log.
type Halt struct {
	Index  uint64 // the log entry it could not apply
	Reason string // what it is, and what to do
}

// Halted returns why the FSM stopped applying the log, or nil while it
// applies it.
func (f *FSM) Halted() *Halt {
	if !f.halted.Load() {
		return nil // the common case, without the lock Apply holds
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.halt == nil {
		return nil
	}
	h := *f.halt
	return &h
}

// SetMaxFormat makes the FSM apply only commands of formats ≤ n, as a
// build of format n would (TEST ONLY: triadd --test-format-version, to run
// a member as the previous build in upgrade tests). 0 means FormatVersion.
func (f *FSM) SetMaxFormat(n uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxFormat = n
}

// MaxFormat is the highest command format this FSM applies.
func (f *FSM) MaxFormat() uint32 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.maxFormatLocked()
}

func (f *FSM) maxFormatLocked() uint32 {
	if f.maxFormat == 0 || f.maxFormat > FormatVersion {
		return FormatVersion
	}
	return f.maxFormat
}

// unknownCommand returns why cmd cannot be applied by this build ("" when
// it can): it is empty, carries a command or batch op this build's
// fsmpb does not know (proto keeps it as an unknown field), or one of a
// format above the FSM's maximum. Checked before anything is applied, so a
// halted entry changes nothing.
func (f *FSM) unknownCommand(cmd *fsmpb.Command) string {
	max := f.maxFormatLocked()
	if cmd.Cmd == nil {
		if len(cmd.ProtoReflect().GetUnknown()) > 0 {
			return fmt.Sprintf("it holds a command type this build (command format %d) does not know, written by a newer Triad", max)
		}
		return "it has no command set (an empty entry, or written by a newer Triad)"
	}
	for i, o := range cmd.GetBatch().GetOps() {
		if o.Op == nil && len(o.ProtoReflect().GetUnknown()) > 0 {
			return fmt.Sprintf("op %d of its batch is of a type this build (command format %d) does not know, written by a newer Triad", i, max)
		}
	}
	if format, op := FormatOf(cmd); format > max {
		return fmt.Sprintf("it holds %s, a command of format %d, and this build applies formats up to %d", op, format, max)
	}
	return ""
}

// haltAt stops applying the log at entry index (call with the lock held).
func (f *FSM) haltAt(index, term uint64, why string) {
	defer f.halted.Store(true)
	f.halt = &Halt{Index: index, Reason: fmt.Sprintf(
		"this member stopped applying the replicated log at entry %d (term %d): %s; "+
			"upgrade this member to the Triad version the other members run and restart it "+
			"(it then replays the log and catches up; see docs/upgrading.md)", index, term, strings.TrimSpace(why))}
}

// ErrHalted is returned by Snapshot on a halted FSM: its state stops at
// the halted entry, so a snapshot labelled with a later index would lose
// the commands after it.
type ErrHalted struct{ Halt }

func (e *ErrHalted) Error() string { return "fsm: no snapshot: " + e.Reason }
