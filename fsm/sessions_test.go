package fsm

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

func openCmd(id, mode string, local bool, authVersion uint64) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Session:     &fsmpb.AdminSession{Id: id, Mode: mode, Origin: "tool " + id, Local: local, Member: "member-a"},
		AuthVersion: authVersion,
	}}}
}

func touchCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_TouchSession{TouchSession: &fsmpb.TouchSession{Id: id}}}
}

func closeCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{Id: id}}}
}

func expireSessionsCmd() *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_ExpireSessions{ExpireSessions: &fsmpb.ExpireSessions{}}}
}

func settingsCmd(session string, st *fsmpb.AdminSettings) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_SetSettings{SetSettings: &fsmpb.SetSettings{SessionId: session, Settings: st}}}
}

func passwordsCmd(session string, full, restricted []byte, v uint64) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_SetPasswords{SetPasswords: &fsmpb.SetPasswords{SessionId: session, FullHash: full, RestrictedHash: restricted, AuthVersion: v}}}
}

func (h *harness) res(now int64, cmd *fsmpb.Command) *fsmpb.OpResult {
	return h.apply(now, cmd).(*fsmpb.OpResult)
}

func wantCode(t *testing.T, what string, r *fsmpb.OpResult, code fsmpb.Code, msgPart string) {
	t.Helper()
	if r.Code != code || !strings.Contains(r.Message, msgPart) {
		t.Fatalf("%s: %v %q, want %v containing %q", what, r.Code, r.Message, code, msgPart)
	}
}

func TestSessionsNeedFormation(t *testing.T) {
	h := newHarness(t)
	wantCode(t, "open before formation", h.res(t0, openCmd("s1", ModeFull, false, 0)), fsmpb.Code_NOT_FORMED, "not formed")
}

func TestOneFullSession(t *testing.T) {
	h := formed(t)
	wantCode(t, "first full", h.res(t0, openCmd("s1", ModeFull, false, 0)), fsmpb.Code_OK, "opened")
	wantCode(t, "second remote full", h.res(t0+90*second, openCmd("s2", ModeFull, false, 0)), fsmpb.Code_ALREADY_EXISTS, "held by tool s1, connected 1m30s ago")
	wantCode(t, "retried open is idempotent", h.res(t0+second, openCmd("s1", ModeFull, false, 0)), fsmpb.Code_OK, "opened")
	wantCode(t, "restricted alongside", h.res(t0+second, openCmd("r1", ModeRestricted, false, 0)), fsmpb.Code_OK, "opened")
	// A local connect displaces the holder, whose next use says why.
	wantCode(t, "local full", h.res(t0+2*minute, openCmd("l1", ModeFull, true, 0)), fsmpb.Code_OK, "tool s1 was disconnected")
	wantCode(t, "displaced touch", h.res(t0+2*minute, touchCmd("s1")), fsmpb.Code_NOT_FOUND, ReasonDisplaced)
	if r := h.res(t0+2*minute, touchCmd("s1")); r.Message != ReasonDisplaced {
		t.Fatalf("displaced message %q, want exactly %q", r.Message, ReasonDisplaced)
	}
	// Even a local holder is displaced by another local tool.
	wantCode(t, "second local", h.res(t0+3*minute, openCmd("l2", ModeFull, true, 0)), fsmpb.Code_OK, "tool l1 was disconnected")
	// Closing frees the lock.
	wantCode(t, "close", h.res(t0+4*minute, closeCmd("l2")), fsmpb.Code_OK, "closed")
	wantCode(t, "full after close", h.res(t0+4*minute, openCmd("s3", ModeFull, false, 0)), fsmpb.Code_OK, "opened")
	wantCode(t, "close unknown", h.res(t0+4*minute, closeCmd("nope")), fsmpb.Code_NOT_FOUND, "unknown")
}

func TestSessionIdleTimeout(t *testing.T) {
	h := formed(t)
	idle := DefaultSessionIdleTimeout.Milliseconds()
	h.res(t0, openCmd("s1", ModeFull, false, 0))
	wantCode(t, "touch in time", h.res(t0+idle, touchCmd("s1")), fsmpb.Code_OK, "used")
	if h.f.HasIdleSessions(t0+2*idle) || !h.f.HasIdleSessions(t0+2*idle+1) {
		t.Fatalf("HasIdleSessions wrong around the timeout")
	}
	wantCode(t, "held until idle", h.res(t0+2*idle, openCmd("s2", ModeFull, false, 0)), fsmpb.Code_ALREADY_EXISTS, "held")
	// Idle: the next full connect finds the holder expired.
	wantCode(t, "free once idle", h.res(t0+2*idle+1, openCmd("s3", ModeFull, false, 0)), fsmpb.Code_OK, "opened")
	wantCode(t, "touch idle", h.res(t0+2*idle+2, touchCmd("s1")), fsmpb.Code_NOT_FOUND, "idle for more than 30m0s")
	// The leader's sweep ends idle sessions; tombstones go after an hour.
	wantCode(t, "sweep", h.res(t0+3*idle+2, expireSessionsCmd()), fsmpb.Code_OK, "1 idle")
	if _, ok := h.f.Session("s3"); !ok {
		t.Fatal("s3 tombstone missing")
	}
	h.res(t0+3*idle+2+tombstoneMs+1, expireSessionsCmd())
	if _, ok := h.f.Session("s3"); ok {
		t.Fatal("s3 tombstone not pruned")
	}
	if h.f.HasIdleSessions(t0 + 10*idle) {
		t.Fatal("nothing left to expire")
	}
}

func TestSettingsAndPasswords(t *testing.T) {
	h := formed(t)
	h.res(t0, openCmd("full", ModeFull, false, 0))
	h.res(t0, openCmd("ro", ModeRestricted, false, 0))
	if st := h.f.Settings(); st.SessionIdleTimeout != 30*time.Minute || st.RemotePolicy != PolicyFull || !st.Statistics || st.AutoRecycling || st.IsolationMinutes != 0 {
		t.Fatalf("defaults: %+v", st)
	}
	policy, idle := PolicyNone, int64(5000)
	wantCode(t, "restricted sets", h.res(t0, settingsCmd("ro", &fsmpb.AdminSettings{RemotePolicy: &policy})), fsmpb.Code_PERMISSION_DENIED, "permission denied")
	wantCode(t, "full sets", h.res(t0, settingsCmd("full", &fsmpb.AdminSettings{RemotePolicy: &policy, SessionIdleTimeoutMs: &idle})), fsmpb.Code_OK, "changed")
	off := false
	h.res(t0, settingsCmd("full", &fsmpb.AdminSettings{Statistics: &off}))
	if st := h.f.Settings(); st.RemotePolicy != PolicyNone || st.SessionIdleTimeout != 5*time.Second || st.Statistics {
		t.Fatalf("after set: %+v", st)
	}
	bad := "open"
	wantCode(t, "bad policy", h.res(t0, settingsCmd("full", &fsmpb.AdminSettings{RemotePolicy: &bad})), fsmpb.Code_INVALID_ARGUMENT, "unknown remote policy")
	tiny := int64(10)
	wantCode(t, "bad idle", h.res(t0, settingsCmd("full", &fsmpb.AdminSettings{SessionIdleTimeoutMs: &tiny})), fsmpb.Code_INVALID_ARGUMENT, "out of range")
	iso := uint32(61)
	wantCode(t, "bad isolation", h.res(t0, settingsCmd("full", &fsmpb.AdminSettings{IsolationMinutes: &iso})), fsmpb.Code_INVALID_ARGUMENT, "out of range")

	wantCode(t, "restricted first", h.res(t0, passwordsCmd("full", nil, []byte("r-hash"), 0)), fsmpb.Code_INVALID_ARGUMENT, "set the full password first")
	wantCode(t, "full", h.res(t0, passwordsCmd("full", []byte("f-hash"), nil, 0)), fsmpb.Code_OK, "full password set")
	wantCode(t, "retried change", h.res(t0, passwordsCmd("full", []byte("f-hash"), nil, 0)), fsmpb.Code_OK, "password set")
	wantCode(t, "stale version", h.res(t0, passwordsCmd("full", nil, []byte("r-hash"), 0)), fsmpb.Code_INVALID_ARGUMENT, "changed meanwhile")
	wantCode(t, "restricted", h.res(t0, passwordsCmd("full", nil, []byte("r-hash"), 1)), fsmpb.Code_OK, "restricted password set")
	if a := h.f.AdminAuth(); string(a.FullHash) != "f-hash" || string(a.RestrictedHash) != "r-hash" || a.Version != 2 {
		t.Fatalf("auth %v", a)
	}
	wantCode(t, "connect checked against old passwords", h.res(t0, openCmd("late", ModeRestricted, false, 1)), fsmpb.Code_INVALID_ARGUMENT, "passwords changed")
	wantCode(t, "restricted session cannot change passwords", h.res(t0, passwordsCmd("ro", []byte("x"), nil, 2)), fsmpb.Code_PERMISSION_DENIED, "permission denied")
}

// TestSessionsDeterministicSnapshot: two FSMs fed the same log end with
// byte-identical snapshots, which survive a restore.
func TestSessionsDeterministicSnapshot(t *testing.T) {
	run := func() *FSM {
		h := formed(t)
		policy := PolicyRestricted
		for i, id := range []string{"zz", "aa", "mm", "bb"} {
			mode := ModeRestricted
			if i == 0 {
				mode = ModeFull
			}
			h.res(t0+int64(i)*second, openCmd(id, mode, false, 0))
		}
		h.res(t0+5*second, settingsCmd("zz", &fsmpb.AdminSettings{RemotePolicy: &policy}))
		h.res(t0+6*second, passwordsCmd("zz", []byte("f"), []byte("r"), 0))
		h.res(t0+7*second, openCmd("local", ModeFull, true, 1))
		h.res(t0+8*second, closeCmd("mm"))
		return h.f
	}
	a, b := run().MarshalSnapshot(), run().MarshalSnapshot()
	if !bytes.Equal(a, b) {
		t.Fatal("same log, different snapshots")
	}
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(a))); err != nil {
		t.Fatal(err)
	}
	g := roundTrip(t, f)
	snap := &fsmpb.Snapshot{}
	if err := proto.Unmarshal(g.MarshalSnapshot(), snap); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range snap.AdminSessions {
		ids = append(ids, s.Id)
	}
	if strings.Join(ids, ",") != "aa,bb,local,zz" {
		t.Fatalf("snapshot sessions %v, want sorted aa,bb,local,zz (zz as a tombstone)", ids)
	}
	if zz, _ := g.Session("zz"); zz.GetEndReason() != ReasonDisplaced {
		t.Fatalf("restored zz: %v", zz)
	}
	if g.Settings().RemotePolicy != PolicyRestricted || len(g.AdminAuth().RestrictedHash) == 0 || len(g.Sessions()) != 3 {
		t.Fatalf("restored admin state wrong: %+v %v %d", g.Settings(), g.AdminAuth(), len(g.Sessions()))
	}
}

// TestActivationIsSticky: the first license enrolled activates the cluster
// and removing every license does not undo it; the flag survives snapshots
// (also one holding no license) and two FSMs fed the same log agree.
func TestActivationIsSticky(t *testing.T) {
	run := func() *harness {
		h := formed(t)
		if h.f.Activated() {
			t.Fatal("activated before any license was enrolled")
		}
		// A refused enrollment does not activate.
		expired := lic("OLD", t0-10*day, t0-day, feat("cad", 1, 1))
		if r := h.res(t0, enrollCmd(expired)); r.Code == fsmpb.Code_OK {
			t.Fatalf("an expired license was enrolled: %v", r)
		}
		if h.f.Activated() {
			t.Fatal("a refused enrollment activated the cluster")
		}
		h.mustEnroll(t0+1, lic("A", t0-day, t0+365*day, feat("cad", 1, 2)))
		if !h.f.Activated() {
			t.Fatal("not activated after the first enrollment")
		}
		wantCode(t, "remove the only license", h.res(t0+2, removeCmd("A")), fsmpb.Code_OK, "")
		if len(h.f.Licenses()) != 0 {
			t.Fatalf("licenses left: %v", h.f.Licenses())
		}
		if !h.f.Activated() {
			t.Fatal("removing the last license deactivated the cluster")
		}
		return h
	}
	h := run()
	a, b := h.f.MarshalSnapshot(), run().f.MarshalSnapshot()
	if !bytes.Equal(a, b) {
		t.Fatal("same log, different snapshots")
	}
	snap := &fsmpb.Snapshot{}
	if err := proto.Unmarshal(a, snap); err != nil {
		t.Fatal(err)
	}
	if !snap.GetActivated() || len(snap.GetLicenses()) != 0 {
		t.Fatalf("snapshot of an activated cluster without licenses: activated=%v licenses=%d", snap.GetActivated(), len(snap.GetLicenses()))
	}
	if g := roundTrip(t, h.f); !g.Activated() {
		t.Fatal("activation lost in a snapshot without licenses")
	}
	// With a license enrolled the license itself says so: the snapshot
	// does not repeat the flag (format-1 bytes unchanged), and a restore
	// of it (as of an older build's snapshot) is activated.
	h.mustEnroll(t0+3, lic("B", t0-day, t0+365*day, feat("cad", 1, 2)))
	snap = &fsmpb.Snapshot{}
	if err := proto.Unmarshal(h.f.MarshalSnapshot(), snap); err != nil {
		t.Fatal(err)
	}
	if snap.GetActivated() {
		t.Fatal("snapshot repeats the flag alongside a license")
	}
	if g := roundTrip(t, h.f); !g.Activated() {
		t.Fatal("a restored snapshot holding a license is not activated")
	}
	// A never-activated cluster stays so through a snapshot.
	if g := roundTrip(t, formed(t).f); g.Activated() {
		t.Fatal("a restored unactivated cluster is activated")
	}
}
