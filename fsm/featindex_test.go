package fsm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

// naivePackageFor and naiveEntries are the walks over every license that
// the feature index replaced: the index must answer exactly as they do.
func naivePackageFor(s *state, feature string) string {
	direct, owner := false, ""
	for _, serial := range s.serials {
		for _, f := range s.licenses[serial].Features {
			switch {
			case f.Name == feature && len(f.Components) > 0:
				return feature
			case f.Name == feature:
				direct = true
			case owner == "" && slices.Contains(f.Components, feature):
				owner = f.Name
			}
		}
	}
	if direct {
		return ""
	}
	return owner
}

func naiveKnown(s *state, feature string) bool {
	for _, serial := range s.serials {
		for _, f := range s.licenses[serial].Features {
			if f.Name == feature {
				return true
			}
		}
	}
	return false
}

func naiveEntries(s *state, feature string, now int64) []*fsmpb.Feature {
	var out []*fsmpb.Feature
	for _, serial := range s.serials {
		l := s.licenses[serial]
		if !s.licenseValid(l, now) {
			continue
		}
		for _, f := range l.Features {
			if f.Name == feature {
				out = append(out, f)
			}
		}
	}
	return out
}

// TestFeatureIndexAgreesWithWalk enrolls and removes random licenses
// (repeated names, packages, components that are also features, packages
// listing themselves, superseded and expired licenses) and asks the index
// and the full walk the same questions after every change.
func TestFeatureIndexAgreesWithWalk(t *testing.T) {
	names := []string{"cad", "cam", "sim", "viz", "suite", "pro", "", "x"}
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		s := newState()
		for step := range 60 {
			serial := fmt.Sprintf("S%02d", r.IntN(12))
			if _, ok := s.licenses[serial]; ok && r.IntN(3) == 0 {
				s.deleteLicense(serial)
			} else if !ok {
				l := &fsmpb.License{Serial: serial, ValidAfterMs: int64(r.IntN(50)), ValidUntilMs: int64(50 + r.IntN(100))}
				if r.IntN(5) == 0 {
					l.Supersedes = []string{fmt.Sprintf("S%02d", r.IntN(12))}
				}
				for range 1 + r.IntN(4) {
					f := feat(names[r.IntN(len(names)-1)], uint32(r.IntN(4)), uint32(1+r.IntN(9)))
					if r.IntN(3) == 0 {
						for range 1 + r.IntN(3) {
							f.Components = append(f.Components, names[r.IntN(len(names))])
						}
					}
					l.Features = append(l.Features, f)
				}
				s.addLicense(l)
			}
			for _, name := range names {
				if got, want := s.knownFeature(name), naiveKnown(s, name); got != want {
					t.Fatalf("seed %d step %d: knownFeature(%q) = %v, the walk says %v", seed, step, name, got, want)
				}
				if got, want := s.packageFor(name), naivePackageFor(s, name); got != want {
					t.Fatalf("seed %d step %d: packageFor(%q) = %q, the walk says %q", seed, step, name, got, want)
				}
				for _, now := range []int64{0, 49, 75, 149, 200} {
					got := slices.Collect(s.validEntries(name, now))
					if want := naiveEntries(s, name, now); !slices.Equal(got, want) {
						t.Fatalf("seed %d step %d: validEntries(%q, %d) = %v, the walk says %v", seed, step, name, now, got, want)
					}
				}
			}
		}
	}
}
