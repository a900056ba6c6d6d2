package cli

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
)

// TestServeSelectorPluginFaults: what creating a model answers when its selector plugin (a real
// process, selector.clitest) misbehaves (faultySeeds). Sequences that break the contract, an
// error of the plugin's own and a panic are the plugin's fault: 502 plugin_failed, with the
// reason (a plugin author's walkthrough: the duplicates were a 500 "internal error", the reason
// in the log alone, and the error and the panic a 400 "invalid model spec", the user's fault). A
// request the plugin refuses with the sdk's sentinel is the spec's: 400. Other models are
// created after each.
func TestServeSelectorPluginFaults(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run(t, "plugin", "install", exe, "--data", data); code != 0 {
		t.Fatalf("install: exit %d: %s%s", code, out, stderr)
	}
	p := startServeProc(t, data, "--train-workers", "0")
	defer p.stop(t)
	if _, err := p.cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	create := func(name string, seed int64) error {
		_, err := p.cl.CreateModel(ctx, &api.CreateModelRequest{Name: name, ModelSpec: api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"},
			PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 1, Slices: 3, Sequences: 2, Selector: "clitest"}, Seed: seed}})
		return err
	}
	for _, tt := range []struct {
		seed   int64
		status int
		code   string
		reason string
	}{
		{9001, http.StatusBadGateway, api.CodePluginFailed, "both [0 1 2]"},
		{9002, http.StatusBadGateway, api.CodePluginFailed, "the clitest service is down"},
		{9003, http.StatusBadGateway, api.CodePluginFailed, "clitest selector panics"},
		{9004, http.StatusBadRequest, api.CodeInvalid, "clitest takes no seed 9004"},
	} {
		name := faultySeeds[tt.seed]
		err := create(name, tt.seed)
		if e := (*api.Error)(nil); !errors.As(err, &e) || e.Status != tt.status || e.Code != tt.code ||
			!strings.Contains(e.Message, tt.reason) || !strings.Contains(e.Message, "clitest") {
			t.Errorf("selector that %s: %v; want %d %s naming the plugin and %q", name, err, tt.status, tt.code, tt.reason)
		}
		if err := create("ok-after-"+name, 7); err != nil {
			t.Fatalf("a model after the selector that %s: %v\n%s", name, err, p.log)
		}
	}
}
