package backbone

import (
	"fmt"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Subgraph is a small computation f(edge, params) -> value that Splice puts in place of an edge:
// a PEFT type's rewrite of one weight or activation, described as data so that every engine runs
// the same math. Its names are local: Input names the edge's value, Output the value that replaces
// it, and every other name (node outputs, Params, Constants) is scoped by the splice.
//
// The nodes use default-domain ONNX operators at the model's opset (Manifest.Opset): for
// example, Unsqueeze and ReduceSum take axes as an input from opset 13 on. A Subgraph is plain data
// and marshals to JSON, so a plugin can send it.
type Subgraph struct {
	// Input is the local name under which the nodes read the edge's value.
	Input string `json:"input"`
	// Output is the local name of the value that replaces the edge; a node must produce it.
	Output string `json:"output"`
	// Nodes compute Output, in any order.
	Nodes []Node `json:"nodes"`
	// Params are new trainable parameters. Each becomes a graph input that also has a default
	// initializer holding this tensor, which must be the parameter's "off" value (the one that
	// makes the subgraph the identity), so the model runs with or without them being fed.
	Params []Tensor `json:"params,omitempty"`
	// Constants are fixed tensors (for example a LoRA scale alpha/r), added as initializers.
	Constants []Tensor `json:"constants,omitempty"`
	// Refs lists tensors of the model that the nodes read by their own, global names (for
	// example a block input, to take its batch size).
	Refs []string `json:"refs,omitempty"`
}

// Node is one operator application in a Subgraph.
type Node struct {
	// Op is the operator type, e.g. "MatMul".
	Op string `json:"op"`
	// Domain is the operator set domain; empty for the default ONNX domain.
	Domain string `json:"domain,omitempty"`
	// Name is the node's local name; empty gets one derived from Op.
	Name string `json:"name,omitempty"`
	// Inputs are value names; "" marks an omitted optional input.
	Inputs []string `json:"inputs"`
	// Outputs are the names of the values the node produces.
	Outputs []string `json:"outputs"`
	// Attrs are the node's attributes.
	Attrs []Attr `json:"attrs,omitempty"`
}

// Attr is one node attribute. Exactly one of the value fields is set.
type Attr struct {
	// Name is the attribute's name, e.g. "perm".
	Name string `json:"name"`
	// Int is an int attribute.
	Int *int64 `json:"int,omitempty"`
	// Float is a float attribute.
	Float *float32 `json:"float,omitempty"`
	// String is a string attribute.
	String *string `json:"string,omitempty"`
	// Ints is a list-of-ints attribute.
	Ints []int64 `json:"ints,omitempty"`
	// Floats is a list-of-floats attribute.
	Floats []float32 `json:"floats,omitempty"`
	// Tensor is a tensor attribute (e.g. Constant's value).
	Tensor *Tensor `json:"tensor,omitempty"`
}

// IntAttr returns an int attribute.
func IntAttr(name string, v int64) Attr { return Attr{Name: name, Int: &v} }

// FloatAttr returns a float attribute.
func FloatAttr(name string, v float32) Attr { return Attr{Name: name, Float: &v} }

// StringAttr returns a string attribute.
func StringAttr(name, v string) Attr { return Attr{Name: name, String: &v} }

// IntsAttr returns a list-of-ints attribute.
func IntsAttr(name string, v ...int64) Attr { return Attr{Name: name, Ints: v} }

// FloatsAttr returns a list-of-floats attribute.
func FloatsAttr(name string, v ...float32) Attr { return Attr{Name: name, Floats: v} }

// TensorAttr returns a tensor attribute.
func TensorAttr(name string, t Tensor) Attr { return Attr{Name: name, Tensor: &t} }

func (a Attr) proto() (*onnxpb.AttributeProto, error) {
	p := &onnxpb.AttributeProto{Name: proto.String(a.Name)}
	set := 0
	if a.Int != nil {
		set++
		p.I, p.Type = proto.Int64(*a.Int), onnxpb.AttributeProto_INT.Enum()
	}
	if a.Float != nil {
		set++
		p.F, p.Type = proto.Float32(*a.Float), onnxpb.AttributeProto_FLOAT.Enum()
	}
	if a.String != nil {
		set++
		p.S, p.Type = []byte(*a.String), onnxpb.AttributeProto_STRING.Enum()
	}
	if a.Ints != nil {
		set++
		p.Ints, p.Type = a.Ints, onnxpb.AttributeProto_INTS.Enum()
	}
	if a.Floats != nil {
		set++
		p.Floats, p.Type = a.Floats, onnxpb.AttributeProto_FLOATS.Enum()
	}
	if a.Tensor != nil {
		set++
		if err := a.Tensor.check(); err != nil {
			return nil, err
		}
		p.T, p.Type = a.Tensor.proto(a.Tensor.Name), onnxpb.AttributeProto_TENSOR.Enum()
	}
	if a.Name == "" || set != 1 {
		return nil, fmt.Errorf("attribute %q: %w: needs a name and exactly one value (has %d)", a.Name, ErrInvalidGraph, set)
	}
	return p, nil
}
