package plugins

import "os"

// procSelfExe names, in each process, the very file that process runs.
const procSelfExe = "/proc/self/exe"

// runningExecutable returns the path the built-ins start from: on Linux /proc/self/exe, which
// keeps naming the file this process runs after the path it was started from is replaced (an
// upgrade or a rebuild in place) or removed. The built-ins then run the host's own code, whose
// checksum is theirs, until the host itself restarts; started from exe they would run the new
// file and be refused as tampered. exe is returned where /proc is not mounted.
func runningExecutable(exe string) string {
	if _, err := os.Stat(procSelfExe); err != nil {
		return exe
	}
	return procSelfExe
}
