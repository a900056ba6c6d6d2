// Package lora is the built-in LoRA PEFT plugin, peft.lora: low-rank updates of weight edges,
// W -> W + (alpha/r)·B·A, with B = 0 as the "off" value. It is written against package sdk
// alone, as an outside author would write it.
package lora

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/s3t-dev/s3t/sdk"
)

// Name is the plugin's id.
const Name = "peft.lora"

// Version is the plugin's version.
const Version = "1.0.0"

// Config is LoRA's config. Its JSON form is what Plan takes; fields left out keep DefaultConfig.
type Config struct {
	// Rank is r, the rank of the update (>= 1). Default 8.
	Rank int `json:"rank"`
	// Alpha scales the update by Alpha/Rank (> 0). Default 16.
	Alpha float64 `json:"alpha"`
	// Dropout is the rate at which training drops entries of A, in [0, 1): on a weight rewrite
	// this stands in for Hugging Face PEFT's dropout on the LoRA branch's input. Serving never
	// drops. Default 0.
	Dropout float64 `json:"dropout"`
	// Targets are the weight roles LoRA rewrites, in each block that has them. Default query
	// and value.
	Targets []sdk.Role `json:"targets"`
	// RankPattern overrides Rank per block, keyed by block index ("3") or exact block name;
	// rank 0 leaves the block without LoRA.
	RankPattern map[string]int `json:"rank_pattern,omitempty"`
}

// DefaultConfig returns the defaults: rank 8, alpha 16, no dropout, query and value.
func DefaultConfig() Config {
	return Config{Rank: 8, Alpha: 16, Targets: []sdk.Role{sdk.RoleQuery, sdk.RoleValue}}
}

// schema is the JSON Schema of Config.
const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "peft.lora config",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "rank": {"type": "integer", "minimum": 1, "description": "rank r of the update B·A"},
    "alpha": {"type": "number", "exclusiveMinimum": 0, "description": "the update is scaled by alpha/r"},
    "dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "training-only dropout on A"},
    "targets": {"type": "array", "minItems": 1, "uniqueItems": true,
      "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
      "description": "weight roles to rewrite: query, key, value, attention_output, mlp_in, mlp_out"},
    "rank_pattern": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
      "description": "rank per block, keyed by block index or exact block name; 0 skips the block"}
  }
}`

// LoRA plans LoRA updates. The zero value is ready to use.
type LoRA struct{}

// New returns a LoRA plugin implementation.
func New() *LoRA { return &LoRA{} }

// Plugin returns the plugin as served by `s3t plugin run peft.lora`.
func Plugin() *sdk.Plugin {
	return &sdk.Plugin{Name: Name, Version: Version, Description: "LoRA: W + (alpha/r)·B·A on weight edges, B = 0 is off", PEFT: New()}
}

// Describe implements sdk.PEFT.
func (*LoRA) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return sdk.Describe(Name, Version,
		"Low-rank adaptation of weight edges: W + (alpha/r)·B·A, B initialised (and off) at 0",
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
	if c.Rank < 1 {
		return bad("rank must be >= 1, got %d", c.Rank)
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		return bad("alpha must be > 0, got %v", c.Alpha)
	}
	if !(c.Dropout >= 0 && c.Dropout < 1) {
		return bad("dropout must be in [0, 1), got %v", c.Dropout)
	}
	if len(c.Targets) == 0 {
		return bad("targets is empty")
	}
	for i, r := range c.Targets {
		if !sdk.RolePattern.MatchString(string(r)) || slices.Contains(c.Targets[:i], r) {
			return bad("target %q is not a role or is listed twice", r)
		}
		if k := r.Kind(); k != "" && k != sdk.KindWeight {
			return bad("target %q is an activation; LoRA rewrites weights", r)
		}
	}
	for k, r := range c.RankPattern {
		if r < 0 {
			return bad("rank_pattern[%q] = %d, want >= 0", k, r)
		}
	}
	return c, nil
}

// Plan implements sdk.PEFT: for every block and every target role it has, a rewrite of that
// weight.
func (l *LoRA) Plan(ctx context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	c, err := ParseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	resolved, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	for k := range c.RankPattern {
		if !slices.ContainsFunc(req.Manifest.Blocks, func(b sdk.Block) bool { return b.Matches(k) }) {
			return nil, fmt.Errorf("%s: %w: rank_pattern key %q names no block (use an index or an exact block name)", Name, sdk.ErrInvalidConfig, k)
		}
	}
	resp := &sdk.PlanResponse{Config: resolved}
	found := map[sdk.Role]bool{}
	for _, b := range req.Manifest.Blocks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rank := c.Rank
		for k, r := range c.RankPattern {
			if b.Matches(k) {
				rank = r
			}
		}
		if rank == 0 {
			resp.Notes = append(resp.Notes, fmt.Sprintf("block %d (%s): rank 0, no LoRA", b.Index, b.Name))
			continue
		}
		bp := sdk.BlockPlan{Block: b.Index}
		for _, role := range c.Targets {
			for _, e := range b.Edges {
				if e.Role != role {
					continue
				}
				found[role] = true
				rw, err := Rewrite(req.Manifest.Opset, e, int64(rank), c.Alpha, c.Dropout)
				if err != nil {
					return nil, fmt.Errorf("%s: block %d (%s): %w", Name, b.Index, b.Name, err)
				}
				bp.Rewrites = append(bp.Rewrites, rw)
			}
		}
		if len(bp.Rewrites) > 0 {
			resp.Blocks = append(resp.Blocks, bp)
		}
	}
	for _, role := range c.Targets {
		if !found[role] {
			return nil, fmt.Errorf("%s: %w: no block has a %q weight edge", Name, sdk.ErrUnsupportedBackbone, role)
		}
	}
	return resp, nil
}

// Rewrite returns LoRA's rewrite of one weight edge: W + (alpha/rank)·B·A with A [rank, in] and
// B [out, rank] in Hugging Face PEFT's layout whatever the edge's layout (an in_out weight gets
// the transposed update). A starts uniform in ±1/√in (Kaiming-uniform with a = √5, as PEFT
// does) and B at 0, which is also its off value.
func Rewrite(opset int64, e sdk.Edge, rank int64, alpha, dropout float64) (sdk.Rewrite, error) {
	if e.Kind != sdk.KindWeight || e.Slice != nil {
		return sdk.Rewrite{}, fmt.Errorf("%w: edge %q (%s) is not an unpacked weight", sdk.ErrUnsupportedBackbone, e.Tensor, e.Role)
	}
	if (e.DType != sdk.DTypeFloat32 && e.DType != sdk.DTypeUndefined) || len(e.Shape) != 2 || !e.Shape.Known() {
		return sdk.Rewrite{}, fmt.Errorf("%w: weight %q is %v%v, want a float32 matrix of known shape", sdk.ErrUnsupportedBackbone, e.Tensor, e.DType, e.Shape)
	}
	dims := e.Shape.Sizes()
	var out, in int64
	switch e.Layout {
	case sdk.LayoutOutIn:
		out, in = dims[0], dims[1]
	case sdk.LayoutInOut:
		in, out = dims[0], dims[1]
	default:
		return sdk.Rewrite{}, fmt.Errorf("%w: weight %q has layout %q, want %s or %s", sdk.ErrUnsupportedBackbone, e.Tensor, e.Layout, sdk.LayoutOutIn, sdk.LayoutInOut)
	}
	b := sdk.NewBuilder(opset)
	w := b.Input("W")
	am := b.Param(sdk.Zeros("A", rank, in))
	bm := b.Param(sdk.Zeros("B", out, rank))
	delta := b.MatMul(bm, am) // [out, in]
	if e.Layout == sdk.LayoutInOut {
		delta = b.Transpose(delta, 1, 0)
	}
	y := b.Add(w, b.Mul(delta, b.Const(sdk.Scalar("scale", float32(alpha/float64(rank))))))
	g, err := b.Build(y)
	if err != nil {
		return sdk.Rewrite{}, err
	}
	bound := 1 / math.Sqrt(float64(in))
	rw := sdk.Rewrite{Edge: e, Graph: g, Init: map[string]sdk.Init{"A": sdk.Uniform(-bound, bound), "B": sdk.Constant(0)}}
	if dropout > 0 {
		rw.Dropout = map[string]float64{"A": dropout}
	}
	return rw, nil
}

var _ sdk.PEFT = (*LoRA)(nil)
