// Package adapter is the built-in bottleneck adapter PEFT plugin, peft.adapter: h -> h +
// up(act(down(h))) on block activations, with the up-projection initialised (and off) at 0. It
// is written against package sdk alone.
//
// Positions: "output" rewrites each block's output edge (after the block's attention and MLP
// sub-layers, where Pfeiffer-style adapters sit); "attention" rewrites the attention_result edge
// (the attention sub-layer before its residual connection, where Houlsby's first adapter sits),
// which only hand-written manifests name so far. With the up-projection and its bias at 0 the
// adapter adds exact zeros: "off" is bit-identical to the backbone.
package adapter

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/s3t-dev/s3t/sdk"
)

// Name is the plugin's id.
const Name = "peft.adapter"

// Version is the plugin's version.
const Version = "1.0.0"

// The positions an adapter may take.
const (
	// PositionOutput is the block's output (after attention and MLP).
	PositionOutput = "output"
	// PositionAttention is the attention sub-layer's result (sdk.RoleAttentionResult).
	PositionAttention = "attention"
)

// positionRoles maps positions to the edge roles they rewrite.
var positionRoles = map[string]sdk.Role{PositionOutput: sdk.RoleOutput, PositionAttention: sdk.RoleAttentionResult}

// The non-linearities.
var nonlinearities = []string{"relu", "gelu", "tanh", "silu"}

// Config is the bottleneck adapter's config.
type Config struct {
	// ReductionFactor divides the hidden size into the bottleneck size (at least 1 unit).
	// Default 16.
	ReductionFactor int `json:"reduction_factor"`
	// Nonlinearity is relu, gelu, tanh or silu. Default relu.
	Nonlinearity string `json:"nonlinearity"`
	// Positions are where adapters go: "output", "attention". Default output.
	Positions []string `json:"positions"`
}

// DefaultConfig returns the defaults: reduction factor 16, relu, after each block's output.
func DefaultConfig() Config {
	return Config{ReductionFactor: 16, Nonlinearity: "relu", Positions: []string{PositionOutput}}
}

const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "peft.adapter config",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "reduction_factor": {"type": "integer", "minimum": 1, "description": "bottleneck size = hidden size / reduction_factor"},
    "nonlinearity": {"enum": ["relu", "gelu", "tanh", "silu"]},
    "positions": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"enum": ["output", "attention"]},
      "description": "output: after each block; attention: after the attention sub-layer (needs attention_result edges)"}
  }
}`

// Adapter plans bottleneck adapters. The zero value is ready to use.
type Adapter struct{}

// New returns a bottleneck adapter plugin implementation.
func New() *Adapter { return &Adapter{} }

// Plugin returns the plugin as served by `s3t plugin run peft.adapter`.
func Plugin() *sdk.Plugin {
	return &sdk.Plugin{Name: Name, Version: Version, Description: "bottleneck adapters h + up(act(down(h))), up = 0 is off", PEFT: New()}
}

// Describe implements sdk.PEFT.
func (*Adapter) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return sdk.Describe(Name, Version,
		"Bottleneck adapters on block activations: h + up(act(down(h))), up-projection initialised (and off) at 0",
		schema, DefaultConfig())
}

// ParseConfig decodes a config over the defaults and checks it.
func ParseConfig(raw json.RawMessage) (Config, error) {
	c := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, fmt.Errorf("%s: %w", Name, err)
	}
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%s: %w: %s", Name, sdk.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.ReductionFactor < 1 {
		return bad("reduction_factor must be >= 1, got %d", c.ReductionFactor)
	}
	if !slices.Contains(nonlinearities, c.Nonlinearity) {
		return bad("nonlinearity %q (want one of %v)", c.Nonlinearity, nonlinearities)
	}
	if len(c.Positions) == 0 {
		return bad("positions is empty")
	}
	for i, p := range c.Positions {
		if _, ok := positionRoles[p]; !ok || slices.Contains(c.Positions[:i], p) {
			return bad("position %q is unknown or listed twice (want output, attention)", p)
		}
	}
	return c, nil
}

// Plan implements sdk.PEFT: an adapter at every position each block has.
func (*Adapter) Plan(ctx context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	c, err := ParseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	resolved, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	resp := &sdk.PlanResponse{Config: resolved}
	found := map[string]int{}
	for _, b := range req.Manifest.Blocks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bp := sdk.BlockPlan{Block: b.Index}
		for _, pos := range c.Positions {
			e, ok := b.Edge(positionRoles[pos])
			if !ok {
				continue
			}
			found[pos]++
			rw, err := Rewrite(req.Manifest.Opset, e, c)
			if err != nil {
				return nil, fmt.Errorf("%s: block %d (%s): %w", Name, b.Index, b.Name, err)
			}
			bp.Rewrites = append(bp.Rewrites, rw)
		}
		if len(bp.Rewrites) > 0 {
			resp.Blocks = append(resp.Blocks, bp)
		}
	}
	for _, pos := range c.Positions {
		switch n := found[pos]; {
		case n == 0:
			return nil, fmt.Errorf("%s: %w: position %q needs %s edges and the manifest has none", Name, sdk.ErrUnsupportedBackbone, pos, positionRoles[pos])
		case n < len(req.Manifest.Blocks):
			resp.Notes = append(resp.Notes, fmt.Sprintf("position %q: only %d of %d blocks have a %s edge", pos, n, len(req.Manifest.Blocks), positionRoles[pos]))
		}
	}
	return resp, nil
}

// Rewrite returns the adapter on one activation edge [..., hidden]: h + (act(h·down +
// down_bias))·up + up_bias, with down [hidden, r], up [r, hidden]. down starts uniform in
// ±1/√hidden; the biases and up start at 0, which is also every parameter's off value.
func Rewrite(opset int64, e sdk.Edge, c Config) (sdk.Rewrite, error) {
	dims := e.Shape.Sizes()
	if e.Kind != sdk.KindActivation || len(dims) < 1 || dims[len(dims)-1] < 1 {
		return sdk.Rewrite{}, fmt.Errorf("%w: %s edge %q of shape %v: want an activation whose last dimension (hidden) is known",
			sdk.ErrUnsupportedBackbone, e.Role, e.Tensor, e.Shape)
	}
	hidden := dims[len(dims)-1]
	r := max(1, hidden/int64(c.ReductionFactor))
	b := sdk.NewBuilder(opset)
	h := b.Input("H")
	down := b.Param(sdk.Zeros("down", hidden, r))
	downBias := b.Param(sdk.Zeros("down_bias", r))
	up := b.Param(sdk.Zeros("up", r, hidden))
	upBias := b.Param(sdk.Zeros("up_bias", hidden))
	z := b.Add(b.MatMul(h, down), downBias)
	switch c.Nonlinearity {
	case "relu":
		z = b.Relu(z)
	case "gelu":
		z = b.Gelu(z)
	case "tanh":
		z = b.Tanh(z)
	case "silu":
		z = b.SiLU(z)
	}
	g, err := b.Build(b.Add(h, b.Add(b.MatMul(z, up), upBias)))
	if err != nil {
		return sdk.Rewrite{}, err
	}
	bound := 1 / math.Sqrt(float64(hidden))
	return sdk.Rewrite{Edge: e, Graph: g, Init: map[string]sdk.Init{
		"down": sdk.Uniform(-bound, bound), "down_bias": sdk.Constant(0), "up": sdk.Constant(0), "up_bias": sdk.Constant(0),
	}}, nil
}

var _ sdk.PEFT = (*Adapter)(nil)
