package sdk

import (
	"errors"
	"fmt"
)

// ErrInvalidSubgraph means a Subgraph breaks a structural rule: a name defined twice, a node
// reading an undefined value, no node producing the output, a malformed tensor or attribute.
var ErrInvalidSubgraph = errors.New("invalid subgraph")

// Subgraph is a small computation f(edge, params) -> value that the host splices in place of a manifest edge
// (backbone.Model.Splice):
// a PEFT type's rewrite of one weight or activation, described as data so that every engine runs
// the same math. Its names are local: Input names the edge's value, Output the value that replaces
// it, and every other name (node outputs, Params, Constants) is scoped by the splice
// (see Scope).
//
// The nodes use default-domain ONNX operators at the model's opset (Manifest.Opset): for
// example, Unsqueeze and ReduceSum take axes as an input from opset 13 on. A Subgraph is plain data
// and marshals to JSON, so a plugin can send it. Write one with a Builder rather than by hand.
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

// Validate checks the attribute has a name and exactly one value.
func (a Attr) Validate() error {
	set := 0
	for _, isSet := range []bool{a.Int != nil, a.Float != nil, a.String != nil, a.Ints != nil, a.Floats != nil, a.Tensor != nil} {
		if isSet {
			set++
		}
	}
	if a.Name == "" || set != 1 {
		return fmt.Errorf("%w: attribute %q needs a name and exactly one value (has %d)", ErrInvalidSubgraph, a.Name, set)
	}
	if a.Tensor != nil {
		if err := a.Tensor.Validate(); err != nil {
			return fmt.Errorf("%w: attribute %q: %w", ErrInvalidSubgraph, a.Name, err)
		}
	}
	return nil
}

// Validate checks the subgraph's own consistency: distinct non-empty Input and Output, every name
// (Input, Refs, Params, Constants, node outputs) defined once, every node input defined, Output
// produced by a node, tensors and attributes well formed. Whether Refs exist in a model is
// checked when the subgraph is spliced. Errors wrap ErrInvalidSubgraph.
func (g *Subgraph) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSubgraph, fmt.Sprintf(format, args...))
	}
	if g.Input == "" || g.Output == "" || g.Input == g.Output {
		return bad("input %q and output %q must be distinct, non-empty names", g.Input, g.Output)
	}
	def := map[string]bool{g.Input: true}
	for _, r := range g.Refs {
		if r == "" || def[r] {
			return bad("ref %q empty or defined twice", r)
		}
		def[r] = true
	}
	for _, ts := range [][]Tensor{g.Constants, g.Params} {
		for _, t := range ts {
			if err := t.Validate(); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidSubgraph, err)
			}
			if t.Name == "" || def[t.Name] {
				return bad("tensor name %q empty or defined twice", t.Name)
			}
			def[t.Name] = true
		}
	}
	produced := false
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o == "" {
				continue
			}
			if def[o] {
				return bad("%q defined twice", o)
			}
			def[o] = true
			produced = produced || o == g.Output
		}
	}
	if !produced {
		return bad("no node produces the output %q", g.Output)
	}
	for k, n := range g.Nodes {
		if n.Op == "" {
			return bad("node %d has no op", k)
		}
		for _, x := range n.Inputs {
			if x != "" && !def[x] {
				return bad("node %d (%s) reads %q, which the subgraph does not define (list model tensors in refs)", k, n.Op, x)
			}
		}
		for _, a := range n.Attrs {
			if err := a.Validate(); err != nil {
				return fmt.Errorf("node %d (%s): %w", k, n.Op, err)
			}
		}
	}
	return nil
}

// Param returns the parameter with the given local name.
func (g *Subgraph) Param(name string) (Tensor, bool) {
	for _, t := range g.Params {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}
