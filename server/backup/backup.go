// Package backup is the backup file format of `triadctl snapshot save`
// and `triadd restore`: a magic line, a length-prefixed fsmpb.BackupHeader
// (what the snapshot is: cluster, Raft index and term, time, members with
// their computer IDs, and the SHA-256 of the state), the fsmpb.Snapshot
// bytes, and a SHA-256 of everything before it. Any change to the file
// (truncation, a flipped bit) is refused by Read with what is wrong.
package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Magic starts every backup file.
const Magic = "TRIAD-BACKUP\n"

// FormatVersion is the version of the header this build writes.
const FormatVersion = 1

// maxHeader bounds the header (a few hundred bytes in practice).
const maxHeader = 1 << 20

// MaxData bounds the state a file may hold when read.
const MaxData = 1 << 30

// ErrCorrupt is wrapped by every refusal of a damaged file.
var ErrCorrupt = errors.New("backup file is damaged")

// ClusterID identifies a cluster by its mode and members' computer IDs.
func ClusterID(mode string, computerIDs []string) string {
	ids := append([]string(nil), computerIDs...)
	sort.Strings(ids)
	h := sha256.New()
	h.Write([]byte("triad-cluster\x00" + mode))
	for _, id := range ids {
		h.Write([]byte{0})
		h.Write([]byte(id))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Encode returns the file: hdr gets the data's length and checksum.
func Encode(hdr *fsmpb.BackupHeader, data []byte) ([]byte, error) {
	hdr = proto.Clone(hdr).(*fsmpb.BackupHeader)
	sum := sha256.Sum256(data)
	hdr.FormatVersion = FormatVersion
	hdr.DataLength = uint64(len(data))
	hdr.DataSha256 = sum[:]
	hb, err := proto.MarshalOptions{Deterministic: true}.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(Magic)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(hb)))
	buf.Write(n[:])
	buf.Write(hb)
	buf.Write(data)
	all := sha256.Sum256(buf.Bytes())
	buf.Write(all[:])
	return buf.Bytes(), nil
}

// Read reads and verifies a whole backup file: its header and the
// fsmpb.Snapshot bytes, which decode.
func Read(r io.Reader) (*fsmpb.BackupHeader, []byte, error) {
	h := sha256.New()
	tr := io.TeeReader(r, h)
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(tr, magic); err != nil || string(magic) != Magic {
		return nil, nil, fmt.Errorf("%w: it does not start like a Triad backup (written by `triadctl snapshot save`)", ErrCorrupt)
	}
	var n [4]byte
	if _, err := io.ReadFull(tr, n[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: truncated in the header", ErrCorrupt)
	}
	hl := binary.BigEndian.Uint32(n[:])
	if hl == 0 || hl > maxHeader {
		return nil, nil, fmt.Errorf("%w: header length %d is out of range", ErrCorrupt, hl)
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(tr, hb); err != nil {
		return nil, nil, fmt.Errorf("%w: truncated in the header", ErrCorrupt)
	}
	hdr := &fsmpb.BackupHeader{}
	if err := proto.Unmarshal(hb, hdr); err != nil {
		return nil, nil, fmt.Errorf("%w: the header does not decode (%v)", ErrCorrupt, err)
	}
	if v := hdr.GetFormatVersion(); v == 0 || v > FormatVersion {
		return nil, nil, fmt.Errorf("backup format %d is not supported by this build (which reads format 1 to %d): restore with the Triad version that saved it or a newer one", v, FormatVersion)
	}
	if hdr.GetDataLength() > MaxData {
		return nil, nil, fmt.Errorf("%w: state length %d is out of range", ErrCorrupt, hdr.GetDataLength())
	}
	data := make([]byte, hdr.GetDataLength())
	if _, err := io.ReadFull(tr, data); err != nil {
		return nil, nil, fmt.Errorf("%w: truncated: the header announces %d bytes of state", ErrCorrupt, len(data))
	}
	want := h.Sum(nil)
	var got [sha256.Size]byte
	if _, err := io.ReadFull(r, got[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: truncated: the closing checksum is missing", ErrCorrupt)
	}
	if !bytes.Equal(got[:], want) {
		return nil, nil, fmt.Errorf("%w: checksum mismatch (the file was changed or corrupted after it was saved)", ErrCorrupt)
	}
	if sum := sha256.Sum256(data); !bytes.Equal(sum[:], hdr.GetDataSha256()) {
		return nil, nil, fmt.Errorf("%w: the state's checksum does not match the header", ErrCorrupt)
	}
	var extra [1]byte
	if k, _ := r.Read(extra[:]); k > 0 {
		return nil, nil, fmt.Errorf("%w: unexpected bytes after the closing checksum", ErrCorrupt)
	}
	if err := proto.Unmarshal(data, &fsmpb.Snapshot{}); err != nil {
		return nil, nil, fmt.Errorf("%w: the state does not decode (%v)", ErrCorrupt, err)
	}
	return hdr, data, nil
}
