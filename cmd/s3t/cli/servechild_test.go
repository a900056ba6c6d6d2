package cli

import (
	"context"
	"os/exec"
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
