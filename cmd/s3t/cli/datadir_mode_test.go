package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeWarnsOfAnOpenDataDir: a data directory made before the server (install -d,
// systemd's StateDirectory=, both 0755) left the ledger, which holds the samples, readable by
// every user (0644 under umask 022) without a word. The server says so at start, with what to
// do; one it made itself (0700) is not warned of.
func TestServeWarnsOfAnOpenDataDir(t *testing.T) {
	const warning = "the data directory is open to other users"
	for _, mode := range []os.FileMode{0o755, 0o700} {
		data := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(data, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		p := startServeProc(t, data, "--train-workers", "0")
		p.stop(t)
		log := p.log.String()
		if got := strings.Contains(log, warning); got != (mode == 0o755) {
			t.Errorf("data directory %04o: warned %v, want %v; log:\n%s", mode, got, mode == 0o755, log)
		} else if got && (!strings.Contains(log, "mode=0755") || !strings.Contains(log, "chmod 700")) {
			t.Errorf("the warning does not name the mode and what to do:\n%s", log)
		}
	}
}
