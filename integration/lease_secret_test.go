package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// rawClientID is the client id of the checkouts the tests make through the
// raw Licensing stubs (the client library draws a random one per process).
const rawClientID = "integration-raw"

// secretsOf lines up the secrets of ids for a Renew or Release.
func secretsOf(ids []uint64, secrets map[uint64][]byte) [][]byte {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = secrets[id]
	}
	return out
}

// leasesGuarded checks through addr that every lease of ids is live and
// guarded by its secret: a renewal without the secret is refused with
// "wrong lease secret" (a lease the cluster did not know would be "not
// found").
func leasesGuarded(t *testing.T, addr string, ids []uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := licensing(t, addr).Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: ids})
	if err != nil {
		t.Fatalf("renew through %s: %v", addr, err)
	}
	if len(resp.GetResults()) != len(ids) {
		t.Fatalf("renew answered %d results for %d leases", len(resp.GetResults()), len(ids))
	}
	for _, r := range resp.GetResults() {
		if r.GetOk() || !strings.Contains(r.GetError(), fmt.Sprintf("lease %d: wrong lease secret", r.GetLeaseId())) {
			t.Fatalf("lease %d through %s without its secret: ok=%v %q", r.GetLeaseId(), addr, r.GetOk(), r.GetError())
		}
	}
}

// A process that knows another process's lease id (listings show it) can
// neither release nor renew nor return it, through the leader or through a
// follower, and cannot get it (or its secret) by replaying its request id;
// the lease stays held and its holder keeps renewing and releases it. Only
// an administrator's force release frees a lease without its secret.
func TestLeaseSecretStopsOtherProcesses(t *testing.T) {
	c := formedWithLicense(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	holder, err := client.New(strings.Split(c.servers(), ","), tlsOption(t), client.WithRenewInterval(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	l, err := holder.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ID()
	// What another process can learn from the listing: the lease id and
	// the client id, but neither the request id nor any secret.
	out, err := ctlOn(t, c.servers(), "--output", "json", "usage", "leases")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, strconv.FormatUint(id, 10)) || !strings.Contains(out, l.Info().GetClientId()) {
		t.Fatalf("usage leases does not list lease %d of client %s:\n%s", id, l.Info().GetClientId(), out)
	}
	if strings.Contains(out, l.RequestID()) || strings.Contains(strings.ToLower(out), "secret") {
		t.Fatalf("usage leases shows the request id or a secret:\n%s", out)
	}

	guess := make([]byte, 16)
	rand.Read(guess)
	leader := c.leader(c.members[0])
	for _, m := range c.members {
		via := m.name
		if m == leader {
			via += " (leader)"
		}
		lc := licensing(t, m.addr)
		for _, secret := range [][]byte{nil, guess} {
			rel, err := lc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{secret}})
			if err != nil || rel.GetResults()[0].GetReleased() || !strings.Contains(rel.GetResults()[0].GetError(), "wrong lease secret") {
				t.Fatalf("release of lease %d via %s with secret %x: %v %v", id, via, secret, rel, err)
			}
			ret, err := lc.ReturnBorrow(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{secret}})
			if err != nil || ret.GetResults()[0].GetReleased() {
				t.Fatalf("return of lease %d via %s with secret %x: %v %v", id, via, secret, ret, err)
			}
			ren, err := lc.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{secret}})
			if err != nil || ren.GetResults()[0].GetOk() || !strings.Contains(ren.GetResults()[0].GetError(), "wrong lease secret") {
				t.Fatalf("renewal of lease %d via %s with secret %x: %v %v", id, via, secret, ren, err)
			}
		}
		// Replaying the holder's request id under another client id gives
		// a lease of its own, never the holder's.
		co, err := lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: l.RequestID(),
			Feature: "cad", Version: 1, ClientId: rawClientID + "-" + m.name})
		if err != nil {
			t.Fatalf("checkout via %s: %v", via, err)
		}
		if co.GetLease().GetLeaseId() == id || len(co.GetLeaseSecret()) != 16 {
			t.Fatalf("replayed request id via %s: lease %d secret %x", via, co.GetLease().GetLeaseId(), co.GetLeaseSecret())
		}
		// Without a client id a checkout is refused: request ids are scoped by it.
		_, err = lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: l.RequestID(), Feature: "cad", Version: 1})
		if grpcstatus.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "client_id") {
			t.Fatalf("checkout without client id via %s: %v", via, err)
		}
		// Free the intruder's seat for the next member's round.
		rel, err := lc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion,
			LeaseIds: []uint64{co.GetLease().GetLeaseId()}, LeaseSecrets: [][]byte{co.GetLeaseSecret()}})
		if err != nil || !rel.GetResults()[0].GetReleased() {
			t.Fatalf("release of its own lease via %s: %v %v", via, rel, err)
		}
	}
	// The holder's lease is untouched: still listed, still counted, still
	// renewed by its holder.
	if got := leaseIDs(t, c.servers()); !slices.Equal(got, []uint64{id}) {
		t.Fatalf("leases %v after the attacks, want [%d]", got, id)
	}
	renewed := l.LastRenewed()
	waitFor(t, 10*time.Second, "the holder renews its lease", func() error {
		if !l.LastRenewed().After(renewed) || l.State() != client.Held || l.ID() != id {
			return fmt.Errorf("lease %d %v last renewed %v", l.ID(), l.State(), l.LastRenewed())
		}
		return nil
	})
	// The holder releases it with its secret.
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := leaseIDs(t, c.servers()); len(got) != 0 {
		t.Fatalf("leases %v after the holder's release", got)
	}

	// An administrator's force release needs no secret.
	l2, err := holder.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ctlOn(t, c.servers(), "usage", "release", strconv.FormatUint(l2.ID(), 10)); err != nil || !strings.Contains(out, "released") {
		t.Fatalf("usage release %d: %v %s", l2.ID(), err, out)
	}
}

// A borrowed lease is extended and returned only with its secret.
func TestLeaseSecretBorrow(t *testing.T) {
	c := startCluster(t)
	c.form()
	c.enroll(c.issue("lib", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"), "--feature", "lib:1:1,borrow=72h"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc := licensing(t, c.members[1].addr)
	b, err := lc.Borrow(ctx, &triadv1.BorrowRequest{ProtocolVersion: client.ProtocolVersion, DurationSeconds: 3600,
		Checkout: &triadv1.CheckoutRequest{RequestId: "b-1", Feature: "lib", Version: 1, ClientId: rawClientID}})
	if err != nil {
		t.Fatal(err)
	}
	id, end, secret := b.GetLease().GetLeaseId(), b.GetLease().GetExpiresUnixMs(), b.GetLeaseSecret()
	for _, wrong := range [][]byte{nil, []byte("0123456789abcdef")} {
		_, err := lc.Borrow(ctx, &triadv1.BorrowRequest{ProtocolVersion: client.ProtocolVersion, DurationSeconds: 7200, LeaseId: id, LeaseSecret: wrong})
		if grpcstatus.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), fmt.Sprintf("lease %d: wrong lease secret", id)) {
			t.Fatalf("extension with secret %x: %v", wrong, err)
		}
		ret, err := lc.ReturnBorrow(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{wrong}})
		if err != nil || ret.GetResults()[0].GetReleased() {
			t.Fatalf("return with secret %x: %v %v", wrong, ret, err)
		}
	}
	if got := leaseIDs(t, c.servers()); !slices.Equal(got, []uint64{id}) {
		t.Fatalf("leases %v, want the borrow %d", got, id)
	}
	ext, err := lc.Borrow(ctx, &triadv1.BorrowRequest{ProtocolVersion: client.ProtocolVersion, DurationSeconds: 7200, LeaseId: id, LeaseSecret: secret})
	if err != nil || ext.GetLease().GetExpiresUnixMs() <= end || !bytes.Equal(ext.GetLeaseSecret(), secret) {
		t.Fatalf("extension with the secret: %v %v", ext, err)
	}
	ret, err := lc.ReturnBorrow(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{secret}})
	if err != nil || !ret.GetResults()[0].GetReleased() {
		t.Fatalf("return with the secret: %v %v", ret, err)
	}
}
