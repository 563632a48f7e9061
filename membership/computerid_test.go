package membership

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

var computerIDPattern = regexp.MustCompile(`^TRD-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}$`)

func TestComputerIDStableAndWellFormed(t *testing.T) {
	dir := t.TempDir()
	first, err := ComputerID(dir)
	if err != nil {
		t.Fatalf("ComputerID: %v", err)
	}
	if !computerIDPattern.MatchString(first) {
		t.Fatalf("ComputerID = %q, want TRD-XXXX-XXXX-XXXX-XXXX (upper-case hex)", first)
	}
	for i := 0; i < 3; i++ {
		again, err := ComputerID(dir)
		if err != nil {
			t.Fatalf("ComputerID call %d: %v", i+2, err)
		}
		if again != first {
			t.Fatalf("ComputerID call %d = %q, want the stored %q", i+2, again, first)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, computerIDFile))
	if err != nil {
		t.Fatalf("computer ID file not stored: %v", err)
	}
	if got := strings.TrimSpace(string(b)); got != first {
		t.Errorf("stored computer ID = %q, want %q", got, first)
	}
}

func TestComputerIDDiffersAcrossDataDirs(t *testing.T) {
	seen := map[string]string{}
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		id, err := ComputerID(dir)
		if err != nil {
			t.Fatalf("ComputerID(%s): %v", dir, err)
		}
		if other, ok := seen[id]; ok {
			t.Fatalf("data dirs %s and %s got the same computer ID %s", other, dir, id)
		}
		seen[id] = dir
	}
}

func TestComputerIDCorruptFile(t *testing.T) {
	for _, content := range []string{"garbage\n", "TRD-1234-5678-9ABC-DEFg\n", "trd-1234-5678-9abc-def0\n", "TRD-1234-5678-9ABC\n", "\n"} {
		dir := t.TempDir()
		path := filepath.Join(dir, computerIDFile)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		id, err := ComputerID(dir)
		if err == nil {
			t.Fatalf("ComputerID with file %q = %q, want an error", content, id)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name the file %s", err, path)
		}
		// The corrupt file must be left alone: replacing it would change
		// the ID and invalidate the licenses bound to it.
		b, _ := os.ReadFile(path)
		if string(b) != content {
			t.Errorf("corrupt file rewritten to %q", b)
		}
	}
}

func TestFormationRoundTrip(t *testing.T) {
	dir := t.TempDir()
	fc := &fsmpb.FormCluster{Mode: "failover", Members: []*fsmpb.Member{
		{Name: "a", GrpcAddress: "10.0.0.1:4085", RaftAddress: "10.0.0.1:4086", ComputerId: "TRD-0000-0000-0000-0001"},
		{Name: "b", GrpcAddress: "10.0.0.2:4085", RaftAddress: "10.0.0.2:4086", ComputerId: "TRD-0000-0000-0000-0002"},
		{Name: "c", GrpcAddress: "10.0.0.3:4085", RaftAddress: "10.0.0.3:4086", ComputerId: "TRD-0000-0000-0000-0003"},
	}}
	if err := SaveFormation(dir, fc); err != nil {
		t.Fatalf("SaveFormation: %v", err)
	}
	got, err := LoadFormation(dir)
	if err != nil {
		t.Fatalf("LoadFormation: %v", err)
	}
	if !proto.Equal(got, fc) {
		t.Fatalf("LoadFormation = %v, want %v", got, fc)
	}

	// Saving again replaces the record.
	fc2 := &fsmpb.FormCluster{Mode: "standalone", Members: fc.Members[:1]}
	if err := SaveFormation(dir, fc2); err != nil {
		t.Fatalf("SaveFormation (second): %v", err)
	}
	got, err = LoadFormation(dir)
	if err != nil {
		t.Fatalf("LoadFormation (second): %v", err)
	}
	if !proto.Equal(got, fc2) {
		t.Fatalf("LoadFormation after overwrite = %v, want %v", got, fc2)
	}
}

func TestLoadFormationMissing(t *testing.T) {
	fc, err := LoadFormation(t.TempDir())
	if err != nil || fc != nil {
		t.Fatalf("LoadFormation on an empty dir = %v, %v; want nil, nil", fc, err)
	}
}

func TestLoadFormationCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, formationFile)
	// Field 1 (mode) claims 5 bytes but only 2 follow.
	if err := os.WriteFile(path, []byte("\x0a\x05ab"), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := LoadFormation(dir)
	if err == nil {
		t.Fatalf("LoadFormation of a corrupt file = %v, want an error", fc)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("error %q should say the file %s is corrupt", err, path)
	}
}
