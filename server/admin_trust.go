package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// Vendor trust is replicated state (fsm/trust.go). This member's --trust
// files matter twice: at formation, where every member must report the same
// keys, and once on a cluster formed before trust was replicated, where the
// first leader of a new build adopts its own keys. After that, the keys
// change only through `triadctl vendor trust add|remove`.

// configKeys returns the keys of this member's --trust files as raw bytes,
// sorted, without duplicates: how Peer.Info reports them and how a
// formation records them.
func configKeys(trusted []ed25519.PublicKey) [][]byte {
	out := make([][]byte, 0, len(trusted))
	for _, k := range trusted {
		out = append(out, bytes.Clone(k))
	}
	slices.SortFunc(out, bytes.Compare)
	return slices.CompactFunc(out, bytes.Equal)
}

// keyIDs names keys for messages.
func keyIDs(keys [][]byte) string {
	if len(keys) == 0 {
		return "none"
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, license.KeyID(k))
	}
	return strings.Join(ids, ", ")
}

// sameKeys compares two sorted key sets.
func sameKeys(a, b [][]byte) bool { return slices.EqualFunc(a, b, bytes.Equal) }

// trustMismatch is the formation refusal when member addr (name) trusts
// other vendor keys than this member.
func (s *Server) trustMismatch(addr, name string, theirs [][]byte) error {
	return status.Errorf(codes.FailedPrecondition,
		"member %s (%s) trusts other vendor keys than this member (%s): it trusts [%s], this member trusts [%s]: give every member the same --trust files and restart it, then retry",
		addr, name, s.cfg.Name, keyIDs(theirs), keyIDs(configKeys(s.trusted)))
}

// adoptTrust records this leader's configured keys on a cluster formed
// before vendor trust was replicated (the FSM accepts it once).
func (s *Server) adoptTrust(ctx context.Context) {
	if s.fsm.Cluster() == nil {
		return
	}
	if _, recorded := s.fsm.VendorTrust(); recorded {
		return
	}
	keys := configKeys(s.trusted)
	s.log.Warn("this cluster was formed before vendor trust was replicated: recording this member's --trust keys as the cluster's",
		"keys", keyIDs(keys))
	s.leaderApply(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_AdoptVendorTrust{AdoptVendorTrust: &fsmpb.AdoptVendorTrust{
		Trust: &fsmpb.VendorTrust{Keys: keys}}}})
}

// VendorTrust lists the replicated trusted keys (admin.Backend).
func (s *Server) VendorTrust(ctx context.Context) (*triadv1.VendorTrustListResponse, error) {
	if err := s.requireFormed("vendor keys"); err != nil {
		return nil, err
	}
	keys, recorded := s.fsm.VendorTrust()
	resp := &triadv1.VendorTrustListResponse{}
	if !recorded {
		resp.Message = "the cluster's vendor trust is not recorded yet (the leader records its --trust keys once it leads with this version)"
	}
	for _, k := range keys {
		resp.Keys = append(resp.Keys, &triadv1.VendorKey{KeyId: license.KeyID(k), PublicKey: k})
	}
	return resp, nil
}

// AddVendorKey trusts the public key in keyFile (admin.Backend).
func (s *Server) AddVendorKey(ctx context.Context, sessionID string, keyFile []byte) (*triadv1.VendorTrustListResponse, error) {
	if err := s.requireFormed("vendor keys"); err != nil {
		return nil, err
	}
	pub, err := license.ParsePublicKey(keyFile)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return s.changeTrust(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_AddVendorKey{AddVendorKey: &fsmpb.AddVendorKey{SessionId: sessionID, Key: pub}}})
}

// RemoveVendorKey stops trusting the key with id keyID (admin.Backend).
func (s *Server) RemoveVendorKey(ctx context.Context, sessionID, keyID string) (*triadv1.VendorTrustListResponse, error) {
	if err := s.requireFormed("vendor keys"); err != nil {
		return nil, err
	}
	keys, _ := s.fsm.VendorTrust()
	var match []ed25519.PublicKey
	for _, k := range keys {
		if license.KeyID(k) == keyID {
			match = append(match, k)
		}
	}
	switch len(match) {
	case 0:
		return nil, status.Errorf(codes.NotFound, "no trusted vendor key has id %s: see `triadctl vendor trust list`", keyID)
	case 1:
	default:
		return nil, status.Errorf(codes.FailedPrecondition, "%d trusted keys share id %s: remove them with their public key files", len(match), keyID)
	}
	return s.changeTrust(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_RemoveVendorKey{RemoveVendorKey: &fsmpb.RemoveVendorKey{SessionId: sessionID, Key: match[0]}}})
}

func (s *Server) changeTrust(ctx context.Context, cmd *fsmpb.Command) (*triadv1.VendorTrustListResponse, error) {
	res, err := s.applyCommand(ctx, cmd, false)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := resultStatus(res.GetCode(), res.GetMessage()); err != nil {
		return nil, err
	}
	s.log.Info("vendor trust changed", "result", res.GetMessage())
	if err := s.readIndex(ctx); err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.VendorTrust(ctx)
	if err != nil {
		return nil, err
	}
	resp.Message = res.GetMessage()
	return resp, nil
}

// checkBootstrapTrust: a member bootstrapped into a formation checks that
// the keys it records are the ones its own configuration trusts, so a
// forming member cannot slip in keys this member never agreed to.
func (s *Server) checkBootstrapTrust(fc *fsmpb.FormCluster) error {
	if fc.GetVendorTrust() == nil {
		return nil // a formation record of an older build: adopted later
	}
	if mine := configKeys(s.trusted); !sameKeys(fc.GetVendorTrust().GetKeys(), mine) {
		return fmt.Errorf("the formation trusts vendor keys [%s], but this member (%s) trusts [%s]: give every member the same --trust files",
			keyIDs(fc.GetVendorTrust().GetKeys()), s.cfg.Name, keyIDs(mine))
	}
	return nil
}
