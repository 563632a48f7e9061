package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// Security tests on real members in this process: three Servers on
// loopback ports, spoken to over gRPC as triadctl does.

// vendor is a test vendor key pair written to a .pub file.
type vendor struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	file string
}

func newVendor(t *testing.T, seed byte) vendor {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	file := filepath.Join(t.TempDir(), fmt.Sprintf("vendor%d.pub", seed))
	if err := os.WriteFile(file, license.EncodePublicKey(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return vendor{priv: priv, pub: pub, file: file}
}

// secMember is one member and an admin client on its licensing port.
type secMember struct {
	s *Server
	a triadv1.AdminClient
}

// startMembers starts one member per trust list (the --trust files of
// each), unformed, on loopback; t.Cleanup stops them.
func startMembers(t *testing.T, trust ...[]string) []*secMember {
	t.Helper()
	return startMembersWith(t, func(*Config) {}, trust...)
}

// startMembersWith is startMembers with each member's config changed by set.
func startMembersWith(t *testing.T, set func(*Config), trust ...[]string) []*secMember {
	t.Helper()
	var out []*secMember
	for i, files := range trust {
		dir, err := os.MkdirTemp("", "triad-sec")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		cfg := Config{
			Name: fmt.Sprintf("m%d", i), DataDir: dir, Listen: "127.0.0.1:0", RaftListen: "127.0.0.1:0",
			HTTPListen: "127.0.0.1:0", Trust: files, LogFile: filepath.Join(dir, "member.log"),
			Insecure: true, // in-process; TLS is tested on real processes (integration/)
		}
		set(&cfg)
		s, err := New(cfg)
		if err != nil {
			t.Fatalf("start member %d: %v", i, err)
		}
		t.Cleanup(s.Stop)
		conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		out = append(out, &secMember{s: s, a: triadv1.NewAdminClient(conn)})
	}
	return out
}

func hdr(token string) *triadv1.AdminHeader {
	return &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion, SessionToken: token}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connectFull opens a full session through m.
func (m *secMember) connectFull(t *testing.T) string {
	t.Helper()
	r, err := m.a.Connect(ctxT(t), &triadv1.ConnectRequest{Header: hdr(""), Mode: admin.ModeFull})
	if err != nil {
		t.Fatalf("connect full to %s: %v", m.s.cfg.Name, err)
	}
	return r.SessionToken
}

// use makes a read call with token through m.
func (m *secMember) use(t *testing.T, token string) error {
	t.Helper()
	_, err := m.a.LicenseList(ctxT(t), &triadv1.LicenseListRequest{Header: hdr(token)})
	return err
}

// form forms a failover cluster of ms through ms[0] and waits until every
// member has applied the formation.
func form(t *testing.T, ms []*secMember) error {
	t.Helper()
	tok := ms[0].connectFull(t)
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.s.Addr())
	}
	if _, err := ms[0].a.ClusterCreate(ctxT(t), &triadv1.ClusterCreateRequest{Header: hdr(tok), Members: addrs}); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range ms {
		for m.s.fsm.Cluster() == nil {
			if time.Now().After(deadline) {
				t.Fatalf("member %s did not apply the formation", m.s.cfg.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The leader starts the usage history right after (once it heard every
	// member's format): wait, so that tests counting log entries do not
	// see it land in their window.
	for _, m := range ms {
		if m.s.fsm.MaxFormat() < fsm.FormatVersion {
			return nil // an older member: the history waits for its upgrade
		}
	}
	for _, m := range ms {
		for !m.s.fsm.HistoryStarted() {
			if time.Now().After(deadline) {
				t.Fatalf("member %s did not apply the start of the usage history", m.s.cfg.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// leaderAndFollowers orders the members: the leader first.
func leaderAndFollowers(t *testing.T, ms []*secMember) []*secMember {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, m := range ms {
			if m.s.isLeader() {
				out := []*secMember{m}
				out = append(out, ms[:i]...)
				return append(out, ms[i+1:]...)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}

func wantUnauthenticated(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), msg) {
		t.Fatalf("%s: %v %q, want Unauthenticated containing %q", what, st.Code(), st.Message(), msg)
	}
}

// TestClosedTokenRefusedAtOnceEverywhere: a token disconnected through a
// member (a follower, whose state trails the leader's) is refused by the
// very next call on that member and on the two others; so is a token
// displaced by a local connect through another member, for reads and
// writes. Repeated, since the window it closes is a few milliseconds.
func TestClosedTokenRefusedAtOnceEverywhere(t *testing.T) {
	v := newVendor(t, 1)
	ms := startMembers(t, []string{v.file}, []string{v.file}, []string{v.file})
	if err := form(t, ms); err != nil {
		t.Fatalf("form: %v", err)
	}
	order := leaderAndFollowers(t, ms)
	for round := range 5 {
		via := order[1+round%2] // a follower serves connect and disconnect
		tok := via.connectFull(t)
		for _, m := range ms {
			if err := m.use(t, tok); err != nil {
				t.Fatalf("round %d: the fresh token on %s: %v", round, m.s.cfg.Name, err)
			}
		}
		if _, err := via.a.Disconnect(ctxT(t), &triadv1.DisconnectRequest{Header: hdr(tok)}); err != nil {
			t.Fatalf("disconnect: %v", err)
		}
		wantUnauthenticated(t, "read on the member that served the disconnect", via.use(t, tok), "unknown or closed session")
		for _, m := range ms {
			wantUnauthenticated(t, "read on "+m.s.cfg.Name, m.use(t, tok), "unknown or closed session")
			_, err := m.a.RulesSet(ctxT(t), &triadv1.RulesSetRequest{Header: hdr(tok), Text: "EXCLUDE cad USER eve\n"})
			wantUnauthenticated(t, "write on "+m.s.cfg.Name, err, "unknown or closed session")
		}
	}
	if r := ms[0].s.fsm.Rules(); r != nil && len(r.GetRules()) != 0 {
		t.Fatalf("a closed session's write went through: %v", r)
	}

	// Displacement by a local tool through another member.
	tok := order[1].connectFull(t)
	conn, err := grpc.NewClient("unix://"+AdminSocket(order[2].s.cfg.DataDir), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := triadv1.NewAdminClient(conn).Connect(ctxT(t), &triadv1.ConnectRequest{Header: hdr(""), Mode: admin.ModeFull}); err != nil {
		t.Fatalf("local connect: %v", err)
	}
	for _, m := range order {
		wantUnauthenticated(t, "displaced token on "+m.s.cfg.Name, m.use(t, tok), fsm.ReasonDisplaced)
	}
}

// TestFormationRefusedOnTrustMismatch: members whose --trust files differ
// cannot form a cluster; the refusal names the member, and every member
// stays unconfigured. A member asked to bootstrap with keys it does not
// trust refuses too.
func TestFormationRefusedOnTrustMismatch(t *testing.T) {
	v1, v2 := newVendor(t, 1), newVendor(t, 2)
	ms := startMembers(t, []string{v1.file}, []string{v1.file}, []string{v1.file, v2.file})
	err := form(t, ms)
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), ms[2].s.Addr()+" (m2) trusts other vendor keys") ||
		!strings.Contains(st.Message(), license.KeyID(v2.pub)) {
		t.Fatalf("formation with differing keys: %v %q", st.Code(), st.Message())
	}
	for _, m := range ms {
		if m.s.mode() != ModeUnconfigured {
			t.Fatalf("member %s is %s after a refused formation", m.s.cfg.Name, m.s.mode())
		}
	}
	fc := &fsmpb.FormCluster{Mode: ModeStandalone, Members: []*fsmpb.Member{{Name: "m2", ComputerId: ms[2].s.computerID, GrpcAddress: ms[2].s.Addr(), RaftAddress: "127.0.0.1:1"}},
		VendorTrust: &fsmpb.VendorTrust{Keys: [][]byte{v1.pub}}}
	if err := ms[2].s.bootstrap(fc); err == nil || !strings.Contains(err.Error(), "this member (m2) trusts") {
		t.Fatalf("bootstrap with other keys: %v", err)
	}
	if ms[2].s.mode() != ModeUnconfigured {
		t.Fatal("the refused bootstrap configured the member")
	}
}

// signed is a license for the members' cluster signed by v.
func signed(t *testing.T, v vendor, serial string, ms []*secMember) []byte {
	t.Helper()
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.s.computerID)
	}
	now := time.Now()
	file, err := license.Sign(license.Body{Serial: serial, IssuedTo: "ACME", IssuedAt: now.Add(-time.Hour), ValidAfter: now.Add(-time.Hour),
		ValidUntil: now.Add(24 * time.Hour), Binding: license.Binding{Mode: license.ModeFailover, ComputerIDs: ids},
		Features: []license.Feature{{Name: "cad", Version: 1, Count: 1}}}, v.priv)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// TestVendorTrustIsReplicated: the keys agreed at formation are the
// cluster's; a license of another vendor is refused until a full session
// trusts its key through one member, and is then enrolled through another.
func TestVendorTrustIsReplicated(t *testing.T) {
	v1, v2 := newVendor(t, 1), newVendor(t, 2)
	ms := startMembers(t, []string{v1.file}, []string{v1.file}, []string{v1.file})
	if err := form(t, ms); err != nil {
		t.Fatalf("form: %v", err)
	}
	tok := ms[0].connectFull(t)
	for _, m := range ms {
		r, err := m.a.VendorTrustList(ctxT(t), &triadv1.VendorTrustListRequest{Header: hdr(tok)})
		if err != nil || len(r.Keys) != 1 || r.Keys[0].KeyId != license.KeyID(v1.pub) {
			t.Fatalf("trust on %s: %v %v", m.s.cfg.Name, r, err)
		}
	}
	_, err := ms[1].a.LicenseEnroll(ctxT(t), &triadv1.LicenseEnrollRequest{Header: hdr(tok), LicenseFile: signed(t, v2, "V2-1", ms)})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("enroll another vendor's license: %v", err)
	}
	keyFile, _ := os.ReadFile(v2.file)
	if _, err := ms[1].a.VendorTrustAdd(ctxT(t), &triadv1.VendorTrustAddRequest{Header: hdr(tok), PublicKeyFile: keyFile}); err != nil {
		t.Fatalf("trust add: %v", err)
	}
	if _, err := ms[2].a.LicenseEnroll(ctxT(t), &triadv1.LicenseEnrollRequest{Header: hdr(tok), LicenseFile: signed(t, v2, "V2-1", ms)}); err != nil {
		t.Fatalf("enroll after trust add: %v", err)
	}
	r, err := ms[2].a.VendorTrustRemove(ctxT(t), &triadv1.VendorTrustRemoveRequest{Header: hdr(tok), KeyId: license.KeyID(v2.pub)})
	if err != nil || len(r.Keys) != 1 || !strings.Contains(r.Message, "stay enrolled") {
		t.Fatalf("trust remove: %v %v", r, err)
	}
	_, err = ms[0].a.LicenseEnroll(ctxT(t), &triadv1.LicenseEnrollRequest{Header: hdr(tok), LicenseFile: signed(t, v2, "V2-2", ms)})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("enroll after trust remove: %v", err)
	}
}

// TestLegacyFormationAdoptsLeaderTrust: a cluster whose formation record
// predates replicated trust (no keys in it, as an older build wrote) gets
// the first leader's --trust keys recorded once, and licenses verify.
func TestLegacyFormationAdoptsLeaderTrust(t *testing.T) {
	v := newVendor(t, 1)
	ms := startMembers(t, []string{v.file}, []string{v.file}, []string{v.file})
	fc := &fsmpb.FormCluster{Mode: ModeFailover}
	for _, m := range ms {
		info := m.s.info()
		fc.Members = append(fc.Members, &fsmpb.Member{Name: info.GetName(), GrpcAddress: info.GetGrpcAddress(),
			RaftAddress: info.GetRaftAddress(), ComputerId: info.GetComputerId()})
	}
	for _, m := range ms {
		if err := m.s.bootstrap(fc); err != nil {
			t.Fatalf("bootstrap %s: %v", m.s.cfg.Name, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range ms {
		for {
			if keys, recorded := m.s.fsm.VendorTrust(); recorded {
				if len(keys) != 1 || !bytes.Equal(keys[0], v.pub) {
					t.Fatalf("%s adopted %x", m.s.cfg.Name, keys)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no vendor trust adopted", m.s.cfg.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	tok := ms[1].connectFull(t)
	if _, err := ms[1].a.LicenseEnroll(ctxT(t), &triadv1.LicenseEnrollRequest{Header: hdr(tok), LicenseFile: signed(t, v, "L1", ms)}); err != nil {
		t.Fatalf("enroll after adoption: %v", err)
	}
}

// TestForgedCommandsRefusedByEveryMember plays a member that proposes
// commands of its own making (what Peer.ForwardCommand lets a member do):
// licenses not signed by a trusted key or with altered claims, and admin
// writes under no, a restricted or a closed session. Every one is refused
// by the state machine, and no member's state changes.
func TestForgedCommandsRefusedByEveryMember(t *testing.T) {
	v, rogue := newVendor(t, 1), newVendor(t, 3)
	ms := startMembers(t, []string{v.file}, []string{v.file}, []string{v.file})
	if err := form(t, ms); err != nil {
		t.Fatalf("form: %v", err)
	}
	order := leaderAndFollowers(t, ms)
	attacker := order[1]
	full := admin.TokenID(order[2].connectFull(t))
	r, err := order[2].a.Connect(ctxT(t), &triadv1.ConnectRequest{Header: hdr(""), Mode: admin.ModeRestricted})
	if err != nil {
		t.Fatal(err)
	}
	restricted := admin.TokenID(r.SessionToken)
	r, err = order[0].a.Connect(ctxT(t), &triadv1.ConnectRequest{Header: hdr(""), Mode: admin.ModeRestricted})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := order[0].a.Disconnect(ctxT(t), &triadv1.DisconnectRequest{Header: hdr(r.SessionToken)}); err != nil {
		t.Fatal(err)
	}
	closed := admin.TokenID(r.SessionToken)
	parse := func(file []byte) *fsmpb.License {
		f, err := license.Parse(file)
		if err != nil {
			t.Fatal(err)
		}
		return fsm.LicenseFromFile(f, file)
	}
	genuine := parse(signed(t, v, "G1", ms))
	altered := parse(signed(t, v, "G2", ms))
	altered.Features[0].Count = 1000
	enroll := func(l *fsmpb.License, session string) *fsmpb.Command {
		return &fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{License: l, SessionId: session}}}
	}
	rules := &fsmpb.AccessRules{Text: "EXCLUDE cad USER eve\n", Rules: []*fsmpb.AccessRule{{Name: "x", Kind: "exclude", Feature: "cad", Subject: "user", Value: "eve"}}}
	cases := []struct {
		name string
		cmd  *fsmpb.Command
		code fsmpb.Code
	}{
		{"license of an untrusted vendor", enroll(parse(signed(t, rogue, "R1", ms)), full), fsmpb.Code_SIGNATURE_INVALID},
		{"genuine license, more seats claimed", enroll(altered, full), fsmpb.Code_INVALID_ARGUMENT},
		{"genuine license, no session", enroll(genuine, ""), fsmpb.Code_SESSION_REFUSED},
		{"genuine license, restricted session", enroll(genuine, restricted), fsmpb.Code_PERMISSION_DENIED},
		{"remove, closed session", &fsmpb.Command{Cmd: &fsmpb.Command_RemoveLicense{RemoveLicense: &fsmpb.RemoveLicense{Serial: "G1", SessionId: closed}}}, fsmpb.Code_SESSION_REFUSED},
		{"rules, made-up session", &fsmpb.Command{Cmd: &fsmpb.Command_SetRules{SetRules: &fsmpb.SetRules{Rules: rules, SessionId: "made-up"}}}, fsmpb.Code_SESSION_REFUSED},
		{"trust a rogue key, no session", &fsmpb.Command{Cmd: &fsmpb.Command_AddVendorKey{AddVendorKey: &fsmpb.AddVendorKey{Key: rogue.pub}}}, fsmpb.Code_SESSION_REFUSED},
	}
	for _, c := range cases {
		res, err := attacker.s.applyCommand(ctxT(t), c.cmd, false)
		if err != nil || res.GetCode() != c.code {
			t.Errorf("%s: %v %v, want %v", c.name, res, err, c.code)
		}
	}
	for _, m := range ms {
		if err := m.s.readIndex(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		keys, _ := m.s.fsm.VendorTrust()
		if len(m.s.fsm.Licenses()) != 0 || len(m.s.fsm.Rules().GetRules()) != 0 || len(keys) != 1 {
			t.Fatalf("%s: forged commands changed the state: %d licenses, rules %v, %d keys", m.s.cfg.Name, len(m.s.fsm.Licenses()), m.s.fsm.Rules(), len(keys))
		}
	}
	// The genuine file under the live full session goes through: the
	// refusals above were the checks, not a broken path.
	if res, err := attacker.s.applyCommand(ctxT(t), enroll(genuine, full), false); err != nil || res.GetCode() != fsmpb.Code_OK {
		t.Fatalf("genuine enrollment: %v %v", res, err)
	}
}
