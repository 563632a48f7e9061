package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
)

// A standalone backup server with its own license takes the leases while
// the cluster is down and gives them back when it returns. (The backup's
// license is an ordinary one here; countdown licenses come with the
// license-model issue.)
func TestClientBackupServer(t *testing.T) {
	c := formedWithLicense(t, 50)
	backup := newMember(t, "backup", filepath.Join(c.dir, "vendor.pub"))
	if _, err := ctlOn(t, backup.addr, "cluster", "create", "--standalone"); err != nil {
		t.Fatal(err)
	}
	var show struct {
		ComputerID string `json:"computer_id"`
	}
	ctlJSON(t, backup.addr, &show, "server", "show")
	lic := c.issueWith("backup", c.vendorKey(), show.ComputerID, "--feature", "cad:1:50",
		"--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"))
	var info struct{ State string }
	ctlJSON(t, backup.addr, &info, "license", "enroll", lic)
	if info.State != "valid" {
		t.Fatalf("backup license %q", info.State)
	}

	f := newFleet(t, addrsOf(c.members...), 2, 25, client.WithBackup(backup.addr))
	ids := f.ids()
	if n := inUse(c, backup.addr); n != 0 {
		t.Fatalf("backup in use %d while the cluster answers", n)
	}

	for _, m := range c.members {
		m.stop()
	}
	f.waitAll(60*time.Second, "leases on the backup", inState(client.Held, client.SourceBackup))
	if n := inUse(c, backup.addr); n != 50 {
		t.Fatalf("backup in use %d, want 50", n)
	}
	// They stay there, renewed, while the cluster is down.
	onBackup := time.Now()
	f.waitAll(30*time.Second, "renewals on the backup", renewedAfter(onBackup))

	for _, m := range c.members {
		m.start()
	}
	f.waitAll(60*time.Second, "leases back on the cluster", inState(client.Held, client.SourceCluster))
	if got := f.ids(); !slices.Equal(got, ids) {
		t.Fatal("cluster lease ids changed: the surviving cluster leases should have been renewed")
	}
	waitFor(t, 15*time.Second, "backup leases released", func() error {
		if n := inUse(c, backup.addr); n != 0 {
			return fmt.Errorf("backup in use %d", n)
		}
		return nil
	})
	if n := inUse(c, c.servers()); n != 50 {
		t.Fatalf("cluster in use %d, want 50", n)
	}
	if n := f.reported(client.Lost); n != 0 {
		t.Fatalf("%d leases reported lost", n)
	}
}
