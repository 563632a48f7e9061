package fsm

import (
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

func securedGrantOp(req, client string) *fsmpb.Op {
	op := grantOp(req, "cad", 0, 1)
	op.GetGrant().ClientId = client
	op.GetGrant().Secret = []byte("secret-" + req)
	return op
}

// TestDenialIsFinal reproduces issue 11 point 7: a checkout refused for
// lack of a seat, whose request id comes back (a paused member's buffered
// forward) after a seat freed, is refused again and takes no seat.
func TestDenialIsFinal(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 0, 1)))
	held := h.op(t0+1, securedGrantOp("r-held", "c1"))
	if held.Code != fsmpb.Code_OK {
		t.Fatalf("first grant: %v %s", held.Code, held.Message)
	}
	denied := h.op(t0+2, securedGrantOp("r-late", "c2"))
	if denied.Code != fsmpb.Code_NO_SEAT {
		t.Fatalf("second grant: %v %s, want RESOURCE_EXHAUSTED", denied.Code, denied.Message)
	}
	// The seat frees; the same request id again gets the same refusal.
	rel := &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{held.Lease.Id}, Secrets: [][]byte{[]byte("secret-r-held")}}}}
	if r := h.op(t0+3, rel); r.Leases[0].Code != fsmpb.Code_OK {
		t.Fatalf("release: %v", r.Leases[0])
	}
	for _, f := range []*FSM{h.f, roundTrip(t, h.f)} {
		h2 := &harness{t: t, f: f, index: h.index}
		again := h2.op(t0+4, securedGrantOp("r-late", "c2"))
		if again.Code != denied.Code || again.Message != denied.Message || again.Lease != nil {
			t.Fatalf("retry of a refused request: %v %q lease %v, want %v %q", again.Code, again.Message, again.Lease, denied.Code, denied.Message)
		}
		if ls := f.Leases(); len(ls) != 0 {
			t.Fatalf("a refused request id took a seat: %v", ls)
		}
		// Another client's request with the same id is its own request.
		if r := h2.op(t0+5, securedGrantOp("r-late", "c3")); r.Code != fsmpb.Code_OK {
			t.Fatalf("another client's request id: %v %s", r.Code, r.Message)
		}
	}
}

// TestDenialIsForgottenLikeGrants: a refusal is remembered as long as an
// ended grant is, then pruned.
func TestDenialIsForgottenLikeGrants(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+10*day, feat("cad", 0, 1)))
	if r := h.op(t0+1, securedGrantOp("r-held", "c1")); r.Code != fsmpb.Code_OK {
		t.Fatalf("grant: %v", r.Code)
	}
	if r := h.op(t0+2, securedGrantOp("r-den", "c2")); r.Code != fsmpb.Code_NO_SEAT {
		t.Fatalf("deny: %v", r.Code)
	}
	h.apply(t0+2+requestMemoryMs, expireCmd())
	if _, ok := h.f.s.requests.get(requestKey{client: "c2", request: "r-den"}); !ok {
		t.Fatalf("refusal forgotten before requestMemoryMs")
	}
	if msg := h.f.s.denied[requestKey{client: "c2", request: "r-den"}]; msg == "" {
		t.Fatalf("refusal kept without its message")
	}
	h.apply(t0+3+requestMemoryMs, expireCmd())
	if _, ok := h.f.s.requests.get(requestKey{client: "c2", request: "r-den"}); ok {
		t.Fatalf("refusal still remembered after requestMemoryMs")
	}
	if len(h.f.s.denied) != 0 {
		t.Fatalf("refusal messages kept after their records were pruned: %v", h.f.s.denied)
	}
	// Forgotten: the request id is decided afresh (the seat expired).
	if r := h.op(t0+4+requestMemoryMs, securedGrantOp("r-den", "c2")); r.Code != fsmpb.Code_OK {
		t.Fatalf("fresh grant after pruning: %v %s", r.Code, r.Message)
	}
}

// TestRequestMemorySurvivesClockJump: a new leader whose clock is an hour
// ahead (or a cluster restarted after an outage) rebases the leases; the
// jump must not count towards the request memory, else a request refused
// a moment before is granted on its retry, and a retry of an ended grant
// takes a new seat (found by the robustness suite: clock-step-leader then
// restart-cluster). A rebase of an older log (no memory_from_ms)
// still forgets them, as the binaries that wrote it did.
func TestRequestMemorySurvivesClockJump(t *testing.T) {
	setup := func() (*harness, *fsmpb.OpResult) {
		h := formed(t)
		h.mustEnroll(t0, lic("L1", t0-day, t0+10*day, feat("cad", 0, 1)))
		held := h.op(t0+1, securedGrantOp("r-held", "c1"))
		if held.Code != fsmpb.Code_OK {
			t.Fatalf("grant: %v", held.Code)
		}
		if r := h.op(t0+2, securedGrantOp("r-den", "c2")); r.Code != fsmpb.Code_NO_SEAT {
			t.Fatalf("deny: %v", r.Code)
		}
		rel := &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{held.Lease.Id}, Secrets: [][]byte{[]byte("secret-r-held")}}}}
		if r := h.op(t0+3, rel); r.Leases[0].Code != fsmpb.Code_OK {
			t.Fatalf("release: %v", r.Leases[0])
		}
		return h, held
	}
	const hour = int64(3_600_000)
	// The new leader, an hour ahead, found t0+3 committed; a batch of its
	// own (stamped before its rebase) may come first.
	keep := &fsmpb.Command{Cmd: &fsmpb.Command_RebaseLeases{RebaseLeases: &fsmpb.RebaseLeases{MemoryFromMs: t0 + 3}}}
	noop := &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{999}, Secrets: [][]byte{[]byte("x")}}}}

	h, held := setup()
	h.op(t0+3+hour, noop)
	h.apply(t0+3+hour, keep)
	h.apply(t0+4+hour, expireCmd())
	for _, f := range []*FSM{h.f, roundTrip(t, h.f)} {
		h2 := &harness{t: t, f: f, index: h.index}
		if r := h2.op(t0+5+hour, securedGrantOp("r-den", "c2")); r.Code != fsmpb.Code_NO_SEAT || r.Lease != nil {
			t.Fatalf("retry of a refused request after a leader an hour ahead: %v %s, want the refusal again", r.Code, r.Message)
		}
		if r := h2.op(t0+6+hour, securedGrantOp("r-held", "c1")); r.Code != fsmpb.Code_NOT_FOUND || r.Lease != nil {
			t.Fatalf("retry of an ended grant after a leader an hour ahead: %v %s, want 'has ended' (lease %d)", r.Code, r.Message, held.Lease.Id)
		}
		// The memory still ends: requestMemoryMs of committed time after
		// the jump.
		h2.apply(t0+4+hour+requestMemoryMs, expireCmd())
		if r := h2.op(t0+5+hour+requestMemoryMs, securedGrantOp("r-den", "c2")); r.Code != fsmpb.Code_OK {
			t.Fatalf("refusal still remembered requestMemoryMs after the jump: %v %s", r.Code, r.Message)
		}
	}

	// An older log's rebase replays as it was written: the jump counts.
	h, _ = setup()
	h.apply(t0+3+hour, rebaseCmd())
	h.apply(t0+4+hour, expireCmd())
	if r := h.op(t0+5+hour, securedGrantOp("r-den", "c2")); r.Code != fsmpb.Code_OK {
		t.Fatalf("an older log's rebase replays differently: %v %s", r.Code, r.Message)
	}
}
