package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// Disk faults on one member (issue 11 point 11; docs/operator-guide.md,
// "Disk faults"): the member stops serving and says why and what to do, the
// other two keep serving, and after the repair it rejoins with everything
// granted meanwhile.

// diskCluster is three members; dataDir, when set, gives member i its data
// directory (created by the caller, e.g. a small filesystem).
type diskCluster struct {
	*cluster
	secrets map[uint64][]byte
}

func newDiskCluster(t *testing.T, extra func(name string) []string) *diskCluster {
	t.Helper()
	dir := t.TempDir()
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	c := &diskCluster{cluster: &cluster{t: t, dir: dir}, secrets: map[uint64][]byte{}}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		m := prepareMember(t, n, "127.0.0.1", filepath.Join(dir, "vendor.pub"), extra(n)...)
		m.start()
		c.members = append(c.members, m)
	}
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:50", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	return c
}

// checkout takes a lease with request id reqID through the first of addrs
// that grants it, retrying (same request id) while members answer
// UNAVAILABLE or time out, as the client library does.
func (c *diskCluster) checkout(reqID string, addrs ...string) uint64 {
	t := c.t
	t.Helper()
	var id uint64
	waitFor(t, 60*time.Second, "checkout "+reqID, func() error {
		var errs []string
		for _, addr := range addrs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := licensing(t, addr).Checkout(ctx, &triadv1.CheckoutRequest{
				ProtocolVersion: client.ProtocolVersion, RequestId: reqID, Feature: "cad", Version: 1, ClientId: rawClientID})
			cancel()
			if err == nil {
				id = resp.GetLease().GetLeaseId()
				c.secrets[id] = resp.GetLeaseSecret()
				return nil
			}
			if code := grpcstatus.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
				t.Fatalf("checkout %s through %s: %v", reqID, addr, err)
			}
			errs = append(errs, err.Error())
		}
		return errors.New(strings.Join(errs, "; "))
	})
	return id
}

func others(c *cluster, bad *member) []*member {
	var out []*member
	for _, m := range c.members {
		if m != bad {
			out = append(out, m)
		}
	}
	return out
}

// alarmsOf is the alarms in m's /v1/status.
func alarmsOf(m *member) (map[string]string, error) {
	var s struct {
		Alarms []struct {
			Kind    string `json:"kind"`
			Member  string `json:"member"`
			Message string `json:"message"`
		} `json:"alarms"`
	}
	if err := getStatusJSON(m, &s); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range s.Alarms {
		out[a.Kind] = a.Member + ": " + a.Message
	}
	return out, nil
}

// checkFenced checks everything a fenced member shows: UNAVAILABLE naming
// the fault and the repair for licensing and admin calls, /readyz failing,
// the disk_fault alarm in its status, the ERROR log line, and a process
// that stays up.
func checkFenced(t *testing.T, m *member, what string) {
	t.Helper()
	waitFor(t, 30*time.Second, m.name+" reports the disk fault", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := licensing(t, m.addr).Checkout(ctx, &triadv1.CheckoutRequest{
			ProtocolVersion: client.ProtocolVersion, RequestId: "on-fenced", Feature: "cad", Version: 1, ClientId: rawClientID})
		if grpcstatus.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), what) || !strings.Contains(err.Error(), "restart this member") {
			return fmt.Errorf("checkout on the faulty member: %v", err)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := licensing(t, m.addr).Features(ctx, &triadv1.FeaturesRequest{ProtocolVersion: client.ProtocolVersion}); grpcstatus.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), what) {
		t.Fatalf("a read (Features) on the fenced member answered %v, want UNAVAILABLE naming %q: its state may be stale", err, what)
	}
	if _, err := ctlOn(t, m.addr, "usage", "leases"); err == nil || !strings.Contains(err.Error(), what) {
		t.Fatalf("usage leases on the fenced member: %v, want a refusal naming %q", err, what)
	}
	if code, body := getURL(t, "http://"+m.httpAddr+"/readyz"); code != 503 || !strings.Contains(body, what) {
		t.Fatalf("/readyz of the fenced member = %d %q", code, body)
	}
	alarms, err := alarmsOf(m)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := alarms["disk_fault"]; !ok || !strings.HasPrefix(a, m.name+": ") || !strings.Contains(a, what) {
		t.Fatalf("alarms of the fenced member %v, want disk_fault of %s naming %q", alarms, m.name, what)
	}
	// The operator's tool still shows the member's own picture, alarm included.
	if out, code, err := ctlStatus(t, m.addr); err != nil || code != 2 || !strings.Contains(out, "disk_fault") || !strings.Contains(out, what) {
		t.Fatalf("cluster status on the fenced member: exit %d %v, want 2 (not operational) and the alarm\n%s", code, err, out)
	}
	log := m.log()
	if !strings.Contains(log, `"level":"ERROR","msg":"data disk fault: this member stopped serving"`) || !strings.Contains(log, what) {
		t.Fatalf("the fenced member's log has no ERROR line naming %q:\n%s", what, tail(log, 3000))
	}
	select {
	case <-m.exited:
		t.Fatalf("the fenced member exited; it must stay up and report")
	default:
	}
}

// checkOthersSeeItOut: the two healthy members have a leader among them
// and report the cluster partially operational (their links to the fenced
// member down), as if it had stopped.
func checkOthersSeeItOut(t *testing.T, c *diskCluster, bad *member, good []*member) {
	t.Helper()
	for _, m := range good {
		waitFor(t, 30*time.Second, m.name+" sees the fenced member out", func() error {
			s, err := c.status(m)
			if err != nil {
				return err
			}
			if s.Leader != good[0].name && s.Leader != good[1].name {
				return fmt.Errorf("leader %q", s.Leader)
			}
			if s.Status != "partially operational" {
				return fmt.Errorf("status %q, links %+v", s.Status, s.Links)
			}
			// The reason is shown on every member, not only on the fenced one.
			alarms, err := alarmsOf(m)
			if err != nil {
				return err
			}
			if a := alarms["disk_fault"]; !strings.HasPrefix(a, bad.name+": member "+bad.name+" answers: member stopped serving: data disk") {
				return fmt.Errorf("alarms %v, want a disk_fault of %s", alarms, bad.name)
			}
			return nil
		})
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// checkRejoined waits until m holds the leases want in its own state and
// reports the cluster operational, then renews them through it.
func (c *diskCluster) checkRejoined(m *member, want []uint64) {
	t := c.t
	t.Helper()
	waitFor(t, 60*time.Second, m.name+" rejoined and caught up", func() error {
		out, err := ctlOn(t, m.addr, "--output", "json", "usage", "leases")
		if err != nil {
			return err
		}
		var leases []struct {
			LeaseID json.Number `json:"lease_id"`
		}
		if err := jsonUnmarshal(out, &leases); err != nil {
			return err
		}
		var got []uint64
		for _, l := range leases {
			id, _ := strconv.ParseUint(string(l.LeaseID), 10, 64)
			got = append(got, id)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s holds leases %v, want %v", m.name, got, want)
		}
		s, err := c.status(m)
		if err != nil {
			return err
		}
		if s.Status != "operational" {
			return fmt.Errorf("%s reports the cluster %q", m.name, s.Status)
		}
		if code, body := getURL(t, "http://"+m.httpAddr+"/readyz"); code != 200 {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	var lic []struct{ State string }
	ctlJSON(t, m.addr, &lic, "license", "list")
	if len(lic) != 1 || lic[0].State != "valid" {
		t.Fatalf("licenses on %s after it rejoined: %+v", m.name, lic)
	}
	var mine []uint64 // the leases this test holds itself (the others' secrets are the clients')
	for _, id := range want {
		if c.secrets[id] != nil {
			mine = append(mine, id)
		}
	}
	renewAll(t, m.addr, mine, c.secrets)
	for _, o := range c.members {
		waitFor(t, 30*time.Second, "no disk_fault alarm on "+o.name+" after the repair", func() error {
			if alarms, err := alarmsOf(o); err != nil || alarms["disk_fault"] != "" {
				return fmt.Errorf("alarms %v %v", alarms, err)
			}
			return nil
		})
	}
}

// An fsync (I/O) error on the leader's data disk: it steps down and fences
// itself; the other two elect a leader and keep granting; leases held
// across the fault stay; after the repair (fault gone, restart) it rejoins
// with the leases granted meanwhile.
func TestDiskFaultFsyncErrorOnLeader(t *testing.T) {
	faults := map[string]string{}
	c := newDiskCluster(t, func(name string) []string {
		faults[name] = filepath.Join(t.TempDir(), "fault")
		return []string{"--test-disk-fault-file", faults[name], "--lease-ttl", "10m"}
	})
	var held []uint64
	for i := 0; i < 3; i++ {
		held = append(held, c.checkout(fmt.Sprintf("before-%d", i), addrsOf(c.members...)...))
	}
	bad := c.leader(c.members[0])
	good := others(c.cluster, bad)
	// Client-library holders renewing every few seconds, the faulty
	// member first in their list.
	f := newFleet(t, addrsOf(append([]*member{bad}, good...)...), 2, 5)
	fleetIDs := f.ids()
	faultAt := time.Now()
	if err := os.WriteFile(faults[bad.name], []byte("eio\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The next write the leader proposes fails its fsync.
	held = append(held, c.checkout("during-0", addrsOf(good...)...))
	checkFenced(t, bad, "data disk I/O error")
	_, err := licensing(t, bad.addr).Features(context.Background(), &triadv1.FeaturesRequest{ProtocolVersion: client.ProtocolVersion})
	t.Logf("a call on the fenced member answers: %v", err)
	f.waitAll(30*time.Second, "renewals after the fault", renewedAfter(faultAt))
	f.expectNeverLeftHeld()
	newLeader := c.leader(good[0])
	if newLeader == bad {
		t.Fatalf("the fenced member %s is still the leader", bad.name)
	}
	for i := 1; i < 4; i++ {
		held = append(held, c.checkout(fmt.Sprintf("during-%d", i), addrsOf(good...)...))
	}
	renewAll(t, good[1].addr, held, c.secrets)
	checkOthersSeeItOut(t, c, bad, good)
	all := slices.Sorted(slices.Values(append(slices.Clone(held), fleetIDs...)))
	if got := leaseIDs(t, good[0].addr); !slices.Equal(got, all) {
		t.Fatalf("leases on %s during the fault %v, want %v", good[0].name, got, all)
	}

	// Repair: the disk is fixed (fault file gone), the member restarted.
	if err := os.Remove(faults[bad.name]); err != nil {
		t.Fatal(err)
	}
	bad.stop()
	bad.start()
	c.checkRejoined(bad, all)
	f.expectNeverLeftHeld()
	if got := f.ids(); !slices.Equal(got, fleetIDs) {
		t.Fatalf("client-held lease ids changed: %v, were %v", got, fleetIDs)
	}
}

// dataDirOnSmallFS mounts a size-limited tmpfs for one member's data
// directory and returns it (unmounted at cleanup); "" when mounting is not
// possible here (not root, no tmpfs), with the reason.
func dataDirOnSmallFS(t *testing.T, size string) (string, string) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		return "", fmt.Sprintf("mount -t tmpfs: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir, ""
}

// fill writes zeros to path until the filesystem is full.
func fill(t *testing.T, path string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

// A follower's data disk fills up (a real, small filesystem): once it
// cannot write its Raft files it fences itself with "data disk full"; the others
// keep serving; after space is freed and it is restarted it catches up.
// Where mounting is impossible the fault is injected (ENOSPC) and the test
// says so.
func TestDiskFaultDiskFullOnFollower(t *testing.T) {
	faults := map[string]string{}
	dataDirs := map[string]string{}
	var why string
	c := newDiskCluster(t, func(name string) []string {
		faults[name] = filepath.Join(t.TempDir(), "fault")
		// Snapshots every 64 entries: the log's current segment is
		// allocated whole when created, so on a full disk the first write
		// to fail is a snapshot or the next segment; frequent snapshots
		// make that the former, within seconds.
		extra := []string{"--test-disk-fault-file", faults[name], "--lease-ttl", "10m", "--test-snapshot-threshold", "64"}
		if dir, reason := dataDirOnSmallFS(t, "16m"); dir != "" {
			dataDirs[name] = dir
			extra = append(extra, "--data-dir", dir)
		} else {
			why = reason
		}
		return extra
	})
	var held []uint64
	for i := 0; i < 3; i++ {
		held = append(held, c.checkout(fmt.Sprintf("before-%d", i), addrsOf(c.members...)...))
	}
	// A follower's disk fills (the leader case is TestDiskFaultFsyncErrorOnLeader).
	bad := others(c.cluster, c.leader(c.members[0]))[0]
	good := others(c.cluster, bad)
	filler := ""
	if dir := dataDirs[bad.name]; dir != "" {
		t.Logf("%s's data directory is a 16 MiB tmpfs at %s: filling it", bad.name, dir)
		filler = filepath.Join(dir, "filler")
		fill(t, filler)
	} else {
		t.Logf("cannot mount a small filesystem here (%s): injecting ENOSPC with --test-disk-fault-file instead", why)
		if err := os.WriteFile(faults[bad.name], []byte("enospc\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Grants go on through the other two until its log cannot grow.
	n := 0
	waitFor(t, 90*time.Second, bad.name+" fences itself for a full disk", func() error {
		for i := 0; i < 10; i++ {
			id := c.checkout(fmt.Sprintf("churn-%d", n), addrsOf(good...)...)
			n++
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := licensing(t, good[0].addr).Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{c.secrets[id]}})
			cancel()
			if err != nil {
				t.Fatalf("release %d: %v", id, err)
			}
		}
		if code, body := getURL(t, "http://"+bad.httpAddr+"/readyz"); code != 503 || !strings.Contains(body, "data disk full") {
			return fmt.Errorf("after %d checkout+release pairs /readyz of %s = %d %q", n, bad.name, code, body)
		}
		return nil
	})
	t.Logf("%s fenced itself after %d checkout+release pairs", bad.name, n)
	checkFenced(t, bad, "data disk full")
	for i := 0; i < 3; i++ {
		held = append(held, c.checkout(fmt.Sprintf("during-%d", i), addrsOf(good...)...))
	}
	slices.Sort(held)
	checkOthersSeeItOut(t, c, bad, good)

	// Restarted while the disk is still full, it refuses to start, saying
	// why (and a service manager restarting it loses nothing).
	bad.stop()
	if filler != "" {
		fill(t, filler) // what the stop may have freed
	}
	if out := startRefused(t, bad); !strings.Contains(out, "data disk full") || !strings.Contains(out, "start this member again") {
		t.Fatalf("start on a full disk: %s", out)
	}

	// Repair: free the space (or end the injected fault) and start it.
	if filler != "" {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Remove(faults[bad.name]); err != nil {
		t.Fatal(err)
	}
	bad.start()
	c.checkRejoined(bad, held)
}

// startRefused runs m's triadd and expects it to refuse to start: a
// non-zero exit within the deadline; it returns stderr.
func startRefused(t *testing.T, m *member) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "triadd"), m.args()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() <= 0 {
		t.Fatalf("triadd: %v (want a refusal: a non-zero exit); stderr: %s", err, stderr.String())
	}
	t.Logf("%s refused to start (exit %d): %s", m.name, exit.ExitCode(), strings.TrimSpace(stderr.String()))
	return stderr.String()
}

func fileSum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// snapshotDirs lists a member's finished snapshots, newest last (Raft
// names them term-index-ms).
func snapshotDirs(t *testing.T, m *member) []string {
	entries, err := os.ReadDir(filepath.Join(m.dir, "raft", "snapshots"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	key := func(s string) [3]uint64 {
		var k [3]uint64
		for i, p := range strings.SplitN(s, "-", 3) {
			k[i], _ = strconv.ParseUint(p, 10, 64)
		}
		return k
	}
	slices.SortFunc(out, func(a, b string) int {
		ka, kb := key(a), key(b)
		for i := range ka {
			if ka[i] != kb[i] {
				if ka[i] < kb[i] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	return out
}

// A damaged raft.db, then a damaged Raft log (WAL), then a damaged newest
// snapshot (with an older good one): the member refuses to start, naming the file and the repair, and
// leaves the files as they were; the other two keep serving; the
// documented repair (move the raft directory aside, start again) rebuilds
// it from the leader's snapshot with the same computer ID and formation.
func TestDiskFaultCorruptFilesRefuseStartAndRepair(t *testing.T) {
	c := newDiskCluster(t, func(string) []string {
		return []string{"--lease-ttl", "10m", "--test-snapshot-threshold", "32", "--test-trailing-logs", "8"}
	})
	var held []uint64
	for i := 0; i < 3; i++ {
		held = append(held, c.checkout(fmt.Sprintf("before-%d", i), addrsOf(c.members...)...))
	}
	leader := c.leader(c.members[0])
	bad := others(c.cluster, leader)[0]
	good := others(c.cluster, bad)
	ids := c.computerIDs()

	// 1. raft.db damaged (its meta pages overwritten) while stopped.
	bad.stop()
	db := filepath.Join(bad.dir, "raft", "raft.db")
	f, err := os.OpenFile(db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sum := fileSum(t, db)
	logBefore := len(bad.log())
	stderr := startRefused(t, bad)
	for _, want := range []string{db + " is damaged", "mv " + filepath.Join(bad.dir, "raft"), "never deletes"} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("refusal does not say %q:\n%s", want, stderr)
		}
	}
	if l := bad.log()[logBefore:]; !strings.Contains(l, `"level":"ERROR","msg":"member did not start"`) || !strings.Contains(l, "is damaged") {
		t.Fatalf("no ERROR line in the member's log for the refused start:\n%s", l)
	}
	if fileSum(t, db) != sum {
		t.Fatalf("the refused start changed %s", db)
	}
	held = append(held, c.checkout("while-refused", addrsOf(good...)...))
	repair(t, bad)
	bad.start()
	slices.Sort(held)
	c.checkRejoined(bad, held)
	if got := c.computerIDs(); !slices.Equal(got, ids) {
		t.Fatalf("computer IDs after the repair %v, before %v", got, ids)
	}
	// Its audit log (kept in the data directory) records the rebuild and
	// its chain is intact.
	if out, err := ctlOn(t, bad.addr, "server", "verify-audit"); err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("verify-audit on the repaired member: %v\n%s", err, out)
	}

	// 1b. Its Raft log damaged near the start of its segment (raft-wal
	// alone would take that for a torn write and drop the whole log).
	// A few more grants first: appends after the damaged one.
	for i := 0; i < 3; i++ {
		held = append(held, c.checkout(fmt.Sprintf("before-wal-damage-%d", i), addrsOf(c.members...)...))
	}
	slices.Sort(held)
	bad.stop()
	segs, err := filepath.Glob(filepath.Join(bad.dir, "raft", "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("WAL segments of %s: %v %v", bad.name, segs, err)
	}
	seg := segs[len(segs)-1]
	f, err = os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 64), 100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sum = fileSum(t, seg)
	stderr = startRefused(t, bad)
	for _, want := range []string{filepath.Join(bad.dir, "raft", "wal") + " is damaged", filepath.Base(seg), "mv " + filepath.Join(bad.dir, "raft")} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("refusal does not say %q:\n%s", want, stderr)
		}
	}
	if fileSum(t, seg) != sum {
		t.Fatalf("the refused start changed %s", seg)
	}
	repair(t, bad)
	bad.start()
	c.checkRejoined(bad, held)

	// 2. Its newest snapshot damaged, an older one intact: churn until it
	// has two snapshots, then flip a byte of the newest's state.
	n := 0
	waitFor(t, 2*time.Minute, bad.name+" holds two snapshots", func() error {
		for i := 0; i < 10; i++ {
			id := c.checkout(fmt.Sprintf("churn-%d", n), addrsOf(c.members...)...)
			n++
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := licensing(t, good[0].addr).Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{id}, LeaseSecrets: [][]byte{c.secrets[id]}})
			cancel()
			if err != nil {
				t.Fatalf("release %d: %v", id, err)
			}
		}
		if s := snapshotDirs(t, bad); len(s) < 2 {
			return fmt.Errorf("%s has snapshots %v", bad.name, s)
		}
		return nil
	})
	bad.stop()
	snaps := snapshotDirs(t, bad)
	newest := filepath.Join(bad.dir, "raft", "snapshots", snaps[len(snaps)-1])
	state := filepath.Join(newest, "state.bin")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xFF
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum = fileSum(t, state)
	stderr = startRefused(t, bad)
	for _, want := range []string{"Raft snapshot " + newest + " is damaged", "does not match the checksum", "mv " + filepath.Join(bad.dir, "raft")} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("refusal does not say %q:\n%s", want, stderr)
		}
	}
	if fileSum(t, state) != sum {
		t.Fatalf("the refused start changed %s", state)
	}
	if _, err := os.Stat(filepath.Join(bad.dir, "raft", "snapshots", snaps[0], "state.bin")); err != nil {
		t.Fatalf("the older snapshot is gone: %v", err)
	}
	held = append(held, c.checkout("while-refused-2", addrsOf(good...)...))
	slices.Sort(held)
	repair(t, bad)
	logBefore = len(bad.log())
	bad.start()
	c.checkRejoined(bad, held)
	if !strings.Contains(bad.log()[logBefore:], logInstalledSnapshot) {
		t.Fatalf("the repaired member did not rebuild from the leader's snapshot (no %q in its log)", logInstalledSnapshot)
	}
}

// repair is the documented repair: move the member's raft directory aside.
func repair(t *testing.T, m *member) {
	t.Helper()
	raftDir := filepath.Join(m.dir, "raft")
	aside := raftDir + ".damaged"
	os.RemoveAll(aside) // a previous repair's
	if err := os.Rename(raftDir, aside); err != nil {
		t.Fatal(err)
	}
}
