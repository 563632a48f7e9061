package integration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// Dotted feature versions on real members: a license with 2.1, 2.10 and 3
// is issued and enrolled with triadctl; checkouts compare component by
// component (2.9 needs a seat of 2.10 or 3; 3.0 == 3); every listing shows
// the licensed text; refusals name the dotted version; the leases and
// their versions survive the leader's death.
func TestDottedVersions(t *testing.T) {
	t.Parallel() // no timing assertion
	c := startCluster(t)
	c.form()
	year := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	path := c.issue("rhino", "--valid-until", year, "--feature", "rhino:2.1:1", "--feature", "rhino:2.10:1", "--feature", "rhino:3:1",
		"--feature", "cal:2024.06:1")
	out, err := ctlOn(t, "127.0.0.1:1", "vendor", "inspect", "--trust", c.dir+"/vendor.pub", path)
	if err != nil || !strings.Contains(out, "rhino version 2.10: 1 seats") || !strings.Contains(out, "cal version 2024.06: 1 seats") {
		t.Fatalf("vendor inspect: %v\n%s", err, out)
	}
	c.enroll(path)
	servers := c.servers()

	type row struct {
		Feature     string `json:"feature"`
		Version     uint32 `json:"version"`
		VersionText string `json:"version_text"`
		Capacity    uint32 `json:"capacity"`
		InUse       uint32 `json:"in_use"`
	}
	var rows []row
	ctlJSON(t, servers, &rows, "usage", "features", "--consistent")
	if got := fmt.Sprint(rows); got != "[{cal 2024 2024.06 1 0} {rhino 2 2.1 1 0} {rhino 2 2.10 1 0} {rhino 3  1 0}]" {
		t.Fatalf("usage features: %s", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := newClient(t, servers)
	take := func(v string) (*client.Lease, error) {
		return cl.Checkout(ctx, client.CheckoutRequest{Feature: "rhino", VersionText: v})
	}
	l210, err := take("2.10")
	if err != nil || l210.VersionString() != "2.10" || l210.Version() != 2 {
		t.Fatalf("checkout at 2.10: %v", err)
	}
	if _, err := take("3.0"); err != nil { // 3.0 == 3
		t.Fatalf("checkout at 3.0: %v", err)
	}
	// 2.9 > 2.1: only the 2.10 and 3 seats serve it, and both are taken.
	if _, err := take("2.9"); !errors.Is(err, client.ErrNoSeat) || !strings.Contains(err.Error(), "no seat left for rhino v2.9") {
		t.Fatalf("checkout at 2.9: %v", err)
	}
	if _, err := take("3.1"); err == nil || !strings.Contains(err.Error(), "no license for rhino at version 3.1 (highest licensed version is 3)") {
		t.Fatalf("checkout at 3.1: %v", err)
	}
	if _, err := take("2.x"); !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), `minor component "x"`) {
		t.Fatalf("checkout at 2.x: %v", err)
	}
	// triadctl: a refusal names the dotted version; a raw caller may give
	// only version_text; 2.1 still fits.
	if _, err := ctlOn(t, servers, "checkout", "--feature", "rhino", "--version", "2.2", "--hold", "1s"); err == nil || !strings.Contains(err.Error(), "no seat left for rhino v2.2") {
		t.Fatalf("triadctl checkout --version 2.2: %v", err)
	}
	raw, err := licensing(t, c.members[1].addr).Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion,
		RequestId: "raw-cal", Feature: "cal", VersionText: "2024.6", User: "raw", ClientId: rawClientID})
	if err != nil || raw.GetLease().GetVersion() != 2024 || raw.GetLease().GetVersionText() != "2024.6" {
		t.Fatalf("raw checkout with version_text only: %v %v", raw, err)
	}
	if _, err := take("2.1"); err != nil {
		t.Fatalf("checkout at 2.1: %v", err)
	}

	checkListings := func(servers string) error {
		var rows []row
		ctlJSON(t, servers, &rows, "usage", "features", "--consistent")
		if got := fmt.Sprint(rows); got != "[{cal 2024 2024.06 1 1} {rhino 2 2.1 1 1} {rhino 2 2.10 1 1} {rhino 3  1 1}]" {
			return fmt.Errorf("usage features: %s", got)
		}
		table, err := ctlOn(t, servers, "usage", "features")
		if err != nil {
			return err
		}
		for _, want := range []string{"rhino    2.10", "cal      2024.06", "rhino    3 "} {
			if !strings.Contains(table, want) {
				return fmt.Errorf("usage features table lacks %q:\n%s", want, table)
			}
		}
		leases, err := ctlOn(t, servers, "usage", "leases", "--consistent")
		if err != nil {
			return err
		}
		// Leases show the licensed version their seat sits on (a 3.0
		// request on the 3 seat, 2024.6 on 2024.06), never the request's.
		for _, want := range []string{"rhino    2.10", "rhino    3 ", "rhino    2.1 ", "cal      2024.06 "} {
			if !strings.Contains(leases, want) {
				return fmt.Errorf("usage leases lacks %q:\n%s", want, leases)
			}
		}
		return nil
	}
	if err := checkListings(servers); err != nil {
		t.Fatal(err)
	}

	// The leader dies: the survivors hold the same leases and versions.
	leader := c.leader(c.members[0])
	leader.kill()
	rest := without(c.members, leader)
	restServers := strings.Join(addrsOf(rest...), ",")
	waitFor(t, 30*time.Second, "the dotted leases after the leader's death", func() error {
		return checkListings(restServers)
	})
	if l210.State() == client.Lost {
		t.Fatal("the 2.10 lease was lost across the leader change")
	}
}

// On a cluster with a member of format 3 (the build before dotted versions
// and packages), licenses and checkouts that use them are refused with the
// member and the upgrade named; whole-number use goes on.
func TestDottedVersionsAndPackagesWaitForUpgrade(t *testing.T) {
	// The cluster forms on format 3 and alpha and charlie are upgraded:
	// bravo never ran format 4 (a member rolled back after the cluster
	// committed a format-4 command, the history's start, would halt
	// instead: TestRolledBackMemberHaltsInsteadOfDiverging).
	c := &cluster{t: t, dir: t.TempDir()}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		c.members = append(c.members, newMember(t, n, filepath.Join(c.dir, "vendor.pub"), "--test-format-version", "3"))
	}
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:5", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	bravo := c.member("bravo")
	for _, m := range c.members {
		if m != bravo {
			m.stop()
			m.extra = nil
			m.start()
		}
	}
	waitFor(t, 20*time.Second, "alpha sees bravo on format 3", func() error {
		if f := memberFormats(t, c.members[0]); !strings.HasSuffix(f["bravo"], "/3") {
			return fmt.Errorf("formats %v", f)
		}
		return nil
	})
	year := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	for name, feature := range map[string]string{"dotted": "rhino:2.1:1", "package": "suite:1:1,components=cad2+cam2"} {
		path := c.issue(name, "--valid-until", year, "--feature", feature)
		_, err := ctlOn(t, c.members[0].addr, "license", "enroll", path)
		if err == nil || !strings.Contains(err.Error(), "member bravo runs command format 3") || !strings.Contains(err.Error(), "upgrade it before using `license enroll` of a license") {
			t.Fatalf("enrolling the %s license with bravo on format 3: %v", name, err)
		}
	}
	if _, err := ctlOn(t, c.members[0].addr, "checkout", "--feature", "cad", "--version", "1.0", "--hold", "100ms"); err == nil ||
		!strings.Contains(err.Error(), "member bravo runs command format 3") || !strings.Contains(err.Error(), "upgrade it before using checkouts at a dotted version") {
		t.Fatalf("dotted checkout with bravo on format 3: %v", err)
	}
	if _, err := ctlOn(t, bravo.addr, "checkout", "--feature", "cad", "--version", "1", "--hold", "100ms"); err != nil {
		t.Fatalf("whole-number checkout through bravo: %v", err)
	}
}
