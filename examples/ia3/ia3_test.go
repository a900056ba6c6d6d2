package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/sdk/sdktest"
)

// TestConformance builds this plugin as the separate binary an operator would install and runs
// the SDK's conformance suite against it as a real plugin process.
func TestConformance(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to build the plugin binary")
	}
	bin := filepath.Join(t.TempDir(), "ia3")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sdktest.TestPEFT(t, sdktest.Binary(bin), sdktest.WithName(Name),
		sdktest.WithConfigs(`{"targets": ["mlp"]}`, `{"targets": ["values", "keys"]}`),
		sdktest.WithTrainCheck(adapters.CheckTrainable))
}

// TestInProcess runs the same checks without a process, as a quick unit test.
func TestInProcess(t *testing.T) {
	sdktest.RunPEFT(t, Name, &IA3{}, sdktest.WithTrainCheck(adapters.CheckTrainable))
}
