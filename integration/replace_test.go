package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// A member dies for good and its machine is replaced by a fresh member
// (new data directory, new computer ID) with a license binding the new
// set: the cluster is operational again, every lease is intact and
// renewing, the old set's license is gone, and the new member serves and
// counts in the quorum. The refusals are attacked first: no full session,
// a live OLD, an unknown OLD, a configured member as the replacement, a
// license not binding the new set.
func TestReplaceDeadMember(t *testing.T) {
	c := formedWithLicense(t, 20)
	f := newFleet(t, addrsOf(c.members...), 2, 4)
	leases := f.ids()
	leader := c.leader(c.members[0])
	victim := without(c.members, leader)[0]
	survivors := without(c.members, victim)
	srv := strings.Join(addrsOf(survivors...), ",")

	delta := newMember(t, "delta", filepath.Join(c.dir, "vendor.pub"))
	var show struct {
		ComputerID string `json:"computer_id"`
		Mode       string `json:"mode"`
	}
	ctlJSON(t, delta.addr, &show, "server", "show")
	if show.Mode != "unconfigured" {
		t.Fatalf("new member is %s", show.Mode)
	}
	var newSet []string
	for _, m := range survivors {
		var s struct {
			ComputerID string `json:"computer_id"`
		}
		ctlJSON(t, m.addr, &s, "server", "show")
		newSet = append(newSet, s.ComputerID)
	}
	newSet = append(newSet, show.ComputerID)
	until := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	newLic := c.issueWith("new", c.vendorKey(), strings.Join(newSet, ","), "--serial", "NEW-SET-1", "--feature", "cad:1:20", "--valid-until", until)
	oldSetLic := c.issue("oldset", "--serial", "OLD-SET-2", "--feature", "cad:1:20", "--valid-until", until)
	replace := func(args ...string) (string, error) {
		return ctlOn(t, srv, append([]string{"cluster", "replace-member"}, args...)...)
	}

	// No full session: a restricted one, and raw calls without a session.
	if _, err := ctlOn(t, srv, "--mode", "restricted", "cluster", "replace-member", victim.name, "--with", delta.addr, "--license", newLic); err == nil || !strings.Contains(err.Error(), "needs full mode") {
		t.Fatalf("replace in a restricted session: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw := triadv1.NewAdminClient(dialMember(t, survivors[0].addr))
	_, err := raw.ClusterReplaceMember(ctx, &triadv1.ClusterReplaceMemberRequest{
		Header: &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion}, Old: victim.name, With: delta.addr, LicenseFiles: [][]byte{[]byte("x")}})
	if grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("raw replace without a session: %v, want Unauthenticated", err)
	}
	_, err = raw.ClusterReplaceMember(ctx, &triadv1.ClusterReplaceMemberRequest{
		Header: &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion, SessionToken: "forged-token"}, Old: victim.name, With: delta.addr, LicenseFiles: [][]byte{[]byte("x")}})
	if err == nil || grpcstatus.Code(err) == codes.OK {
		t.Fatalf("raw replace with a forged token: %v, want refused", err)
	}
	// OLD still running: refused (a FlexNet user expects a live server not
	// to be swapped out from under its clients).
	if _, err := replace(victim.name, "--with", delta.addr, "--license", newLic); err == nil || !strings.Contains(err.Error(), "is running") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("replace of a live member: %v", err)
	}
	if _, err := replace("zulu", "--with", delta.addr, "--license", newLic); err == nil || !strings.Contains(err.Error(), `no member "zulu"`) {
		t.Fatalf("replace of an unknown member: %v", err)
	}
	if _, err := replace(victim.name, "--with", survivors[1].addr, "--license", newLic); err == nil || !strings.Contains(err.Error(), "already belongs to a failover cluster") {
		t.Fatalf("replace by a configured member: %v", err)
	}

	older := newMember(t, "echo", filepath.Join(c.dir, "vendor.pub"), "--test-format-version", "2")
	if _, err := replace(victim.name, "--with", older.addr, "--license", newLic); err == nil || !strings.Contains(err.Error(), "runs command format 2") {
		t.Fatalf("replace by a member of an older build: %v", err)
	}
	older.kill()
	twin := newMember(t, victim.name, filepath.Join(c.dir, "vendor.pub"))
	if _, err := replace(victim.name, "--with", twin.addr, "--license", newLic); err == nil || !strings.Contains(err.Error(), "has the dead member's name") {
		t.Fatalf("replace by a member of the same name: %v", err)
	}
	twin.kill()

	victim.kill() // for good
	t.Logf("killed %s for good; replacing it by delta (%s)", victim.name, show.ComputerID)
	if _, err := replace(victim.name, "--with", delta.addr, "--license", oldSetLic); err == nil || !strings.Contains(err.Error(), "does not bind the cluster after the replacement") {
		t.Fatalf("replace with a license of the old set: %v", err)
	}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "other")); err != nil {
		t.Fatal(err)
	}
	untrusted := c.issueWith("untrusted", filepath.Join(c.dir, "other.key"), strings.Join(newSet, ","), "--serial", "NEW-SET-X", "--feature", "cad:1:20", "--valid-until", until)
	if _, err := replace(victim.name, "--with", delta.addr, "--license", untrusted); err == nil || !strings.Contains(err.Error(), "trusted") {
		t.Fatalf("replace with a license of an untrusted vendor: %v", err)
	}
	if _, err := replace(victim.name, "--with", delta.addr, "--license", c.writeFile("junk.lic", "not a license")); err == nil {
		t.Fatal("replace with a junk license file accepted")
	}
	var lic []struct{ Serial string }
	ctlJSON(t, srv, &lic, "license", "list")
	if len(lic) != 1 || lic[0].Serial == "NEW-SET-1" {
		t.Fatalf("refused replacements changed the licenses: %+v", lic)
	}

	replaced := time.Now()
	out, err := replace(victim.name, "--with", delta.addr, "--license", newLic)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replace-member: %s", out)
	// Every member, the new one included, sees an operational cluster of
	// the survivors and delta.
	want := []string{survivors[0].name, survivors[1].name, "delta"}
	slices.Sort(want)
	for _, m := range append(survivors, delta) {
		waitFor(t, 30*time.Second, m.name+" sees the replaced cluster operational", func() error {
			s, err := c.status(m)
			if err != nil {
				return err
			}
			var names []string
			for _, mm := range s.Members {
				names = append(names, mm.Name)
			}
			if s.Status != "operational" || s.Leader == "" || !slices.Equal(names, want) {
				return fmt.Errorf("status %q leader %q members %v", s.Status, s.Leader, names)
			}
			for _, l := range s.Links {
				if l.State != "up" {
					return fmt.Errorf("link %s-%s %s", l.A, l.B, l.State)
				}
			}
			return nil
		})
	}
	ctlJSON(t, delta.addr, &lic, "license", "list")
	if len(lic) != 1 || lic[0].Serial != "NEW-SET-1" {
		t.Fatalf("licenses after the replacement: %+v, want only NEW-SET-1", lic)
	}
	waitFor(t, 20*time.Second, "delta holds every lease", func() error {
		if got := leaseIDs(t, delta.addr); !slices.Equal(got, leases) {
			return fmt.Errorf("delta's leases %v, want %v", got, leases)
		}
		return nil
	})
	f.waitAll(30*time.Second, "renewals after the replacement", func(l *client.Lease) error {
		if err := renewedAfter(replaced)(l); err != nil {
			return err
		}
		if s := l.State(); s != client.Held {
			return fmt.Errorf("lease %d is %s", l.ID(), s)
		}
		return nil
	})
	f.expectNeverLeftHeld()
	if n := inUse(c, delta.addr); n != uint32(len(leases)) {
		t.Fatalf("in use %d, want %d", n, len(leases))
	}
	// Running it again finds it done.
	if out, err := replace(victim.name, "--with", delta.addr, "--license", newLic); err != nil || !strings.Contains(out, "already replaced") {
		t.Fatalf("the same replacement again: %q %v", out, err)
	}
	for _, m := range append(survivors, delta) {
		waitFor(t, 10*time.Second, m.name+" audits the replacement", func() error {
			if appliedIndex(auditRecords(t, m), "replace_member") == 0 {
				return fmt.Errorf("no replace_member record")
			}
			return nil
		})
	}

	// delta serves and votes: with one original survivor killed, delta and
	// the other keep the quorum and grant through delta.
	gone := survivors[0]
	gone.kill()
	waitFor(t, 30*time.Second, "a checkout through delta with "+gone.name+" dead", func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := licensing(t, delta.addr).Checkout(cctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "after-replace", Feature: "cad", Version: 1, ClientId: rawClientID})
		if err != nil {
			return err
		}
		if resp.GetLease().GetLeaseId() == 0 {
			return fmt.Errorf("no lease: %v", resp)
		}
		return nil
	})
}

// A replacement interrupted after its command committed (here: the
// leaders hold off changing Raft's voters, and the tool gives up) leaves the
// record naming the new member and the new license; once a leader is free
// to act again (after the leader crashed and restarted), it finishes the
// swap by itself, and re-running the command answers "already replaced".
func TestReplaceInterruptedFinishes(t *testing.T) {
	hold := filepath.Join(t.TempDir(), "hold")
	c := machineCluster(t, "--test-hold-reconcile-file", hold)
	c.form()
	until := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	c.enroll(c.issue("cad", "--feature", "cad:1:20", "--valid-until", until))
	f := newFleet(t, addrsOf(c.members...), 1, 3)
	leases := f.ids()
	leader := c.leader(c.members[0])
	victim := without(c.members, leader)[0]
	survivors := without(c.members, victim)
	srv := strings.Join(addrsOf(survivors...), ",")
	delta := newMember(t, "delta", filepath.Join(c.dir, "vendor.pub"))
	var ids []string
	for _, m := range append(append([]*member(nil), survivors...), delta) {
		var s struct {
			ComputerID string `json:"computer_id"`
		}
		ctlJSON(t, m.addr, &s, "server", "show")
		ids = append(ids, s.ComputerID)
	}
	newLic := c.issueWith("new", c.vendorKey(), strings.Join(ids, ","), "--serial", "NEW-SET-1", "--feature", "cad:1:20", "--valid-until", until)
	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	victim.kill()

	_, err := ctlOn(t, srv, "--timeout", "8s", "cluster", "replace-member", victim.name, "--with", delta.addr, "--license", newLic)
	if err == nil || !strings.Contains(err.Error(), "recorded") || !strings.Contains(err.Error(), "run the same command again") {
		t.Fatalf("the replacement held by the leaders: %v, want told it is recorded but not finished", err)
	}
	t.Logf("interrupted: %v", err)
	// Half done: the record and the licenses are the new set's; delta has
	// not been added to Raft and is still unconfigured.
	s, err := c.status(survivors[0])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range s.Members {
		names = append(names, m.Name)
	}
	if !slices.Contains(names, "delta") || slices.Contains(names, victim.name) {
		t.Fatalf("members after the interrupted replacement: %v", names)
	}
	var lic []struct{ Serial string }
	ctlJSON(t, srv, &lic, "license", "list")
	if len(lic) != 1 || lic[0].Serial != "NEW-SET-1" {
		t.Fatalf("licenses after the interrupted replacement: %+v", lic)
	}
	var show struct{ Mode string }
	ctlJSON(t, delta.addr, &show, "server", "show")
	if show.Mode != "unconfigured" {
		t.Fatalf("delta is %s before the voters changed", show.Mode)
	}

	// The leader crashes and comes back; nothing holds the leaders now.
	os.Remove(hold)
	leader.kill()
	leader.start()
	want := []string{survivors[0].name, survivors[1].name, "delta"}
	slices.Sort(want)
	waitFor(t, 60*time.Second, "the replacement finished by a leader", func() error {
		s, err := c.status(delta)
		if err != nil {
			return err
		}
		var names []string
		for _, m := range s.Members {
			names = append(names, m.Name)
		}
		if s.Mode != "failover" || s.Status != "operational" || s.Leader == "" || !slices.Equal(names, want) {
			return fmt.Errorf("delta sees mode %q status %q leader %q members %v", s.Mode, s.Status, s.Leader, names)
		}
		return nil
	})
	out, err := ctlOn(t, srv, "cluster", "replace-member", victim.name, "--with", delta.addr, "--license", newLic)
	if err != nil || !strings.Contains(out, "already replaced") {
		t.Fatalf("re-run of the replacement: %q %v", out, err)
	}
	waitFor(t, 20*time.Second, "delta holds every lease", func() error {
		if got := leaseIDs(t, delta.addr); !slices.Equal(got, leases) {
			return fmt.Errorf("delta's leases %v, want %v", got, leases)
		}
		return nil
	})
}

// --force replaces a member that still runs (a machine being retired):
// the cluster carries on with the new member, and the old one, stopped
// right after as the operator guide says, is not missed.
func TestReplaceLiveMemberForce(t *testing.T) {
	c := formedWithLicense(t, 20)
	leader := c.leader(c.members[0])
	victim := without(c.members, leader)[0]
	survivors := without(c.members, victim)
	srv := strings.Join(addrsOf(survivors...), ",")
	delta := newMember(t, "delta", filepath.Join(c.dir, "vendor.pub"))
	var ids []string
	for _, m := range append(append([]*member(nil), survivors...), delta) {
		var s struct {
			ComputerID string `json:"computer_id"`
		}
		ctlJSON(t, m.addr, &s, "server", "show")
		ids = append(ids, s.ComputerID)
	}
	newLic := c.issueWith("new", c.vendorKey(), strings.Join(ids, ","), "--serial", "NEW-SET-1", "--feature", "cad:1:20", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"))
	out, err := ctlOn(t, srv, "cluster", "replace-member", victim.name, "--with", delta.addr, "--license", newLic, "--force")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", out)
	victim.stop()
	want := []string{survivors[0].name, survivors[1].name, "delta"}
	slices.Sort(want)
	waitFor(t, 30*time.Second, "operational with delta", func() error {
		s, err := c.status(delta)
		if err != nil {
			return err
		}
		var names []string
		for _, m := range s.Members {
			names = append(names, m.Name)
		}
		if s.Status != "operational" || s.Leader == "" || !slices.Equal(names, want) {
			return fmt.Errorf("status %q leader %q members %v", s.Status, s.Leader, names)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := licensing(t, delta.addr).Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "after-force", Feature: "cad", Version: 1, ClientId: rawClientID}); err != nil {
		t.Fatalf("checkout through delta: %v", err)
	}
}
