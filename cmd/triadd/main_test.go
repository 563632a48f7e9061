package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/server"
	"github.com/triadlm/triad/server/pki"
)

// parse runs triadd's real command line over args and returns the
// configuration it would start with, without starting a member. Every flag
// the merge reads must be one triadd declares.
func parse(t *testing.T, args ...string) server.Config {
	t.Helper()
	app := newApp()
	declared := map[string]bool{}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			declared[n] = true
		}
	}
	var cfg server.Config
	app.Action = func(c *cli.Context) error {
		var err error
		cfg, err = configFrom(checkedFlags{c, t, declared})
		return err
	}
	if err := app.Run(append([]string{"triadd"}, args...)); err != nil {
		t.Fatalf("triadd %v: %v", args, err)
	}
	return cfg
}

// checkedFlags fails the test when the merge reads a flag triadd does not
// declare (urfave/cli would quietly answer the zero value).
type checkedFlags struct {
	*cli.Context
	t        *testing.T
	declared map[string]bool
}

func (c checkedFlags) check(name string) {
	if !c.declared[name] {
		c.t.Errorf("the config merge reads flag --%s, which triadd does not declare", name)
	}
}
func (c checkedFlags) IsSet(n string) bool             { c.check(n); return c.Context.IsSet(n) }
func (c checkedFlags) String(n string) string          { c.check(n); return c.Context.String(n) }
func (c checkedFlags) Int(n string) int                { c.check(n); return c.Context.Int(n) }
func (c checkedFlags) Uint64(n string) uint64          { c.check(n); return c.Context.Uint64(n) }
func (c checkedFlags) StringSlice(n string) []string   { c.check(n); return c.Context.StringSlice(n) }
func (c checkedFlags) Duration(n string) time.Duration { c.check(n); return c.Context.Duration(n) }
func (c checkedFlags) Bool(n string) bool              { c.check(n); return c.Context.Bool(n) }

func TestFlagsOverConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "triad.json")
	js := `{"name": "file", "data_dir": "/file", "listen": "10.0.0.1:4085", "raft_listen": "10.0.0.1:4086",
		"http_listen": "10.0.0.1:4080", "isolation_minutes": 9, "trust": ["file.pub"], "log_file": "/file.log",
		"log_max_mb": 20}`
	if err := os.WriteFile(path, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	got := parse(t, "--config", path, "--name", "flag", "--listen", "127.0.0.1:1", "--trust", "a.pub", "--trust", "b.pub",
		"--isolation-minutes", "3", "--log-keep", "2", "--test-snapshot-threshold", "64", "--test-trailing-logs", "16",
		"--test-disk-fault-file", "/tmp/fault")
	want := server.Config{Name: "flag", DataDir: "/file", Listen: "127.0.0.1:1", RaftListen: "10.0.0.1:4086", HTTPListen: "10.0.0.1:4080",
		IsolationMinutes: 3, Trust: []string{"a.pub", "b.pub"}, LogFile: "/file.log", LogMaxMB: 20, LogKeep: 2, LeaseTTL: server.DefaultLeaseTTL,
		SnapshotThreshold: 64, TrailingLogs: 16, DiskFaultFile: "/tmp/fault"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config = %+v\nwant     %+v", got, want)
	}
}

func TestFlagDefaultsWithoutConfigFile(t *testing.T) {
	got := parse(t, "--data-dir", "/d", "--name", "m1")
	want := server.Config{Name: "m1", DataDir: "/d", Listen: server.DefaultListen, RaftListen: server.DefaultRaftListen,
		HTTPListen: server.DefaultHTTPListen, IsolationMinutes: 5, LeaseTTL: server.DefaultLeaseTTL,
		LogMaxMB: server.DefaultLogMaxMB, LogKeep: server.DefaultLogKeep}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config = %+v\nwant     %+v", got, want)
	}
}

// triadd tls init-ca and issue make a CA, a member certificate that names
// its hosts and a client certificate, all loadable by the member's TLS code.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) error { return newApp().Run(append([]string{"triadd", "tls"}, args...)) }
	if err := run("init-ca", "--dir", filepath.Join(dir, "ca")); err != nil {
		t.Fatal(err)
	}
	if err := run("init-ca", "--dir", filepath.Join(dir, "ca")); err == nil {
		t.Fatal("init-ca overwrote an existing CA")
	}
	if err := run("issue", "--ca-dir", filepath.Join(dir, "ca"), "--member", "alpha", "--host", "127.0.0.1,alpha.example", "--out", dir); err != nil {
		t.Fatal(err)
	}
	if err := run("issue", "--ca-dir", filepath.Join(dir, "ca"), "--client", "ops", "--out", dir); err != nil {
		t.Fatal(err)
	}
	if err := run("issue", "--ca-dir", filepath.Join(dir, "ca"), "--member", "bravo", "--out", dir); err == nil {
		t.Error("a member certificate without --host was issued")
	}
	if err := run("issue", "--ca-dir", filepath.Join(dir, "ca"), "--member", "x", "--client", "y", "--host", "h", "--out", dir); err == nil {
		t.Error("--member and --client together were accepted")
	}
	m, err := pki.LoadCreds(pki.Files{CA: filepath.Join(dir, "ca", "ca.crt"), Cert: filepath.Join(dir, "alpha.crt"), Key: filepath.Join(dir, "alpha.key")})
	if err != nil {
		t.Fatal(err)
	}
	leaf := m.Leaf()
	if !pki.IsMember(leaf) || leaf.Subject.CommonName != "alpha" || len(leaf.IPAddresses) != 1 || leaf.DNSNames[0] != "alpha.example" {
		t.Errorf("member certificate: member=%v CN=%q IPs=%v DNS=%v", pki.IsMember(leaf), leaf.Subject.CommonName, leaf.IPAddresses, leaf.DNSNames)
	}
	c, err := pki.LoadCreds(pki.Files{Cert: filepath.Join(dir, "ops.crt"), Key: filepath.Join(dir, "ops.key")})
	if err != nil {
		t.Fatal(err)
	}
	if pki.IsMember(c.Leaf()) {
		t.Error("a client certificate passes as a member certificate")
	}
	if err := m.Verify([]*x509.Certificate{c.Leaf()}, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("client certificate does not verify against the CA: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "alpha.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("member key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// triadd --version names the version, commit, Go version and the command
// format of this build (docs/upgrading.md).
func TestVersionFlag(t *testing.T) {
	app := newApp()
	var out strings.Builder
	app.Writer = &out
	if err := app.Run([]string{"triadd", "--version"}); err != nil {
		t.Fatal(err)
	}
	bi := buildinfo.Get()
	want := fmt.Sprintf("triadd version %s (commit %s", bi.Version, bi.Commit)
	if s := out.String(); !strings.HasPrefix(s, want) || !strings.Contains(s, bi.GoVersion) || !strings.Contains(s, fmt.Sprintf("command format %d", fsm.FormatVersion)) {
		t.Fatalf("triadd --version = %q, want %q…, the Go version and the command format", s, want)
	}
}

// A member runs its collector at defaultGCPercent unless GOGC is set;
// then the operator's choice stands.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	stop := tuneGC(func(string) string { return "" })
	stop()
	if now := debug.SetGCPercent(defaultGCPercent); now != defaultGCPercent {
		t.Fatalf("without GOGC: runtime target %d, want %d", now, defaultGCPercent)
	}
	debug.SetGCPercent(130) // as GOGC=130 would have set it at start
	env := func(k string) string {
		if k == "GOGC" {
			return "130"
		}
		return ""
	}
	tuneGC(env)()
	if now := debug.SetGCPercent(130); now != 130 {
		t.Fatalf("with GOGC=130: runtime target changed to %d", now)
	}
}

// The heap floor asks for the base percentage once it reaches the floor,
// else the smallest percentage whose target live × (1 + p/100) does,
// never more than maxGCPercent.
func TestHeapFloorPercent(t *testing.T) {
	h := &heapFloor{base: 50, min: 96 << 20}
	target := func(live uint64, p int) uint64 { return live + live*uint64(p)/100 }
	for _, live := range []uint64{1, 1 << 20, 5 << 20, 20 << 20, 37 << 20, 63 << 20, 64 << 20, 65 << 20, 96 << 20, 200 << 20} {
		p := h.percentFor(live)
		switch {
		case target(live, 50) >= h.min:
			if p != 50 {
				t.Errorf("live %d: percent %d, want the base 50", live, p)
			}
		case p == maxGCPercent:
			if target(live, maxGCPercent-1) >= h.min {
				t.Errorf("live %d: capped at %d though less reaches the floor", live, p)
			}
		case target(live, p) < h.min || target(live, p-1) >= h.min+live/100:
			t.Errorf("live %d: percent %d (target %d), want the least reaching %d", live, p, target(live, p), h.min)
		}
	}
	if got := h.percentFor(0); got != maxGCPercent {
		t.Errorf("nothing live: %d, want %d", got, maxGCPercent)
	}
}

// After each collection the floor sets the runtime's percentage for what
// is live; stopped, it leaves the percentage alone.
func TestKeepHeapFloorFollowsCollections(t *testing.T) {
	prev := debug.SetGCPercent(50)
	defer debug.SetGCPercent(prev)
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/live:bytes"}}
	read := func() (int, uint64) {
		metrics.Read(gogc)
		return int(gogc[0].Value.Uint64()), gogc[1].Value.Uint64()
	}
	// A floor far above this test's heap: the percentage must rise.
	stop := keepHeapFloor(50, 1<<30)
	want := (&heapFloor{base: 50, min: 1 << 30}).percentFor
	// The finalizer runs after the collection, on its own goroutine: poll.
	runtime.GC()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, live := read()
		if p > 50 && p == want(live) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percentage %d after a collection with %d bytes live, want %d", p, live, want(live))
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	debug.SetGCPercent(70)
	for range 3 {
		runtime.GC()
	}
	if p, _ := read(); p != 70 {
		t.Fatalf("stopped floor changed the percentage to %d", p)
	}
}
