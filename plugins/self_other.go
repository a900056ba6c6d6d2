//go:build !linux

package plugins

// runningExecutable returns exe: off Linux no path names the file this process runs once exe
// is replaced, so a built-in started after an upgrade in place is refused as tampered until
// the host restarts.
func runningExecutable(exe string) string { return exe }
