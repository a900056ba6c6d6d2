package sdk_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBuildsWithoutCgo: package sdk, all a plugin binary imports, builds with CGO_ENABLED=0
// (README.md tells plugin authors so); only sdktest needs cgo. A dependency whose Go files all
// need cgo (as onnxruntime_go's do) has none left without it.
func TestBuildsWithoutCgo(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command")
	}
	cmd := exec.Command(goCmd, "list", "-deps", "-f", "{{.ImportPath}} {{len .GoFiles}}", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if pkg, n, _ := strings.Cut(l, " "); n == "0" {
			t.Errorf("without cgo, %s (a dependency of sdk) has no Go files to build", pkg)
		}
	}
}
