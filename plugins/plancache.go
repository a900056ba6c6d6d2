package plugins

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/s3t-dev/s3t/sdk"
)

// PlanKey returns the cache key of a plan: the SHA-256 (hex) of the plugin's name, its binary's
// checksum, the manifest's JSON and the config in canonical form (keys sorted, no spaces; an
// empty config is {}), so that the same plugin build, backbone and config give the same key. The
// name matters: the built-ins are one binary, and keyed by its checksum alone, the first
// built-in to plan a backbone with the default config answered for the others (every
// built-in's model got LoRA's plan). Keys of the form before the name (v1) are never read.
func PlanKey(name string, checksum []byte, man *sdk.Manifest, config json.RawMessage) (string, error) {
	manJSON, err := json.Marshal(man)
	if err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	canon := []byte("{}")
	if len(bytes.TrimSpace(config)) > 0 {
		var v any
		if err := json.Unmarshal(config, &v); err != nil {
			return "", fmt.Errorf("%w: %w", sdk.ErrInvalidConfig, err)
		}
		if canon, err = json.Marshal(v); err != nil {
			return "", err
		}
	}
	manSum := sha256.Sum256(manJSON)
	h := sha256.New()
	fmt.Fprintf(h, "s3t plan v2\n%q\n%x\n%x\n", name, checksum, manSum)
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// planCache keeps validated plans as JSON, in memory and in a directory.
type planCache struct {
	dir    string
	logger *slog.Logger
	mu     sync.Mutex
	mem    map[string][]byte
}

func newPlanCache(dir string, logger *slog.Logger) *planCache {
	return &planCache{dir: dir, logger: logger, mem: map[string][]byte{}}
}

// get returns a fresh copy of the cached plan.
func (c *planCache) get(key string) (*sdk.PlanResponse, bool) {
	c.mu.Lock()
	data, ok := c.mem[key]
	c.mu.Unlock()
	if !ok && c.dir != "" {
		var err error
		data, err = os.ReadFile(filepath.Join(c.dir, key+".json"))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				c.logger.Warn("plan cache unreadable", "key", key, "err", err)
			}
			return nil, false
		}
	}
	var plan sdk.PlanResponse
	if err := json.Unmarshal(data, &plan); err != nil {
		c.logger.Warn("plan cache entry corrupt; planning again", "key", key, "err", err)
		return nil, false
	}
	c.mu.Lock()
	c.mem[key] = data
	c.mu.Unlock()
	return &plan, true
}

// put stores a plan; a failure to write the directory only costs a later re-plan.
func (c *planCache) put(key string, plan *sdk.PlanResponse) {
	data, err := json.Marshal(plan)
	if err != nil {
		c.logger.Warn("plan not cached", "key", key, "err", err)
		return
	}
	c.mu.Lock()
	c.mem[key] = data
	c.mu.Unlock()
	if c.dir == "" {
		return
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		c.logger.Warn("plan not cached on disk", "key", key, "err", err)
		return
	}
	if err := writeFileAtomic(filepath.Join(c.dir, key+".json"), data, 0o644); err != nil {
		c.logger.Warn("plan not cached on disk", "key", key, "err", err)
	}
}
