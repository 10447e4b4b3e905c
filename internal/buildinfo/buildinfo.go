// Package buildinfo reads what the Go toolchain recorded about the running
// binary: its module version, its VCS commit and the Go version. It does not
// print or export anything itself: cmd/prism prints it (prism version) and
// server exports it (the prism_build_info metric).
//
//	fmt.Println(buildinfo.Read())
//
// A release build (deploy/release.sh, deploy/Dockerfile) stamps the version
// and commit at link time, which wins over what the toolchain recorded:
//
//	go build -ldflags "-X github.com/prism-proxy/prism/internal/buildinfo.version=v1.2.0 -X github.com/prism-proxy/prism/internal/buildinfo.commit=1a2b3c" ./cmd/prism
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Unknown is the version or commit when the build did not record it.
const Unknown = "(devel)"

// version and commit are set at link time (-ldflags -X) by release builds;
// empty: what debug.ReadBuildInfo recorded.
var version, commit string

// Info is what the build recorded.
type Info struct {
	Version   string // the main module's version; Unknown for a build from a work tree
	Commit    string // vcs.revision, with "-modified" when vcs.modified; Unknown without VCS stamping
	GoVersion string // the toolchain's, e.g. "go1.26.8"
}

// String is the one-line form: "prism (devel) commit 1a2b3c go1.26.8".
func (i Info) String() string {
	return "prism " + i.Version + " commit " + i.Commit + " " + i.GoVersion
}

// Read returns the running binary's build information. Safe from any
// goroutine.
func Read() Info {
	info := Info{Version: Unknown, Commit: Unknown, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return stamped(info)
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && info.Commit != Unknown {
		info.Commit += "-modified"
	}
	return stamped(info)
}

// stamped is info with the link-time version and commit, where set.
func stamped(info Info) Info {
	if version != "" {
		info.Version = version
	}
	if commit != "" {
		info.Commit = commit
	}
	return info
}
