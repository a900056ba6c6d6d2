package adapters

import (
	"fmt"
	"math"
	"slices"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/sdk"
)

// LoRA configures low-rank adaptation (Hu et al., 2021) of a backbone's weight edges: each
// target weight W becomes W + (Alpha/Rank)·B·A, with A [Rank, in] and B [out, Rank] new
// parameters in the Hugging Face PEFT layout (lora_A.weight, lora_B.weight). B's default is 0, so
// the spliced model is exactly the backbone until B is trained (the "off" state).
//
// The rewrite happens at the weight, so it is one ONNX subgraph per target that both ONNX
// Runtime and GoMLX run: MatMul(B, A), a Mul by the scale and an Add onto W (with a Transpose
// first for a weight stored [in, out]). PEFT's LoRA dropout, which drops the input of the LoRA
// branch only, cannot be expressed on a weight edge and is not offered.
type LoRA struct {
	// Rank is r, the inner dimension of B·A. Default 8.
	Rank int
	// Alpha scales the update by Alpha/Rank. Default 2·Rank.
	Alpha float64
	// Targets are the weight roles adapted in each block. Default query and value.
	Targets []backbone.Role
}

// Adapter is a PEFT rewrite of a backbone: the splices to apply (backbone.Model.Splice) and the
// parameters they add, in splice order.
type Adapter struct {
	// Splices rewrite the target edges.
	Splices []backbone.Splice
	// Params are the new graph inputs, with their training initialisation.
	Params []Param
}

// Param is one PEFT parameter: a graph input (with a default initializer holding its "off"
// value) that a Trainer can train.
type Param struct {
	// Name is the graph input's name, e.g. "lora/3/query/A".
	Name string
	// Block is the index of the block the parameter belongs to (manifest order, 0 at the bottom).
	Block int
	// Role is the role of the edge it rewrites.
	Role backbone.Role
	// Target is the framework name of the rewritten weight (the edge's Param), e.g.
	// "encoder.layer.3.attention.attention.query.weight", for exports in the Hugging Face layout.
	Target string
	// Shape is the parameter's shape.
	Shape []int64
	// Init is how training initialises it.
	Init Init
}

// Init is how a Trainer initialises a parameter: a plan's distribution (Dist), or else zeros, or
// uniform in [-Uniform, Uniform] drawn from a generator seeded by the training seed and the
// parameter's name.
type Init struct {
	// Dist, when set, is a plan's initialisation: the Trainer draws it with sdk.Init.Sample from
	// sdk.SeedFor(training seed, parameter name). Uniform is then ignored.
	Dist *sdk.Init
	// Uniform is the bound of the uniform distribution; 0 means zeros.
	Uniform float64
}

func (c LoRA) withDefaults() LoRA {
	if c.Rank == 0 {
		c.Rank = 8
	}
	if c.Alpha == 0 {
		c.Alpha = 2 * float64(c.Rank)
	}
	if len(c.Targets) == 0 {
		c.Targets = []backbone.Role{backbone.RoleQuery, backbone.RoleValue}
	}
	return c
}

// Adapter returns the LoRA rewrite of the given blocks (manifest indices) of a backbone. Each
// target edge must be an unpacked float32 weight of known rank-2 shape (backbone.Model.Unpack
// splits packed q/k/v weights first).
func (c LoRA) Adapter(man *backbone.Manifest, blocks ...int) (Adapter, error) {
	c = c.withDefaults()
	if c.Rank < 1 || c.Alpha <= 0 || math.IsInf(c.Alpha, 0) || math.IsNaN(c.Alpha) {
		return Adapter{}, fmt.Errorf("lora: %w: rank %d, alpha %g", ErrInvalidArgument, c.Rank, c.Alpha)
	}
	var a Adapter
	for _, bi := range blocks {
		if bi < 0 || bi >= len(man.Blocks) {
			return Adapter{}, fmt.Errorf("lora: %w: block %d of %d", ErrInvalidArgument, bi, len(man.Blocks))
		}
		blk := man.Blocks[bi]
		for _, role := range c.Targets {
			e, ok := blk.Edge(role)
			if !ok {
				return Adapter{}, fmt.Errorf("lora: %w: block %s has no %s edge", ErrInvalidArgument, blk.Name, role)
			}
			sp, params, err := c.splice(blk.Index, e)
			if err != nil {
				return Adapter{}, fmt.Errorf("lora: block %s: %w", blk.Name, err)
			}
			a.Splices = append(a.Splices, sp)
			a.Params = append(a.Params, params...)
		}
	}
	return a, nil
}

// splice builds the rewrite of one weight edge.
func (c LoRA) splice(block int, e backbone.Edge) (backbone.Splice, []Param, error) {
	if e.Kind != backbone.KindWeight || e.Slice != nil {
		return backbone.Splice{}, nil, fmt.Errorf("%w: edge %s (%s) is not an unpacked weight", ErrInvalidArgument, e.Tensor, e.Role)
	}
	if e.DType != backbone.DTypeFloat32 || len(e.Shape) != 2 || !e.Shape.Known() {
		return backbone.Splice{}, nil, fmt.Errorf("%w: weight %s is %s%s, want a float32 matrix of known shape",
			ErrInvalidArgument, e.Tensor, e.DType, e.Shape)
	}
	dims := e.Shape.Sizes()
	var out, in int64
	switch e.Layout {
	case backbone.LayoutOutIn:
		out, in = dims[0], dims[1]
	case backbone.LayoutInOut:
		in, out = dims[0], dims[1]
	default:
		return backbone.Splice{}, nil, fmt.Errorf("%w: weight %s has layout %q, want %s or %s",
			ErrInvalidArgument, e.Tensor, e.Layout, backbone.LayoutOutIn, backbone.LayoutInOut)
	}
	r := int64(c.Rank)
	scope := fmt.Sprintf("lora/%d/%s/", block, e.Role)
	nodes := []backbone.Node{{Op: "MatMul", Inputs: []string{"B", "A"}, Outputs: []string{"BA"}}}
	delta := "BA"
	if e.Layout == backbone.LayoutInOut {
		nodes = append(nodes, backbone.Node{Op: "Transpose", Inputs: []string{"BA"}, Outputs: []string{"BAt"},
			Attrs: []backbone.Attr{backbone.IntsAttr("perm", 1, 0)}})
		delta = "BAt"
	}
	nodes = append(nodes,
		backbone.Node{Op: "Mul", Inputs: []string{delta, "scale"}, Outputs: []string{"delta"}},
		backbone.Node{Op: "Add", Inputs: []string{"W", "delta"}, Outputs: []string{"W_lora"}},
	)
	sp := backbone.Splice{
		Edge:  e,
		Scope: scope,
		Graph: backbone.Subgraph{
			Input:     "W",
			Output:    "W_lora",
			Nodes:     nodes,
			Params:    []backbone.Tensor{backbone.Zeros("A", r, in), backbone.Zeros("B", out, r)},
			Constants: []backbone.Tensor{backbone.Scalar("scale", float32(c.Alpha/float64(c.Rank)))},
		},
	}
	// PEFT's default: A ~ kaiming_uniform(a=√5), i.e. U(-1/√in, 1/√in); B = 0.
	params := []Param{
		{Name: scope + "A", Block: block, Role: e.Role, Target: e.Param, Shape: []int64{r, in},
			Init: Init{Uniform: 1 / math.Sqrt(float64(in))}},
		{Name: scope + "B", Block: block, Role: e.Role, Target: e.Param, Shape: []int64{out, r}},
	}
	return sp, params, nil
}

// Names returns the parameters' names.
func (a Adapter) Names() []string {
	names := make([]string, len(a.Params))
	for i, p := range a.Params {
		names[i] = p.Name
	}
	return names
}

// Block returns the parameters of the given blocks.
func (a Adapter) Block(blocks ...int) []Param {
	var out []Param
	for _, p := range a.Params {
		if slices.Contains(blocks, p.Block) {
			out = append(out, p)
		}
	}
	return out
}
