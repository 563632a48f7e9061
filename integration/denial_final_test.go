package integration

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// TestNoSeatIsFinal replays issue 11 point 7 on real processes: a
// checkout's first attempt goes to a paused follower and times out, the
// retry (same request id) on the leader is refused for lack of a seat, the
// seat then frees, and the follower resumes with the first attempt still
// buffered. The refused request id must never be granted, and no seat may
// stay pinned.
func TestNoSeatIsFinal(t *testing.T) {
	c := formedWithLicense(t, 1)
	leader := c.leader(c.members[0])
	paused := without(c.members, leader)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const lateClient, lateReq = "client-late", "req-late"
	checkout := func(clientID, reqID string) *triadv1.CheckoutRequest {
		return &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: reqID,
			Feature: "cad", Version: 1, ClientId: clientID, User: "u", Host: "h", Pid: 1, TtlSeconds: 60}
	}

	// The only seat is held.
	onLeader, onPaused := licensing(t, leader.addr), licensing(t, paused.addr)
	held, err := onLeader.Checkout(ctx, checkout("client-holder", "req-held"))
	if err != nil {
		t.Fatal(err)
	}

	if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			paused.cmd.Process.Signal(syscall.SIGCONT)
			resumed = true
		}
	}
	t.Cleanup(resume)

	// First attempt: the paused member; it times out after 1 s, buffered.
	actx, acancel := context.WithTimeout(ctx, time.Second)
	_, err = onPaused.Checkout(actx, checkout(lateClient, lateReq))
	acancel()
	if grpcstatus.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("checkout on the paused member: %v, want DEADLINE_EXCEEDED", err)
	}
	// The retry on the leader: no seat.
	if _, err := onLeader.Checkout(ctx, checkout(lateClient, lateReq)); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("retry on the leader: %v, want RESOURCE_EXHAUSTED", err)
	}
	// The seat frees, then the paused member resumes with the first
	// attempt in its buffers.
	if _, err := onLeader.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion,
		LeaseIds: []uint64{held.GetLease().GetLeaseId()}, LeaseSecrets: [][]byte{held.GetLeaseSecret()}}); err != nil {
		t.Fatal(err)
	}
	resume()

	// The resumed member answers again; the same request id through it is
	// still refused (one answer forever), whatever order the buffered copy
	// and this one reach the leader in.
	waitFor(t, 20*time.Second, "the resumed member to answer the request id", func() error {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		_, err := onPaused.Checkout(rctx, checkout(lateClient, lateReq))
		switch grpcstatus.Code(err) {
		case codes.ResourceExhausted:
			return nil
		case codes.DeadlineExceeded, codes.Unavailable:
			return err
		}
		t.Fatalf("request id refused before, asked again through the resumed member: %v, want RESOURCE_EXHAUSTED", err)
		return nil
	})

	// For a bounded while, the refused request id never holds a seat and
	// nothing stays pinned: every check must pass on every poll.
	until := time.Now().Add(3 * time.Second)
	for polls := 0; polls == 0 || time.Now().Before(until); polls++ {
		var leases []struct {
			RequestID string      `json:"request_id"`
			LeaseID   json.Number `json:"lease_id"`
		}
		ctlJSON(t, leader.addr, &leases, "usage", "leases", "--consistent")
		if len(leases) != 0 {
			t.Fatalf("after the holder released, the cluster holds %v (a zombie of the refused request?)", leases)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The seat is free for whoever asks next.
	if _, err := onLeader.Checkout(ctx, checkout("client-next", "req-next")); err != nil {
		t.Fatalf("a new checkout after the release: %v (seat pinned?)", err)
	}
}
