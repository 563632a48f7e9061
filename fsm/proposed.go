package fsm

import (
	"unsafe"

	"github.com/hashicorp/raft"

	"github.com/triadlm/triad/proto/fsmpb"
)

// The leader proposes a command it has just built and encoded; Raft hands
// the very same bytes back to its Apply once they commit (the entry comes
// from the proposal's future, or from the log cache holding that slice).
// Decoding them again would cost the leader an allocation per op and ~4 %
// of its CPU (docs/performance.md, "Session 9"), so the proposer registers
// the command under the address of its encoding (Proposed) and Apply takes
// it back instead of decoding.
//
// This changes nothing the state machine computes: the registered command
// is the one the bytes encode (proto.Marshal of it produced them, and
// neither side changes either afterwards), and the table holds the bytes,
// so their address cannot be reused for other bytes while registered.
// Followers, and a leader replaying its log, decode as before.
//
// Only the proposer has callers waiting for answers. With
// AnswerProposedOnly, entries this member did not propose get their
// answers without the copies of the leases granted (fsmpb.Lease in
// OpResult), which nobody would read; the state they leave is the same.

// Proposed registers cmd as the decoded form of data, which this member is
// about to propose through Raft. The command must not change afterwards.
// A proposal that fails must be withdrawn (Withdraw).
func (f *FSM) Proposed(data []byte, cmd *fsmpb.Command) {
	if len(data) == 0 {
		return
	}
	f.propMu.Lock()
	if f.proposed == nil {
		f.proposed = map[*byte]proposal{}
	}
	f.proposed[unsafe.SliceData(data)] = proposal{data: data, cmd: cmd}
	f.propMu.Unlock()
}

// Withdraw forgets a proposal whose Raft future failed: if the entry is
// applied after all (a leader that lost its office while the entry was on
// its way), it is decoded like any other. When Withdraw returns, the FSM
// no longer reads the command.
func (f *FSM) Withdraw(data []byte) {
	if len(data) == 0 {
		return
	}
	f.propMu.Lock()
	delete(f.proposed, unsafe.SliceData(data))
	f.propMu.Unlock()
	// An apply that took the command before it was withdrawn (the entry
	// committed after all, under the next leader) holds f.mu until done
	// with it: waiting for it lets the caller change the command again.
	f.mu.Lock()
	f.mu.Unlock()
}

// AnswerProposedOnly makes the FSM build full answers only for the entries
// this member proposed (see Proposed); a member sets it once, before
// applying anything.
func (f *FSM) AnswerProposedOnly() {
	f.mu.Lock()
	f.proposedOnly = true
	f.mu.Unlock()
}

// proposal is one registered command and the bytes that encode it.
type proposal struct {
	data []byte
	cmd  *fsmpb.Command
}

// takeProposed returns and forgets the command registered for l's data,
// or nil.
func (f *FSM) takeProposed(l *raft.Log) *fsmpb.Command {
	if len(l.Data) == 0 {
		return nil
	}
	p := unsafe.SliceData(l.Data)
	f.propMu.Lock()
	defer f.propMu.Unlock()
	e, ok := f.proposed[p]
	if !ok || len(e.data) != len(l.Data) {
		return nil
	}
	delete(f.proposed, p)
	return e.cmd
}
