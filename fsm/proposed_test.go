package fsm

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// proposedLog is the entry of cmd as the leader proposes it: registered
// with f, then handed to Apply with the same bytes.
func proposedLog(t *testing.T, f *FSM, index uint64, now int64, cmd *fsmpb.Command) *raft.Log {
	cmd.NowMs = now
	l := commandLog(t, index, cmd)
	f.Proposed(l.Data, cmd)
	return l
}

// proposals is the number of registered proposals.
func (f *FSM) proposals() int {
	f.propMu.Lock()
	defer f.propMu.Unlock()
	return len(f.proposed)
}

// editRegistered changes the request id of the first grant registered for
// l, after encoding: only a member that takes the command back instead of
// decoding sees the edit. (The contract forbids this edit; here it tells
// the two paths apart.)
func editRegistered(f *FSM, l *raft.Log) {
	f.proposed[&l.Data[0]].cmd.GetBatch().Ops[0].GetGrant().RequestId = "edited"
}

// The proposer's registered command is applied instead of a decoding of
// the bytes, and the registration is gone once applied.
func TestProposedCommandTakenBackNotDecoded(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 5, 3)))
	h.index++
	l := proposedLog(t, h.f, h.index, t0, batchCmd(grantOp("r1", "cad", 5, 1)))
	editRegistered(h.f, l)
	r := h.f.Apply(l).(*fsmpb.BatchResult).Results[0]
	if r.Code != fsmpb.Code_OK || r.GetLease().GetRequestId() != "edited" {
		t.Fatalf("applied %v %q, want the registered command (request id edited)", r.Code, r.GetLease().GetRequestId())
	}
	if n := h.f.proposals(); n != 0 {
		t.Fatalf("%d proposals left registered after the apply", n)
	}
	// The same bytes again (a replay from the log store) are decoded.
	h.index++
	again := &raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: l.Data}
	if r := h.f.Apply(again).(*fsmpb.BatchResult).Results[0]; r.GetLease().GetRequestId() != "r1" {
		t.Fatalf("replayed entry granted %q, want r1 decoded from the bytes", r.GetLease().GetRequestId())
	}
}

// A withdrawn proposal, or one whose bytes are a different slice, is not
// taken: the entry is decoded.
func TestWithdrawnOrOtherBytesDecoded(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 5, 3)))
	h.index++
	l := proposedLog(t, h.f, h.index, t0, batchCmd(grantOp("r1", "cad", 5, 1)))
	editRegistered(h.f, l)
	h.f.Withdraw(l.Data)
	if n := h.f.proposals(); n != 0 {
		t.Fatalf("%d proposals registered after Withdraw", n)
	}
	if r := h.f.Apply(l).(*fsmpb.BatchResult).Results[0]; r.GetLease().GetRequestId() != "r1" {
		t.Fatalf("withdrawn proposal applied as %q, want r1 decoded", r.GetLease().GetRequestId())
	}

	h.index++
	l2 := proposedLog(t, h.f, h.index, t0, batchCmd(grantOp("r2", "cad", 5, 1)))
	editRegistered(h.f, l2)
	copied := &raft.Log{Index: l2.Index, Term: 1, Type: raft.LogCommand, Data: bytes.Clone(l2.Data)}
	if r := h.f.Apply(copied).(*fsmpb.BatchResult).Results[0]; r.GetLease().GetRequestId() != "r2" {
		t.Fatalf("entry with a copy of the bytes applied as %q, want r2 decoded", r.GetLease().GetRequestId())
	}
	// A prefix of registered bytes starts at the same address: not taken.
	h.index++
	cmd := batchCmd(grantOp("r3", "cad", 5, 1))
	cmd.NowMs = t0
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	longer := make([]byte, len(data)+2)
	copy(longer, data)
	edited := proto.Clone(cmd).(*fsmpb.Command)
	edited.GetBatch().Ops[0].GetGrant().RequestId = "edited"
	h.f.Proposed(longer, edited)
	entry := &raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: longer[:len(data)]}
	if r := h.f.Apply(entry).(*fsmpb.BatchResult).Results[0]; r.GetLease().GetRequestId() != "r3" {
		t.Fatalf("entry applied as %v %q, want r3 decoded", r.Code, r.GetLease().GetRequestId())
	}
}

// With AnswerProposedOnly, entries the member did not propose answer
// without lease copies; the proposer's answers are full, and both members
// end in the same state, byte for byte.
func TestAnswerProposedOnlySameState(t *testing.T) {
	leader, follower := formed(t), formed(t)
	leader.f.AnswerProposedOnly()
	follower.f.AnswerProposedOnly()
	enroll := lic("L1", t0-day, t0+day, feat("cad", 5, 2))
	leader.mustEnroll(t0, enroll)
	follower.mustEnroll(t0, enroll)
	cmds := []*fsmpb.Command{
		batchCmd(grantOp("r1", "cad", 5, 1), grantOp("r2", "cad", 5, 1), grantOp("r3", "cad", 5, 1)),
		batchCmd(grantOp("r1", "cad", 5, 1), renewOp(1), releaseOp(2)),
		batchCmd(grantOp("r4", "cad", 5, 1)),
	}
	for i, cmd := range cmds {
		leader.index++
		follower.index++
		l := proposedLog(t, leader.f, leader.index, t0+int64(i)*second, cmd)
		full := leader.f.Apply(l).(*fsmpb.BatchResult)
		quiet := follower.f.Apply(&raft.Log{Index: follower.index, Term: 1, Type: raft.LogCommand, Data: bytes.Clone(l.Data)}).(*fsmpb.BatchResult)
		for j, r := range full.Results {
			q := quiet.Results[j]
			if r.Code != q.Code || r.Message != q.Message {
				t.Fatalf("entry %d op %d: proposer %v %q, other member %v %q", i, j, r.Code, r.Message, q.Code, q.Message)
			}
			if r.Code == fsmpb.Code_OK && r.Lease == nil && len(r.Leases) == 0 {
				t.Fatalf("entry %d op %d: the proposer's answer lacks the lease", i, j)
			}
			if q.Lease != nil {
				t.Fatalf("entry %d op %d: a member that did not propose built a lease copy", i, j)
			}
		}
	}
	if !bytes.Equal(leader.f.MarshalSnapshot(), follower.f.MarshalSnapshot()) {
		t.Fatal("the proposer and another member ended in different states")
	}
	// Without AnswerProposedOnly (the default), every entry answers fully.
	plain := formed(t)
	plain.mustEnroll(t0, enroll)
	if r := plain.apply(t0, batchCmd(grantOp("r1", "cad", 5, 1))).(*fsmpb.BatchResult).Results[0]; r.GetLease().GetId() == 0 {
		t.Fatalf("default FSM answered a grant without its lease: %v", r)
	}
}

// A halted FSM answers a registered batch with one refusal per op and
// still lets the registration go.
func TestHaltedFSMLetsProposalGo(t *testing.T) {
	h := formed(t)
	h.index++
	h.f.haltAt(h.index, 1, "test halt")
	l := proposedLog(t, h.f, h.index+1, t0, batchCmd(grantOp("r1", "cad", 5, 1), grantOp("r2", "cad", 5, 1)))
	res, ok := h.f.Apply(l).(*fsmpb.BatchResult)
	if !ok || len(res.Results) != 2 || res.Results[0].Code != fsmpb.Code_HALTED {
		t.Fatalf("halted FSM answered %v, want a batch of two HALTED results", res)
	}
	if n := h.f.proposals(); n != 0 {
		t.Fatalf("%d proposals left registered by a halted FSM", n)
	}
}
