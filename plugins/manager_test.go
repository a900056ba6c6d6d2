package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/plugins/adapter"
	"github.com/s3t-dev/s3t/plugins/lora"
	"github.com/s3t-dev/s3t/plugins/prefix"
	"github.com/s3t-dev/s3t/sdk"
)

// openManager opens a Manager on a fresh data directory whose built-ins are served by this test
// binary (`<test binary> plugin-run NAME`, as `s3t plugin run NAME`).
func openManager(t *testing.T, dataDir string, cfg plugins.Config) *plugins.Manager {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = dataDir
	if cfg.Self == nil {
		cfg.Self = &plugins.Command{Path: exe, Args: []string{"plugin-run"}}
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	m, err := plugins.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func entry(t *testing.T, m *plugins.Manager, name string) plugins.Entry {
	t.Helper()
	ents, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("%s not listed in %+v", name, ents)
	return plugins.Entry{}
}

// TestManagerFreshDataDir: a fresh data directory lists the six built-ins, and each runs with no
// install step, out of process.
func TestManagerFreshDataDir(t *testing.T) {
	dir := t.TempDir()
	m := openManager(t, dir, plugins.Config{})
	if want := filepath.Join(dir, "plugins"); m.Dir() != want {
		t.Errorf("plugin dir %s, want %s", m.Dir(), want)
	}
	ents, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
		if !e.Builtin || e.Status != plugins.StatusReady || e.Version == "" || e.Protocol != sdk.ProtocolVersion || len(e.SHA256) != 64 {
			t.Errorf("entry %+v", e)
		}
	}
	want := []string{"peft.lora", "peft.prefix", "peft.adapter", "selector.cyclic", "selector.bms", "selector.random"}
	if !slices.Equal(names, want) {
		t.Fatalf("listed %v, want %v", names, want)
	}
	ctx := context.Background()
	for _, name := range want[:3] {
		p, err := m.PEFT(name)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := p.Describe(ctx, &sdk.DescribeRequest{}); err != nil || d.Name != name {
			t.Errorf("%s: Describe = %+v, %v", name, d, err)
		}
	}
	for _, name := range want[3:] {
		s, err := m.Selector(name)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Select(ctx, &sdk.SelectRequest{Slices: 4, Budget: 2, Seed: 1}); err != nil || len(r.Sequences) != 2 {
			t.Errorf("%s: Select = %+v, %v", name, r, err)
		}
	}
	for _, name := range want {
		if e := entry(t, m, name); e.Status != plugins.StatusRunning {
			t.Errorf("%s: status %s after a call, want running", name, e.Status)
		}
	}
	if _, err := m.Client("peft.nope"); !errors.Is(err, plugins.ErrNotFound) {
		t.Errorf("unknown plugin: %v", err)
	}
}

// TestManagerStopsIdlePlugins: with Config.IdleTimeout, a plugin process with nothing to do is
// stopped (List says ready, not running), and the next call starts a new one.
func TestManagerStopsIdlePlugins(t *testing.T) {
	m := openManager(t, t.TempDir(), plugins.Config{IdleTimeout: 300 * time.Millisecond})
	s, err := m.Selector("selector.cyclic")
	if err != nil {
		t.Fatal(err)
	}
	req := &sdk.SelectRequest{Slices: 4, Budget: 2, Seed: 1}
	if _, err := s.Select(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Client("selector.cyclic")
	pid := c.Pid()
	if pid == 0 {
		t.Fatal("no process after a call")
	}
	waitGone(t, pid, 5*time.Second)
	if e := entry(t, m, "selector.cyclic"); e.Status != plugins.StatusReady {
		t.Errorf("status %s after the idle stop, want ready", e.Status)
	}
	if _, err := s.Select(context.Background(), req); err != nil {
		t.Fatalf("the call after the idle stop: %v", err)
	}
	if c.Pid() == 0 || c.Pid() == pid || c.Starts() != 2 {
		t.Errorf("pid %d (was %d), starts %d: want a new process", c.Pid(), pid, c.Starts())
	}
}

// installCopy installs a copy of this test binary, which serves selector.test when a host
// starts it, and returns the Manager and the installed path.
func installCopy(t *testing.T, dataDir string) (*plugins.Manager, string) {
	t.Helper()
	m := openManager(t, dataDir, plugins.Config{})
	exe, _ := os.Executable()
	e, err := m.Install(context.Background(), exe)
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "selector.test" || e.Kind != sdk.KindSelector || e.Version != "0.0.1" || e.Protocol != sdk.ProtocolVersion {
		t.Fatalf("installed %+v", e)
	}
	return m, e.Path
}

func TestManagerInstall(t *testing.T) {
	dir := t.TempDir()
	m, path := installCopy(t, dir)
	if filepath.Dir(path) != m.Dir() {
		t.Errorf("installed at %s, outside %s", path, m.Dir())
	}
	e := entry(t, m, "selector.test")
	if e.Builtin || e.Status != plugins.StatusReady || e.SHA256 == "" {
		t.Errorf("entry %+v", e)
	}
	s, err := m.Selector("selector.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Select(context.Background(), &sdk.SelectRequest{Slices: 3, Budget: 3, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	// The catalog survives a restart of the host.
	m2 := openManager(t, dir, plugins.Config{})
	if e := entry(t, m2, "selector.test"); e.Status != plugins.StatusReady {
		t.Errorf("after reopening: %+v", e)
	}
	// A second install of the name fails loudly, unless it replaces.
	exe, _ := os.Executable()
	if _, err := m2.Install(context.Background(), exe); !errors.Is(err, plugins.ErrDuplicate) {
		t.Errorf("second install: %v, want ErrDuplicate", err)
	}
	if _, err := m2.Install(context.Background(), exe, plugins.Replace()); err != nil {
		t.Errorf("install with Replace: %v", err)
	}
	// A binary that says it is a built-in is refused.
	t.Setenv("S3T_PLUGINS_TEST_SERVE", "selector.cyclic")
	if _, err := m2.Install(context.Background(), exe); !errors.Is(err, plugins.ErrDuplicate) || !strings.Contains(err.Error(), "built-in") {
		t.Errorf("installing a built-in's name: %v, want ErrDuplicate", err)
	}
}

// TestManagerInstallQuotesStderr: installing a binary that exits at start says why, in the
// words the plugin printed to stderr.
func TestManagerInstallQuotesStderr(t *testing.T) {
	m := openManager(t, t.TempDir(), plugins.Config{})
	exe, _ := os.Executable()
	t.Setenv(envServe, "exit-at-start")
	_, err := m.Install(context.Background(), exe)
	if !errors.Is(err, plugins.ErrStart) || !strings.Contains(err.Error(), lineExitReason) || strings.Contains(err.Error(), "architecture") {
		t.Fatalf("got %v, want ErrStart quoting the plugin's stderr", err)
	}
	if ents, _ := m.List(context.Background()); len(ents) != 6 {
		t.Errorf("listed %d plugins after a failed install, want the six built-ins", len(ents))
	}
}

// TestManagerRefusesTamperedBinary: after install the binary is modified; the host refuses to
// start it, on a fresh start as on a restart after a crash, and says why.
func TestManagerRefusesTamperedBinary(t *testing.T) {
	dir := t.TempDir()
	m, path := installCopy(t, dir)
	c, err := m.Client("selector.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := selectSeed(c, 1); err != nil {
		t.Fatal(err)
	}
	// The running process crashes; meanwhile the binary is modified.
	if err := syscallKill(c.Pid()); err != nil {
		t.Fatal(err)
	}
	waitExited(t, c)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tampered"))
	f.Close()
	if e := entry(t, m, "selector.test"); e.Status != plugins.StatusTampered {
		t.Errorf("status %s, want tampered", e.Status)
	}
	check := func(err error) {
		t.Helper()
		if !errors.Is(err, plugins.ErrTampered) || !strings.Contains(err.Error(), "plugin selector.test") ||
			!strings.Contains(err.Error(), "SHA-256") || !strings.Contains(err.Error(), "refusing to start") {
			t.Fatalf("got %v, want ErrTampered saying the binary was refused", err)
		}
		t.Logf("error: %v", err)
	}
	// The restart is refused.
	check(selectSeed(c, 1))
	// Fresh start by another host.
	m2 := openManager(t, dir, plugins.Config{})
	s, err := m2.Selector("selector.test")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Select(context.Background(), &sdk.SelectRequest{Slices: 2, Budget: 1})
	check(err)
}

// replaceFile replaces the file at path by one holding data, as `cp x P.new && mv P.new P`
// does: a running process does not prevent it (it would prevent writing the file in place).
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// TestManagerNoticesChangedBinary: an installed binary changes while its process runs with a call
// in flight. When it no longer matches its SHA-256, the next call fails with ErrTampered at once
// and the process is stopped once the call in flight has ended (normally); so is every later
// call. A change that leaves the same bytes is no tampering: the process goes on.
func TestManagerNoticesChangedBinary(t *testing.T) {
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		change   func(t *testing.T, path string)
		tampered bool
		status   plugins.Status
	}{
		{"replaced by another binary", func(t *testing.T, path string) {
			replaceFile(t, path, append(slices.Clone(data), "tampered"...))
		}, true, plugins.StatusTampered},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, true, plugins.StatusMissing},
		{"replaced by the same bytes", func(t *testing.T, path string) { replaceFile(t, path, data) }, false, plugins.StatusRunning},
		{"touched", func(t *testing.T, path string) {
			future := time.Now().Add(time.Hour)
			if err := os.Chtimes(path, future, future); err != nil {
				t.Fatal(err)
			}
		}, false, plugins.StatusRunning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			dir := t.TempDir()
			m := openManager(t, dir, plugins.Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
			e, err := m.Install(context.Background(), exe)
			if err != nil {
				t.Fatal(err)
			}
			c, err := m.Client("selector.test")
			if err != nil {
				t.Fatal(err)
			}
			if err := selectSeed(c, 1); err != nil {
				t.Fatal(err)
			}
			pid := c.Pid()
			inFlight := make(chan error, 1)
			go func() { inFlight <- selectSeed(c, seedSleep) }()
			waitCalled(t, &buf, seedSleep)
			tt.change(t, e.Path)
			err = selectSeed(c, 1)
			if !tt.tampered {
				if err != nil || c.Pid() != pid || c.Starts() != 1 {
					t.Errorf("after the change: %v, pid %d (was %d), starts %d: want the same process, answering", err, c.Pid(), pid, c.Starts())
				}
			} else if !errors.Is(err, plugins.ErrTampered) || !strings.Contains(err.Error(), "plugin selector.test") ||
				!strings.Contains(err.Error(), fmt.Sprintf("the process (pid %d)", pid)) {
				t.Errorf("after the change: %v, want ErrTampered saying the process is stopped", err)
			} else {
				t.Logf("error: %v", err)
			}
			if err := <-inFlight; err != nil {
				t.Errorf("the call in flight during the change: %v", err)
			}
			if tt.tampered {
				waitGone(t, pid, 5*time.Second)
				if err := selectSeed(c, 1); err == nil || c.Pid() != 0 {
					t.Errorf("a call after the process was stopped: %v, pid %d: want it refused, and no process", err, c.Pid())
				}
			}
			if e := entry(t, m, "selector.test"); e.Status != tt.status {
				t.Errorf("status %s, want %s", e.Status, tt.status)
			}
		})
	}
}

// waitCalled waits for selector.test's log record of a call with seed.
func waitCalled(t *testing.T, buf *syncBuffer, seed int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, rec := range records(buf) {
			if rec["msg"] == "test selector called" && rec["seed"] == float64(seed) {
				return
			}
		}
	}
	t.Fatalf("no call with seed %d in the log:\n%s", seed, buf.String())
}

// TestManagerPlanCacheChecksBinary: a plan in the cache is not returned once the plugin's binary
// changed (here the built-ins' executable): ErrTampered, as for a call, and the process stops.
func TestManagerPlanCacheChecksBinary(t *testing.T) {
	bb, err := backbone.LoadBytes(assets.ViTFashionMNIST())
	if err != nil {
		t.Fatal(err)
	}
	man, err := backbone.DetectManifest(bb)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "s3t")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m := openManager(t, t.TempDir(), plugins.Config{Self: &plugins.Command{Path: bin, Args: []string{"plugin-run"}}})
	req := &sdk.PlanRequest{Manifest: *man}
	for range 2 { // planned, then cached
		if _, err := m.Plan(ctx, lora.Name, req); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := m.Client(lora.Name)
	pid := c.Pid()
	if c.Starts() != 1 || pid == 0 {
		t.Fatalf("starts %d, pid %d", c.Starts(), pid)
	}
	replaceFile(t, bin, append(data, "tampered"...))
	if _, err := m.Plan(ctx, lora.Name, req); !errors.Is(err, plugins.ErrTampered) {
		t.Fatalf("a cached plan of a changed binary: %v, want ErrTampered", err)
	}
	waitGone(t, pid, 5*time.Second)
	// Without a process too.
	if _, err := m.Plan(ctx, lora.Name, req); !errors.Is(err, plugins.ErrTampered) {
		t.Fatalf("again: %v, want ErrTampered", err)
	}
}

func waitExited(t *testing.T, c *plugins.Client) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Pid() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the killed process still looks alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestManagerListsUninstalledFiles(t *testing.T) {
	m := openManager(t, t.TempDir(), plugins.Config{})
	if err := os.WriteFile(filepath.Join(m.Dir(), "dropped-in"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	last := ents[len(ents)-1]
	if last.Status != plugins.StatusNotInstalled || filepath.Base(last.Path) != "dropped-in" {
		t.Errorf("last entry %+v, want the dropped-in file, not installed", last)
	}
	if _, err := m.Client("dropped-in"); !errors.Is(err, plugins.ErrNotFound) {
		t.Errorf("running an uninstalled file: %v", err)
	}
}

// TestManagerPlanCache: plans come from the plugin once per (plugin build, manifest, config),
// then from the cache, also in a new host on the same data directory.
func TestManagerPlanCache(t *testing.T) {
	bb, err := backbone.LoadBytes(assets.ViTFashionMNIST())
	if err != nil {
		t.Fatal(err)
	}
	man, err := backbone.DetectManifest(bb)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	m := openManager(t, dir, plugins.Config{})
	req := &sdk.PlanRequest{Manifest: *man, Config: json.RawMessage(`{"rank": 4}`)}
	plan, err := m.Plan(ctx, lora.Name, req)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m.Client(lora.Name)
	if c.Starts() != 1 {
		t.Fatalf("starts %d", c.Starts())
	}
	// Same request, spelled differently: no plugin call, same plan.
	m2 := openManager(t, dir, plugins.Config{})
	again, err := m2.Plan(ctx, lora.Name, &sdk.PlanRequest{Manifest: *man, Config: json.RawMessage(` { "rank" : 4 } `)})
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := m2.Client(lora.Name)
	if c2.Starts() != 0 {
		t.Errorf("the second host started the plugin for a cached plan")
	}
	a, _ := json.Marshal(plan)
	b, _ := json.Marshal(again)
	if string(a) != string(b) {
		t.Error("the cached plan differs")
	}
	// Another config is planned by the plugin.
	if _, err := m2.Plan(ctx, lora.Name, &sdk.PlanRequest{Manifest: *man, Config: json.RawMessage(`{"rank": 2}`)}); err != nil {
		t.Fatal(err)
	}
	if c2.Starts() != 1 {
		t.Errorf("starts %d after a new config, want 1", c2.Starts())
	}
	// A config the plugin rejects is its error, named.
	_, err = m2.Plan(ctx, lora.Name, &sdk.PlanRequest{Manifest: *man, Config: json.RawMessage(`{"rank": 0}`)})
	if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), "plugin peft.lora") {
		t.Errorf("rank 0: %v, want sdk.ErrInvalidConfig naming the plugin", err)
	}
	// The built-ins are one binary: each plans for itself, also with the same manifest and
	// config, and also from the cache on disk in a new host.
	for _, host := range []*plugins.Manager{m2, openManager(t, dir, plugins.Config{})} {
		plans := map[string]string{}
		for _, name := range []string{lora.Name, adapter.Name, prefix.Name} {
			p, err := host.Plan(ctx, name, &sdk.PlanRequest{Manifest: *man})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(p)
			for other, ob := range plans {
				if ob == string(b) {
					t.Errorf("%s planned as %s did", name, other)
				}
			}
			plans[name] = string(b)
		}
	}
}

func TestPlanKey(t *testing.T) {
	man := &sdk.Manifest{Version: 1, Blocks: []sdk.Block{{Name: "b"}}}
	keyOf := func(name, sum string, m *sdk.Manifest, config string) string {
		k, err := plugins.PlanKey(name, []byte(sum), m, json.RawMessage(config))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	key := func(sum string, m *sdk.Manifest, config string) string { return keyOf("peft.x", sum, m, config) }
	base := key("a", man, `{"x": 1, "y": [1, 2]}`)
	tests := []struct {
		name string
		got  string
		same bool
	}{
		{"reordered, respaced", key("a", man, `{"y":[1,2],"x":1}`), true},
		{"other binary", key("b", man, `{"x": 1, "y": [1, 2]}`), false},
		{"other manifest", key("a", &sdk.Manifest{Version: 1, Blocks: []sdk.Block{{Name: "c"}}}, `{"x": 1, "y": [1, 2]}`), false},
		{"other config", key("a", man, `{"x": 2, "y": [1, 2]}`), false},
		{"other plugin of the same binary", keyOf("peft.y", "a", man, `{"x": 1, "y": [1, 2]}`), false},
	}
	for _, tt := range tests {
		if (tt.got == base) != tt.same {
			t.Errorf("%s: same key = %v, want %v", tt.name, tt.got == base, tt.same)
		}
	}
	if key("a", man, "") != key("a", man, "{}") {
		t.Error("an empty config and {} differ")
	}
}

func TestRegistryDuplicate(t *testing.T) {
	r := plugins.NewRegistry()
	if err := r.Register(lora.Plugin()); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(lora.Plugin()); !errors.Is(err, plugins.ErrDuplicate) {
		t.Errorf("second registration: %v, want ErrDuplicate", err)
	}
	if err := r.Register(&sdk.Plugin{Name: "lora", Version: "1", PEFT: lora.New()}); !errors.Is(err, sdk.ErrInvalidPlugin) {
		t.Errorf("name without namespace: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("MustRegister of a duplicate did not panic")
		}
	}()
	r.MustRegister(lora.Plugin())
}

// TestCatalogRefusesEscapingEntries: a catalog entry whose name or file would reach outside
// the plugin directory (a hand-edited catalog, or one an old host wrote from a plugin that
// reported such a name) fails Open instead of being started.
func TestCatalogRefusesEscapingEntries(t *testing.T) {
	for name, entry := range map[string]string{
		"file":     `{"name": "peft.x", "kind": "peft", "version": "1", "file": "../x", "sha256": "00"}`,
		"name":     `{"name": "../../x", "kind": "peft", "version": "1", "file": "x", "sha256": "00"}`,
		"kind":     `{"name": "peft.x", "kind": "selector", "version": "1", "file": "peft.x", "sha256": "00"}`,
		"dot-dot":  `{"name": "peft.x", "kind": "peft", "version": "1", "file": "..", "sha256": "00"}`,
		"no file":  `{"name": "peft.x", "kind": "peft", "version": "1", "file": "", "sha256": "00"}`,
		"absolute": `{"name": "peft.x", "kind": "peft", "version": "1", "file": "/bin/sh", "sha256": "00"}`,
	} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			dir := plugins.PluginDir(data)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			catalog := `{"version": 1, "plugins": [` + entry + `]}`
			if err := os.WriteFile(filepath.Join(dir, plugins.CatalogFile), []byte(catalog), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := plugins.Open(plugins.Config{DataDir: data, Logger: quietLogger()})
			if err == nil {
				m.Close()
				t.Fatal("Open took the catalog")
			}
			if !strings.Contains(err.Error(), "is not a plugin of this directory") {
				t.Errorf("Open: %v", err)
			}
		})
	}
}

// TestManagerSeesInstallsOfOtherProcesses: a host (a running s3t serve) uses a plugin that
// another host (`s3t plugin install`) installed after it opened the directory, and after an
// upgrade (--replace) it runs the new binary instead of refusing it as tampered.
func TestManagerSeesInstallsOfOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	server := openManager(t, dir, plugins.Config{})
	if _, err := server.Client("selector.test"); !errors.Is(err, plugins.ErrNotFound) {
		t.Fatalf("before the install: %v, want ErrNotFound", err)
	}
	_, path := installCopy(t, dir) // another host installs it
	c, err := server.Client("selector.test")
	if err != nil {
		t.Fatalf("after another host installed it: %v", err)
	}
	if err := selectSeed(c, 1); err != nil {
		t.Fatal(err)
	}
	// An upgrade: the same plugin, another binary (the test binary with bytes appended).
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(t.TempDir(), "selector-test-2")
	if err := os.WriteFile(up, append(data, "v2"...), 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a new modification time for the catalog on coarse clocks
	other := openManager(t, dir, plugins.Config{})
	e, err := other.Install(context.Background(), up, plugins.Replace())
	if err != nil || e.Path != path {
		t.Fatalf("upgrade: %+v, %v", e, err)
	}
	c2, err := server.Client("selector.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := selectSeed(c2, 1); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
	sum, _ := plugins.FileSHA256(up)
	if !bytes.Equal(c2.Checksum(), sum) {
		t.Errorf("the running host still checks the old binary's SHA-256")
	}
}
