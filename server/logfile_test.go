package server

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogFileRotates writes a few megabytes through the writer New builds
// for --log-file, with both loggers New puts on it (slog and Raft's hclog),
// and checks that the file is rotated next to itself, that at most keep
// rotated files remain, and that every file stays 0600. lumberjack counts
// its limit in whole megabytes (its byte factor is not settable from outside
// the package), so the test uses the smallest limit, 1 MB.
func TestLogFileRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "triadd.log")
	const keep = 2
	w, err := openLogFile(path, 1, keep)
	if err != nil {
		t.Fatalf("openLogFile: %v", err)
	}
	defer w.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log file after open: %v, err %v; want it created 0600", fi, err)
	}
	slogger := slog.New(slog.NewJSONHandler(w, nil))
	hlogger := hclogger("raft", "m1", w)
	pad := strings.Repeat("x", 32<<10)
	// About 5 MB: four or five rotations, more than keep. Rotated names carry
	// the time to the millisecond, so the writes are spaced out to give each
	// rotation its own name.
	for i := 0; i < 160; i++ {
		if i%2 == 0 {
			slogger.Info("slog line", "i", i, "pad", pad)
		} else {
			hlogger.Info("hclog line", "i", i, "pad", pad)
		}
		time.Sleep(time.Millisecond)
	}

	// Old rotated files are deleted in the background after a rotation.
	var backups []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		backups, err = filepath.Glob(filepath.Join(dir, "triadd-*.log"))
		if err != nil {
			t.Fatal(err)
		}
		if len(backups) <= keep || time.Now().After(deadline) {
			break
		}
	}
	if len(backups) != keep {
		t.Fatalf("rotated files = %q, want %d (more than %d rotations happened)", backups, keep, keep)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != keep+1 {
		t.Errorf("log directory holds %d files, want the log and %d rotated files", len(entries), keep)
	}
	var all strings.Builder
	for _, f := range append(backups, path) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
		if fi.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over the 1 MB limit", f, fi.Size())
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	for _, want := range []string{`"msg":"slog line"`, `"@message":"hclog line"`, `"@module":"raft"`, `"member":"m1"`} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("no %q line in the log files", want)
		}
	}
}

func TestLogFileOpenError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "triadd.log")
	if _, err := openLogFile(path, DefaultLogMaxMB, DefaultLogKeep); err == nil || !strings.Contains(err.Error(), "open log file") {
		t.Fatalf("openLogFile(%s) = %v, want an \"open log file\" error", path, err)
	}
}

// Raft's messages about an unreachable peer are warnings (the monitor
// reports a member that stays down); its other errors stay errors; both
// are JSON with the member's name, also through Named and With.
func TestRaftLoggerDemotesPeerUnreachable(t *testing.T) {
	var b strings.Builder
	l := hclogger("raft", "m1", &b).Named("transport").With("k", "v")
	l.Error("failed to appendEntries to", "peer", "bravo", "error", "connection refused")
	l.Error("failed to heartbeat to", "peer", "bravo")
	l.Error("failed to take snapshot", "error", "disk full")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("log lines %q", lines)
	}
	for i, want := range []string{"warn", "warn", "error"} {
		var rec map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %q", i, lines[i])
		}
		if rec["@level"] != want || rec["member"] != "m1" || rec["k"] != "v" || rec["@module"] != "raft.transport" {
			t.Errorf("line %d = %v, want level %s with member, k and module", i, rec, want)
		}
	}
}
