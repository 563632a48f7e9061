package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
)

// An op whose caller's deadline passed while it waited behind a busy
// pipeline (a paused member) is never flushed: its caller gave up, and a
// late proposal would take a seat nobody holds (issue 11 point 7).
func TestBatcherDropsExpiredOps(t *testing.T) {
	f := newFakeFlush(t, true)
	b := newBatcher(64, 1, f.flush)
	startBatcher(t, b)
	first := submitAsync(context.Background(), b, "first")
	f.waitEntered(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	late := submitAsync(ctx, b, "late") // held by run, waiting for the pipeline
	if o := await(t, late); !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("late submit: %v, want context.DeadlineExceeded", o.err)
	}
	// A submission with a live deadline queued behind it is still served.
	live := submitAsync(context.Background(), b, "live")
	waitQueued(t, b, 1)
	f.open()
	checkEcho(t, await(t, first))
	checkEcho(t, await(t, live))
	for _, g := range f.snapshot() {
		for _, id := range g {
			if id == "late" {
				t.Fatalf("an op past its deadline was flushed: groups %v", f.snapshot())
			}
		}
	}
}

// submitUntil: the dropped op's result is nil, the others are answered,
// and flush gets each live op's deadline.
func TestBatcherPerOpDeadlines(t *testing.T) {
	var got []time.Time
	b := newBatcher(64, 1, func(ops []*fsmpb.Op, d []time.Time) ([]*fsmpb.OpResult, error) {
		got = append(got, d...)
		return echo(ops), nil
	})
	startBatcher(t, b)
	later := time.Now().Add(time.Hour)
	res, err := b.submitUntil(context.Background(),
		[]*fsmpb.Op{grantOp("a"), grantOp("gone"), grantOp("c")},
		[]time.Time{{}, time.Now().Add(-time.Second), later})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].GetMessage() != "a" || res[1] != nil || res[2].GetMessage() != "c" {
		t.Fatalf("results %v, want a, nil, c", res)
	}
	if len(got) != 2 || !got[0].IsZero() || !got[1].Equal(later) {
		t.Fatalf("flush deadlines %v, want [zero, %v]", got, later)
	}
	// Nothing live: flush is not called at all.
	calls := len(got)
	res, err = b.submitUntil(context.Background(), []*fsmpb.Op{grantOp("x")}, []time.Time{time.Now().Add(-time.Millisecond)})
	if err != nil || len(res) != 1 || res[0] != nil || len(got) != calls {
		t.Fatalf("all expired: %v %v, flush saw %d deadlines", res, err, len(got)-calls)
	}
}

func TestForwardedDeadlines(t *testing.T) {
	ops := &fsmpb.Batch{Ops: []*fsmpb.Op{grantOp("a"), grantOp("b")}}
	before := time.Now()
	d := forwardedDeadlines(context.Background(), &peerpb.ForwardRequest{Batch: ops, DeadlineInMs: []int64{0, 1500}})
	if !d[0].IsZero() || d[1].Before(before.Add(1500*time.Millisecond)) || d[1].After(time.Now().Add(1500*time.Millisecond)) {
		t.Fatalf("deadlines %v", d)
	}
	// An older follower sends none: the call's deadline holds for all.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want, _ := ctx.Deadline()
	d = forwardedDeadlines(ctx, &peerpb.ForwardRequest{Batch: ops})
	if !d[0].Equal(want) || !d[1].Equal(want) {
		t.Fatalf("deadlines of an older follower %v, want %v", d, want)
	}
}

// In process, on a formed cluster: an op past its deadline is dropped by a
// follower (never forwarded) and by the leader (never proposed): no log
// entry, no request record; a live one goes through.
func TestExpiredOpsAreNeverProposed(t *testing.T) {
	ms := startMembers(t, nil, nil, nil)
	if err := form(t, ms); err != nil {
		t.Fatal(err)
	}
	ms = leaderAndFollowers(t, ms)
	leader, follower := ms[0].s, ms[1].s
	op := func(id string) []*fsmpb.Op {
		g := validGrant()
		g.RequestId = id
		return []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}}
	}
	past := []time.Time{time.Now().Add(-time.Second)}
	last := leader.node.raft.LastIndex()
	for _, m := range []*Server{follower, leader} {
		res, err := m.submitOpsUntil(ctxT(t), op("late-"+m.cfg.Name), past, false)
		if err != nil || len(res) != 1 || res[0] != nil {
			t.Fatalf("%s: expired op: %v %v, want a nil (dropped) result", m.cfg.Name, res, err)
		}
	}
	if got := leader.node.raft.LastIndex(); got != last {
		t.Fatalf("dropped ops reached the log: last index %d -> %d", last, got)
	}
	// A live op from the follower is forwarded and decided.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := follower.submitOps(ctx, op("live"), false)
	if err != nil || len(res) != 1 || res[0] == nil || res[0].Code != fsmpb.Code_UNKNOWN_FEATURE {
		t.Fatalf("live op: %v %v, want an UNKNOWN_FEATURE answer (no license enrolled)", res, err)
	}
	if got := leader.node.raft.LastIndex(); got == last {
		t.Fatalf("the live op did not reach the log")
	}

	// The leader's side of a forward: an op whose time left has passed
	// when the leader's queue flushes (its clock moved on a minute, as
	// after a pause) is dropped and reported; one without a deadline is
	// decided. Set before the submission, so the batcher reads it after.
	leader.applyQ.now = func() time.Time { return time.Now().Add(time.Minute) }
	resp, err := (&peerService{s: leader}).Forward(ctx, &peerpb.ForwardRequest{
		Batch:        &fsmpb.Batch{Ops: append(op("fwd-late"), op("fwd-none")...)},
		DeadlineInMs: []int64{1000, 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Dropped) != 1 || resp.Dropped[0] != 0 || len(resp.Results) != 2 || resp.Results[1].GetCode() != fsmpb.Code_UNKNOWN_FEATURE {
		t.Fatalf("forward answered dropped %v results %v, want op 0 dropped and op 1 decided", resp.Dropped, resp.Results)
	}
}
