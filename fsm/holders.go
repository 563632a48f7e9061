package fsm

import (
	"slices"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/proto/fsmpb"
)

// LicensedVersion is the version of the license entry a lease's seat sits
// on, as a wire pair: Version is the whole number (or a dotted version's
// first component), Text the dotted version as licensed (empty for whole
// numbers).
type LicensedVersion struct {
	Version uint32
	Text    string
}

// licensedOf is the wire pair of a supply row: its licensed text, else
// the key's shortest text.
func licensedOf(r versionCount) LicensedVersion {
	if r.text != "" {
		return LicensedVersion{r.version.Major(), r.text}
	}
	v, text := wirePair(r.version)
	return LicensedVersion{v, text}
}

// LicensedVersions tells, for every live lease, the version of the license
// entry its seat sits on at nowMs: the version a listing shows (a lease
// asked for "any version", 0, sits on a real licensed version). It places
// leases exactly as state.usage counts them (highest requested version
// first, each into the lowest row at or above it with room; named seats at
// version 0 last, in user order), so a holder listing and the per-version
// rows agree. A lease that fits no seat shows the highest licensed version
// when that serves it, else its requested version. Read-only: never called
// from Apply.
func (f *FSM) LicensedVersions(nowMs int64) map[uint64]LicensedVersion {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	out := map[uint64]LicensedVersion{}
	byFeature := map[string][]*lease{}
	for _, id := range s.sortedLeaseIDs() {
		l := s.leases[id]
		byFeature[l.Feature] = append(byFeature[l.Feature], l)
	}
	names := make([]string, 0, len(byFeature))
	for name := range byFeature {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		rows := s.supply(name, nowMs, false)
		used := make([]uint64, len(rows))
		// place puts n seats asked at version v and returns the version of
		// the row that took the first one.
		place := func(v featver.Key, n uint64) LicensedVersion {
			got, placed := LicensedVersion{}, false
			j, _ := slices.BinarySearchFunc(rows, v, cmpVersion)
			for ; j < len(rows) && n > 0; j++ {
				take := min(rows[j].count-min(rows[j].count, used[j]), n)
				if take > 0 && !placed {
					got, placed = licensedOf(rows[j]), true
				}
				used[j] += take
				n -= take
			}
			if n > 0 && len(rows) > 0 && rows[len(rows)-1].version >= v {
				used[len(rows)-1] += n
				if !placed {
					got, placed = licensedOf(rows[len(rows)-1]), true
				}
			}
			if !placed {
				ver, text := wirePair(v)
				got = LicensedVersion{ver, text}
			}
			return got
		}
		leases := slices.Clone(byFeature[name])
		slices.SortStableFunc(leases, func(a, b *lease) int {
			switch va, vb := leaseVersion(a), leaseVersion(b); {
			case va > vb:
				return -1
			case va < vb:
				return 1
			}
			return 0
		})
		var namedLeases []*lease
		for _, l := range leases {
			if l.NamedUser {
				namedLeases = append(namedLeases, l)
				continue
			}
			out[l.Id] = place(leaseVersion(l), uint64(l.Count))
		}
		// Named seats: one per tied user, any version, after the leases.
		users := make([]string, 0, len(s.model.named[name]))
		for u := range s.model.named[name] {
			users = append(users, u)
		}
		slices.Sort(users)
		seatOf := map[string]LicensedVersion{}
		for _, u := range users {
			seatOf[u] = place(0, 1)
		}
		for _, l := range namedLeases {
			v, ok := seatOf[l.User]
			if !ok {
				v = place(leaseVersion(l), 1)
			}
			out[l.Id] = v
		}
	}
	return out
}

// NextLeaseID returns the id the next grant will get: lease ids are handed
// out in order from 1, so an id at or above it never existed (a release
// of it is an operator's typo, not a lease that already ended).
func (f *FSM) NextLeaseID() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.nextLeaseID
}

// maxSeats is how many seats a single checkout of feature at version
// could ever get at now with no other lease held: the seats of valid
// licenses at that version or above, soft-limit overdraft included. A
// package's component counts against the package's seats.
func (s *state) maxSeats(feature string, version featver.Key, nowMs int64) uint64 {
	if pkg := s.packageFor(feature); pkg != "" {
		feature = pkg
	}
	var n uint64
	for _, v := range s.supply(feature, nowMs, true) {
		if v.version >= version {
			n += v.count
		}
	}
	return n
}

// NeverFitsPrefix starts the message of a NO_SEAT refusal that no freed
// seat can cure: the grant asks for more seats than its feature has in all
// at its version or above (overdraft included). Members answer such a
// refusal FAILED_PRECONDITION (client.ErrNeverFits), not the retryable
// RESOURCE_EXHAUSTED.
const NeverFitsPrefix = "can never fit"

// seatsAsked is how many seats g takes: one for a named user (one seat per
// user, whatever the count), else its count.
func (s *state) seatsAsked(now int64, g *fsmpb.Grant) uint64 {
	if s.terms(g.GetFeature(), now).model == modelNamedUser {
		return 1
	}
	return uint64(max(g.GetCount(), 1))
}

// neverFitsResult is the "can never fit" refusal of g when it asks for
// more seats than its feature has in all at its version or above, else
// nil. Decided in Apply at leader time, so every member and every retry of
// the request id gives the same answer.
func (s *state) neverFitsResult(now int64, g *fsmpb.Grant) *fsmpb.OpResult {
	k, err := featver.Of(g.GetVersion(), g.GetVersionText())
	if err != nil {
		return nil
	}
	n, total := s.seatsAsked(now, g), s.maxSeats(g.GetFeature(), k, now)
	if n <= total {
		return nil
	}
	at := ""
	if k > 0 {
		at = " at version " + featver.Display(g.GetVersion(), g.GetVersionText()) + " or above"
	}
	return result(fsmpb.Code_NO_SEAT, "%s: %d seats of %s asked, %d licensed%s; ask for at most %d", NeverFitsPrefix, n, g.GetFeature(), total, at, total)
}
