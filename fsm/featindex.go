package fsm

import "github.com/triadlm/triad/proto/fsmpb"

// featureIndex answers "which license entries name this feature" and
// "which package does this feature belong to" without walking every
// enrolled license: a grant asks both several times, and a site's license
// set can hold hundreds of entries. It is derived from the licenses alone,
// dropped when one is added or removed and rebuilt on the next question,
// so a restore or a run of enrollments builds it once.
type featureIndex struct {
	// entries holds, per feature name, its entries in serial order, then
	// in the order of the license's features: the order of a walk over
	// s.serials, which capacity decisions depend on.
	entries map[string][]licenseEntry
	// pkg holds packageFor's answer for every name that has one.
	pkg map[string]string
}

type licenseEntry struct {
	l *fsmpb.License
	f *fsmpb.Feature
}

// features returns the index, building it if a license changed since.
// Reads run it concurrently under the FSM's read lock: two may build the
// same index at once, and the first stored wins (licenses change only
// under the write lock, which drops it).
func (s *state) features() *featureIndex {
	if x := s.fidx.Load(); x != nil {
		return x
	}
	x := &featureIndex{entries: map[string][]licenseEntry{}, pkg: map[string]string{}}
	suite, direct, owner := map[string]bool{}, map[string]bool{}, map[string]string{}
	for _, serial := range s.serials {
		l := s.licenses[serial]
		for _, f := range l.Features {
			x.entries[f.Name] = append(x.entries[f.Name], licenseEntry{l, f})
			direct[f.Name] = true
			if len(f.Components) > 0 {
				suite[f.Name] = true
			}
			for _, c := range f.Components {
				if owner[c] == "" && c != f.Name {
					owner[c] = f.Name
				}
			}
		}
	}
	for name, o := range owner {
		if o != "" && !direct[name] {
			x.pkg[name] = o
		}
	}
	for name := range suite {
		x.pkg[name] = name
	}
	if !s.fidx.CompareAndSwap(nil, x) {
		return s.fidx.Load()
	}
	return x
}
