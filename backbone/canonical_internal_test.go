package backbone

// Canonicalization rules on small built graphs, run through ONNX Runtime: projections split
// without a manifest, random operators kept, shapes that are only partly known, naming of
// folded weights, the growth guard and the mismatch check.

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// opsOf counts m's nodes per operator.
func opsOf(m *Model) map[string]int {
	out := map[string]int{}
	for _, n := range m.pb.Graph.GetNode() {
		out[n.GetOpType()]++
	}
	return out
}

// initDims returns the dimensions of initializer name, or nil when there is none.
func initDims(m *Model, name string) []int64 {
	for _, t := range m.pb.Graph.GetInitializer() {
		if t.GetName() == name {
			return append([]int64{}, t.GetDims()...)
		}
	}
	return nil
}

// packedModel builds q, k and v as three Slices of one projection of x [batch, 4, 8] with a
// stored [24, 8] weight read through a Transpose (or a stored [8, 24] weight read directly), and
// adds them up.
func packedModel(transposed, bias, biasFirst bool, bounds [][2]int64) *graphBuilder {
	b := newBuilder().input("x", -1, 4, 8).ints("axes", -1)
	w := "W"
	if transposed {
		b.init("W", 24, 8).node("Transpose", "/attn/Transpose", []string{"W"}, []string{"Wt"}, "perm", []int64{1, 0})
		w = "Wt"
	} else {
		b.init("W", 8, 24)
	}
	b.node("MatMul", "/attn/MatMul", []string{"x", w}, []string{"mm"})
	packed := "mm"
	if bias {
		in := []string{"mm", "b"}
		if biasFirst {
			in = []string{"b", "mm"}
		}
		b.init("b", 24).node("Add", "/attn/Add", in, []string{"packed"})
		packed = "packed"
	}
	var parts []string
	for i, be := range bounds {
		s, e := "s"+string(rune('0'+i)), "e"+string(rune('0'+i))
		out := "part" + string(rune('0'+i))
		b.ints(s, be[0]).ints(e, be[1]).node("Slice", "/attn/Slice_"+string(rune('0'+i)), []string{packed, s, e, "axes"}, []string{out})
		parts = append(parts, out)
	}
	sum := parts[0]
	for i, p := range parts[1:] {
		next := "sum" + string(rune('0'+i))
		b.node("Add", "/attn/Sum_"+string(rune('0'+i)), []string{sum, p}, []string{next})
		sum = next
	}
	return b.node("Identity", "/out", []string{sum}, []string{"y"}).output("y", -1, 4, bounds[0][1]-bounds[0][0])
}

func TestCanonicalSplitWithoutManifest(t *testing.T) {
	thirds := [][2]int64{{0, 8}, {8, 16}, {16, 24}}
	tests := []struct {
		name                        string
		transposed, bias, biasFirst bool
		bounds                      [][2]int64
		split                       bool
	}{
		{"transposed, bias first", true, true, true, thirds, true},
		{"transposed, bias second", true, true, false, thirds, true},
		{"stored [in, out]", false, true, false, thirds, true},
		{"no bias", true, false, false, thirds, true},
		{"negative bounds", true, true, true, [][2]int64{{0, 8}, {-16, -8}, {-8, 100}}, true},
		{"two parts only", true, true, true, [][2]int64{{8, 16}, {16, 24}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := packedModel(tt.transposed, tt.bias, tt.biasFirst, tt.bounds).model(t)
			var rep CanonicalReport
			c, err := m.Canonicalize(context.Background(), WithReport(&rep))
			if err != nil {
				t.Fatal(err)
			}
			ops := opsOf(c)
			if ops["Slice"] != 0 || ops["MatMul"] != len(tt.bounds) || ops["Transpose"] != 0 || len(rep.Split) != len(tt.bounds) {
				t.Fatalf("ops %v, split %+v", ops, rep.Split)
			}
			for k, s := range rep.Split {
				want := "W.part" + string(rune('0'+k))
				if s.Weight != want || !slices.Equal(initDims(c, want), []int64{8, 8}) {
					t.Errorf("part %d: weight %q %v, want %s [8 8] (in, out)", k, s.Weight, initDims(c, s.Weight), want)
				}
				if tt.bias && (s.Bias != "b.part"+string(rune('0'+k)) || !slices.Equal(initDims(c, s.Bias), []int64{8})) {
					t.Errorf("part %d: bias %q", k, s.Bias)
				}
			}
			if initDims(c, "W") != nil {
				t.Error("the packed weight is still stored")
			}
		})
	}
}

func TestCanonicalSplitLeavesOtherSlices(t *testing.T) {
	tests := []struct {
		name  string
		build func() *graphBuilder
	}{
		{"slice spanning two stored parts", func() *graphBuilder {
			// The weight is a Concat of three stored parts; the slices cut through the middle one.
			b := newBuilder().input("x", -1, 8).ints("axes", -1).ints("s0", 0).ints("e0", 12).ints("s1", 12).ints("e1", 24).
				init("p0", 8, 8).init("p1", 8, 8).init("p2", 8, 8)
			return b.node("Concat", "cat", []string{"p0", "p1", "p2"}, []string{"W"}, "axis", 0).
				node("Transpose", "tr", []string{"W"}, []string{"Wt"}, "perm", []int64{1, 0}).
				node("MatMul", "mm", []string{"x", "Wt"}, []string{"packed"}).
				node("Slice", "sl0", []string{"packed", "s0", "e0", "axes"}, []string{"a"}).
				node("Slice", "sl1", []string{"packed", "s1", "e1", "axes"}, []string{"b"}).
				node("Add", "add", []string{"a", "b"}, []string{"y"}).output("y", -1, 12)
		}},
		{"packed output read by something else too", func() *graphBuilder {
			b := newBuilder().input("x", -1, 8).ints("axes", -1).ints("s0", 0).ints("e0", 8).init("W", 8, 16)
			return b.node("MatMul", "mm", []string{"x", "W"}, []string{"packed"}).
				node("Slice", "sl0", []string{"packed", "s0", "e0", "axes"}, []string{"a"}).
				node("ReduceMean", "sum", []string{"packed"}, []string{"r"}, "axes", []int64{1}, "keepdims", 1).
				node("Add", "add", []string{"a", "r"}, []string{"y"}).output("y", -1, 8)
		}},
		{"slice of the first axis", func() *graphBuilder {
			b := newBuilder().input("x", 4, 8).ints("axes", 0).ints("s0", 0).ints("e0", 2).init("W", 8, 16)
			return b.node("MatMul", "mm", []string{"x", "W"}, []string{"packed"}).
				node("Slice", "sl0", []string{"packed", "s0", "e0", "axes"}, []string{"y"}).output("y", 2, 16)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep CanonicalReport
			c, err := tt.build().model(t).Canonicalize(context.Background(), WithReport(&rep))
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Split) != 0 || opsOf(c)["Slice"] == 0 {
				t.Errorf("split %+v, ops %v", rep.Split, opsOf(c))
			}
		})
	}
}

func TestCanonicalNeverFoldsRandomOps(t *testing.T) {
	b := newBuilder().input("x", -1, 3).
		node("RandomNormal", "noise", nil, []string{"r"}, "shape", []int64{3}).
		node("Constant", "two", nil, []string{"c"}, "value", Scalar("", 2)).
		node("Mul", "scale", []string{"r", "c"}, []string{"r2"}).
		node("Add", "add", []string{"x", "r2"}, []string{"y"}).output("y", -1, 3)
	var rep CanonicalReport
	c, err := b.model(t).Canonicalize(context.Background(), WithReport(&rep))
	if err != nil {
		t.Fatal(err)
	}
	if ops := opsOf(c); ops["RandomNormal"] != 1 || ops["Mul"] != 1 || ops["Constant"] != 0 {
		t.Errorf("ops %v: the random value and what it feeds must stay computed, the Constant folded", ops)
	}
}

// TestCanonicalPartlyKnownShapes checks the torch pattern of shape arithmetic on an input with a
// symbolic batch: the dimensions that are known fold, a Reshape target that depends on the batch
// becomes a constant with -1, and pinning the batch folds everything.
func TestCanonicalPartlyKnownShapes(t *testing.T) {
	build := func() *graphBuilder {
		b := newBuilder().input("x", -1, 4, 6).ints("zero", 0)
		for i, name := range []string{"i0", "i1", "i2"} {
			b.g.Initializer = append(b.g.Initializer, tensorProto(Tensor{DType: DTypeInt64, Shape: []int64{}, Int64: []int64{int64(i)}}, name))
		}
		return b.
			node("Shape", "shape", []string{"x"}, []string{"s"}).
			node("Gather", "g0", []string{"s", "i0"}, []string{"d0"}).
			node("Gather", "g1", []string{"s", "i1"}, []string{"d1"}).
			node("Gather", "g2", []string{"s", "i2"}, []string{"d2"}).
			node("Mul", "m12", []string{"d1", "d2"}, []string{"d12"}).
			node("Unsqueeze", "u0", []string{"d0", "zero"}, []string{"u0"}).
			node("Unsqueeze", "u12", []string{"d12", "zero"}, []string{"u12"}).
			node("Concat", "cat", []string{"u0", "u12"}, []string{"target"}, "axis", 0).
			node("Reshape", "reshape", []string{"x", "target"}, []string{"flat"}).
			node("Cast", "cast", []string{"d2"}, []string{"d2f"}, "to", int(DTypeFloat32)).
			node("Div", "div", []string{"flat", "d2f"}, []string{"y"}).
			node("Size", "size", []string{"x"}, []string{"n"}).
			node("Cast", "castn", []string{"n"}, []string{"nf"}, "to", int(DTypeFloat32)).
			node("Mul", "muln", []string{"y", "nf"}, []string{"z"}).
			output("z", -1, 24)
	}
	t.Run("symbolic batch", func(t *testing.T) {
		var rep CanonicalReport
		c, err := build().model(t).Canonicalize(context.Background(), WithReport(&rep))
		if err != nil {
			t.Fatal(err)
		}
		ops := opsOf(c)
		// Size(x) depends on the batch: it stays, with its Cast.
		if ops["Gather"] != 0 || ops["Concat"] != 0 || ops["Shape"] != 0 || ops["Size"] != 1 || ops["Cast"] != 1 {
			t.Errorf("ops %v, skipped %q, folded %+v", ops, rep.Skipped, rep.Folded)
		}
		if !slices.Equal(rep.Relaxed, []string{"reshape"}) {
			t.Errorf("relaxed %v", rep.Relaxed)
		}
		tgt, err := c.Initializer("reshape_shape")
		if err != nil || !slices.Equal(tgt.Int64, []int64{-1, 24}) {
			t.Errorf("reshape target %v, %v", tgt.Int64, err)
		}
		d2f, err := c.Initializer("d2f")
		if err != nil || !slices.Equal(d2f.Float32, []float32{6}) {
			t.Errorf("d2f %v, %v", d2f.Float32, err)
		}
	})
	t.Run("pinned batch", func(t *testing.T) {
		var rep CanonicalReport
		c, err := build().model(t).Canonicalize(context.Background(), PinBatch(3), WithReport(&rep))
		if err != nil {
			t.Fatal(err)
		}
		ops := opsOf(c)
		if ops["Size"] != 0 || ops["Cast"] != 0 || ops["Shape"] != 0 || len(c.pb.Graph.GetNode()) != 3 || len(rep.Relaxed) != 0 {
			t.Errorf("ops %v, relaxed %v", ops, rep.Relaxed)
		}
		if in, out := c.Inputs()[0].Shape.String(), c.Outputs()[0].Shape.String(); in != "[3,4,6]" || out != "[3,24]" {
			t.Errorf("input %s, output %s", in, out)
		}
		if tgt, err := c.Initializer("target"); err != nil || !slices.Equal(tgt.Int64, []int64{3, 24}) {
			t.Errorf("target %v, %v", tgt.Int64, err)
		}
	})
}

// TestCanonicalFoldedNames checks which folded weights take their parameter's name.
func TestCanonicalFoldedNames(t *testing.T) {
	b := newBuilder().input("x", -1, 4).init("A", 3, 4).init("B", 3, 4).init("C", 2, 3).init("D", 2, 4).ints("reps", 2, 1).
		// A is read only through its Transpose: the transposed weight is stored as "A".
		node("Transpose", "ta", []string{"A"}, []string{"At"}, "perm", []int64{1, 0}).
		node("MatMul", "ma", []string{"x", "At"}, []string{"ya"}).
		// B is also read directly by another node: the transposed weight keeps its own name.
		node("Transpose", "tb", []string{"B"}, []string{"Bt"}, "perm", []int64{1, 0}).
		node("MatMul", "mb", []string{"x", "Bt"}, []string{"yb"}).
		node("MatMul", "mb2", []string{"yb", "B"}, []string{"yb2"}).
		// Tile changes the element count: its result is not "C".
		node("Tile", "tc", []string{"C", "reps"}, []string{"Ct"}).
		node("MatMul", "mc", []string{"x", "Ct"}, []string{"yc"}).
		// Two parameters: the sum keeps its own name.
		node("Transpose", "td", []string{"D"}, []string{"Dt"}, "perm", []int64{1, 0}).
		node("Concat", "cd", []string{"Dt", "At"}, []string{"DA"}, "axis", 1).
		node("MatMul", "md", []string{"x", "DA"}, []string{"yd"}).
		node("Concat", "out", []string{"ya", "yb2", "yc", "yd"}, []string{"y"}, "axis", 1).output("y", -1, 15)
	var rep CanonicalReport
	c, err := b.model(t).Canonicalize(context.Background(), WithReport(&rep))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, f := range rep.Folded {
		names[f.Name] = f.Was
	}
	// A is read by ta only, but At also feeds the Concat of DA, so A's transpose is claimed twice.
	want := map[string]string{"At": "", "Bt": "", "Ct": "", "DA": ""}
	for k, v := range want {
		if w, ok := names[k]; !ok || w != v {
			t.Errorf("folded %q (was %q) missing; folded: %v", k, v, names)
		}
	}
	if initDims(c, "B") == nil || !slices.Equal(initDims(c, "Ct"), []int64{4, 3}) {
		t.Errorf("initializers: B %v, Ct %v", initDims(c, "B"), initDims(c, "Ct"))
	}

	// Alone, a Transpose-read weight takes its parameter's name.
	b2 := newBuilder().input("x", -1, 4).init("A", 3, 4).
		node("Transpose", "ta", []string{"A"}, []string{"At"}, "perm", []int64{1, 0}).
		node("MatMul", "ma", []string{"x", "At"}, []string{"y"}).output("y", -1, 3)
	rep = CanonicalReport{}
	c2, err := b2.model(t).Canonicalize(context.Background(), WithReport(&rep))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Folded) != 1 || rep.Folded[0].Name != "A" || rep.Folded[0].Was != "At" || !slices.Equal(initDims(c2, "A"), []int64{4, 3}) {
		t.Errorf("folded %+v, A %v", rep.Folded, initDims(c2, "A"))
	}
}

// TestCanonicalGrowthGuard checks that a large value computed from small stored tensors is left
// computed rather than stored.
func TestCanonicalGrowthGuard(t *testing.T) {
	b := newBuilder().input("x", 1024, 512).ints("shape", 1024, 512).
		node("ConstantOfShape", "mask", []string{"shape"}, []string{"m"}, "value", Tensor{DType: DTypeFloat32, Shape: []int64{1}, Float32: []float32{1}}).
		node("Mul", "mul", []string{"x", "m"}, []string{"y"}).output("y", 1024, 512)
	var rep CanonicalReport
	c, err := b.model(t).Canonicalize(context.Background(), WithReport(&rep))
	if err != nil {
		t.Fatal(err)
	}
	if opsOf(c)["ConstantOfShape"] != 1 || len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0], "grow the model") {
		t.Errorf("ops %v, skipped %q", opsOf(c), rep.Skipped)
	}
}

func TestCanonicalVerifyMismatch(t *testing.T) {
	model := func(c float32) *Model {
		return newBuilder().input("x", -1, 3).node("Constant", "c", nil, []string{"c"}, "value", Scalar("", c)).
			node("Add", "add", []string{"x", "c"}, []string{"y"}).output("y", -1, 3).model(t)
	}
	ctx := context.Background()
	if d, err := verifyCanonical(ctx, model(1), model(1+1e-7), nil); err != nil || d > CanonicalTolerance {
		t.Errorf("within tolerance: %g, %v", d, err)
	}
	d, err := verifyCanonical(ctx, model(1), model(1.001), nil)
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), `output "y" differs by`) {
		t.Errorf("error %v (diff %g), want ErrMismatch", err, d)
	}
}
