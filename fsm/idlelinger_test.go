package fsm

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
)

func parsedRules(t *testing.T, text string) *fsmpb.Command {
	t.Helper()
	r, err := license.ParseRules([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return &fsmpb.Command{Cmd: &fsmpb.Command_SetRules{SetRules: &fsmpb.SetRules{Rules: r}}}
}

func (h *harness) mustRules(now int64, text string) {
	h.t.Helper()
	if r := h.apply(now, parsedRules(h.t.(*testing.T), text)).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
		h.t.Fatalf("set rules %q: %v %s", text, r.Code, r.Message)
	}
}

func renewIdleOp(idleMs int64, ids ...uint64) *fsmpb.Op {
	idle := make([]int64, len(ids))
	for i := range idle {
		idle[i] = idleMs
	}
	return &fsmpb.Op{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: ids, IdleMs: idle}}}
}

func liveLease(h *harness, id uint64) (*fsmpb.Lease, bool) { return h.f.Lease(id) }

// A TIMEOUT rule releases a lease exactly once it has been idle the
// timeout, never a lease its holder touched, and the holder's renewal is
// told why.
func TestIdleTimeoutReleasesIdleLeases(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, feat("cad", 1, 2)))
	h.mustRules(t0, "TIMEOUT cad 10m\n")
	idle := h.mustGrant(t0, "a", "cad", 1, 1)
	busy := h.mustGrant(t0, "b", "cad", 1, 1)

	// Idle since t0 (reported 0 ms idle at t0 is "active"): report at
	// t0+5m that it has been idle 5 minutes.
	h.op(t0+5*minute, renewIdleOp(5*minute, idle.Id))
	h.op(t0+5*minute, renewOp(busy.Id))
	if l, _ := liveLease(h, idle.Id); l.IdleSinceMs != t0 {
		t.Fatalf("idle since %d, want %d", l.IdleSinceMs, t0)
	}
	// Keep renewing (the TTL is 30 s) so only idleness can end it.
	for now := t0 + 5*minute + 20*second; now < t0+10*minute; now += 20 * second {
		h.op(now, renewIdleOp(now-t0, idle.Id))
		h.op(now, renewOp(busy.Id))
	}
	at := t0 + 10*minute - 1
	if h.f.HasExpired(at) {
		t.Fatal("HasExpired before the lease was idle 10 minutes")
	}
	h.apply(at, expireCmd())
	if _, ok := liveLease(h, idle.Id); !ok {
		t.Fatal("released 1 ms before the timeout")
	}
	at = t0 + 10*minute
	if !h.f.HasExpired(at) {
		t.Fatal("HasExpired false when a lease is idle exactly the timeout")
	}
	r := h.apply(at, expireCmd()).(*fsmpb.OpResult)
	if len(r.Leases) != 1 || r.Leases[0].LeaseId != idle.Id || !r.Leases[0].IdleTimeout {
		t.Fatalf("expire results %v, want lease %d released for idleness", r.Leases, idle.Id)
	}
	if _, ok := liveLease(h, idle.Id); ok {
		t.Fatal("an idle lease survived its timeout")
	}
	if _, ok := liveLease(h, busy.Id); !ok {
		t.Fatal("an active lease was released")
	}
	// The holder's renewal says why.
	rr := h.op(at+second, renewOp(idle.Id)).Leases[0]
	if rr.Code != fsmpb.Code_NOT_FOUND || !rr.IdleTimeout || !strings.Contains(rr.Message, "idle timeout") {
		t.Fatalf("renewal of the idle-released lease: %v", rr)
	}
	// Survives a snapshot round trip.
	g := roundTrip(t, h.f)
	h2 := &harness{t: t, f: g, index: h.index, session: h.session}
	if rr := h2.op(at+2*second, renewOp(idle.Id)).Leases[0]; !rr.IdleTimeout {
		t.Fatalf("after restore the renewal is not told of the idle timeout: %v", rr)
	}
	// Its seat is free again.
	h.mustGrant(at+2*second, "c", "cad", 1, 1)
}

// Touch (an active renewal) clears idleness; a feature without a TIMEOUT
// rule never releases idle leases.
func TestIdleTimeoutTouchAndNoRule(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, feat("cad", 1, 2), feat("cam", 1, 2)))
	h.mustRules(t0, "TIMEOUT cad 1m\n")
	cad := h.mustGrant(t0, "a", "cad", 1, 1)
	cam := h.mustGrant(t0, "b", "cam", 1, 1)
	h.op(t0+50*second, renewIdleOp(50*second, cad.Id, cam.Id))
	h.op(t0+55*second, renewOp(cad.Id)) // touched: active again
	h.op(t0+55*second, renewIdleOp(55*second, cam.Id))
	if h.f.HasExpired(t0 + 70*second) {
		t.Fatal("HasExpired for a touched lease or a feature without TIMEOUT")
	}
	h.apply(t0+70*second, expireCmd())
	for _, id := range []uint64{cad.Id, cam.Id} {
		if _, ok := liveLease(h, id); !ok {
			t.Fatalf("lease %d released", id)
		}
	}
}

// The vendor minimum: a TIMEOUT rule under a license's min_timeout is
// refused; a license enrolled later raises an existing rule.
func TestIdleTimeoutVendorMinimum(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 2)
	f.MinTimeoutSeconds = 1800
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, f))
	r := h.apply(t0, parsedRules(t, "TIMEOUT cad 10m\n")).(*fsmpb.OpResult)
	wantResult(t, r, fsmpb.Code_INVALID_ARGUMENT, "shorter than the minimum of 30m0s that license S1 sets: use TIMEOUT cad 30m0s or longer")
	if h.f.Rules() != nil {
		t.Fatal("a refused rules file was stored")
	}
	h.mustRules(t0, "TIMEOUT cad 30m\nTIMEOUT cam 1m\n")

	// cam: a rule of 1 minute, then a license with a 1 h minimum.
	g := feat("cam", 1, 2)
	g.MinTimeoutSeconds = 3600
	h.mustEnroll(t0, lic("S2", t0, t0+365*day, g))
	l := h.mustGrant(t0, "a", "cam", 1, 1)
	h.op(t0+20*second, renewIdleOp(20*second, l.Id))
	for now := t0 + 40*second; now <= t0+59*minute; now += 20 * second {
		h.op(now, renewIdleOp(now-t0, l.Id))
	}
	h.apply(t0+59*minute, expireCmd())
	if _, ok := liveLease(h, l.Id); !ok {
		t.Fatal("released before the license's minimum of 1 h")
	}
	h.op(t0+60*minute, renewIdleOp(60*minute, l.Id))
	h.apply(t0+60*minute, expireCmd())
	if _, ok := liveLease(h, l.Id); ok {
		t.Fatal("not released at the license's minimum of 1 h")
	}
}

func grantUH(req, user, host string) *fsmpb.Op {
	op := grantOp(req, "cad", 1, 1)
	op.GetGrant().User, op.GetGrant().Host = user, host
	return op
}

// Linger: a released seat stays reserved for its user and host; another
// user is refused; the same user and host take it back even when the
// feature is full; it ends by the clock; it counts as in use everywhere.
func TestLingerReserveTakeBackExpiry(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 2)
	f.LingerSeconds = 300
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, f))
	a := h.op(t0, grantUH("a1", "alice", "ws1")).Lease
	h.op(t0, grantUH("b1", "bob", "ws2"))
	r := h.op(t0+second, releaseOp(a.Id))
	if r.Leases[0].Code != fsmpb.Code_OK || !strings.Contains(r.Leases[0].Message, "lingers for alice@ws1") {
		t.Fatalf("release: %v", r.Leases[0])
	}
	l, ok := liveLease(h, a.Id)
	if !ok || !l.Lingering || l.ExpiresMs != t0+second+300*second {
		t.Fatalf("after release: %v %v, want lingering until +301s", l, ok)
	}
	// Counts as in use: usage, and carol is refused.
	if u := h.f.Usage(t0 + 2*second); u[0].InUse != 2 {
		t.Fatalf("usage %+v, want 2 in use", u)
	}
	wantResult(t, h.op(t0+2*second, grantUH("c1", "carol", "ws3")), fsmpb.Code_NO_SEAT, "no seat left")
	// alice on another host does not take it back.
	wantResult(t, h.op(t0+2*second, grantUH("a2", "alice", "ws9")), fsmpb.Code_NO_SEAT, "no seat left")
	// Renewing or releasing it again: it is released.
	if rr := h.op(t0+2*second, renewOp(a.Id)).Leases[0]; rr.Code != fsmpb.Code_NOT_FOUND || !strings.Contains(rr.Message, "lingers") {
		t.Fatalf("renew of a lingering seat: %v", rr)
	}
	// A retry of the original checkout does not resurrect it.
	wantResult(t, h.op(t0+2*second, grantUH("a1", "alice", "ws1")), fsmpb.Code_NOT_FOUND, "has ended")
	// alice@ws1 takes it back though the feature is full.
	back := h.op(t0+3*second, grantUH("a3", "alice", "ws1"))
	wantResult(t, back, fsmpb.Code_OK, "took back lingering lease(s) 1")
	if _, ok := liveLease(h, a.Id); ok {
		t.Fatal("the taken-back lingering lease is still there")
	}
	if u := h.f.Usage(t0 + 3*second); u[0].InUse != 2 {
		t.Fatalf("usage %+v after take-back, want 2", u)
	}
	// A snapshot round trip keeps the state byte-identical (roundTrip checks).
	h.op(t0+4*second, releaseOp(back.Lease.Id))
	g := roundTrip(t, h.f)
	// Expiry of the linger: not before, then the seat is free.
	h.apply(t0+4*second+300*second, expireCmd())
	if l, ok := liveLease(h, back.Lease.Id); !ok || !l.Lingering {
		t.Fatal("linger ended early")
	}
	h.apply(t0+4*second+300*second+1, expireCmd())
	if _, ok := liveLease(h, back.Lease.Id); ok {
		t.Fatal("linger did not end")
	}
	h.op(t0+305*second, grantUH("c2", "carol", "ws3"))
	// The restored copy behaves the same.
	h2 := &harness{t: t, f: g, index: h.index, session: h.session}
	wantResult(t, h2.op(t0+5*second, grantUH("c3", "carol", "ws3")), fsmpb.Code_NO_SEAT, "no seat left")
	wantResult(t, h2.op(t0+5*second, grantUH("a4", "alice", "ws1")), fsmpb.Code_OK, "took back")
}

// An expired lease lingers too; an administrator's release frees a
// lingering seat at once; a LINGER rule lengthens (never shortens) the
// license's linger; a rebase restarts the linger from the new clock.
func TestLingerExpiryAdminRuleRebase(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 1)
	f.LingerSeconds = 60
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, f))
	a := h.op(t0, grantUH("a1", "alice", "ws1")).Lease
	r := h.apply(t0+31*second, expireCmd()).(*fsmpb.OpResult)
	if len(r.Leases) != 1 || !strings.Contains(r.Leases[0].Message, "lingering") {
		t.Fatalf("expiry: %v", r.Leases)
	}
	if l, _ := liveLease(h, a.Id); !l.Lingering || l.ExpiresMs != t0+91*second {
		t.Fatalf("expired lease: %v, want lingering until +91s", l)
	}
	// The administrator frees it.
	ar := h.op(t0+32*second, &fsmpb.Op{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{LeaseId: a.Id, SessionId: h.liveSession(t0 + 32*second)}}})
	if ar.Leases[0].Code != fsmpb.Code_OK {
		t.Fatalf("admin release: %v", ar.Leases[0])
	}
	if _, ok := liveLease(h, a.Id); ok {
		t.Fatal("admin release left the lingering seat")
	}
	b := h.op(t0+33*second, grantUH("b1", "bob", "ws2")).Lease
	if b == nil {
		t.Fatal("the freed seat was not granted")
	}
	// A shorter LINGER rule does not shorten it; a longer one lengthens it.
	h.mustRules(t0+34*second, "LINGER cad 10s\n")
	h.op(t0+35*second, releaseOp(b.Id))
	if l, _ := liveLease(h, b.Id); l.ExpiresMs != t0+95*second {
		t.Fatalf("with a shorter rule the linger ends at %d, want the license's +60s", l.ExpiresMs-t0)
	}
	h.mustRules(t0+36*second, "LINGER cad 2h\n")
	c := h.op(t0+37*second, grantUH("b2", "bob", "ws2"))
	wantResult(t, c, fsmpb.Code_OK, "took back")
	h.op(t0+38*second, releaseOp(c.Lease.Id))
	if l, _ := liveLease(h, c.Lease.Id); l.ExpiresMs != t0+38*second+2*hour || l.LingerMs != 2*hour {
		t.Fatalf("with a 2h rule: %v", l)
	}
	// A new leader rebases: the linger restarts from its clock.
	h.apply(t0+1*hour, &fsmpb.Command{Cmd: &fsmpb.Command_RebaseLeases{RebaseLeases: &fsmpb.RebaseLeases{MemoryFromMs: t0 + 40*second}}})
	if l, _ := liveLease(h, c.Lease.Id); !l.Lingering || l.ExpiresMs != t0+1*hour+2*hour {
		t.Fatalf("after rebase: %v", l)
	}
}

// Borrowed, named-user and countdown leases do not linger, nor a lease
// released by an idle timeout.
func TestLingerNotForOtherModels(t *testing.T) {
	h := formed(t)
	nu := feat("nu", 1, 1)
	nu.Model, nu.LingerSeconds = modelNamedUser, 60
	cd := feat("cd", 1, 1)
	cd.Model, cd.UsageHours, cd.LingerSeconds = modelCountdown, 10, 60
	cad := feat("cad", 1, 1)
	cad.LingerSeconds = 60
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, nu, cd, cad))
	h.mustRules(t0, "TIMEOUT cad 1m\n")
	for _, name := range []string{"nu", "cd"} {
		l := h.op(t0, grantAs("r-"+name, name, 1, "alice", "ws1")).Lease
		h.op(t0+second, releaseOp(l.Id))
		if _, ok := liveLease(h, l.Id); ok {
			t.Fatalf("a %s lease lingers", name)
		}
	}
	// A borrowed lease reported idle is not released (nor marked idle).
	cadB := feat("cadb", 1, 1)
	cadB.MaxBorrowSeconds = 3600
	h.mustEnroll(t0, lic("S2", t0, t0+365*day, cadB))
	h.mustRules(t0, "TIMEOUT cad 1m\nTIMEOUT cadb 1m\n")
	bl := h.op(t0, borrowOp("b-cadb", "cadb", hour)).Lease
	h.op(t0+2*minute, renewIdleOp(2*minute, bl.Id))
	h.apply(t0+2*minute, expireCmd())
	if l, ok := liveLease(h, bl.Id); !ok || l.IdleSinceMs != 0 {
		t.Fatalf("a borrowed lease reported idle: %v %v", l, ok)
	}
	l := h.op(t0, grantAs("r-cad", "cad", 1, "alice", "ws1")).Lease
	h.op(t0+20*second, renewIdleOp(20*second, l.Id))
	h.op(t0+40*second, renewIdleOp(40*second, l.Id))
	h.op(t0+60*second, renewIdleOp(60*second, l.Id))
	h.apply(t0+60*second, expireCmd())
	if _, ok := liveLease(h, l.Id); ok {
		t.Fatal("a lease released by idle timeout lingers")
	}
}

// Entries of the new fields need format 4; old kinds of entries stay
// format 1.
func TestIdleLingerFormats(t *testing.T) {
	if f, op := OpsFormat(renewIdleOp(5, 1)); f != 4 || op != "batch.renew.idle_ms" {
		t.Fatalf("renew with idle: %d %s", f, op)
	}
	if f, _ := OpsFormat(renewOp(1)); f != 1 {
		t.Fatalf("plain renew: format %d", f)
	}
	if f, op := FormatOf(parsedRules(t, "LINGER cad 5m\n")); f != 4 || op != "set_rules.timeout_linger" {
		t.Fatalf("LINGER rules: %d %s", f, op)
	}
	if f, _ := FormatOf(parsedRules(t, "MAX 1 cad USER bob\n")); f != 1 {
		t.Fatalf("MAX rules: format %d", f)
	}
	fl := feat("cad", 1, 1)
	fl.LingerSeconds = 5
	if f, op := FormatOf(enrollCmd(lic("S1", t0, t0+day, fl))); f != 4 || op != "enroll_license.linger_min_timeout" {
		t.Fatalf("license with linger: %d %s", f, op)
	}
	if f, _ := FormatOf(enrollCmd(lic("S1", t0, t0+day, feat("cad", 1, 1)))); f != 1 {
		t.Fatalf("plain license: format %d", f)
	}
	// A build of format 3 halts on them.
	h := formed(t)
	h.f.SetMaxFormat(3)
	h.apply(t0, enrollCmd(lic("S1", t0, t0+day, fl)))
	if h.f.Halted() == nil {
		t.Fatal("a format-3 FSM applied a license with linger")
	}
}

// Two FSMs fed the same log with idle reports, lingers, take-backs and
// timeouts end byte-identical (determinism), also through a restore.
func TestIdleLingerReplayDeterministic(t *testing.T) {
	run := func() *harness {
		h := formed(t)
		f := feat("cad", 1, 3)
		f.LingerSeconds = 30
		h.mustEnroll(t0, lic("S1", t0, t0+365*day, f))
		h.mustRules(t0, "TIMEOUT cad 2m\n")
		var ids []uint64
		for i, u := range []string{"alice", "bob", "carol"} {
			ids = append(ids, h.op(t0, grantUH("r"+string(rune('a'+i)), u, "ws"+u)).Lease.Id)
		}
		for now := t0 + 20*second; now < t0+5*minute; now += 20 * second {
			h.op(now, renewIdleOp(now-t0, ids[0]))
			h.op(now, renewOp(ids[1]))
			h.apply(now, expireCmd())
		}
		h.op(t0+5*minute, releaseOp(ids[1]))
		h.op(t0+5*minute+second, grantUH("again", "bob", "wsbob"))
		return h
	}
	a, b := run(), run()
	if !bytes.Equal(a.f.MarshalSnapshot(), b.f.MarshalSnapshot()) {
		t.Fatal("same log, different snapshots")
	}
	roundTrip(t, a.f)
}

// A snapshot holding idle or linger data is format 3 (an older build
// refuses it rather than misread it); one without stays format 2.
func TestIdleLingerSnapshotFormat(t *testing.T) {
	format := func(h *harness) uint32 {
		snap := &fsmpb.Snapshot{}
		if err := proto.Unmarshal(h.f.MarshalSnapshot(), snap); err != nil {
			t.Fatal(err)
		}
		return snap.FormatVersion
	}
	h := formed(t)
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, feat("cad", 1, 1)))
	if f := format(h); f != 2 {
		t.Fatalf("plain state: format %d", f)
	}
	h.mustRules(t0, "LINGER cad 1m\n")
	if f := format(h); f != 3 {
		t.Fatalf("with a LINGER rule: format %d", f)
	}
	l := h.op(t0, grantUH("a", "alice", "ws1")).Lease
	h.op(t0+second, releaseOp(l.Id))
	h.mustRules(t0+second, "")
	if f := format(h); f != 3 {
		t.Fatalf("with a lingering seat: format %d", f)
	}
	g := roundTrip(t, h.f)
	if l, ok := g.Lease(l.Id); !ok || !l.Lingering {
		t.Fatal("the lingering seat did not survive the round trip")
	}
	h.apply(t0+2*minute, expireCmd())
	if f := format(h); f != 2 {
		t.Fatalf("after the linger ended: format %d", f)
	}
}

// BenchmarkHasExpiredIdle measures the leader's once-a-second check with
// 1000 leases reported idle under a TIMEOUT rule (O(idle leases)), and a
// renewal batch of 512 leases carrying idle times.
func BenchmarkHasExpiredIdle(b *testing.B) {
	h := benchState(b)
	r, err := license.ParseRules([]byte("TIMEOUT cad 1h\n"))
	if err != nil {
		b.Fatal(err)
	}
	h.apply(t0, &fsmpb.Command{Cmd: &fsmpb.Command_SetRules{SetRules: &fsmpb.SetRules{Rules: r}}})
	ids := make([]uint64, 0, 1000)
	for _, l := range h.f.Leases() {
		ids = append(ids, l.Id)
	}
	h.op(t0+second, renewIdleOp(second, ids...))
	if len(h.f.s.idl.idle) != 1000 {
		b.Fatalf("%d idle leases", len(h.f.s.idl.idle))
	}
	b.Run("HasExpired", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if h.f.HasExpired(t0 + 2*second) {
				b.Fatal("expired")
			}
		}
	})
	b.Run("RenewIdle512", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			h.op(t0+2*second+int64(i), renewIdleOp(second, ids[:512]...))
		}
	})
}
