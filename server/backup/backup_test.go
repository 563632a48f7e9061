package backup

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

func sample(t *testing.T) ([]byte, *fsmpb.BackupHeader, []byte) {
	t.Helper()
	data, err := proto.Marshal(&fsmpb.Snapshot{FormatVersion: 1, NextLeaseId: 7, Cluster: &fsmpb.FormCluster{Mode: "failover"}})
	if err != nil {
		t.Fatal(err)
	}
	hdr := &fsmpb.BackupHeader{ClusterId: ClusterID("failover", []string{"B", "A", "C"}), Index: 42, Term: 3, Member: "alpha",
		Members: []*fsmpb.BackupMember{{Name: "alpha", ComputerId: "A"}}}
	file, err := Encode(hdr, data)
	if err != nil {
		t.Fatal(err)
	}
	return file, hdr, data
}

func TestRoundTrip(t *testing.T) {
	file, hdr, data := sample(t)
	got, gotData, err := Read(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotData, data) || got.GetIndex() != 42 || got.GetTerm() != 3 || got.GetClusterId() != hdr.GetClusterId() || got.GetDataLength() != uint64(len(data)) {
		t.Fatalf("round trip: %v", got)
	}
	if ClusterID("failover", []string{"A", "B", "C"}) != hdr.GetClusterId() || ClusterID("standalone", []string{"A", "B", "C"}) == hdr.GetClusterId() {
		t.Fatal("cluster id must not depend on order and must depend on mode")
	}
}

// Every truncation and every single flipped byte is refused as damaged.
func TestDamageRefused(t *testing.T) {
	file, _, _ := sample(t)
	for n := 0; n < len(file); n++ {
		if _, _, err := Read(bytes.NewReader(file[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(file), err)
		}
	}
	for i := range file {
		bad := append([]byte(nil), file...)
		bad[i] ^= 0x40
		_, _, err := Read(bytes.NewReader(bad))
		if err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	if _, _, err := Read(bytes.NewReader(append(append([]byte(nil), file...), 'x'))); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "after the closing checksum") {
		t.Fatalf("trailing byte: %v", err)
	}
}
