package client

import (
	"errors"
	"testing"
	"time"
)

func (cl *fakeCluster) idleOf(id uint64) (int64, bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	ms, ok := cl.lastIdle[id]
	return ms, ok
}

// SetIdle is reported with renewals; Touch clears it; a lease the cluster
// releases for idleness becomes IdleReleased (a state change, not Done)
// and Touch checks it out again with the same request fields.
func TestSetIdleTouchAndIdleRelease(t *testing.T) {
	cl := newFakeCluster(t, 3)
	rec := &recorder{}
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour), WithStateHandler(rec.handle))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "solo", Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ID()
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if ms, ok := cl.idleOf(id); !ok || ms != 0 {
		t.Fatalf("active lease reported idle %d ms (renewed %v)", ms, ok)
	}
	l.SetIdle(time.Now().Add(-90 * time.Second))
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if ms, _ := cl.idleOf(id); ms < 90_000 || ms > 120_000 {
		t.Fatalf("idle reported as %d ms, want about 90 s", ms)
	}
	if err := l.Touch(ctx); err != nil || !l.IdleSince().IsZero() {
		t.Fatalf("Touch on a held lease: %v, idle since %v", err, l.IdleSince())
	}
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if ms, _ := cl.idleOf(id); ms != 0 {
		t.Fatalf("after Touch the renewal reported %d ms idle", ms)
	}

	// Idle past the cluster's timeout: released, the client is told.
	cl.mu.Lock()
	cl.idleLimitMs = 60_000
	cl.mu.Unlock()
	l.SetIdle(time.Now().Add(-2 * time.Minute))
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if l.State() != IdleReleased || !errors.Is(l.Err(), ErrIdleTimeout) {
		t.Fatalf("state %v err %v, want IdleReleased with ErrIdleTimeout", l.State(), l.Err())
	}
	select {
	case <-l.Done():
		t.Fatal("an idle-released lease is Done")
	default:
	}
	waitFor(t, "idle release reported", func() bool { return len(rec.of(l)) == 1 })
	if ev := rec.of(l)[0]; ev.From != Held || ev.To != IdleReleased || !errors.Is(ev.Err, ErrIdleTimeout) || ev.To.String() != "released: idle timeout" {
		t.Fatalf("change %+v", ev)
	}
	if cl.inUse("solo") != 0 {
		t.Fatal("the fake cluster still holds the seat")
	}
	// Rounds neither renew nor check it out while idle-released.
	n := len(cl.allCheckouts())
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if len(cl.allCheckouts()) != n {
		t.Fatal("an idle-released lease was checked out without Touch")
	}

	// Someone else takes the only seat: Touch fails and the lease stays
	// IdleReleased.
	other := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ol, err := other.Checkout(ctx, CheckoutRequest{Feature: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Touch(ctx); !errors.Is(err, ErrNoSeat) || !errors.Is(err, ErrIdleTimeout) || l.State() != IdleReleased {
		t.Fatalf("Touch with no seat free: %v, state %v", err, l.State())
	}
	if err := ol.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Now Touch checks it out again: Held, new id, same request fields.
	if err := l.Touch(ctx); err != nil {
		t.Fatal(err)
	}
	if l.State() != Held || l.ID() == id || l.ID() == 0 || l.Err() != nil {
		t.Fatalf("after Touch: state %v id %d (was %d) err %v", l.State(), l.ID(), id, l.Err())
	}
	reqs := cl.allCheckouts()
	if re := reqs[len(reqs)-1]; re.Feature != "solo" || re.Version != 2 {
		t.Fatalf("re-checkout %v", re)
	}
	waitFor(t, "re-checkout reported", func() bool { return len(rec.of(l)) == 2 })
	if ev := rec.of(l)[1]; ev.From != IdleReleased || ev.To != Held || ev.LeaseID != l.ID() {
		t.Fatalf("change %+v", ev)
	}
	// It is renewed again.
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := cl.idleOf(l.ID()); !ok {
		t.Fatal("the new lease is not renewed")
	}
	// Release of an idle-released lease ends it.
	l.SetIdle(time.Now().Add(-2 * time.Minute))
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if l.State() != IdleReleased {
		t.Fatalf("state %v", l.State())
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(t, l)
	if l.State() != Released {
		t.Fatalf("state %v after Release", l.State())
	}
	if err := l.Touch(ctx); !errors.Is(err, ErrReleased) {
		t.Fatalf("Touch on a released lease: %v", err)
	}
}
