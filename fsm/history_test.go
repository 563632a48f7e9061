package fsm

import (
	"bytes"
	"math"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

func startHistoryCmd() *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_StartHistory{StartHistory: &fsmpb.StartHistory{}}}
}

func userGrant(req, feature, user, host string, count uint32) *fsmpb.Op {
	op := grantOp(req, feature, 0, count)
	op.GetGrant().User, op.GetGrant().Host = user, host
	op.GetGrant().TtlMs = maxTTLMs
	return op
}

// base is a whole hour, so minute and hour buckets start on it.
var base = floorTo(t0, hourMs) + 2*hourMs

// historyScenario: cad has 2 seats. At base+0 alice takes 1; at +15 min bob
// takes 1; at +30 min carol is denied (no seat); at +45 min alice releases;
// at +60 min bob releases. Then statistics go off for an hour, and back on.
func historyScenario(t *testing.T) *harness {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+400*day, feat("cad", 1, 2)))
	wantResult(t, h.res(base-10*minute, startHistoryCmd()), fsmpb.Code_OK, "started")
	wantResult(t, h.res(base-9*minute, startHistoryCmd()), fsmpb.Code_ALREADY_EXISTS, "started")
	h.apply(base-5*minute, rulesCmd([]*fsmpb.RuleGroup{{Name: "design", Kind: "user", Members: []string{"alice", "bob"}}}))
	a := h.op(base, userGrant("r1", "cad", "alice", "ws1", 1)).Lease
	b := h.op(base+15*minute, userGrant("r2", "cad", "bob", "ws2", 1)).Lease
	wantResult(t, h.op(base+30*minute, userGrant("r3", "cad", "carol", "ws3", 1)), fsmpb.Code_NO_SEAT, "")
	wantResult(t, h.op(base+31*minute, userGrant("r4", "nosuch", "carol", "ws3", 1)), fsmpb.Code_UNKNOWN_FEATURE, "")
	h.op(base+45*minute, releaseOp(a.Id))
	h.op(base+60*minute, releaseOp(b.Id))
	off, on := false, true
	wantResult(t, h.res(base+2*hour, settingsCmd("", &fsmpb.AdminSettings{Statistics: &off})), fsmpb.Code_OK, "")
	// Denied while off: not counted.
	wantResult(t, h.op(base+2*hour+5*minute, userGrant("r5", "cad", "dave", "ws4", 3)), fsmpb.Code_NO_SEAT, "")
	wantResult(t, h.res(base+3*hour, settingsCmd("", &fsmpb.AdminSettings{Statistics: &on})), fsmpb.Code_OK, "")
	h.op(base+3*hour+30*minute, userGrant("r6", "cad", "alice", "ws1", 2))
	h.apply(base+4*hour, batchCmd(renewOp())) // moves the last committed now
	return h
}

func TestHistoryUsageBuckets(t *testing.T) {
	h := historyScenario(t)
	for _, f := range []*FSM{h.f, roundTrip(t, h.f)} {
		one, _, err := f.HistoryUsage(HistoryQuery{Feature: "cad", From: base, To: base + 4*hour, Step: "hour"})
		if err != nil {
			t.Fatal(err)
		}
		if len(one.Points) != 4 {
			t.Fatalf("points %+v", one.Points)
		}
		p := one.Points[0]
		// Seat-minutes: alice 45 + bob 45 = 90 over 60 collected minutes.
		if p.Peak != 2 || math.Abs(p.Average-1.5) > 1e-9 || p.Capacity != 2 || p.Denials["no_seat"] != 1 || !p.Collected || p.CollectedMs != hourMs {
			t.Fatalf("first hour %+v", p)
		}
		if q := one.Points[1]; q.Peak != 0 || q.Average != 0 || !q.Collected {
			t.Fatalf("second hour %+v", q)
		}
		if q := one.Points[2]; q.Collected || len(q.Denials) != 0 {
			t.Fatalf("statistics-off hour %+v, want not collected and no denial", q)
		}
		// 2 seats for the last 30 minutes (accounted up to the last now).
		if q := one.Points[3]; q.Peak != 2 || math.Abs(q.Average-1) > 1e-9 {
			t.Fatalf("fourth hour %+v", q)
		}
		mins, _, err := f.HistoryUsage(HistoryQuery{Feature: "cad", From: base, To: base + hour, Step: "minute"})
		if err != nil {
			t.Fatal(err)
		}
		if len(mins.Points) != 60 || mins.Points[14].Peak != 1 || mins.Points[15].Peak != 2 || mins.Points[44].Peak != 2 || mins.Points[45].Peak != 1 || mins.Points[30].Denials["no_seat"] != 1 {
			t.Fatalf("minutes %+v", mins.Points[14:16])
		}
		_, all, err := f.HistoryUsage(HistoryQuery{From: base, To: base + hour, Step: "day"})
		if err != nil {
			t.Fatal(err)
		}
		if len(all.Features) != 2 || all.Features[0].Feature != unknownFeature || all.Features[0].Points[0].Denials["unknown_feature"] != 1 {
			t.Fatalf("all features %+v", all.Features)
		}
		since, totals := f.DenialTotals()
		if since != base-10*minute || len(totals) != 2 || totals[0].Feature != unknownFeature || totals[1] != (DenialTotal{"cad", "no seat", 1, base + 30*minute}) {
			t.Fatalf("denial totals %d %+v", since, totals)
		}
	}
}

func TestHistoryUsersUtilizationCompliance(t *testing.T) {
	h := historyScenario(t)
	users, err := h.f.HistoryUsers(HistoryQuery{Feature: "cad", By: "user", From: base, To: base + 4*hour})
	if err != nil {
		t.Fatal(err)
	}
	// alice 45 min + 2 seats × 30 min (live), bob 45 min.
	want := []UserRow{{"alice", 1.75}, {"bob", 0.75}}
	if len(users.Rows) != 2 || users.Rows[0] != want[0] || users.Rows[1] != want[1] {
		t.Fatalf("users %+v", users.Rows)
	}
	groups, _ := h.f.HistoryUsers(HistoryQuery{By: "group", From: base, To: base + 4*hour})
	if len(groups.Rows) != 1 || groups.Rows[0] != (UserRow{"design", 2.5}) {
		t.Fatalf("groups %+v", groups.Rows)
	}
	top, _ := h.f.HistoryUsers(HistoryQuery{By: "host", From: base, To: base + 4*hour, Top: 1})
	if len(top.Rows) != 1 || top.Rows[0].Name != "ws1" {
		t.Fatalf("top hosts %+v", top.Rows)
	}
	u, err := h.f.HistoryUtilization(HistoryQuery{Feature: "cad", From: base, To: base + hour})
	if err != nil {
		t.Fatal(err)
	}
	// 15 min at 1, 30 min at 2, 15 min at 1: 0 seats never.
	if u.CollectedMs != hourMs || len(u.Buckets) != 3 || u.Buckets[0].Ms != 0 || u.Buckets[1].Ms != 30*minute || u.Buckets[2].Share != 0.5 {
		t.Fatalf("utilization %+v", u)
	}
	c, err := h.f.HistoryCompliance(HistoryQuery{From: base, To: base + 4*hour, Levels: DefaultComplianceLevels})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Features) != 1 || c.Features[0].Peak != 2 || c.Features[0].Entitlement != 2 || c.Features[0].Level != 2 || c.Features[0].LevelName != "notice" {
		t.Fatalf("compliance %+v", c.Features)
	}
}

func TestComplianceLevels(t *testing.T) {
	for _, c := range []struct {
		ent, peak uint32
		over      int64
		want      int
	}{{10, 5, 0, 1}, {10, 9, 0, 1}, {10, 10, 0, 2}, {10, 10, 1, 3}, {10, 11, 5, 3}, {10, 12, 0, 4}, {10, 13, 0, 5}, {0, 0, 0, 1}, {0, 1, 0, 5}} {
		if got, _ := ComplianceLevel(c.ent, c.peak, c.over, DefaultComplianceLevels); got != c.want {
			t.Errorf("level(%d of %d, over %d) = %d, want %d", c.peak, c.ent, c.over, got, c.want)
		}
	}
}

func TestHistoryNotStartedAndGate(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+400*day, feat("cad", 1, 2)))
	h.op(t0+minute, grantOp("r1", "cad", 0, 1))
	if _, _, err := h.f.HistoryUsage(HistoryQuery{Feature: "cad", From: t0, To: t0 + hour, Step: "hour"}); err != ErrNoHistory {
		t.Fatalf("before StartHistory: %v", err)
	}
	if f, _ := FormatOf(startHistoryCmd()); f != 4 {
		t.Fatalf("StartHistory format %d", f)
	}
	d := uint32(3)
	if f, _ := FormatOf(settingsCmd("s", &fsmpb.AdminSettings{HistoryHourDays: &d})); f != 4 {
		t.Fatalf("retention settings format %d", f)
	}
	// A format-3 member halts on StartHistory instead of diverging.
	h.f.SetMaxFormat(3)
	h.apply(t0+2*minute, startHistoryCmd())
	if h.f.Halted() == nil {
		t.Fatal("a format-3 FSM applied StartHistory")
	}
}

func TestHistoryRetentionTrims(t *testing.T) {
	h := historyScenario(t)
	one, two := uint32(1), uint32(2)
	wantResult(t, h.res(base+4*hour, settingsCmd("", &fsmpb.AdminSettings{HistoryMinuteDays: &one, HistoryHourDays: &two})), fsmpb.Code_OK, "")
	bad := uint32(0)
	wantResult(t, h.res(base+4*hour, settingsCmd("", &fsmpb.AdminSettings{HistoryHourDays: &bad})), fsmpb.Code_INVALID_ARGUMENT, "history retention")
	h.apply(base+3*day, expireCmd()) // ends the live lease, trims
	fh := h.f.s.hist.features["cad"]
	mc, hc := h.f.s.retention(base + 3*day)
	if len(fh.minutes) == 0 || fh.minutes[0].StartMs < mc || len(fh.hours) == 0 || fh.hours[0].StartMs < hc {
		t.Fatalf("not trimmed: minutes from %v, hours from %v", fh.minutes[0].StartMs-mc, fh.hours[0].StartMs-hc)
	}
	for k := range h.f.s.hist.usage {
		if k.hour < hc {
			t.Fatalf("usage hour %d kept before cutoff %d", k.hour, hc)
		}
	}
	one2, _, _ := h.f.HistoryUsage(HistoryQuery{Feature: "cad", From: base, To: base + hour, Step: "hour"})
	if one2.Points[0].Collected {
		t.Fatalf("a trimmed hour is shown as collected: %+v", one2.Points[0])
	}
}

// Two FSMs fed the same log hold byte-identical snapshots, and a restored
// one goes on identically.
func TestHistoryDeterministic(t *testing.T) {
	a, b := historyScenario(t), historyScenario(t)
	if !bytes.Equal(a.f.MarshalSnapshot(), b.f.MarshalSnapshot()) {
		t.Fatal("same log, different snapshots")
	}
	c := &harness{t: t, f: roundTrip(t, a.f), index: a.index, session: a.session}
	for _, x := range []*harness{a, c} {
		x.op(base+5*hour, userGrant("r9", "cad", "erin", "ws9", 1))
		x.apply(base+6*hour, expireCmd())
	}
	if !bytes.Equal(a.f.MarshalSnapshot(), c.f.MarshalSnapshot()) {
		t.Fatal("restored FSM diverged")
	}
}

// A leader clock jump of a year with seats in use makes at most the
// retention's buckets, not a year of minutes.
func TestHistoryClockJumpIsBounded(t *testing.T) {
	h := historyScenario(t)
	h.apply(base+365*day, batchCmd(renewOp()))
	h.op(base+365*day, userGrant("late", "cad", "zed", "ws0", 1)) // ends nothing; accounts a year at 2 seats
	fh := h.f.s.hist.features["cad"]
	if n := len(fh.minutes); n > DefaultHistoryMinuteDays*24*60+2 {
		t.Fatalf("%d minute buckets after a year's jump", n)
	}
	if n := len(fh.hours); n > 366*24+8 {
		t.Fatalf("%d hour buckets after a year's jump", n)
	}
	one, _, err := h.f.HistoryUsage(HistoryQuery{Feature: "cad", From: base + 364*day, To: base + 364*day + hour, Step: "hour"})
	if err != nil || len(one.Points) != 1 || one.Points[0].Peak != 2 || one.Points[0].Average != 2 {
		t.Fatalf("a day before the jump's end: %+v %v", one, err)
	}
}
