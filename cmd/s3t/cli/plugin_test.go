package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/plugins"
)

func listPlugins(t *testing.T, args ...string) []plugins.Entry {
	t.Helper()
	out, stderr, code := run(t, append([]string{"plugin", "list", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Dir     string          `json:"plugin_dir"`
		Plugins []plugins.Entry `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return got.Plugins
}

// TestPluginListFreshDataDir: a fresh data directory lists the six built-ins, and --check runs
// each one out of process through `s3t plugin run NAME`.
func TestPluginListFreshDataDir(t *testing.T) {
	data := t.TempDir()
	want := []string{"peft.lora", "peft.prefix", "peft.adapter", "selector.cyclic", "selector.bms", "selector.random"}
	for _, check := range []bool{false, true} {
		args := []string{"--data", data}
		status := plugins.StatusReady
		if check {
			args, status = append(args, "--check"), plugins.StatusRunning
		}
		ents := listPlugins(t, args...)
		if len(ents) != len(want) {
			t.Fatalf("check=%v: %d entries, want %d: %+v", check, len(ents), len(want), ents)
		}
		for i, e := range ents {
			if e.Name != want[i] || !e.Builtin || e.Status != status || e.Protocol != 1 || e.Version == "" || len(e.SHA256) != 64 {
				t.Errorf("check=%v: entry %d = %+v", check, i, e)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(data, "plugins")); err != nil {
		t.Errorf("the plugin directory was not created inside the data directory: %v", err)
	}
}

func TestPluginInstallListTable(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(t.TempDir(), "elsewhere")
	t.Setenv(plugins.EnvPluginDir, dir)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "plugin", "install", exe, "--data", data)
	if code != 0 || !strings.Contains(out, "installed selector.clitest 0.1.0") {
		t.Fatalf("install: exit %d: %s%s", code, out, stderr)
	}
	out, stderr, code = run(t, "plugin", "list", "--data", data, "--check")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"plugin directory " + dir, "NAME", "PROTOCOL", "SHA256", "STATUS", "selector.clitest", "running", "peft.lora"} {
		if !strings.Contains(out, want) {
			t.Errorf("list output lacks %q:\n%s", want, out)
		}
	}
	if _, _, code := run(t, "plugin", "install", exe, "--data", data); code != 1 {
		t.Errorf("second install: exit %d, want 1", code)
	}
}

func TestPluginRunUnknown(t *testing.T) {
	if _, stderr, code := run(t, "plugin", "run", "peft.nope"); code != 2 || !strings.Contains(stderr, "peft.lora") {
		t.Errorf("exit %d, stderr %q: want 2 and the list of built-ins", code, stderr)
	}
}

// TestServeUsesInstalledPEFTPlugin: a PEFT plugin installed in the data directory plans the
// models s3t serve creates (the server answered "no plugin host is configured"), out of process
// like the built-ins; training and serving then read the stored plan.
func TestServeUsesInstalledPEFTPlugin(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	t.Setenv(envPEFTPlugin, "1") // the installed copy of this binary serves peft.clitest
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run(t, "plugin", "install", exe, "--data", data); code != 0 || !strings.Contains(out, "installed peft.clitest") {
		t.Fatalf("install: exit %d: %s%s", code, out, stderr)
	}
	p := startServeProc(t, data, "--train-workers", "0")
	if _, err := p.cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	for _, peft := range []string{"peft.clitest", "lora"} {
		spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: peft, Config: json.RawMessage(`{"rank": 2}`)},
			S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}
		name := strings.ReplaceAll(peft, ".", "-")
		m, err := p.cl.CreateModel(ctx, &api.CreateModelRequest{Name: name, ModelSpec: spec})
		if err != nil {
			t.Fatalf("create a %s model: %v\n%s", peft, err, p.log)
		}
		var cfg struct{ Rank int }
		if err := json.Unmarshal(m.Spec.PEFT.Config, &cfg); err != nil || cfg.Rank != 2 {
			t.Errorf("%s model's planned config %s, want rank 2", peft, m.Spec.PEFT.Config)
		}
	}
	if _, err := p.cl.CreateModel(ctx, &api.CreateModelRequest{Name: "nope", ModelSpec: api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"},
		PEFT: api.PEFT{Type: "peft.nope"}, S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}}); err == nil {
		t.Error("a model of a PEFT type nobody installed was created")
	}
	p.stop(t)

	// A PEFT plugin whose Describe names another plugin is not installed.
	t.Setenv(envPEFTPlugin, "misnamed")
	if out, stderr, code := run(t, "plugin", "install", exe, "--replace", "--data", data); code == 0 || !strings.Contains(stderr, `describes itself as "peft.lora"`) {
		t.Errorf("install a misnamed plugin: exit %d: %s%s", code, out, stderr)
	}

	// A plugin whose "off" values are not the identity is refused when a model is made of it.
	t.Setenv(envPEFTPlugin, "broken")
	if out, stderr, code := run(t, "plugin", "install", exe, "--replace", "--data", data); code != 0 {
		t.Fatalf("install the broken one: exit %d: %s%s", code, out, stderr)
	}
	p = startServeProc(t, data, "--train-workers", "0")
	_, err = p.cl.CreateModel(ctx, &api.CreateModelRequest{Name: "broken", ModelSpec: api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"},
		PEFT: api.PEFT{Type: "clitest", Config: json.RawMessage(`{"rank": 3}`)}, S3T: api.S3TConfig{Shards: 1, Slices: 2, Sequences: 1}}})
	if e := (*api.Error)(nil); !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Message, "with every parameter off") {
		t.Errorf("a plan whose off values are not the identity: %v, want 400 saying so", err)
	}
	p.stop(t)
}

// TestServeUsesInstalledSelectorPlugin: a model created through s3t serve takes its slice
// orders from an installed selector plugin (selector.clitest: reversed cyclic rotations), named
// with or without its namespace; an unknown selector is the request's fault (400), a plugin
// whose binary changed since it was installed the server's (503).
func TestServeUsesInstalledSelectorPlugin(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run(t, "plugin", "install", exe, "--data", data); code != 0 || !strings.Contains(out, "installed selector.clitest") {
		t.Fatalf("install: exit %d: %s%s", code, out, stderr)
	}
	p := startServeProc(t, data, "--train-workers", "0")
	if _, err := p.cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	create := func(name, selector string) (*api.Model, error) {
		return p.cl.CreateModel(ctx, &api.CreateModelRequest{Name: name, ModelSpec: api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"},
			PEFT: api.PEFT{Type: "lora"}, S3T: api.S3TConfig{Shards: 2, Slices: 3, Sequences: 2, Selector: selector}}})
	}
	want := "[[[2 1 0] [1 0 2]] [[2 1 0] [1 0 2]]]" // cyclic(3, 2) = [0 1 2] [2 0 1], each reversed
	for i, selector := range []string{"clitest", "selector.clitest"} {
		m, err := create(fmt.Sprint("m", i), selector)
		if err != nil {
			t.Fatalf("create with selector %s: %v\n%s", selector, err, p.log)
		}
		if got := fmt.Sprint(m.Sequences); got != want {
			t.Errorf("selector %s: sequences %s, want %s", selector, got, want)
		}
	}
	m, err := create("builtin", "cyclic")
	if err != nil || fmt.Sprint(m.Sequences) != "[[[0 1 2] [2 0 1]] [[0 1 2] [2 0 1]]]" {
		t.Errorf("the built-in cyclic: %v, %v", m, err)
	}
	_, err = create("nope", "nope")
	if e := (*api.Error)(nil); !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Message, "plugin not found") {
		t.Errorf("an unknown selector: %v, want 400 naming it", err)
	}
	// The binary is replaced (renamed over) while its process runs: the running process is not
	// used any more (503), until the binary is the installed one again.
	installed := filepath.Join(data, "plugins", "selector.clitest")
	orig, err := os.ReadFile(installed)
	if err != nil {
		t.Fatal(err)
	}
	for _, swap := range []struct {
		name   string
		data   []byte
		status int
	}{
		{"swapped", append(slices.Clone(orig), "tampered"...), http.StatusServiceUnavailable},
		{"restored", orig, http.StatusCreated},
	} {
		if err := os.WriteFile(installed+".new", swap.data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(installed+".new", installed); err != nil {
			t.Fatal(err)
		}
		_, err := create(swap.name, "clitest")
		status := http.StatusCreated
		if e := (*api.Error)(nil); errors.As(err, &e) {
			status = e.Status
		} else if err != nil {
			status = 0
		}
		if status != swap.status {
			t.Errorf("a model with selector.clitest %s: %v, want status %d", swap.name, err, swap.status)
		}
	}
	p.stop(t)
	// The CLI's selection goes through the same host with --plugin-data.
	out, stderr, code := run(t, "sequences", "--slices", "3", "--budget", "2", "--selector", "clitest", "--plugin-data", data, "--json")
	if code != 0 || !strings.Contains(out, `"sequences":[[2,1,0],[1,0,2]]`) {
		t.Errorf("s3t sequences --selector clitest: exit %d: %s%s", code, out, stderr)
	}
	if _, stderr, code := run(t, "sequences", "--selector", "clitest"); code != 2 || !strings.Contains(stderr, "give --plugin-data") {
		t.Errorf("s3t sequences --selector clitest without --plugin-data: exit %d: %s", code, stderr)
	}
	// The binary changes after install: the next server cannot start it, and says so as a 503.
	f, err := os.OpenFile(filepath.Join(data, "plugins", "selector.clitest"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tampered"))
	f.Close()
	p = startServeProc(t, data, "--train-workers", "0")
	_, err = create("tampered", "clitest")
	if e := (*api.Error)(nil); !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != api.CodeUnavailable {
		t.Errorf("a tampered selector: %v, want 503 unavailable", err)
	}
	p.stop(t)
	// Plugins that cannot start in time (--plugin-start-timeout) are the server's trouble too.
	p = startServeProc(t, data, "--train-workers", "0", "--plugin-start-timeout", "1ms")
	_, err = create("slow", "cyclic")
	if e := (*api.Error)(nil); !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || !strings.Contains(e.Message, "start") {
		t.Errorf("plugins given 1 ms to start: %v, want 503 unavailable", err)
	}
	p.stop(t)
}

// TestPluginListCheckFailsOnTampered: once an installed plugin's binary changed, `plugin list
// --check` still lists everything but exits 1, so that it can gate a deployment.
func TestPluginListCheckFailsOnTampered(t *testing.T) {
	data := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run(t, "plugin", "install", exe, "--data", data); code != 0 {
		t.Fatalf("install: exit %d: %s%s", code, out, stderr)
	}
	if _, stderr, code := run(t, "plugin", "list", "--data", data, "--check"); code != 0 {
		t.Fatalf("list --check of a sound install: exit %d: %s", code, stderr)
	}
	f, err := os.OpenFile(filepath.Join(data, "plugins", "selector.clitest"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tampered"))
	f.Close()
	out, stderr, code := run(t, "plugin", "list", "--data", data, "--check")
	if code != 1 || !strings.Contains(out, "tampered") || !strings.Contains(stderr, "failed their check") {
		t.Fatalf("list --check with a tampered plugin: exit %d\n%s%s", code, out, stderr)
	}
}
