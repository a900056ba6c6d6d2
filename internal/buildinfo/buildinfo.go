// Package buildinfo says which build of s3t is running: in `s3t --version`, the log line a
// server starts with, and the KServe v2 server metadata.
package buildinfo

import "runtime/debug"

// version is set at link time by `make build`:
// -ldflags "-X github.com/s3t-dev/s3t/internal/buildinfo.version=$(git describe --always --dirty)".
var version string

// Version is the build's version: the one linked in (make build: git describe), else the main
// module's as the Go toolchain stamped it (a tag or a pseudo-version, for go install), else
// its VCS commit (with "-dirty" when the tree was modified), else "devel".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	dirty := false
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.modified":
			dirty = st.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
