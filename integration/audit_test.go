package integration

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// auditRecords reads a member's current audit file (the test writes far
// less than a rotation's worth).
func auditRecords(t *testing.T, m *member) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.dir, "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v: %q", m.name, err, line)
		}
		out = append(out, r)
	}
	return out
}

func appliedIndex(recs []map[string]any, command string) float64 {
	for _, r := range recs {
		if r["kind"] == "applied" && r["command"] == command {
			return r["raft_index"].(float64)
		}
	}
	return 0
}

// triadd runs the member binary with args (offline subcommands).
func triadd(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(binDir, "triadd"), args...).CombinedOutput()
	return string(out), err
}

// TestAuditAndThrottlingOnProcesses attacks a real cluster: password
// guessing from 127.0.0.2 is throttled while 127.0.0.3 gets in, counted in
// /metrics and audited by the member attacked; the enrollment and the
// password change are audited by all three members at the same Raft index;
// every chain verifies online and offline; an edited record is named; after
// a restart the chain continues without duplicates.
func TestAuditAndThrottlingOnProcesses(t *testing.T) {
	c := startCluster(t)
	a, b := c.members[0], c.members[1]
	// The attacked member refills one password attempt a minute instead of
	// every 5 s, so that on a loaded machine the burst is still used up
	// when the guesses and the triadctl processes below come in.
	a.kill()
	a.extra = append(a.extra, "--test-throttle-every", "1m")
	a.start()
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:2", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	if _, err := ctlEnv(t, []string{"TRIAD_NEW_PASSWORD=Fu11-secret"}, "--server", b.addr, "password", "set", "full"); err != nil {
		t.Fatal(err)
	}
	pw := c.writeFile("pw", "Fu11-secret\n")
	// Guesses straight over gRPC from 127.0.0.2: wrong passwords until the
	// member throttles, then the right one.
	attacker := adminClientFrom(t, a.addr, "127.0.0.2")
	connect := func(password string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := attacker.Connect(ctx, &triadv1.ConnectRequest{Header: hdr(""), Mode: "full", Password: password})
		return err
	}
	wrong := 0
	for {
		err := connect("guess")
		if st := grpcstatus.Convert(err); st.Code() == codes.ResourceExhausted {
			if !strings.HasPrefix(st.Message(), "too many failed password attempts from 127.0.0.2; wait ") {
				t.Fatalf("throttled with %q", st.Message())
			}
			break
		} else if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "wrong password") {
			t.Fatalf("guess %d: %v", wrong+1, err)
		}
		if wrong++; wrong > 20 {
			t.Fatal("20 wrong passwords from one address and no throttling")
		}
	}
	if wrong != 5 {
		t.Fatalf("throttled after %d wrong passwords, want the burst of 5 first", wrong)
	}
	if st := grpcstatus.Convert(connect("Fu11-secret")); st.Code() != codes.ResourceExhausted {
		t.Fatalf("the right password from the throttled address: %v %q, want RESOURCE_EXHAUSTED", st.Code(), st.Message())
	}
	_, err := ctlEnv(t, nil, "--server", a.addr, "--source-ip", "127.0.0.2", "--password-file", pw, "--mode", "full", "server", "show")
	wantFail(t, err, "too many failed password attempts from 127.0.0.2; wait ")
	if _, err := ctlEnv(t, nil, "--server", a.addr, "--source-ip", "127.0.0.3", "--password-file", pw, "--mode", "full", "server", "show"); err != nil {
		t.Fatalf("another source while 127.0.0.2 is throttled: %v", err)
	}
	body, err := scrape(a)
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{
		`triad_admin_auth_failures_total{mode="full",reason="wrong_password"}`: float64(wrong),
		`triad_admin_auth_failures_total{mode="full",reason="throttled"}`:      3,
	} {
		if v, _ := metricValue(body, series); v != want {
			t.Errorf("%s = %v on the attacked member, want %v", series, v, want)
		}
	}

	// Every member verifies its own chain (full session, online).
	for _, m := range c.members {
		out, err := ctlEnv(t, nil, "--server", m.addr, "--password-file", pw, "server", "verify-audit")
		if err != nil || !strings.Contains(out, "intact") {
			t.Fatalf("verify-audit on %s: %v\n%s", m.name, err, out)
		}
	}
	var idx []float64
	for _, m := range c.members {
		recs := auditRecords(t, m)
		e, p := appliedIndex(recs, "enroll_license"), appliedIndex(recs, "set_passwords")
		if e == 0 || p == 0 {
			t.Fatalf("%s did not audit the enrollment (%v) or the password change (%v)", m.name, e, p)
		}
		idx = append(idx, e, p)
		failures := 0
		for _, r := range recs {
			if r["kind"] == "auth_failure" && strings.Contains(r["who"].(map[string]any)["source"].(string), "127.0.0.2") {
				failures++
			}
		}
		// Each wrong password; the throttled refusals within a minute once.
		if want := map[bool]int{true: wrong + 1, false: 0}[m == a]; failures != want {
			t.Errorf("%s audited %d auth failures from 127.0.0.2, want %d", m.name, failures, want)
		}
		raw, _ := os.ReadFile(filepath.Join(m.dir, "audit", "audit.log"))
		if strings.Contains(string(raw), "Fu11-secret") || strings.Contains(string(raw), "guess") || strings.Contains(string(raw), "$2a$") {
			t.Errorf("%s's audit log holds a password or hash", m.name)
		}
	}
	if idx[0] != idx[2] || idx[2] != idx[4] || idx[1] != idx[3] || idx[3] != idx[5] {
		t.Fatalf("raft indexes of enrollment and password change per member: %v", idx)
	}

	// Offline, on a stopped member: intact, then an edited record is named.
	a.stop()
	if out, err := triadd("audit", "verify", "--data-dir", a.dir); err != nil || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("triadd audit verify: %v\n%s", err, out)
	}
	path := filepath.Join(a.dir, "audit", "audit.log")
	orig, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(orig), `"source":"127.0.0.2"`, `"source":"127.0.0.9"`, 1)), 0o600)
	out, err := triadd("audit", "verify", "--data-dir", a.dir)
	if err == nil || !strings.Contains(out, "audit.log line ") || !strings.Contains(out, "content does not match its hash") {
		t.Fatalf("triadd audit verify on an edited log: %v\n%s", err, out)
	}
	os.WriteFile(path, orig, 0o600)

	// Restart: Raft replays the log; nothing is audited twice, the chain goes on.
	a.start()
	waitFor(t, 20*time.Second, "alpha back with a leader", func() error {
		_, err := ctlEnv(t, nil, "--server", a.addr, "--password-file", pw, "server", "verify-audit")
		return err
	})
	seen := map[float64]bool{}
	for _, r := range auditRecords(t, a) {
		if r["kind"] != "applied" {
			continue
		}
		i := r["raft_index"].(float64)
		if seen[i] {
			t.Fatalf("raft index %v audited twice after a restart", i)
		}
		seen[i] = true
	}
}

// adminClientFrom dials a member's admin API from a given local address.
func adminClientFrom(t *testing.T, addr, srcIP string) triadv1.AdminClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcIP)}}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t))),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return triadv1.NewAdminClient(conn)
}
