package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triadlm/triad/server/audit"
)

func TestAuditVerifyCommand(t *testing.T) {
	dataDir := t.TempDir()
	w, err := audit.Open(filepath.Join(dataDir, "audit"), audit.Options{Member: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		w.Append(audit.Record{Kind: audit.KindApplied, RaftIndex: uint64(i), Command: "remove_license", Outcome: audit.Accepted})
	}
	w.Close()
	run := func(args ...string) (string, error) {
		app := newApp()
		var out bytes.Buffer
		app.Writer = &out
		err := app.Run(append([]string{"triadd", "audit", "verify"}, args...))
		return out.String(), err
	}
	if out, err := run("--data-dir", dataDir); err != nil || !strings.Contains(out, "intact: 1 files, 3 records") {
		t.Fatalf("triadd audit verify --data-dir: %v %q", err, out)
	}
	path := filepath.Join(dataDir, "audit", "audit.log")
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(b, []byte(`"seq":2,`), []byte(`"seq":7,`), 1), 0o600)
	_, err = run(path)
	if err == nil || !strings.Contains(err.Error(), "audit.log line 2 (seq 7): content does not match its hash") {
		t.Fatalf("triadd audit verify on an edited file: %v", err)
	}
	if _, err := run(); err == nil {
		t.Fatal("triadd audit verify without files succeeded")
	}
}
