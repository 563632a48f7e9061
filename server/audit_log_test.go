package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/audit"
)

func fromIP(ip string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 41000}})
}

// startMember starts a real member (Raft, gRPC, HTTP) in this process.
// startMember starts an in-process member in plaintext (TLS is tested on
// real processes in integration/).
func startMember(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Insecure = true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func adminHeader(token string) *triadv1.AdminHeader {
	return &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion, SessionToken: token}
}

func connectPW(svc *admin.Service, ctx context.Context, mode, pw string) (string, error) {
	r, err := svc.Connect(ctx, &triadv1.ConnectRequest{Header: adminHeader(""), Mode: mode, Password: pw})
	if err != nil {
		return "", err
	}
	return r.SessionToken, nil
}

func readAudit(t *testing.T, dir string) ([]audit.Record, string) {
	t.Helper()
	files, err := audit.Files(filepath.Join(dir, auditDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	var raw strings.Builder
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			raw.WriteString(sc.Text() + "\n")
			var r audit.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, r)
		}
		fh.Close()
	}
	return out, raw.String()
}

func scrape(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// An attack on a real member: password guessing from one address is
// throttled while another address connects; the failures are counted in
// /metrics and recorded in the audit log with the administration commands
// the member applied, never a password; after a restart (Raft replays its
// log) the chain continues without duplicates; tampering is detected by
// the online check.
func TestMemberAuditAndThrottling(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Name: "alpha", DataDir: dir, Listen: "127.0.0.1:0", RaftListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"}
	s := startMember(t, cfg)
	svc := admin.NewService(s, Version)
	svc.SetThrottle(admin.NewThrottle(3, time.Hour, nil))
	ctx := context.Background()

	tok, err := connectPW(svc, localCtx(), admin.ModeFull, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ClusterCreate(ctx, &triadv1.ClusterCreateRequest{Header: adminHeader(tok), Standalone: true}); err != nil {
		t.Fatalf("form standalone: %v", err)
	}
	waitFor(t, "leadership", func() bool { return s.isLeader() && s.fsm.Cluster() != nil })
	tok, err = connectPW(svc, localCtx(), admin.ModeFull, "")
	if err != nil {
		t.Fatal(err)
	}
	const pw = "S3cret-pw-never-logged"
	if _, err := svc.PasswordSet(ctx, &triadv1.PasswordSetRequest{Header: adminHeader(tok), Which: admin.ModeFull, NewPassword: pw}); err != nil {
		t.Fatalf("set password: %v", err)
	}
	if _, err := svc.Disconnect(ctx, &triadv1.DisconnectRequest{Header: adminHeader(tok)}); err != nil {
		t.Fatal(err)
	}

	// The attack.
	attacker := fromIP("10.9.9.66")
	for i := 0; i < 3; i++ {
		if _, err := connectPW(svc, attacker, admin.ModeFull, "guess-"+string(rune('a'+i))); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	_, err = connectPW(svc, attacker, admin.ModeFull, pw)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.HasPrefix(st.Message(), "too many failed password attempts from 10.9.9.66; wait ") {
		t.Fatalf("right password from the throttled source: %v", err)
	}
	tok, err = connectPW(svc, fromIP("10.9.9.7"), admin.ModeFull, pw)
	if err != nil {
		t.Fatalf("another source while one is throttled: %v", err)
	}

	m := scrape(t, s)
	for _, want := range []string{
		`triad_admin_auth_failures_total{mode="full",reason="wrong_password"} 3`,
		`triad_admin_auth_failures_total{mode="full",reason="throttled"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	v, err := svc.AuditVerify(ctx, &triadv1.AuditVerifyRequest{Header: adminHeader(tok)})
	if err != nil || !v.Ok || v.Member != "alpha" {
		t.Fatalf("verify-audit on an intact log: %v %v", v, err)
	}
	recs, raw := readAudit(t, dir)
	for _, secret := range []string{pw, "guess-a", "$2a$"} {
		if strings.Contains(raw, secret) {
			t.Fatalf("the audit log contains %q", secret)
		}
	}
	var lines []string
	for _, r := range recs {
		who := ""
		if r.Who != nil {
			who = r.Who.Source + r.Who.Mode
		}
		lines = append(lines, r.Kind+" "+r.Command+" "+r.Outcome+" "+who+" "+r.Args["which"]+r.Args["reason"])
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"served cluster_create accepted full",
		"applied form_cluster accepted",
		"applied open_session accepted full",
		"applied set_passwords accepted full full",
		"applied close_session accepted full",
		"auth_failure connect refused 10.9.9.66full wrong_password",
		"auth_failure connect refused 10.9.9.66full throttled",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("audit log lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "wrong_password"); n != 3 {
		t.Errorf("%d wrong-password records, want 3:\n%s", n, got)
	}
	t.Logf("audit log:\n%s", raw)
	headSeq := recs[len(recs)-1].Seq

	// Restart: Raft applies its whole log again; nothing is audited twice.
	s.Stop()
	s = startMember(t, cfg)
	svc = admin.NewService(s, Version)
	waitFor(t, "leadership after restart", func() bool { return s.isLeader() })
	tok, err = connectPW(svc, localCtx(), admin.ModeFull, pw)
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	v, err = svc.AuditVerify(ctx, &triadv1.AuditVerifyRequest{Header: adminHeader(tok)})
	if err != nil || !v.Ok {
		t.Fatalf("verify-audit after restart: %v %v", v, err)
	}
	recs, _ = readAudit(t, dir)
	seen := map[uint64]bool{}
	for _, r := range recs {
		if r.Kind != audit.KindApplied {
			continue
		}
		if seen[r.RaftIndex] {
			t.Fatalf("raft index %d audited twice after a restart", r.RaftIndex)
		}
		seen[r.RaftIndex] = true
	}
	if last := recs[len(recs)-1]; last.Seq <= headSeq || last.Command != "open_session" {
		t.Fatalf("after restart the log ends with %+v (seq before restart %d)", last, headSeq)
	}

	// Tampering: an edited record is named; a cut-off tail is noticed.
	path := filepath.Join(dir, auditDir, audit.CurrentName)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), "10.9.9.66", "10.9.9.67", 1)), 0o600)
	v, err = svc.AuditVerify(ctx, &triadv1.AuditVerifyRequest{Header: adminHeader(tok)})
	if err != nil || v.Ok || v.BrokenFile != audit.CurrentName || v.BrokenSeq == 0 || !strings.Contains(v.Problem, "does not match its hash") {
		t.Fatalf("verify-audit of an edited log: %v %v", v, err)
	}
	os.WriteFile(path, b, 0o600)
	lastNL := strings.LastIndex(strings.TrimSuffix(string(b), "\n"), "\n")
	os.WriteFile(path, b[:lastNL+1], 0o600)
	v, err = svc.AuditVerify(ctx, &triadv1.AuditVerifyRequest{Header: adminHeader(tok)})
	if err != nil || v.Ok || !strings.Contains(v.Problem, "cut off the end") {
		t.Fatalf("verify-audit of a log missing its last record: %v %v", v, err)
	}
}

// A member whose Raft storage is gone but whose audit log is kept starts
// Raft indexes over in the audit log (else it would skip new commands as
// replays of old ones), and says so in the chain.
func TestAuditRaftStorageWiped(t *testing.T) {
	dir := t.TempDir()
	w, err := audit.Open(filepath.Join(dir, auditDir), audit.Options{Member: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	w.Append(audit.Record{Kind: audit.KindApplied, RaftIndex: 40, Command: "set_rules", Outcome: audit.Accepted})
	w.Close()
	s := startMember(t, Config{Name: "alpha", DataDir: dir, Listen: "127.0.0.1:0", RaftListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if got := s.audit.w.LastRaftIndex(); got != 0 {
		t.Fatalf("last audited raft index %d with new Raft storage, want 0", got)
	}
	s.Stop()
	recs, _ := readAudit(t, dir)
	if len(recs) != 2 || recs[1].Kind != audit.KindRecovery || !strings.Contains(recs[1].Detail, "Raft indexes start over (the last one audited was 40)") {
		t.Fatalf("records %+v", recs)
	}
	// A normal restart (Raft storage present) does not.
	s = startMember(t, Config{Name: "alpha", DataDir: dir, Listen: "127.0.0.1:0", RaftListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	s.Stop()
	if recs, _ := readAudit(t, dir); len(recs) != 2 {
		t.Fatalf("a restart with Raft storage wrote %+v", recs[2:])
	}
}
