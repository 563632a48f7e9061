package client

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// queuedCheckout runs a queued Checkout of solo in the background and
// records the positions it reports.
type queuedCheckout struct {
	mu        sync.Mutex
	positions []int
	lease     *Lease
	err       error
	done      chan struct{}
}

func startQueued(ctx context.Context, c *Client, reqID string) *queuedCheckout {
	q := &queuedCheckout{done: make(chan struct{})}
	go func() {
		defer close(q.done)
		l, err := c.Checkout(ctx, CheckoutRequest{Feature: "solo", TTL: 3 * time.Second, RequestID: reqID, Queue: true,
			MaxWait: time.Minute, OnQueue: func(s QueueStatus) {
				q.mu.Lock()
				q.positions = append(q.positions, s.Position)
				q.mu.Unlock()
			}})
		q.mu.Lock()
		q.lease, q.err = l, err
		q.mu.Unlock()
	}()
	return q
}

func (q *queuedCheckout) lastPosition() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.positions) == 0 {
		return 0
	}
	return q.positions[len(q.positions)-1]
}

func (q *queuedCheckout) result(t *testing.T) (*Lease, error, []int) {
	t.Helper()
	select {
	case <-q.done:
	case <-time.After(testTimeout):
		t.Fatal("queued Checkout did not return")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lease, q.err, q.positions
}

func TestQueuedCheckoutWaitsInOrder(t *testing.T) {
	cl := newFakeCluster(t, 3)
	ctx := testCtx(t)
	holder := newTestClient(t, cl.addrs())
	held, err := holder.Checkout(ctx, CheckoutRequest{Feature: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	b := startQueued(ctx, newTestClient(t, cl.addrs(), WithIdentity("bob", "ws2", 2, "cid-bob")), "req-b")
	waitFor(t, "bob queued first", func() bool { return b.lastPosition() == 1 })
	c := startQueued(ctx, newTestClient(t, cl.addrs(), WithIdentity("cid", "ws3", 3, "cid-cid")), "req-c")
	waitFor(t, "cid queued second", func() bool { return c.lastPosition() == 2 })
	// The leader goes away while both wait: they keep waiting on the others,
	// with the same request ids.
	cl.members[0].set(func(m *fakeMember) { m.unavailable = true })
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lb, err, pb := b.result(t)
	if err != nil || lb.RequestID() != "req-b" || lb.State() != Held {
		t.Fatalf("bob: %v %v", lb, err)
	}
	// Reported on change only (the length changes when cid comes): the
	// position was 1 throughout.
	if pc := slices.Compact(slices.Clone(pb)); len(pc) != 1 || pc[0] != 1 || len(pb) > 2 {
		t.Fatalf("bob's reports %v, want position 1, at most twice", pb)
	}
	waitFor(t, "cid moves up", func() bool { return c.lastPosition() == 1 })
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lc, err, pc := c.result(t)
	if err != nil || lc.RequestID() != "req-c" {
		t.Fatalf("cid: %v %v", lc, err)
	}
	if c := slices.Compact(slices.Clone(pc)); len(c) != 2 || c[0] != 2 || c[1] != 1 {
		t.Fatalf("cid's positions %v, want 2 then 1", pc)
	}
	for _, m := range cl.members {
		m.mu.Lock()
		for _, r := range m.checkouts {
			if r.ClientId == "cid-cid" && (r.RequestId != "req-c" || !r.Queue || r.QueueWaitSeconds != 60) {
				t.Errorf("cid sent %v", r)
			}
		}
		m.mu.Unlock()
	}
}

func TestQueuedCheckoutCancelLeavesTheQueue(t *testing.T) {
	cl := newFakeCluster(t, 2)
	ctx := testCtx(t)
	holder := newTestClient(t, cl.addrs())
	held, err := holder.Checkout(ctx, CheckoutRequest{Feature: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	b := startQueued(wctx, newTestClient(t, cl.addrs(), WithIdentity("bob", "ws2", 2, "cid-bob")), "req-b")
	waitFor(t, "bob queued", func() bool { return b.lastPosition() == 1 })
	cancel()
	l, err, _ := b.result(t)
	if l != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v %v", l, err)
	}
	queue, cancelled := cl.queueState()
	if len(queue) != 0 || len(cancelled) != 1 || cancelled[0] != "req-b" {
		t.Fatalf("server queue %q, cancelled %q", queue, cancelled)
	}
	// The seat is not taken by the abandoned wait once it frees.
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := cl.inUse("solo"); n != 0 {
		t.Fatalf("%d seats in use after the wait was cancelled", n)
	}
}

func TestQueuedCheckoutGrantedAtOnce(t *testing.T) {
	cl := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs())
	called := false
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "solo", Queue: true, OnQueue: func(QueueStatus) { called = true }})
	if err != nil || l.State() != Held || called {
		t.Fatalf("free seat: %v %v, OnQueue called %v", l, err, called)
	}
	if _, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "solo", MaxWait: time.Minute}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("MaxWait without Queue: %v", err)
	}
}

// TestQueuedCheckoutCancelReleasesALateGrant: the cluster granted the wait
// just before the cancel reached it; the abandoned grant is fetched (same
// request id) and released, so no seat stays taken.
func TestQueuedCheckoutCancelReleasesALateGrant(t *testing.T) {
	cl := newFakeCluster(t, 1)
	ctx := testCtx(t)
	held, err := newTestClient(t, cl.addrs()).Checkout(ctx, CheckoutRequest{Feature: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	b := startQueued(wctx, newTestClient(t, cl.addrs(), WithIdentity("bob", "ws2", 2, "cid-bob")), "req-b")
	waitFor(t, "bob queued", func() bool { return b.lastPosition() == 1 })
	cl.drop(held.ID()) // the holder's seat frees...
	cl.mu.Lock()
	cl.grantOnCancel = true // ...and goes to bob as he cancels
	cl.mu.Unlock()
	cancel()
	if l, err, _ := b.result(t); l != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v %v", l, err)
	}
	waitFor(t, "the late grant released", func() bool { return cl.inUse("solo") == 0 })
	released := false
	for _, m := range cl.members {
		m.mu.Lock()
		released = released || len(m.releases) > 0
		m.mu.Unlock()
	}
	if !released {
		t.Fatal("no release was sent")
	}
}
