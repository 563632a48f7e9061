package client

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// testTimeout bounds every test; all waits below poll against it.
const testTimeout = 10 * time.Second

func newTestClient(t *testing.T, addrs []string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithInsecure(), WithIdentity("alice", "ws1", 42, "cid-1"), WithCallTimeout(time.Second)}, opts...)
	c, err := New(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitDone(t *testing.T, l *Lease) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(testTimeout):
		t.Fatalf("lease %d: Done not closed, state %v", l.ID(), l.State())
	}
}

func TestNewNeedsAddress(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	if _, err := New([]string{"127.0.0.1:1", "127.0.0.1:1"}); err == nil {
		t.Fatal("duplicate address accepted")
	}
}

func TestCheckoutRenewRelease(t *testing.T) {
	cl := newFakeCluster(t, 3)
	c := newTestClient(t, cl.addrs())
	ctx := testCtx(t)

	// TTL 1 s: the default renew interval is TTL/3, so rounds come quickly.
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad", Version: 3, Count: 2, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l.ID() == 0 || l.Feature() != "cad" || l.Version() != 3 || l.Count() != 2 || l.FencingIndex() == 0 || l.RequestID() == "" {
		t.Fatalf("unexpected lease %v", l.Info())
	}
	if l.State() != Held || l.Err() != nil {
		t.Fatalf("state %v err %v", l.State(), l.Err())
	}
	info := l.Info()
	if info.User != "alice" || info.Host != "ws1" || info.Pid != 42 || info.ClientId != "cid-1" {
		t.Fatalf("identity not sent: %v", info)
	}
	info.Feature = "changed"
	if l.Feature() != "cad" {
		t.Fatal("Info is not a copy")
	}
	if got := cl.inUse("cad"); got != 2 {
		t.Fatalf("in use %d, want 2", got)
	}

	first := l.LastRenewed()
	waitFor(t, "two renewals", func() bool { return len(cl.allRenewCalls()) >= 2 })
	if !l.LastRenewed().After(first) {
		t.Fatal("LastRenewed did not advance")
	}
	if l.State() != Held {
		t.Fatalf("state %v after renewals", l.State())
	}

	fs, err := c.Features(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(fs, func(f *triadv1.FeatureUsage) bool { return f.Feature == "cad" })
	if i < 0 || fs[i].InUse != 2 || fs[i].Capacity != 100 {
		t.Fatalf("features %v", fs)
	}

	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(t, l)
	if l.State() != Released || !errors.Is(l.Err(), ErrReleased) {
		t.Fatalf("after release: state %v err %v", l.State(), l.Err())
	}
	if got := cl.inUse("cad"); got != 0 {
		t.Fatalf("in use %d after release, want 0", got)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

func TestFailoverUnavailable(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.members[0].set(func(m *fakeMember) { m.unavailable = true })
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)

	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	if via := l.Info().ViaMember; via != cl.members[1].addr {
		t.Fatalf("checkout went through %s, want %s", via, cl.members[1].addr)
	}
	if n := len(cl.members[0].checkoutReqs()); n != 1 {
		t.Fatalf("member 0 saw %d checkouts, want 1", n)
	}

	// Renewal rounds fail over the same way, within the round.
	cl.members[0].set(func(m *fakeMember) { m.unavailable = false })
	cl.members[1].set(func(m *fakeMember) { m.unavailable = true })
	before := l.LastRenewed()
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if len(cl.members[1].renewCalls()) != 1 || len(cl.members[2].renewCalls()) != 1 {
		t.Fatalf("renew calls: m1 %d m2 %d, want 1 and 1", len(cl.members[1].renewCalls()), len(cl.members[2].renewCalls()))
	}
	if !l.LastRenewed().After(before) || l.State() != Held {
		t.Fatal("renewal on the next member not recorded")
	}
}

func TestFailoverStoppedMember(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.members[0].stop()
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))

	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	if via := l.Info().ViaMember; via == cl.members[0].addr {
		t.Fatalf("checkout answered by the stopped member")
	}
	if cl.inUse("cad") != 1 {
		t.Fatal("seat not taken")
	}
}

func TestAllMembersDownHonoursContext(t *testing.T) {
	cl := newFakeCluster(t, 2)
	for _, m := range cl.members {
		m.set(func(m *fakeMember) { m.unavailable = true })
	}
	c := newTestClient(t, cl.addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	// Backoff after each full round keeps the attempts few.
	if n := len(cl.allCheckouts()); n < 2 || n > 20 {
		t.Fatalf("%d attempts in 300 ms", n)
	}
}

func TestTimedOutCheckoutRetriedWithSameRequestID(t *testing.T) {
	cl := newFakeCluster(t, 3)
	// Member 0 grants, then never answers: the client cannot know the
	// outcome and must resolve it by retrying the same request id.
	cl.members[0].set(func(m *fakeMember) { m.hangAfterCheckout = true })
	c := newTestClient(t, cl.addrs(), WithCallTimeout(200*time.Millisecond), WithRenewInterval(time.Hour))

	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	first, second := cl.members[0].checkoutReqs(), cl.members[1].checkoutReqs()
	if len(first) != 1 || len(second) != 1 {
		t.Fatalf("checkouts: member0 %d member1 %d, want 1 and 1", len(first), len(second))
	}
	if first[0].RequestId == "" || first[0].RequestId != second[0].RequestId || l.RequestID() != first[0].RequestId {
		t.Fatalf("request ids differ: %q %q lease %q", first[0].RequestId, second[0].RequestId, l.RequestID())
	}
	if cl.inUse("solo") != 1 || cl.numLeases() != 1 {
		t.Fatalf("in use %d, leases %d; want one seat", cl.inUse("solo"), cl.numLeases())
	}
}

func TestHungMemberIsSkipped(t *testing.T) {
	cl := newFakeCluster(t, 2)
	cl.members[0].set(func(m *fakeMember) { m.hang = true })
	c := newTestClient(t, cl.addrs(), WithCallTimeout(100*time.Millisecond))
	if _, err := c.Features(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestLeaderHintFollowed(t *testing.T) {
	cl := newFakeCluster(t, 3)
	leader := cl.members[2].addr
	for _, m := range cl.members {
		m.set(func(m *fakeMember) { m.leader = leader })
	}
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)

	if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"}); err != nil {
		t.Fatal(err)
	}
	if n := len(cl.members[0].checkoutReqs()); n != 1 {
		t.Fatalf("first checkout: member 0 saw %d, want 1", n)
	}
	for range 3 {
		if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"}); err != nil {
			t.Fatal(err)
		}
	}
	if n0, n1, n2 := len(cl.members[0].checkoutReqs()), len(cl.members[1].checkoutReqs()), len(cl.members[2].checkoutReqs()); n0 != 1 || n1 != 0 || n2 != 3 {
		t.Fatalf("checkouts per member %d/%d/%d, want 1/0/3", n0, n1, n2)
	}
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(cl.members[2].renewCalls()); n != 1 {
		t.Fatalf("renew went elsewhere than the leader")
	}
}

func TestUnknownLeaderHintIgnored(t *testing.T) {
	cl := newFakeCluster(t, 2)
	cl.members[0].set(func(m *fakeMember) { m.leader = "10.9.9.9:4085" })
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	for range 2 {
		if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(cl.members[0].checkoutReqs()); n != 2 {
		t.Fatalf("member 0 saw %d checkouts, want 2", n)
	}
}

func TestRenewalIsBatched(t *testing.T) {
	cl := newFakeCluster(t, 3)
	// Rounds are triggered by hand so that each one can be counted.
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)

	var want []uint64
	for range 20 {
		l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, l.ID())
	}
	slices.Sort(want)
	for round := 1; round <= 3; round++ {
		if err := c.renew.roundNow(ctx); err != nil {
			t.Fatal(err)
		}
		calls := cl.allRenewCalls()
		if len(calls) != round {
			t.Fatalf("after %d rounds: %d Renew RPCs", round, len(calls))
		}
		got := slices.Sorted(slices.Values(calls[len(calls)-1]))
		if !slices.Equal(got, want) {
			t.Fatalf("round %d renewed %v, want %v", round, got, want)
		}
	}
}

func TestDefaultRenewIntervalIsThirdOfShortestTTL(t *testing.T) {
	cl := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs())
	ctx := testCtx(t)
	if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad", TTL: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if iv := c.renew.interval(); iv != 10*time.Second {
		t.Fatalf("interval %v, want 10s", iv)
	}
	if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad", TTL: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	// 1.5 s rounds up to 2 s on the wire.
	if iv := c.renew.interval(); iv != 2*time.Second/3 {
		t.Fatalf("interval %v, want 2s/3", iv)
	}
}

func TestReleaseOfGoneLeaseSucceeds(t *testing.T) {
	cl := newFakeCluster(t, 2)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	cl.drop(l.ID())
	cl.members[0].set(func(m *fakeMember) { m.unavailable = true })
	if err := l.Release(ctx); err != nil {
		t.Fatalf("release of a gone lease: %v", err)
	}
	if rel := cl.members[1].releaseCalls(); len(rel) != 1 || !slices.Equal(rel[0], []uint64{l.ID()}) {
		t.Fatalf("release calls on member 1: %v", rel)
	}
	if l.State() != Released {
		t.Fatalf("state %v", l.State())
	}
}

func TestCloseStopsRenewer(t *testing.T) {
	cl := newFakeCluster(t, 2)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(10*time.Millisecond))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "renewals", func() bool { return len(cl.allRenewCalls()) >= 3 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.renew.done:
	default:
		t.Fatal("renewer goroutine still running after Close")
	}
	waitDone(t, l)
	if l.State() != Lost || !errors.Is(l.Err(), ErrClosed) || !errors.Is(l.Err(), ErrLeaseLost) {
		t.Fatalf("state %v err %v", l.State(), l.Err())
	}
	if cl.inUse("cad") != 1 {
		t.Fatal("Close released the lease")
	}
	n := len(cl.allRenewCalls())
	// Absence of calls can only be shown by waiting: 10 intervals.
	time.Sleep(100 * time.Millisecond)
	if m := len(cl.allRenewCalls()); m > n+1 { // +1: a request already on the wire
		t.Fatalf("%d Renew calls after Close", m-n)
	}
	if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("checkout after close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestDenials(t *testing.T) {
	cl := newFakeCluster(t, 3)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "solo"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		req      CheckoutRequest
		sentinel error
		code     codes.Code
	}{
		{"no seat", CheckoutRequest{Feature: "solo"}, ErrNoSeat, codes.ResourceExhausted},
		{"unknown feature", CheckoutRequest{Feature: "nope"}, ErrUnknownFeature, codes.NotFound},
		{"version too new", CheckoutRequest{Feature: "cad", Version: 9}, ErrUnknownFeature, codes.NotFound},
		{"expired license", CheckoutRequest{Feature: "expired"}, ErrNotPermitted, codes.PermissionDenied},
		{"invalid argument", CheckoutRequest{Feature: "cad", Count: 5000}, ErrInvalidArgument, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(cl.allCheckouts())
			_, err := c.Checkout(ctx, tt.req)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err %v, want %v", err, tt.sentinel)
			}
			if got := status.Code(err); got != tt.code {
				t.Fatalf("status code %v, want %v", got, tt.code)
			}
			if st, ok := status.FromError(err); !ok || st.Code() != tt.code {
				t.Fatalf("status.FromError: %v %v", st, ok)
			}
			if n := len(cl.allCheckouts()) - before; n != 1 {
				t.Fatalf("denial tried %d times, want once", n)
			}
		})
	}
	if msg := func() string { _, err := c.Checkout(ctx, CheckoutRequest{Feature: "solo"}); return err.Error() }(); msg != "triad: checkout solo: no seat left for solo v 0 (1 of 1 in use)" {
		t.Fatalf("message %q", msg)
	}
}

func TestProtocolVersionError(t *testing.T) {
	cl := newFakeCluster(t, 2)
	c := newTestClient(t, cl.addrs(), WithProtocolVersion(7))
	_, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad"})
	var pv *ProtocolVersionError
	if !errors.As(err, &pv) || pv.Client != 7 || pv.Server != ProtocolVersion {
		t.Fatalf("err %#v", err)
	}
	if !errors.Is(err, ErrProtocolVersion) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err %v code %v", err, status.Code(err))
	}
	if err.Error() != "license protocol version is invalid: client 7, server 2" {
		t.Fatalf("message %q", err.Error())
	}
	// Each member was asked once (a protocol version may be one member's
	// own, during an upgrade), then the error returned.
	for i, m := range cl.members {
		if n := len(m.checkoutReqs()); n != 1 {
			t.Fatalf("member %d tried %d times, want once", i, n)
		}
	}
}

func TestClassify(t *testing.T) {
	err := classify("checkout", status.Error(codes.FailedPrecondition, "license protocol version is invalid: client 12, server 3"))
	var pv *ProtocolVersionError
	if !errors.As(err, &pv) || pv.Client != 12 || pv.Server != 3 {
		t.Fatalf("%v", err)
	}
	// A FAILED_PRECONDITION of another kind keeps its status, without the sentinel.
	err = classify("checkout", status.Error(codes.FailedPrecondition, "cluster not formed"))
	if errors.Is(err, ErrProtocolVersion) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("%v", err)
	}
	err = classify("renew", status.Error(codes.Internal, "boom"))
	if status.Code(err) != codes.Internal {
		t.Fatalf("%v", err)
	}
}

func TestLeaseStateString(t *testing.T) {
	for s, want := range map[LeaseState]string{Held: "held", Grace: "grace", Lost: "lost", Released: "released"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}

// A process holding more leases than one call may carry renews and
// releases them in several calls, each under the limit, and every lease
// is renewed.
func TestRenewAndReleaseSplitLargeSets(t *testing.T) {
	old := maxRefsPerCall
	maxRefsPerCall = 2
	t.Cleanup(func() { maxRefsPerCall = old })
	cl := newFakeCluster(t, 1)
	cl.mu.Lock()
	cl.capacity["cad"] = 10
	cl.mu.Unlock()
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	var leases []*Lease
	for range 5 {
		l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	before := leases[4].LastRenewed()
	if err := c.renew.roundNow(ctx); err != nil {
		t.Fatal(err)
	}
	calls := cl.members[0].renewCalls()
	seen := map[uint64]bool{}
	for _, ids := range calls {
		if len(ids) > 2 {
			t.Errorf("a renew call carried %d leases, over the limit of 2", len(ids))
		}
		for _, id := range ids {
			seen[id] = true
		}
	}
	if len(calls) != 3 || len(seen) != 5 {
		t.Fatalf("renew calls %v: want 3 calls covering 5 leases", calls)
	}
	for _, l := range leases {
		if l.State() != Held {
			t.Fatalf("lease %v is %v after the split renewal", l.Info(), l.State())
		}
	}
	if !leases[4].LastRenewed().After(before) {
		t.Fatal("the lease in the last call was not recorded as renewed")
	}
}
