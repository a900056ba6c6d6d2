package cli

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckCPUList(t *testing.T) {
	for _, tc := range []struct {
		list string
		ok   bool
	}{
		{"0", true}, {"0-7", true}, {"0,2,4-6", true}, {"12-15,3", true},
		{"", false}, {"x", false}, {"0-", false}, {"-3", false}, {"0,,1", false}, {"0 1", false}, {"1;rm", false},
	} {
		if err := checkCPUList(tc.list); (err == nil) != tc.ok {
			t.Errorf("checkCPUList(%q) = %v, want ok %v", tc.list, err, tc.ok)
		}
	}
}

// TestServeChildHeldToCPUs starts `s3t serve` held to CPU 0 (bench serve --server-cpus) and
// reads the CPUs the kernel lets the process run on.
func TestServeChildHeldToCPUs(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("no taskset (util-linux)")
	}
	t.Setenv("S3T_TEST_AS_CLI", "1")
	log := &syncBuf{}
	p, err := startServeChildOn(context.Background(), "0", t.TempDir(), log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	defer p.kill()
	if got := procStatusLine(p.cmd.Process.Pid, "Cpus_allowed_list"); got != "0" {
		t.Errorf("Cpus_allowed_list of s3t serve = %q, want 0", got)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, log)
	}
	if _, err := startServeChildOn(context.Background(), "0-", t.TempDir(), log); err == nil || !strings.Contains(err.Error(), "CPU list") {
		t.Errorf("a bad CPU list: err = %v", err)
	}
}

// TestServeWithoutONNXRuntime: a server whose ONNX Runtime library does not load said it was
// ready on every probe and logged nothing, while every prediction answered 500 and training
// jobs used up their attempts (an operator audit). It now says why at start, and is not
// ready (/readyz 503 naming ONNX Runtime, the KServe server readiness 400) until it starts
// with a library that loads.
func TestServeWithoutONNXRuntime(t *testing.T) {
	t.Setenv("S3T_TEST_AS_CLI", "1")
	t.Setenv("S3T_ORT_LIBRARY", filepath.Join(t.TempDir(), "libonnxruntime.so.1")) // not there
	log := &syncBuf{}
	p, err := startServeChildOn(context.Background(), "", t.TempDir(), log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	defer p.kill()
	for path, want := range map[string]int{"/readyz": 503, "/v2/health/ready": 400, "/healthz": 200} {
		resp, err := http.Get("http://" + p.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (path == "/readyz" && !strings.Contains(string(b), "ONNX Runtime")) {
			t.Errorf("%s: %d %s, want %d", path, resp.StatusCode, b, want)
		}
	}
	if err := p.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, log)
	}
	if !strings.Contains(log.String(), "ONNX Runtime cannot be loaded") {
		t.Errorf("the log does not say why the server is not ready:\n%s", log)
	}
}
