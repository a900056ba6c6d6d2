package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// ErrInvalidManifest means a backbone manifest is malformed (or, in package backbone, does not
// match its model).
var ErrInvalidManifest = errors.New("invalid manifest")

// ManifestVersion is the schema version of Manifest; readers reject other versions.
const ManifestVersion = 1

// Manifest describes a backbone for PEFT: its blocks in order from the bottom (input side) to the
// top (output side) and, per block, the edges a PEFT type may rewrite. It is detected for common
// PyTorch exports (backbone.DetectManifest) or written by hand as JSON (backbone.ParseManifest), and it is sent to
// plugins as JSON, so its field names are stable.
//
// The JSON form, by example (fields a hand-written file may omit are filled in from the graph by
// ResolveManifest: input, edges, and an edge's kind, consumers, dtype, shape and layout):
//
//	{
//	  "version": 1,
//	  "blocks": [
//	    {"name": "encoder.layer.0"},
//	    {"name": "encoder.layer.1", "edges": [
//	      {"role": "output", "tensor": "/encoder/layer.1/Add_1_output_0"},
//	      {"role": "query", "tensor": "onnx::MatMul_601"}
//	    ]}
//	  ]
//	}
type Manifest struct {
	// Version is ManifestVersion.
	Version int `json:"version"`
	// Source says where the manifest came from: "detected" or "file".
	Source string `json:"source,omitempty"`
	// Family names the naming convention that was recognised ("hf-vit", "hf-bert",
	// "torch-transformer-encoder", "timm-vit", "blocks") or "manual".
	Family string `json:"family,omitempty"`
	// Opset is the model's default-domain opset version, which Subgraph nodes must target.
	Opset int64 `json:"opset,omitempty"`
	// Container is the module path that holds the blocks, e.g. "vit.encoder.layer".
	Container string `json:"container,omitempty"`
	// Blocks lists the blocks, bottom (index 0) to top.
	Blocks []Block `json:"blocks"`
	// Notes records what detection could not decide cleanly.
	Notes []string `json:"notes,omitempty"`
}

// Block is one block of the backbone (a transformer layer, a CNN stage, any module in the
// ordered list).
type Block struct {
	// Index is the block's position, 0 for the bottom block.
	Index int `json:"index"`
	// Name is the block's module path, e.g. "vit.encoder.layer.3". Graph nodes and tensors
	// belong to the block when their module path is Name or starts with Name followed by a dot,
	// component by component ("layer.1" never matches "layer.10").
	Name string `json:"name"`
	// Input is the activation entering the block.
	Input string `json:"input,omitempty"`
	// Edges are the rewritable edges: exactly one with role "output", plus weights and attention
	// activations where found.
	Edges []Edge `json:"edges"`
}

// Output returns the block's output edge.
func (b Block) Output() (Edge, bool) { return b.Edge(RoleOutput) }

// Edge returns the block's first edge with the given role.
func (b Block) Edge(r Role) (Edge, bool) {
	for _, e := range b.Edges {
		if e.Role == r {
			return e, true
		}
	}
	return Edge{}, false
}

// Matches reports whether key names the block: its index in decimal ("3") or its exact name
// ("encoder.layer.3"). Per-block settings in configs (rank patterns) use such keys; a name never
// matches by prefix or substring, so "layer.1" does not match "layer.10".
func (b Block) Matches(key string) bool {
	return key == b.Name || key == strconv.Itoa(b.Index)
}

// Role says what an edge is in its block. Hand-written manifests may use other roles made of
// lower-case letters, digits and underscores (for example "conv").
type Role string

// The standard roles.
const (
	// RoleQuery, RoleKey and RoleValue are the attention input projections' weights.
	RoleQuery Role = "query"
	RoleKey   Role = "key"
	RoleValue Role = "value"
	// RoleAttentionOutput is the attention output projection's weight.
	RoleAttentionOutput Role = "attention_output"
	// RoleMLPIn and RoleMLPOut are the feed-forward block's first and second linear weights.
	RoleMLPIn  Role = "mlp_in"
	RoleMLPOut Role = "mlp_out"
	// RoleOutput is the block's output activation.
	RoleOutput Role = "output"
	// RoleAttentionKeys is the keys activation as multiplied into the attention scores
	// (layout head_dim_tokens: [..., head_dim, tokens]).
	RoleAttentionKeys Role = "attention_keys"
	// RoleAttentionValues is the values activation as multiplied by the attention probabilities
	// (layout tokens_head_dim: [..., tokens, head_dim]).
	RoleAttentionValues Role = "attention_values"
	// RoleAttentionScores is the attention scores activation entering the softmax
	// (layout query_key: [..., query tokens, key tokens]).
	RoleAttentionScores Role = "attention_scores"
	// RoleAttentionResult is the attention sub-layer's result before the residual connection
	// (the output projection's output, [..., tokens, hidden]): where a Houlsby adapter goes
	// "after attention". Detection does not find it yet; hand-written manifests may name it.
	RoleAttentionResult Role = "attention_result"
)

// Kind returns the kind of edge a standard role names, or "" for a custom role.
func (r Role) Kind() EdgeKind {
	switch r {
	case RoleQuery, RoleKey, RoleValue, RoleAttentionOutput, RoleMLPIn, RoleMLPOut:
		return KindWeight
	case RoleOutput, RoleAttentionKeys, RoleAttentionValues, RoleAttentionScores, RoleAttentionResult:
		return KindActivation
	}
	return ""
}

// EdgeKind separates weights (constant tensors) from activations (computed per input).
type EdgeKind string

// The edge kinds.
const (
	KindWeight     EdgeKind = "weight"
	KindActivation EdgeKind = "activation"
)

// Layout says how an edge's dimensions are arranged.
type Layout string

// The layouts.
const (
	// LayoutInOut is a weight T of shape [in, out] used as y = x·T (MatMul right operand, Gemm
	// with transB=0). PyTorch exports constant-fold Linear weights into this form.
	LayoutInOut Layout = "in_out"
	// LayoutOutIn is a weight T of shape [out, in] used as y = x·Tᵀ (a PyTorch Linear weight,
	// Gemm with transB=1).
	LayoutOutIn Layout = "out_in"
	// LayoutHeadDimTokens is an attention keys tensor [..., head_dim, tokens].
	LayoutHeadDimTokens Layout = "head_dim_tokens"
	// LayoutTokensHeadDim is an attention values tensor [..., tokens, head_dim].
	LayoutTokensHeadDim Layout = "tokens_head_dim"
	// LayoutQueryKey is an attention scores tensor [..., query tokens, key tokens].
	LayoutQueryKey Layout = "query_key"
)

// Edge is a tensor a PEFT type may rewrite, together with the nodes whose reading of it is
// rewritten.
type Edge struct {
	// Role says what the tensor is in its block.
	Role Role `json:"role"`
	// Kind is weight or activation.
	Kind EdgeKind `json:"kind,omitempty"`
	// Tensor is the value's name in the graph.
	Tensor string `json:"tensor"`
	// Consumers names the nodes whose input Tensor is rewritten. Empty means every reader,
	// graph outputs included. Weight edges name their consumers, because exporters share one
	// initializer between blocks when the values are equal.
	Consumers []string `json:"consumers,omitempty"`
	// DType is the element type, when known.
	DType DType `json:"dtype,omitempty"`
	// Shape is the tensor's shape, when known.
	Shape Shape `json:"shape,omitempty"`
	// Layout says how the dimensions are arranged (weights and attention activations).
	Layout Layout `json:"layout,omitempty"`
	// Param is the framework's name of the parameter behind a weight edge, e.g.
	// "encoder.layer.0.attention.self.query.weight" (the graph may store it under another name,
	// such as "onnx::MatMul_123", transposed).
	Param string `json:"param,omitempty"`
	// Slice, when set, says the edge is one part of a packed tensor (q, k and v in one
	// in_proj_weight). backbone.Model.Unpack turns such edges into separate initializers.
	Slice *Slice `json:"slice,omitempty"`
}

// Slice is the part [Start, End) of a tensor along Axis.
type Slice struct {
	// Axis is the sliced dimension.
	Axis int `json:"axis"`
	// Start is the first index.
	Start int64 `json:"start"`
	// End is one past the last index.
	End int64 `json:"end"`
}

// RolePattern is what every role must match: lower-case letters, digits and underscores,
// starting with a letter.
var RolePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// JSON returns the manifest as indented JSON.
func (man *Manifest) JSON() ([]byte, error) {
	return json.MarshalIndent(man, "", "  ")
}

// Block returns the block with the given index.
func (man *Manifest) Block(index int) (Block, bool) {
	if index < 0 || index >= len(man.Blocks) {
		return Block{}, false
	}
	return man.Blocks[index], true
}

// Validate checks the manifest's own consistency, without a model: the version, at least one
// block, blocks indexed 0, 1, ... with unique non-empty names, exactly one output edge per block,
// roles matching RolePattern with the kind their standard role implies, every edge naming a
// tensor, and no edge listed twice in a block. Package backbone checks the match with a model
// (backbone.Model.ValidateManifest). Errors wrap ErrInvalidManifest and list the problems.
func (man *Manifest) Validate() error {
	var probs []error
	add := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }
	if man.Version != ManifestVersion {
		add("version %d (want %d)", man.Version, ManifestVersion)
	}
	if len(man.Blocks) == 0 {
		add("no blocks")
	}
	names := map[string]bool{}
	for i, b := range man.Blocks {
		where := fmt.Sprintf("block %d (%s)", i, b.Name)
		if b.Index != i {
			add("%s: index %d, want %d", where, b.Index, i)
		}
		if b.Name == "" {
			add("block %d: no name", i)
		} else if names[b.Name] {
			add("%s: name used twice", where)
		}
		names[b.Name] = true
		nout := 0
		seen := map[string]bool{}
		for _, e := range b.Edges {
			ew := fmt.Sprintf("%s: %s edge %q", where, e.Role, e.Tensor)
			if !RolePattern.MatchString(string(e.Role)) {
				add("%s: role must match %s", ew, RolePattern)
			}
			if e.Role == RoleOutput {
				nout++
			}
			if e.Tensor == "" {
				add("%s: no tensor", ew)
			}
			if k := e.Role.Kind(); k != "" && e.Kind != "" && e.Kind != k {
				add("%s: kind %q, want %q", ew, e.Kind, k)
			}
			if e.Kind != "" && e.Kind != KindWeight && e.Kind != KindActivation {
				add("%s: kind %q (want weight or activation)", ew, e.Kind)
			}
			key := fmt.Sprint(e.Role, e.Tensor, e.Consumers)
			if e.Slice != nil {
				key += fmt.Sprint(*e.Slice)
			}
			if seen[key] {
				add("%s: listed twice", ew)
			}
			seen[key] = true
		}
		if nout != 1 {
			add("%s: %d output edges, want exactly 1", where, nout)
		}
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidManifest, errors.Join(probs...))
}
