package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// renewAll renews ids, with their secrets, through one member and fails
// unless every lease is known.
func renewAll(t *testing.T, addr string, ids []uint64, secrets map[uint64][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := licensing(t, addr).Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: ids, LeaseSecrets: secretsOf(ids, secrets)})
	if err != nil {
		t.Fatalf("renew through %s: %v", addr, err)
	}
	if len(resp.GetResults()) != len(ids) {
		t.Fatalf("renew answered %d results for %d leases", len(resp.GetResults()), len(ids))
	}
	for _, r := range resp.GetResults() {
		if !r.GetOk() {
			t.Fatalf("lease %d not renewable: %s", r.GetLeaseId(), r.GetError())
		}
	}
}

func leaseIDs(t *testing.T, servers string) []uint64 {
	t.Helper()
	var leases []struct {
		LeaseID json.Number `json:"lease_id"`
	}
	ctlJSON(t, servers, &leases, "usage", "leases")
	var ids []uint64
	for _, l := range leases {
		id, _ := strconv.ParseUint(string(l.LeaseID), 10, 64)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func TestLeaderKillKeepsLeases(t *testing.T) {
	c := formedWithLicense(t, 10)
	cl := newClient(t, c.servers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var leases []*client.Lease
	var ids []uint64
	for i := 0; i < 6; i++ {
		l, err := cl.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
		ids = append(ids, l.ID())
	}
	old := c.leader(c.members[0])
	var survivors []*member
	for _, m := range c.members {
		if m != old {
			survivors = append(survivors, m)
		}
	}
	old.kill()
	killed := time.Now()

	// Both survivors agree on a new leader within 5 s of the kill.
	waitFor(t, 5*time.Second-time.Since(killed), "a new leader on both survivors", func() error {
		for _, m := range survivors {
			s, err := c.status(m)
			if err != nil {
				return err
			}
			if s.Leader == "" || s.Leader == old.name {
				return fmt.Errorf("%s sees leader %q", m.name, s.Leader)
			}
		}
		return nil
	})
	t.Logf("new leader elected %s after SIGKILL of %s", time.Since(killed).Round(time.Millisecond), old.name)

	// Every lease granted before the kill is held (known and guarded by
	// its secret, which only the client library holds) through either
	// survivor, and counted once.
	for _, m := range survivors {
		leasesGuarded(t, m.addr, ids)
	}
	if got := leaseIDs(t, survivors[0].addr); !slices.Equal(got, ids) {
		t.Fatalf("leases after failover %v, want %v", got, ids)
	}
	for _, l := range leases {
		if l.State() != client.Held {
			t.Fatalf("lease %d is %s after failover", l.ID(), l.State())
		}
	}
	// New checkouts work.
	for i := 0; i < 2; i++ {
		l, err := cl.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1})
		if err != nil {
			t.Fatalf("checkout after failover: %v", err)
		}
		ids = append(ids, l.ID())
	}
	if rows := c.usage(survivors[1].addr); rows[0].InUse != 8 {
		t.Fatalf("in_use after failover = %d, want 8", rows[0].InUse)
	}

	// The killed member restarts and catches up: it knows all eight leases.
	old.start()
	waitFor(t, 20*time.Second, "restarted member caught up", func() error {
		got := leaseIDs(t, old.addr)
		if !slices.Equal(got, ids) {
			return fmt.Errorf("restarted member knows leases %v, want %v", got, ids)
		}
		s, err := c.status(old)
		if err != nil {
			return err
		}
		if s.Leader == "" {
			return fmt.Errorf("restarted member sees no leader")
		}
		return nil
	})
	leasesGuarded(t, old.addr, ids)
}

func TestWholeClusterRestartKeepsLicensesAndLeases(t *testing.T) {
	c := formedWithLicense(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ids []uint64
	secrets := map[uint64][]byte{}
	for i := 0; i < 3; i++ {
		resp, err := licensing(t, c.members[i].addr).Checkout(ctx, &triadv1.CheckoutRequest{
			ProtocolVersion: client.ProtocolVersion, RequestId: fmt.Sprintf("restart-%d", i), Feature: "cad", Version: 1, ClientId: rawClientID})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.GetLease().GetLeaseId())
		secrets[resp.GetLease().GetLeaseId()] = resp.GetLeaseSecret()
	}
	slices.Sort(ids)
	for _, m := range c.members {
		m.stop()
	}
	for _, m := range c.members {
		m.start()
	}
	c.leader(c.members[0])
	var lic []struct{ State string }
	ctlJSON(t, c.servers(), &lic, "license", "list")
	if len(lic) != 1 || lic[0].State != "valid" {
		t.Fatalf("licenses after full restart: %+v", lic)
	}
	if got := leaseIDs(t, c.servers()); !slices.Equal(got, ids) {
		t.Fatalf("leases after full restart %v, want %v", got, ids)
	}
	renewAll(t, c.members[1].addr, ids, secrets)
	if rows := c.usage(c.servers()); rows[0].InUse != 3 || rows[0].Capacity != 4 {
		t.Fatalf("usage after full restart %+v", rows)
	}
	// The retried request id still maps to its lease, and its secret,
	// after the restart.
	resp, err := licensing(t, c.members[2].addr).Checkout(ctx, &triadv1.CheckoutRequest{
		ProtocolVersion: client.ProtocolVersion, RequestId: "restart-0", Feature: "cad", Version: 1, ClientId: rawClientID})
	if err != nil || !slices.Contains(ids, resp.GetLease().GetLeaseId()) || !bytes.Equal(resp.GetLeaseSecret(), secrets[resp.GetLease().GetLeaseId()]) {
		t.Fatalf("retry after restart: %v %v", resp, err)
	}
}
