package cli

import (
	"context"
	"encoding/hex"
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
	"github.com/s3t-dev/s3t/plugins/lora"
	"github.com/s3t-dev/s3t/plugins/selectors"
	"github.com/s3t-dev/s3t/sdk"
)

func listPlugins(t *testing.T, args ...string) []listEntry {
	t.Helper()
	out, stderr, code := run(t, append([]string{"plugin", "list", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Dir     string      `json:"plugin_dir"`
		Plugins []listEntry `json:"plugins"`
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
			if e.Name != want[i] || !e.Builtin || e.Status != status || e.Protocol != 1 || e.Version == "" || len(e.SHA256) != 64 || e.SDKVersion != sdk.Version {
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
	// The SDK a third-party plugin was built with is known once --check started it.
	for _, e := range listPlugins(t, "--data", data, "--check") {
		if e.Name == "selector.clitest" && (e.Status != plugins.StatusRunning || e.SDKVersion != sdk.Version) {
			t.Errorf("list --check --json: %+v, want running with SDK %s", e, sdk.Version)
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
	sum, err := plugins.FileSHA256(exe)
	if err != nil {
		t.Fatal(err)
	}
	exeSum := hex.EncodeToString(sum)
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
		// The builds that planned it, read back from the ledger: the installed copy of this
		// binary, and the built-ins, which run this binary too.
		got, err := p.cl.GetModel(ctx, &api.GetModelRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		want := api.PlannedBy{PEFT: api.PluginRef{Name: "peft.clitest", Version: "0.1.0", SHA256: exeSum},
			Selector: api.PluginRef{Name: "selector.cyclic", Version: selectors.Version, SHA256: exeSum}}
		if peft == "lora" {
			want.PEFT = api.PluginRef{Name: "peft.lora", Version: lora.Version, SHA256: exeSum}
		}
		if got.PlannedBy == nil || *got.PlannedBy != want {
			t.Errorf("%s model planned by %+v, want %+v", peft, got.PlannedBy, want)
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

// TestPluginDescribe: `plugin describe` shows what a plugin says of itself, a PEFT plugin's
// config schema and defaults included (the host used to read them and show them to no one), by
// full or short name.
func TestPluginDescribe(t *testing.T) {
	data := t.TempDir()
	describe := func(name string) (d pluginDescription) {
		t.Helper()
		out, stderr, code := run(t, "plugin", "describe", name, "--data", data)
		if code != 0 {
			t.Fatalf("describe %s: exit %d: %s", name, code, stderr)
		}
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("describe %s: %v: %s", name, err, out)
		}
		return d
	}
	d := describe("lora")
	var defaults struct {
		Rank  int     `json:"rank"`
		Alpha float64 `json:"alpha"`
	}
	if err := json.Unmarshal(d.Defaults, &defaults); err != nil || defaults.Rank != 8 || defaults.Alpha != 16 {
		t.Errorf("lora's defaults %s (%v), want rank 8, alpha 16", d.Defaults, err)
	}
	if d.Name != "peft.lora" || d.Kind != sdk.KindPEFT || d.Version == "" || d.SDKVersion != sdk.Version || d.Protocol != 1 ||
		!d.Builtin || len(d.SHA256) != 64 || !strings.Contains(string(d.ConfigSchema), `"rank"`) {
		t.Errorf("describe lora = %+v", d)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run(t, "plugin", "install", exe, "--data", data); code != 0 {
		t.Fatalf("install: exit %d: %s%s", code, out, stderr)
	}
	sum, err := plugins.FileSHA256(exe)
	if err != nil {
		t.Fatal(err)
	}
	d = describe("clitest")
	if d.Name != "selector.clitest" || d.Kind != sdk.KindSelector || d.Version != "0.1.0" || d.SDKVersion != sdk.Version ||
		d.Builtin || d.SHA256 != fmt.Sprintf("%x", sum) || d.Path != filepath.Join(data, "plugins", "selector.clitest") || d.ConfigSchema != nil {
		t.Errorf("describe clitest = %+v", d)
	}
	if _, stderr, code := run(t, "plugin", "describe", "nope", "--data", data); code != 1 || !strings.Contains(stderr, "plugin not found") ||
		!strings.Contains(stderr, "selector.clitest") {
		t.Errorf("describe nope: exit %d: %s", code, stderr)
	}
}

// TestPluginListCheckMultilineError: a plugin whose start fails with go-plugin's error of
// several lines keeps the table whole (the first line in it, the rest after it), and the
// failure names the plugin.
func TestPluginListCheckMultilineError(t *testing.T) {
	data := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run(t, "plugin", "install", exe, "--data", data); code != 0 {
		t.Fatalf("install: exit %d: %s%s", code, out, stderr)
	}
	t.Setenv(envPEFTPlugin, "stdout") // its next start writes no handshake
	out, stderr, code := run(t, "plugin", "list", "--data", data, "--check")
	if code != 1 || !strings.Contains(stderr, "1 plugin(s) failed their check: selector.clitest (error)") {
		t.Errorf("list --check: exit %d: %s", code, stderr)
	}
	table, rest, _ := strings.Cut(out, "\n\n")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2+7 { // the directory, the header, six built-ins and selector.clitest
		t.Fatalf("the table has %d lines, want 9:\n%s", len(lines), out)
	}
	col := strings.Index(lines[1], "STATUS")
	for _, l := range lines[2:] {
		if len(l) < col || l[col-2:col] != "  " || l[col] == ' ' {
			t.Errorf("row %q does not have its STATUS under the header's (column %d):\n%s", l, col, out)
		}
	}
	row := lines[len(lines)-1]
	if !strings.HasPrefix(row, "selector.clitest") || !strings.Contains(row, "error: plugin selector.clitest") || !strings.Contains(row, "(more below)") {
		t.Errorf("selector.clitest's row: %q", row)
	}
	if !strings.HasPrefix(rest, "selector.clitest: plugin selector.clitest") || !strings.Contains(rest, "not a handshake") || strings.Count(rest, "\n") < 2 {
		t.Errorf("after the table, want the whole error:\n%s", rest)
	}
}

// TestPluginRemove: `plugin remove` uninstalls a plugin (catalog entry and binary) and says so;
// built-ins and unknown names are refused.
func TestPluginRemove(t *testing.T) {
	data := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run(t, "plugin", "install", exe, "--data", data); code != 0 {
		t.Fatalf("install: exit %d: %s%s", code, out, stderr)
	}
	bin := filepath.Join(data, "plugins", "selector.clitest")
	out, stderr, code := run(t, "plugin", "remove", "selector.clitest", "--data", data)
	if code != 0 || !strings.Contains(out, "removed selector.clitest 0.1.0 (selector plugin") || !strings.Contains(out, "deleted its binary "+bin) {
		t.Fatalf("remove: exit %d: %s%s", code, out, stderr)
	}
	if _, err := os.Stat(bin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the binary is still there: %v", err)
	}
	for _, e := range listPlugins(t, "--data", data) {
		if !e.Builtin {
			t.Errorf("listed after the removal: %+v", e)
		}
	}
	if _, stderr, code := run(t, "plugin", "remove", "selector.clitest", "--data", data); code != 1 || !strings.Contains(stderr, "plugin not found") {
		t.Errorf("a second remove: exit %d: %s", code, stderr)
	}
	if _, stderr, code := run(t, "plugin", "remove", "peft.lora", "--data", data); code != 1 || !strings.Contains(stderr, "is a built-in") {
		t.Errorf("remove a built-in: exit %d: %s", code, stderr)
	}
	if _, _, code := run(t, "plugin", "remove", "--data", data); code != 2 {
		t.Errorf("remove without a name: exit %d, want 2", code)
	}
}

// TestServePluginDirFlag: s3t serve takes --plugin-dir as s3t plugin does (it had only
// S3T_PLUGIN_DIR); the flag wins over the variable, which wins over DATA/plugins.
func TestServePluginDirFlag(t *testing.T) {
	out, stderr, code := run(t, "serve", "--help")
	if code != 0 || !strings.Contains(out, "--plugin-dir string") {
		t.Errorf("serve --help: exit %d, no --plugin-dir: %s%s", code, out, stderr)
	}
	data := t.TempDir()
	t.Setenv(plugins.EnvPluginDir, "")
	for _, tt := range []struct{ flag, env, want string }{
		{"", "", filepath.Join(data, "plugins")},
		{"", "/from/env", "/from/env"},
		{"/from/flag", "/from/env", "/from/flag"},
	} {
		t.Setenv(plugins.EnvPluginDir, tt.env)
		cfg, err := servePluginConfig(serveOptions{pluginDir: tt.flag}, data)
		if err != nil || cfg.Dir != tt.want || cfg.DataDir != data {
			t.Errorf("--plugin-dir %q, $%s %q: plugin directory %q (%v), want %q", tt.flag, plugins.EnvPluginDir, tt.env, cfg.Dir, err, tt.want)
		}
	}
	wd, _ := os.Getwd()
	if cfg, _ := servePluginConfig(serveOptions{pluginDir: "rel"}, data); cfg.Dir != filepath.Join(wd, "rel") {
		t.Errorf("a relative --plugin-dir gives %q, want it made absolute", cfg.Dir)
	}
}
