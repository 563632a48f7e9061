package fsm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

func grantAs(req, feature string, count uint32, user, host string) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Grant{Grant: &fsmpb.Grant{RequestId: req, Feature: feature, Count: count, User: user, Host: host}}}
}

func borrowOp(req, feature string, durationMs int64) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{Grant: &fsmpb.Grant{RequestId: req, Feature: feature, Count: 1}, DurationMs: durationMs}}}
}

func extendOp(id uint64, durationMs int64) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{LeaseId: id, DurationMs: durationMs}}}
}

func wantResult(t *testing.T, r *fsmpb.OpResult, code fsmpb.Code, msg string) {
	t.Helper()
	if r.Code != code || !strings.Contains(r.Message, msg) {
		t.Fatalf("got %v %q, want %v containing %q", r.Code, r.Message, code, msg)
	}
}

func TestSoftLimitOverdraft(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 2)
	f.Limit, f.Overdraft = limitSoft, 1
	h.mustEnroll(t0, lic("S1", t0, t0+365*day, f))
	h.mustGrant(t0, "a", "cad", 1, 2)
	if alarms := h.f.LicenseAlarms(t0, 7*day); len(alarms) != 0 {
		t.Fatalf("alarms at capacity: %v", alarms)
	}
	h.mustGrant(t0, "b", "cad", 1, 1) // the overdraft seat
	wantResult(t, h.op(t0, grantOp("c", "cad", 1, 1)), fsmpb.Code_NO_SEAT, "no seat left for cad v 1 (3 of 3 in use)")
	alarms := h.f.LicenseAlarms(t0, 7*day)
	if len(alarms) != 1 || alarms[0].Kind != AlarmOverCapacity || !strings.Contains(alarms[0].Message, "3 seats in use, 2 licensed") {
		t.Fatalf("alarms in overdraft: %+v", alarms)
	}
	if u := h.f.Usage(t0); len(u) != 1 || u[0].Capacity != 2 || u[0].InUse != 3 {
		t.Fatalf("usage shows %+v, want capacity 2 (licensed) and 3 in use", u)
	}
}

func TestCountdownPool(t *testing.T) {
	h := formed(t)
	f := feat("sim", 1, 5)
	f.Model, f.UsageHours = modelCountdown, 2 // 2 seat-hours
	h.mustEnroll(t0, lic("C1", t0, t0+365*day, f))
	l := h.mustGrant(t0, "a", "sim", 1, 2) // 2 seats: the pool lasts 1 hour
	if r := h.op(t0+30*minute, renewOp(l.Id)); r.Leases[0].Code != fsmpb.Code_OK {
		t.Fatalf("renew within the pool: %v", r.Leases[0])
	}
	if got := h.f.CountdownUse(t0 + 30*minute)["sim"]; got != [2]int64{2 * hour, hour} {
		t.Fatalf("countdown use after 30 min of 2 seats = %v, want pool 2h, used 1h", got)
	}
	r := h.op(t0+61*minute, renewOp(l.Id))
	if r.Leases[0].Code != fsmpb.Code_POOL_EXHAUSTED {
		t.Fatalf("renew past the pool: %v", r.Leases[0])
	}
	if _, live := h.f.Lease(l.Id); live {
		t.Fatalf("lease lives on after its pool ran out")
	}
	wantResult(t, h.op(t0+62*minute, grantOp("b", "sim", 1, 1)), fsmpb.Code_POOL_EXHAUSTED, "countdown pool of sim is used up")
	roundTrip(t, h.f)
}

// poolOf returns the model and pool figures FeatureRows gives feature at
// now, checking every version row of the feature carries the same ones.
func poolOf(t *testing.T, f *FSM, feature string, now int64) FeatureRow {
	t.Helper()
	var got *FeatureRow
	for _, r := range f.FeatureRows(now) {
		if r.Feature != feature {
			continue
		}
		if got != nil && (r.Model != got.Model || r.PoolMs != got.PoolMs || r.PoolUsedMs != got.PoolUsedMs) {
			t.Fatalf("rows of %s disagree: %+v and %+v", feature, *got, r)
		}
		got = &r
	}
	if got == nil {
		t.Fatalf("no usage row for %s at %d", feature, now)
	}
	return *got
}

func poolAlarm(f *FSM, now int64) []Alarm {
	var out []Alarm
	for _, a := range f.LicenseAlarms(now, 7*day) {
		if a.Kind == AlarmPoolLow {
			out = append(out, a)
		}
	}
	return out
}

// TestCountdownPoolFigures: the usage rows carry a countdown feature's pool
// and its use at the read's now, live leases' running time included and
// nothing after their release; countdown_pool_low is raised under 10% left
// and when used up, and clears when a license adds hours.
func TestCountdownPoolFigures(t *testing.T) {
	h := formed(t)
	sim := feat("sim", 1, 5)
	sim.Model, sim.UsageHours = modelCountdown, 1
	sim2 := feat("sim", 2, 1) // a second version row of the same pool (1 h + 1 h)
	sim2.Model, sim2.UsageHours = modelCountdown, 1
	h.mustEnroll(t0, lic("C1", t0, t0+365*day, sim, sim2, feat("cad", 1, 3)))

	if r := poolOf(t, h.f, "cad", t0); r.Model != modelConcurrent || r.PoolMs != 0 || r.PoolUsedMs != 0 {
		t.Fatalf("concurrent feature row %+v, want model concurrent and no pool", r)
	}
	if r := poolOf(t, h.f, "sim", t0); r.Model != modelCountdown || r.PoolMs != 2*hour || r.PoolUsedMs != 0 {
		t.Fatalf("fresh countdown row %+v, want pool 2h, none used", r)
	}
	l := h.mustGrant(t0, "a", "sim", 1, 2)
	// Reads between commands see the running time of the live lease.
	for _, c := range []struct{ at, want int64 }{{t0, 0}, {t0 + 30*minute, hour}, {t0 + 45*minute, 90 * minute}} {
		if got := poolOf(t, h.f, "sim", c.at).PoolUsedMs; got != c.want {
			t.Fatalf("used at +%d min = %d ms, want %d", (c.at-t0)/minute, got, c.want)
		}
	}
	h.op(t0+40*minute, renewOp(l.Id)) // charged up to +40 min: the figure is the same
	if got := poolOf(t, h.f, "sim", t0+45*minute).PoolUsedMs; got != 90*minute {
		t.Fatalf("used at +45 min after a renewal = %d ms, want 90 min", got)
	}
	h.op(t0+50*minute, releaseOp(l.Id))
	for _, at := range []int64{t0 + 50*minute, t0 + 80*minute, t0 + 300*day} {
		if got := poolOf(t, h.f, "sim", at).PoolUsedMs; got != 100*minute {
			t.Fatalf("used at +%d min after the release = %d ms, want 100 min (no more after release)", (at-t0)/minute, got)
		}
	}
	if g := roundTrip(t, h.f); poolOf(t, g, "sim", t0+80*minute) != poolOf(t, h.f, "sim", t0+80*minute) {
		t.Fatal("pool figures differ across a snapshot restore")
	}

	// 20 of 120 min left (16.7%): no alarm. 1 seat from +60 min: 13 min left
	// at +67, 11 (under 12, a tenth) at +69, used up at +80.
	if a := poolAlarm(h.f, t0+50*minute); len(a) != 0 {
		t.Fatalf("pool alarm with 17%% left: %+v", a)
	}
	l = h.mustGrant(t0+60*minute, "b", "sim", 1, 1)
	if a := poolAlarm(h.f, t0+67*minute); len(a) != 0 {
		t.Fatalf("pool alarm with 13 of 120 min left: %+v", a)
	}
	a := poolAlarm(h.f, t0+69*minute)
	if len(a) != 1 || a[0].Subject != "sim" || a[0].SinceMs != t0+69*minute || !strings.Contains(a[0].Message, "0.2 of 2.0 seat-hours left") {
		t.Fatalf("pool alarm with 11 of 120 min left: %+v", a)
	}
	a = poolAlarm(h.f, t0+81*minute)
	if len(a) != 1 || !strings.Contains(a[0].Message, "used up (2.0 of 2.0 seat-hours)") {
		t.Fatalf("pool alarm when used up: %+v", a)
	}
	if r := h.op(t0+81*minute, renewOp(l.Id)); r.Leases[0].Code != fsmpb.Code_POOL_EXHAUSTED {
		t.Fatalf("renewal past the pool: %v", r.Leases[0])
	}
	if r := poolOf(t, h.f, "sim", t0+90*minute); r.PoolUsedMs != 121*minute {
		t.Fatalf("used after the pool ran out = %d ms, want 121 min (charged up to the last renewal)", r.PoolUsedMs)
	}
	if a := poolAlarm(h.f, t0+90*minute); len(a) != 1 {
		t.Fatalf("pool alarm stays while the pool is used up: %+v", a)
	}

	// More hours clear it: the pools add up.
	more := feat("sim", 1, 5)
	more.Model, more.UsageHours = modelCountdown, 10
	h.mustEnroll(t0+90*minute, lic("C2", t0, t0+365*day, more))
	if r := poolOf(t, h.f, "sim", t0+90*minute); r.PoolMs != 12*hour || r.PoolUsedMs != 121*minute {
		t.Fatalf("after a second license: %+v, want pool 12h, 121 min used", r)
	}
	if a := poolAlarm(h.f, t0+90*minute); len(a) != 0 {
		t.Fatalf("pool alarm after more hours were enrolled: %+v", a)
	}
	// Gone when the licenses are: no row, no alarm.
	if rows := h.f.FeatureRows(t0 + 400*day); len(rows) != 0 {
		t.Fatalf("rows after every license expired: %+v", rows)
	}
	if a := poolAlarm(h.f, t0+400*day); len(a) != 0 {
		t.Fatalf("pool alarm for an expired license: %+v", a)
	}
}

func TestCountdownNotChargedWhileClockRunsBackwards(t *testing.T) {
	h := formed(t)
	f := feat("sim", 1, 5)
	f.Model, f.UsageHours = modelCountdown, 1
	h.mustEnroll(t0, lic("C1", t0, t0+365*day, f))
	l := h.mustGrant(t0+10*minute, "a", "sim", 1, 1)
	h.apply(t0+5*minute, rebaseCmd()) // a new leader whose clock is behind
	h.op(t0+20*minute, renewOp(l.Id))
	if got := h.f.CountdownUse(t0 + 20*minute)["sim"][1]; got != 15*minute {
		t.Fatalf("used %d ms, want 15 min (10 before the rebase is not refunded, the backward step is not charged)", got)
	}
}

func TestNamedUsers(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 2)
	f.Model = modelNamedUser
	h.mustEnroll(t0, lic("N1", t0, t0+365*day, f))
	wantResult(t, h.op(t0, grantAs("x", "cad", 1, "", "h")), fsmpb.Code_INVALID_ARGUMENT, "named user")
	a1 := h.op(t0, grantAs("a1", "cad", 1, "alice", "h1")).Lease
	h.op(t0, grantAs("a2", "cad", 1, "alice", "h2")) // alice's second session shares her seat
	h.op(t0, grantAs("b1", "cad", 1, "bob", "h3"))
	wantResult(t, h.op(t0, grantAs("c1", "cad", 1, "carol", "h4")), fsmpb.Code_NO_SEAT, "2 of 2 named users tied")
	if u := h.f.Usage(t0); u[0].InUse != 2 || u[0].Capacity != 2 {
		t.Fatalf("usage %+v, want 2 of 2", u)
	}
	// Last used follows checkout, renewal and release.
	h.op(t0+hour, renewOp(a1.Id))
	if s := seat(h, "cad", "alice"); s.LastUsedMs != t0+hour || s.TiedMs != t0 {
		t.Fatalf("after renewal: %+v", s)
	}
	// Bob releases: his seat stays tied.
	for _, l := range h.f.Leases() {
		if l.User == "bob" {
			h.op(t0+2*hour, releaseOp(l.Id))
		}
	}
	// The release is bob's last use.
	if s := seat(h, "cad", "bob"); s.LastUsedMs != t0+2*hour || s.TiedMs != t0 {
		t.Fatalf("after release: %+v", s)
	}
	wantResult(t, h.op(t0+2*hour, grantAs("c2", "cad", 1, "carol", "h4")), fsmpb.Code_NO_SEAT, "named users tied")
	// Manual recycling: not before 30 days idle, never while in use.
	rec := func(now int64, user string) *fsmpb.OpResult {
		return h.apply(now, &fsmpb.Command{Cmd: &fsmpb.Command_RecycleNamedUser{RecycleNamedUser: &fsmpb.RecycleNamedUser{User: user, Feature: "cad"}}}).(*fsmpb.OpResult)
	}
	wantResult(t, rec(t0+29*day, "bob"), fsmpb.Code_RECYCLE_REFUSED, "30 days after its last use")
	// 30 days after the checkout but not after the release.
	wantResult(t, rec(t0+hour+30*day, "bob"), fsmpb.Code_RECYCLE_REFUSED, "last used cad on "+formatTime(t0+2*hour))
	wantResult(t, rec(t0+40*day, "alice"), fsmpb.Code_RECYCLE_REFUSED, "using cad now")
	wantResult(t, rec(t0+40*day, "dave"), fsmpb.Code_NOT_FOUND, "holds no named seat")
	wantResult(t, rec(t0+2*hour+30*day, "bob"), fsmpb.Code_OK, "untied from user bob")
	h.op(t0+31*day, grantAs("c3", "cad", 1, "carol", "h4"))
	roundTrip(t, h.f)
}

// "Last used" follows each checkout, renewal and release of any of the
// user's sessions, and never moves back.
func TestNamedSeatLastUsed(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 2)
	f.Model = modelNamedUser
	h.mustEnroll(t0, lic("N1", t0, t0+365*day, f))
	last := func(when string, want int64) {
		t.Helper()
		if s := seat(h, "cad", "alice"); s.LastUsedMs != want || s.TiedMs != t0 {
			t.Fatalf("%s: last used %s, tied %s; want last used %s, tied %s", when,
				formatTime(s.LastUsedMs), formatTime(s.TiedMs), formatTime(want), formatTime(t0))
		}
	}
	s1 := h.op(t0, grantAs("s1", "cad", 1, "alice", "h1")).Lease
	last("first checkout", t0)
	s2 := h.op(t0+hour, grantAs("s2", "cad", 1, "alice", "h2")).Lease
	last("second session's checkout", t0+hour)
	if r := h.op(t0+2*hour, renewOp(s1.Id)); r.Leases[0].Code != fsmpb.Code_OK {
		t.Fatalf("renew: %v", r.Leases[0])
	}
	last("renewal", t0+2*hour)
	h.op(t0+3*hour, releaseOp(s1.Id))
	last("release of one session", t0+3*hour)
	if !h.f.NamedSeatInUse("cad", "alice") {
		t.Fatalf("alice's seat not in use while her second session lives")
	}
	h.op(t0+4*hour, releaseOp(s2.Id))
	last("release of the last session", t0+4*hour)
	if h.f.NamedSeatInUse("cad", "alice") {
		t.Fatalf("alice's seat in use after both sessions were released")
	}
	// A new leader whose clock is behind does not move it back.
	s3 := h.op(t0+5*hour, grantAs("s3", "cad", 1, "alice", "h1")).Lease
	h.op(t0+4*hour+30*minute, renewOp(s3.Id))
	h.op(t0+4*hour+40*minute, releaseOp(s3.Id))
	last("renewal and release with a clock behind", t0+5*hour)
	if g := roundTrip(t, h.f); g.NamedSeats()[0].LastUsedMs != t0+5*hour {
		t.Fatalf("restored seat %+v", g.NamedSeats()[0])
	}
}

func seat(h *harness, feature, user string) *fsmpb.NamedSeat {
	for _, s := range h.f.NamedSeats() {
		if s.Feature == feature && s.User == user {
			return s
		}
	}
	h.t.Fatalf("no named seat %s/%s", feature, user)
	return nil
}

func TestRecycleSweep(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 3)
	f.Model = modelNamedUser
	h.mustEnroll(t0, lic("N1", t0, t0+365*day, f))
	old := h.op(t0, grantAs("o", "cad", 1, "old", "h")).Lease
	h.op(t0, releaseOp(old.Id))
	h.op(t0, grantAs("busy", "cad", 1, "busy", "h")) // in use, never recycled
	h.op(t0+20*day, grantAs("r", "cad", 1, "recent", "h"))
	r := h.apply(t0+31*day, &fsmpb.Command{Cmd: &fsmpb.Command_RecycleSweep{RecycleSweep: &fsmpb.RecycleSweep{}}}).(*fsmpb.OpResult)
	wantResult(t, r, fsmpb.Code_OK, "recycled 1 named seat(s): cad/old")
	var users []string
	for _, s := range h.f.NamedSeats() {
		users = append(users, s.User)
	}
	if strings.Join(users, ",") != "busy,recent" {
		t.Fatalf("seats after sweep: %v", users)
	}
}

func TestBorrowing(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 2)
	f.MaxBorrowSeconds = 3 * 24 * 3600
	h.mustEnroll(t0, lic("B1", t0, t0+365*day, f, feat("nob", 1, 1)))
	wantResult(t, h.op(t0, borrowOp("x", "nob", hour)), fsmpb.Code_BORROW_NOT_ALLOWED, "allows no offline use")
	wantResult(t, h.op(t0, borrowOp("y", "cad", 4*day)), fsmpb.Code_BORROW_NOT_ALLOWED, "at most 72.0 hours")
	r := h.op(t0, borrowOp("b", "cad", day))
	if r.Code != fsmpb.Code_OK || !r.Lease.Borrowed || r.Lease.ExpiresMs != t0+day {
		t.Fatalf("borrow: %v %q %+v", r.Code, r.Message, r.Lease)
	}
	id := r.Lease.Id
	// It counts against capacity, survives a rebase and is not stretched by a renewal.
	h.mustGrant(t0, "c", "cad", 1, 1)
	wantResult(t, h.op(t0, grantOp("d", "cad", 1, 1)), fsmpb.Code_NO_SEAT, "2 of 2 in use")
	h.apply(t0+hour, rebaseCmd())
	h.op(t0+2*hour, renewOp(id))
	if l, _ := h.f.Lease(id); l.ExpiresMs != t0+day {
		t.Fatalf("borrow end moved to %d, want %d", l.ExpiresMs, t0+day)
	}
	// Extend within the limit, from now.
	wantResult(t, h.op(t0+3*hour, extendOp(id, 4*day)), fsmpb.Code_BORROW_NOT_ALLOWED, "at most")
	if r := h.op(t0+3*hour, extendOp(id, 2*day)); r.Code != fsmpb.Code_OK || r.Lease.ExpiresMs != t0+3*hour+2*day {
		t.Fatalf("extend: %v %+v", r.Code, r.Lease)
	}
	// It ends by itself when the borrow runs out.
	h.apply(t0+3*hour+2*day+1, expireCmd())
	if _, live := h.f.Lease(id); live {
		t.Fatalf("borrowed lease outlived its borrow")
	}
	wantResult(t, h.op(t0+3*day, extendOp(id, hour)), fsmpb.Code_NOT_FOUND, "borrowed lease")
	roundTrip(t, h.f)
}

func rulesCmd(groups []*fsmpb.RuleGroup, rules ...*fsmpb.AccessRule) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_SetRules{SetRules: &fsmpb.SetRules{Rules: &fsmpb.AccessRules{Groups: groups, Rules: rules}}}}
}

func rule(name, kind, subject, value string, count uint32) *fsmpb.AccessRule {
	return &fsmpb.AccessRule{Name: name, Kind: kind, Feature: "cad", Subject: subject, Value: value, Count: count}
}

func TestAccessRules(t *testing.T) {
	groups := []*fsmpb.RuleGroup{{Name: "design", Kind: "user", Members: []string{"alice", "bob"}}, {Name: "lab", Kind: "host", Members: []string{"ws1"}}}
	tests := []struct {
		name  string
		rules []*fsmpb.AccessRule
		held  [][2]string // user, host of seats already held
		user  string
		host  string
		code  fsmpb.Code
		msg   string
	}{
		{"no rules", nil, nil, "eve", "x", fsmpb.Code_OK, ""},
		{"exclude user", []*fsmpb.AccessRule{rule("no-eve", "exclude", "user", "eve", 0)}, nil, "eve", "x", fsmpb.Code_DENIED_BY_RULE, "denied by rule no-eve"},
		{"exclude other user", []*fsmpb.AccessRule{rule("no-eve", "exclude", "user", "eve", 0)}, nil, "bob", "x", fsmpb.Code_OK, ""},
		{"exclude host group", []*fsmpb.AccessRule{rule("no-lab", "exclude", "host_group", "lab", 0)}, nil, "bob", "ws1", fsmpb.Code_DENIED_BY_RULE, "denied by rule no-lab"},
		{"include group: member", []*fsmpb.AccessRule{rule("designers", "include", "group", "design", 0)}, nil, "alice", "x", fsmpb.Code_OK, ""},
		{"include group: outsider", []*fsmpb.AccessRule{rule("designers", "include", "group", "design", 0)}, nil, "eve", "x", fsmpb.Code_DENIED_BY_RULE, "denied by rule designers: only included"},
		{"max reached", []*fsmpb.AccessRule{rule("bob-1", "max", "user", "bob", 1)}, [][2]string{{"bob", "a"}}, "bob", "b", fsmpb.Code_DENIED_BY_RULE, "denied by rule bob-1: at most 1 seat(s) of cad, 1 in use"},
		{"max not reached", []*fsmpb.AccessRule{rule("bob-2", "max", "user", "bob", 2)}, [][2]string{{"bob", "a"}}, "bob", "b", fsmpb.Code_OK, ""},
		{"max on a group counts all members", []*fsmpb.AccessRule{rule("design-2", "max", "group", "design", 2)}, [][2]string{{"alice", "a"}, {"bob", "b"}}, "alice", "c", fsmpb.Code_DENIED_BY_RULE, "denied by rule design-2"},
		{"reserve blocks others", []*fsmpb.AccessRule{rule("keep-2", "reserve", "user", "alice", 2)}, [][2]string{{"eve", "a"}, {"eve", "b"}}, "eve", "c", fsmpb.Code_DENIED_BY_RULE, "denied by rule keep-2: the free seats of cad are reserved"},
		{"reserve serves its subject", []*fsmpb.AccessRule{rule("keep-2", "reserve", "user", "alice", 2)}, [][2]string{{"eve", "a"}, {"eve", "b"}}, "alice", "c", fsmpb.Code_OK, ""},
		{"exclude wins over an earlier max", []*fsmpb.AccessRule{rule("bob-1", "max", "user", "bob", 1), rule("no-bob", "exclude", "user", "bob", 0)}, nil, "bob", "b", fsmpb.Code_DENIED_BY_RULE, "denied by rule no-bob"},
		{"exclude wins over include", []*fsmpb.AccessRule{rule("bob-in", "include", "user", "bob", 0), rule("no-bob", "exclude", "user", "bob", 0)}, nil, "bob", "b", fsmpb.Code_DENIED_BY_RULE, "denied by rule no-bob"},
		{"reserve used by its subject frees nothing extra", []*fsmpb.AccessRule{rule("keep-1", "reserve", "user", "alice", 1)}, [][2]string{{"alice", "a"}, {"eve", "b"}, {"eve", "c"}}, "eve", "d", fsmpb.Code_OK, ""},

		// Plain HOST subjects: the request's host, whoever the user.
		{"exclude host", []*fsmpb.AccessRule{rule("no-kiosk", "exclude", "host", "kiosk", 0)}, nil, "alice", "kiosk", fsmpb.Code_DENIED_BY_RULE, "denied by rule no-kiosk"},
		{"exclude host: other host", []*fsmpb.AccessRule{rule("no-kiosk", "exclude", "host", "kiosk", 0)}, nil, "alice", "ws1", fsmpb.Code_OK, ""},
		{"exclude host: a user named like the host", []*fsmpb.AccessRule{rule("no-kiosk", "exclude", "host", "kiosk", 0)}, nil, "kiosk", "ws1", fsmpb.Code_OK, ""},
		{"include host: on it", []*fsmpb.AccessRule{rule("ws9-only", "include", "host", "ws9", 0)}, nil, "eve", "ws9", fsmpb.Code_OK, ""},
		{"include host: elsewhere", []*fsmpb.AccessRule{rule("ws9-only", "include", "host", "ws9", 0)}, nil, "alice", "ws1", fsmpb.Code_DENIED_BY_RULE, "denied by rule ws9-only: only included users or hosts may use cad"},
		{"include host or user: the user elsewhere", []*fsmpb.AccessRule{rule("ws9-only", "include", "host", "ws9", 0), rule("bob-too", "include", "user", "bob", 0)}, nil, "bob", "ws1", fsmpb.Code_OK, ""},
		{"exclude host wins over include user", []*fsmpb.AccessRule{rule("bob-in", "include", "user", "bob", 0), rule("no-kiosk", "exclude", "host", "kiosk", 0)}, nil, "bob", "kiosk", fsmpb.Code_DENIED_BY_RULE, "denied by rule no-kiosk"},

		// MAX per host counts every user's seats on that host, only there.
		{"max per host reached by other users", []*fsmpb.AccessRule{rule("ws9-2", "max", "host", "ws9", 2)}, [][2]string{{"alice", "ws9"}, {"bob", "ws9"}}, "eve", "ws9", fsmpb.Code_DENIED_BY_RULE, "denied by rule ws9-2: at most 2 seat(s) of cad, 2 in use"},
		{"max per host: seats elsewhere do not count", []*fsmpb.AccessRule{rule("ws9-2", "max", "host", "ws9", 2)}, [][2]string{{"alice", "ws9"}, {"alice", "ws1"}, {"bob", "ws2"}}, "eve", "ws9", fsmpb.Code_OK, ""},
		{"max per host: another host is not capped", []*fsmpb.AccessRule{rule("ws9-1", "max", "host", "ws9", 1)}, [][2]string{{"alice", "ws9"}}, "alice", "ws8", fsmpb.Code_OK, ""},
		{"max per host group counts the group's hosts", []*fsmpb.AccessRule{rule("lab-1", "max", "host_group", "lab", 1)}, [][2]string{{"alice", "ws1"}}, "bob", "ws1", fsmpb.Code_DENIED_BY_RULE, "denied by rule lab-1"},

		// RESERVE for a group: kept for the members together.
		{"reserve for a group blocks outsiders", []*fsmpb.AccessRule{rule("design-2", "reserve", "group", "design", 2)}, [][2]string{{"eve", "a"}, {"eve", "b"}}, "carol", "c", fsmpb.Code_DENIED_BY_RULE, "denied by rule design-2: the free seats of cad are reserved"},
		{"reserve for a group serves any member", []*fsmpb.AccessRule{rule("design-2", "reserve", "group", "design", 2)}, [][2]string{{"eve", "a"}, {"eve", "b"}, {"alice", "c"}}, "bob", "d", fsmpb.Code_OK, ""},
		{"reserve for a group: a member's seat takes part of it", []*fsmpb.AccessRule{rule("design-2", "reserve", "group", "design", 2)}, [][2]string{{"alice", "a"}, {"eve", "b"}}, "eve", "c", fsmpb.Code_OK, ""},
		{"reserve for a group: the unused part stays held back", []*fsmpb.AccessRule{rule("design-2", "reserve", "group", "design", 2)}, [][2]string{{"alice", "a"}, {"eve", "b"}, {"eve", "c"}}, "eve", "d", fsmpb.Code_DENIED_BY_RULE, "denied by rule design-2"},
		{"reserve for a group used up: no longer held back", []*fsmpb.AccessRule{rule("design-2", "reserve", "group", "design", 2)}, [][2]string{{"alice", "a"}, {"bob", "b"}, {"eve", "c"}}, "eve", "d", fsmpb.Code_OK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := formed(t)
			h.mustEnroll(t0, lic("R1", t0, t0+365*day, feat("cad", 1, 4)))
			if r := h.apply(t0, rulesCmd(groups, tc.rules...)).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
				t.Fatalf("set rules: %v", r)
			}
			for i, uh := range tc.held {
				if r := h.op(t0, grantAs("held"+string(rune('a'+i)), "cad", 1, uh[0], uh[1])); r.Code != fsmpb.Code_OK {
					t.Fatalf("setup seat %v: %v %s", uh, r.Code, r.Message)
				}
			}
			r := h.op(t0, grantAs("req", "cad", 1, tc.user, tc.host))
			wantResult(t, r, tc.code, tc.msg)
		})
	}
}

// A named seat counts for a HOST rule while its user holds a lease from
// that host; tied but idle, it counts for no host.
func TestAccessRulesNamedSeatsPerHost(t *testing.T) {
	h := formed(t)
	f := feat("view", 1, 3)
	f.Model = modelNamedUser
	h.mustEnroll(t0, lic("N1", t0, t0+365*day, f))
	r := rule("ws9-1", "max", "host", "ws9", 1)
	r.Feature = "view"
	if res := h.apply(t0, rulesCmd(nil, r)).(*fsmpb.OpResult); res.Code != fsmpb.Code_OK {
		t.Fatalf("set rules: %v", res)
	}
	a := h.op(t0, grantAs("a", "view", 1, "alice", "ws9"))
	wantResult(t, a, fsmpb.Code_OK, "")
	wantResult(t, h.op(t0, grantAs("b", "view", 1, "bob", "ws9")), fsmpb.Code_DENIED_BY_RULE, "denied by rule ws9-1: at most 1 seat(s) of view, 1 in use")
	wantResult(t, h.op(t0, grantAs("b2", "view", 1, "bob", "ws8")), fsmpb.Code_OK, "")
	h.op(t0, releaseOp(a.Lease.Id)) // alice stays tied, but not on ws9
	wantResult(t, h.op(t0, grantAs("c", "view", 1, "carol", "ws9")), fsmpb.Code_OK, "")
}

func TestLicenseTickAndAlarms(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0, t0+10*day, feat("cad", 1, 2)))
	h.mustEnroll(t0, lic("L2", t0+5*day, t0+100*day, feat("cad", 1, 1)))
	if h.f.NeedsLicenseTick(t0 + day) {
		t.Fatalf("tick wanted while no license changed state")
	}
	if !h.f.NeedsLicenseTick(t0 + 5*day) {
		t.Fatalf("no tick wanted when L2 became valid")
	}
	r := h.apply(t0+5*day, &fsmpb.Command{Cmd: &fsmpb.Command_LicenseTick{LicenseTick: &fsmpb.LicenseTick{}}}).(*fsmpb.OpResult)
	wantResult(t, r, fsmpb.Code_OK, "license L2 is now valid (was not yet valid)")
	if h.f.NeedsLicenseTick(t0 + 5*day) {
		t.Fatalf("tick still wanted after it was committed")
	}
	// L1 expires within the warning window, then expires with seats held.
	if a := h.f.LicenseAlarms(t0+5*day, 7*day); len(a) != 1 || a[0].Kind != AlarmLicenseExpiring || a[0].Subject != "L1" {
		t.Fatalf("alarms 5 days before expiry: %+v", a)
	}
	h.mustGrant(t0+6*day, "a", "cad", 1, 3)
	a := h.f.LicenseAlarms(t0+11*day, 7*day)
	if len(a) != 2 || a[0].Kind != AlarmLicenseExpired || a[1].Kind != AlarmOverCapacity || !strings.Contains(a[1].Message, "3 seats in use, 1 licensed") {
		t.Fatalf("alarms after expiry: %+v", a)
	}
	// The expiry is committed by a tick; alarms clear when the cause goes.
	wantResult(t, h.apply(t0+11*day, &fsmpb.Command{Cmd: &fsmpb.Command_LicenseTick{LicenseTick: &fsmpb.LicenseTick{}}}).(*fsmpb.OpResult), fsmpb.Code_OK, "license L1 is now expired")
	h.apply(t0+11*day, removeCmd("L1"))
	for _, l := range h.f.Leases() {
		h.op(t0+11*day, releaseOp(l.Id))
	}
	if a := h.f.LicenseAlarms(t0+11*day, 7*day); len(a) != 0 {
		t.Fatalf("alarms after the cause went: %+v", a)
	}
	roundTrip(t, h.f)
}

// The O(1) countdown aggregate equals a brute-force sum over live leases
// through random grants, renewals, releases, expiries and rebases (with a
// clock that sometimes steps back, as with a new leader), and survives a
// snapshot round trip.
func TestCountdownAggregateMatchesLeases(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	h := formed(t)
	f := feat("sim", 1, 50)
	f.Model, f.UsageHours = modelCountdown, 100000
	h.mustEnroll(t0, lic("C1", t0, t0+365*day, f))
	now := t0
	var live []uint64
	for i := 0; i < 2000; i++ {
		now += int64(rng.IntN(5000))
		switch k := rng.IntN(10); {
		case k < 4:
			if r := h.op(now, grantAs(fmt.Sprintf("r%d", i), "sim", uint32(1+rng.IntN(3)), "u", "h")); r.Code == fsmpb.Code_OK {
				live = append(live, r.Lease.Id)
			}
		case k < 7 && len(live) > 0:
			h.op(now, renewOp(live[rng.IntN(len(live))]))
		case k < 9 && len(live) > 0:
			j := rng.IntN(len(live))
			h.op(now, releaseOp(live[j]))
			live = append(live[:j], live[j+1:]...)
		default:
			now -= int64(rng.IntN(3000)) // a new leader whose clock is behind
			h.apply(now, rebaseCmd())
		}
		h.f.mu.RLock()
		s := h.f.s
		want := s.model.countdown["sim"]
		for _, e := range s.leases {
			if e.Feature == "sim" && now > e.AccountedMs {
				want += (now - e.AccountedMs) * int64(e.Count)
			}
		}
		got := s.countdownUsed("sim", now)
		h.f.mu.RUnlock()
		if got != want {
			t.Fatalf("step %d: countdownUsed = %d, brute force %d", i, got, want)
		}
	}
	g := roundTrip(t, h.f)
	if a, b := h.f.CountdownUse(now)["sim"], g.CountdownUse(now)["sim"]; a != b {
		t.Fatalf("after restore %v, before %v", b, a)
	}
}

func alarmsOf(h *harness, now int64, kind string) []Alarm {
	var out []Alarm
	for _, a := range h.f.LicenseAlarms(now, day) {
		if a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}

// Over capacity is judged per version threshold, as grants are: a v5
// license expiring under v5 leases raises the alarm although v3 seats are
// free, and the usage rows never put a v5 lease on a v3 seat.
func TestOverCapacityPerVersion(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L5", t0, t0+10*day, feat("cad", 5, 2)))
	h.mustEnroll(t0, lic("L3", t0, t0+365*day, feat("cad", 3, 5)))
	a := h.mustGrant(t0, "a", "cad", 5, 1)
	b := h.mustGrant(t0, "b", "cad", 5, 1)
	if al := h.f.LicenseAlarms(t0+5*day, day); len(al) != 0 {
		t.Fatalf("alarms while every lease has a v5 seat: %+v", al)
	}
	// L5 expires: the two v5 leases have no v5 seat; 5 v3 seats are free.
	after := t0 + 11*day
	want := "feature cad is over capacity at version 5 and above: 2 seats in use, 0 licensed"
	al := h.f.LicenseAlarms(after, day)
	if len(al) != 2 || al[0].Kind != AlarmLicenseExpired || al[0].Subject != "L5" ||
		al[1].Kind != AlarmOverCapacity || al[1].Subject != "cad" || al[1].Message != want {
		t.Fatalf("alarms after L5 expired: %+v\nwant license_expired L5 and %q", al, want)
	}
	check := func(now int64, want ...Usage) {
		t.Helper()
		if got := h.f.Usage(now); !slices.Equal(got, want) {
			t.Fatalf("usage:\n got %v\nwant %v", got, want)
		}
	}
	check(after, Usage{"cad", 3, 5, 0, ""}, Usage{"cad", 5, 0, 2, ""})
	// v3 checkouts still get the seats the v5 leases do not sit on (the
	// v5 leases count against every threshold at or below 5).
	c := h.mustGrant(after, "c", "cad", 3, 3)
	wantResult(t, h.op(after, grantOp("d", "cad", 3, 1)), fsmpb.Code_NO_SEAT, "no seat left for cad v 3 (5 of 5 in use)")
	wantResult(t, h.op(after, grantOp("e", "cad", 5, 1)), fsmpb.Code_VERSION_TOO_NEW, "highest licensed version is 3")
	check(after, Usage{"cad", 3, 5, 3, ""}, Usage{"cad", 5, 0, 2, ""})
	if al := alarmsOf(h, after, AlarmOverCapacity); len(al) != 1 || al[0].Message != want {
		t.Fatalf("over-capacity alarm with the v3 seats taken: %+v", al)
	}
	// Removing the expired license clears license_expired, not the cause
	// of the over-capacity alarm.
	wantResult(t, h.apply(after, removeCmd("L5")).(*fsmpb.OpResult), fsmpb.Code_OK, "license L5 removed")
	if al := h.f.LicenseAlarms(after, day); len(al) != 1 || al[0].Kind != AlarmOverCapacity || al[0].Message != want {
		t.Fatalf("alarms after removing L5: %+v", al)
	}
	if g := roundTrip(t, h.f); !slices.Equal(g.LicenseAlarms(after, day), h.f.LicenseAlarms(after, day)) {
		t.Fatalf("restored alarms %+v", g.LicenseAlarms(after, day))
	}
	// The alarm clears as the v5 leases end: one released, one expired.
	h.op(after, releaseOp(a.Id))
	if al := alarmsOf(h, after, AlarmOverCapacity); len(al) != 1 || !strings.HasSuffix(al[0].Message, "at version 5 and above: 1 seats in use, 0 licensed") {
		t.Fatalf("over-capacity alarm with one v5 lease left: %+v", al)
	}
	// b's ttl ran out long ago (never renewed); c, granted at after, lives on.
	h.apply(after+second, expireCmd())
	if _, live := h.f.Lease(b.Id); live {
		t.Fatalf("v5 lease %d outlived its ttl", b.Id)
	}
	if _, live := h.f.Lease(c.Id); !live {
		t.Fatalf("v3 lease %d ended early", c.Id)
	}
	if al := h.f.LicenseAlarms(after+second, day); len(al) != 0 {
		t.Fatalf("alarms after the v5 leases ended: %+v", al)
	}
	check(after+second, Usage{"cad", 3, 5, 3, ""})
}

// The over-capacity alarm names the threshold with the most seats beyond
// the licensed ones (the highest on ties), and counts tied named seats at
// any version.
func TestOverCapacityThreshold(t *testing.T) {
	t.Run("tie names the higher version", func(t *testing.T) {
		h := formed(t)
		h.mustEnroll(t0, lic("L5", t0, t0+day, feat("cad", 5, 2)))
		h.mustEnroll(t0, lic("L3", t0, t0+365*day, feat("cad", 3, 5)))
		h.mustGrant(t0, "a", "cad", 5, 2)
		h.mustGrant(t0, "b", "cad", 3, 5)
		// Version 5: 2 in use, 0 licensed; version 3: 7 in use, 5 licensed.
		al := alarmsOf(h, t0+2*day, AlarmOverCapacity)
		if len(al) != 1 || !strings.HasSuffix(al[0].Message, "at version 5 and above: 2 seats in use, 0 licensed") {
			t.Fatalf("alarms: %+v", al)
		}
	})
	t.Run("lower threshold with more excess", func(t *testing.T) {
		h := formed(t)
		h.mustEnroll(t0, lic("L5", t0, t0+day, feat("cad", 5, 1)))
		h.mustEnroll(t0, lic("L2", t0, t0+day, feat("cad", 2, 3)))
		h.mustEnroll(t0, lic("K2", t0, t0+365*day, feat("cad", 2, 1)))
		h.mustGrant(t0, "a", "cad", 5, 1)
		h.mustGrant(t0, "b", "cad", 2, 3)
		// Version 5: 1 in use, 0 licensed; version 2: 4 in use, 1 licensed.
		al := alarmsOf(h, t0+2*day, AlarmOverCapacity)
		if len(al) != 1 || !strings.HasSuffix(al[0].Message, "at version 2 and above: 4 seats in use, 1 licensed") {
			t.Fatalf("alarms: %+v", al)
		}
	})
	t.Run("named seats", func(t *testing.T) {
		h := formed(t)
		f := feat("view", 2, 2)
		f.Model = modelNamedUser
		h.mustEnroll(t0, lic("N1", t0, t0+day, f))
		g := feat("view", 2, 1)
		g.Model = modelNamedUser
		h.mustEnroll(t0, lic("N2", t0, t0+365*day, g))
		for _, u := range []string{"alice", "bob", "carol"} {
			l := h.op(t0, grantAs("v-"+u, "view", 1, u, "h")).Lease
			h.op(t0, releaseOp(l.Id)) // tied seats count, in use or not
		}
		al := alarmsOf(h, t0+2*day, AlarmOverCapacity)
		if len(al) != 1 || al[0].Subject != "view" || !strings.HasSuffix(al[0].Message, "over capacity at any version: 3 seats in use, 1 licensed") {
			t.Fatalf("alarms: %+v", al)
		}
	})
}
