package plugins

import (
	"fmt"
	"slices"
	"sync"

	"github.com/s3t-dev/s3t/plugins/adapter"
	"github.com/s3t-dev/s3t/plugins/lora"
	"github.com/s3t-dev/s3t/plugins/prefix"
	"github.com/s3t-dev/s3t/plugins/selectors"
	"github.com/s3t-dev/s3t/sdk"
)

// Registry holds plugins compiled into this binary, by name.
type Registry struct {
	mu      sync.RWMutex
	plugins map[string]*sdk.Plugin
	order   []string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{plugins: map[string]*sdk.Plugin{}} }

// Register adds p. It fails with ErrDuplicate when the name is taken and with sdk.ErrInvalidPlugin
// when p cannot be served.
func (r *Registry) Register(p *sdk.Plugin) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.plugins[p.Name]; dup {
		return fmt.Errorf("register %s: %w: the name is already registered", p.Name, ErrDuplicate)
	}
	r.plugins[p.Name] = p
	r.order = append(r.order, p.Name)
	return nil
}

// MustRegister is Register that panics on error, for registrations at start-up, where a
// duplicate is a programming error that must not go unnoticed.
func (r *Registry) MustRegister(ps ...*sdk.Plugin) *Registry {
	for _, p := range ps {
		if err := r.Register(p); err != nil {
			panic(err)
		}
	}
	return r
}

// Lookup returns the plugin called name.
func (r *Registry) Lookup(name string) (*sdk.Plugin, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.plugins[name]
	return p, ok
}

// Names returns the registered names in registration order.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.order)
}

var builtins = sync.OnceValue(func() *Registry {
	return NewRegistry().MustRegister(
		lora.Plugin(), prefix.Plugin(), adapter.Plugin(),
		selectors.Cyclic(), selectors.BMS(), selectors.Random(),
	)
})

// Builtins returns the registry of the plugins shipped inside s3t: peft.lora, peft.prefix,
// peft.adapter, selector.cyclic, selector.bms and selector.random. The host runs each out of
// process by launching its own executable as `s3t plugin run NAME`.
func Builtins() *Registry { return builtins() }

// ServeBuiltin serves the built-in plugin called name to the host that started this process
// (`s3t plugin run NAME`). It returns only when name is unknown.
func ServeBuiltin(name string) error {
	p, ok := Builtins().Lookup(name)
	if !ok {
		return fmt.Errorf("plugin run %s: %w: the built-ins are %v", name, ErrNotFound, Builtins().Names())
	}
	sdk.Serve(p)
	return nil
}
