package membership

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMachineProof(t *testing.T) {
	p := MachineProof("machine-a", "TRD-0000-0000-0000-0001")
	if len(p) != 64 || p != MachineProof("machine-a", "TRD-0000-0000-0000-0001") {
		t.Fatalf("proof %q is not a stable SHA-256", p)
	}
	if p == MachineProof("machine-b", "TRD-0000-0000-0000-0001") || p == MachineProof("machine-a", "TRD-0000-0000-0000-0002") {
		t.Fatal("the proof must depend on the machine and on the computer ID")
	}
	if MachineProof("", "TRD-0000-0000-0000-0001") != "" {
		t.Fatal("no machine identity gives no proof")
	}
}

func TestStoredAndRestoredComputerID(t *testing.T) {
	dir := t.TempDir()
	if id, err := StoredComputerID(dir); err != nil || id != "" {
		t.Fatalf("empty dir: %q %v", id, err)
	}
	if err := RestoreComputerID(dir, "not-an-id"); err == nil {
		t.Fatal("an invalid id was written")
	}
	const id = "TRD-0123-4567-89AB-CDEF"
	if err := RestoreComputerID(dir, id); err != nil {
		t.Fatal(err)
	}
	if got, err := ComputerID(dir); err != nil || got != id {
		t.Fatalf("ComputerID after restore: %q %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, computerIDFile), []byte("junk\n"), 0o600)
	if _, err := StoredComputerID(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt file: %v", err)
	}
}
