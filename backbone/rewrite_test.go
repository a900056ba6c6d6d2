package backbone

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// scaleBy multiplies the edge by a parameter g (default 1: the identity).
func scaleBy() Subgraph {
	return Subgraph{
		Input: "x", Output: "y",
		Nodes:  []Node{{Op: "Mul", Inputs: []string{"x", "g"}, Outputs: []string{"y"}}},
		Params: []Tensor{Scalar("g", 1)},
	}
}

// loraLike rewrites a [3,2] in_out weight into W + A·B, B = 0.
func loraLike() Subgraph {
	return Subgraph{
		Input: "W", Output: "W2",
		Nodes: []Node{
			{Op: "MatMul", Inputs: []string{"A", "B"}, Outputs: []string{"d"}},
			{Op: "Add", Inputs: []string{"W", "d"}, Outputs: []string{"W2"}},
		},
		Params: []Tensor{Zeros("A", 3, 1), Zeros("B", 1, 2)},
	}
}

func TestSpliceWeight(t *testing.T) {
	m := tiny().model(t)
	e := Edge{Role: RoleQuery, Kind: KindWeight, Tensor: "fc.weight", Consumers: []string{"/fc/MatMul"}}
	out, err := m.Splice(Splice{Edge: e, Graph: loraLike(), Scope: "lora/"})
	if err != nil {
		t.Fatal(err)
	}
	var params []string
	for _, p := range out.Params() {
		params = append(params, p.Name+p.Shape.String())
	}
	if want := []string{"lora/A[3,1]", "lora/B[1,2]"}; !slices.Equal(params, want) {
		t.Fatalf("params %v, want %v", params, want)
	}
	if len(out.Inputs()) != 1 || out.Inputs()[0].Name != "x" {
		t.Errorf("required inputs: %+v", out.Inputs())
	}
	ix := newIndex(out.pb.Graph)
	mm := out.pb.Graph.Node[ix.producer["h"]]
	if mm.Input[1] != "lora/W2" {
		t.Errorf("MatMul reads %v", mm.Input)
	}
	// The original is untouched.
	if err := m.Validate(); err != nil || len(m.Params()) != 0 || m.pb.Graph.Node[0].Input[1] != "fc.weight" {
		t.Errorf("original changed: %v", err)
	}
	// A second splice of the same edge finds it rewritten.
	if _, err := out.Splice(Splice{Edge: e, Graph: loraLike(), Scope: "lora2/"}); !errors.Is(err, ErrStaleEdge) {
		t.Errorf("second splice: got %v, want ErrStaleEdge", err)
	}
}

func TestSpliceActivation(t *testing.T) {
	m := tiny().model(t)
	// Every reader of "y", a graph output: the output keeps its name and carries the new value.
	out, err := m.Splice(
		Splice{Edge: Edge{Role: RoleOutput, Kind: KindActivation, Tensor: "y"}, Graph: scaleBy(), Scope: "a/"},
		Splice{Edge: Edge{Role: RoleOutput, Kind: KindActivation, Tensor: "z"}, Graph: scaleBy(), Scope: "b/"},
	)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, n := range out.pb.Graph.Node {
		ops = append(ops, n.GetOpType()+":"+strings.Join(n.Output, ","))
	}
	want := []string{"MatMul:h", "Add:b/x", "Mul:z", "Relu:a/x", "Mul:y"}
	if !slices.Equal(ops, want) {
		t.Fatalf("nodes %v, want %v", ops, want)
	}
	if o := out.Outputs(); len(o) != 1 || o[0].Name != "y" {
		t.Errorf("outputs %+v", o)
	}
}

func TestSpliceErrors(t *testing.T) {
	m := tiny().model(t)
	w := Edge{Role: RoleQuery, Kind: KindWeight, Tensor: "fc.weight", Consumers: []string{"/fc/MatMul"}}
	y := Edge{Role: RoleOutput, Kind: KindActivation, Tensor: "y"}
	bad := func(f func(*Subgraph)) Subgraph {
		s := loraLike()
		f(&s)
		return s
	}
	tests := []struct {
		name  string
		s     Splice
		want  error
		wants string
	}{
		{"missing tensor", Splice{Edge: Edge{Tensor: "nope"}, Graph: scaleBy()}, ErrNoSuchTensor, "nope"},
		{"consumer missing", Splice{Edge: Edge{Tensor: "fc.weight", Consumers: []string{"nope"}}, Graph: loraLike()}, ErrStaleEdge, "nope"},
		{"consumer does not read", Splice{Edge: Edge{Tensor: "fc.weight", Consumers: []string{"/Relu"}}, Graph: loraLike()}, ErrStaleEdge, "/Relu"},
		{"param name taken", Splice{Edge: w, Graph: bad(func(s *Subgraph) { s.Params[0].Name, s.Nodes[0].Inputs[0] = "bias", "bias" }), Scope: "fc."}, ErrNameConflict, "fc.bias"},
		{"no scope", Splice{Edge: y, Graph: scaleBy()}, ErrNameConflict, `"x"`},
		{"node output taken", Splice{Edge: y, Graph: Subgraph{Input: "in", Output: "y", Nodes: []Node{
			{Op: "Relu", Inputs: []string{"in"}, Outputs: []string{"h"}}, {Op: "Relu", Inputs: []string{"h"}, Outputs: []string{"y"}}}}}, ErrNameConflict, `"h"`},
		{"undefined input", Splice{Edge: w, Graph: bad(func(s *Subgraph) { s.Nodes[0].Inputs[0] = "C" })}, ErrInvalidGraph, `"C"`},
		{"output not produced", Splice{Edge: w, Graph: bad(func(s *Subgraph) { s.Output = "other" })}, ErrInvalidGraph, "other"},
		{"defined twice", Splice{Edge: w, Graph: bad(func(s *Subgraph) { s.Nodes[0].Outputs[0] = "A" })}, ErrInvalidGraph, "twice"},
		{"bad tensor data", Splice{Edge: w, Graph: bad(func(s *Subgraph) { s.Params[0].Float32 = nil })}, ErrInvalidGraph, ""},
		{"shape changes", Splice{Edge: w, Graph: bad(func(s *Subgraph) { s.Params[1] = Zeros("B", 1, 5) })}, ErrInvalidGraph, "shape"},
		{"dtype changes", Splice{Edge: y, Scope: "s/", Graph: Subgraph{Input: "x", Output: "y", Nodes: []Node{
			{Op: "Cast", Inputs: []string{"x"}, Outputs: []string{"y"}, Attrs: []Attr{IntAttr("to", int64(DTypeInt64))}}}}}, ErrInvalidGraph, "int64"},
		{"packed edge", Splice{Edge: Edge{Tensor: "fc.weight", Slice: &Slice{Axis: 1, End: 1}}, Graph: loraLike()}, ErrUnsupported, "Unpack"},
		{"unknown domain", Splice{Edge: y, Scope: "s/", Graph: Subgraph{Input: "x", Output: "y", Nodes: []Node{
			{Op: "Foo", Domain: "com.example", Inputs: []string{"x"}, Outputs: []string{"y"}}}}}, ErrUnsupported, "com.example"},
		{"bad attribute", Splice{Edge: y, Scope: "s/", Graph: Subgraph{Input: "x", Output: "y", Nodes: []Node{
			{Op: "Relu", Inputs: []string{"x"}, Outputs: []string{"y"}, Attrs: []Attr{{Name: "a"}}}}}}, ErrInvalidGraph, "exactly one"},
		{"ref missing", Splice{Edge: y, Scope: "s/", Graph: Subgraph{Input: "x", Output: "y", Refs: []string{"nope"}, Nodes: []Node{
			{Op: "Add", Inputs: []string{"x", "nope"}, Outputs: []string{"y"}}}}}, ErrNoSuchTensor, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Splice(tt.s)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("got %v, want %v mentioning %q", err, tt.want, tt.wants)
			}
		})
	}
	// A ref to a model tensor works.
	if _, err := m.Splice(Splice{Edge: y, Scope: "s/", Graph: Subgraph{Input: "x", Output: "y", Refs: []string{"h"}, Nodes: []Node{
		{Op: "Add", Inputs: []string{"x", "h"}, Outputs: []string{"y"}}}}}); err != nil {
		t.Errorf("ref: %v", err)
	}
}

// leaky builds x -> a = Relu(x) -> b = Neg(a) -> c = Add(b, a): cutting at b alone leaks a.
func leaky() *graphBuilder {
	return newBuilder().input("x", -1, 2).init("k", 2).
		node("Relu", "r", []string{"x"}, []string{"a"}).
		node("Neg", "n", []string{"a"}, []string{"b"}).
		node("Add", "s", []string{"b", "a"}, []string{"c"}).
		node("Mul", "m", []string{"c", "k"}, []string{"d"}).
		output("d", -1, 2)
}

func TestCut(t *testing.T) {
	m := tiny().model(t)
	trunk, top, err := m.Cut("h")
	if err != nil {
		t.Fatal(err)
	}
	if in, out := trunk.Inputs(), trunk.Outputs(); len(in) != 1 || in[0].Name != "x" || len(out) != 1 || out[0].Name != "h" ||
		out[0].DType != DTypeFloat32 || out[0].Shape.String() != "[batch,2]" {
		t.Errorf("trunk: inputs %+v outputs %+v", in, out)
	}
	if in, out := top.Inputs(), top.Outputs(); len(in) != 1 || in[0].Name != "h" || len(out) != 1 || out[0].Name != "y" {
		t.Errorf("top: inputs %+v outputs %+v", in, out)
	}
	if n := len(trunk.pb.Graph.Initializer); n != 1 {
		t.Errorf("trunk keeps %d initializers, want 1 (fc.weight)", n)
	}
	if n := len(top.pb.Graph.Initializer); n != 1 {
		t.Errorf("top keeps %d initializers, want 1 (fc.bias)", n)
	}
	// Spliced parameters go with the part that reads them.
	e := Edge{Role: RoleQuery, Kind: KindWeight, Tensor: "fc.weight", Consumers: []string{"/fc/MatMul"}}
	spliced, err := m.Splice(Splice{Edge: e, Graph: loraLike(), Scope: "lora/"})
	if err != nil {
		t.Fatal(err)
	}
	trunk, top, err = spliced.Cut("h")
	if err != nil {
		t.Fatal(err)
	}
	if len(trunk.Params()) != 2 || len(top.Params()) != 0 || len(trunk.Inputs()) != 1 {
		t.Errorf("params: trunk %+v, top %+v", trunk.Params(), top.Params())
	}
	// Cutting at both b and a separates the leaky graph.
	lm := leaky().model(t)
	if _, _, err := lm.Cut("b", "a"); err != nil {
		t.Errorf("cut at b and a: %v", err)
	}
	tests := []struct {
		name  string
		m     *Model
		at    []string
		want  error
		wants string
	}{
		{"leak", lm, []string{"b"}, ErrCutLeak, `"a"`},
		{"not on the path", lm, []string{"a", "c"}, ErrCutLeak, `"a"`},
		{"graph input", m, []string{"x"}, ErrUnsupported, "x"},
		{"initializer", m, []string{"fc.weight"}, ErrUnsupported, "fc.weight"},
		{"missing", m, []string{"nope"}, ErrNoSuchTensor, "nope"},
		{"nothing", m, nil, ErrInvalidGraph, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.m.Cut(tt.at...)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("got %v, want %v mentioning %q", err, tt.want, tt.wants)
			}
		})
	}
}

func TestExposeOutputs(t *testing.T) {
	m := tiny().model(t)
	out, err := m.ExposeOutputs("h", "y", "h")
	if err != nil {
		t.Fatal(err)
	}
	o := out.Outputs()
	if len(o) != 2 || o[1].Name != "h" || o[1].DType != DTypeFloat32 || o[1].Shape.String() != "[batch,2]" {
		t.Fatalf("outputs %+v", o)
	}
	if _, err := m.ExposeOutputs("nope"); !errors.Is(err, ErrNoSuchTensor) {
		t.Errorf("missing: %v", err)
	}
	if _, err := m.ExposeOutputs("fc.bias"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("initializer: %v", err)
	}
}

func TestUnpack(t *testing.T) {
	// A timm-style block: one packed qkv linear, sliced into three parts by detection.
	b := newBuilder().input("x", -1, 4, 4)
	b.linear("blocks.0.attn.qkv", "x", "qkv", 4, 12, true).
		node("Split", "/blocks/blocks.0/attn/Split", []string{"qkv"}, []string{"q", "k", "v"}, "axis", -1).
		node("Add", "/blocks/blocks.0/Add", []string{"q", "k"}, []string{"qk"}).
		node("Add", "/blocks/blocks.0/Add_1", []string{"qk", "v"}, []string{"out"}).
		output("out", -1, 4, 4)
	m := b.model(t)
	man, err := DetectManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	var sliced []Edge
	for _, e := range man.Blocks[0].Edges {
		if e.Slice != nil {
			sliced = append(sliced, e)
		}
	}
	if len(sliced) != 3 || sliced[1].Role != RoleKey || *sliced[1].Slice != (Slice{Axis: 1, Start: 4, End: 8}) ||
		sliced[0].Param != "blocks.0.attn.qkv.weight" {
		t.Fatalf("packed edges: %+v", sliced)
	}
	um, uman, err := m.Unpack(man)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range uman.Blocks[0].Edges {
		if e.Slice != nil {
			t.Errorf("edge still sliced: %+v", e)
		}
	}
	q, _ := uman.Blocks[0].Edge(RoleQuery)
	if q.Tensor != "blocks.0.attn.qkv.weight.query" || q.Shape.String() != "[4,4]" {
		t.Errorf("query edge %+v", q)
	}
	parts := map[string]Tensor{}
	for _, r := range []string{"query", "key", "value"} {
		p, err := um.Initializer("blocks.0.attn.qkv.weight." + r)
		if err != nil {
			t.Fatal(err)
		}
		parts[r] = p
	}
	packed, err := m.Initializer("onnx::MatMul_0")
	if err != nil {
		t.Fatal(err)
	}
	for row := range 4 {
		for col := range 12 {
			p := parts[[]string{"query", "key", "value"}[col/4]]
			if got, want := p.Float32[row*4+col%4], packed.Float32[row*12+col]; got != want {
				t.Fatalf("part value at [%d,%d] = %v, want %v", row, col, got, want)
			}
		}
	}
	if _, err := um.Initializer("onnx::MatMul_0"); !errors.Is(err, ErrNoSuchTensor) {
		t.Errorf("the packed initializer should be pruned: %v", err)
	}
	// Each part is now an edge of its own.
	var splices []Splice
	for _, e := range uman.Blocks[0].Edges {
		if e.Kind == KindWeight {
			s := loraLike()
			s.Params = []Tensor{Zeros("A", 4, 1), Zeros("B", 1, 4)}
			splices = append(splices, Splice{Edge: e, Graph: s, Scope: string(e.Role) + "/"})
		}
	}
	if _, err := um.Splice(splices...); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		b     *graphBuilder
		wants string
	}{
		{"out of order", newBuilder().input("x", 2).
			node("Relu", "b", []string{"a"}, []string{"y"}).
			node("Relu", "a", []string{"x"}, []string{"a"}).output("y", 2), "topological"},
		{"undefined", newBuilder().input("x", 2).node("Add", "a", []string{"x", "q"}, []string{"y"}).output("y", 2), `"q", which nothing defines`},
		{"value defined twice", newBuilder().input("x", 2).
			node("Relu", "a", []string{"x"}, []string{"y"}).
			node("Relu", "b", []string{"x"}, []string{"y"}).output("y", 2), "defined twice"},
		{"output not computed", newBuilder().input("x", 2).output("y", 2), "never computed"},
		{"shape contradicts", newBuilder().input("x", 2).init("w", 2, 3).
			node("MatMul", "m", []string{"x", "w"}, []string{"y"}).output("y", 5), "declared shape [5], computed [3]"},
		{"dtype contradicts", newBuilder().input("x", 2).
			node("Shape", "s", []string{"x"}, []string{"y"}).output("y", 1), "declared float32, computed int64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Model{pb: tt.b.proto()}
			err := m.Validate()
			if !errors.Is(err, ErrInvalidGraph) || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("got %v, want ErrInvalidGraph mentioning %q", err, tt.wants)
			}
		})
	}
	dupNames := &Model{pb: newBuilder().input("x", 2).
		node("Relu", "a", []string{"x"}, []string{"y"}).
		node("Relu", "a", []string{"y"}, []string{"z"}).output("z", 2).proto()}
	if err := dupNames.Validate(); !errors.Is(err, ErrInvalidGraph) {
		t.Errorf("duplicate node names: %v", err)
	}
	if err := bertLike(2, 8, true).model(t).Validate(); err != nil {
		t.Errorf("valid graph: %v", err)
	}
}
