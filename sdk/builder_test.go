package sdk

import (
	"errors"
	"slices"
	"testing"
)

func ops(g Subgraph) []string {
	var out []string
	for _, n := range g.Nodes {
		out = append(out, n.Op)
	}
	return out
}

func TestBuilderLoRA(t *testing.T) {
	b := NewBuilder(14)
	w := b.Input("W")
	am := b.Param(Zeros("A", 2, 4))
	bm := b.Param(Zeros("B", 3, 2))
	scale := b.Const(Scalar("scale", 2))
	y := b.Add(w, b.Mul(b.MatMul(bm, am), scale))
	g, err := b.Build(y)
	if err != nil {
		t.Fatal(err)
	}
	if g.Input != "W" || g.Output != y.Name() || len(g.Params) != 2 || len(g.Constants) != 1 {
		t.Errorf("subgraph %+v", g)
	}
	if got := ops(g); !slices.Equal(got, []string{"MatMul", "Mul", "Add"}) {
		t.Errorf("ops %v", got)
	}
	names := map[string]bool{}
	for _, n := range g.Nodes {
		for _, s := range append([]string{n.Name}, n.Outputs...) {
			if names[s] {
				t.Errorf("name %q used twice (nodes and values share a namespace when spliced)", s)
			}
			names[s] = true
		}
	}
}

func TestBuilderOpsetDependentOps(t *testing.T) {
	tests := []struct {
		opset      int64
		op         func(b *Builder, x Value) Value
		wantInputs int
		wantAttrs  int
	}{
		{11, func(b *Builder, x Value) Value { return b.Unsqueeze(x, 0) }, 1, 1},
		{13, func(b *Builder, x Value) Value { return b.Unsqueeze(x, 0) }, 2, 0},
		{9, func(b *Builder, x Value) Value { return b.Slice(x, []int64{0}, []int64{1}, []int64{0}) }, 1, 3},
		{10, func(b *Builder, x Value) Value { return b.Slice(x, []int64{0}, []int64{1}, []int64{0}) }, 4, 0},
	}
	for _, tt := range tests {
		b := NewBuilder(tt.opset)
		g, err := b.Build(tt.op(b, b.Input("x")))
		if err != nil {
			t.Fatal(err)
		}
		n := g.Nodes[len(g.Nodes)-1]
		if len(n.Inputs) != tt.wantInputs || len(n.Attrs) != tt.wantAttrs {
			t.Errorf("opset %d %s: %d inputs, %d attrs; want %d, %d", tt.opset, n.Op, len(n.Inputs), len(n.Attrs), tt.wantInputs, tt.wantAttrs)
		}
	}
}

func TestBuilderComposites(t *testing.T) {
	tests := []struct {
		name string
		op   func(b *Builder, x Value) Value
		want []string
	}{
		{"sigmoid", (*Builder).Sigmoid, []string{"Mul", "Tanh", "Add", "Mul"}},
		{"silu", (*Builder).SiLU, []string{"Mul", "Tanh", "Add", "Mul", "Mul"}},
		{"gelu", (*Builder).Gelu, []string{"Mul", "Erf", "Add", "Mul", "Mul"}},
		{"identity", func(b *Builder, x Value) Value { return x }, []string{"Identity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder(0)
			g, err := b.Build(tt.op(b, b.Input("x")))
			if err != nil {
				t.Fatal(err)
			}
			if got := ops(g); !slices.Equal(got, tt.want) {
				t.Errorf("ops %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBuilderErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func() (Subgraph, error)
	}{
		{"old opset", func() (Subgraph, error) { b := NewBuilder(7); return b.Build(b.Input("x")) }},
		{"no input", func() (Subgraph, error) { b := NewBuilder(13); return b.Build(b.Scalar(1)) }},
		{"input twice", func() (Subgraph, error) { b := NewBuilder(13); b.Input("x"); return b.Build(b.Input("y")) }},
		{"duplicate param", func() (Subgraph, error) {
			b := NewBuilder(13)
			x := b.Input("x")
			return b.Build(b.Add(b.Add(x, b.Param(Zeros("p", 1))), b.Param(Zeros("p", 1))))
		}},
		{"foreign value", func() (Subgraph, error) {
			other := NewBuilder(13)
			b := NewBuilder(13)
			return b.Build(b.Add(b.Input("x"), other.Input("y")))
		}},
		{"zero value", func() (Subgraph, error) { b := NewBuilder(13); b.Input("x"); return b.Build(Value{}) }},
		{"bad tensor", func() (Subgraph, error) {
			b := NewBuilder(13)
			return b.Build(b.Add(b.Input("x"), b.Param(Tensor{Name: "p", DType: DTypeFloat32, Shape: []int64{2}})))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.build(); !errors.Is(err, ErrInvalidSubgraph) {
				t.Errorf("got %v, want ErrInvalidSubgraph", err)
			}
		})
	}
}
