package fsm

import (
	"iter"
	"math"
	"slices"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/proto/fsmpb"
)

// Seats and versions.
//
// A license feature at version V serves requests for any version <= V, so a
// lease requested at version d may sit on any seat of version >= d. With
// such nested choices, Hall's theorem says the leases of a feature fit the
// seats iff, for every threshold t,
//
//	demand(t) = seats held by live leases requested at version >= t
//	supply(t) = seats of valid licenses at version >= t
//	demand(t) <= supply(t).
//
// demand only steps at lease versions and supply never grows with t, so it
// suffices to check t at the distinct lease versions. A grant at version d
// raises demand(t) for t <= d only, hence it checks the lease versions <= d
// and d itself.

// Versions compare as featver keys (2.1 < 2.10 < 3; 2 == 2.0); a
// whole-number version V has key V<<32, so whole numbers keep their order.

// versionCount is a number of seats at one version.
type versionCount struct {
	version featver.Key
	count   uint64
	// text is the version as licensed, for display ("2024.06"): that of the
	// first entry (in serial order) at this key; empty for whole numbers.
	text string
}

// featureUse holds the seats in use for one feature, by requested version,
// ascending, without zero entries.
type featureUse struct {
	byVersion []versionCount
}

func cmpVersion(a versionCount, v featver.Key) int {
	switch {
	case a.version < v:
		return -1
	case a.version > v:
		return 1
	}
	return 0
}

func (s *state) addUse(feature string, version featver.Key, n uint64) {
	u := s.inUse[feature]
	if u == nil {
		u = &featureUse{}
		s.inUse[feature] = u
	}
	i, ok := slices.BinarySearchFunc(u.byVersion, version, cmpVersion)
	if ok {
		u.byVersion[i].count += n
		return
	}
	u.byVersion = slices.Insert(u.byVersion, i, versionCount{version: version, count: n})
}

func (s *state) subUse(feature string, version featver.Key, n uint64) {
	u := s.inUse[feature]
	if u == nil {
		return
	}
	i, ok := slices.BinarySearchFunc(u.byVersion, version, cmpVersion)
	if !ok {
		return
	}
	if u.byVersion[i].count <= n {
		u.byVersion = slices.Delete(u.byVersion, i, i+1)
	} else {
		u.byVersion[i].count -= n
	}
	if len(u.byVersion) == 0 {
		delete(s.inUse, feature)
	}
}

// supply returns the seats of valid licenses for feature at now, summed per
// version, ascending; with overdraft, soft limits add their extra seats
// (grants may use them; displayed capacity does not include them).
func (s *state) supply(feature string, now int64, overdraft bool) []versionCount {
	var out []versionCount
	for f := range s.validEntries(feature, now) {
		n := uint64(f.Count)
		if overdraft && f.Limit == limitSoft {
			n += uint64(f.Overdraft)
		}
		k := featureVersion(f)
		i, ok := slices.BinarySearchFunc(out, k, cmpVersion)
		if ok {
			out[i].count += n
		} else {
			out = slices.Insert(out, i, versionCount{version: k, count: n, text: f.GetVersionText()})
		}
	}
	return out
}

// seatCheck reports whether n more seats for feature at version fit next to
// the live leases. When they do not, it returns the highest failing
// threshold's seats in use (before the grant) and supply.
// Demand is s.demand: the same as the over-capacity alarm's.
func (s *state) seatCheck(feature string, version featver.Key, n uint64, sup []versionCount) (ok bool, inUse, supply uint64) {
	return fits(s.demand(feature), version, n, sup)
}

// fits reports whether n more seats at version fit next to demand use,
// given supply sup (both sorted by version).
func fits(use []versionCount, version featver.Key, n uint64, sup []versionCount) (ok bool, inUse, supply uint64) {
	// Sweep thresholds from high to low, keeping suffix sums of demand and
	// supply at versions >= t.
	ui, si := len(use)-1, len(sup)-1
	var demand, supplied uint64
	t := version
	for {
		for ui >= 0 && use[ui].version >= t {
			demand += use[ui].count
			ui--
		}
		for si >= 0 && sup[si].version >= t {
			supplied += sup[si].count
			si--
		}
		if demand+n > supplied {
			return false, demand, supplied
		}
		if ui < 0 {
			return true, 0, 0
		}
		t = use[ui].version
	}
}

// overCapacity reports whether the seats in use of feature cannot all be
// matched to licensed seats of a compatible version at now (soft-limit
// overdrafts are not licensed seats; named seats fit any version). When
// they cannot, it returns the threshold t with the largest excess of
// demand(t) over supply(t), the highest such t on ties: the number of
// seats without a compatible licensed seat is exactly that excess (Hall's
// theorem with deficiency), and t names the versions that lack them.
func (s *state) overCapacity(feature string, now int64) (over bool, version featver.Key, inUse, licensed uint64) {
	use := s.demand(feature)
	sup := s.supply(feature, now, false)
	ui, si := len(use)-1, len(sup)-1
	var demand, supplied, worst uint64
	for ui >= 0 {
		t := use[ui].version
		for ui >= 0 && use[ui].version >= t {
			demand += use[ui].count
			ui--
		}
		for si >= 0 && sup[si].version >= t {
			supplied += sup[si].count
			si--
		}
		if demand > supplied && demand-supplied > worst {
			worst = demand - supplied
			over, version, inUse, licensed = true, t, demand, supplied
		}
	}
	return over, version, inUse, licensed
}

// demand is the seats in use of feature by requested version, ascending:
// live leases, and tied named seats at version 0 (they fit any version).
func (s *state) demand(feature string) []versionCount {
	var use []versionCount
	if u := s.inUse[feature]; u != nil {
		use = u.byVersion
	}
	tied := uint64(len(s.model.named[feature]))
	switch {
	case tied == 0:
		return use
	case len(use) > 0 && use[0].version == 0:
		use = slices.Clone(use)
		use[0].count += tied
		return use
	}
	return append([]versionCount{{count: tied}}, use...)
}

// Usage is one row of the usage table: the seats of one feature at one
// version and how many of them live leases occupy.
type Usage struct {
	Feature string
	// Version is the row's version: a whole number, or the first component
	// of the dotted VersionText.
	Version  uint32
	Capacity uint32
	InUse    uint32
	// VersionText is the row's dotted version as licensed ("2024.06"), or
	// in its shortest form for a row no license names; empty for a whole
	// number (see featver).
	VersionText string
}

// usage assigns live leases to seats for display: demand by requested
// version, highest first, each into the lowest-version row at or above it
// that has room. That greedy is optimal for nested choices, so leases only
// overflow when they do not fit at all (a soft limit's overdraft, or
// capacity that dropped after an expiry or removal). Overflow stays at a
// compatible version: it goes into the highest row when that row's version
// serves the lease, otherwise into a zero-capacity row at the lease's
// version (no valid license grants that version or a higher one). A row never
// shows leases its seats could not serve.
func (s *state) usage(now int64) []Usage {
	features := map[string]bool{}
	for _, l := range s.licenses {
		if s.licenseValid(l, now) {
			for _, f := range l.Features {
				features[f.Name] = true
			}
		}
	}
	for f := range s.inUse {
		features[f] = true
	}
	for f := range s.model.named {
		features[f] = true
	}
	names := make([]string, 0, len(features))
	for f := range features {
		names = append(names, f)
	}
	slices.Sort(names)

	var out []Usage
	for _, name := range names {
		rows := s.supply(name, now, false)
		used := make([]uint64, len(rows))
		var orphans []versionCount // demand no valid license serves, descending
		// Named seats fit any version: at version 0 they fill rows from the lowest.
		use := s.demand(name)
		for i := len(use) - 1; i >= 0; i-- {
			d := use[i]
			left := d.count
			j, _ := slices.BinarySearchFunc(rows, d.version, cmpVersion)
			for ; j < len(rows) && left > 0; j++ {
				room := rows[j].count - min(rows[j].count, used[j])
				take := min(room, left)
				used[j] += take
				left -= take
			}
			switch {
			case left == 0:
			case len(rows) > 0 && rows[len(rows)-1].version >= d.version:
				used[len(rows)-1] += left
			default:
				orphans = append(orphans, versionCount{version: d.version, count: left})
			}
		}
		for i, r := range rows {
			out = append(out, Usage{Feature: name, Version: r.version.Major(), VersionText: r.text, Capacity: clamp32(r.count), InUse: clamp32(used[i])})
		}
		for i := len(orphans) - 1; i >= 0; i-- {
			v, text := wirePair(orphans[i].version)
			out = append(out, Usage{Feature: name, Version: v, VersionText: text, InUse: clamp32(orphans[i].count)})
		}
	}
	return out
}

func clamp32(n uint64) uint32 {
	return uint32(min(n, math.MaxUint32))
}

// validEntries yields the entries for feature of the licenses valid at now,
// in serial order: the one walk that supply and terms share.
func (s *state) validEntries(feature string, now int64) iter.Seq[*fsmpb.Feature] {
	return func(yield func(*fsmpb.Feature) bool) {
		for _, e := range s.features().entries[feature] {
			if s.licenseValid(e.l, now) && !yield(e.f) {
				return
			}
		}
	}
}

// featureVersion is the key of a license entry's version. Apply enrolls
// only entries whose version parses (license.Parse re-reads the signed
// file); anything else sorts as its whole-number field.
func featureVersion(f *fsmpb.Feature) featver.Key {
	k, err := featver.Of(f.GetVersion(), f.GetVersionText())
	if err != nil {
		return featver.Whole(f.GetVersion())
	}
	return k
}

// leaseVersion is the key of a lease's requested version (checked when it
// was granted).
func leaseVersion(l *lease) featver.Key {
	k, err := featver.Of(l.Version, l.VersionText)
	if err != nil {
		return featver.Whole(l.Version)
	}
	return k
}

// wirePair is the (version, version_text) pair of a key in its shortest
// text, for rows no licensed text names.
func wirePair(k featver.Key) (uint32, string) {
	if k == featver.Whole(k.Major()) {
		return k.Major(), ""
	}
	return k.Major(), k.String()
}

// versionLabel is the version as messages name it.
func versionLabel(k featver.Key) string {
	v, text := wirePair(k)
	return featver.Display(v, text)
}
