package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
)

// The leader dies: leases stay Held throughout, and renewals resume on the
// new leader within 6 s.
func TestClientLeaderKill(t *testing.T) {
	c := formedWithLicense(t, 200)
	f := newFleet(t, addrsOf(c.members...), 4, 50)
	ids := f.ids()
	old := c.leader(c.members[0])
	survivors := without(c.members, old)
	f.waitAll(15*time.Second, "a renewal round before the kill", renewedAfter(time.Now()))

	old.kill()
	killed := time.Now()
	f.waitAll(6*time.Second, "renewals on the new leader", renewedAfter(killed))
	t.Logf("all 200 leases renewed %s after SIGKILL of the leader %s", time.Since(killed).Round(time.Millisecond), old.name)
	// One more full TTL on the new leader.
	later := time.Now().Add(fleetTTL)
	f.waitAll(fleetTTL+15*time.Second, "renewals a TTL later", func(l *client.Lease) error {
		if time.Now().Before(later) {
			return fmt.Errorf("watching")
		}
		return renewedAfter(later.Add(-fleetTTL / 2))(l)
	})
	f.expectNeverLeftHeld()
	if got := f.ids(); !slices.Equal(got, ids) {
		t.Fatal("lease ids changed")
	}
	servers := strings.Join(addrsOf(survivors...), ",")
	if n := inUse(c, servers); n != 200 {
		t.Fatalf("in use %d, want 200", n)
	}
	if got := leaseIDs(t, servers); !slices.Equal(got, ids) {
		t.Fatalf("cluster knows %d leases, want the fleet's 200", len(got))
	}
}

// A follower is frozen for 20 s (SIGSTOP: connections stay open, nothing
// answers): leases stay Held, and a new client that lists the frozen member
// first still checks out.
func TestClientFollowerPause(t *testing.T) {
	c := formedWithLicense(t, 201)
	leader := c.leader(c.members[0])
	frozen := without(c.members, leader)[0]
	// The frozen member first: clients start there, and fail over when it
	// stops answering.
	order := append([]*member{frozen}, without(c.members, frozen)...)
	f := newFleet(t, addrsOf(order...), 4, 50)
	ids := f.ids()

	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			frozen.cmd.Process.Signal(syscall.SIGCONT)
			resumed = true
		}
	}
	t.Cleanup(resume)

	late, err := client.New(addrsOf(order...), tlsOption(t), client.WithCallTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := late.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: fleetTTL}); err != nil {
		t.Fatalf("checkout while a member is frozen: %v", err)
	}
	f.waitAll(15*time.Second, "renewals while the follower is frozen", renewedAfter(stopped))
	// The 20 s pause is the scenario itself, not a wait for a state.
	time.Sleep(20*time.Second - time.Since(stopped))
	resume()
	cont := time.Now()
	f.waitAll(15*time.Second, "renewals after SIGCONT", renewedAfter(cont))
	f.expectNeverLeftHeld()
	if got := f.ids(); !slices.Equal(got, ids) {
		t.Fatal("lease ids changed")
	}
	if n := inUse(c, c.servers()); n != 201 {
		t.Fatalf("in use %d, want 201", n)
	}
}

// One member is cut off from the other two (proxies, as in
// TestHealthCutOff): leases stay Held, renewed through the other members.
func TestClientMemberCutOff(t *testing.T) {
	dir := t.TempDir()
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir}
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	var proxies []*proxy // alpha grpc, alpha raft, bravo grpc, …
	for i, n := range []string{"alpha", "bravo", "charlie"} {
		m := prepareMember(t, n, ips[i], filepath.Join(dir, "vendor.pub"))
		gp, rp := newProxy(t, ""), newProxy(t, "")
		m.extra = []string{"--raft-advertise", rp.addr(), "--peer-source-ip", ips[i]}
		m.start()
		gp.setTarget(m.addr)
		rp.setTarget(m.raftAddr)
		proxies = append(proxies, gp, rp)
		c.members = append(c.members, m)
	}
	proxied := proxies[0].addr() + "," + proxies[2].addr() + "," + proxies[4].addr()
	if _, err := ctlOn(t, c.members[0].addr, "cluster", "create", "--members", proxied); err != nil {
		t.Fatal(err)
	}
	c.enroll(c.issue("cad", "--feature", "cad:1:200", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	charlie := c.members[2]
	// Clients use the members' own addresses, charlie first: the leader
	// hints name proxy addresses, so the clients stay on charlie until it
	// fails them.
	f := newFleet(t, addrsOf(charlie, c.members[0], c.members[1]), 4, 50)
	ids := f.ids()

	for i, p := range proxies {
		if i >= 4 { // charlie's ports: nothing from alpha or bravo
			p.cut(ips[0], ips[1])
		} else { // alpha's and bravo's ports: nothing from charlie
			p.cut(ips[2])
		}
	}
	cut := time.Now()
	// A whole TTL with charlie cut off, renewals going on elsewhere.
	f.waitAll(fleetTTL+20*time.Second, "renewals a TTL into the cut", renewedAfter(cut.Add(fleetTTL)))
	for _, p := range proxies {
		p.heal()
	}
	f.expectNeverLeftHeld()
	if got := f.ids(); !slices.Equal(got, ids) {
		t.Fatal("lease ids changed")
	}
	servers := c.members[0].addr + "," + c.members[1].addr
	if n := inUse(c, servers); n != 200 {
		t.Fatalf("in use %d, want 200", n)
	}
}

// The whole cluster stops: leases go to Grace (never Lost); it starts again:
// leases are Held again with the same ids, counted once.
func TestClientWholeClusterRestart(t *testing.T) {
	c := formedWithLicense(t, 200)
	f := newFleet(t, addrsOf(c.members...), 4, 50)
	ids := f.ids()
	for _, m := range c.members {
		m.stop()
	}
	f.waitAll(30*time.Second, "leases in grace", inState(client.Grace, client.SourceCluster))
	for _, l := range f.leases {
		if left := l.GraceLeft(); left < time.Hour || left > 2*time.Hour {
			t.Fatalf("lease %d: grace left %v, want a little under the default 2 h", l.ID(), left)
		}
	}
	for _, m := range c.members {
		m.start()
	}
	f.waitAll(60*time.Second, "leases held again", inState(client.Held, client.SourceCluster))
	if got := f.ids(); !slices.Equal(got, ids) {
		t.Fatal("lease ids changed across the restart")
	}
	if n := inUse(c, c.servers()); n != 200 {
		t.Fatalf("in use %d after the restart, want 200 (no double counting)", n)
	}
	if got := leaseIDs(t, c.servers()); !slices.Equal(got, ids) {
		t.Fatalf("cluster knows %d leases, want the fleet's 200", len(got))
	}
	if n := f.reported(client.Lost); n != 0 {
		t.Fatalf("%d leases reported lost", n)
	}
	if g, h := f.reported(client.Grace), f.reported(client.Held); g != 200 || h != 200 {
		t.Fatalf("reported %d grace and %d held changes, want 200 of each", g, h)
	}
}
