package fsm

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
)

// t0 is an arbitrary fixed wall clock (2023-11-14T22:13:20Z).
const (
	t0     = int64(1_700_000_000_000)
	second = int64(1000)
	minute = 60 * second
	hour   = 60 * minute
	day    = 24 * hour
)

// clusterIDs are the computer ids of the failover cluster most tests form.
var clusterIDs = []string{"cid-a", "cid-b", "cid-c"}

// vendorKey is the test vendor's key pair, trusted by formCmd clusters;
// otherKey is a vendor key the clusters do not trust.
var (
	vendorPriv = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	vendorPub  = vendorPriv.Public().(ed25519.PublicKey)
	otherPriv  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	otherPub   = otherPriv.Public().(ed25519.PublicKey)
)

// harness feeds commands to one FSM as consecutive raft.Log entries.
// Admin writes built without a session id are stamped with the harness's
// own full session (a local one), opened or reopened when it is not live:
// tests that are not about sessions need not care.
type harness struct {
	t       testing.TB
	f       *FSM
	index   uint64
	session string
	// noAutoSession: send admin writes exactly as built.
	noAutoSession bool
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, f: New()}
}

// apply appends cmd (stamped with now) to the log and applies it.
func (h *harness) apply(now int64, cmd *fsmpb.Command) any {
	if id, admin := adminSessionOf(cmd); admin && id == "" && !h.noAutoSession && h.f.Cluster() != nil {
		setSession(cmd, h.liveSession(now))
	}
	h.index++
	cmd.NowMs = now
	return h.f.Apply(commandLog(h.t, h.index, cmd))
}

// liveSession returns the harness's full session, opening a new local one
// when it is missing, ended or would be idle at now.
func (h *harness) liveSession(now int64) string {
	if sess, ok := h.f.Session(h.session); ok && sess.EndedMs == 0 &&
		now-sess.LastUsedMs <= h.f.Settings().SessionIdleTimeout.Milliseconds() {
		return h.session
	}
	id := fmt.Sprintf("test-admin-%d", h.index+1)
	h.index++
	cmd := openCmd(id, ModeFull, true, h.f.AdminAuth().GetVersion())
	cmd.NowMs = now
	if r := h.f.Apply(commandLog(h.t, h.index, cmd)).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
		h.t.Fatalf("open the test admin session: %v %s", r.Code, r.Message)
	}
	h.session = id
	return id
}

// setSession stamps an admin write with a session id.
func setSession(cmd *fsmpb.Command, id string) {
	switch c := cmd.Cmd.(type) {
	case *fsmpb.Command_EnrollLicense:
		c.EnrollLicense.SessionId = id
	case *fsmpb.Command_RemoveLicense:
		c.RemoveLicense.SessionId = id
	case *fsmpb.Command_SetPasswords:
		c.SetPasswords.SessionId = id
	case *fsmpb.Command_SetSettings:
		c.SetSettings.SessionId = id
	case *fsmpb.Command_RecycleNamedUser:
		c.RecycleNamedUser.SessionId = id
	case *fsmpb.Command_SetRules:
		c.SetRules.SessionId = id
	case *fsmpb.Command_AddVendorKey:
		c.AddVendorKey.SessionId = id
	case *fsmpb.Command_RemoveVendorKey:
		c.RemoveVendorKey.SessionId = id
	case *fsmpb.Command_ReplaceMember:
		c.ReplaceMember.SessionId = id
	case *fsmpb.Command_SetTrace:
		c.SetTrace.SessionId = id
	default:
		panic(fmt.Sprintf("setSession: %T is not an admin write", c))
	}
}

// op applies a batch of one op and returns that op's result.
func (h *harness) op(now int64, op *fsmpb.Op) *fsmpb.OpResult {
	res := h.apply(now, batchCmd(op)).(*fsmpb.BatchResult)
	if len(res.Results) != 1 {
		h.t.Fatalf("batch of one op gave %d results", len(res.Results))
	}
	return res.Results[0]
}

// mustGrant grants and fails the test unless the grant succeeds.
func (h *harness) mustGrant(now int64, req, feature string, version, count uint32) *fsmpb.Lease {
	h.t.Helper()
	r := h.op(now, grantOp(req, feature, version, count))
	if r.Code != fsmpb.Code_OK {
		h.t.Fatalf("grant %s %s v%d x%d: %v %q", req, feature, version, count, r.Code, r.Message)
	}
	return r.Lease
}

func commandLog(t testing.TB, index uint64, cmd *fsmpb.Command) *raft.Log {
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatalf("marshal command: %v", err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// formCmd forms a cluster trusting vendorPub.
func formCmd(mode string, ids ...string) *fsmpb.Command {
	fc := &fsmpb.FormCluster{Mode: mode, VendorTrust: &fsmpb.VendorTrust{Keys: [][]byte{vendorPub}}}
	for i, id := range ids {
		name := string(rune('a' + i))
		fc.Members = append(fc.Members, &fsmpb.Member{
			Name: "member-" + name, GrpcAddress: name + ":4085", RaftAddress: name + ":4086", ComputerId: id,
		})
	}
	return &fsmpb.Command{Cmd: &fsmpb.Command_FormCluster{FormCluster: fc}}
}

// enrollCmd enrolls l as a license file signed by the trusted test vendor:
// the command carries the signed file and the fields it gives (so defaults
// such as the concurrent model are filled in). A license no valid file can
// hold (no serial, no features, ...) is sent as is, with a raw that is not
// a license file.
func enrollCmd(l *fsmpb.License) *fsmpb.Command {
	return rawEnrollCmd(signLic(l, vendorPriv))
}

// rawEnrollCmd enrolls l exactly as given.
func rawEnrollCmd(l *fsmpb.License) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{License: l}}}
}

// signLic returns l as read from a license file signed with priv; l itself
// when no valid license file can hold it.
func signLic(l *fsmpb.License, priv ed25519.PrivateKey) *fsmpb.License {
	if l == nil {
		return nil
	}
	file, err := license.Sign(bodyOf(l), priv)
	if err != nil {
		return l
	}
	f, err := license.Parse(file)
	if err != nil {
		panic(fmt.Sprintf("signLic: a signed file does not parse: %v", err))
	}
	return LicenseFromFile(f, file)
}

// bodyOf is the license body that says what l says.
func bodyOf(l *fsmpb.License) license.Body {
	b := license.Body{
		FormatVersion: license.FormatVersion, Serial: l.Serial, IssuedTo: l.Customer,
		IssuedAt: time.UnixMilli(l.IssuedAtMs), ValidAfter: time.UnixMilli(l.ValidAfterMs), ValidUntil: time.UnixMilli(l.ValidUntilMs),
		Supersedes: l.Supersedes, Binding: license.Binding{Mode: l.BindingMode, ComputerIDs: l.ComputerIds},
	}
	for _, f := range l.Features {
		b.Features = append(b.Features, license.Feature{
			Name: f.Name, Version: f.Version, Count: f.Count, Model: f.Model, GraceSeconds: f.GraceSeconds,
			MaxBorrowSeconds: f.MaxBorrowSeconds, Limit: f.Limit, Overdraft: f.Overdraft, UsageHours: f.UsageHours,
			VersionText: f.VersionText, Components: f.Components,
			LingerSeconds: f.LingerSeconds, MinTimeoutSeconds: f.MinTimeoutSeconds,
		})
	}
	return b
}

func removeCmd(serial string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_RemoveLicense{RemoveLicense: &fsmpb.RemoveLicense{Serial: serial}}}
}

func batchCmd(ops ...*fsmpb.Op) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Ops: ops}}}
}

func expireCmd() *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_ExpireLeases{ExpireLeases: &fsmpb.ExpireLeases{}}}
}

func rebaseCmd() *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_RebaseLeases{RebaseLeases: &fsmpb.RebaseLeases{}}}
}

func grantOp(req, feature string, version, count uint32) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Grant{Grant: &fsmpb.Grant{
		RequestId: req, Feature: feature, Version: version, Count: count,
		User: "alice", Host: "ws1", Pid: 42, ClientId: "client-1", ViaMember: "member-a",
	}}}
}

func grantTTLOp(req, feature string, version uint32, ttl int64) *fsmpb.Op {
	op := grantOp(req, feature, version, 1)
	op.GetGrant().TtlMs = ttl
	return op
}

func renewOp(ids ...uint64) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: ids}}}
}

func releaseOp(ids ...uint64) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: ids}}}
}

func feat(name string, version, count uint32) *fsmpb.Feature {
	return &fsmpb.Feature{Name: name, Version: version, Count: count}
}

// lic returns a failover license bound to clusterIDs, valid from after to
// until.
func lic(serial string, after, until int64, feats ...*fsmpb.Feature) *fsmpb.License {
	return &fsmpb.License{
		Serial: serial, Customer: "ACME", IssuedAtMs: after, ValidAfterMs: after, ValidUntilMs: until,
		BindingMode: modeFailover, ComputerIds: append([]string(nil), clusterIDs...),
		Features: feats, Raw: []byte("raw:" + serial),
	}
}

// formed returns a harness with the failover cluster formed at t0.
func formed(t testing.TB) *harness {
	h := newHarness(t)
	if r := h.apply(t0, formCmd(modeFailover, clusterIDs...)).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
		t.Fatalf("form: %v %s", r.Code, r.Message)
	}
	return h
}

func (h *harness) mustEnroll(now int64, l *fsmpb.License) {
	h.t.Helper()
	if r := h.apply(now, enrollCmd(l)).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
		h.t.Fatalf("enroll %s: %v %s", l.Serial, r.Code, r.Message)
	}
}

// roundTrip snapshots f, restores into a fresh FSM and returns it, checking
// the second snapshot is byte-identical.
func roundTrip(t testing.TB, f *FSM) *FSM {
	t.Helper()
	a := f.MarshalSnapshot()
	g := New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(a))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if b := g.MarshalSnapshot(); !bytes.Equal(a, b) {
		t.Fatalf("snapshot changed across restore:\n%x\n%x", a, b)
	}
	return g
}
