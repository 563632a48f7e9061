package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server"
)

// ctlRun runs triadctl and returns stdout, stderr and the exit status.
func ctlRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "triadctl"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("triadctl %v did not run: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// usageHolder and usageFeature are `triadctl usage -o json`, with numbers
// decoded strictly as numbers (a string there fails the decode).
type usageHolder struct {
	LeaseID          uint64 `json:"lease_id"`
	User             string `json:"user"`
	Host             string `json:"host"`
	Pid              int64  `json:"pid"`
	Version          uint32 `json:"version"`
	RequestedVersion uint32 `json:"requested_version"`
	Count            uint32 `json:"count"`
	SinceUnixMs      int64  `json:"since_unix_ms"`
	State            string `json:"state"`
}

type usageFeature struct {
	Feature  string `json:"feature"`
	Capacity uint64 `json:"capacity"`
	InUse    uint64 `json:"in_use"`
	Queued   uint64 `json:"queued"`
	Versions []struct {
		Version  uint32 `json:"version"`
		Capacity uint32 `json:"capacity"`
	} `json:"versions"`
	Holders []usageHolder `json:"holders"`
}

// TestUsageViewReleaseAndCLIHabits, on one real cluster: the lmstat-grade
// `usage` listing (licensed versions, filters, JSON numbers, flags after
// the command), lmremove-grade `usage release` (selector, unknown id,
// empty selector, restricted sessions refused through the CLI and raw
// stubs), checkout messages said once and "can never fit", enrolling twice,
// and `license remove` asking for --yes.
func TestUsageViewReleaseAndCLIHabits(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	c.form()
	lic := c.issue("suite", "--feature", "cad:2:3", "--feature", "sim:1:2", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"))
	c.enroll(lic)
	srv := c.servers()
	addr := c.members[1].addr

	// Enrolling the same file again says so, exit status 0, nothing changed.
	out, errOut, code := ctlRun(t, "--server", srv, "license", "enroll", lic)
	if code != 0 || !strings.Contains(out, "is already enrolled") || !strings.Contains(out, "nothing changed") {
		t.Fatalf("enroll twice: exit %d, %q %q", code, out, errOut)
	}

	// Holders, through raw stubs so user and host are ours.
	lc := licensing(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	take := func(req, user, host, feature string, version uint32) uint64 {
		t.Helper()
		r, err := lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: server.LicensingProtocolVersion, RequestId: req, ClientId: "cli-test-" + user,
			Feature: feature, Version: version, Count: 1, User: user, Host: host, Pid: 4242, TtlSeconds: 600})
		if err != nil {
			t.Fatalf("checkout %s for %s: %v", feature, user, err)
		}
		return r.GetLease().GetLeaseId()
	}
	aliceCad := take("r1", "alice", "ws1", "cad", 0) // any version: sits on v2
	bobCad := take("r2", "bob", "ws2", "cad", 2)
	aliceSim := take("r3", "alice", "ws1", "sim", 0)

	// The listing: global flags after the command, numbers as numbers.
	var view []usageFeature
	ctlJSON(t, srv, &view, "usage", "--consistent", "-o", "json")
	if len(view) != 2 || view[0].Feature != "cad" || view[1].Feature != "sim" {
		t.Fatalf("usage listed %+v, want cad and sim", view)
	}
	cad := view[0]
	if cad.Capacity != 3 || cad.InUse != 2 || cad.Queued != 0 || len(cad.Holders) != 2 {
		t.Fatalf("cad row %+v, want 3 licensed, 2 in use, 0 queued, 2 holders", cad)
	}
	for _, h := range cad.Holders {
		if h.Version != 2 || h.Host == "" || h.Pid != 4242 || h.Count != 1 || h.SinceUnixMs == 0 || h.State != "active" {
			t.Errorf("cad holder %+v: want licensed version 2 (never 0), host, pid, count, since, active", h)
		}
		if h.LeaseID == aliceCad && h.RequestedVersion != 0 {
			t.Errorf("alice's lease asked for any version, shows requested %d", h.RequestedVersion)
		}
	}
	// Filters.
	ctlJSON(t, srv, &view, "usage", "all", "--user", "alice")
	if len(view) != 2 || len(view[0].Holders) != 1 || view[0].Holders[0].LeaseID != aliceCad || view[1].Holders[0].LeaseID != aliceSim {
		t.Errorf("usage all --user alice: %+v", view)
	}
	ctlJSON(t, srv, &view, "usage", "--host", "ws2", "--feature", "cad")
	if len(view) != 1 || len(view[0].Holders) != 1 || view[0].Holders[0].LeaseID != bobCad {
		t.Errorf("usage --host ws2 --feature cad: %+v", view)
	}
	out, err := ctlOn(t, srv, "usage", "--feature", "cad")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "cad: 3 licensed, 2 in use, 0 queued (concurrent)") || !strings.Contains(out, "bob") || strings.Contains(out, "sim") {
		t.Errorf("usage --feature cad table:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 3 && (f[0] == "alice" || f[0] == "bob") && f[3] != "2" {
			t.Errorf("holder line shows version %s, want the licensed 2: %q", f[3], line)
		}
	}

	// Checkout refusals say what failed once, with the exact message; more
	// seats than licensed can never fit and is not counted as no seat (once
	// every member runs format 4, marked by the history's start).
	waitHistoryStarted(t, c.members[0])
	_, errOut, code = ctlRun(t, "checkout", "--feature", "cad", "--count", "4", "--server", srv)
	if want := "triadctl: checkout cad: can never fit: 4 seats of cad asked, 3 licensed; ask for at most 3\n"; code != 1 || errOut != want {
		t.Errorf("checkout --count 4: exit %d, stderr %q, want 1 and %q", code, errOut, want)
	}
	take("r4", "carol", "ws3", "cad", 0) // the third and last seat
	_, errOut, code = ctlRun(t, "--server", srv, "checkout", "--feature", "cad")
	if want := "triadctl: checkout cad: no seat left for cad v 0 (3 of 3 in use)\n"; code != 1 || errOut != want {
		t.Errorf("checkout of a full feature: exit %d, stderr %q, want 1 and %q", code, errOut, want)
	}
	_, err = lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: server.LicensingProtocolVersion, RequestId: "r5", ClientId: "raw",
		Feature: "sim", Count: 3, User: "dave", Host: "ws4"})
	if st := grpcstatus.Convert(err); st.Code() != codes.FailedPrecondition || !strings.HasPrefix(st.Message(), "can never fit: 3 seats of sim asked, 2 licensed") {
		t.Errorf("raw checkout of 3 sim seats: %v, want FAILED_PRECONDITION can never fit", err)
	}

	// A restricted session cannot release, through the CLI or a raw stub,
	// by id or by selector; nothing changes.
	_, errOut, code = ctlRun(t, "--server", srv, "usage", "release", "--user", "alice", "--mode", "restricted")
	if code == 0 || !strings.Contains(errOut, "needs full mode") {
		t.Errorf("restricted usage release: exit %d, %q", code, errOut)
	}
	tok := mustOpen(t, nil, "--server", addr, "--mode", "restricted")
	adm := triadv1.NewAdminClient(dialMember(t, addr))
	h := &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion, ToolVersion: admin.ToolVersion, SessionToken: tok}
	for _, req := range []*triadv1.UsageReleaseRequest{{Header: h, User: "alice"}, {Header: h, LeaseId: aliceCad}, {Header: h, Feature: "cad", Host: "ws1"}} {
		if _, err := adm.UsageRelease(ctx, req); grpcstatus.Code(err) != codes.PermissionDenied {
			t.Errorf("raw restricted release %v: %v, want PERMISSION_DENIED", req, err)
		}
	}
	var leases []struct {
		LeaseID uint64 `json:"lease_id"`
		User    string `json:"user"`
	}
	ctlJSON(t, srv, &leases, "usage", "leases", "--consistent")
	if len(leases) != 4 {
		t.Fatalf("after refused releases %d leases are live, want 4: %+v", len(leases), leases)
	}

	// Empty selector, never-existing id: refused, non-zero.
	_, errOut, code = ctlRun(t, "--server", srv, "usage", "release")
	if code != 1 || !strings.Contains(errOut, "empty selector") {
		t.Errorf("release with no selector: exit %d, %q", code, errOut)
	}
	full := mustOpen(t, nil, "--server", addr, "--mode", "full")
	if _, err := adm.UsageRelease(ctx, &triadv1.UsageReleaseRequest{Header: &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion, ToolVersion: admin.ToolVersion,
		SessionToken: full}}); grpcstatus.Code(err) != codes.InvalidArgument {
		t.Errorf("raw full release with an empty selector: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + full}, "--server", addr, "disconnect"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = ctlRun(t, "--server", srv, "usage", "release", "999999")
	if code != 1 || !strings.Contains(errOut, "lease 999999 never existed") {
		t.Errorf("release of a lease id never granted: exit %d, %q", code, errOut)
	}

	// lmremove: every lease of alice, listed, and the reminder.
	out, errOut, code = ctlRun(t, "--server", srv, "usage", "release", "--user", "alice")
	if code != 0 || !strings.Contains(out, "released 2 lease(s)") || !strings.Contains(out, fmt.Sprint(aliceCad)) ||
		!strings.Contains(out, fmt.Sprint(aliceSim)) || !strings.Contains(out, "may check out again") {
		t.Fatalf("release --user alice: exit %d\n%s%s", code, out, errOut)
	}
	ctlJSON(t, srv, &leases, "usage", "leases", "--consistent")
	for _, l := range leases {
		if l.User == "alice" {
			t.Errorf("alice still holds lease %d", l.LeaseID)
		}
	}
	if len(leases) != 2 {
		t.Errorf("%d leases left, want bob's and carol's: %+v", len(leases), leases)
	}
	// Releasing an ended lease again is not an error (idempotent).
	out, errOut, code = ctlRun(t, "--server", srv, "usage", "release", fmt.Sprint(aliceCad))
	if code != 0 || !strings.Contains(out, "already ended") {
		t.Errorf("release of an ended lease: exit %d, %q %q", code, out, errOut)
	}
	// JSON of a release by id: numbers.
	var rel struct {
		Released int `json:"released"`
		Leases   []struct {
			LeaseID uint64 `json:"lease_id"`
		} `json:"leases"`
	}
	ctlJSON(t, srv, &rel, "usage", "release", fmt.Sprint(bobCad))
	if rel.Released != 1 || len(rel.Leases) != 1 || rel.Leases[0].LeaseID != bobCad {
		t.Errorf("release %d -o json: %+v", bobCad, rel)
	}

	// license remove with a seat in use (carol's) needs --yes.
	var lics []struct {
		Serial string `json:"serial"`
	}
	ctlJSON(t, srv, &lics, "license", "list")
	if len(lics) != 1 {
		t.Fatalf("licenses: %+v", lics)
	}
	_, errOut, code = ctlRun(t, "--server", srv, "license", "remove", lics[0].Serial)
	if code != 1 || !strings.Contains(errOut, "in use") || !strings.Contains(errOut, "--yes") {
		t.Errorf("license remove with a seat in use: exit %d, %q", code, errOut)
	}
	ctlJSON(t, srv, &lics, "license", "list")
	if len(lics) != 1 {
		t.Fatalf("license removed without --yes")
	}
	if out, err := ctlOn(t, srv, "license", "remove", lics[0].Serial, "--yes"); err != nil {
		t.Fatalf("license remove --yes: %v %s", err, out)
	}
	ctlJSON(t, srv, &lics, "license", "list")
	if len(lics) != 0 {
		t.Errorf("license remove --yes left %+v", lics)
	}

	// The denial counts keep "can never fit" apart from "no seat".
	var den struct {
		Denials []struct {
			Feature string `json:"feature"`
			Reason  string `json:"reason"`
			Count   uint64 `json:"count"`
		} `json:"denials"`
	}
	raw, err := ctlOn(t, addr, "usage", "denials", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(raw), &den); err != nil {
		t.Fatalf("denials JSON %q: %v", raw, err)
	}
	var never bool
	for _, d := range den.Denials {
		never = never || d.Feature == "sim" && d.Reason == "can never fit" && d.Count >= 1
	}
	if !never {
		t.Errorf("denials on %s lack sim / can never fit: %s", addr, raw)
	}
}
