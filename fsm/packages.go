package fsm

import (
	"slices"
	"strconv"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/proto/fsmpb"
)

// Packages and suites (FlexNet PACKAGE with OPTIONS=SUITE).
//
// A license feature with components is a package. A checkout of the
// package, or of one of its components, is served by the package's seats,
// and every lease of one package taken by one user and host belongs to one
// suite group that holds a single package seat (or, with count > 1, as
// many seats as its largest lease): the first checkout of a group takes
// the seat, later ones of the same user and host take none. The group's
// seat is at the highest version its leases requested (a lease at version
// v needs a package seat at v or higher, as for any feature) and is held
// while any lease of the group lives. Leases carry the package they belong
// to (Lease.package), so the groups are derived from the live leases and
// rebuilt on restore; their seats are counted in inUse under the package,
// which keeps the capacity check, the usage rows and the over-capacity
// alarm of ordinary features.
//
// A checkout with no user or no host never shares a seat. A feature that
// an enrolled license grants directly is never served as a component
// (license validation keeps one license from doing both). Borrowing a
// package or a component is refused.

// suiteKey names a suite group. solo is the lease id for a lease without
// user or host, which forms a group of its own.
type suiteKey struct {
	pkg, user, host, solo string
}

// suiteGroup is one group's leases and the seats it holds in inUse.
type suiteGroup struct {
	leases  map[uint64]*lease
	seats   uint64
	version featver.Key
}

func suiteKeyOf(pkg, user, host string, leaseID uint64) suiteKey {
	if user == "" || host == "" {
		return suiteKey{pkg: pkg, solo: strconv.FormatUint(leaseID, 10)}
	}
	return suiteKey{pkg: pkg, user: user, host: host}
}

// need is the seats and version the group needs for its leases.
func (g *suiteGroup) need() (uint64, featver.Key) {
	var seats uint64
	var version featver.Key
	for _, l := range g.leases {
		seats = max(seats, uint64(max(l.Count, 1)))
		version = max(version, leaseVersion(l))
	}
	return seats, version
}

// regroup moves the group's seats in inUse to what its leases need.
func (s *state) regroup(pkg string, g *suiteGroup) {
	seats, version := g.need()
	if seats == g.seats && version == g.version {
		return
	}
	if g.seats > 0 {
		s.subUse(pkg, g.version, g.seats)
	}
	if seats > 0 {
		s.addUse(pkg, version, seats)
	}
	g.seats, g.version = seats, version
}

func (s *state) suiteAdd(l *lease) {
	k := suiteKeyOf(l.Package, l.User, l.Host, l.Id)
	g := s.suites[k]
	if g == nil {
		g = &suiteGroup{leases: map[uint64]*lease{}}
		s.suites[k] = g
	}
	g.leases[l.Id] = l
	s.regroup(l.Package, g)
}

func (s *state) suiteDrop(l *lease) {
	k := suiteKeyOf(l.Package, l.User, l.Host, l.Id)
	g := s.suites[k]
	if g == nil {
		return
	}
	delete(g.leases, l.Id)
	s.regroup(l.Package, g)
	if len(g.leases) == 0 {
		delete(s.suites, k)
	}
}

// packageFor returns the package whose seats serve a checkout of feature:
// feature itself when an enrolled license makes it a package, the package
// listing it as a component (first in serial order) when no enrolled
// license grants it directly, or "".
func (s *state) packageFor(feature string) string {
	return s.features().pkg[feature]
}

// admitSuite decides a checkout of package pkg or one of its components.
func (s *state) admitSuite(now int64, g *fsmpb.Grant, pkg string) (*fsmpb.OpResult, terms) {
	var t terms
	want, err := featver.Of(g.Version, g.GetVersionText())
	if err != nil {
		return result(fsmpb.Code_INVALID_ARGUMENT, "checkout of %s: %v", g.Feature, err), t
	}
	of := ""
	if pkg != g.Feature {
		of = " (a component of package " + pkg + ")"
	}
	sup := s.supply(pkg, now, true)
	if len(sup) == 0 {
		return result(fsmpb.Code_LICENSE_EXPIRED,
			"no valid license for %s%s: every license granting %s is expired, not yet valid or superseded", g.Feature, of, pkg), t
	}
	if highest := sup[len(sup)-1]; highest.version < want {
		return result(fsmpb.Code_VERSION_TOO_NEW,
			"no license for %s%s at version %s (highest licensed version of %s is %s)", g.Feature, of,
			featver.Display(g.Version, g.GetVersionText()), pkg, featver.Display(highest.version.Major(), highest.text)), t
	}
	t = s.terms(pkg, now)
	k := suiteKeyOf(pkg, g.User, g.Host, s.nextLeaseID)
	grp := s.suites[k]
	var oldSeats uint64
	var oldVersion featver.Key
	if grp != nil {
		oldSeats, oldVersion = grp.seats, grp.version
	}
	seats, version := max(oldSeats, uint64(max(g.Count, 1))), max(oldVersion, want)
	if res := s.checkRules(g, seats-oldSeats, total(sup)); res != nil {
		return res, t
	}
	if grp != nil && seats == oldSeats && version == oldVersion {
		return nil, t // the user and host already hold the package seat
	}
	// The group's demand moves from (oldVersion, oldSeats) to (version,
	// seats): only thresholds at or below version see more demand.
	use := slices.Clone(s.demand(pkg))
	if oldSeats > 0 {
		use = withUse(use, oldVersion, -int64(oldSeats))
	}
	use = withUse(use, version, int64(seats))
	if ok, inUse, supply := fits(use, version, 0, sup); !ok {
		return result(fsmpb.Code_NO_SEAT, "no seat left for %s %s%s (%d of %d seats of %s in use)",
			g.Feature, grantLabel(g), of, inUse-(seats-oldSeats), supply, pkg), t
	}
	return nil, t
}

// withUse returns use (sorted by version) with n added at version.
func withUse(use []versionCount, version featver.Key, n int64) []versionCount {
	i, ok := slices.BinarySearchFunc(use, version, cmpVersion)
	if !ok {
		use = slices.Insert(use, i, versionCount{version: version})
	}
	use[i].count = uint64(int64(use[i].count) + n)
	if use[i].count == 0 {
		use = slices.Delete(use, i, i+1)
	}
	return use
}

// packageComponents lists the components of package pkg over its enrolled
// entries, in license order without repeats.
func (s *state) packageComponents(pkg string) []string {
	var out []string
	for _, serial := range s.serials {
		for _, f := range s.licenses[serial].Features {
			if f.Name == pkg {
				for _, c := range f.Components {
					if !slices.Contains(out, c) {
						out = append(out, c)
					}
				}
			}
		}
	}
	return out
}

// PackageComponents returns the component features of package pkg (nil
// for a feature that is not a package).
func (f *FSM) PackageComponents(pkg string) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.packageComponents(pkg)
}

// componentRows are the usage rows of the components of the packages in
// rows: after each package's last row, one row per component, at the
// package's highest row version and capacity, with the seats of the groups
// holding a lease of that component in use.
func (s *state) componentRows(rows []Usage) []FeatureRow {
	var out []FeatureRow
	for i, r := range rows {
		out = append(out, FeatureRow{Usage: r})
		if i+1 < len(rows) && rows[i+1].Feature == r.Feature {
			continue
		}
		comps := s.packageComponents(r.Feature)
		if len(comps) == 0 {
			continue
		}
		var capacity uint32
		for j := i; j >= 0 && rows[j].Feature == r.Feature; j-- {
			capacity += rows[j].Capacity
		}
		for _, c := range comps {
			var used uint64
			for k, g := range s.suites {
				if k.pkg != r.Feature {
					continue
				}
				for _, l := range g.leases {
					if l.Feature == c {
						used += g.seats
						break
					}
				}
			}
			out = append(out, FeatureRow{Usage: Usage{Feature: c, Version: r.Version, VersionText: r.VersionText,
				Capacity: capacity, InUse: clamp32(used)}, Package: r.Feature})
		}
	}
	return out
}

// A license defining a package needs format 4: an older build would not
// serve its components.
func init() {
	commandFormatHooks = append(commandFormatHooks, func(cmd *fsmpb.Command) (uint32, string) {
		if licensesPackaged(cmd.GetEnrollLicense().GetLicense()) {
			return formatPackages, "enroll_license.components"
		}
		if licensesPackaged(cmd.GetReplaceMember().GetLicenses()...) {
			return formatPackages, "replace_member.components"
		}
		return 1, ""
	})
}

const formatPackages = 4

func licensesPackaged(ls ...*fsmpb.License) bool {
	for _, l := range ls {
		for _, f := range l.GetFeatures() {
			if len(f.GetComponents()) > 0 {
				return true
			}
		}
	}
	return false
}
