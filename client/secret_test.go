package client

import (
	"bytes"
	"testing"
	"time"

	"github.com/triadlm/triad/proto/triadv1"
)

// The client keeps each lease's secret and sends it on every renewal and
// release, on whichever member answers, including when a retried checkout
// resolved to the grant of an earlier attempt whose answer was lost. The
// fake cluster refuses (and counts) any renewal or release without it.
func TestLeaseSecretKeptAcrossRetryAndFailover(t *testing.T) {
	cl := newFakeCluster(t, 3)
	// Member 0 grants, then never answers: the secret comes with the answer
	// to the retry on member 1, which returns the same grant.
	cl.members[0].set(func(m *fakeMember) { m.hangAfterCheckout = true })
	c := newTestClient(t, cl.addrs(), WithCallTimeout(200*time.Millisecond), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ID()
	if cl.numLeases() != 1 || !bytes.Equal(l.cluster.secret, cl.secretOf(id)) || len(l.cluster.secret) == 0 {
		t.Fatalf("after the retried checkout: %d leases, client secret %q, cluster secret %q", cl.numLeases(), l.cluster.secret, cl.secretOf(id))
	}
	// Renew on each member in turn, the others down.
	for i := range cl.members {
		for j, m := range cl.members {
			m.set(func(m *fakeMember) { m.unavailable = i != j })
		}
		before := len(cl.members[i].renewCalls())
		if err := c.renew.roundNow(ctx); err != nil {
			t.Fatal(err)
		}
		if len(cl.members[i].renewCalls()) == before {
			t.Fatalf("member %d was not asked to renew", i)
		}
		if l.ID() != id || l.State() != Held {
			t.Fatalf("after renewing on member %d: lease %d %v, want %d held", i, l.ID(), l.State(), id)
		}
	}
	if n := len(cl.allCheckouts()); n != 2 {
		t.Fatalf("%d checkouts: a renewal was refused and the lease checked out again", n)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if cl.numLeases() != 0 || cl.refusedSecrets() != 0 {
		t.Fatalf("after release: %d leases, %d refusals for a wrong secret", cl.numLeases(), cl.refusedSecrets())
	}
}

// A lease the cluster forgot is checked out again; the new grant's secret
// replaces the old one, so the renewals after it succeed.
func TestLeaseSecretOfRegrantUsed(t *testing.T) {
	cl := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	old := l.ID()
	cl.drop(old)
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if l.ID() == old || l.State() != Held {
		t.Fatalf("lease %d %v after the cluster forgot %d", l.ID(), l.State(), old)
	}
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if cl.numLeases() != 0 || cl.refusedSecrets() != 0 {
		t.Fatalf("%d leases left, %d refusals for a wrong secret", cl.numLeases(), cl.refusedSecrets())
	}
}

// Another process that sends a lease id it learned (here: a copy of this
// client's request, with its own client id) neither gets the lease back
// nor can renew or release it.
func TestOtherClientCannotTakeOverALease(t *testing.T) {
	cl := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad", RequestID: "shared-id"})
	if err != nil {
		t.Fatal(err)
	}
	rpc := c.cluster.members[0].rpc
	co, err := rpc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: ProtocolVersion, RequestId: "shared-id", Feature: "cad", ClientId: "intruder"})
	if err != nil {
		t.Fatal(err)
	}
	if co.GetLease().GetLeaseId() == l.ID() || bytes.Equal(co.GetLeaseSecret(), l.cluster.secret) {
		t.Fatalf("another client id with the same request id got lease %d", co.GetLease().GetLeaseId())
	}
	rel, err := rpc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: ProtocolVersion, LeaseIds: []uint64{l.ID()}})
	if err != nil || rel.GetResults()[0].GetReleased() {
		t.Fatalf("release without the secret: %v %v", rel, err)
	}
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if l.State() != Held || cl.numLeases() != 2 {
		t.Fatalf("lease %v, %d leases after the attempt", l.State(), cl.numLeases())
	}
}
