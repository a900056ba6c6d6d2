package plugins_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/plugins"
)

// TestManagerRemove: Remove takes an installed plugin out of the catalog and deletes its
// binary, stopping its process; a host running beside it (s3t serve) stops its own process of
// the plugin and no longer knows the name. Built-ins are refused, and a plugin whose binary is
// already gone is removed all the same.
func TestManagerRemove(t *testing.T) {
	dir := t.TempDir()
	server := openManager(t, dir, plugins.Config{}) // opened before the install, as s3t serve
	m, path := installCopy(t, dir)
	ours, err := m.Client("selector.test")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := server.Client("selector.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*plugins.Client{ours, theirs} {
		if err := selectSeed(c, 1); err != nil {
			t.Fatal(err)
		}
	}

	r, err := m.Remove("selector.test")
	if err != nil {
		t.Fatal(err)
	}
	if r.Record.Name != "selector.test" || r.Record.Version != "0.0.1" || r.Path != path || !r.BinaryRemoved || !r.Stopped {
		t.Errorf("Remove = %+v", r)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the binary is still there: %v", err)
	}
	catalog, err := os.ReadFile(filepath.Join(dir, "plugins", plugins.CatalogFile))
	if err != nil || strings.Contains(string(catalog), "selector.test") {
		t.Errorf("the catalog still lists it (%v):\n%s", err, catalog)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "plugins"))
	for _, f := range files {
		if f.Name() != plugins.CatalogFile {
			t.Errorf("left in the plugin directory: %s", f.Name())
		}
	}
	waitExited(t, ours)
	for _, h := range []*plugins.Manager{m, server} {
		if _, err := h.Client("selector.test"); !errors.Is(err, plugins.ErrNotFound) {
			t.Errorf("after the removal: %v, want ErrNotFound", err)
		}
		ents, err := h.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name == "selector.test" || e.Path == path {
				t.Errorf("still listed: %+v", e)
			}
		}
	}
	waitExited(t, theirs) // the server's process stopped at its next use of the catalog

	if _, err := m.Remove("selector.test"); !errors.Is(err, plugins.ErrNotFound) {
		t.Errorf("a second removal: %v, want ErrNotFound", err)
	}
	if _, err := m.Remove("peft.lora"); err == nil || !strings.Contains(err.Error(), "built-in") {
		t.Errorf("removing a built-in: %v, want a refusal", err)
	}
	if e := entry(t, m, "peft.lora"); e.Status != plugins.StatusReady {
		t.Errorf("peft.lora after the refused removal: %+v", e)
	}

	// A plugin whose binary went (StatusMissing) leaves the catalog all the same.
	_, path = installCopy(t, dir)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if r, err := m.Remove("selector.test"); err != nil || r.BinaryRemoved || r.Stopped {
		t.Errorf("removing a plugin whose binary is gone: %+v, %v", r, err)
	}
	if _, err := m.Client("selector.test"); !errors.Is(err, plugins.ErrNotFound) {
		t.Errorf("after removing a missing plugin: %v, want ErrNotFound", err)
	}
}
