package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// Packages and suites on real members: a package checkout grants its
// components; the same user and host take a component under the package
// seat; another user is refused while the package is full, before and
// after the leader's death; listings show the components under the
// package; the seat frees once every lease of the group is released.
func TestPackageSuite(t *testing.T) {
	t.Parallel() // no timing assertion
	c := startCluster(t)
	c.form()
	year := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	path := c.issue("suite", "--valid-until", year, "--feature", "suite:2:1,components=cad+cam", "--feature", "viewer:1:1")
	out, err := ctlOn(t, "127.0.0.1:1", "vendor", "inspect", "--trust", c.dir+"/vendor.pub", path)
	if err != nil || !strings.Contains(out, "suite version 2: 1 seats, concurrent, hard limit, grace 2h, no borrowing, package (suite) of cad, cam") {
		t.Fatalf("vendor inspect: %v\n%s", err, out)
	}
	c.enroll(path)
	servers := c.servers()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	alice, err := client.New(strings.Split(servers, ","), tlsOption(t), client.WithIdentity("alice", "ws-alice", 1, "client-alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	pkg, err := alice.Checkout(ctx, client.CheckoutRequest{Feature: "suite"})
	if err != nil {
		t.Fatalf("package checkout: %v", err)
	}
	if got := pkg.Components(); !slices.Equal(got, []string{"cad", "cam"}) {
		t.Fatalf("package lease components %v, want [cad cam]", got)
	}
	cad, err := alice.Checkout(ctx, client.CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatalf("component checkout under alice's package seat: %v", err)
	}
	if cad.Info().GetPackage() != "suite" {
		t.Fatalf("component lease package %q", cad.Info().GetPackage())
	}

	bobTakes := func(servers, req, feature string) error {
		lc := licensing(t, strings.Split(servers, ",")[0])
		_, err := lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: req, Feature: feature,
			User: "bob", Host: "ws-bob", ClientId: rawClientID})
		return err
	}
	wantFull := func(servers, req string) error {
		err := bobTakes(servers, req, "cam")
		if grpcstatus.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "no seat left for cam v 0 (a component of package suite) (1 of 1 seats of suite in use)") {
			return fmt.Errorf("bob's cam checkout with the package full: %v", err)
		}
		return nil
	}
	if err := wantFull(servers, "bob-1"); err != nil {
		t.Fatal(err)
	}
	listing := func(servers string) error {
		table, err := ctlOn(t, servers, "usage", "features", "--consistent")
		if err != nil {
			return err
		}
		var lines []string
		for _, l := range strings.Split(table, "\n") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
		if got, want := strings.Join(lines, "\n"), "suite 2 1 1 - 0\ncad (in suite) 2 1 1 - 0\ncam (in suite) 2 1 0 - 0\nviewer 1 1 0 - 0"; !strings.Contains(got, want) {
			return fmt.Errorf("usage features lacks the package and its components:\n%s", table)
		}
		for _, want := range []string{"\n  cad (in suite)", "\n  cam (in suite)"} {
			if !strings.Contains(table, want) {
				return fmt.Errorf("usage features lacks %q:\n%s", want, table)
			}
		}
		leases, err := ctlOn(t, servers, "usage", "leases", "--consistent")
		if err != nil {
			return err
		}
		if !strings.Contains(leases, "cad (in suite)") {
			return fmt.Errorf("usage leases lacks the component lease:\n%s", leases)
		}
		return nil
	}
	if err := listing(servers); err != nil {
		t.Fatal(err)
	}

	// The leader dies: the suite group and its seat live on.
	leader := c.leader(c.members[0])
	leader.kill()
	rest := strings.Join(addrsOf(without(c.members, leader)...), ",")
	waitFor(t, 30*time.Second, "the package state after the leader's death", func() error {
		if err := listing(rest); err != nil {
			return err
		}
		return wantFull(rest, fmt.Sprint("bob-after-", time.Now().UnixNano()))
	})
	// alice's package lease goes; her cad lease keeps the seat.
	if err := pkg.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := wantFull(rest, "bob-2"); err != nil {
		t.Fatal(err)
	}
	if err := cad.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bobTakes(rest, "bob-3", "cam"); err != nil {
		t.Fatalf("bob's cam checkout once alice released everything: %v", err)
	}
}
