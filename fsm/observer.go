package fsm

import (
	"strings"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/triadlm/triad/proto/fsmpb"
)

// AdminEvent describes one administration command this FSM applied, for
// the member's audit log. It is built under the FSM's lock from the log
// entry and the state, so every member sees the same events for the same
// log; Cmd and Result are only valid during the observer call.
type AdminEvent struct {
	Index uint64
	NowMs int64
	// Command is the command's field name in fsmpb.Command ("set_passwords").
	Command string
	Cmd     *fsmpb.Command
	// Result is what Apply returned (*fsmpb.OpResult, or *fsmpb.BatchResult
	// for a Batch).
	Result any
	// Session is a copy of the session the command names (as it was before
	// the command), nil when it names none or an unknown one.
	Session *fsmpb.AdminSession
	// Ended are copies of the sessions this command ended (displaced by a
	// local takeover, closed when idle), as they were before it.
	Ended []*fsmpb.AdminSession
	// Ops are the positions of the administration ops of a Batch: ops that
	// carry an admin session (a force-release).
	Ops []int
}

// AdminObserver is called by Apply after each administration command, under
// the FSM's lock, in log order. It must not block or call the FSM: copy what
// it needs and queue it. Apply does no I/O; the observer's owner does.
type AdminObserver func(AdminEvent)

// SetAdminObserver installs o (nil removes it). Set it before Raft starts
// replaying the log so that no command is missed.
func (f *FSM) SetAdminObserver(o AdminObserver) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observer = o
}

var cmdOneof = (&fsmpb.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("cmd")

// routine commands are the cluster's own bookkeeping, proposed by the
// leader on its own or carrying client traffic: not administration. Every
// other command is audited, so a new administration command is audited
// without being listed here.
var routine = map[protoreflect.Name]bool{
	"batch": true, "expire_leases": true, "rebase_leases": true, "license_tick": true,
	"recycle_sweep": true, "touch_session": true, "expire_sessions": true,
}

// sweeps are routine commands reported only when they end a session
// (closed as idle).
var sweeps = map[protoreflect.Name]bool{"expire_sessions": true, "touch_session": true}

// opSessionFields are the session-id fields of Batch op types: an op that
// carries a session is an administrator's (a force-release), audited like
// a command. Found by name so that such a field needs no change here.
var opSessionFields = func() map[protoreflect.FullName]protoreflect.FieldDescriptor {
	out := map[protoreflect.FullName]protoreflect.FieldDescriptor{}
	fields := (&fsmpb.Op{}).ProtoReflect().Descriptor().Oneofs().ByName("op").Fields()
	for i := 0; i < fields.Len(); i++ {
		md := fields.Get(i).Message()
		if md == nil {
			continue
		}
		for j := 0; j < md.Fields().Len(); j++ {
			fd := md.Fields().Get(j)
			if fd.Kind() == protoreflect.StringKind && !fd.IsList() && strings.HasSuffix(string(fd.Name()), "session_id") {
				out[md.FullName()] = fd
			}
		}
	}
	return out
}()

// commandName is the set field of cmd's oneof.
func commandName(cmd *fsmpb.Command) protoreflect.Name {
	if fd := cmd.ProtoReflect().WhichOneof(cmdOneof); fd != nil {
		return fd.Name()
	}
	return ""
}

// sessionIDOf returns the session a command names: the opened or closed
// one, or a "session_id" field of the command's message.
func sessionIDOf(cmd *fsmpb.Command) string {
	switch c := cmd.Cmd.(type) {
	case *fsmpb.Command_OpenSession:
		return c.OpenSession.GetSession().GetId()
	case *fsmpb.Command_CloseSession:
		return c.CloseSession.GetId()
	case *fsmpb.Command_TouchSession:
		return c.TouchSession.GetId()
	}
	fd := cmd.ProtoReflect().WhichOneof(cmdOneof)
	if fd == nil || fd.Message() == nil {
		return ""
	}
	m := cmd.ProtoReflect().Get(fd).Message()
	if sf := m.Descriptor().Fields().ByName("session_id"); sf != nil && sf.Kind() == protoreflect.StringKind && !sf.IsList() {
		return m.Get(sf).String()
	}
	return ""
}

// adminOps returns the positions of a batch's ops that carry a session, and
// the first such session id.
func adminOps(b *fsmpb.Batch) ([]int, string) {
	if len(opSessionFields) == 0 {
		return nil, ""
	}
	var out []int
	first := ""
	for i, op := range b.GetOps() {
		fd := op.ProtoReflect().WhichOneof(op.ProtoReflect().Descriptor().Oneofs().ByName("op"))
		if fd == nil || fd.Message() == nil {
			continue
		}
		m := op.ProtoReflect().Get(fd).Message()
		sf, ok := opSessionFields[m.Descriptor().FullName()]
		if !ok {
			continue
		}
		if id := m.Get(sf).String(); id != "" {
			out = append(out, i)
			if first == "" {
				first = id
			}
		}
	}
	return out, first
}

// liveSessions copies the live sessions, by id.
func (a *adminState) liveSessions() map[string]*fsmpb.AdminSession {
	out := map[string]*fsmpb.AdminSession{}
	for id, s := range a.sessions {
		if s.EndedMs == 0 {
			out[id] = proto.Clone(s).(*fsmpb.AdminSession)
		}
	}
	return out
}

// applyObserved applies cmd and tells the observer when it is an
// administration command.
func (f *FSM) applyObserved(l *raft.Log, cmd *fsmpb.Command) interface{} {
	name := commandName(cmd)
	var ops []int
	sid := ""
	switch {
	case name == "batch":
		ops, sid = adminOps(cmd.GetBatch())
		if len(ops) == 0 {
			return f.applyCommand(l, cmd)
		}
	case routine[name] && !sweeps[name]:
		return f.applyCommand(l, cmd)
	default:
		sid = sessionIDOf(cmd)
	}
	a := &f.s.admin
	var sess *fsmpb.AdminSession
	if s, ok := a.sessions[sid]; ok && sid != "" {
		sess = proto.Clone(s).(*fsmpb.AdminSession)
	} else if o, ok := cmd.Cmd.(*fsmpb.Command_OpenSession); ok {
		sess = proto.Clone(o.OpenSession.GetSession()).(*fsmpb.AdminSession)
	}
	before := a.liveSessions()
	res := f.applyCommand(l, cmd)
	var ended []*fsmpb.AdminSession
	for _, id := range a.sortedSessionIDs() {
		if s, was := before[id]; was && a.sessions[id].EndedMs != 0 {
			ended = append(ended, s)
		}
	}
	if sweeps[name] && len(ended) == 0 {
		return res // nothing ended: not worth a record every sweep or touch
	}
	f.observer(AdminEvent{Index: l.Index, NowMs: cmd.GetNowMs(), Command: string(name), Cmd: cmd, Result: res,
		Session: sess, Ended: ended, Ops: ops})
	return res
}
