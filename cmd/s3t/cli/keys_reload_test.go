package cli

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/server"
)

// TestServeReloadsKeysOnHUP: the keys file was read only at start, so adding or revoking a key
// meant a restart (training interrupted), and SIGHUP (systemctl reload, a closed terminal)
// ended the server at once, as a kill does. SIGHUP now reads the file again: a revoked key is
// refused, a new one accepted, and a file that does not load leaves the keys in use.
func TestServeReloadsKeysOnHUP(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	line := func(name, secret string) string {
		return fmt.Sprintf("%s %s admin\n", name, server.HashKey(secret))
	}
	if err := os.WriteFile(keys, []byte(line("old", "secret-old")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServeProc(t, filepath.Join(dir, "data"), "--train-workers", "0", "--keys", keys)
	status := func(secret string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /v1/models: %v\n%s", err, p.log)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	hup := func(wantLog string) {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.log.String(), wantLog); {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", wantLog, p.log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := status("secret-old"); got != 200 {
		t.Fatalf("old key before the reload: %d", got)
	}
	if err := os.WriteFile(keys, []byte(line("new", "secret-new")), 0o600); err != nil {
		t.Fatal(err)
	}
	hup("API keys read again")
	if got, want := status("secret-old"), 401; got != want {
		t.Errorf("revoked key after SIGHUP: %d, want %d", got, want)
	}
	if got := status("secret-new"); got != 200 {
		t.Errorf("added key after SIGHUP: %d, want 200", got)
	}
	if err := os.WriteFile(keys, []byte("# emptied by mistake\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup("the keys file does not load")
	if got := status("secret-new"); got != 200 {
		t.Errorf("key in use after a SIGHUP with a keys file that does not load: %d, want 200", got)
	}
	p.stop(t)
}
