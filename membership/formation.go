package membership

import (
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// The formation record is the cluster a member was bootstrapped into, kept
// in its data directory so that whichever member leads first can record it
// in the replicated state even if the member that formed the cluster died
// right after bootstrapping.
const formationFile = "formation.pb"

// LoadFormation returns the stored formation record, or nil if the member
// was never bootstrapped.
func LoadFormation(dataDir string) (*fsmpb.FormCluster, error) {
	path := filepath.Join(dataDir, formationFile)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read formation record: %w", err)
	}
	fc := &fsmpb.FormCluster{}
	if err := proto.Unmarshal(b, fc); err != nil {
		return nil, fmt.Errorf("formation record %s is corrupt: %v; restore the data directory from a backup", path, err)
	}
	return fc, nil
}

// SaveFormation stores the formation record durably.
func SaveFormation(dataDir string, fc *fsmpb.FormCluster) error {
	b, err := proto.Marshal(fc)
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(dataDir, formationFile), b); err != nil {
		return fmt.Errorf("store formation record: %w", err)
	}
	return nil
}
