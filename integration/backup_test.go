package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
)

// machineCluster starts three members that each play their own machine
// (--test-machine-id), so that restores can be told apart by machine even
// on one test host.
func machineCluster(t *testing.T, extra ...string) *cluster {
	c := &cluster{t: t, dir: t.TempDir()}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		c.members = append(c.members, newMember(t, n, filepath.Join(c.dir, "vendor.pub"), append([]string{"--test-machine-id", "machine-" + n}, extra...)...))
	}
	return c
}

// restore runs `triadd restore` for m into its data directory, as on
// machine.
func restore(t *testing.T, file string, m *member, machine string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "triadd"), "restore", "--snapshot", file, "--data-dir", m.dir,
		"--name", m.name, "--test-machine-id", machine).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("triadd restore: %v: %s", err, out)
	}
	return string(out), nil
}

// wipe loses a member's whole data directory (disk lost).
func wipe(t *testing.T, m *member) {
	t.Helper()
	if err := os.RemoveAll(m.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

type backupHeader struct {
	ClusterID string      `json:"cluster_id"`
	Index     json.Number `json:"index"`
	Term      json.Number `json:"term"`
	Member    string      `json:"member"`
	Members   []struct {
		Name         string `json:"name"`
		ComputerID   string `json:"computer_id"`
		MachineProof string `json:"machine_proof"`
	} `json:"members"`
}

// All three members lose their disks: the backup restored on the three
// machines brings the cluster back with its licenses, its leases and their
// secrets (the holders renew them as before) and the members' computer
// IDs; what was done after the backup is gone. A damaged backup, a restore
// on another machine or into a data directory of another computer ID, and
// a backup in a restricted session are refused.
func TestBackupRestoreWholeCluster(t *testing.T) {
	c := machineCluster(t)
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:20", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	ids := c.computerIDs()
	f := newFleet(t, addrsOf(c.members...), 2, 4)
	leases := f.ids()

	file := filepath.Join(c.dir, "triad.backup")
	if _, err := ctlOn(t, c.servers(), "--mode", "restricted", "snapshot", "save", file); err == nil || !strings.Contains(err.Error(), "full mode") {
		t.Fatalf("snapshot save in a restricted session: %v, want a refusal naming full mode", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a refused snapshot save left a file: %v", err)
	}
	follower := without(c.members, c.leader(c.members[0]))[0]
	out, err := ctlOn(t, follower.addr, "snapshot", "save", file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", strings.TrimSpace(out))
	var hdr backupHeader
	ctlJSON(t, "127.0.0.1:1", &hdr, "snapshot", "inspect", file)
	if hdr.Member != follower.name || len(hdr.Members) != 3 || hdr.Index == "" || hdr.Index == "0" || hdr.Term == "" || len(hdr.ClusterID) != 32 {
		t.Fatalf("backup header %+v", hdr)
	}
	for i, m := range hdr.Members {
		if m.ComputerID != ids[i] || m.MachineProof == "" {
			t.Fatalf("backup member %d: %+v, want computer ID %s with a machine proof", i, m, ids[i])
		}
	}
	waitFor(t, 10*time.Second, follower.name+" audits the backup", func() error {
		for _, r := range auditRecords(t, follower) {
			if r["kind"] == "served" && r["command"] == "snapshot_save" && r["outcome"] == "accepted" {
				return nil
			}
		}
		return fmt.Errorf("no accepted snapshot_save in the audit log")
	})
	// A license enrolled after the backup is not in it.
	c.enroll(c.issue("later", "--serial", "LATER-1", "--feature", "cam:1:3", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))

	// Damaged copies are refused by triadctl and by triadd restore.
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x01
	damaged := map[string][]byte{"truncated": good[:len(good)-100], "flipped": flipped, "empty": nil}
	for name, b := range damaged {
		p := c.writeFile(name+".backup", string(b))
		if _, err := ctlOn(t, "127.0.0.1:1", "snapshot", "inspect", p); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("inspect %s backup: %v, want refused as damaged", name, err)
		}
	}

	for _, m := range c.members {
		m.kill()
		wipe(t, m)
	}
	alpha := c.members[0]
	for name, want := range map[string]string{"truncated": "truncated", "flipped": "checksum", "empty": "does not start like a Triad backup"} {
		_, err := restore(t, filepath.Join(c.dir, name+".backup"), alpha, "machine-alpha")
		if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "nothing restored") {
			t.Fatalf("restore of a %s backup: %v, want refused as damaged (%s)", name, err, want)
		}
	}
	// Another machine: alpha's backup on bravo's machine, in an empty data
	// directory; then a data directory holding a computer ID the cluster
	// does not bind; then a member name the cluster does not have.
	if _, err := restore(t, file, alpha, "machine-bravo"); err == nil || !strings.Contains(err.Error(), "is not the one member alpha ran on") || !strings.Contains(err.Error(), "same instance") {
		t.Fatalf("restore on another machine: %v, want refused", err)
	}
	foreign := "TRD-0000-0000-0000-0001"
	if err := os.WriteFile(filepath.Join(alpha.dir, "computer-id"), []byte(foreign+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(t, file, alpha, "machine-alpha"); err == nil || !strings.Contains(err.Error(), foreign+" (in "+alpha.dir+") is not bound in the backup's cluster") {
		t.Fatalf("restore into a data directory of a foreign computer ID: %v, want refused", err)
	}
	if err := os.WriteFile(filepath.Join(alpha.dir, "computer-id"), []byte(ids[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(t, file, alpha, "machine-alpha"); err == nil || !strings.Contains(err.Error(), "belongs to member bravo") {
		t.Fatalf("restore into bravo's data directory as alpha: %v, want refused", err)
	}
	wipe(t, alpha)
	if entries, _ := os.ReadDir(alpha.dir); len(entries) != 0 {
		t.Fatalf("refused restores wrote into the data directory: %v", entries)
	}
	zulu := &member{name: "zulu", dir: alpha.dir}
	if _, err := restore(t, file, zulu, "machine-alpha"); err == nil || !strings.Contains(err.Error(), `no member named "zulu"`) {
		t.Fatalf("restore of an unknown member: %v, want refused", err)
	}

	for _, m := range c.members {
		out, err := restore(t, file, m, "machine-"+m.name)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", strings.TrimSpace(out))
	}
	// A second restore over restored state is refused: it never overwrites.
	if _, err := restore(t, file, alpha, "machine-alpha"); err == nil || !strings.Contains(err.Error(), "already holds Raft state") {
		t.Fatalf("restore over existing state: %v, want refused", err)
	}
	restarted := time.Now()
	for _, m := range c.members {
		m.start()
	}
	waitFor(t, 30*time.Second, "the restored cluster operational", func() error {
		s, err := c.status(alpha)
		if err != nil {
			return err
		}
		if s.Status != "operational" || s.Leader == "" {
			return fmt.Errorf("status %q, leader %q", s.Status, s.Leader)
		}
		return nil
	})
	if got := c.computerIDs(); !slices.Equal(got, ids) {
		t.Fatalf("computer IDs after the restore %v, want %v", got, ids)
	}
	var lic []struct{ Serial, State string }
	ctlJSON(t, c.servers(), &lic, "license", "list")
	if len(lic) != 1 || lic[0].State != "valid" || lic[0].Serial == "LATER-1" {
		t.Fatalf("licenses after the restore: %+v, want the one enrolled before the backup", lic)
	}
	for _, m := range c.members {
		if got := leaseIDs(t, m.addr); !slices.Equal(got, leases) {
			t.Fatalf("%s leases after the restore %v, want %v", m.name, got, leases)
		}
	}
	// The holders renew with their secrets and stay held.
	f.waitAll(60*time.Second, "renewals after the restore", func(l *client.Lease) error {
		if err := renewedAfter(restarted)(l); err != nil {
			return err
		}
		if s := l.State(); s != client.Held {
			return fmt.Errorf("lease %d is %s", l.ID(), s)
		}
		return nil
	})
	if got := f.ids(); !slices.Equal(got, leases) {
		t.Fatal("lease ids changed")
	}
	if n := inUse(c, c.servers()); n != uint32(len(leases)) {
		t.Fatalf("in use %d after the restore, want %d", n, len(leases))
	}
	// The session that took the backup does not hold the full-access lock
	// in the restored state: a remote full session opens at once.
	if _, err := ctlOn(t, c.servers(), "--mode", "full", "server", "show"); err != nil {
		t.Fatalf("full session after the restore: %v", err)
	}
}

// One member's disk is lost: restored from an older backup on its own
// machine, it takes its computer ID back and catches up from the other two
// with everything done after the backup.
func TestRestoreOneMemberRejoins(t *testing.T) {
	c := machineCluster(t)
	c.form()
	until := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	c.enroll(c.issue("cad", "--feature", "cad:1:20", "--valid-until", until))
	ids := c.computerIDs()
	f := newFleet(t, addrsOf(c.members...), 1, 3)
	file := filepath.Join(c.dir, "old.backup")
	if _, err := ctlOn(t, c.servers(), "snapshot", "save", file); err != nil {
		t.Fatal(err)
	}
	// After the backup: a second license and more leases.
	c.enroll(c.issue("later", "--serial", "LATER-1", "--feature", "cam:1:3", "--valid-until", until))
	g := newFleet(t, addrsOf(c.members...), 1, 2)
	all := append(f.ids(), g.ids()...)
	slices.Sort(all)

	leader := c.leader(c.members[0])
	lost := without(c.members, leader)[0]
	lost.kill()
	wipe(t, lost)
	out, err := restore(t, file, lost, "machine-"+lost.name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", strings.TrimSpace(out))
	lost.start()
	waitFor(t, 30*time.Second, lost.name+" caught up", func() error {
		var lic []struct{ Serial string }
		ctlJSON(t, lost.addr, &lic, "license", "list")
		if len(lic) != 2 {
			return fmt.Errorf("%s has %d licenses", lost.name, len(lic))
		}
		if got := leaseIDs(t, lost.addr); !slices.Equal(got, all) {
			return fmt.Errorf("%s leases %v, want %v", lost.name, got, all)
		}
		s, err := c.status(lost)
		if err != nil {
			return err
		}
		if s.Status != "operational" || s.Leader == "" {
			return fmt.Errorf("status %q leader %q", s.Status, s.Leader)
		}
		return nil
	})
	if got := c.computerIDs(); !slices.Equal(got, ids) {
		t.Fatalf("computer IDs after the restore %v, want %v", got, ids)
	}
	// It votes again: with the leader killed, it and the third elect one.
	leader.kill()
	rest := without(c.members, leader)
	c.newLeader(lost, leader)
	if got := leaseIDs(t, strings.Join(addrsOf(rest...), ",")); !slices.Equal(got, all) {
		t.Fatalf("leases after the leader's death %v, want %v", got, all)
	}
}
