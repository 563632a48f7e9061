package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// benchJSON is the part of `triadctl bench -o json` these tests read.
type benchJSON struct {
	Workload            string         `json:"workload"`
	Target              string         `json:"target"`
	Clients             int            `json:"clients"`
	Conns               int            `json:"conns"`
	Leases              int            `json:"leases"`
	Seconds             float64        `json:"seconds"`
	LoadStart           float64        `json:"load_start"`
	Checkouts           int            `json:"checkouts"`
	CheckoutsPerS       float64        `json:"checkouts_per_second"`
	CheckoutP50Ms       float64        `json:"checkout_p50_ms"`
	CheckoutP99Ms       float64        `json:"checkout_p99_ms"`
	CheckoutMaxMs       float64        `json:"checkout_max_ms"`
	Renewals            int            `json:"renewals"`
	RenewCalls          int            `json:"renew_calls"`
	RenewalsPerS        float64        `json:"renewals_per_second"`
	RenewP50Ms          float64        `json:"renew_p50_ms"`
	RenewP99Ms          float64        `json:"renew_p99_ms"`
	RenewMaxMs          float64        `json:"renew_max_ms"`
	MaxRenewGapMs       float64        `json:"max_renew_gap_ms"`
	KilledMember        string         `json:"killed_member"`
	KilledAtSeconds     float64        `json:"killed_at_seconds"`
	RecoveryMs          float64        `json:"recovery_ms"`
	LeasesKept          int            `json:"leases_kept"`
	MembersMeasured     int            `json:"members_measured"`
	ServerCPUSeconds    float64        `json:"server_cpu_seconds"`
	ServerCPUPer1000Ops float64        `json:"server_cpu_seconds_per_1000_ops"`
	ServerCores         float64        `json:"server_cores"`
	Errors              map[string]int `json:"errors"`
	Members             []struct {
		Name             string  `json:"name"`
		Address          string  `json:"address"`
		Role             string  `json:"role"`
		Pid              int     `json:"pid"`
		CPUSeconds       float64 `json:"cpu_seconds"`
		RSSIdleBytes     int64   `json:"rss_idle_bytes"`
		RSSStartBytes    int64   `json:"rss_start_bytes"`
		RSSEndBytes      int64   `json:"rss_end_bytes"`
		RSSPerLeaseBytes float64 `json:"rss_per_lease_bytes"`
	} `json:"members"`
}

// TestBenchWorkloads runs each `triadctl bench` workload briefly on one
// cluster and checks that the figures are there and hang together: the
// members found with their roles and real pids, CPU read from their /proc
// and divided by the operations done, RSS per lease for the held leases,
// hold's renewal schedule, and every seat given back at the end. No
// timing is asserted.
func TestBenchWorkloads(t *testing.T) {
	t.Parallel()
	c := formedWithLicense(t, 400)
	pids := map[string]int{}
	for _, m := range c.members {
		pids[m.addr] = m.cmd.Process.Pid
	}
	checkMembers := func(r benchJSON) {
		t.Helper()
		if len(r.Members) != 3 || r.MembersMeasured != 3 {
			t.Fatalf("%s: %d members, %d measured, want 3 and 3", r.Workload, len(r.Members), r.MembersMeasured)
		}
		leaders, sum := 0, 0.0
		for _, m := range r.Members {
			if m.Pid != pids[m.Address] {
				t.Errorf("%s: member %s pid %d, the process is %d", r.Workload, m.Address, m.Pid, pids[m.Address])
			}
			if m.Role == "leader" {
				leaders++
			}
			if m.RSSStartBytes <= 0 || m.RSSEndBytes <= 0 || m.CPUSeconds < 0 {
				t.Errorf("%s: member %s RSS %d → %d, CPU %v: not read from /proc", r.Workload, m.Address, m.RSSStartBytes, m.RSSEndBytes, m.CPUSeconds)
			}
			sum += m.CPUSeconds
		}
		if leaders != 1 {
			t.Errorf("%s: %d leaders among %+v", r.Workload, leaders, r.Members)
		}
		ops := r.Checkouts
		if r.Workload != "cycle" {
			ops = r.Renewals
		}
		if r.ServerCPUSeconds <= 0 || math.Abs(r.ServerCPUSeconds-sum) > 1e-6 ||
			math.Abs(r.ServerCPUPer1000Ops-r.ServerCPUSeconds*1000/float64(ops)) > 1e-6 ||
			math.Abs(r.ServerCores-r.ServerCPUSeconds/r.Seconds) > 1e-6 {
			t.Errorf("%s: CPU %v s (members sum to %v), %v per 1,000 of %d ops, %v cores over %v s: inconsistent",
				r.Workload, r.ServerCPUSeconds, sum, r.ServerCPUPer1000Ops, ops, r.ServerCores, r.Seconds)
		}
		if r.LoadStart < 0 {
			t.Errorf("%s: load average not read", r.Workload)
		}
	}
	ordered := func(what string, p50, p99, max float64) {
		t.Helper()
		if !(0 < p50 && p50 <= p99 && p99 <= max) {
			t.Errorf("%s latencies p50 %v p99 %v max %v are not 0 < p50 <= p99 <= max", what, p50, p99, max)
		}
	}

	// cycle through the followers, JSON also written with --json-out.
	jsonOut := filepath.Join(t.TempDir(), "cycle.json")
	var cyc benchJSON
	ctlJSON(t, c.servers(), &cyc, "bench", "--feature", "cad", "--version", "1", "--workload", "cycle", "--target", "follower",
		"--clients", "4", "--conns", "2", "--duration", "1s", "--json-out", jsonOut)
	if cyc.Workload != "cycle" || cyc.Target != "follower" || cyc.Clients != 4 || cyc.Conns != 2 || cyc.Checkouts == 0 || cyc.CheckoutsPerS <= 0 {
		t.Fatalf("cycle result %+v", cyc)
	}
	ordered("checkout", cyc.CheckoutP50Ms, cyc.CheckoutP99Ms, cyc.CheckoutMaxMs)
	checkMembers(cyc)
	b, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	var fromFile benchJSON
	if err := json.Unmarshal(b, &fromFile); err != nil || !reflect.DeepEqual(fromFile, cyc) {
		t.Fatalf("--json-out holds %s (%v), want what -o json printed %+v", b, err, cyc)
	}

	// renew: 200 leases over 4 clients, renewed back to back on the leader.
	var rn benchJSON
	ctlJSON(t, c.servers(), &rn, "bench", "--feature", "cad", "--version", "1", "--workload", "renew", "--target", "leader",
		"--leases", "200", "--clients", "4", "--conns", "2", "--duration", "1s")
	if rn.Workload != "renew" || rn.Leases != 200 || rn.RenewCalls == 0 || rn.Renewals != 50*rn.RenewCalls || rn.RenewalsPerS <= 0 || len(rn.Errors) != 0 {
		t.Fatalf("renew result %+v: want calls of 50 leases each, all renewed", rn)
	}
	ordered("renew", rn.RenewP50Ms, rn.RenewP99Ms, rn.RenewMaxMs)
	checkMembers(rn)
	for _, m := range rn.Members {
		if m.RSSIdleBytes <= 0 || m.RSSPerLeaseBytes != float64(m.RSSStartBytes-m.RSSIdleBytes)/200 {
			t.Errorf("renew: member %s RSS idle %d, with the leases %d, per lease %v: inconsistent", m.Address, m.RSSIdleBytes, m.RSSStartBytes, m.RSSPerLeaseBytes)
		}
	}

	// hold: 10 clients of 10 leases, each renewing every second for 2.5 s,
	// through every member: 2 or 3 rounds each, never a lease lost.
	var hd benchJSON
	ctlJSON(t, c.servers(), &hd, "bench", "--feature", "cad", "--version", "1", "--workload", "hold", "--target", "all",
		"--leases", "100", "--clients", "10", "--conns", "5", "--renew-every", "1s", "--ttl", "10s", "--duration", "2500ms")
	if hd.Workload != "hold" || hd.Leases != 100 || hd.RenewCalls < 20 || hd.RenewCalls > 30 || hd.Renewals != 10*hd.RenewCalls || len(hd.Errors) != 0 {
		t.Fatalf("hold result %+v: want 20 to 30 calls of 10 leases each, all renewed", hd)
	}
	ordered("renew", hd.RenewP50Ms, hd.RenewP99Ms, hd.RenewMaxMs)
	checkMembers(hd)

	// The human table names the workload, the CPU figure and each member.
	out, err := ctlOn(t, c.servers(), "bench", "--feature", "cad", "--version", "1", "--workload", "hold", "--leases", "10",
		"--clients", "2", "--renew-every", "1s", "--ttl", "5s", "--duration", "1500ms")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"workload hold, target all: 10 leases held by 2 clients on 2 connections, renewed every 1s", "renewals/s ",
		"renew call latency ms: p50 ", "server CPU s per 1,000 renewals ", "3 members measured", "B per lease"} {
		if !strings.Contains(out, w) {
			t.Errorf("bench output lacks %q:\n%s", w, out)
		}
	}
	// Too few seats for --leases: a clear error, and nothing left held.
	if _, err := ctlOn(t, c.servers(), "bench", "--feature", "cad", "--version", "1", "--workload", "renew", "--leases", "500",
		"--clients", "2", "--duration", "1s"); err == nil || !strings.Contains(err.Error(), "at least --leases 500 seats of cad") {
		t.Fatalf("renew of more leases than seats: %v, want an error naming --leases", err)
	}
	waitFor(t, 10*time.Second, "every bench lease released", func() error {
		if rows := c.usage(c.servers()); rows[0].InUse != 0 {
			return fmt.Errorf("in_use %d", rows[0].InUse)
		}
		return nil
	})
	// --kill-leader-at: the bench SIGKILLs the leader's process mid-run and
	// reports the failover as its clients saw it: the member killed, when,
	// and renewals answered again (by the new leader) after the kill;
	// --keep-leases leaves the leases held for the survivors to show.
	old := c.leader(c.members[0])
	var fo benchJSON
	ctlJSON(t, c.servers(), &fo, "bench", "--feature", "cad", "--version", "1", "--workload", "hold", "--target", "all",
		"--leases", "30", "--clients", "6", "--conns", "6", "--renew-every", "300ms", "--ttl", "6s", "--duration", "6s",
		"--kill-leader-at", "1500ms", "--keep-leases")
	select {
	case <-old.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("bench reported %+v but the leader %s (pid %d) is still running", fo, old.name, pids[old.addr])
	}
	old.cmd = nil
	if fo.KilledMember != old.name || fo.KilledAtSeconds < 1.5 || fo.LeasesKept != 30 {
		t.Fatalf("failover result %+v: want leader %s killed 1.5 s in, 30 leases kept", fo, old.name)
	}
	if fo.RecoveryMs <= 0 || fo.RecoveryMs > 1000*(fo.Seconds-fo.KilledAtSeconds) || fo.MaxRenewGapMs <= 0 || fo.MaxRenewGapMs > fo.Seconds*1000 {
		t.Fatalf("failover result %+v: recovery and longest gap must lie inside the measured time after the kill", fo)
	}
	if fo.Errors["renew: Unavailable"] == 0 {
		t.Errorf("failover result %+v: the clients connected to the killed member saw no Unavailable", fo)
	}
	var alive *member
	for _, m := range c.members {
		if m != old {
			alive = m
		}
	}
	if nl := c.leader(alive); nl == old {
		t.Fatalf("the killed member %s is still the leader", old.name)
	}
	// The 20 leases of the 4 clients on surviving members were renewed to
	// the end and are still held (TTL 6 s); the killed member's clients
	// could not renew theirs, which may have expired already.
	if rows := c.usage(alive.addr); rows[0].InUse < 20 || rows[0].InUse > 30 {
		t.Fatalf("after --keep-leases: in_use %d on %s, want the 20 leases renewed through the survivors still held", rows[0].InUse, alive.name)
	}
	// Kept leases expire after their TTL; the killed member comes back.
	waitFor(t, 25*time.Second, "the kept leases expired", func() error {
		if rows := c.usage(alive.addr); rows[0].InUse != 0 {
			return fmt.Errorf("in_use %d", rows[0].InUse)
		}
		return nil
	})
	old.start()
	waitFor(t, 20*time.Second, "the restarted member back in the cluster", func() error {
		s, err := c.status(old)
		if err != nil {
			return err
		}
		if s.Leader == "" {
			return fmt.Errorf("no leader seen by %s", old.name)
		}
		return nil
	})
	pids[old.addr] = old.cmd.Process.Pid

	// Without admin access (a restricted password it does not know) the
	// load still runs on --target all, unmeasured; --target leader needs
	// the roles and says so.
	tok := mustOpen(t, nil, "--server", c.members[0].addr, "--mode", "full")
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + tok, "TRIAD_NEW_PASSWORD=Fu11-secret-pw"}, "--server", c.members[0].addr, "password", "set", "full"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + tok, "TRIAD_PASSWORD=Fu11-secret-pw", "TRIAD_NEW_PASSWORD=L00k-only-pw"}, "--server", c.members[0].addr, "password", "set", "restricted"); err != nil {
		t.Fatal(err)
	}
	out, err = ctlEnv(t, []string{"TRIAD_PASSWORD=wrong"}, "--server", c.servers(), "bench", "--feature", "cad", "--version", "1", "--clients", "2", "--duration", "1s")
	if err != nil || !strings.Contains(out, "server CPU not measured") || !strings.Contains(out, "checkouts/s ") {
		t.Fatalf("bench without admin access: %v\n%s", err, out)
	}
	_, err = ctlEnv(t, []string{"TRIAD_PASSWORD=wrong"}, "--server", c.servers(), "bench", "--feature", "cad", "--version", "1", "--target", "leader", "--duration", "1s")
	wantFail(t, err, "finding the members' roles for --target leader")
	waitFor(t, 10*time.Second, "the unmeasured run's leases released", func() error {
		out, err := ctlEnv(t, []string{"TRIAD_PASSWORD=L00k-only-pw"}, "--server", c.servers(), "--output", "json", "usage", "features", "--consistent")
		if err != nil {
			return err
		}
		var rows []usageRow
		if err := jsonUnmarshal(out, &rows); err != nil {
			return err
		}
		if rows[0].InUse != 0 {
			return fmt.Errorf("in_use %d", rows[0].InUse)
		}
		return nil
	})
}
