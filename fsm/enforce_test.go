package fsm

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
)

// TestEveryCommandIsClassified: every Command field has a kind, and the
// admin ones are exactly those whose session the gate checks. A new
// command fails here until someone decides who may issue it.
func TestEveryCommandIsClassified(t *testing.T) {
	oneof := (&fsmpb.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("cmd")
	fields := oneof.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		kind, ok := commandKinds[string(fd.Name())]
		if !ok {
			t.Errorf("command %s has no kind in commandKinds", fd.Name())
			continue
		}
		cmd := &fsmpb.Command{}
		m := cmd.ProtoReflect()
		m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
		if _, admin := adminSessionOf(cmd); admin != (kind == kindAdmin) {
			t.Errorf("command %s is %s, but the session gate says admin=%v", fd.Name(), kind, admin)
		}
	}
	if len(commandKinds) != fields.Len() {
		t.Errorf("commandKinds has %d entries for %d commands", len(commandKinds), fields.Len())
	}
}

// adminWrites builds one command of each admin write (and the force-release
// op) with the given session; each one changes the state when the session
// is a live full one (checked by the "live full" case).
func adminWrites(t *testing.T, leaseID uint64) map[string]func(session string) *fsmpb.Command {
	policy := PolicyRestricted
	rules, err := license.ParseRules([]byte("EXCLUDE cad USER mallory\n"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]func(string) *fsmpb.Command{
		"enroll": func(s string) *fsmpb.Command {
			c := enrollCmd(lic("L2", t0-day, t0+365*day, feat("sim", 1, 1)))
			c.GetEnrollLicense().SessionId = s
			return c
		},
		"remove license": func(s string) *fsmpb.Command {
			c := removeCmd("L1")
			c.GetRemoveLicense().SessionId = s
			return c
		},
		"set rules": func(s string) *fsmpb.Command {
			return &fsmpb.Command{Cmd: &fsmpb.Command_SetRules{SetRules: &fsmpb.SetRules{Rules: rules, SessionId: s}}}
		},
		"set passwords": func(s string) *fsmpb.Command { return passwordsCmd(s, []byte("hash"), nil, 0) },
		"set settings": func(s string) *fsmpb.Command {
			return settingsCmd(s, &fsmpb.AdminSettings{RemotePolicy: &policy})
		},
		"recycle named user": func(s string) *fsmpb.Command {
			return &fsmpb.Command{Cmd: &fsmpb.Command_RecycleNamedUser{RecycleNamedUser: &fsmpb.RecycleNamedUser{User: "bob", Feature: "named", SessionId: s}}}
		},
		"trust add": func(s string) *fsmpb.Command {
			return &fsmpb.Command{Cmd: &fsmpb.Command_AddVendorKey{AddVendorKey: &fsmpb.AddVendorKey{Key: otherPub, SessionId: s}}}
		},
		"trust remove": func(s string) *fsmpb.Command {
			return &fsmpb.Command{Cmd: &fsmpb.Command_RemoveVendorKey{RemoveVendorKey: &fsmpb.RemoveVendorKey{Key: vendorPub, SessionId: s}}}
		},
		"force release": func(s string) *fsmpb.Command {
			return batchCmd(&fsmpb.Op{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{LeaseId: leaseID, SessionId: s}}})
		},
		"set trace": func(s string) *fsmpb.Command {
			return &fsmpb.Command{Cmd: &fsmpb.Command_SetTrace{SetTrace: &fsmpb.SetTrace{On: true, Feature: "cad", SessionId: s}}}
		},
	}
}

// resultOf returns the one OpResult of a command (or of a batch of one op).
func resultOf(t *testing.T, res any) *fsmpb.OpResult {
	t.Helper()
	switch r := res.(type) {
	case *fsmpb.OpResult:
		return r
	case *fsmpb.BatchResult:
		if len(r.Results) != 1 {
			t.Fatalf("batch of one op gave %d results", len(r.Results))
		}
		return r.Results[0]
	}
	t.Fatalf("result %T", res)
	return nil
}

// withoutSessions is the state without the session records (and without
// the applied index and last now, which every entry moves): what an admin
// write changes besides marking its session used.
func withoutSessions(t *testing.T, f *FSM) []byte {
	t.Helper()
	return stateBytes(t, f, false)
}

// withSessions is the state with the session records.
func withSessions(t *testing.T, f *FSM) []byte {
	t.Helper()
	return stateBytes(t, f, true)
}

func stateBytes(t *testing.T, f *FSM, sessions bool) []byte {
	t.Helper()
	snap := &fsmpb.Snapshot{}
	if err := proto.Unmarshal(f.MarshalSnapshot(), snap); err != nil {
		t.Fatal(err)
	}
	if !sessions {
		snap.AdminSessions = nil
	}
	snap.AppliedIndex, snap.LastNowMs = 0, 0
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAdminWritesNeedALiveFullSession attacks Apply directly: every admin
// write made with no session, an unknown, closed, displaced, idle-expired
// or restricted one is refused and leaves the state as it was; with a live
// full session the same command goes through.
func TestAdminWritesNeedALiveFullSession(t *testing.T) {
	idle := DefaultSessionIdleTimeout.Milliseconds()
	// setup: a cluster with a license, a lease, a named seat; then the
	// session scenario, which returns the session id to use and when.
	sessions := []struct {
		name  string
		setup func(h *harness) (id string, at int64)
		code  fsmpb.Code
		msg   string
	}{
		{"no session", func(h *harness) (string, int64) { return "", t0 + minute }, fsmpb.Code_SESSION_REFUSED, "carries no admin session"},
		{"unknown session", func(h *harness) (string, int64) { return "made-up", t0 + minute }, fsmpb.Code_SESSION_REFUSED, "unknown or closed"},
		{"closed session", func(h *harness) (string, int64) {
			h.res(t0+minute, openCmd("c1", ModeFull, false, 0))
			h.res(t0+minute, closeCmd("c1"))
			return "c1", t0 + minute
		}, fsmpb.Code_SESSION_REFUSED, "unknown or closed"},
		{"displaced session", func(h *harness) (string, int64) {
			h.res(t0+minute, openCmd("d1", ModeFull, false, 0))
			h.res(t0+minute, openCmd("local", ModeFull, true, 0))
			return "d1", t0 + minute
		}, fsmpb.Code_SESSION_REFUSED, ReasonDisplaced},
		{"idle-expired session", func(h *harness) (string, int64) {
			h.res(t0+minute, openCmd("i1", ModeFull, false, 0))
			return "i1", t0 + minute + idle + 1
		}, fsmpb.Code_SESSION_REFUSED, "idle for more than 30m0s"},
		{"restricted session", func(h *harness) (string, int64) {
			h.res(t0+minute, openCmd("r1", ModeRestricted, false, 0))
			return "r1", t0 + minute
		}, fsmpb.Code_PERMISSION_DENIED, "needs a full-mode session"},
		{"live full session", func(h *harness) (string, int64) {
			h.res(t0+minute, openCmd("f1", ModeFull, false, 0))
			return "f1", t0 + 2*minute
		}, fsmpb.Code_OK, ""},
	}
	setup := func(t *testing.T) (*harness, uint64) {
		h := formed(t)
		named := feat("named", 1, 2)
		named.Model = modelNamedUser
		h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 1, 2), named))
		l := h.mustGrant(t0, "req-1", "cad", 1, 1)
		g := grantOp("req-2", "named", 1, 1)
		g.GetGrant().User = "bob"
		if r := h.op(t0, g); r.Code != fsmpb.Code_OK {
			t.Fatalf("named grant: %v", r)
		}
		h.res(t0, closeCmd(h.session)) // only the scenario's sessions from here on
		h.noAutoSession = true
		return h, l.Id
	}
	for _, sc := range sessions {
		for name, build := range adminWrites(t, 1) {
			t.Run(sc.name+"/"+name, func(t *testing.T) {
				h, leaseID := setup(t)
				if leaseID != 1 {
					t.Fatalf("lease id %d", leaseID)
				}
				id, at := sc.setup(h)
				before, whole := withoutSessions(t, h.f), withSessions(t, h.f)
				r := resultOf(t, h.apply(at, build(id)))
				if sc.code == fsmpb.Code_OK {
					// Recycling a seat used a minute ago is refused by
					// the business rule, after the session check.
					if r.Code == fsmpb.Code_SESSION_REFUSED || r.Code == fsmpb.Code_PERMISSION_DENIED ||
						(r.Code != fsmpb.Code_OK && name != "recycle named user") {
						t.Fatalf("with a live full session: %v %q", r.Code, r.Message)
					}
					if name != "recycle named user" && bytes.Equal(withoutSessions(t, h.f), before) {
						t.Fatalf("with a live full session the command changed nothing: the refusals below prove nothing")
					}
					return
				}
				if r.Code != sc.code || !strings.Contains(r.Message, sc.msg) {
					t.Fatalf("got %v %q, want %v containing %q", r.Code, r.Message, sc.code, sc.msg)
				}
				if !bytes.Equal(withoutSessions(t, h.f), before) {
					t.Fatalf("a refused admin write changed the state")
				}
				// Only an idle session's own record may change (it ends).
				if sc.name != "idle-expired session" && !bytes.Equal(withSessions(t, h.f), whole) {
					t.Fatalf("a refused admin write changed a session record")
				}
			})
		}
	}
}

// TestLicenseVerifiedInApply attacks enrollment past the edge: commands a
// compromised member could propose (Peer.ForwardCommand) with an unsigned
// file, a file signed by an untrusted key, a signed file whose body was
// edited, or a genuine file with the command's fields changed, are all
// refused and enroll nothing.
func TestLicenseVerifiedInApply(t *testing.T) {
	genuine := func() *fsmpb.License {
		return signLic(lic("L1", t0-day, t0+30*day, feat("cad", 5, 2)), vendorPriv)
	}
	tamper := func(f func(l *fsmpb.License)) *fsmpb.License {
		l := genuine()
		f(l)
		return l
	}
	// A body edited after signing: the signature no longer covers it.
	editedBody := func() *fsmpb.License {
		l := genuine()
		file, err := license.Parse(l.Raw)
		if err != nil {
			t.Fatal(err)
		}
		body := strings.Replace(string(file.BodyBytes), `"count":2`, `"count":200`, 1)
		raw := strings.Replace(string(l.Raw), base64.StdEncoding.EncodeToString(file.BodyBytes), base64.StdEncoding.EncodeToString([]byte(body)), 1)
		out := proto.Clone(l).(*fsmpb.License)
		out.Raw = []byte(raw)
		out.Features[0].Count = 200
		return out
	}
	cases := []struct {
		name string
		lic  *fsmpb.License
		code fsmpb.Code
		msg  string
	}{
		{"unsigned", tamper(func(l *fsmpb.License) { l.Raw = []byte("serial: L1\ncad 5 x2\n") }), fsmpb.Code_SIGNATURE_INVALID, "not a signed license file"},
		{"no file", tamper(func(l *fsmpb.License) { l.Raw = nil }), fsmpb.Code_SIGNATURE_INVALID, "not a signed license file"},
		{"signed by an untrusted key", signLic(lic("L1", t0-day, t0+30*day, feat("cad", 5, 2)), otherPriv), fsmpb.Code_SIGNATURE_INVALID, "does not verify against any trusted vendor key"},
		{"body edited after signing", editedBody(), fsmpb.Code_SIGNATURE_INVALID, "does not verify"},
		{"more seats claimed", tamper(func(l *fsmpb.License) { l.Features[0].Count = 200 }), fsmpb.Code_INVALID_ARGUMENT, "differ from the signed file it carries (features)"},
		{"feature added", tamper(func(l *fsmpb.License) { l.Features = append(l.Features, feat("sim", 1, 9)) }), fsmpb.Code_INVALID_ARGUMENT, "(features)"},
		{"validity stretched", tamper(func(l *fsmpb.License) { l.ValidUntilMs += 365 * day }), fsmpb.Code_INVALID_ARGUMENT, "(valid_until_ms)"},
		{"serial changed", tamper(func(l *fsmpb.License) { l.Serial = "L9" }), fsmpb.Code_INVALID_ARGUMENT, "(serial)"},
		{"supersedes added", tamper(func(l *fsmpb.License) { l.Supersedes = []string{"OTHER"} }), fsmpb.Code_INVALID_ARGUMENT, "(supersedes)"},
		{"borrowing allowed", tamper(func(l *fsmpb.License) { l.Features[0].MaxBorrowSeconds = 86400 }), fsmpb.Code_INVALID_ARGUMENT, "(features)"},
		{"another cluster's file", signLic(func() *fsmpb.License {
			l := lic("L1", t0-day, t0+30*day, feat("cad", 5, 2))
			l.ComputerIds = []string{"x", "y", "z"}
			return l
		}(), vendorPriv), fsmpb.Code_BINDING_MISMATCH, "bound to"},
		{"genuine", genuine(), fsmpb.Code_OK, "enrolled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := formed(t)
			before := withoutSessions(t, h.f)
			r := h.res(t0, rawEnrollCmd(c.lic))
			if r.Code != c.code || !strings.Contains(r.Message, c.msg) {
				t.Fatalf("got %v %q, want %v containing %q", r.Code, r.Message, c.code, c.msg)
			}
			if c.code != fsmpb.Code_OK {
				if !bytes.Equal(withoutSessions(t, h.f), before) || len(h.f.Licenses()) != 0 || h.f.Activated() {
					t.Fatalf("a refused enrollment changed the state")
				}
			}
		})
	}
}

func trustCmd(add bool, key []byte) *fsmpb.Command {
	if add {
		return &fsmpb.Command{Cmd: &fsmpb.Command_AddVendorKey{AddVendorKey: &fsmpb.AddVendorKey{Key: key}}}
	}
	return &fsmpb.Command{Cmd: &fsmpb.Command_RemoveVendorKey{RemoveVendorKey: &fsmpb.RemoveVendorKey{Key: key}}}
}

func trustedIDs(f *FSM) string {
	keys, recorded := f.VendorTrust()
	var ids []string
	for _, k := range keys {
		ids = append(ids, license.KeyID(k))
	}
	return fmt.Sprintf("%v %s", recorded, strings.Join(ids, ","))
}

// TestVendorTrustChanges: adding a key lets its licenses enroll; removing
// one stops new enrollments but keeps what is enrolled; bad keys, the cap,
// duplicates and unknown keys get clear answers.
func TestVendorTrustChanges(t *testing.T) {
	h := formed(t)
	fromOther := lic("O1", t0-day, t0+30*day, feat("cad", 1, 1))
	wantCode(t, "other vendor before trust", h.res(t0, rawEnrollCmd(signLic(fromOther, otherPriv))), fsmpb.Code_SIGNATURE_INVALID, "does not verify")
	wantCode(t, "add", h.res(t0, trustCmd(true, otherPub)), fsmpb.Code_OK, "vendor key "+license.KeyID(otherPub)+" trusted")
	wantCode(t, "add again", h.res(t0, trustCmd(true, otherPub)), fsmpb.Code_OK, "already trusted")
	wantCode(t, "other vendor after trust", h.res(t0, rawEnrollCmd(signLic(fromOther, otherPriv))), fsmpb.Code_OK, "enrolled")
	wantCode(t, "short key", h.res(t0, trustCmd(true, []byte("short"))), fsmpb.Code_INVALID_ARGUMENT, "32 bytes, got 5")
	wantCode(t, "remove", h.res(t0, trustCmd(false, otherPub)), fsmpb.Code_OK, "licenses it signed stay enrolled")
	wantCode(t, "remove again", h.res(t0, trustCmd(false, otherPub)), fsmpb.Code_NOT_FOUND, "is not trusted")
	if len(h.f.Licenses()) != 1 {
		t.Fatalf("removing a key removed licenses: %v", h.f.Licenses())
	}
	wantCode(t, "other vendor after removal", h.res(t0, rawEnrollCmd(signLic(lic("O2", t0-day, t0+30*day, feat("cad", 1, 1)), otherPriv))),
		fsmpb.Code_SIGNATURE_INVALID, "does not verify")
	wantCode(t, "remove the last", h.res(t0, trustCmd(false, vendorPub)), fsmpb.Code_OK, "no vendor key is trusted now")
	wantCode(t, "enroll with no trust", h.res(t0, enrollCmd(lic("V1", t0-day, t0+30*day, feat("cad", 1, 1)))), fsmpb.Code_SIGNATURE_INVALID, "vendor trust add")
	if got := trustedIDs(h.f); got != "true " {
		t.Fatalf("trust after removing every key: %q", got)
	}
	for i := range MaxVendorKeys {
		k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 100)}, 32)).Public().(ed25519.PublicKey)
		wantCode(t, "fill", h.res(t0, trustCmd(true, k)), fsmpb.Code_OK, "trusted")
	}
	wantCode(t, "beyond the cap", h.res(t0, trustCmd(true, vendorPub)), fsmpb.Code_INVALID_ARGUMENT, "remove one first")
	// Same commands, same keys, same order on every member.
	if g := roundTrip(t, h.f); trustedIDs(g) != trustedIDs(h.f) {
		t.Fatalf("trust changed across a snapshot: %s vs %s", trustedIDs(g), trustedIDs(h.f))
	}
}

// TestFormationRecordsTrust: formation records the keys (sorted, without
// duplicates), refuses a malformed one, and a formation without any (an
// older build's) leaves trust unrecorded until one AdoptVendorTrust.
func TestFormationRecordsTrust(t *testing.T) {
	form := func(trust *fsmpb.VendorTrust) (*harness, *fsmpb.OpResult) {
		h := newHarness(t)
		cmd := formCmd(modeFailover, clusterIDs...)
		cmd.GetFormCluster().VendorTrust = trust
		return h, h.res(t0, cmd)
	}
	h, r := form(&fsmpb.VendorTrust{Keys: [][]byte{vendorPub, otherPub, vendorPub}})
	wantCode(t, "two keys, one twice", r, fsmpb.Code_OK, "formed")
	keys, recorded := h.f.VendorTrust()
	if !recorded || len(keys) != 2 || bytes.Compare(keys[0], keys[1]) >= 0 {
		t.Fatalf("recorded trust %x", keys)
	}
	if h.f.Cluster().VendorTrust != nil {
		t.Fatalf("the cluster record repeats the trust")
	}
	if g := roundTrip(t, h.f); trustedIDs(g) != trustedIDs(h.f) {
		t.Fatalf("trust lost in a snapshot")
	}

	h, r = form(&fsmpb.VendorTrust{Keys: [][]byte{[]byte("not a key")}})
	wantCode(t, "malformed key", r, fsmpb.Code_INVALID_ARGUMENT, "vendor key 1 is 9 bytes")
	if h.f.Cluster() != nil {
		t.Fatalf("formed with a malformed key")
	}

	h, r = form(&fsmpb.VendorTrust{})
	wantCode(t, "no keys configured", r, fsmpb.Code_OK, "formed")
	wantCode(t, "enroll", h.res(t0, enrollCmd(lic("L1", t0-day, t0+day, feat("cad", 1, 1)))), fsmpb.Code_SIGNATURE_INVALID, "trusts no vendor key")
	adopt := &fsmpb.Command{Cmd: &fsmpb.Command_AdoptVendorTrust{AdoptVendorTrust: &fsmpb.AdoptVendorTrust{Trust: &fsmpb.VendorTrust{Keys: [][]byte{vendorPub}}}}}
	wantCode(t, "adopt over recorded empty trust", h.res(t0, adopt), fsmpb.Code_ALREADY_EXISTS, "already recorded")

	h, r = form(nil)
	wantCode(t, "older build's formation", r, fsmpb.Code_OK, "formed")
	if got := trustedIDs(h.f); got != "false " {
		t.Fatalf("trust of an older formation: %q", got)
	}
	wantCode(t, "adopt", h.res(t0, adopt), fsmpb.Code_OK, "1 key(s)")
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 1, 1)))
	wantCode(t, "unsigned after adoption", h.res(t0, rawEnrollCmd(lic("L2", t0-day, t0+day, feat("cad", 1, 1)))), fsmpb.Code_SIGNATURE_INVALID, "")

	wantCode(t, "adopt before formation", newHarness(t).res(t0, adopt), fsmpb.Code_NOT_FORMED, "")
}

// TestSessionCap: at most MaxSessions live sessions; the refusal says what
// to do; a tool on a member's host still gets in (localReserve more);
// closed and idle sessions do not count.
func TestSessionCap(t *testing.T) {
	h := formed(t)
	for i := range MaxSessions {
		wantCode(t, "open", h.res(t0, openCmd(fmt.Sprint("r", i), ModeRestricted, false, 0)), fsmpb.Code_OK, "opened")
	}
	wantCode(t, "one too many", h.res(t0, openCmd("extra", ModeRestricted, false, 0)), fsmpb.Code_TOO_MANY_SESSIONS, "triadctl disconnect")
	if _, ok := h.f.Session("extra"); ok {
		t.Fatal("a refused session was recorded")
	}
	for i := range localReserve {
		wantCode(t, "local", h.res(t0, openCmd(fmt.Sprint("local", i), ModeRestricted, true, 0)), fsmpb.Code_OK, "opened")
	}
	wantCode(t, "local beyond the reserve", h.res(t0, openCmd("local-extra", ModeRestricted, true, 0)), fsmpb.Code_TOO_MANY_SESSIONS, "at most 64 plus 8")
	// Local sessions count too: a remote tool gets in once fewer than
	// MaxSessions are live.
	h.res(t0, closeCmd("r0"))
	wantCode(t, "remote while locals fill the reserve", h.res(t0, openCmd("extra", ModeRestricted, false, 0)), fsmpb.Code_TOO_MANY_SESSIONS, "")
	for i := range localReserve {
		h.res(t0, closeCmd(fmt.Sprint("local", i)))
	}
	wantCode(t, "after closing", h.res(t0, openCmd("extra", ModeRestricted, false, 0)), fsmpb.Code_OK, "opened")
	idle := DefaultSessionIdleTimeout.Milliseconds()
	wantCode(t, "once all are idle", h.res(t0+idle+1, openCmd("fresh", ModeFull, false, 0)), fsmpb.Code_OK, "opened")
	if n := len(h.f.Sessions()); n != 1 {
		t.Fatalf("%d live sessions after the idle ones ended", n)
	}
	if g := roundTrip(t, h.f); len(g.Sessions()) != 1 {
		t.Fatal("sessions changed across a snapshot")
	}
}

// TestOlderLogReplaysAsWritten: a member that restarts after the upgrade
// replays entries older builds wrote (no session on admin writes, licenses
// verified only at the edge, more than 64 sessions): they apply as they
// did, so no member's state changes under it. The entry that records the
// vendor trust switches enforcement on; the same entries are refused after
// it. Password and settings changes were always checked.
func TestOlderLogReplaysAsWritten(t *testing.T) {
	h := newHarness(t)
	h.noAutoSession = true
	legacyForm := formCmd(modeFailover, clusterIDs...)
	legacyForm.GetFormCluster().VendorTrust = nil
	h.res(t0, legacyForm)
	rules := &fsmpb.Command{Cmd: &fsmpb.Command_SetRules{SetRules: &fsmpb.SetRules{Rules: &fsmpb.AccessRules{
		Rules: []*fsmpb.AccessRule{{Name: "r", Kind: "exclude", Feature: "cad", Subject: "user", Value: "eve"}}}}}}
	older := []struct {
		name string
		cmd  func() *fsmpb.Command
	}{
		{"enroll, no session, file not checked", func() *fsmpb.Command {
			return rawEnrollCmd(lic(fmt.Sprint("L", h.index), t0-day, t0+day, feat("cad", 1, 1)))
		}},
		{"remove, no session", func() *fsmpb.Command { return removeCmd(fmt.Sprint("L", h.index-1)) }},
		{"rules, no session", func() *fsmpb.Command { return proto.Clone(rules).(*fsmpb.Command) }},
		{"recycle, no session", func() *fsmpb.Command {
			return &fsmpb.Command{Cmd: &fsmpb.Command_RecycleNamedUser{RecycleNamedUser: &fsmpb.RecycleNamedUser{User: "u", Feature: "cad"}}}
		}},
	}
	for _, c := range older {
		if r := resultOf(t, h.apply(t0, c.cmd())); r.Code == fsmpb.Code_SESSION_REFUSED || r.Code == fsmpb.Code_SIGNATURE_INVALID {
			t.Fatalf("an older build's %s was refused on replay: %v %s", c.name, r.Code, r.Message)
		}
	}
	for i := range MaxSessions + 1 {
		wantCode(t, "older build's sessions", h.res(t0, openCmd(fmt.Sprint("s", i), ModeRestricted, false, 0)), fsmpb.Code_OK, "opened")
	}
	wantCode(t, "settings were always checked", h.res(t0, settingsCmd("", &fsmpb.AdminSettings{})), fsmpb.Code_SESSION_REFUSED, "")

	adopt := &fsmpb.Command{Cmd: &fsmpb.Command_AdoptVendorTrust{AdoptVendorTrust: &fsmpb.AdoptVendorTrust{Trust: &fsmpb.VendorTrust{Keys: [][]byte{vendorPub}}}}}
	wantCode(t, "adopt", h.res(t0, adopt), fsmpb.Code_OK, "")
	for _, c := range older {
		if r := resultOf(t, h.apply(t0, c.cmd())); r.Code != fsmpb.Code_SESSION_REFUSED {
			t.Fatalf("%s after adoption: %v %s", c.name, r.Code, r.Message)
		}
	}
	wantCode(t, "the session cap after adoption", h.res(t0, openCmd("one-more", ModeRestricted, false, 0)), fsmpb.Code_TOO_MANY_SESSIONS, "")
}
