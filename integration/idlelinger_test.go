package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// leaseLine returns the usage leases line of lease id on servers ("" when
// not listed).
func leaseLine(t *testing.T, servers string, id uint64) (string, error) {
	out, err := ctlOn(t, servers, "usage", "leases")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == fmt.Sprint(id) {
			return line, nil
		}
	}
	return "", nil
}

// Issue 13 points 2 and 3 on real members: a TIMEOUT rule (refused under
// the license's vendor minimum) releases an idle client's lease, the
// client reports it and checks out again on Touch; a lingering seat
// survives a leader kill, is refused to another user and taken back by its
// user and host, and an administrator's release frees it.
func TestIdleTimeoutAndLinger(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	c.form()
	c.enroll(c.issue("main", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"),
		"--feature", "edit:1:1,min_timeout=3s",
		"--feature", "cad:1:1,linger=10m"))
	servers := c.servers()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	// The vendor minimum: a shorter TIMEOUT is refused with a clear error.
	_, err := ctlOn(t, servers, "rules", "set", c.writeFile("short.txt", "TIMEOUT edit 1s\n"))
	if err == nil || !strings.Contains(err.Error(), "the idle timeout of edit is 1s, shorter than the minimum of 3s that license") || !strings.Contains(err.Error(), "use TIMEOUT edit 3s or longer") {
		t.Fatalf("TIMEOUT under the vendor minimum: %v", err)
	}

	// Idle timeout through the client library.
	changes := make(chan client.StateChange, 16)
	cl, err := client.New(addrsOf(c.members...), tlsOption(t), client.WithIdentity("alice", "ws1", 7, "idle-client"),
		client.WithRenewInterval(500*time.Millisecond), client.WithStateHandler(func(ev client.StateChange) { changes <- ev }))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l, err := cl.Checkout(ctx, client.CheckoutRequest{Feature: "edit", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	first := l.ID()
	// Idle, reported with the renewals (every 0.5 s); no TIMEOUT rule yet,
	// so it stays and shows as idle.
	l.SetIdle(time.Now())
	waitFor(t, 20*time.Second, "the idle time in usage leases", func() error {
		line, err := leaseLine(t, servers, first)
		if err != nil || !strings.Contains(line, "idle since") {
			return fmt.Errorf("line %q err %v", line, err)
		}
		return nil
	})
	if l.State() != client.Held {
		t.Fatalf("released without a TIMEOUT rule: %v", l.State())
	}
	// Now a TIMEOUT of 3 s releases it.
	if out, err := ctlOn(t, servers, "rules", "set", c.writeFile("rules.txt", "TIMEOUT edit 3s\n")); err != nil || !strings.Contains(out, "1 rule(s)") {
		t.Fatalf("rules set: %v %q", err, out)
	}
	var ev client.StateChange
	select {
	case ev = <-changes:
	case <-time.After(30 * time.Second):
		t.Fatal("no state change after 30 s idle with a 3 s TIMEOUT")
	}
	if ev.To != client.IdleReleased || !errors.Is(ev.Err, client.ErrIdleTimeout) || l.State() != client.IdleReleased {
		t.Fatalf("state change %+v (state %v), want released: idle timeout", ev, l.State())
	}
	if line, err := leaseLine(t, servers, first); err != nil || line != "" {
		t.Fatalf("the idle-released lease is still listed: %q %v", line, err)
	}
	// Touch checks it out again with the same user and host.
	if err := l.Touch(ctx); err != nil {
		t.Fatal(err)
	}
	second := l.ID()
	if l.State() != client.Held || second == first {
		t.Fatalf("after Touch: state %v id %d (was %d)", l.State(), second, first)
	}
	line, err := leaseLine(t, servers, second)
	if err != nil || !strings.Contains(line, " alice ") || !strings.Contains(line, " ws1 ") || !strings.HasSuffix(line, "held") {
		t.Fatalf("re-checked-out lease shows as %q (%v), want alice on ws1, held", line, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// Linger: alice releases cad; the seat stays hers.
	lc := licensing(t, c.members[0].addr)
	co, err := checkoutAs(ctx, t, lc, "cad-a1", "cad", "alice")
	if err != nil {
		t.Fatal(err)
	}
	id := co.GetLease().GetLeaseId()
	rel, err := lc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{co.GetLeaseSecret()}})
	if err != nil || !rel.GetResults()[0].GetReleased() {
		t.Fatalf("release: %v %v", rel, err)
	}
	var listed []map[string]any
	ctlJSON(t, servers, &listed, "usage", "leases")
	if len(listed) != 1 || listed[0]["lingering"] != true || fmt.Sprint(listed[0]["linger_until_unix_ms"]) != fmt.Sprint(listed[0]["expires_unix_ms"]) {
		t.Fatalf("usage leases JSON: %v", listed)
	}
	// The leader is killed; the linger survives the failover.
	old := c.leader(c.members[0])
	survivors := without(c.members, old)
	old.kill()
	c.newLeader(survivors[0], old)
	sv := strings.Join(addrsOf(survivors...), ",")
	waitFor(t, 20*time.Second, "the lingering seat listed after the failover", func() error {
		line, err := leaseLine(t, sv, id)
		if err != nil || !strings.Contains(line, "lingering until") {
			return fmt.Errorf("line %q err %v", line, err)
		}
		return nil
	})
	lc2 := licensing(t, survivors[0].addr)
	waitFor(t, 20*time.Second, "bob refused the lingering seat", func() error {
		_, err := checkoutAs(ctx, t, lc2, "cad-b1", "cad", "bob")
		if grpcstatus.Code(err) != codes.ResourceExhausted {
			return fmt.Errorf("bob: %v", err)
		}
		return nil
	})
	back, err := checkoutAs(ctx, t, lc2, "cad-a2", "cad", "alice")
	if err != nil {
		t.Fatalf("alice taking her lingering seat back: %v", err)
	}
	if line, _ := leaseLine(t, sv, id); line != "" {
		t.Fatalf("the taken-back lingering lease is still listed: %q", line)
	}
	// Released again, it lingers; the administrator frees it for bob.
	bid := back.GetLease().GetLeaseId()
	if _, err := lc2.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{bid}, LeaseSecrets: [][]byte{back.GetLeaseSecret()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := checkoutAs(ctx, t, lc2, "cad-b2", "cad", "bob"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("bob while alice's seat lingers: %v", err)
	}
	if out, err := ctlOn(t, sv, "usage", "release", fmt.Sprint(bid)); err != nil || !strings.Contains(out, "released") {
		t.Fatalf("usage release of a lingering seat: %v %q", err, out)
	}
	if _, err := checkoutAs(ctx, t, lc2, "cad-b3", "cad", "bob"); err != nil {
		t.Fatalf("bob after the lingering seat was freed: %v", err)
	}
}
