package cli

import (
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestServeDrainsBeforeClosing: on SIGTERM the server closed its listener at once, so a load
// balancer that had not yet seen it go unready sent it requests that were refused (every
// rolling deploy of the replicas). With --drain-delay it goes on serving for that long with
// /readyz answering 503, then stops as before, exit 0.
func TestServeDrainsBeforeClosing(t *testing.T) {
	const delay = 3 * time.Second
	p := startServeProc(t, filepath.Join(t.TempDir(), "data"), "--train-workers", "0", "--drain-delay", delay.String())
	get := func(path string) (int, error) {
		resp, err := http.Get("http://" + p.addr + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get("/readyz"); err != nil || code != 200 {
		t.Fatalf("/readyz before SIGTERM: %d, %v", code, err)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		code, err := get("/readyz")
		if err != nil {
			t.Fatalf("/readyz %v after SIGTERM: %v (the listener closed before the drain delay)\n%s", time.Since(start), err, p.log)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Since(start) > delay/2 {
			t.Fatalf("/readyz still %d %v after SIGTERM, want 503 while draining", code, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, path := range []string{"/healthz", "/v1/models"} {
		if code, err := get(path); err != nil || code != 200 {
			t.Errorf("%s while draining: %d, %v; want 200", path, code, err)
		}
	}
	select {
	case <-p.done:
	case <-time.After(delay + 30*time.Second):
		t.Fatalf("still running %v after SIGTERM\n%s", time.Since(start), p.log)
	}
	if p.err != nil {
		t.Errorf("exit: %v, want 0\n%s", p.err, p.log)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("stopped %v after SIGTERM, before the drain delay %v", took, delay)
	}
}
