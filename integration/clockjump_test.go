package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// TestDenialFinalAcrossLeaderAhead: a request refused for lack of a seat
// is refused again after the leadership passes to a member whose clock is
// an hour ahead and the new leader has pruned request memory (found by the
// robustness suite, clock-step-leader + restart-cluster: the jump of the
// cluster's now at the new leader spent the 10 minutes of memory at once).
// Every member's clock is stepped, so whichever wins the election jumps.
func TestDenialFinalAcrossLeaderAhead(t *testing.T) {
	c := startCluster(t)
	for _, m := range c.members {
		m.kill()
		m.extra = []string{"--test-clock-file", clockFile(m)}
		m.start()
	}
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:1", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	checkout := func(clientID, reqID string, ttl uint32) *triadv1.CheckoutRequest {
		return &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: reqID,
			Feature: "cad", Version: 1, ClientId: clientID, User: "u", Host: "h", Pid: 1, TtlSeconds: ttl}
	}
	leader := c.leader(c.members[0])
	rpc := licensing(t, leader.addr)
	held, err := rpc.Checkout(ctx, checkout("holder", "req-held", 60))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rpc.Checkout(ctx, checkout("late", "req-late", 60))
	if grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second checkout of one seat: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := rpc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion,
		LeaseIds: []uint64{held.GetLease().GetLeaseId()}, LeaseSecrets: [][]byte{held.GetLeaseSecret()}}); err != nil {
		t.Fatal(err)
	}

	for _, m := range c.members {
		if err := os.WriteFile(clockFile(m), []byte("1h"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range c.members {
		waitFor(t, 5*time.Second, m.name+"'s clock stepped", func() error {
			if !strings.Contains(m.log(), "test clock stepped") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
	}
	// The old leader goes; the new one starts an hour ahead of the
	// committed now.
	leader.kill()
	rest := without(c.members, leader)
	servers := rest[0].addr + "," + rest[1].addr
	nl := c.newLeader(rest[0], leader)
	rpc = licensing(t, nl.addr)
	// A lease of the minimum TTL, once expired, shows that the new leader
	// committed an ExpireLeases, which also prunes request memory.
	short, err := rpc.Checkout(ctx, checkout("short", "req-short", 1))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the short lease expired", func() error {
		for _, id := range leaseIDs(t, servers) {
			if id == short.GetLease().GetLeaseId() {
				return fmt.Errorf("lease %d still live", id)
			}
		}
		return nil
	})
	if !strings.Contains(nl.log(), "became leader") {
		t.Fatalf("%s does not say it leads", nl.name)
	}
	_, err = rpc.Checkout(ctx, checkout("late", "req-late", 60))
	if grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("the refused request asked again after a leader an hour ahead: %v, want RESOURCE_EXHAUSTED again", err)
	}
	// And an ended grant's request id is not a new seat either.
	_, err = rpc.Checkout(ctx, checkout("holder", "req-held", 60))
	if grpcstatus.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "has ended") {
		t.Fatalf("the ended grant's request asked again after a leader an hour ahead: %v, want NOT_FOUND 'has ended'", err)
	}
}
