package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// withMargin shortens the held margin so that short TTLs give usable
// windows: held until LastRenewed + TTL − d.
func withMargin(d time.Duration) Option { return func(c *config) { c.margin = d } }

// recorder collects every StateChange delivered to the handler.
type recorder struct {
	mu  sync.Mutex
	evs []StateChange
}

func (r *recorder) handle(ev StateChange) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *recorder) of(l *Lease) []StateChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []StateChange
	for _, ev := range r.evs {
		if ev.Lease == l {
			out = append(out, ev)
		}
	}
	return out
}

func (r *recorder) states(l *Lease) []LeaseState {
	var out []LeaseState
	for _, ev := range r.of(l) {
		out = append(out, ev.To)
	}
	return out
}

func sameStates(a, b []LeaseState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// drain reads a lease's Changes channel until it is closed.
func drain(t *testing.T, l *Lease) []LeaseState {
	t.Helper()
	var out []LeaseState
	timeout := time.After(testTimeout)
	for {
		select {
		case ev, ok := <-l.Changes():
			if !ok {
				return out
			}
			out = append(out, ev.To)
		case <-timeout:
			t.Fatalf("Changes not closed; got %v", out)
		}
	}
}

func TestGraceThenLostWhenNoMemberAnswers(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.grace = 1
	rec := &recorder{}
	c := newTestClient(t, cl.addrs(), WithCallTimeout(100*time.Millisecond), withMargin(100*time.Millisecond), WithStateHandler(rec.handle))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l.GraceLeft() != time.Second {
		t.Fatalf("GraceLeft while held %v, want the whole grace period 1s", l.GraceLeft())
	}
	cl.setAll(func(m *fakeMember) { m.unavailable = true })
	waitFor(t, "grace", func() bool { return l.State() == Grace })
	if left := l.GraceLeft(); left <= 0 || left > time.Second {
		t.Fatalf("GraceLeft %v", left)
	}
	if l.Err() != nil {
		t.Fatalf("err %v in grace", l.Err())
	}
	waitDone(t, l)
	if l.State() != Lost || !errors.Is(l.Err(), ErrLeaseLost) || l.GraceLeft() != 0 {
		t.Fatalf("state %v err %v grace left %v", l.State(), l.Err(), l.GraceLeft())
	}
	last := l.LastRenewed()
	waitFor(t, "both changes delivered", func() bool { return len(rec.of(l)) == 2 })
	evs := rec.of(l)
	if evs[0].To != Grace || evs[1].To != Lost || evs[0].From != Held || evs[1].From != Grace {
		t.Fatalf("changes %v", rec.states(l))
	}
	// Held until LastRenewed + TTL − margin, then grace_seconds of Grace,
	// on the monotonic clock.
	if held := evs[0].At.Sub(last); held < 900*time.Millisecond {
		t.Fatalf("left Held %v after the last renewal, before TTL − margin", held)
	}
	if g := evs[0].GraceLeft; g <= 0 || g > time.Second {
		t.Fatalf("GraceLeft in the change %v", g)
	}
	if d := evs[1].At.Sub(last); d < 1900*time.Millisecond {
		t.Fatalf("lost %v after the last renewal, before TTL − margin + grace", d)
	}
	if !errors.Is(evs[1].Err, ErrLeaseLost) {
		t.Fatalf("change err %v", evs[1].Err)
	}
	if got := drain(t, l); !sameStates(got, []LeaseState{Grace, Lost}) {
		t.Fatalf("Changes delivered %v", got)
	}
}

func TestGraceEndsWhenAMemberAnswersAgain(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.grace = 60
	rec := &recorder{}
	c := newTestClient(t, cl.addrs(), WithCallTimeout(100*time.Millisecond), withMargin(100*time.Millisecond), WithStateHandler(rec.handle))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ID()
	cl.setAll(func(m *fakeMember) { m.unavailable = true })
	waitFor(t, "grace", func() bool { return l.State() == Grace })
	if left := l.GraceLeft(); left <= 58*time.Second || left > time.Minute {
		t.Fatalf("GraceLeft %v, want about a minute", left)
	}
	cl.members[2].set(func(m *fakeMember) { m.unavailable = false })
	waitFor(t, "held again", func() bool { return l.State() == Held })
	if l.ID() != id || len(cl.allCheckouts()) != 1 || cl.numLeases() != 1 {
		t.Fatalf("id %d (was %d), %d checkouts: renewal must not check out again", l.ID(), id, len(cl.allCheckouts()))
	}
	waitFor(t, "changes delivered", func() bool { return len(rec.of(l)) == 2 })
	if got := rec.states(l); !sameStates(got, []LeaseState{Grace, Held}) {
		t.Fatalf("changes %v", got)
	}
}

func TestHungMembersLeadToGrace(t *testing.T) {
	cl := newFakeCluster(t, 2)
	c := newTestClient(t, cl.addrs(), WithCallTimeout(time.Second), withMargin(100*time.Millisecond))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Calls that never return are cut by the attempt timeout (half a round
	// interval), and the lease's timer moves it on regardless.
	cl.setAll(func(m *fakeMember) { m.hang = true })
	waitFor(t, "grace", func() bool { return l.State() == Grace })
	cl.setAll(func(m *fakeMember) { m.hang = false })
	waitFor(t, "held again", func() bool { return l.State() == Held })
}

func TestRecheckoutWhenClusterForgetsLease(t *testing.T) {
	cl := newFakeCluster(t, 3)
	rec := &recorder{}
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour), WithStateHandler(rec.handle))
	ctx := testCtx(t)
	gone, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad", Version: 2, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	oldID, oldReq := gone.ID(), gone.RequestID()
	cl.drop(oldID)
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if gone.State() != Held || gone.ID() == oldID || gone.ID() == 0 {
		t.Fatalf("state %v id %d (was %d)", gone.State(), gone.ID(), oldID)
	}
	reqs := cl.allCheckouts()
	if len(reqs) != 3 {
		t.Fatalf("%d checkouts, want one re-checkout", len(reqs))
	}
	re := reqs[len(reqs)-1]
	if re.RequestId == oldReq || re.Feature != "cad" || re.Version != 2 || re.Count != 3 {
		t.Fatalf("re-checkout %v", re)
	}
	if cl.inUse("cad") != 4 || kept.State() != Held {
		t.Fatalf("in use %d", cl.inUse("cad"))
	}
	waitFor(t, "id change reported", func() bool { return len(rec.of(gone)) == 1 })
	if ev := rec.of(gone)[0]; ev.From != Held || ev.To != Held || ev.LeaseID != gone.ID() {
		t.Fatalf("change %+v", ev)
	}
	if len(rec.of(kept)) != 0 {
		t.Fatal("the other lease reported a change")
	}
	// The new lease is renewed from now on.
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	calls := cl.allRenewCalls()
	if last := calls[len(calls)-1]; len(last) != 2 {
		t.Fatalf("renewed %v", last)
	}
}

func TestRecheckoutRefusedIsLost(t *testing.T) {
	cl := newFakeCluster(t, 3)
	rec := &recorder{}
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour), WithStateHandler(rec.handle))
	other := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	cl.drop(l.ID())
	if _, err := other.Checkout(ctx, CheckoutRequest{Feature: "solo"}); err != nil {
		t.Fatal(err)
	}
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(t, l)
	if l.State() != Lost || !errors.Is(l.Err(), ErrLeaseLost) || !errors.Is(l.Err(), ErrNoSeat) {
		t.Fatalf("state %v err %v", l.State(), l.Err())
	}
	if n := len(cl.allCheckouts()); n != 3 {
		t.Fatalf("%d checkouts, want exactly one re-checkout", n)
	}
	if got := drain(t, l); !sameStates(got, []LeaseState{Lost}) {
		t.Fatalf("Changes %v", got)
	}
	// A lost lease is no longer renewed, and releasing it is a no-op.
	n := len(cl.allRenewCalls())
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if len(cl.allRenewCalls()) != n {
		t.Fatal("lost lease still renewed")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBackupTakesOverAndGivesBack(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.grace = 60
	bk := newFakeCluster(t, 1)
	rec := &recorder{}
	c := newTestClient(t, cl.addrs(), WithBackup(bk.addrs()...), WithCallTimeout(100*time.Millisecond),
		withMargin(100*time.Millisecond), WithStateHandler(rec.handle))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ID()
	// While the cluster answers, the backup is never asked.
	waitFor(t, "two renewals", func() bool { return len(cl.allRenewCalls()) >= 2 })
	if len(bk.allCheckouts()) != 0 || len(bk.allRenewCalls()) != 0 || l.Source() != SourceCluster {
		t.Fatal("backup used while the cluster answers")
	}

	cl.setAll(func(m *fakeMember) { m.unavailable = true })
	waitFor(t, "lease on the backup", func() bool { return l.Source() == SourceBackup && l.State() == Held })
	if bk.inUse("cad") != 1 || l.ID() == 0 {
		t.Fatalf("backup in use %d", bk.inUse("cad"))
	}
	waitFor(t, "backup renewals", func() bool { return len(bk.allRenewCalls()) >= 2 })
	if l.State() != Held {
		t.Fatalf("state %v on the backup", l.State())
	}

	cl.setAll(func(m *fakeMember) { m.unavailable = false })
	waitFor(t, "lease back on the cluster", func() bool { return l.Source() == SourceCluster && l.State() == Held })
	if l.ID() != id {
		t.Fatalf("id %d, want the original cluster lease %d", l.ID(), id)
	}
	waitFor(t, "backup lease released", func() bool { return bk.inUse("cad") == 0 })
	if len(cl.allCheckouts()) != 1 {
		t.Fatal("the surviving cluster lease was checked out again")
	}
	waitFor(t, "changes delivered", func() bool { return len(rec.of(l)) == 3 })
	evs := rec.of(l)
	if evs[0].To != Grace || evs[1].To != Held || evs[1].Source != SourceBackup || evs[2].To != Held || evs[2].Source != SourceCluster || evs[2].LeaseID != id {
		t.Fatalf("changes %+v", evs)
	}
	if err := l.Release(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if cl.inUse("cad") != 0 {
		t.Fatal("not released")
	}
}

func TestBackToClusterChecksOutAgainWhenClusterLeaseGone(t *testing.T) {
	cl := newFakeCluster(t, 2)
	bk := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs(), WithBackup(bk.addrs()...), WithCallTimeout(100*time.Millisecond), withMargin(100*time.Millisecond))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ID()
	cl.setAll(func(m *fakeMember) { m.unavailable = true })
	waitFor(t, "lease on the backup", func() bool { return l.Source() == SourceBackup && l.State() == Held })
	cl.drop(id) // expired on the cluster meanwhile
	cl.setAll(func(m *fakeMember) { m.unavailable = false })
	waitFor(t, "lease back on the cluster", func() bool { return l.Source() == SourceCluster && l.State() == Held })
	if l.ID() == id || cl.inUse("cad") != 1 {
		t.Fatalf("id %d (was %d), in use %d", l.ID(), id, cl.inUse("cad"))
	}
	waitFor(t, "backup lease released", func() bool { return bk.inUse("cad") == 0 })
}

func TestCheckoutFallsBackToBackup(t *testing.T) {
	cl := newFakeCluster(t, 2)
	bk := newFakeCluster(t, 1)
	cl.setAll(func(m *fakeMember) { m.unavailable = true })
	c := newTestClient(t, cl.addrs(), WithBackup(bk.addrs()...), WithCallTimeout(200*time.Millisecond))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l.Source() != SourceBackup || l.State() != Held || bk.inUse("cad") != 1 {
		t.Fatalf("source %v state %v", l.Source(), l.State())
	}
	first := cl.allCheckouts()[0].RequestId
	cl.setAll(func(m *fakeMember) { m.unavailable = false })
	waitFor(t, "lease on the cluster", func() bool { return l.Source() == SourceCluster })
	// The cluster checkout resumes the unanswered one: same request id.
	reqs := cl.allCheckouts()
	if last := reqs[len(reqs)-1].RequestId; last != first || cl.inUse("cad") != 1 {
		t.Fatalf("request id %q, first %q; in use %d", last, first, cl.inUse("cad"))
	}
	waitFor(t, "backup lease released", func() bool { return bk.inUse("cad") == 0 })
}

func TestDenialIsNotSentToBackup(t *testing.T) {
	cl := newFakeCluster(t, 2)
	bk := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs(), WithBackup(bk.addrs()...))
	if _, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "nope"}); !errors.Is(err, ErrUnknownFeature) {
		t.Fatalf("err %v", err)
	}
	if len(bk.allCheckouts()) != 0 {
		t.Fatal("a cluster denial went to the backup")
	}
}

func TestChangesClosedAfterRelease(t *testing.T) {
	cl := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs())
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, l); !sameStates(got, []LeaseState{Released}) {
		t.Fatalf("Changes %v", got)
	}
}

func TestSlowHandlerDoesNotDelayRenewal(t *testing.T) {
	cl := newFakeCluster(t, 2)
	block := make(chan struct{})
	defer close(block)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour), WithStateHandler(func(StateChange) { <-block }))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	cl.drop(l.ID()) // the re-checkout reports a change the handler sits on
	for range 3 {
		if err := c.renew.roundNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(cl.allRenewCalls()); n != 3 {
		t.Fatalf("%d rounds, want 3", n)
	}
}

func TestReleaseHonoursContext(t *testing.T) {
	cl := newFakeCluster(t, 2)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	cl.setAll(func(m *fakeMember) { m.unavailable = true })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := l.Release(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if l.State() != Released {
		t.Fatalf("state %v", l.State())
	}
}
