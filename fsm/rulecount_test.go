package fsm

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

// recountUsedBy is the definition the rule counters keep: the seats of
// feature held by rule r's subject, counted over every lease and seat.
func recountUsedBy(s *state, r *fsmpb.AccessRule) uint64 {
	var n uint64
	for _, seat := range s.model.named[r.Feature] {
		onHost := false
		if isHostRule(r) {
			for _, e := range s.leases {
				if l := e; l.NamedUser && l.Feature == seat.Feature && l.User == seat.User && s.matches(r, l.User, l.Host) {
					onHost = true
				}
			}
		}
		if s.matches(r, seat.User, "") || onHost {
			n++
		}
	}
	for _, e := range s.leases {
		if l := e; l.Feature == r.Feature && !l.NamedUser && s.matches(r, l.User, l.Host) {
			n += uint64(l.Count)
		}
	}
	return n
}

// checkRuleCounters compares each rule's counter with a recount, and the
// incremental index with one rebuilt from scratch.
func checkRuleCounters(t *testing.T, f *FSM, step int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	if s.model.rules == nil {
		if s.model.ri != nil {
			t.Fatalf("step %d: rule index without rules", step)
		}
		return
	}
	for i, r := range s.model.rules.Rules {
		if got, want := s.usedBy(i), recountUsedBy(s, r); got != want {
			t.Fatalf("step %d: rule %s (%s %s %s) counts %d, recount %d", step, r.Name, r.Kind, r.Subject, r.Value, got, want)
		}
	}
	kept := s.model.ri
	s.rebuildRuleIndex()
	if !reflect.DeepEqual(kept, s.model.ri) {
		t.Fatalf("step %d: incremental rule index\n%+v\nrebuilt\n%+v", step, kept, s.model.ri)
	}
	s.model.ri = kept
}

// randomRules draws rules of every kind and subject over two features,
// named-user view and concurrent cad, and a few groups (one name used
// twice: only the first counts).
func randomRules(r *rand.Rand) *fsmpb.Command {
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	hosts := []string{"h0", "h1", "h2", "h3"}
	groups := []*fsmpb.RuleGroup{
		{Name: "g", Kind: "user", Members: []string{"u0", "u1", "u2"}},
		{Name: "g", Kind: "user", Members: []string{"u3"}},
		{Name: "hg", Kind: "host", Members: []string{"h0", "h1"}},
		{Name: "e", Kind: "host", Members: []string{""}},
	}
	var rules []*fsmpb.AccessRule
	for i := range 1 + r.IntN(6) {
		kinds := []string{"max", "reserve", "include", "exclude", "max", "reserve"}
		subj := []string{"user", "host", "group", "host_group"}[r.IntN(4)]
		var value string
		switch subj {
		case "user":
			value = users[r.IntN(len(users))]
		case "host":
			value = hosts[r.IntN(len(hosts))]
		case "group":
			value = "g"
		default:
			value = []string{"hg", "e"}[r.IntN(2)]
		}
		ru := rule(fmt.Sprint("r", i), kinds[r.IntN(len(kinds))], subj, value, uint32(r.IntN(12)))
		ru.Feature = []string{"cad", "view"}[r.IntN(2)]
		rules = append(rules, ru)
	}
	return rulesCmd(groups, rules...)
}

// The rule counters equal a recount after every command of random
// sequences of grants (both models), releases, renewals, expiries,
// rebases, recycling and rule changes, and across restores from a
// snapshot.
func TestRuleCountersMatchRecount(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0x66))
			h := formed(t)
			named := feat("view", 1, 8)
			named.Model = modelNamedUser
			h.mustEnroll(t0, lic("M1", t0-day, t0+365*day, feat("cad", 1, 20), named))
			h.apply(t0, randomRules(r))
			now := t0
			var live []uint64
			for i := range 500 {
				now += int64(r.IntN(4000)) * second
				switch k := r.IntN(20); {
				case k < 9:
					g := grantAs(fmt.Sprint("q", i), []string{"cad", "view"}[r.IntN(2)], uint32(1+r.IntN(2)),
						fmt.Sprint("u", r.IntN(6)), []string{"h0", "h1", "h2", "h3", ""}[r.IntN(5)])
					g.GetGrant().TtlMs = int64(1+r.IntN(60)) * minute
					if res := h.op(now, g); res.Code == fsmpb.Code_OK {
						live = append(live, res.Lease.Id)
					}
				case k < 12 && len(live) > 0:
					j := r.IntN(len(live))
					h.op(now, releaseOp(live[j]))
					live = slices.Delete(live, j, j+1)
				case k < 14 && len(live) > 0:
					h.op(now, renewOp(live[r.IntN(len(live))]))
				case k < 15:
					h.apply(now, expireCmd())
				case k < 16:
					h.apply(now, rebaseCmd())
				case k < 17:
					now += 31 * day
					h.apply(now, &fsmpb.Command{Cmd: &fsmpb.Command_RecycleSweep{RecycleSweep: &fsmpb.RecycleSweep{}}})
				case k < 18:
					h.apply(now, randomRules(r))
				case k < 19:
					h.f = roundTrip(t, h.f)
				default:
					h.apply(now, rulesCmd(nil))
				}
				checkRuleCounters(t, h.f, i)
			}
		})
	}
}

// A tied named user's sessions share one seat, up to maxNamedUserLeases
// live leases of the feature; the next is refused until one ends.
func TestNamedUserLeaseCap(t *testing.T) {
	h := formed(t)
	named := feat("view", 1, 2)
	named.Model = modelNamedUser
	h.mustEnroll(t0, lic("N1", t0, t0+365*day, named))
	var first uint64
	for i := range maxNamedUserLeases {
		res := h.op(t0, grantAs(fmt.Sprint("a", i), "view", 1, "alice", "h"))
		wantResult(t, res, fsmpb.Code_OK, "")
		if i == 0 {
			first = res.Lease.Id
		}
	}
	wantResult(t, h.op(t0, grantAs("a-more", "view", 1, "alice", "h")), fsmpb.Code_NO_SEAT,
		fmt.Sprintf("user alice already holds %d leases of view, the most one named user may hold at once: release one first", maxNamedUserLeases))
	wantResult(t, h.op(t0, grantAs("b", "view", 1, "bob", "h")), fsmpb.Code_OK, "") // others are not affected
	h.op(t0, releaseOp(first))
	wantResult(t, h.op(t0, grantAs("a-again", "view", 1, "alice", "h")), fsmpb.Code_OK, "")
	roundTrip(t, h.f)
}
