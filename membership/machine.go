package membership

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MachineID is the machine's identity (systemd's /etc/machine-id, or
// D-Bus's copy), "" when the machine has none (many containers).
func MachineID() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" {
				return id
			}
		}
	}
	return ""
}

// MachineProof ties a computer ID to the machine it runs on: a backup
// records each member's proof, and a restore into an empty data directory
// recomputes it from the local machine identity, so that a backup restores
// only on the machines it was taken from (the same instance). "" when the
// machine has no identity: then no proof is possible.
func MachineProof(machineID, computerID string) string {
	if machineID == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("triad-machine-proof\x00" + machineID + "\x00" + computerID))
	return hex.EncodeToString(sum[:])
}

// StoredComputerID returns the computer ID stored in dataDir, "" when
// none is (a new or lost data directory), without creating one.
func StoredComputerID(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, computerIDFile))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read computer ID: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if !validComputerID(id) {
		return "", fmt.Errorf("computer ID file %s is corrupt (%q)", filepath.Join(dataDir, computerIDFile), id)
	}
	return id, nil
}

// RestoreComputerID writes a computer ID back into a data directory that
// has none (a restore onto the machine the ID was derived on).
func RestoreComputerID(dataDir, id string) error {
	if !validComputerID(id) {
		return fmt.Errorf("%q is not a computer ID", id)
	}
	if err := writeFileSync(filepath.Join(dataDir, computerIDFile), []byte(id+"\n")); err != nil {
		return fmt.Errorf("store computer ID: %w", err)
	}
	return nil
}
