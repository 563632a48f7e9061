// Package buildinfo says which build of Triad is running: its version, the
// commit it was built from and the Go version, for `triadd --version`,
// `triadctl version`, /metrics (triad_build_info) and /v1/status.
//
// The Makefile sets version and commit with
//
//	-ldflags "-X github.com/triadlm/triad/internal/buildinfo.version=$(git describe --tags --always --dirty)
//	          -X github.com/triadlm/triad/internal/buildinfo.commit=$(git rev-parse HEAD)"
//
// A plain `go build` or `go install` leaves them empty: then the module
// version and the VCS stamp Go records in the binary (debug.ReadBuildInfo)
// are used, and failing those the release version below and "unknown".
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Release is the version of this source tree, used when neither -ldflags
// nor the module system gives one.
const Release = "0.1.0"

// Set by -ldflags -X (the Makefile).
var (
	version string
	commit  string
)

// Info describes the running build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	// Modified: built from a work tree with uncommitted changes (VCS stamp).
	Modified bool `json:"modified,omitempty"`
}

// Get returns the running build's information.
func Get() Info {
	return from(version, commit, readBuildInfo())
}

func readBuildInfo() *debug.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return bi
}

func from(version, commit string, bi *debug.BuildInfo) Info {
	in := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi != nil {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
	}
	if in.Version == "" {
		in.Version = Release
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

// String is the one-line form printed by --version.
func (i Info) String() string {
	c := i.Commit
	if i.Modified {
		c += " (modified)"
	}
	return fmt.Sprintf("%s (commit %s, %s)", i.Version, c, i.GoVersion)
}
