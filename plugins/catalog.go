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
