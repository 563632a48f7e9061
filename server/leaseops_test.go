package server

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
)

func validGrant() *fsmpb.Grant {
	return &fsmpb.Grant{RequestId: "req-1", ClientId: "client-1", Feature: "cad", Count: 1, TtlMs: 30_000}
}

// The leader draws a fresh 16-byte secret for every new grant in a batch,
// replacing any secret an op arrived with (a forwarding member or a client
// never chooses it), and leaves other ops alone.
func TestStampSecrets(t *testing.T) {
	forged := validGrant()
	forged.Secret = []byte("chosen-by-a-follower")
	ext := &fsmpb.Borrow{LeaseId: 7, Secret: []byte("holder's"), DurationMs: 60_000}
	renew := &fsmpb.Renew{LeaseIds: []uint64{1}, Secrets: [][]byte{[]byte("holder's")}}
	ops := []*fsmpb.Op{
		{Op: &fsmpb.Op_Grant{Grant: validGrant()}},
		{Op: &fsmpb.Op_Grant{Grant: forged}},
		{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{Grant: validGrant(), DurationMs: 60_000}}},
		{Op: &fsmpb.Op_Borrow{Borrow: ext}},
		{Op: &fsmpb.Op_Renew{Renew: renew}},
	}
	stampSecrets(ops)
	seen := map[string]bool{}
	for _, g := range []*fsmpb.Grant{ops[0].GetGrant(), ops[1].GetGrant(), ops[2].GetBorrow().GetGrant()} {
		if len(g.Secret) != leaseSecretLen || bytes.Equal(g.Secret, make([]byte, leaseSecretLen)) || seen[string(g.Secret)] {
			t.Fatalf("stamped secret %x: want %d fresh random bytes", g.Secret, leaseSecretLen)
		}
		seen[string(g.Secret)] = true
	}
	if string(ext.Secret) != "holder's" || string(renew.Secrets[0]) != "holder's" {
		t.Fatalf("stamping changed the secrets of an extension or a renewal")
	}
	// Each flush draws anew: a retried grant never reuses a secret.
	again := []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: ops[0].GetGrant()}}}
	stampSecrets(again)
	if seen[string(again[0].GetGrant().Secret)] {
		t.Fatalf("second stamping reused a secret")
	}
}

// The edge limits hold for ops however they arrive, a follower's
// Peer.Forward included.
func TestValidateOps(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	grant := func(mod func(g *fsmpb.Grant)) *fsmpb.Op {
		g := validGrant()
		mod(g)
		return &fsmpb.Op{Op: &fsmpb.Op_Grant{Grant: g}}
	}
	ok := []*fsmpb.Op{
		grant(func(*fsmpb.Grant) {}),
		grant(func(g *fsmpb.Grant) {
			g.RequestId, g.ClientId, g.Feature, g.User, g.Host = long(maxIDLen), long(maxIDLen), long(maxNameLen), long(maxNameLen), long(maxNameLen)
			g.Count = maxCount
		}),
		{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: []uint64{1, 2}, Secrets: [][]byte{make([]byte, maxSecretLen)}}}},
		{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{1}}}},
		{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{LeaseId: 1, SessionId: "s"}}},
		{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{Grant: validGrant(), DurationMs: 1000}}},
		{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{LeaseId: 3, Secret: []byte("s"), DurationMs: maxBorrowSeconds * 1000}}},
	}
	for i, op := range ok {
		if err := validateOps([]*fsmpb.Op{op}); err != nil {
			t.Errorf("valid op %d refused: %v", i, err)
		}
	}
	bad := []struct {
		name string
		op   *fsmpb.Op
		msg  string
	}{
		{"empty request id", grant(func(g *fsmpb.Grant) { g.RequestId = "" }), "request_id"},
		{"long request id", grant(func(g *fsmpb.Grant) { g.RequestId = long(maxIDLen + 1) }), "request_id"},
		{"no client id", grant(func(g *fsmpb.Grant) { g.ClientId = "" }), "client_id"},
		{"long client id", grant(func(g *fsmpb.Grant) { g.ClientId = long(maxIDLen + 1) }), "client_id"},
		{"long feature", grant(func(g *fsmpb.Grant) { g.Feature = long(maxNameLen + 1) }), "feature"},
		{"count", grant(func(g *fsmpb.Grant) { g.Count = maxCount + 1 }), "count"},
		{"negative ttl", grant(func(g *fsmpb.Grant) { g.TtlMs = -1 }), "ttl"},
		{"long user", grant(func(g *fsmpb.Grant) { g.User = long(maxNameLen + 1) }), "user"},
		{"long member", grant(func(g *fsmpb.Grant) { g.ViaMember = long(maxNameLen + 1) }), "member"},
		{"no ids", &fsmpb.Op{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{}}}, "no lease ids"},
		{"too many ids", &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: make([]uint64, maxLeaseIDs+1)}}}, "at most"},
		{"more secrets than ids", &fsmpb.Op{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: []uint64{1}, Secrets: [][]byte{nil, nil}}}}, "secrets for 1 lease"},
		{"long secret", &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{1}, Secrets: [][]byte{make([]byte, maxSecretLen+1)}}}}, "too long"},
		{"force release without id", &fsmpb.Op{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{}}}, "no lease id"},
		{"borrow too long", &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{Grant: validGrant(), DurationMs: (maxBorrowSeconds + 1) * 1000}}}, "duration"},
		{"borrow without grant", &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{DurationMs: 1000}}}, "needs checkout"},
		{"borrow with bad grant", &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{Grant: &fsmpb.Grant{Feature: "cad"}, DurationMs: 1000}}}, "request_id"},
		{"extension with long secret", &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{LeaseId: 1, Secret: make([]byte, maxSecretLen+1), DurationMs: 1000}}}, "too long"},
		{"empty op", &fsmpb.Op{}, "empty lease operation"},
	}
	for _, c := range bad {
		// A valid op before the bad one: the whole batch is refused.
		err := validateOps([]*fsmpb.Op{ok[0], c.op})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", c.name, err, c.msg)
		}
	}
}

// Peer.Forward checks the limits on the receiving member before anything
// is routed or proposed: this server has no Raft at all, so reaching the
// write path would crash the test.
func TestForwardRefusesWhatTheEdgeRefuses(t *testing.T) {
	p := &peerService{s: &Server{}}
	g := validGrant()
	g.RequestId = strings.Repeat("r", maxIDLen+1)
	_, err := p.Forward(context.Background(), &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "request_id") {
		t.Fatalf("forwarded oversized grant: %v", err)
	}
	g = validGrant()
	g.ClientId = ""
	_, err = p.Forward(context.Background(), &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("forwarded grant without client id: %v", err)
	}
}

func TestLicensingHandlersRefuseBadSecrets(t *testing.T) {
	l := &licensingService{}
	ctx := context.Background()
	_, err := l.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: LicensingProtocolVersion, LeaseIds: []uint64{1}, LeaseSecrets: [][]byte{nil, nil}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Renew with more secrets than ids: %v", err)
	}
	_, err = l.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: LicensingProtocolVersion, LeaseIds: []uint64{1}, LeaseSecrets: [][]byte{make([]byte, maxSecretLen+1)}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Release with an oversized secret: %v", err)
	}
	req := validCheckoutRequest()
	req.ClientId = ""
	_, err = l.Checkout(ctx, req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "client_id") {
		t.Errorf("Checkout without client id: %v", err)
	}
}

// A lease listing (usage leases) shows neither the secret nor the request
// id that would fetch it through a retried checkout.
func TestLeaseListingHidesSecretAndRequestID(t *testing.T) {
	s, apply := settingsServer(t, Config{Name: "m1", DataDir: t.TempDir(), Insecure: true})
	apply(&fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{License: &fsmpb.License{
		Serial: "L1", ValidAfterMs: 1, ValidUntilMs: 1 << 62, BindingMode: ModeStandalone, ComputerIds: []string{"TRD-TEST"},
		Features: []*fsmpb.Feature{{Name: "cad", Count: 2}}}}}})
	g := validGrant()
	stampSecrets([]*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}})
	data, err := proto.Marshal(&fsmpb.Command{NowMs: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(),
		Cmd: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Ops: []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	res := s.fsm.Apply(&raft.Log{Index: 99, Type: raft.LogCommand, Data: data}).(*fsmpb.BatchResult)
	if r := res.GetResults()[0]; r.GetCode() != fsmpb.Code_OK || !bytes.Equal(r.GetLease().GetSecret(), g.Secret) {
		t.Fatalf("grant: %v", r)
	}
	ls := s.Leases(context.Background())
	if len(ls) != 1 || ls[0].GetClientId() != "client-1" {
		t.Fatalf("listing %v", ls)
	}
	if ls[0].GetRequestId() != "" {
		t.Fatalf("listing shows request id %q", ls[0].GetRequestId())
	}
	b, err := proto.Marshal(ls[0])
	if err != nil || bytes.Contains(b, g.Secret) {
		t.Fatalf("listing shows the secret: %x (%v)", b, err)
	}
}
