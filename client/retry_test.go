package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Which errors of one member make a renewal go on to the next member, and
// which are final. The renewal goes to member 0 first (it answered the
// checkout); member 0 then fails every call with the code.
func TestRenewalFailoverByCode(t *testing.T) {
	protocol := status.Error(codes.FailedPrecondition, "license protocol version is invalid: client 2, server 3")
	tests := []struct {
		name    string
		err     error
		next    bool // tried on member 1, which renews
		sentErr error
	}{
		// No answer: the member cannot serve right now.
		{"unavailable", status.Error(codes.Unavailable, "no leader"), true, nil},
		{"deadline from the member", status.Error(codes.DeadlineExceeded, "request timed out; it may still complete"), true, nil},
		{"canceled by the member", status.Error(codes.Canceled, "request canceled"), true, nil},
		{"aborted", status.Error(codes.Aborted, "commit aborted"), true, nil},
		{"overloaded", status.Error(codes.ResourceExhausted, "too many requests"), true, nil},
		// Member faults: maybe this member's own problem.
		{"internal", status.Error(codes.Internal, "boom"), true, nil},
		{"unknown", status.Error(codes.Unknown, "?"), true, nil},
		{"unimplemented", status.Error(codes.Unimplemented, "no Renew here"), true, nil},
		{"protocol version", protocol, true, nil},
		// Definite answers, the same on every member: not retried.
		{"not found", status.Error(codes.NotFound, "lease unknown"), false, nil},
		{"invalid argument", status.Error(codes.InvalidArgument, "no lease ids given"), false, ErrInvalidArgument},
		{"permission denied", status.Error(codes.PermissionDenied, "license expired"), false, ErrNotPermitted},
		{"other precondition", status.Error(codes.FailedPrecondition, "the cluster is not formed yet"), false, nil},
		{"unauthenticated", status.Error(codes.Unauthenticated, "who are you"), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newFakeCluster(t, 3)
			c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
			ctx := testCtx(t)
			l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
			if err != nil {
				t.Fatal(err)
			}
			if via := l.Info().ViaMember; via != cl.members[0].addr {
				t.Fatalf("checkout went through %s", via)
			}
			cl.members[0].set(func(m *fakeMember) { m.failWith = tt.err })
			before := l.LastRenewed()
			if err := c.renew.roundNow(ctx); err != nil {
				t.Fatal(err)
			}
			n0, n1, n2 := len(cl.members[0].renewCalls()), len(cl.members[1].renewCalls()), len(cl.members[2].renewCalls())
			if tt.next {
				if n0 != 1 || n1 != 1 || n2 != 0 {
					t.Fatalf("renew calls %d/%d/%d, want 1/1/0", n0, n1, n2)
				}
				if !l.LastRenewed().After(before) || l.RenewErr() != nil {
					t.Fatalf("not renewed on the next member (renew err %v)", l.RenewErr())
				}
				return
			}
			if n0 != 1 || n1 != 0 || n2 != 0 {
				t.Fatalf("renew calls %d/%d/%d, want 1/0/0: a definite answer is not retried", n0, n1, n2)
			}
			if l.LastRenewed() != before {
				t.Fatal("renewed although the only member asked refused")
			}
			err = l.RenewErr()
			if status.Code(err) != status.Code(tt.err) || (tt.sentErr != nil && !errors.Is(err, tt.sentErr)) {
				t.Fatalf("RenewErr %v, want code %v", err, status.Code(tt.err))
			}
			if l.State() != Held {
				t.Fatalf("state %v: a refusal does not end a lease that is still held", l.State())
			}
		})
	}
}

// A member fault on every member ends the call after one pass over them,
// classified, instead of looping until the caller's context ends.
func TestMemberFaultOnEveryMemberEndsAfterOnePass(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.setAll(func(m *fakeMember) { m.failWith = status.Error(codes.Internal, "disk on fire") })
	c := newTestClient(t, cl.addrs())
	start := time.Now()
	_, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad"})
	if status.Code(err) != codes.Internal || unanswered(err) {
		t.Fatalf("err %v, want the members' INTERNAL", err)
	}
	for i, m := range cl.members {
		if n := len(m.checkoutReqs()); n != 1 {
			t.Fatalf("member %d asked %d times, want once", i, n)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}

	// Some members down, the others faulty: also one pass.
	cl.members[1].set(func(m *fakeMember) { m.failWith, m.unavailable = nil, true })
	if _, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad"}); status.Code(err) != codes.Internal {
		t.Fatalf("err %v, want INTERNAL", err)
	}
}

// Checkout: a fault on one member is taken to the next, which grants; a
// RESOURCE_EXHAUSTED is the "no seat" denial there, never retried.
func TestCheckoutFaultAndNoSeatByCode(t *testing.T) {
	cl := newFakeCluster(t, 3)
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	cl.members[0].set(func(m *fakeMember) { m.failWith = status.Error(codes.Internal, "boom") })
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	if via := l.Info().ViaMember; via != cl.members[1].addr {
		t.Fatalf("granted through %s, want member 1", via)
	}

	cl.members[1].set(func(m *fakeMember) {
		m.failWith = status.Error(codes.ResourceExhausted, "no seat left for cad v 0 (100 of 100 in use)")
	})
	before := len(cl.allCheckouts())
	if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"}); !errors.Is(err, ErrNoSeat) {
		t.Fatalf("err %v, want ErrNoSeat", err)
	}
	if n := len(cl.allCheckouts()) - before; n != 1 {
		t.Fatalf("no-seat denial tried %d times, want once", n)
	}
	// For Features the same code can only be overload: the next member answers.
	if _, err := c.Features(ctx); err != nil {
		t.Fatalf("features: %v", err)
	}
}

// One member speaking another protocol version (say, upgraded first) does
// not stop the others from serving; when every member refuses, Checkout
// returns the typed error.
func TestProtocolVersionOnOneMember(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.members[0].set(func(m *fakeMember) { m.protocol = 3 })
	c := newTestClient(t, cl.addrs(), WithRenewInterval(time.Hour))
	ctx := testCtx(t)
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	if via := l.Info().ViaMember; via != cl.members[1].addr {
		t.Fatalf("granted through %s, want member 1", via)
	}
	cl.setAll(func(m *fakeMember) { m.protocol = 3 })
	_, err = c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	var pv *ProtocolVersionError
	if !errors.As(err, &pv) || pv.Client != ProtocolVersion || pv.Server != 3 {
		t.Fatalf("err %v, want a *ProtocolVersionError client 2 server 3", err)
	}
}

// A server that stops speaking the client's protocol while leases run (it
// was upgraded) refuses their renewals: the lease is not lost at once, goes
// to Grace when its view runs out, and the Grace and Lost changes carry the
// typed error instead of "no license server answered".
func TestRenewalProtocolErrorSurfaces(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.grace = 1
	rec := &recorder{}
	c := newTestClient(t, cl.addrs(), WithCallTimeout(100*time.Millisecond), withMargin(100*time.Millisecond), WithStateHandler(rec.handle))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cl.setAll(func(m *fakeMember) { m.protocol = 3 })
	isProtocol := func(err error) bool {
		var pv *ProtocolVersionError
		return errors.As(err, &pv) && pv.Client == ProtocolVersion && pv.Server == 3 && errors.Is(err, ErrProtocolVersion) &&
			status.Code(err) == codes.FailedPrecondition
	}
	waitFor(t, "the refusal recorded", func() bool { return l.RenewErr() != nil })
	if err := l.RenewErr(); !isProtocol(err) {
		t.Fatalf("RenewErr %v, want a *ProtocolVersionError", err)
	}
	waitDone(t, l)
	waitFor(t, "both changes delivered", func() bool { return len(rec.of(l)) == 2 })
	evs := rec.of(l)
	if evs[0].To != Grace || evs[1].To != Lost {
		t.Fatalf("changes %v, want grace then lost", rec.states(l))
	}
	if !isProtocol(evs[0].RenewErr) || evs[0].Err != nil {
		t.Fatalf("grace change: RenewErr %v Err %v", evs[0].RenewErr, evs[0].Err)
	}
	lost := l.Err()
	if !errors.Is(lost, ErrLeaseLost) || !isProtocol(lost) || !isProtocol(evs[1].Err) {
		t.Fatalf("lost err %v, want ErrLeaseLost wrapping the *ProtocolVersionError", lost)
	}
	if msg := lost.Error(); strings.Contains(msg, "no license server answered") || !strings.Contains(msg, "client 2, server 3") {
		t.Fatalf("lost message %q", msg)
	}
}

// The refusal is forgotten as soon as a member renews the lease again.
func TestRenewalProtocolErrorClearedOnRenewal(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.grace = 60
	rec := &recorder{}
	c := newTestClient(t, cl.addrs(), WithCallTimeout(100*time.Millisecond), withMargin(100*time.Millisecond), WithStateHandler(rec.handle))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ID()
	cl.setAll(func(m *fakeMember) { m.protocol = 3 })
	waitFor(t, "grace", func() bool { return l.State() == Grace })
	if !errors.Is(l.RenewErr(), ErrProtocolVersion) || l.Err() != nil {
		t.Fatalf("in grace: RenewErr %v Err %v", l.RenewErr(), l.Err())
	}
	cl.setAll(func(m *fakeMember) { m.protocol = 0 })
	waitFor(t, "held again", func() bool { return l.State() == Held })
	if l.RenewErr() != nil || l.ID() != id {
		t.Fatalf("RenewErr %v id %d (was %d)", l.RenewErr(), l.ID(), id)
	}
	waitFor(t, "changes delivered", func() bool { return len(rec.of(l)) == 2 })
	if evs := rec.of(l); evs[1].To != Held || evs[1].RenewErr != nil {
		t.Fatalf("held change %+v", evs[1])
	}
}

// When the caller's context ends during a pass in which a member failed the
// call and the others did not answer, the member's error is the answer
// (here it keeps a renewal refusal from passing for an outage).
func TestMemberFaultWinsOverDeadline(t *testing.T) {
	cl := newFakeCluster(t, 3)
	cl.members[0].set(func(m *fakeMember) { m.failWith = status.Error(codes.Internal, "boom") })
	cl.members[1].set(func(m *fakeMember) { m.hang = true })
	cl.members[2].set(func(m *fakeMember) { m.hang = true })
	c := newTestClient(t, cl.addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if status.Code(err) != codes.Internal || unanswered(err) {
		t.Fatalf("err %v, want member 0's INTERNAL", err)
	}
}

// Renewals refused by every member count as an outage for the backup: the
// lease moves there once in Grace, keeping the refusal in RenewErr.
func TestRefusedRenewalsUseTheBackup(t *testing.T) {
	cl := newFakeCluster(t, 2)
	cl.grace = 60
	bk := newFakeCluster(t, 1)
	c := newTestClient(t, cl.addrs(), WithBackup(bk.addrs()...), WithCallTimeout(100*time.Millisecond), withMargin(100*time.Millisecond))
	l, err := c.Checkout(testCtx(t), CheckoutRequest{Feature: "cad", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cl.setAll(func(m *fakeMember) { m.protocol = 3 })
	waitFor(t, "lease on the backup", func() bool { return l.Source() == SourceBackup && l.State() == Held })
	if !errors.Is(l.RenewErr(), ErrProtocolVersion) {
		t.Fatalf("RenewErr %v", l.RenewErr())
	}
	cl.setAll(func(m *fakeMember) { m.protocol = 0 })
	waitFor(t, "lease back on the cluster", func() bool { return l.Source() == SourceCluster && l.State() == Held })
	waitFor(t, "backup lease released", func() bool { return bk.inUse("cad") == 0 })
	if l.RenewErr() != nil {
		t.Fatalf("RenewErr %v after the cluster renewed", l.RenewErr())
	}
}

// TestClassifyNeverFits: "can never fit" is ErrNeverFits, not ErrNoSeat,
// and a definite answer (no other member is tried).
func TestClassifyNeverFits(t *testing.T) {
	err := classify("checkout", status.Error(codes.FailedPrecondition, "can never fit: 11 seats of cad asked, 10 licensed; ask for at most 10"))
	if !errors.Is(err, ErrNeverFits) || errors.Is(err, ErrNoSeat) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("classify: %v", err)
	}
	if outcome(err, true) != definite {
		t.Errorf("can never fit is not a definite answer")
	}
}
