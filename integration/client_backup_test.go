package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// The backup's countdown license: a pool of backupPoolHours seat-hours of
// cad, and seats for the fleet plus the pool probe.
const (
	backupPoolHours = 2
	probeSeats      = 500
)

// A standalone backup server with its own countdown license (a pool of
// usage hours, the typical backup license) takes the leases while the
// cluster is down and gives them back when it returns, releasing them at
// once: the pool is charged only for the time the leases spent there.
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
	lic := c.issueWith("backup", c.vendorKey(), show.ComputerID, "--feature", fmt.Sprintf("cad:1:%d,model=countdown,hours=%d", 50+probeSeats, backupPoolHours),
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
	// usage features shows the backup's pool use growing while they are
	// held there (50 seats: 50 seat-seconds a second).
	held := poolUse(c, backup.addr)
	if held.Model != "countdown" || held.PoolSeconds != backupPoolHours*3600 || held.PoolUsedSeconds <= 0 {
		t.Fatalf("backup pool while leases are held: %+v, want countdown, %d h, some used", held, backupPoolHours)
	}
	// The licensing service's Features answer carries the same pool figures.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	fr, err := licensing(t, backup.addr).Features(ctx, &triadv1.FeaturesRequest{ProtocolVersion: client.ProtocolVersion})
	cancel()
	if err != nil || len(fr.GetFeatures()) != 1 {
		t.Fatalf("Features = %v, %v; want one row", fr, err)
	}
	if r := fr.GetFeatures()[0]; r.GetModel() != "countdown" || r.GetPoolSeconds() != backupPoolHours*3600 || r.GetPoolUsedSeconds() < held.PoolUsedSeconds {
		t.Fatalf("Features row %v, want countdown, %d h, at least %.1f s used", r, backupPoolHours, held.PoolUsedSeconds)
	}
	waitFor(t, 15*time.Second, "backup pool use growing while its leases are held", func() error {
		if u := poolUse(c, backup.addr).PoolUsedSeconds; u < held.PoolUsedSeconds+50 {
			return fmt.Errorf("pool used %.1f s, was %.1f s", u, held.PoolUsedSeconds)
		}
		return nil
	})

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
	// Released: the pool use stops growing (it would gain 50 seat-seconds a
	// second while the leases were held). Checked over 2 s by reading it.
	released := poolUse(c, backup.addr).PoolUsedSeconds
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		if u := poolUse(c, backup.addr).PoolUsedSeconds; u != released {
			t.Fatalf("backup pool use went from %.3f s to %.3f s after the leases were released", released, u)
		}
	}

	// In use 0 alone does not show that the client released the backup
	// leases: left alone they would also go, at their TTL. The pool use
	// read above must match the seat time the leases spent on the backup
	// as the client saw it (from each move there to its move back). Leases
	// left to expire would cost at least 50 × (TTL − renewal interval) ≈
	// 330 seat-seconds more; leases still renewed there, more with every
	// second. The probe then measures what is left of the pool by spending
	// it, a check of the read against the pool's enforcement.
	onBackupTime := f.timeOnBackup()
	readUsed := time.Duration(released * float64(time.Second))
	t.Logf("backup pool: usage features reads %v seat-time used, the leases spent %v there", readUsed.Round(time.Second), onBackupTime.Round(time.Second))
	if diff := readUsed - onBackupTime; diff > 150*time.Second || diff < -150*time.Second {
		t.Fatalf("the backup's countdown pool was charged %v of seat time, the leases were there for %v: they were not released at once on the switch back", readUsed.Round(time.Second), onBackupTime.Round(time.Second))
	}
	left := drainPool(t, backup.addr, probeSeats)
	used := time.Duration(backupPoolHours)*time.Hour - left
	t.Logf("backup pool: the probe found %v seat-time used", used.Round(time.Second))
	// The probe's last renewal before the end can be up to a renewal gap
	// (500 seats × some tens of ms) short of the pool's end.
	if diff := used - readUsed; diff > 60*time.Second || diff < -60*time.Second {
		t.Fatalf("the probe found %v of the pool used, usage features read %v", used.Round(time.Second), readUsed.Round(time.Second))
	}
	// Used up: /v1/status shows the pool and raises countdown_pool_low.
	var st struct {
		Alarms []struct {
			Kind    string `json:"kind"`
			Subject string `json:"subject"`
		} `json:"alarms"`
		Features []usageRow `json:"features"`
	}
	if err := getStatusJSON(backup, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Features) == 0 || st.Features[0].Model != "countdown" || st.Features[0].PoolUsedSeconds < st.Features[0].PoolSeconds {
		t.Fatalf("/v1/status features after the pool was used up: %+v", st.Features)
	}
	low := false
	for _, a := range st.Alarms {
		low = low || a.Kind == "countdown_pool_low" && a.Subject == "cad"
	}
	if !low {
		t.Fatalf("/v1/status alarms after the pool was used up: %+v", st.Alarms)
	}
}

// poolUse returns the backup's cad row of usage features (one version:
// the pool figures are the feature's).
func poolUse(c *cluster, addr string) usageRow {
	c.t.Helper()
	for _, r := range c.usage(addr) {
		if r.Feature == "cad" {
			return r
		}
	}
	c.t.Fatalf("no cad row in usage features of %s", addr)
	return usageRow{}
}

// timeOnBackup sums over the fleet's leases the time from each change that
// put a lease on the backup to the next change that took it off (seat
// time, one seat per lease).
func (f *fleet) timeOnBackup() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	since := map[*client.Lease]time.Time{}
	var total time.Duration
	for _, ev := range f.changes {
		t0, on := since[ev.Lease]
		switch {
		case !on && ev.Source == client.SourceBackup && ev.To == client.Held:
			since[ev.Lease] = ev.At
		case on && (ev.Source != client.SourceBackup || ev.To == client.Lost || ev.To == client.Released):
			total += ev.At.Sub(t0)
			delete(since, ev.Lease)
		}
	}
	if len(since) > 0 {
		f.t.Fatalf("%d leases still on the backup", len(since))
	}
	return total
}

// drainPool checks out seats of cad on a server with a countdown license and
// renews them back to back until the server ends the lease because the pool
// is used up, and returns what was left of the pool when the probe started
// (seat time), from the server's own timestamps: the grant, and the last
// renewal before the pool ran out (its expiry − its TTL).
func drainPool(t *testing.T, addr string, seats uint32) time.Duration {
	t.Helper()
	rpc := licensing(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	co, err := rpc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "pool-probe",
		Feature: "cad", Version: 1, Count: seats, User: "probe", Host: "probe", TtlSeconds: 5, ClientId: rawClientID})
	if err != nil {
		t.Fatalf("pool probe checkout: %v", err)
	}
	granted, last := co.GetLease().GetGrantedUnixMs(), co.GetLease().GetGrantedUnixMs()
	pace := time.NewTicker(20 * time.Millisecond) // each renewal costs a log entry
	defer pace.Stop()
	for range pace.C {
		resp, err := rpc.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{co.GetLease().GetLeaseId()}, LeaseSecrets: [][]byte{co.GetLeaseSecret()}})
		if err != nil {
			t.Fatalf("pool probe renewal: %v", err)
		}
		r := resp.GetResults()[0]
		if !r.GetOk() {
			if !strings.Contains(r.GetError(), "used up") {
				t.Fatalf("pool probe ended: %s", r.GetError())
			}
			return time.Duration(seats) * time.Duration(last-granted) * time.Millisecond
		}
		last = r.GetExpiresUnixMs() - int64(r.GetTtlSeconds())*1000
	}
	panic("unreachable")
}
