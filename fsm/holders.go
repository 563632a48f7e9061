package fsm

import (
	"slices"

	"github.com/triadlm/triad/proto/fsmpb"
)

// LicensedVersions tells, for every live lease, the version of the license
// entry its seat sits on at nowMs: the version a listing shows (a lease
// asked for "any version", 0, sits on a real licensed version). It places
// leases exactly as state.usage counts them (highest requested version
// first, each into the lowest row at or above it with room; named seats at
// version 0 last, in user order), so a holder listing and the per-version
// rows agree. A lease that fits no seat shows the highest licensed version
// when that serves it, else its requested version. Read-only: never called
// from Apply.
func (f *FSM) LicensedVersions(nowMs int64) map[uint64]uint32 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	out := map[uint64]uint32{}
	byFeature := map[string][]*fsmpb.Lease{}
	for _, id := range s.sortedLeaseIDs() {
		l := s.leases[id].l
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
		place := func(v uint32, n uint64) uint32 {
			got, placed := v, false
			j, _ := slices.BinarySearchFunc(rows, v, cmpVersion)
			for ; j < len(rows) && n > 0; j++ {
				take := min(rows[j].count-min(rows[j].count, used[j]), n)
				if take > 0 && !placed {
					got, placed = rows[j].version, true
				}
				used[j] += take
				n -= take
			}
			if n > 0 && len(rows) > 0 && rows[len(rows)-1].version >= v {
				used[len(rows)-1] += n
				if !placed {
					got = rows[len(rows)-1].version
				}
			}
			return got
		}
		leases := slices.Clone(byFeature[name])
		slices.SortStableFunc(leases, func(a, b *fsmpb.Lease) int {
			switch {
			case a.Version > b.Version:
				return -1
			case a.Version < b.Version:
				return 1
			}
			return 0
		})
		var namedLeases []*fsmpb.Lease
		for _, l := range leases {
			if l.NamedUser {
				namedLeases = append(namedLeases, l)
				continue
			}
			out[l.Id] = place(l.Version, uint64(l.Count))
		}
		// Named seats: one per tied user, any version, after the leases.
		users := make([]string, 0, len(s.model.named[name]))
		for u := range s.model.named[name] {
			users = append(users, u)
		}
		slices.Sort(users)
		seatOf := map[string]uint32{}
		for _, u := range users {
			seatOf[u] = place(0, 1)
		}
		for _, l := range namedLeases {
			v, ok := seatOf[l.User]
			if !ok {
				v = place(l.Version, 1)
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

// MaxSeats returns how many seats a single checkout of feature at version
// could ever get at nowMs with no other lease held: the seats of valid
// licenses at that version or above, soft-limit overdraft included. A
// request for more can never fit, however long it waits.
func (f *FSM) MaxSeats(feature string, version uint32, nowMs int64) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var n uint64
	for _, v := range f.s.supply(feature, nowMs, true) {
		if v.version >= version {
			n += v.count
		}
	}
	return n
}
