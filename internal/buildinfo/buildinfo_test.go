package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

// The -ldflags values win; without them the module version and the VCS
// stamp are used; without those, the release and "unknown".
func TestFrom(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	for _, c := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{
		{"ldflags", "v2.0.0-3-gdeadbee", "deadbeef", stamped, Info{"v2.0.0-3-gdeadbee", "deadbeef", "go1.99", true}},
		{"module and vcs", "", "", stamped, Info{"v1.2.3", "abc123", "go1.99", true}},
		{"devel build", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Info{Release, "unknown", "", false}},
		{"nothing", "", "", nil, Info{Release, "unknown", "", false}},
	} {
		got := from(c.version, c.commit, c.bi)
		if c.want.GoVersion == "" {
			c.want.GoVersion = got.GoVersion
			if !strings.HasPrefix(got.GoVersion, "go") {
				t.Errorf("%s: Go version %q", c.name, got.GoVersion)
			}
		}
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	if s := (Info{"v1", "abc", "go1.22", true}).String(); s != "v1 (commit abc (modified), go1.22)" {
		t.Errorf("String() = %q", s)
	}
}
