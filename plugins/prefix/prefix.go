// Package prefix is the built-in prefix-tuning PEFT plugin, peft.prefix: learned key and value
// vectors ("virtual tokens") prepended to every attention layer, with a per-head gate so that
// gate = 0 is the original attention. It is written against package sdk alone.
//
// # The computation
//
// Per block, with H heads of size d and p virtual tokens, it rewrites three edges of the
// manifest:
//
//   - attention_keys Kᵀ [batch, H, d, T] -> concat(Kᵀ, Pk) along tokens, Pk [H, d, p];
//   - attention_values V [batch, H, T, d] -> concat(V, Pv) along tokens, Pv [H, p, d];
//   - attention_scores S [batch, H, T, T+p] (the scores now have a column per prefix token) ->
//     the original columns unchanged, the prefix columns plus log(g²) for the head's gate g.
//
// After the softmax a prefix token's weight is g²·e^s / Z: g = 1 is plain prefix tuning and
// g = 0 gives the prefix columns a bias of -1e30, whose weight underflows to exactly 0.
//
// # How exact "off" is
//
// With every gate at 0 the prefix tokens get attention weight 0.0 exactly and contribute
// 0·Pv = 0 to the attention output, so the math is the original attention. The arithmetic is
// not guaranteed to be bit-identical: the softmax normalises over T+p columns instead of T
// (the added terms are exact zeros, but ONNX Runtime's vectorised reductions may group the sum
// differently), and the probabilities·values product sums over T+p tokens. The difference is
// float32 rounding, far below the 1e-6 the conformance suite allows; LoRA, the bottleneck
// adapter and IA3 add exact zeros (or multiply by exact ones) and are bit-identical when off.
package prefix

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/s3t-dev/s3t/sdk"
)

// Name is the plugin's id.
const Name = "peft.prefix"

// Version is the plugin's version.
const Version = "1.0.0"

// offBias is the score bias of a prefix column whose gate is 0: exp(-1e30 - max) is 0.0.
const offBias = -1e30

// Config is prefix tuning's config.
type Config struct {
	// Tokens is p, the number of virtual tokens per layer (>= 1). Default 8.
	Tokens int `json:"tokens"`
	// TokensPattern overrides Tokens per block, keyed by block index ("3") or exact block
	// name; 0 leaves the block without a prefix.
	TokensPattern map[string]int `json:"tokens_pattern,omitempty"`
	// InitStd is the standard deviation of the prefix keys' and values' initial values
	// (normal, mean 0). Default 0.02.
	InitStd float64 `json:"init_std"`
	// GateInit is every head's initial gate g (the prefix weight scales by g²). Default 0.1,
	// close to the original attention; 0 would leave the gate without a gradient.
	GateInit float64 `json:"gate_init"`
}

// DefaultConfig returns the defaults: 8 tokens, init std 0.02, gate 0.1.
func DefaultConfig() Config { return Config{Tokens: 8, InitStd: 0.02, GateInit: 0.1} }

const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "peft.prefix config",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "tokens": {"type": "integer", "minimum": 1, "description": "virtual tokens per layer"},
    "tokens_pattern": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
      "description": "virtual tokens per block, keyed by block index or exact block name; 0 skips the block"},
    "init_std": {"type": "number", "minimum": 0, "description": "std of the prefix keys and values at init"},
    "gate_init": {"type": "number", "description": "initial per-head gate g; prefix weight scales by g^2, g = 0 is off"}
  }
}`

// Prefix plans prefix tuning. The zero value is ready to use.
type Prefix struct{}

// New returns a prefix-tuning plugin implementation.
func New() *Prefix { return &Prefix{} }

// Plugin returns the plugin as served by `s3t plugin run peft.prefix`.
func Plugin() *sdk.Plugin {
	return &sdk.Plugin{Name: Name, Version: Version, Description: "prefix tuning: gated virtual key/value tokens per attention layer", PEFT: New()}
}

// Describe implements sdk.PEFT.
func (*Prefix) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return sdk.Describe(Name, Version,
		"Prefix tuning: learned key/value tokens per attention layer, gated per head (gate 0 is off)",
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
	if c.Tokens < 1 {
		return bad("tokens must be >= 1, got %d", c.Tokens)
	}
	for k, n := range c.TokensPattern {
		if n < 0 {
			return bad("tokens_pattern[%q] = %d, want >= 0", k, n)
		}
	}
	if !(c.InitStd >= 0) || math.IsInf(c.InitStd, 0) {
		return bad("init_std must be a finite number >= 0, got %v", c.InitStd)
	}
	if math.IsNaN(c.GateInit) || math.IsInf(c.GateInit, 0) {
		return bad("gate_init must be finite, got %v", c.GateInit)
	}
	return c, nil
}

// Plan implements sdk.PEFT: a gated prefix for every block with attention keys, values and
// scores.
func (*Prefix) Plan(ctx context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	c, err := ParseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	resolved, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	for k := range c.TokensPattern {
		if !slices.ContainsFunc(req.Manifest.Blocks, func(b sdk.Block) bool { return b.Matches(k) }) {
			return nil, fmt.Errorf("%s: %w: tokens_pattern key %q names no block", Name, sdk.ErrInvalidConfig, k)
		}
	}
	resp := &sdk.PlanResponse{Config: resolved}
	for _, b := range req.Manifest.Blocks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tokens := c.Tokens
		for k, n := range c.TokensPattern {
			if b.Matches(k) {
				tokens = n
			}
		}
		if tokens == 0 {
			resp.Notes = append(resp.Notes, fmt.Sprintf("block %d (%s): 0 tokens, no prefix", b.Index, b.Name))
			continue
		}
		rws, err := Rewrites(req.Manifest.Opset, b, int64(tokens), c)
		if err != nil {
			return nil, fmt.Errorf("%s: block %d (%s): %w", Name, b.Index, b.Name, err)
		}
		resp.Blocks = append(resp.Blocks, sdk.BlockPlan{Block: b.Index, Rewrites: rws})
	}
	return resp, nil
}

// Rewrites returns the three rewrites (keys, values, scores) of one block.
func Rewrites(opset int64, blk sdk.Block, tokens int64, c Config) ([]sdk.Rewrite, error) {
	keys, okK := blk.Edge(sdk.RoleAttentionKeys)
	values, okV := blk.Edge(sdk.RoleAttentionValues)
	scores, okS := blk.Edge(sdk.RoleAttentionScores)
	if !okK || !okV || !okS {
		return nil, fmt.Errorf("%w: prefix tuning needs the attention_keys, attention_values and attention_scores edges (keys %v, values %v, scores %v)",
			sdk.ErrUnsupportedBackbone, okK, okV, okS)
	}
	kd, vd, sd := keys.Shape.Sizes(), values.Shape.Sizes(), scores.Shape.Sizes()
	switch {
	case keys.Layout != sdk.LayoutHeadDimTokens || values.Layout != sdk.LayoutTokensHeadDim || scores.Layout != sdk.LayoutQueryKey:
		return nil, fmt.Errorf("%w: attention layouts %s/%s/%s, want %s/%s/%s", sdk.ErrUnsupportedBackbone,
			keys.Layout, values.Layout, scores.Layout, sdk.LayoutHeadDimTokens, sdk.LayoutTokensHeadDim, sdk.LayoutQueryKey)
	case len(kd) != 4 || len(vd) != 4 || len(sd) != 4:
		return nil, fmt.Errorf("%w: attention tensors of shapes %v, %v, %v; want [batch, heads, ., .]", sdk.ErrUnsupportedBackbone,
			keys.Shape, values.Shape, scores.Shape)
	case kd[1] < 1 || kd[2] < 1:
		return nil, fmt.Errorf("%w: keys %v: heads and head size must be known", sdk.ErrUnsupportedBackbone, keys.Shape)
	case vd[1] != kd[1] || vd[3] != kd[2] || (sd[1] >= 0 && sd[1] != kd[1]):
		return nil, fmt.Errorf("%w: keys %v, values %v and scores %v disagree on heads or head size", sdk.ErrUnsupportedBackbone,
			keys.Shape, values.Shape, scores.Shape)
	}
	heads, dim := kd[1], kd[2]
	tokenInit := sdk.Normal(0, c.InitStd)

	// Keys: [batch, H, d, T] ++ Pk [H, d, p] broadcast over the batch, along the tokens.
	b := sdk.NewBuilder(opset)
	k := b.Input("K")
	pk := b.Param(sdk.Zeros("prefix_keys", heads, dim, tokens))
	kg, err := b.Build(b.Concat(3, k, b.Expand(pk, batchShape(b, k))))
	if err != nil {
		return nil, err
	}
	// Values: [batch, H, T, d] ++ Pv [H, p, d], along the tokens.
	b = sdk.NewBuilder(opset)
	v := b.Input("V")
	pv := b.Param(sdk.Zeros("prefix_values", heads, tokens, dim))
	vg, err := b.Build(b.Concat(2, v, b.Expand(pv, batchShape(b, v))))
	if err != nil {
		return nil, err
	}
	// Scores: [batch, H, Tq, T+p]; the last p columns get log(g²), or offBias when g = 0.
	b = sdk.NewBuilder(opset)
	s := b.Input("S")
	gate := b.Param(sdk.Zeros("gate", heads, 1, 1))
	orig := b.Slice(s, []int64{0}, []int64{-tokens}, []int64{3})
	pre := b.Slice(s, []int64{-tokens}, []int64{math.MaxInt64}, []int64{3})
	g2 := b.Mul(gate, gate)
	bias := b.Where(b.Greater(g2, b.Scalar(0)), b.Log(b.Max(g2, b.Scalar(1e-30))), b.Scalar(offBias))
	sg, err := b.Build(b.Concat(3, orig, b.Add(pre, bias)))
	if err != nil {
		return nil, err
	}
	return []sdk.Rewrite{
		{Edge: keys, Graph: kg, Init: map[string]sdk.Init{"prefix_keys": tokenInit}},
		{Edge: values, Graph: vg, Init: map[string]sdk.Init{"prefix_values": tokenInit}},
		{Edge: scores, Graph: sg, Init: map[string]sdk.Init{"gate": sdk.Constant(c.GateInit)}},
	}, nil
}

// batchShape returns [batch, 1, 1, 1] for a rank-4 value x, the shape a [H, a, b] parameter
// expands to in order to get x's batch.
func batchShape(b *sdk.Builder, x sdk.Value) sdk.Value {
	batch := b.Gather(b.Shape(x), b.Int64s(0), 0)
	return b.Concat(0, batch, b.Int64s(1, 1, 1))
}

var _ sdk.PEFT = (*Prefix)(nil)
