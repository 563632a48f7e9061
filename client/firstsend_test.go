package client

import (
	"testing"
	"time"
)

// heldUntilOf is the end of Held as the lease computes it.
func heldUntilOf(l *Lease) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.heldUntil()
}

// A checkout granted by a first attempt that never answered and resolved by
// a retry is Held until first send + TTL − margin: the server counts the
// TTL from the first attempt's grant, not from the retry.
func TestRetriedCheckoutHeldFromFirstSend(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.members[0].set(func(m *fakeMember) { m.hangAfterCheckout = true })
	const callTimeout = 600 * time.Millisecond
	c := newTestClient(t, cl.addrs(), WithCallTimeout(callTimeout), WithRenewInterval(time.Hour))
	before := time.Now()
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "solo", TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.members[1].checkoutReqs()) != 1 {
		t.Fatal("the checkout was not retried on member 1")
	}
	ttl := 30 * time.Second
	margin := l.margin(ttl)
	got := heldUntilOf(l).Sub(before)
	if want := ttl - margin; got < want || got > want+callTimeout/3 {
		t.Fatalf("held until first send + %s, want + %s (TTL %s − margin %s): based on the retry, not the first attempt", got, want, ttl, margin)
	}
}

// A renewal whose first attempt was applied but not answered, and whose
// retry was, counts from the first attempt's send time.
func TestRetriedRenewalHeldFromFirstSend(t *testing.T) {
	cl := newFakeCluster(t, 3)
	c := newTestClient(t, cl.addrs(), WithCallTimeout(time.Second), WithRenewInterval(time.Hour))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "solo", TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cl.members[0].set(func(m *fakeMember) { m.hangAfterRenew = true })
	checkedOut := l.LastRenewed()
	// Not a wait for a condition: the clock must move on, so that a
	// renewal's base can be told from the checkout's (asserted below).
	time.Sleep(100 * time.Millisecond)
	if err := c.renew.roundNow(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	m0, m1 := cl.members[0], cl.members[1]
	m0.mu.Lock()
	first := m0.renewTimes
	m0.mu.Unlock()
	m1.mu.Lock()
	retried := m1.renewTimes
	m1.mu.Unlock()
	if len(first) != 1 || len(retried) != 1 {
		t.Fatalf("renewals: member0 %d member1 %d, want 1 and 1", len(first), len(retried))
	}
	if got := l.LastRenewed(); !got.After(checkedOut) {
		t.Fatalf("last renewed %s, not after the checkout (%s): the renewal was not taken", got.Format("15:04:05.000"), checkedOut.Format("15:04:05.000"))
	}
	if got := l.LastRenewed(); got.After(first[0]) {
		t.Fatalf("last renewed %s after the first attempt arrived (%s): based on the retry (%s)",
			got.Format("15:04:05.000"), first[0].Format("15:04:05.000"), retried[0].Format("15:04:05.000"))
	}
}

// The margin covers the call timeout, within TTL/5.
func TestMarginCoversCallTimeout(t *testing.T) {
	cl := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs(), WithCallTimeout(5*time.Second))
	l := newLease(c, CheckoutRequest{Feature: "cad"})
	for _, x := range []struct{ ttl, want time.Duration }{
		{30 * time.Second, 5 * time.Second},
		{120 * time.Second, 5 * time.Second},
		{10 * time.Second, 2 * time.Second},
	} {
		if got := l.margin(x.ttl); got != x.want {
			t.Errorf("margin for TTL %s with a 5 s call timeout = %s, want %s", x.ttl, got, x.want)
		}
	}
}

// A checkout that the cluster granted without answering, so that the lease
// was taken from the backup, is resolved by a later round with the same
// request id: the cluster lease counts from the first send, not from that
// round.
func TestResolvedCheckoutHeldFromFirstSend(t *testing.T) {
	cl := newFakeCluster(t, 2)
	bk := newFakeCluster(t, 1)
	cl.setAll(func(m *fakeMember) { m.hangAfterCheckout = true })
	const callTimeout = 200 * time.Millisecond
	c := newTestClient(t, cl.addrs(), WithBackup(bk.addrs()...), WithCallTimeout(callTimeout), WithRenewInterval(time.Hour))
	before := time.Now()
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l.Source() != SourceBackup || cl.inUse("cad") != 1 {
		t.Fatalf("source %v, cluster seats %d: want the backup, with an unanswered cluster grant", l.Source(), cl.inUse("cad"))
	}
	cl.setAll(func(m *fakeMember) { m.hangAfterCheckout = false })
	// The resolving round starts well after the first send: the checkout
	// itself waited out a call timeout on a hanging member before it went
	// to the backup. A base taken from the round would show.
	round := time.Now()
	if gap := round.Sub(before); gap < callTimeout {
		t.Fatalf("the checkout answered %s after its first send, want at least the call timeout (%s) spent on a hanging member", gap, callTimeout)
	}
	if err := c.renew.roundNow(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if l.Source() != SourceCluster || cl.inUse("cad") != 1 {
		t.Fatalf("source %v, cluster seats %d: want the first grant, resolved", l.Source(), cl.inUse("cad"))
	}
	l.mu.Lock()
	renewed := l.cluster.renewed
	l.mu.Unlock()
	if d := renewed.Sub(before); d > callTimeout/2 || !renewed.Before(round) {
		t.Fatalf("cluster lease based %s after the first send (the resolving round began %s after it): on the round, not the first send", d, round.Sub(before))
	}
}
