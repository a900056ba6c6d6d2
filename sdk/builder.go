package sdk

import (
	"fmt"
	"math"
	"strconv"
)

// MinOpset is the oldest default-domain ONNX opset a Builder writes for.
const MinOpset = 9

// Builder writes a Subgraph operator by operator, so that a PEFT author writes (out, in and r
// int64, alpha float64)
//
//	b := sdk.NewBuilder(man.Opset)
//	w := b.Input("W")
//	am, bm := b.Param(sdk.Zeros("A", r, in)), b.Param(sdk.Zeros("B", out, r))
//	y := b.Add(w, b.Mul(b.MatMul(bm, am), b.Scalar(float32(alpha/float64(r)))))
//	g, err := b.Build(y)
//
// instead of filling Node structs. Each operator method adds one node and returns its output.
// Intermediate values get unique local names (Op_N, their nodes node_Op_N); operators whose inputs moved to attributes
// or back between opsets (Unsqueeze, Slice) are written for the Builder's opset.
//
// A Builder records the first error (a value from another Builder, an opset too old for an
// operator) and Build returns it; methods called after an error do nothing useful but are safe.
type Builder struct {
	opset int64
	g     Subgraph
	names map[string]bool
	next  int
	err   error
}

// Value is a value of a Builder's subgraph: its input, a parameter, a constant, a reference to
// a model tensor or a node's output.
type Value struct {
	b    *Builder
	name string
}

// Name returns the value's local name in the subgraph.
func (v Value) Name() string { return v.name }

// NewBuilder returns a Builder writing nodes for the given default-domain opset (the manifest's
// Opset); 0 means MinOpset.
func NewBuilder(opset int64) *Builder {
	b := &Builder{opset: opset, names: map[string]bool{}}
	if opset == 0 {
		b.opset = MinOpset
	}
	if b.opset < MinOpset {
		b.fail(fmt.Errorf("%w: opset %d is older than %d", ErrInvalidSubgraph, opset, MinOpset))
	}
	return b
}

// Opset returns the opset the Builder writes for.
func (b *Builder) Opset() int64 { return b.opset }

// Err returns the first error the Builder recorded.
func (b *Builder) Err() error { return b.err }

func (b *Builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// claim reserves a local name.
func (b *Builder) claim(name string) string {
	if name == "" {
		b.fail(fmt.Errorf("%w: empty name", ErrInvalidSubgraph))
	} else if b.names[name] {
		b.fail(fmt.Errorf("%w: name %q defined twice", ErrInvalidSubgraph, name))
	}
	b.names[name] = true
	return name
}

// fresh returns an unused local name starting with prefix (not yet claimed).
func (b *Builder) fresh(prefix string) string {
	for {
		b.next++
		name := prefix + "_" + strconv.Itoa(b.next)
		if !b.names[name] {
			return name
		}
	}
}

// use checks that v belongs to b.
func (b *Builder) use(v Value) string {
	if v.b != b {
		b.fail(fmt.Errorf("%w: value %q comes from another Builder (or is the zero Value)", ErrInvalidSubgraph, v.name))
	}
	return v.name
}

// Input declares the edge's value, read under the local name name. Call it once.
func (b *Builder) Input(name string) Value {
	if b.g.Input != "" {
		b.fail(fmt.Errorf("%w: Input called twice", ErrInvalidSubgraph))
	}
	b.g.Input = b.claim(name)
	return Value{b, name}
}

// Param declares a trainable parameter; off is its "off" value (the one that makes the subgraph
// the identity) and gives its name, type and shape.
func (b *Builder) Param(off Tensor) Value {
	b.g.Params = append(b.g.Params, off)
	return Value{b, b.claim(off.Name)}
}

// Const declares a fixed tensor.
func (b *Builder) Const(t Tensor) Value {
	b.g.Constants = append(b.g.Constants, t)
	return Value{b, b.claim(t.Name)}
}

// Scalar declares a float32 scalar constant with a generated name.
func (b *Builder) Scalar(v float32) Value {
	return b.Const(Scalar(b.fresh("c"), v))
}

// Int64s declares a one-dimensional int64 constant with a generated name.
func (b *Builder) Int64s(v ...int64) Value {
	return b.Const(Int64s(b.fresh("c"), v...))
}

// Ref declares a tensor of the model read by its global name (for example a block input).
func (b *Builder) Ref(name string) Value {
	b.g.Refs = append(b.g.Refs, name)
	return Value{b, b.claim(name)}
}

// Op adds a node with one output.
func (b *Builder) Op(op string, attrs []Attr, inputs ...Value) Value {
	return b.OpN(op, 1, attrs, inputs...)[0]
}

// OpN adds a node with n outputs.
func (b *Builder) OpN(op string, n int, attrs []Attr, inputs ...Value) []Value {
	node := Node{Op: op, Attrs: attrs}
	for _, in := range inputs {
		node.Inputs = append(node.Inputs, b.use(in))
	}
	out := make([]Value, n)
	for i := range out {
		out[i] = Value{b, b.claim(b.fresh(op))}
		node.Outputs = append(node.Outputs, out[i].name)
	}
	// Node names share one namespace with values when spliced: name the node after its first
	// output, in a form values never take.
	node.Name = b.claim("node_" + out[0].name)
	b.g.Nodes = append(b.g.Nodes, node)
	return out
}

// Build returns the subgraph whose output is out, validated (Subgraph.Validate). When out is not
// a node's output (the input, a parameter), an Identity node produces it.
func (b *Builder) Build(out Value) (Subgraph, error) {
	name := b.use(out)
	if b.err != nil {
		return Subgraph{}, b.err
	}
	if b.g.Input == "" {
		return Subgraph{}, fmt.Errorf("%w: no Input", ErrInvalidSubgraph)
	}
	produced := false
	for _, n := range b.g.Nodes {
		for _, o := range n.Outputs {
			produced = produced || o == name
		}
	}
	if !produced {
		name = b.Identity(out).name
	}
	g := b.g
	g.Nodes = append([]Node{}, b.g.Nodes...)
	g.Params = append([]Tensor{}, b.g.Params...)
	g.Constants = append([]Tensor{}, b.g.Constants...)
	g.Refs = append([]string(nil), b.g.Refs...)
	g.Output = name
	if err := g.Validate(); err != nil {
		return Subgraph{}, err
	}
	return g, nil
}

// Add returns x + y (broadcasting).
func (b *Builder) Add(x, y Value) Value { return b.Op("Add", nil, x, y) }

// Sub returns x - y.
func (b *Builder) Sub(x, y Value) Value { return b.Op("Sub", nil, x, y) }

// Mul returns x * y, elementwise.
func (b *Builder) Mul(x, y Value) Value { return b.Op("Mul", nil, x, y) }

// Div returns x / y, elementwise.
func (b *Builder) Div(x, y Value) Value { return b.Op("Div", nil, x, y) }

// MatMul returns the matrix product x·y (numpy semantics).
func (b *Builder) MatMul(x, y Value) Value { return b.Op("MatMul", nil, x, y) }

// Neg returns -x.
func (b *Builder) Neg(x Value) Value { return b.Op("Neg", nil, x) }

// Relu returns max(x, 0).
func (b *Builder) Relu(x Value) Value { return b.Op("Relu", nil, x) }

// Tanh returns tanh(x).
func (b *Builder) Tanh(x Value) Value { return b.Op("Tanh", nil, x) }

// Erf returns the error function of x.
func (b *Builder) Erf(x Value) Value { return b.Op("Erf", nil, x) }

// Exp returns e^x.
func (b *Builder) Exp(x Value) Value { return b.Op("Exp", nil, x) }

// Log returns the natural logarithm of x.
func (b *Builder) Log(x Value) Value { return b.Op("Log", nil, x) }

// Sqrt returns the square root of x.
func (b *Builder) Sqrt(x Value) Value { return b.Op("Sqrt", nil, x) }

// Max returns the elementwise maximum of its inputs.
func (b *Builder) Max(xs ...Value) Value { return b.Op("Max", nil, xs...) }

// Min returns the elementwise minimum of its inputs.
func (b *Builder) Min(xs ...Value) Value { return b.Op("Min", nil, xs...) }

// Greater returns the boolean x > y.
func (b *Builder) Greater(x, y Value) Value { return b.Op("Greater", nil, x, y) }

// Where returns x where cond is true, else y.
func (b *Builder) Where(cond, x, y Value) Value { return b.Op("Where", nil, cond, x, y) }

// Identity returns x.
func (b *Builder) Identity(x Value) Value { return b.Op("Identity", nil, x) }

// Cast converts x to the element type to.
func (b *Builder) Cast(x Value, to DType) Value {
	return b.Op("Cast", []Attr{IntAttr("to", int64(to))}, x)
}

// Transpose permutes the dimensions of x.
func (b *Builder) Transpose(x Value, perm ...int64) Value {
	return b.Op("Transpose", []Attr{IntsAttr("perm", perm...)}, x)
}

// Concat joins its inputs along axis.
func (b *Builder) Concat(axis int64, xs ...Value) Value {
	return b.Op("Concat", []Attr{IntAttr("axis", axis)}, xs...)
}

// Softmax returns the softmax of x along axis.
func (b *Builder) Softmax(x Value, axis int64) Value {
	return b.Op("Softmax", []Attr{IntAttr("axis", axis)}, x)
}

// Shape returns the shape of x as a one-dimensional int64 tensor.
func (b *Builder) Shape(x Value) Value { return b.Op("Shape", nil, x) }

// Gather takes the entries of x at indices along axis.
func (b *Builder) Gather(x, indices Value, axis int64) Value {
	return b.Op("Gather", []Attr{IntAttr("axis", axis)}, x, indices)
}

// Reshape returns x with the given shape (a one-dimensional int64 value).
func (b *Builder) Reshape(x, shape Value) Value { return b.Op("Reshape", nil, x, shape) }

// Expand broadcasts x to the given shape (a one-dimensional int64 value).
func (b *Builder) Expand(x, shape Value) Value { return b.Op("Expand", nil, x, shape) }

// Unsqueeze inserts dimensions of size 1 at axes.
func (b *Builder) Unsqueeze(x Value, axes ...int64) Value {
	if b.opset >= 13 {
		return b.Op("Unsqueeze", nil, x, b.Int64s(axes...))
	}
	return b.Op("Unsqueeze", []Attr{IntsAttr("axes", axes...)}, x)
}

// Slice returns x[starts:ends] along axes (negative indices count from the end; use
// math.MaxInt64 for "to the end").
func (b *Builder) Slice(x Value, starts, ends, axes []int64) Value {
	if b.opset >= 10 {
		return b.Op("Slice", nil, x, b.Int64s(starts...), b.Int64s(ends...), b.Int64s(axes...))
	}
	return b.Op("Slice", []Attr{IntsAttr("starts", starts...), IntsAttr("ends", ends...), IntsAttr("axes", axes...)}, x)
}

// Sigmoid returns 1/(1+e^-x), written as (1 + tanh(x/2))/2 so that every engine that runs Tanh
// runs it.
func (b *Builder) Sigmoid(x Value) Value {
	half := b.Scalar(0.5)
	return b.Mul(b.Add(b.Tanh(b.Mul(x, half)), b.Scalar(1)), half)
}

// SiLU returns x·sigmoid(x).
func (b *Builder) SiLU(x Value) Value { return b.Mul(x, b.Sigmoid(x)) }

// Gelu returns the exact GELU, x·(1 + erf(x/√2))/2.
func (b *Builder) Gelu(x Value) Value {
	inner := b.Add(b.Erf(b.Mul(x, b.Scalar(float32(1/math.Sqrt2)))), b.Scalar(1))
	return b.Mul(b.Mul(x, inner), b.Scalar(0.5))
}
