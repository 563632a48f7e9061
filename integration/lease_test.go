package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// An unrenewed lease is expired by the leader after its TTL; a renewed one
// stays, and its seat is not freed.
func TestLeaderExpiresUnrenewedLeases(t *testing.T) {
	c := formedWithLicense(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc := licensing(t, c.members[0].addr)
	secrets := map[uint64][]byte{}
	take := func(id string) uint64 {
		resp, err := lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: id, Feature: "cad", Version: 1, TtlSeconds: 2, ClientId: rawClientID})
		if err != nil {
			t.Fatal(err)
		}
		secrets[resp.GetLease().GetLeaseId()] = resp.GetLeaseSecret()
		return resp.GetLease().GetLeaseId()
	}
	kept, dropped := take("kept"), take("dropped")
	keptSecret := secrets[kept]
	// Keep renewing one lease; let the other lapse.
	renewCtx, stopRenew := context.WithCancel(ctx)
	defer stopRenew()
	go func() {
		for renewCtx.Err() == nil {
			lc.Renew(renewCtx, &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{kept}, LeaseSecrets: [][]byte{keptSecret}})
			time.Sleep(300 * time.Millisecond)
		}
	}()
	waitFor(t, 15*time.Second, "unrenewed lease expired", func() error {
		if ids := leaseIDs(t, c.servers()); !slices.Equal(ids, []uint64{kept}) {
			return fmt.Errorf("leases %v, want only %d (dropped %d)", ids, kept, dropped)
		}
		return nil
	})
	resp, err := lc.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{dropped}, LeaseSecrets: [][]byte{secrets[dropped]}})
	if err != nil || resp.GetResults()[0].GetOk() || !strings.Contains(resp.GetResults()[0].GetError(), "not found") {
		t.Fatalf("renewing an expired lease: %v %v", resp, err)
	}
	// The freed seat can be taken again; the kept one still counts.
	take("again")
	if rows := c.usage(c.servers()); rows[0].InUse != 2 {
		t.Fatalf("in_use = %d, want 2", rows[0].InUse)
	}
}

// SIGTERM on the leader hands leadership over before the member stops, and
// the computer ID survives a restart.
func TestGracefulStopTransfersLeadership(t *testing.T) {
	c := formedWithLicense(t, 1)
	old := c.leader(c.members[0])
	var before struct {
		ComputerID string `json:"computer_id"`
	}
	ctlJSON(t, old.addr, &before, "server", "show")
	old.stop()
	if !strings.Contains(old.log(), `"msg":"leadership transferred"`) {
		t.Fatalf("stopped leader did not transfer leadership; log:\n%s", old.log())
	}
	for _, m := range c.members {
		if m != old {
			if l := c.leader(m); l == old {
				t.Fatalf("%s still sees the stopped member as leader", m.name)
			}
		}
	}
	old.start()
	var after struct {
		ComputerID string `json:"computer_id"`
		Mode       string
	}
	ctlJSON(t, old.addr, &after, "server", "show")
	if after.ComputerID != before.ComputerID || after.Mode != "failover" {
		t.Fatalf("after restart: computer ID %q mode %q, before %q", after.ComputerID, after.Mode, before.ComputerID)
	}
}
