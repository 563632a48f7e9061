package client

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A retried checkout whose lease has ended is reported as such, not as an
// unknown feature (issue 11 point 7).
func TestClassifyEndedLease(t *testing.T) {
	err := classify("checkout", status.Error(codes.NotFound, "request r1 already produced lease 7, which has ended"))
	if !errors.Is(err, ErrLeaseEnded) || errors.Is(err, ErrUnknownFeature) || status.Code(err) != codes.NotFound {
		t.Fatalf("ended lease: %v, want ErrLeaseEnded with NOT_FOUND", err)
	}
	err = classify("checkout", status.Error(codes.NotFound, "unknown feature sim: no enrolled license grants it"))
	if !errors.Is(err, ErrUnknownFeature) || errors.Is(err, ErrLeaseEnded) {
		t.Fatalf("unknown feature: %v", err)
	}
}

// Release on a member that does not answer (paused) is retried on the next
// member, within the caller's context.
func TestReleaseRetriesPastAPausedMember(t *testing.T) {
	cl := newFakeCluster(t, 2)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour), WithCallTimeout(200*time.Millisecond))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	cl.members[0].set(func(m *fakeMember) { m.hang = true })
	cl.members[1].set(func(m *fakeMember) { m.hang = false })
	c.cluster.mu.Lock()
	c.cluster.current = 0
	c.cluster.mu.Unlock()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("release past a paused member: %v", err)
	}
	if got := cl.inUse("cad"); got != 0 {
		t.Fatalf("%d seat(s) still held after release", got)
	}
}

// Release reads the answer: a lease the cluster refused to release still
// holds its seat, and the caller is told.
func TestReleaseReportsRefusal(t *testing.T) {
	cl := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	cl.mu.Lock()
	cl.secrets[l.ID()] = []byte("not the client's")
	cl.mu.Unlock()
	err = l.Release(ctx)
	if err == nil {
		t.Fatalf("release refused by the cluster reported success")
	}
	t.Logf("release: %v", err)
}
