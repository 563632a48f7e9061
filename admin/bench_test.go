package admin

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The report is deterministic: the same result prints the same text, the
// error counts in sorted order.
func TestBenchResultStringSortsErrors(t *testing.T) {
	r := &BenchResult{Workload: workloadCycle, Target: "leader", Clients: 4, Conns: 2, Seconds: 1, Cores: 2, LoadStart: 1.5, LoadEnd: 2,
		Checkouts: 100, CheckoutsPerS: 100, CheckoutP50Ms: 1.5, CheckoutP99Ms: 3.25, CheckoutMaxMs: 7, ReleaseP50Ms: 1, ReleaseP99Ms: 2, CycleP99Ms: 5,
		MembersMeasured: 1, ServerCPUSeconds: 0.5, ServerCPUPer1000Ops: 5, ServerCores: 0.5,
		Members: []*BenchMember{{Name: "a", Address: "127.0.0.1:1", Role: "leader", Pid: 42, CPUSeconds: 0.5, RSSStartBytes: 10 << 20, RSSEndBytes: 12 << 20},
			{Name: "b", Address: "10.0.0.2:1", Role: "follower"}},
		Errors: map[string]int{"release: Unavailable": 1, "checkout: ResourceExhausted": 12, "checkout: DeadlineExceeded": 2, "checkout: Unavailable": 3}}
	want := "workload cycle, target leader: 4 clients on 2 connections (Session streams), 1.0 s, 2 cores on this machine, load 1.50 → 2.00\n" +
		"checkouts/s 100 (100 checkout+release cycles)\n" +
		"checkout latency ms: p50 1.50  p99 3.25  max 7.00\n" +
		"release latency ms:  p50 1.00  p99 2.00\n" +
		"cycle p99 ms 5.00\n" +
		"server CPU s per 1,000 cycles 5.000 (0.50 s in all, 0.50 cores busy, 1 members measured)\n" +
		"member a 127.0.0.1:1 (leader, pid 42): CPU 0.50 s, RSS 10.0 → 12.0 MiB\n" +
		"member b 10.0.0.2:1 (follower): not on this machine\n" +
		"errors checkout: DeadlineExceeded: 2\n" +
		"errors checkout: ResourceExhausted: 12\n" +
		"errors checkout: Unavailable: 3\n" +
		"errors release: Unavailable: 1\n"
	for i := 0; i < 20; i++ { // map order differs from run to run
		if got := r.String(); got != want {
			t.Fatalf("String() =\n%s\nwant\n%s", got, want)
		}
	}
	r.Errors = nil
	if got := r.String(); strings.Contains(got, "errors") {
		t.Fatalf("String() without errors mentions errors:\n%s", got)
	}
	r.MembersMeasured = 0
	if got := r.String(); !strings.Contains(got, "server CPU not measured: no member runs on this machine") {
		t.Fatalf("String() without measured members does not say so:\n%s", got)
	}
}

func TestBenchResultStringHold(t *testing.T) {
	r := &BenchResult{Workload: workloadHold, Target: "all", Clients: 1000, Conns: 1000, Leases: 100000, RenewEverySeconds: 10,
		Seconds: 30, SetupSeconds: 40, Cores: 2, Renewals: 300000, RenewCalls: 3000, RenewalsPerS: 10000,
		RenewP50Ms: 2, RenewP99Ms: 9, RenewMaxMs: 20, MembersMeasured: 1, ServerCPUSeconds: 15, ServerCPUPer1000Ops: 0.05, ServerCores: 0.5,
		Members: []*BenchMember{{Name: "a", Address: "127.0.0.1:1", Role: "leader", Pid: 7, CPUSeconds: 15,
			RSSIdleBytes: 20 << 20, RSSStartBytes: 100 << 20, RSSEndBytes: 101 << 20, RSSPerLeaseBytes: 849.3, RSSPerLeaseAfterSetupBytes: 838.9}}}
	got := r.String()
	for _, w := range []string{
		"workload hold, target all: 100000 leases held by 1000 clients on 1000 connections, renewed every 10s; 30.0 s measured (40.0 s to take them)",
		"renewals/s 10000 (300000 lease renewals in 3000 calls)\n",
		"renew call latency ms: p50 2.00  p99 9.00  max 20.00\n",
		"server CPU s per 1,000 renewals 0.050 (15.00 s in all, 0.50 cores busy, 1 members measured)\n",
		"member a 127.0.0.1:1 (leader, pid 7): CPU 15.00 s, RSS 100.0 → 101.0 MiB, 20.0 MiB before the leases, 849 B per lease (839 right after taking them)\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("String() lacks %q:\n%s", w, got)
		}
	}
	r.Workload = workloadRenew
	if got := r.String(); !strings.Contains(got, "renewed back to back") {
		t.Errorf("renew String() lacks 'renewed back to back':\n%s", got)
	}
}

func TestBenchPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    int
		want time.Duration
	}{{50, 100 * time.Millisecond}, {99, 198 * time.Millisecond}, {100, 200 * time.Millisecond}} {
		if got := pct(d, tc.p); got != tc.want {
			t.Errorf("pct(1..200 ms, %d) = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := pct(d[:1], 99); got != time.Millisecond {
		t.Errorf("pct of one sample = %s, want it", got)
	}
}

func TestBenchConfigRefusesBadFlags(t *testing.T) {
	ok := benchConfig{Workload: workloadHold, Target: "all", Clients: 10, Conns: 2, Duration: time.Second, Leases: 100, RenewEvery: 10 * time.Second, TTL: 30 * time.Second}
	for _, tc := range []struct {
		change func(*benchConfig)
		want   string
	}{
		{func(c *benchConfig) { c.Clients = 0 }, "--clients"},
		{func(c *benchConfig) { c.Conns = 0 }, "--conns"},
		{func(c *benchConfig) { c.Workload = "soak" }, `--workload "soak"`},
		{func(c *benchConfig) { c.Duration = 0 }, "--duration"},
		{func(c *benchConfig) { c.Leases = 5 }, "--leases 5 is fewer than --clients 10"},
		{func(c *benchConfig) { c.RenewEvery = 30 * time.Second }, "--renew-every"},
		{func(c *benchConfig) { c.TTL = 0 }, "--ttl"},
	} {
		c := ok
		tc.change(&c)
		if err := c.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("check() = %v, want an error naming %s", err, tc.want)
		}
	}
	c := ok
	if err := c.check(); err != nil {
		t.Fatalf("check() of a good config: %v", err)
	}
	c.Conns = 50
	if err := c.check(); err != nil || c.Conns != 10 {
		t.Fatalf("check() with more connections than clients: %v, conns %d, want 10 (one per client)", err, c.Conns)
	}
	if _, err := runBench(t.Context(), benchConfig{Workload: workloadCycle, Clients: 0, Conns: 1, Duration: time.Second}, nil); err == nil || !strings.Contains(err.Error(), "--clients") {
		t.Fatalf("runBench with 0 clients: %v, want an error naming --clients", err)
	}
}

func TestBenchTargets(t *testing.T) {
	ms := []*BenchMember{{Address: "a:1", Role: "follower"}, {Address: "b:1", Role: "leader"}, {Address: "c:1", Role: "follower"}}
	for _, tc := range []struct {
		target string
		want   string
	}{
		{"all", "a:1 b:1 c:1 a:1 b:1"},
		{"leader", "b:1 b:1 b:1 b:1 b:1"},
		{"follower", "a:1 c:1 a:1 c:1 a:1"},
	} {
		got, err := benchTargets(ms, tc.target, 5)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		var s []string
		for _, g := range got {
			if len(g) != 1 {
				t.Fatalf("%s: connection with addresses %v, want exactly one", tc.target, g)
			}
			s = append(s, g[0])
		}
		if strings.Join(s, " ") != tc.want {
			t.Errorf("%s: connections on %v, want %s", tc.target, s, tc.want)
		}
	}
	if _, err := benchTargets(ms, "primary", 2); err == nil || !strings.Contains(err.Error(), "want all, leader or follower") {
		t.Errorf("unknown target: %v", err)
	}
	if _, err := benchTargets(ms[:1], "leader", 2); err == nil || !strings.Contains(err.Error(), "give all three members") {
		t.Errorf("no leader among the addresses: %v", err)
	}
}

// writeProc makes a fake /proc with one process and a load average.
func writeProc(t *testing.T, dir string, pid, utime, stime, rssPages int, comm string) {
	t.Helper()
	p := filepath.Join(dir, "123")
	if pid != 123 {
		t.Fatal("writeProc: pid 123 only")
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	// A command name with a space and a parenthesis, as the kernel allows.
	stat := "123 (" + comm + ") S 1 123 123 0 -1 4194560 100 0 0 0 " +
		itoa(utime) + " " + itoa(stime) + " 0 0 20 0 12 0 500 1234567 " + itoa(rssPages) + " 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	if err := os.WriteFile(filepath.Join(p, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "comm"), []byte(comm+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "loadavg"), []byte("1.25 0.80 0.50 3/200 999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestBenchReadProc(t *testing.T) {
	dir := t.TempDir()
	writeProc(t, dir, 123, 250, 50, 1000, "triadd (x)")
	s, err := readProc(dir, 123)
	if err != nil {
		t.Fatal(err)
	}
	if s.cpuSeconds != 3 || s.rssBytes != 1000*int64(os.Getpagesize()) {
		t.Fatalf("readProc = %+v, want 3 CPU seconds (300 ticks) and 1000 pages", s)
	}
	if got := procComm(dir, 123); got != "triadd (x)" {
		t.Fatalf("procComm = %q", got)
	}
	if got := loadAverage(dir); got != 1.25 {
		t.Fatalf("loadAverage = %v, want 1.25", got)
	}
	if _, err := readProc(dir, 124); err == nil {
		t.Fatal("readProc of a missing process: no error")
	}
	if err := os.WriteFile(filepath.Join(dir, "123", "stat"), []byte("123 (triadd) S 1 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readProc(dir, 123); err == nil || !strings.Contains(err.Error(), "fields") {
		t.Fatalf("readProc of a short stat: %v, want an error about fields", err)
	}
	// The real /proc: this test's own process.
	if s, err := readProc("/proc", int64(os.Getpid())); err != nil || s.rssBytes <= 0 {
		t.Fatalf("readProc(/proc, self) = %+v, %v", s, err)
	}
}

// The meter turns /proc samples at the phase boundaries into the figures:
// CPU per 1,000 operations, cores busy, RSS per lease; a member that is not
// on this machine (pid 0) is left out.
func TestBenchMeter(t *testing.T) {
	dir := t.TempDir()
	writeProc(t, dir, 123, 100, 0, 1000, "triadd")
	r := &BenchResult{Workload: workloadHold, Leases: 4000, Renewals: 5000}
	ms := []*BenchMember{{Name: "a", Pid: 123}, {Name: "remote"}}
	m := &benchMeter{procDir: dir, members: ms, r: r}
	m.idle()
	writeProc(t, dir, 123, 100, 0, 2000, "triadd") // the leases taken: +1000 pages
	m.begin()
	writeProc(t, dir, 123, 300, 100, 2100, "triadd") // 3 CPU seconds later
	m.end()
	r.Seconds = 6 // pin the wall time the ratio uses
	m.finish()
	page := float64(os.Getpagesize())
	if r.MembersMeasured != 1 || r.ServerCPUSeconds != 3 || r.ServerCPUPer1000Ops != 0.6 || r.ServerCores != 0.5 {
		t.Fatalf("figures %+v: want 1 member, 3 s, 0.6 s per 1,000 renewals, 0.5 cores", r)
	}
	if got, want := ms[0].RSSPerLeaseAfterSetupBytes, 1000*page/4000; math.Abs(got-want) > 1e-9 {
		t.Fatalf("RSS per lease after setup %v, want %v", got, want)
	}
	if got, want := ms[0].RSSPerLeaseBytes, 1100*page/4000; math.Abs(got-want) > 1e-9 {
		t.Fatalf("RSS per lease at the end (steady state) %v, want %v", got, want)
	}
	// renew: the end RSS is its renewals' garbage; the figure is the one
	// right after the leases were taken.
	r.Workload = workloadRenew
	m.finish()
	if got, want := ms[0].RSSPerLeaseBytes, 1000*page/4000; math.Abs(got-want) > 1e-9 {
		t.Fatalf("renew: RSS per lease %v, want the after-setup %v", got, want)
	}
	r.Workload = workloadHold
	if r.LoadStart != 1.25 || r.LoadEnd != 1.25 {
		t.Fatalf("load %v → %v, want 1.25", r.LoadStart, r.LoadEnd)
	}
	if ms[1].CPUSeconds != 0 || ms[1].RSSEndBytes != 0 {
		t.Fatalf("remote member measured: %+v", ms[1])
	}
	// A member that goes away mid-run is dropped, not counted as zero.
	os.RemoveAll(filepath.Join(dir, "123"))
	m.end()
	if ms[0].Pid != 0 {
		t.Fatal("a vanished member keeps its pid")
	}
}

func TestBenchOnThisHost(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:4085": true, "[::1]:1": true, "localhost:1": true, "192.0.2.1:4085": false, "nonsense": false} {
		if got := onThisHost(addr); got != want {
			t.Errorf("onThisHost(%q) = %v, want %v", addr, got, want)
		}
	}
}

// The failover figures: recovery counts only calls sent after the kill
// (one sent before may have been committed by the old leader), and the
// longest gap includes the edges of the measured phase.
func TestBenchRecoveryAndGap(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	kill := at(1000)
	spans := []renewSpan{
		{at(100), at(150)},
		{at(900), at(2500)},  // sent before the kill, answered late: not a recovery
		{at(1200), at(2900)}, // the first sent after the kill to be answered... second
		{at(1300), at(2700)}, // ...this one is answered first
		{at(3000), at(3050)},
	}
	if d, ok := recovery(spans, kill); !ok || d != 1700*time.Millisecond {
		t.Fatalf("recovery = %v, %v; want 1.7 s (answer at 2.7 s to a call sent after the 1.0 s kill)", d, ok)
	}
	if _, ok := recovery(spans[:2], kill); ok {
		t.Fatal("recovery found with no call sent after the kill")
	}
	if g := maxGap(spans, t0, at(6000)); g != 2950*time.Millisecond {
		t.Fatalf("maxGap = %v, want 2.95 s (last answer at 3.05 s, phase ends at 6 s)", g)
	}
	if g := maxGap(nil, t0, at(500)); g != 500*time.Millisecond {
		t.Fatalf("maxGap without answers = %v, want the whole phase", g)
	}
}

// --kill-leader-at and --keep-leases are refused where they mean nothing.
func TestBenchFailoverFlagsChecked(t *testing.T) {
	for _, cfg := range []benchConfig{
		{Workload: workloadCycle, Clients: 1, Conns: 1, Duration: time.Second, KillLeaderAt: time.Millisecond},
		{Workload: workloadCycle, Clients: 1, Conns: 1, Duration: time.Second, KeepLeases: true},
		{Workload: workloadHold, Clients: 1, Conns: 1, Leases: 1, Duration: time.Second, TTL: 10 * time.Second, RenewEvery: time.Second, KillLeaderAt: time.Second},
		{Workload: workloadRenew, Clients: 1, Conns: 1, Leases: 1, Duration: 5 * time.Second, TTL: 10 * time.Second, KillLeaderAt: time.Second},
	} {
		if err := cfg.check(); err == nil {
			t.Errorf("check() accepted %+v", cfg)
		}
	}
}
