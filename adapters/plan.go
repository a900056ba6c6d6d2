package adapters

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/sdk"
)

// PEFTType is a PEFT type ready to splice into a backbone: it gives the rewrite of any set of
// blocks and says how checkpoints record it. Planned (any plugin's plan) and LoRA (the local
// LoRA) implement it; the ShardTrainer and the Predictor only use this interface, so every PEFT
// type trains and serves through the same code.
type PEFTType interface {
	// Adapter returns the rewrite of the given blocks (manifest indices).
	Adapter(man *backbone.Manifest, blocks ...int) (Adapter, error)
	// Record returns the type and configuration that checkpoints record.
	Record() PEFTConfig
}

// Planned is a PEFT type described by a plugin's plan (sdk.PEFT.Plan): Adapter takes the plan's
// rewrites of the requested blocks, with their parameters named as backbone.SplicePlan names
// them ("<plugin>/<block>/<role>/<local name>") and initialised by their sdk.Init, each from
// sdk.SeedFor(stage seed, name).
//
// Dropout hints (sdk.Rewrite.Dropout) are not implemented: a plan asking for a non-zero rate is
// refused with ErrInvalidArgument rather than trained without it.
type Planned struct {
	// Plugin is the plugin's name, e.g. "peft.lora".
	Plugin string
	// Plan is the plugin's plan for the backbone's manifest.
	Plan *sdk.PlanResponse
}

// Record returns the plugin's name and the plan's config.
func (p Planned) Record() PEFTConfig {
	var cfg json.RawMessage
	if p.Plan != nil && len(p.Plan.Config) > 0 {
		cfg = slices.Clone(p.Plan.Config)
	}
	return PEFTConfig{Type: p.Plugin, Config: cfg}
}

// Adapter returns the plan's rewrites of the given blocks as splices and their parameters, in
// plan order. A block the plan does not cover gets no rewrite.
func (p Planned) Adapter(man *backbone.Manifest, blocks ...int) (Adapter, error) {
	if p.Plan == nil || p.Plugin == "" {
		return Adapter{}, fmt.Errorf("plan adapter: %w: a plugin name and a plan are required", ErrInvalidArgument)
	}
	for _, bi := range blocks {
		if bi < 0 || bi >= len(man.Blocks) {
			return Adapter{}, fmt.Errorf("plan adapter %s: %w: block %d of %d", p.Plugin, ErrInvalidArgument, bi, len(man.Blocks))
		}
	}
	var a Adapter
	for _, bp := range p.Plan.Blocks {
		if !slices.Contains(blocks, bp.Block) {
			continue
		}
		for i, rw := range bp.Rewrites {
			for name, rate := range rw.Dropout {
				if rate != 0 {
					return Adapter{}, fmt.Errorf("plan adapter %s: %w: block %d asks for dropout %g on %q; the trainer does not implement dropout (use 0)",
						p.Plugin, ErrInvalidArgument, bp.Block, rate, name)
				}
			}
			scope := bp.Scope(p.Plugin, i)
			a.Splices = append(a.Splices, backbone.Splice{Edge: rw.Edge, Graph: rw.Graph, Scope: scope})
			target := rw.Edge.Param
			if target == "" {
				target = rw.Edge.Tensor
			}
			for _, t := range rw.Graph.Params {
				init, ok := rw.Init[t.Name]
				if !ok {
					return Adapter{}, fmt.Errorf("plan adapter %s: %w: parameter %q of block %d has no init", p.Plugin, ErrInvalidArgument, t.Name, bp.Block)
				}
				if err := init.Validate(); err != nil {
					return Adapter{}, fmt.Errorf("plan adapter %s: %w: parameter %q: %w", p.Plugin, ErrInvalidArgument, t.Name, err)
				}
				a.Params = append(a.Params, Param{
					Name: scope + t.Name, Block: bp.Block, Role: rw.Edge.Role, Target: target,
					Shape: slices.Clone(t.Shape), Init: Init{Dist: &init},
				})
			}
		}
	}
	return a, nil
}

// Record returns "lora" with the rank, alpha and target roles.
func (c LoRA) Record() PEFTConfig {
	c = c.withDefaults()
	roles := make([]string, len(c.Targets))
	for i, r := range c.Targets {
		roles[i] = string(r)
	}
	return PEFTConfig{Type: "lora", Rank: c.Rank, Alpha: c.Alpha, Targets: roles}
}

var (
	_ PEFTType = Planned{}
	_ PEFTType = LoRA{}
)
