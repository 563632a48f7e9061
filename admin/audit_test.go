package admin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/audit"
)

// verifyingBackend answers AuditVerify from a directory, as a member does.
type verifyingBackend struct {
	*fakeBackend
	dir string
}

func (v *verifyingBackend) VerifyAudit(context.Context) (*triadv1.AuditVerifyResponse, error) {
	rep, err := audit.VerifyDir(v.dir)
	if err != nil {
		return nil, err
	}
	r := ReportResponse(rep)
	r.Member, r.Dir = "m1", v.dir
	return r, nil
}

func auditDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	w, err := audit.Open(dir, audit.Options{Member: "m1", MaxBytes: 1500})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := w.Append(audit.Record{Kind: audit.KindApplied, RaftIndex: uint64(i), Command: "set_rules", Outcome: audit.Accepted}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return dir
}

// verify-audit needs a full session; a member without an audit log says so.
func TestAuditVerifyNeedsFullSession(t *testing.T) {
	s := NewService(&verifyingBackend{fakeBackend: &fakeBackend{}, dir: auditDir(t, 3)}, "dev")
	_, err := s.AuditVerify(context.Background(), &triadv1.AuditVerifyRequest{Header: session(t, s, ModeRestricted)})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("verify-audit in a restricted session: %v", err)
	}
	r, err := s.AuditVerify(context.Background(), &triadv1.AuditVerifyRequest{Header: session(t, s, ModeFull)})
	if err != nil || !r.Ok || r.Records != 3 {
		t.Fatalf("verify-audit: %v %v", r, err)
	}
	plain := NewService(&fakeBackend{}, "dev")
	if _, err := plain.AuditVerify(context.Background(), &triadv1.AuditVerifyRequest{Header: session(t, plain, ModeFull)}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("verify-audit on a backend without audit log: %v", err)
	}
}

// triadctl server verify-audit, online and with --file: an intact log
// passes, a tampered one fails naming the file and the record.
func TestCLIVerifyAudit(t *testing.T) {
	dir := auditDir(t, 30)
	addr := startAdminServer(t, &verifyingBackend{fakeBackend: &fakeBackend{}, dir: dir})
	out, _, err := runCLI(t, "--server", addr, "server", "verify-audit")
	if err != nil || !strings.Contains(out, "intact") || !strings.Contains(out, "records      30") {
		t.Fatalf("verify-audit online: %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, "server", "verify-audit", "--file", dir); err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("verify-audit --file DIR: %v\n%s", err, out)
	}
	files, _ := audit.Files(dir)
	if out, _, err = runCLI(t, "-o", "json", "server", "verify-audit", "--file", strings.Join(files, ",")); err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("verify-audit --file FILES: %v\n%s", err, out)
	}

	// Remove a rotated file from the middle.
	if len(files) < 3 {
		t.Fatalf("want rotated files, got %v", files)
	}
	os.Remove(files[1])
	_, _, err = runCLI(t, "server", "verify-audit", "--file", dir)
	wantErr(t, err, "audit log broken at "+filepath.Base(files[2])+" line 1 (seq ", "a rotated file is missing")
	_, _, err = runCLI(t, "--server", addr, "server", "verify-audit")
	wantErr(t, err, "audit log broken at "+filepath.Base(files[2]))
}
