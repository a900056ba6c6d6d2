package plugins

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/s3t-dev/s3t/sdk"
)

// CatalogFile is the catalog's file name inside the plugin directory.
const CatalogFile = "catalog.json"

// catalogVersion is the schema version of the catalog file.
const catalogVersion = 1

// Record is what the catalog remembers about an installed plugin.
type Record struct {
	// Name is the plugin's id, as it reported at install.
	Name string `json:"name"`
	// Kind is what it provides.
	Kind sdk.Kind `json:"kind"`
	// Version is the plugin's version at install.
	Version string `json:"version"`
	// Protocol is the protocol version negotiated at install.
	Protocol int `json:"protocol"`
	// File is the binary's file name inside the plugin directory.
	File string `json:"file"`
	// SHA256 is the binary's SHA-256 (hex), checked before every start.
	SHA256 string `json:"sha256"`
	// Installed is when it was installed.
	Installed time.Time `json:"installed"`
	// Source is the path it was installed from.
	Source string `json:"source,omitempty"`
}

type catalogData struct {
	Version int      `json:"version"`
	Plugins []Record `json:"plugins"`
}

// readCatalog reads dir/catalog.json; a missing file is an empty catalog.
func readCatalog(dir string) ([]Record, error) {
	data, err := os.ReadFile(filepath.Join(dir, CatalogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("plugin catalog: %w", err)
	}
	var c catalogData
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("plugin catalog %s: %w", filepath.Join(dir, CatalogFile), err)
	}
	if c.Version != catalogVersion {
		return nil, fmt.Errorf("plugin catalog %s: version %d (want %d)", filepath.Join(dir, CatalogFile), c.Version, catalogVersion)
	}
	for _, r := range c.Plugins {
		if err := sdk.ValidName(r.Name, r.Kind); err != nil || r.File == "" || r.File != filepath.Base(r.File) || r.File == ".." {
			return nil, fmt.Errorf("plugin catalog %s: entry %q (file %q) is not a plugin of this directory", filepath.Join(dir, CatalogFile), r.Name, r.File)
		}
	}
	return c.Plugins, nil
}

// writeCatalog replaces dir/catalog.json atomically.
func writeCatalog(dir string, recs []Record) error {
	recs = slices.Clone(recs)
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.Name, b.Name) })
	data, err := json.MarshalIndent(catalogData{Version: catalogVersion, Plugins: recs}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, CatalogFile), append(data, '\n'), 0o644)
}

// writeFileAtomic writes data to a temporary file next to path and renames it over path.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// copyExecutable copies src to dst (atomically, mode 0755) and returns the copy's SHA-256.
func copyExecutable(src, dst string) ([]byte, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Chmod(0o755); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	sum, err := FileSHA256(tmp)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, err
	}
	return sum, nil
}

func decodeHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

// Removed is what Remove did.
type Removed struct {
	// Record is the catalog record that was removed.
	Record Record
	// Path is the binary's path in the plugin directory.
	Path string
	// BinaryRemoved says whether the binary was deleted; false when it was already gone.
	BinaryRemoved bool
	// Stopped says whether a process of the plugin was running in this host and was stopped.
	Stopped bool
}

// Remove uninstalls the plugin called name: its record leaves the catalog, whose file is
// replaced atomically as Install writes it, then its binary is deleted and a process of it this
// host runs is stopped. Another host over the same directory (a running s3t serve) sees the
// catalog change at its next use of any plugin, as it sees an install: it stops its process of
// the plugin, and the name is then unknown (ErrNotFound). Models made with the plugin keep
// working: their plans are stored with them. A built-in cannot be removed; an installed plugin
// with a built-in's name (shadowed) can, which leaves the built-in.
func (m *Manager) Remove(name string) (*Removed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("plugin remove %s: %w", name, ErrClosed)
	}
	m.refreshLocked()
	rec, ok := m.record(name)
	if !ok {
		if _, builtin := m.cfg.Builtins.Lookup(name); builtin {
			return nil, fmt.Errorf("plugin remove %s: %s is a built-in: it ships inside s3t and cannot be removed", name, name)
		}
		return nil, fmt.Errorf("plugin remove %s: %w (installed: %s)", name, ErrNotFound, strings.Join(m.installedNames(), ", "))
	}
	recs := slices.DeleteFunc(slices.Clone(m.records), func(r Record) bool { return r.Name == name })
	if err := writeCatalog(m.cfg.Dir, recs); err != nil {
		return nil, fmt.Errorf("plugin remove %s: %w", name, err)
	}
	m.records, m.catalog = recs, stampCatalog(m.cfg.Dir)
	out := &Removed{Record: rec, Path: filepath.Join(m.cfg.Dir, rec.File)}
	if _, builtin := m.cfg.Builtins.Lookup(name); !builtin {
		if c, ok := m.clients[name]; ok {
			out.Stopped = c.Pid() != 0
			c.Close()
			delete(m.clients, name)
		}
	}
	// The file is the plugin's alone (its name), unless a hand-edited catalog shares it.
	if !slices.ContainsFunc(recs, func(r Record) bool { return r.File == rec.File }) {
		switch err := os.Remove(out.Path); {
		case err == nil:
			out.BinaryRemoved = true
		case !errors.Is(err, fs.ErrNotExist):
			return out, fmt.Errorf("plugin remove %s: the catalog no longer lists it, but its binary stays: %w", name, err)
		}
	}
	m.cfg.Logger.Info("plugin removed", "plugin", rec.Name, "version", rec.Version, "sha256", rec.SHA256, "binary_removed", out.BinaryRemoved)
	return out, nil
}
