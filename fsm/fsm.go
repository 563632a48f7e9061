// Package fsm is Triad's replicated state machine: the license pool, the
// leases and the request table that makes checkouts idempotent.
//
// Every member applies the same Raft log to its own FSM and must end in the
// same state, byte for byte. So Apply reads no clock (the proposing leader
// stamps now_ms into each Command), draws no random numbers, does no I/O,
// starts no goroutines and never lets map iteration order show. Business
// refusals ("no seat left") are returned as values (*fsmpb.OpResult); a log
// entry that cannot be decoded is a programming error and panics, so that a
// member stops rather than diverges.
//
// Reads (Licenses, Leases, Usage, ...) are safe concurrently with Apply and
// return copies.
package fsm

import (
	"fmt"
	"sync"

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
	cmd := decodeCommand(l)
	if f.observer != nil {
		return f.applyObserved(l, cmd)
	}
	return f.applyCommand(l, cmd)
}

func (f *FSM) applyCommand(l *raft.Log, cmd *fsmpb.Command) interface{} {
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
		return s.applyEnrollLicense(now, l.Index, c.EnrollLicense)
	case *fsmpb.Command_RemoveLicense:
		return s.idempotent(now, c.RemoveLicense.GetRequestId(), kindRemoveLicense, func() *fsmpb.OpResult {
			return s.applyRemoveLicense(now, c.RemoveLicense)
		})
	case *fsmpb.Command_LicenseTick:
		return s.applyLicenseTick(now)
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
		return s.applySetSettings(c.SetSettings)
	default:
		panic(fmt.Sprintf("fsm: log entry %d has an unknown command type %T", l.Index, c))
	}
}

// decodeCommand panics when the entry is not a Command: every member would
// fail the same way, and stopping is better than guessing.
func decodeCommand(l *raft.Log) *fsmpb.Command {
	cmd := &fsmpb.Command{}
	if err := proto.Unmarshal(l.Data, cmd); err != nil {
		panic(fmt.Sprintf("fsm: log entry %d (term %d, %d bytes) is not a fsmpb.Command: %v",
			l.Index, l.Term, len(l.Data), err))
	}
	if cmd.Cmd == nil {
		panic(fmt.Sprintf("fsm: log entry %d (term %d, %d bytes) has no command set "+
			"(empty entry, or written by a newer version of Triad)", l.Index, l.Term, len(l.Data)))
	}
	return cmd
}

func result(code fsmpb.Code, format string, args ...any) *fsmpb.OpResult {
	return &fsmpb.OpResult{Code: code, Message: fmt.Sprintf(format, args...)}
}
