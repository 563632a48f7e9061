package fsm

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
)

// Vendor trust: the Ed25519 public keys license files must be signed with.
// They are replicated state, recorded at formation from the members'
// configuration (which must agree), changed only by a full session, and
// every member verifies each enrolled license against them inside Apply.

// MaxVendorKeys bounds the trusted set (a vendor rotates keys now and then;
// a handful is the most a site needs).
const MaxVendorKeys = 32

// normalizeTrust checks and sorts a set of keys: every key 32 bytes, no
// duplicates (a duplicate is dropped), at most MaxVendorKeys.
func normalizeTrust(in *fsmpb.VendorTrust) (*fsmpb.VendorTrust, error) {
	keys := make([][]byte, 0, len(in.GetKeys()))
	for i, k := range in.GetKeys() {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("vendor key %d is %d bytes, want %d (a raw Ed25519 public key)", i+1, len(k), ed25519.PublicKeySize)
		}
		keys = append(keys, bytes.Clone(k))
	}
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, bytes.Equal)
	if len(keys) > MaxVendorKeys {
		return nil, fmt.Errorf("%d vendor keys, at most %d can be trusted", len(keys), MaxVendorKeys)
	}
	return &fsmpb.VendorTrust{Keys: keys}, nil
}

func noTrustRefusal() *fsmpb.OpResult {
	return result(fsmpb.Code_SIGNATURE_INVALID,
		"the cluster trusts no vendor key, so no license can be verified: trust the vendor's public key with `triadctl vendor trust add VENDOR.pub`")
}

// verifyLicense re-parses the license file the command carries, verifies
// its signature against the replicated trust, and refuses the command
// unless its fields are exactly what the signed file says. Deterministic:
// parsing and Ed25519 verification read nothing but their input, and the
// keys are tried in their sorted order.
func (s *state) verifyLicense(lic *fsmpb.License) *fsmpb.OpResult {
	if !s.enforcing() {
		return nil // an older build's entry: it verified at the edge (enforce.go)
	}
	if len(s.trust.GetKeys()) == 0 {
		return noTrustRefusal()
	}
	f, err := license.Parse(lic.GetRaw())
	if err != nil {
		return result(fsmpb.Code_SIGNATURE_INVALID, "license %s: the enrolled file is not a signed license file: %v", lic.GetSerial(), err)
	}
	keys := make([]ed25519.PublicKey, 0, len(s.trust.Keys))
	for _, k := range s.trust.Keys {
		keys = append(keys, ed25519.PublicKey(k))
	}
	if err := f.Verify(keys); err != nil {
		return result(fsmpb.Code_SIGNATURE_INVALID, "license %s: %v", lic.GetSerial(), err)
	}
	if want := LicenseFromFile(f, lic.GetRaw()); !proto.Equal(withoutEnrollment(lic), want) {
		return result(fsmpb.Code_INVALID_ARGUMENT,
			"license %s: the command's fields differ from the signed file it carries (%s): it was altered after the file was read; enroll the file again",
			lic.GetSerial(), firstDifference(withoutEnrollment(lic), want))
	}
	return nil
}

// firstDifference names the first top-level field where a and b differ.
func firstDifference(a, b *fsmpb.License) string {
	ra, rb := a.ProtoReflect(), b.ProtoReflect()
	fields := ra.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !ra.Get(fd).Equal(rb.Get(fd)) {
			return string(fd.Name())
		}
	}
	return "unknown fields"
}

// LicenseFromFile is the license record a parsed license file gives: what
// the member that reads the file proposes, and what Apply recomputes from
// the raw bytes to check the proposal.
func LicenseFromFile(f *license.File, raw []byte) *fsmpb.License {
	b := f.Body
	l := &fsmpb.License{
		Serial: b.Serial, Customer: b.IssuedTo, IssuedAtMs: b.IssuedAt.UnixMilli(),
		ValidAfterMs: b.ValidAfter.UnixMilli(), ValidUntilMs: b.ValidUntil.UnixMilli(),
		Supersedes: slices.Clone(b.Supersedes), BindingMode: b.Binding.Mode,
		ComputerIds: slices.Clone(b.Binding.ComputerIDs), Raw: bytes.Clone(raw),
	}
	for _, ft := range b.Features {
		l.Features = append(l.Features, &fsmpb.Feature{
			Name: ft.Name, Version: ft.Version, Count: ft.Count, GraceSeconds: ft.GraceSeconds,
			Model: ft.Model, Limit: ft.Limit, Overdraft: ft.Overdraft, UsageHours: ft.UsageHours,
			MaxBorrowSeconds: ft.MaxBorrowSeconds, VersionText: ft.VersionText, Components: slices.Clone(ft.Components),
			LingerSeconds: ft.LingerSeconds, MinTimeoutSeconds: ft.MinTimeoutSeconds,
		})
	}
	return l
}

// recordTrust sets the trusted keys from a formation or an adoption.
func (s *state) recordTrust(in *fsmpb.VendorTrust) *fsmpb.OpResult {
	t, err := normalizeTrust(in)
	if err != nil {
		return result(fsmpb.Code_INVALID_ARGUMENT, "%v", err)
	}
	s.trust = t
	return nil
}

// applyAdoptVendorTrust records the trust of a cluster formed before trust
// was replicated: once, from the leader's configuration.
func (s *state) applyAdoptVendorTrust(c *fsmpb.AdoptVendorTrust) *fsmpb.OpResult {
	switch {
	case s.cluster == nil:
		return result(fsmpb.Code_NOT_FORMED, "the cluster is not formed yet")
	case s.trust != nil:
		return result(fsmpb.Code_ALREADY_EXISTS, "the vendor trust is already recorded: change it with `triadctl vendor trust add|remove`")
	}
	if r := s.recordTrust(c.GetTrust()); r != nil {
		return r
	}
	return result(fsmpb.Code_OK, "vendor trust recorded from the leader's configuration: %d key(s)", len(s.trust.Keys))
}

// applyAddVendorKey trusts one more key (the full session was checked).
// On a cluster whose trust was never recorded it records {key}.
func (s *state) applyAddVendorKey(c *fsmpb.AddVendorKey) *fsmpb.OpResult {
	if s.cluster == nil {
		return result(fsmpb.Code_NOT_FORMED, "the cluster is not formed yet")
	}
	k := c.GetKey()
	if len(k) != ed25519.PublicKeySize {
		return result(fsmpb.Code_INVALID_ARGUMENT, "a vendor key is %d bytes, got %d: give the vendor's public key file", ed25519.PublicKeySize, len(k))
	}
	id := license.KeyID(k)
	keys := s.trust.GetKeys()
	if _, found := slices.BinarySearchFunc(keys, k, bytes.Compare); found {
		return result(fsmpb.Code_OK, "vendor key %s is already trusted", id)
	}
	if len(keys) >= MaxVendorKeys {
		return result(fsmpb.Code_INVALID_ARGUMENT, "%d vendor keys are trusted already, the most there can be: remove one first (`triadctl vendor trust remove KEY-ID`)", len(keys))
	}
	next, err := normalizeTrust(&fsmpb.VendorTrust{Keys: append(slices.Clone(keys), k)})
	if err != nil {
		return result(fsmpb.Code_INVALID_ARGUMENT, "%v", err)
	}
	s.trust = next
	return result(fsmpb.Code_OK, "vendor key %s trusted", id)
}

// applyRemoveVendorKey stops trusting a key (the full session was
// checked). Licenses it signed stay enrolled; new ones are refused.
func (s *state) applyRemoveVendorKey(c *fsmpb.RemoveVendorKey) *fsmpb.OpResult {
	k := c.GetKey()
	keys := s.trust.GetKeys()
	i, found := slices.BinarySearchFunc(keys, k, bytes.Compare)
	if !found {
		return result(fsmpb.Code_NOT_FOUND, "vendor key %s is not trusted: see `triadctl vendor trust list`", license.KeyID(k))
	}
	s.trust = &fsmpb.VendorTrust{Keys: slices.Delete(slices.Clone(keys), i, i+1)}
	msg := fmt.Sprintf("vendor key %s is no longer trusted; licenses it signed stay enrolled", license.KeyID(k))
	if len(s.trust.Keys) == 0 {
		msg += "; no vendor key is trusted now, so no license can be enrolled until one is added"
	}
	return result(fsmpb.Code_OK, "%s", msg)
}

// trustFromSnapshot checks the snapshot's trust: sorted, unique, 32-byte keys.
func trustFromSnapshot(snap *fsmpb.Snapshot) (*fsmpb.VendorTrust, error) {
	t := snap.GetVendorTrust()
	if t == nil {
		return nil, nil
	}
	n, err := normalizeTrust(t)
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot vendor trust: %w", err)
	}
	if len(n.Keys) != len(t.Keys) || !slices.EqualFunc(n.Keys, t.Keys, bytes.Equal) {
		return nil, errors.New("fsm: snapshot vendor trust is not sorted or repeats a key")
	}
	return t, nil
}

// Reads.

// VendorTrust returns copies of the trusted vendor keys, sorted, and
// whether the trust is recorded at all (a cluster formed before trust was
// replicated has none until the leader adopts its configuration).
func (f *FSM) VendorTrust() (keys []ed25519.PublicKey, recorded bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, k := range f.s.trust.GetKeys() {
		keys = append(keys, ed25519.PublicKey(bytes.Clone(k)))
	}
	return keys, f.s.trust != nil
}
