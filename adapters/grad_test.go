package adapters

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// TestFastGradientsInstalled checks that gomlx differentiates Dot and DotGeneral with this
// package's matmul-based gradients, and that the DotGeneral axes can be read from gomlx's nodes
// (if a gomlx upgrade changes their layout, the gradient silently falls back to the slow default;
// this test is what notices).
func TestFastGradientsInstalled(t *testing.T) {
	fn := func(f graph.VJP) uintptr { return reflect.ValueOf(f).Pointer() }
	if fn(graph.VJPRegistration[graph.NodeTypeDot]) != fn(dotVJP) ||
		fn(graph.VJPRegistration[graph.NodeTypeDotGeneral]) != fn(dotGeneralVJP) {
		t.Fatal("gomlx's VJP registry does not hold the matmul-based gradients")
	}
	var got dotAxes
	var ok bool
	exec := graph.MustNewExec(engine(t).backend, func(a, b *graph.Node) *graph.Node {
		y := graph.DotGeneral(a, []int{2, 0}, []int{1}, b, []int{0, 3}, []int{1})
		got, ok = dotGeneralAxes(y)
		return y
	})
	exec.MustExec(tensors.FromShape(shapeOf(5, 2, 4, 3)), tensors.FromShape(shapeOf(4, 2, 6, 5)))
	want := dotAxes{lhsContracting: []int{2, 0}, lhsBatch: []int{1}, rhsContracting: []int{0, 3}, rhsBatch: []int{1}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("dotGeneralAxes = %+v, %v; want %+v", got, ok, want)
	}
}

// dotCase is one product whose gradient is checked.
type dotCase struct {
	name     string
	lhs, rhs []int
	f        func(a, b *graph.Node) *graph.Node
}

// dotCases cover graph.Dot's three forms, the DotGeneral forms MatMul and Einsum build for the ViT
// (linear layers on [batch, tokens, features], attention's batched products), and DotGeneral with
// unsorted contracting axes, batch axes that are not leading, and no contraction at all.
var dotCases = []dotCase{
	{"Dot/matrix-matrix", []int{3, 4}, []int{4, 5}, graph.Dot},
	{"Dot/matrix-vector", []int{3, 4}, []int{4}, graph.Dot},
	{"Dot/vector-vector", []int{4}, []int{4}, graph.Dot},
	{"MatMul/linear", []int{2, 3, 4}, []int{4, 5}, graph.MatMul},
	{"MatMul/attention-scores", []int{2, 3, 4, 5}, []int{2, 3, 5, 4}, graph.MatMul},
	{"Einsum/heads", []int{2, 3, 4, 5}, []int{2, 3, 6, 5}, func(a, b *graph.Node) *graph.Node {
		return graph.Einsum("bhqd,bhkd->bhqk", a, b)
	}},
	{"DotGeneral/unsorted-contracting", []int{3, 4, 5}, []int{5, 6, 3}, func(a, b *graph.Node) *graph.Node {
		return graph.DotGeneral(a, []int{2, 0}, nil, b, []int{0, 2}, nil)
	}},
	{"DotGeneral/unsorted-contracting-rhs", []int{3, 4, 5}, []int{5, 6, 3}, func(a, b *graph.Node) *graph.Node {
		return graph.DotGeneral(a, []int{0, 2}, nil, b, []int{2, 0}, nil)
	}},
	{"DotGeneral/inner-batch", []int{4, 2, 3}, []int{5, 2, 4}, func(a, b *graph.Node) *graph.Node {
		return graph.DotGeneral(a, []int{0}, []int{1}, b, []int{2}, []int{1})
	}},
	{"DotGeneral/two-batch-axes-permuted", []int{3, 2, 4, 5}, []int{2, 5, 3, 6}, func(a, b *graph.Node) *graph.Node {
		return graph.DotGeneral(a, []int{3}, []int{1, 0}, b, []int{1}, []int{0, 2})
	}},
	{"DotGeneral/outer", []int{3}, []int{4}, func(a, b *graph.Node) *graph.Node {
		return graph.DotGeneral(a, nil, nil, b, nil, nil)
	}},
	{"DotGeneral/weight-gradient-shape", []int{8, 17, 6}, []int{8, 17, 5}, func(a, b *graph.Node) *graph.Node {
		return graph.DotGeneral(a, []int{0, 1}, nil, b, []int{0, 1}, nil)
	}},
}

// TestDotGradients checks the matmul-based gradients in float64 against gomlx's own (same values
// up to rounding) and against central finite differences, for L = Σ (lhs·rhs) ⊙ R.
func TestDotGradients(t *testing.T) {
	b := engine(t).backend
	for _, c := range dotCases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			lhs, rhs := randTensor(rng, c.lhs), randTensor(rng, c.rhs)
			outShape := graph.MustExecOnce(b, c.f, lhs, rhs).Shape()
			r := randTensor(rng, outShape.Dimensions)
			// Ours (installed) and gomlx's default, from the same graph.
			exec := graph.MustNewExec(b, func(a, bb, r *graph.Node) []*graph.Node {
				y := c.f(a, bb)
				loss := graph.ReduceAllSum(graph.Mul(y, r))
				ours := graph.Gradient(loss, a, bb)
				def := defaultDotVJP
				if y.Type() == graph.NodeTypeDotGeneral {
					def = defaultDotGeneralVJP
				}
				theirs := def(y, []*graph.Node{r}, y.Shape())
				return append(ours, theirs...)
			})
			out := exec.MustExec(lhs, rhs, r)
			loss := func(l, rr *tensors.Tensor) float64 {
				y := graph.MustExecOnce(b, c.f, l, rr)
				yv, rv := tensors.MustCopyFlatData[float64](y), tensors.MustCopyFlatData[float64](r)
				var s float64
				for i := range yv {
					s += yv[i] * rv[i]
				}
				return s
			}
			for i, x := range []*tensors.Tensor{lhs, rhs} {
				ours, theirs := tensors.MustCopyFlatData[float64](out[i]), tensors.MustCopyFlatData[float64](out[2+i])
				if !reflect.DeepEqual(out[i].Shape(), x.Shape()) {
					t.Fatalf("operand %d: gradient shape %s, want %s", i, out[i].Shape(), x.Shape())
				}
				xv := tensors.MustCopyFlatData[float64](x)
				for j := range xv {
					if math.Abs(ours[j]-theirs[j]) > 1e-12*math.Max(1, math.Abs(theirs[j])) {
						t.Fatalf("operand %d [%d]: matmul gradient %.15g, gomlx default %.15g", i, j, ours[j], theirs[j])
					}
					const h = 1e-6
					fd := func(d float64) float64 {
						v := append([]float64(nil), xv...)
						v[j] += d
						p := tensors.FromFlatDataAndDimensions(v, x.Shape().Dimensions...)
						if i == 0 {
							return loss(p, rhs)
						}
						return loss(lhs, p)
					}
					if g := (fd(h) - fd(-h)) / (2 * h); math.Abs(g-ours[j]) > 1e-7*math.Max(1, math.Abs(g)) {
						t.Fatalf("operand %d [%d]: gradient %.12g, finite differences %.12g", i, j, ours[j], g)
					}
				}
			}
		})
	}
}

func randTensor(rng *rand.Rand, dims []int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

func shapeOf(dims ...int) shapes.Shape { return shapes.Make(dtypes.Float32, dims...) }
