package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Issue 11, point 1: a named-user v1 license (1 seat, alice tied) next to a
// concurrent v2 license (1 seat). Seats of one feature are one pool whatever
// the model of the license that brings them: alice's tied seat and one
// concurrent lease fill it, so carol is refused, and the FSM's own
// over-capacity alarm never fires.
func TestMixedModelsDoNotOverGrant(t *testing.T) {
	h := formed(t)
	named := feat("cad", 1, 1)
	named.Model = modelNamedUser
	h.mustEnroll(t0, lic("N1", t0, t0+365*day, named))
	a := h.op(t0, grantAs("alice-1", "cad", 1, "alice", "h1"))
	wantResult(t, a, fsmpb.Code_OK, "")
	h.op(t0, releaseOp(a.Lease.Id)) // alice stays tied
	h.mustEnroll(t0, lic("C2", t0, t0+365*day, feat("cad", 2, 1)))
	wantResult(t, h.op(t0, grantAs("bob-1", "cad", 1, "bob", "h2")), fsmpb.Code_OK, "")
	wantResult(t, h.op(t0, grantAs("carol-1", "cad", 1, "carol", "h3")), fsmpb.Code_NO_SEAT, "no seat left for cad")
	if al := alarmsOf(h, t0, AlarmOverCapacity); len(al) != 0 {
		t.Fatalf("over-capacity alarm after grants on hard limits: %+v", al)
	}
	var held uint64
	for _, u := range h.f.Usage(t0) {
		held += uint64(u.InUse)
	}
	if held != 2 {
		t.Fatalf("%d seats in use, 2 licensed: %+v", held, h.f.Usage(t0))
	}
	roundTrip(t, h.f)
}

// The other way round: the feature's model is named-user (highest version)
// while concurrent leases from before hold seats; a new named user must
// not be tied past the pool.
func TestMixedModelsNamedAfterConcurrent(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("C1", t0, t0+365*day, feat("cad", 1, 1)))
	wantResult(t, h.op(t0, grantAs("bob-1", "cad", 1, "bob", "h2")), fsmpb.Code_OK, "")
	named := feat("cad", 2, 1)
	named.Model = modelNamedUser
	h.mustEnroll(t0, lic("N2", t0, t0+365*day, named))
	wantResult(t, h.op(t0, grantAs("alice-1", "cad", 1, "alice", "h1")), fsmpb.Code_OK, "")
	wantResult(t, h.op(t0, grantAs("alice-2", "cad", 1, "alice", "h4")), fsmpb.Code_OK, "") // shares her seat
	wantResult(t, h.op(t0, grantAs("carol-1", "cad", 1, "carol", "h3")), fsmpb.Code_NO_SEAT, "no seat left for cad")
	if al := alarmsOf(h, t0, AlarmOverCapacity); len(al) != 0 {
		t.Fatalf("over-capacity alarm after grants on hard limits: %+v", al)
	}
}

// After any sequence of grants, releases, expiries and recycling across
// mixed models on hard limits (licenses neither expire nor go), the seats
// in use fit the licensed seats at every version threshold and the
// over-capacity alarm never fires.
func TestMixedModelsNeverOverCapacity(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0x11))
			h := formed(t)
			models := []string{modelConcurrent, modelNamedUser, modelCountdown}
			now := t0
			for i := range 4 {
				f := feat("cad", uint32(r.IntN(4)), uint32(1+r.IntN(3)))
				f.Model = models[r.IntN(len(models))]
				if f.Model == modelCountdown {
					f.UsageHours = 1_000_000
				}
				// Licenses become valid during the run, so the feature's
				// model changes under tied seats and live leases; none ends.
				h.mustEnroll(now, lic(fmt.Sprint("L", i), t0+int64(r.IntN(20))*day, t0+365*day, f))
			}
			var live []uint64
			for i := range 600 {
				now += int64(r.IntN(200)) * day / 1000
				switch k := r.IntN(10); {
				case k < 6:
					u := fmt.Sprint("u", r.IntN(6))
					op := grantAs(fmt.Sprint("r", i), "cad", uint32(1+r.IntN(2)), u, fmt.Sprint("h", r.IntN(3)))
					op.GetGrant().Version = uint32(r.IntN(4))
					if res := h.op(now, op); res.Code == fsmpb.Code_OK {
						live = append(live, res.Lease.Id)
					}
				case k < 8 && len(live) > 0:
					j := r.IntN(len(live))
					h.op(now, releaseOp(live[j]))
					live = append(live[:j], live[j+1:]...)
				case k < 9:
					h.apply(now, &fsmpb.Command{Cmd: &fsmpb.Command_RecycleSweep{RecycleSweep: &fsmpb.RecycleSweep{}}})
				default:
					h.apply(now, expireCmd())
				}
				if al := alarmsOf(h, now, AlarmOverCapacity); len(al) != 0 {
					t.Fatalf("step %d: over-capacity alarm on hard limits: %+v", i, al)
				}
				checkHall(t, h, now)
			}
			roundTrip(t, h.f)
		})
	}
}

// checkHall recounts, from the leases and tied seats, the seats in use at
// each version threshold and checks they fit the licensed seats there.
func checkHall(t *testing.T, h *harness, now int64) {
	t.Helper()
	h.f.mu.RLock()
	defer h.f.mu.RUnlock()
	s := h.f.s
	features := map[string]bool{}
	for _, l := range s.licenses {
		for _, f := range l.Features {
			features[f.Name] = true
		}
	}
	for feature := range features {
		for th := uint32(0); th <= 8; th++ {
			var demand, supply uint64
			if th == 0 {
				demand += uint64(len(s.model.named[feature]))
			}
			for _, e := range s.leases {
				if l := e; l.Feature == feature && !l.NamedUser && l.Version >= th {
					demand += uint64(l.Count)
				}
			}
			for f := range s.validEntries(feature, now) {
				if f.Version >= th {
					supply += uint64(f.Count)
				}
			}
			if demand > supply {
				t.Fatalf("%s at version >= %d: %d seats in use, %d licensed", feature, th, demand, supply)
			}
		}
	}
}
