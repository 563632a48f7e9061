// Package fsm is Triad's replicated state machine: the license pool, the
// leases and the request table that makes checkouts idempotent.
//
// Every member applies the same Raft log to its own FSM and must end in the
// same state, byte for byte. So Apply reads no clock (the proposing leader
// stamps now_ms into each Command), draws no random numbers, does no I/O,
// starts no goroutines and never lets map iteration order show. Business
// refusals ("no seat left") are returned as values (*fsmpb.OpResult); a log
// entry that cannot be decoded is a programming error and panics, so that a
// member stops rather than diverges: the FSM halts at that entry, applies
// nothing more and says why (format.go, docs/upgrading.md).
//
// Reads (Licenses, Leases, Usage, ...) are safe concurrently with Apply and
// return copies.
package fsm

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// FSM implements raft.BatchingFSM.
type FSM struct {
	mu sync.RWMutex
	s  *state
	// appliedIndex is the Raft index of the last command applied; snapshots
	// carry it.
	appliedIndex uint64
	// observer is told about administration commands (observer.go).
	observer AdminObserver
	// leaseObserver is told about lease events (trace.go).
	leaseObserver LeaseObserver
	// halt is set when Apply met a command this build cannot apply; from
	// then on nothing is applied (format.go).
	halt *Halt
	// halted mirrors halt != nil for readers on every request (Halted).
	halted atomic.Bool
	// maxFormat caps the command formats applied (test only; 0 = all).
	maxFormat uint32
	// proposed holds the commands this member proposed, by the address of
	// their encoding, until applied (proposed.go); proposedOnly limits full
	// answers to them.
	propMu       sync.Mutex
	proposed     map[*byte]proposal
	proposedOnly bool
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New returns an empty, unformed state machine.
func New() *FSM {
	return &FSM{s: newState()}
}

// Apply applies one committed log entry. Entries that are not commands
// return nil. For a Batch command the result is a *fsmpb.BatchResult, for
// every other command a *fsmpb.OpResult.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applyLocked(l)
}

// ApplyBatch applies consecutive committed log entries under one lock.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		out[i] = f.applyLocked(l)
	}
	return out
}

func (f *FSM) applyLocked(l *raft.Log) interface{} {
	cmd := f.takeProposed(l)
	if f.halt != nil {
		return f.haltedResult(cmd)
	}
	f.s.quiet = f.proposedOnly && cmd == nil
	var why string
	if cmd == nil {
		cmd, why = decodeCommand(l)
	}
	if why == "" {
		why = f.unknownCommand(cmd)
	}
	if why != "" {
		f.haltAt(l.Index, l.Term, why)
		return f.haltedResult(cmd)
	}
	f.s.observing = f.leaseObserver != nil
	var res interface{}
	if f.observer != nil {
		res = f.applyObserved(l, cmd)
	} else {
		res = f.applyCommand(l, cmd)
	}
	if f.s.observing {
		f.flushLeaseEvents(l.Index)
	}
	return res
}

func (f *FSM) applyCommand(l *raft.Log, cmd *fsmpb.Command) interface{} {
	out := f.applyCommandCase(l, cmd)
	// Seats this command freed go to the queued checkouts (queue.go).
	switch cmd.Cmd.(type) {
	case *fsmpb.Command_EnrollLicense, *fsmpb.Command_RemoveLicense, *fsmpb.Command_LicenseTick,
		*fsmpb.Command_SetRules, *fsmpb.Command_ReplaceMember, *fsmpb.Command_RecycleNamedUser,
		*fsmpb.Command_RecycleSweep:
		f.s.markAllQueues()
	}
	f.s.serveQueues(cmd.GetNowMs(), l.Index)
	return out
}

func (f *FSM) applyCommandCase(l *raft.Log, cmd *fsmpb.Command) interface{} {
	now := cmd.GetNowMs()
	f.appliedIndex = l.Index
	s := f.s
	s.lastNowMs = now
	if id, admin := adminSessionOf(cmd); admin && (s.enforcing() || checkedBefore(cmd)) {
		if r := s.requireFull(now, id); r != nil {
			return r
		}
	}
	switch c := cmd.Cmd.(type) {
	case *fsmpb.Command_FormCluster:
		return s.applyFormCluster(c.FormCluster)
	case *fsmpb.Command_EnrollLicense:
		return s.histAfter(now, s.applyEnrollLicense(now, l.Index, c.EnrollLicense), s.histCapacityChanged)
	case *fsmpb.Command_RemoveLicense:
		return s.histAfter(now, s.idempotent(now, c.RemoveLicense.GetRequestId(), kindRemoveLicense, func() *fsmpb.OpResult {
			return s.applyRemoveLicense(now, c.RemoveLicense)
		}), s.histCapacityChanged)
	case *fsmpb.Command_LicenseTick:
		return s.histAfter(now, s.applyLicenseTick(now), func(now int64) {
			s.histCapacityChanged(now)
			s.histTrim(now)
		})
	case *fsmpb.Command_RecycleNamedUser:
		return s.idempotent(now, c.RecycleNamedUser.GetRequestId(), kindRecycleNamedUser, func() *fsmpb.OpResult {
			return s.applyRecycleNamedUser(now, c.RecycleNamedUser)
		})
	case *fsmpb.Command_RecycleSweep:
		return s.applyRecycleSweep(now)
	case *fsmpb.Command_SetRules:
		return s.applySetRules(c.SetRules)
	case *fsmpb.Command_AddVendorKey:
		return s.applyAddVendorKey(c.AddVendorKey)
	case *fsmpb.Command_RemoveVendorKey:
		return s.applyRemoveVendorKey(c.RemoveVendorKey)
	case *fsmpb.Command_AdoptVendorTrust:
		return s.applyAdoptVendorTrust(c.AdoptVendorTrust)
	case *fsmpb.Command_Batch:
		return s.applyBatch(now, l.Index, c.Batch)
	case *fsmpb.Command_ExpireLeases:
		return s.applyExpireLeases(now)
	case *fsmpb.Command_RebaseLeases:
		return s.applyRebaseLeases(now, c.RebaseLeases.GetMemoryFromMs())
	case *fsmpb.Command_OpenSession:
		return s.applyOpenSession(now, c.OpenSession)
	case *fsmpb.Command_CloseSession:
		return s.applyCloseSession(c.CloseSession)
	case *fsmpb.Command_TouchSession:
		return s.applyTouchSession(now, c.TouchSession)
	case *fsmpb.Command_ExpireSessions:
		return s.applyExpireSessions(now)
	case *fsmpb.Command_SetPasswords:
		return s.applySetPasswords(c.SetPasswords)
	case *fsmpb.Command_SetSettings:
		return s.histAfter(now, s.applySetSettings(c.SetSettings), s.histSettingsChanged)
	case *fsmpb.Command_ReplaceMember:
		return s.histAfter(now, s.applyReplaceMember(now, l.Index, c.ReplaceMember), s.histCapacityChanged)
	case *fsmpb.Command_SetTrace:
		return s.applySetTrace(c.SetTrace)
	case *fsmpb.Command_StartHistory:
		return s.applyStartHistory(now)
	default:
		// unknownCommand checked every type this build knows: a type
		// added to fsmpb without a case here is a programming error.
		panic(fmt.Sprintf("fsm: log entry %d has a command type without a case in applyCommand: %T", l.Index, c))
	}
}

// decodeCommand decodes the entry, or says why it is not a Command: then
// the FSM halts (format.go): every member of the same build would fail the
// same way, and stopping is better than guessing.
func decodeCommand(l *raft.Log) (*fsmpb.Command, string) {
	cmd := &fsmpb.Command{}
	if err := proto.Unmarshal(l.Data, cmd); err != nil {
		return nil, fmt.Sprintf("it is not a fsmpb.Command (%d bytes: %v)", len(l.Data), err)
	}
	return cmd, ""
}

// haltedResult is the answer of a halted FSM: the command's usual result
// type, refused with HALTED.
func (f *FSM) haltedResult(cmd *fsmpb.Command) interface{} {
	r := result(fsmpb.Code_HALTED, "%s", f.halt.Reason)
	if b := cmd.GetBatch(); b != nil {
		out := &fsmpb.BatchResult{}
		for range b.GetOps() {
			out.Results = append(out.Results, r)
		}
		return out
	}
	return r
}

// histAfter runs the history's follow-up of a command that succeeded.
func (s *state) histAfter(now int64, r *fsmpb.OpResult, follow func(int64)) *fsmpb.OpResult {
	if r.GetCode() == fsmpb.Code_OK {
		follow(now)
	}
	return r
}

func result(code fsmpb.Code, format string, args ...any) *fsmpb.OpResult {
	return &fsmpb.OpResult{Code: code, Message: fmt.Sprintf(format, args...)}
}
