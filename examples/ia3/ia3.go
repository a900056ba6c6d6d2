package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/s3t-dev/s3t/sdk"
)

// Name is the plugin's id.
const Name = "peft.ia3"

// Version is the plugin's version.
const Version = "0.1.0"

// The targets IA3 rescales.
const (
	// TargetKeys rescales the attention keys per head and channel.
	TargetKeys = "keys"
	// TargetValues rescales the attention values per head and channel.
	TargetValues = "values"
	// TargetMLP rescales the feed-forward block's hidden activations, by rescaling the inputs of
	// its second linear layer (x·diag(l)·W is x·(diag(l)·W)).
	TargetMLP = "mlp"
)

// Config is IA3's config.
type Config struct {
	// Targets are what to rescale: keys, values, mlp. Default all three.
	Targets []string `json:"targets"`
}

const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "peft.ia3 config",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "targets": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"enum": ["keys", "values", "mlp"]}}
  }
}`

// IA3 plans IA3 rescalings. Every vector starts at, and is off at, all ones.
type IA3 struct{}

// Describe implements sdk.PEFT.
func (*IA3) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return sdk.Describe(Name, Version,
		"IA3: keys, values and MLP activations multiplied by learned vectors (ones = off)",
		schema, Config{Targets: []string{TargetKeys, TargetValues, TargetMLP}})
}

// Plan implements sdk.PEFT.
func (*IA3) Plan(ctx context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	c := Config{Targets: []string{TargetKeys, TargetValues, TargetMLP}}
	if err := sdk.DecodeConfig(req.Config, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if len(c.Targets) == 0 {
		return nil, fmt.Errorf("%s: %w: targets is empty", Name, sdk.ErrInvalidConfig)
	}
	for i, t := range c.Targets {
		if !slices.Contains([]string{TargetKeys, TargetValues, TargetMLP}, t) || slices.Contains(c.Targets[:i], t) {
			return nil, fmt.Errorf("%s: %w: target %q is unknown or listed twice", Name, sdk.ErrInvalidConfig, t)
		}
	}
	resolved, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	resp := &sdk.PlanResponse{Config: resolved}
	for _, b := range req.Manifest.Blocks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bp := sdk.BlockPlan{Block: b.Index}
		for _, target := range c.Targets {
			e, shape, err := scaleFor(b, target)
			if err != nil {
				return nil, fmt.Errorf("%s: block %d (%s): %w", Name, b.Index, b.Name, err)
			}
			rw, err := rescale(req.Manifest.Opset, e, shape)
			if err != nil {
				return nil, fmt.Errorf("%s: block %d (%s): %w", Name, b.Index, b.Name, err)
			}
			bp.Rewrites = append(bp.Rewrites, rw)
		}
		resp.Blocks = append(resp.Blocks, bp)
	}
	return resp, nil
}

// scaleFor picks the edge a target rewrites in a block and the shape of its scale vector, which
// broadcasts against the edge: the attention activations when the manifest has them, else the
// projection weights.
func scaleFor(b sdk.Block, target string) (sdk.Edge, []int64, error) {
	var act, weight sdk.Role
	switch target {
	case TargetKeys:
		act, weight = sdk.RoleAttentionKeys, sdk.RoleKey
	case TargetValues:
		act, weight = sdk.RoleAttentionValues, sdk.RoleValue
	case TargetMLP:
		weight = sdk.RoleMLPOut
	}
	if e, ok := b.Edge(act); ok && act != "" {
		d := e.Shape.Sizes()
		if len(d) == 4 && d[1] > 0 && d[2] > 0 && d[3] > 0 {
			switch e.Layout {
			case sdk.LayoutHeadDimTokens: // [batch, heads, dim, tokens]: one factor per head and channel
				return e, []int64{d[1], d[2], 1}, nil
			case sdk.LayoutTokensHeadDim: // [batch, heads, tokens, dim]
				return e, []int64{d[1], 1, d[3]}, nil
			}
		}
	}
	e, ok := b.Edge(weight)
	if !ok {
		return sdk.Edge{}, nil, fmt.Errorf("%w: no %s edge to rescale %s", sdk.ErrUnsupportedBackbone, weight, target)
	}
	d := e.Shape.Sizes()
	if len(d) != 2 || d[0] < 1 || d[1] < 1 {
		return sdk.Edge{}, nil, fmt.Errorf("%w: weight %q of shape %v", sdk.ErrUnsupportedBackbone, e.Tensor, e.Shape)
	}
	// Keys and values: scale the outputs; MLP: scale the inputs of the second linear layer.
	scaleOutputs := target != TargetMLP
	switch {
	case e.Layout == sdk.LayoutOutIn && scaleOutputs: // [out, in]
		return e, []int64{d[0], 1}, nil
	case e.Layout == sdk.LayoutOutIn:
		return e, []int64{1, d[1]}, nil
	case e.Layout == sdk.LayoutInOut && scaleOutputs: // [in, out]
		return e, []int64{1, d[1]}, nil
	case e.Layout == sdk.LayoutInOut:
		return e, []int64{d[0], 1}, nil
	}
	return sdk.Edge{}, nil, fmt.Errorf("%w: weight %q has layout %q", sdk.ErrUnsupportedBackbone, e.Tensor, e.Layout)
}

// rescale returns the rewrite x -> x * l, with l off (and initialised) at ones.
func rescale(opset int64, e sdk.Edge, shape []int64) (sdk.Rewrite, error) {
	b := sdk.NewBuilder(opset)
	x := b.Input("x")
	l := b.Param(sdk.Ones("scale", shape...))
	g, err := b.Build(b.Mul(x, l))
	if err != nil {
		return sdk.Rewrite{}, err
	}
	return sdk.Rewrite{Edge: e, Graph: g, Init: map[string]sdk.Init{"scale": sdk.Constant(1)}}, nil
}

var _ sdk.PEFT = (*IA3)(nil)
