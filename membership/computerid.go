package membership

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const computerIDFile = "computer-id"

// ComputerID returns this member's stable computer ID, creating it on first
// start from the machine identity (/etc/machine-id where present) and a
// random value, and storing it in dataDir. The random part keeps IDs distinct
// when several members share one machine (demo, tests); storing it keeps the
// ID stable across restarts, which license bindings depend on.
func ComputerID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, computerIDFile)
	if b, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(b))
		if !validComputerID(id) {
			return "", fmt.Errorf("computer ID file %s is corrupt (%q): restore it from a backup; deleting it changes the ID and invalidates the licenses bound to it", path, id)
		}
		return id, nil
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("read computer ID: %w", err)
	}
	machine, _ := os.ReadFile("/etc/machine-id")
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(append([]byte("triad-computer-id\x00"), machine...), salt...))
	h := strings.ToUpper(hex.EncodeToString(sum[:8]))
	id := fmt.Sprintf("TRD-%s-%s-%s-%s", h[0:4], h[4:8], h[8:12], h[12:16])
	if err := writeFileSync(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("store computer ID: %w", err)
	}
	return id, nil
}

func validComputerID(id string) bool {
	if len(id) != 23 || !strings.HasPrefix(id, "TRD-") {
		return false
	}
	for i, c := range id[4:] {
		if (i+1)%5 == 0 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// writeFileSync writes a small file atomically and durably.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
