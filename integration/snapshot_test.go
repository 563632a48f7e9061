package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// Raft's own log lines (hashicorp/raft, pinned in go.mod) that show which
// path a member took.
const (
	logInstalledSnapshot = "Installed remote snapshot"
	logRestoredSnapshot  = "restored from snapshot"
)

// compactedTo is the highest Raft index a member has deleted from its log,
// from Raft's "compacting logs" lines (JSON, as members log).
func compactedTo(m *member) uint64 {
	var top uint64
	for _, line := range strings.Split(m.log(), "\n") {
		if !strings.Contains(line, "compacting logs") {
			continue
		}
		var rec struct {
			To uint64 `json:"to"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err == nil && rec.To > top {
			top = rec.To
		}
	}
	return top
}

func httpIndexes(m *member) (commit, applied uint64, err error) {
	s, err := memberHTTPStatus(m)
	if err != nil {
		return 0, 0, err
	}
	commit, err = strconv.ParseUint(string(s.CommitIndex), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("commit_index %q: %v", s.CommitIndex, err)
	}
	applied, err = strconv.ParseUint(string(s.AppliedIndex), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("applied_index %q: %v", s.AppliedIndex, err)
	}
	return commit, applied, nil
}

// localUsage reads a member's own usage (no consistent read through the
// leader): what its state machine holds.
func localUsage(t *testing.T, m *member) []usageRow {
	t.Helper()
	var rows []usageRow
	ctlJSON(t, m.addr, &rows, "usage", "features")
	return rows
}

// With a small snapshot threshold: a follower that was down while the
// leader snapshotted and truncated its log catches up by InstallSnapshot,
// and a whole-cluster restart restores licenses and live leases from the
// snapshots on disk.
func TestSnapshotCatchUpAndRestore(t *testing.T) {
	const threshold, trailing = 64, 16
	dir := t.TempDir()
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir}
	extra := []string{"--test-snapshot-threshold", strconv.Itoa(threshold), "--test-trailing-logs", strconv.Itoa(trailing),
		"--lease-ttl", "10m"} // leases outlive the test without renewals
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		c.members = append(c.members, newMember(t, n, filepath.Join(dir, "vendor.pub"), extra...))
	}
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:10", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	secrets := map[uint64][]byte{}
	checkout := func(addr, reqID string) uint64 {
		t.Helper()
		resp, err := licensing(t, addr).Checkout(ctx, &triadv1.CheckoutRequest{
			ProtocolVersion: client.ProtocolVersion, RequestId: reqID, Feature: "cad", Version: 1, ClientId: rawClientID})
		if err != nil {
			t.Fatalf("checkout %s: %v", reqID, err)
		}
		secrets[resp.GetLease().GetLeaseId()] = resp.GetLeaseSecret()
		return resp.GetLease().GetLeaseId()
	}
	// Three live leases, taken before the follower goes down.
	leader := c.leader(c.members[0])
	var live []uint64
	for i := 0; i < 3; i++ {
		live = append(live, checkout(leader.addr, fmt.Sprintf("live-%d", i)))
	}
	slices.Sort(live)

	var follower *member
	for _, m := range c.members {
		if m != leader {
			follower = m
			break
		}
	}
	follower.stop()
	stoppedAt, _, err := httpIndexes(leader)
	if err != nil {
		t.Fatal(err)
	}

	// Checkouts and releases until the leader has snapshotted and deleted
	// from its log entries the stopped follower never received.
	churn := 0
	waitFor(t, 2*time.Minute, "the leader truncates its log past the stopped follower", func() error {
		for i := 0; i < 20; i++ {
			id := checkout(leader.addr, fmt.Sprintf("churn-%d", churn))
			churn++
			resp, err := licensing(t, leader.addr).Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{secrets[id]}})
			if err != nil || len(resp.GetResults()) != 1 || !resp.GetResults()[0].GetReleased() {
				t.Fatalf("release %d: %v %v", id, resp, err)
			}
		}
		if to := compactedTo(leader); to <= stoppedAt+trailing {
			return fmt.Errorf("after %d checkout+release pairs the leader compacted up to index %d; the follower stopped at %d", churn, to, stoppedAt)
		}
		return nil
	})
	t.Logf("%d checkout+release pairs: leader compacted its log up to index %d; %s stopped at %d", churn, compactedTo(leader), follower.name, stoppedAt)
	// One more live lease, granted while the follower is down.
	live2 := checkout(leader.addr, "live-while-down")
	live = append(live, live2)
	slices.Sort(live)
	_, leaderApplied, err := httpIndexes(leader)
	if err != nil {
		t.Fatal(err)
	}
	wantUsage := localUsage(t, leader)
	if len(wantUsage) != 1 || wantUsage[0].InUse != 4 || wantUsage[0].Capacity != 10 {
		t.Fatalf("leader usage %+v, want cad 4 of 10", wantUsage)
	}

	logBefore := len(follower.log())
	follower.start()
	restarted := time.Now()
	waitFor(t, 30*time.Second, "the restarted follower catches up with the leader", func() error {
		_, applied, err := httpIndexes(follower)
		if err != nil {
			return err
		}
		if applied < leaderApplied {
			return fmt.Errorf("follower applied_index %d, leader's %d", applied, leaderApplied)
		}
		return nil
	})
	t.Logf("%s caught up with the leader %s after its restart", follower.name, time.Since(restarted).Round(time.Millisecond))
	if !strings.Contains(follower.log()[logBefore:], logInstalledSnapshot) {
		t.Fatalf("the follower caught up without InstallSnapshot (no %q in its log): the test did not cross the snapshot threshold", logInstalledSnapshot)
	}
	if got := localUsage(t, follower); fmt.Sprint(got) != fmt.Sprint(wantUsage) {
		t.Fatalf("follower usage after InstallSnapshot %+v, leader's %+v", got, wantUsage)
	}
	if got := leaseIDs(t, follower.addr); !slices.Equal(got, live) {
		t.Fatalf("follower leases after InstallSnapshot %v, want %v", got, live)
	}
	// And it takes the entries after the snapshot: its log was cleared,
	// not left with a gap its WAL would refuse the next entry after
	// (which fences the member for a disk fault).
	for i := 0; i < 5; i++ {
		id := checkout(leader.addr, fmt.Sprintf("after-install-%d", i))
		if _, err := licensing(t, leader.addr).Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{secrets[id]}}); err != nil {
			t.Fatalf("release %d: %v", id, err)
		}
	}
	_, leaderApplied, err = httpIndexes(leader)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the follower applies the entries after the snapshot", func() error {
		if code, body := getURL(t, "http://"+follower.httpAddr+"/readyz"); code != 200 {
			return fmt.Errorf("/readyz of %s = %d %q", follower.name, code, body)
		}
		_, applied, err := httpIndexes(follower)
		if err != nil {
			return err
		}
		if applied < leaderApplied {
			return fmt.Errorf("follower applied_index %d, leader's %d", applied, leaderApplied)
		}
		return nil
	})
	if l := follower.log()[logBefore:]; strings.Contains(l, "data disk fault") {
		t.Fatalf("the follower fenced itself after InstallSnapshot:\n%s", l)
	}

	// Whole cluster down and up: every member restores its state from its
	// latest snapshot (and the log entries after it).
	logLen := map[string]int{}
	for _, m := range c.members {
		m.stop()
		logLen[m.name] = len(m.log())
	}
	for _, m := range c.members {
		m.start()
	}
	c.leader(c.members[0])
	for _, m := range c.members {
		if !strings.Contains(m.log()[logLen[m.name]:], logRestoredSnapshot) {
			t.Errorf("%s restarted without restoring a snapshot (no %q in its log)", m.name, logRestoredSnapshot)
		}
	}
	var lic []struct{ State string }
	ctlJSON(t, c.servers(), &lic, "license", "list")
	if len(lic) != 1 || lic[0].State != "valid" {
		t.Fatalf("licenses after full restart: %+v", lic)
	}
	for _, m := range c.members {
		if got := leaseIDs(t, m.addr); !slices.Equal(got, live) {
			t.Fatalf("%s leases after full restart %v, want %v", m.name, got, live)
		}
	}
	if rows := c.usage(c.servers()); rows[0].InUse != 4 || rows[0].Capacity != 10 {
		t.Fatalf("usage after full restart %+v, want cad 4 of 10", rows)
	}
	renewAll(t, c.members[1].addr, live, secrets)
	// Request ids survive in the snapshot: a retry returns the same lease.
	if id := checkout(c.members[2].addr, "live-while-down"); id != live2 {
		t.Fatalf("retry of a request id after restore got lease %d, want %d", id, live2)
	}
}
