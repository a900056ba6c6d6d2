package adapters

import (
	"slices"
	"sync"
)

// ActivationCache holds trunk activations per (sample id, edge): the value of a backbone tensor
// (a block's input) for one sample, computed once by ONNX Runtime on the frozen trunk. Keys are per
// sample so that deleting a sample can purge everything derived from it. Implementations must be
// safe for concurrent use; a later backend may keep them as blobs.
//
// A cache belongs to one model: keys carry neither the backbone nor the model, so two models
// sharing a cache (even on the same backbone) would read each other's activations wherever
// their sample ids coincide. A shared backend must prefix keys with the model.
type ActivationCache interface {
	// Get returns the activation of sample id at edge (one example's values, row-major, without
	// the batch axis), and whether it is present. The caller must not modify it.
	Get(id, edge string) ([]float32, bool)
	// Put stores the activation of sample id at edge. The cache keeps v; the caller must not
	// modify it afterwards.
	Put(id, edge string, v []float32)
	// Purge removes every activation of sample id and reports how many it removed.
	Purge(id string) int
	// Has reports whether any activation of sample id is present.
	Has(id string) bool
}

// MemoryCache is an ActivationCache in memory. The zero value is empty and ready to use.
type MemoryCache struct {
	mu sync.RWMutex
	m  map[string]map[string][]float32 // by id, then edge
}

// NewMemoryCache returns an empty in-memory cache.
func NewMemoryCache() *MemoryCache { return &MemoryCache{} }

// Get implements ActivationCache.
func (c *MemoryCache) Get(id, edge string) ([]float32, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[id][edge]
	return v, ok
}

// Put implements ActivationCache.
func (c *MemoryCache) Put(id, edge string, v []float32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]map[string][]float32{}
	}
	if c.m[id] == nil {
		c.m[id] = map[string][]float32{}
	}
	c.m[id][edge] = v
}

// Purge implements ActivationCache.
func (c *MemoryCache) Purge(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.m[id])
	delete(c.m, id)
	return n
}

// Has implements ActivationCache.
func (c *MemoryCache) Has(id string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m[id]) > 0
}

// IDs returns the cached sample ids, sorted.
func (c *MemoryCache) IDs() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ids := make([]string, 0, len(c.m))
	for id := range c.m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Bytes returns the size of the cached activations in bytes.
func (c *MemoryCache) Bytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var n int64
	for _, edges := range c.m {
		for _, v := range edges {
			n += 4 * int64(len(v))
		}
	}
	return n
}

var _ ActivationCache = (*MemoryCache)(nil)
