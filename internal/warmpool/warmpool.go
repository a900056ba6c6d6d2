// Package warmpool keeps idle resources that one thread at a time uses, such as ONNX Runtime
// sessions, and hands out the one whose memory is most likely in the caller's CPU caches: the
// one that last ran on the caller's CPU.
//
// A session's weights and buffers stay in the private caches (L1, L2) of the core that ran it.
// Run next on another core, it fetches them again: on the 2-core VM a shard of the demo model
// took 0.21-0.22 ms at p50 when its session had last run on the other core, against 0.18-0.19 ms
// when each session kept its core, and 0.16-0.17 ms when one thread ran it back to back
// (go test ./serving -run '^$' -bench Migrate). A stack alone keeps the session released last
// warm for the next caller, but that caller can be on any core; on a host of many cores it
// seldom is on the one that ran it.
//
// When none ran on the caller's CPU, the pool hands out one that never ran, else the one
// released longest ago: the others last ran on CPUs that are busy now, likely to want them again
// warm. So each CPU that runs the work comes to have a resource of its own, as long as there are
// as many resources as such CPUs. Where the CPU is not known (other systems than Linux), the pool
// is a stack: the one released last, which the caller's thread may well have run, goes first.
package warmpool

import (
	"sync"
)

// Pool holds idle resources, each with the CPU it last ran on (see Ran). The zero Pool is
// empty and ready to use. Its methods are safe for concurrent use; a resource is used by one
// caller at a time, between Get (or Trade) and Put.
type Pool[T comparable] struct {
	mu   sync.Mutex
	idle []T         // a stack: the one put last is on top
	home map[T]int32 // the CPU each resource last ran on (absent: never ran, or unknown)
}

// Put returns v to the pool (or adds it), on top of the stack.
func (p *Pool[T]) Put(v T) {
	p.mu.Lock()
	p.idle = append(p.idle, v)
	p.mu.Unlock()
}

// Get takes an idle resource: the one put last of those that last ran on the caller's CPU,
// else one that never ran, else the one put first (see the package doc). ok is false when none
// is idle.
func (p *Pool[T]) Get() (v T, ok bool) {
	cpu := CPU()
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return v, false
	}
	i := n - 1 // the CPU unknown: a stack
	if cpu >= 0 {
		if i = p.findLocked(cpu); i < 0 {
			i = p.fallbackLocked()
		}
	}
	v = p.idle[i]
	copy(p.idle[i:], p.idle[i+1:])
	var zero T
	p.idle[n-1] = zero
	p.idle = p.idle[:n-1]
	return v, true
}

// Trade returns the resource the caller should run on, given v, which it holds: v when v last
// ran on the caller's CPU, or never ran, or when no idle resource last ran there; otherwise such
// an idle one, and v goes back to the pool, on top (the one used last). Callers that took v on
// another thread (for work that a helper runs) trade it where the work runs.
func (p *Pool[T]) Trade(v T) T {
	cpu := CPU()
	if cpu < 0 {
		return v
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if h, ok := p.home[v]; !ok || h == int32(cpu) {
		return v
	}
	i := p.findLocked(cpu)
	if i < 0 {
		return v
	}
	u := p.idle[i]
	copy(p.idle[i:], p.idle[i+1:])
	p.idle[len(p.idle)-1] = v
	return u
}

// Home returns the CPU v last ran on, as Ran recorded it (ok false: never, or unknown).
func (p *Pool[T]) Home(v T) (cpu int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.home[v]
	return int(h), ok
}

// Ran records that v ran on the caller's CPU, where its memory is now in the caches; call it
// once v's work is done, on the thread that did it.
func (p *Pool[T]) Ran(v T) {
	cpu := CPU()
	p.mu.Lock()
	defer p.mu.Unlock()
	if cpu < 0 {
		delete(p.home, v)
		return
	}
	if p.home == nil {
		p.home = map[T]int32{}
	}
	p.home[v] = int32(cpu)
}

// findLocked returns the index of the top-most idle resource that last ran on cpu, or -1.
func (p *Pool[T]) findLocked(cpu int) int {
	if cpu < 0 || len(p.home) == 0 {
		return -1
	}
	for i := len(p.idle) - 1; i >= 0; i-- {
		if h, ok := p.home[p.idle[i]]; ok && h == int32(cpu) {
			return i
		}
	}
	return -1
}

// fallbackLocked returns the index of the top-most idle resource that never ran, else 0, the
// one put first (the pool not empty).
func (p *Pool[T]) fallbackLocked() int {
	for i := len(p.idle) - 1; i >= 0; i-- {
		if _, ok := p.home[p.idle[i]]; !ok {
			return i
		}
	}
	return 0
}
