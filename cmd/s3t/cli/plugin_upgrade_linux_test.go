package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
)

// TestServeBuiltinsSurviveUpgradeInPlace: replacing the s3t executable under a running server
// (an upgrade, a rebuild) leaves its built-in plugins working, a running one and one started
// after the upgrade: they start from /proc/self/exe, the file the server runs. Started from the
// executable's path, they ran the new file, whose checksum is not the server's, and every model
// creation answered 503 (tampered) until the server restarted.
func TestServeBuiltinsSurviveUpgradeInPlace(t *testing.T) {
	ctx := context.Background()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "s3t")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("S3T_TEST_AS_CLI", "1")
	log := &syncBuf{}
	p, err := startServeExe(ctx, bin, "", filepath.Join(t.TempDir(), "data"), log, "--train-workers", "0")
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	t.Cleanup(p.kill)
	if _, err := p.cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	create := func(name, peft, config string) {
		t.Helper()
		spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: peft, Config: []byte(config)},
			S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}
		if _, err := p.cl.CreateModel(ctx, &api.CreateModelRequest{Name: name, ModelSpec: spec}); err != nil {
			t.Fatalf("create model %s (%s): %v\n%s", name, peft, err, log)
		}
	}
	create("before", "lora", `{"rank": 2}`) // starts peft.lora

	// The upgrade: another file renamed over the path, as go build, install(1) and package
	// managers replace an executable.
	next := bin + ".new"
	if err := os.WriteFile(next, append(self, "upgraded"...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, bin); err != nil {
		t.Fatal(err)
	}
	create("after", "lora", `{"rank": 3}`) // a new plan from the running peft.lora
	create("started", "prefix", `{}`)      // peft.prefix starts after the upgrade
	if strings.Contains(log.String(), "checksum mismatch") {
		t.Errorf("a built-in was refused after the upgrade:\n%s", log)
	}
	// The built-ins' processes show the executable's path, not /proc/self/exe.
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var shown []string
	for _, e := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "plugin\x00run\x00peft.") {
			if argv := strings.Split(string(cmdline), "\x00"); strings.HasPrefix(argv[0], filepath.Dir(bin)) || argv[0] == "/proc/self/exe" {
				shown = append(shown, argv[0])
			}
		}
	}
	if len(shown) != 2 || shown[0] != bin || shown[1] != bin {
		t.Errorf("the built-ins' argv[0]: %q, want %s twice", shown, bin)
	}
	if err := p.stop(); err != nil {
		t.Errorf("s3t serve: %v\n%s", err, log)
	}
}
