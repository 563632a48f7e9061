package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Formation compares every pair of clocks: bravo at -59 min and charlie at
// +59 min are each within the hour of alpha, the member contacted, but
// almost two hours apart from each other.
func TestClockFormationEveryPair(t *testing.T) {
	c := startCluster(t)
	for _, x := range []struct {
		m      *member
		offset string
	}{{c.members[1], "-59m"}, {c.members[2], "59m"}} {
		x.m.kill()
		x.m.extra = []string{"--test-clock-offset", x.offset}
		x.m.start()
	}
	_, err := ctlOn(t, c.members[0].addr, "cluster", "create", "--members", c.servers())
	if err == nil || !strings.Contains(err.Error(), "clock of member") || !strings.Contains(err.Error(), "NTP") {
		t.Fatalf("formation with two members 1h58m apart: %v", err)
	}
	if !strings.Contains(err.Error(), "bravo") || !strings.Contains(err.Error(), "charlie") {
		t.Fatalf("the error does not name the pair: %v", err)
	}
}

// An NTP step of +1 h on the leader does not expire the leases of holders
// that keep renewing: the leader's now advances with its monotonic clock,
// never with the wall clock (server/leaderclock.go).
func TestClockLeaderStepKeepsLeases(t *testing.T) {
	c := startCluster(t)
	for _, m := range c.members {
		m.kill()
		m.extra = []string{"--test-clock-file", filepath.Join(m.dir, "clock-step")}
		m.start()
	}
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:3", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	f := newFleet(t, strings.Split(c.servers(), ","), 1, 3)
	leader := c.leader(c.members[0])
	if err := os.WriteFile(filepath.Join(leader.dir, "clock-step"), []byte("1h"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the leader's clock stepped", func() error {
		if !strings.Contains(leader.log(), "test clock stepped") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// Two TTLs of expiry ticks on the stepped leader, renewals all along.
	time.Sleep(2 * fleetTTL)
	for _, m := range c.members {
		if strings.Contains(m.log(), "lease expired") {
			t.Fatalf("%s expired leases after the step:\n%s", m.name, m.log())
		}
	}
	f.expectNeverLeftHeld()
	if l := c.leader(c.members[0]); l != leader {
		t.Fatalf("leadership moved from %s to %s: the step was not tested", leader.name, l.name)
	}
	for _, r := range c.usage(c.servers()) {
		if r.Feature == "cad" && r.InUse != 3 {
			t.Fatalf("cad in use %d after the step, want 3 (leases expired)", r.InUse)
		}
	}
}
