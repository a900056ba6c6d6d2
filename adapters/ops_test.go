package adapters

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/s3t-dev/s3t/adapters/internal/onnxtest"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// opCase is a one- or few-node ONNX graph computing "y" from float inputs, built in either
// float32 or float64.
type opCase struct {
	name string
	// out is the shape of the output y.
	out []int64
	// inputs are the graph inputs (all floating point), with their shapes.
	inputs []onnxtest.Value
	// positive makes the inputs positive (Sqrt, a divisor).
	positive bool
	// build returns the nodes and initializers for an element type.
	build func(dt int) ([]onnxtest.Node, []onnxtest.Tensor)
	// noGrad skips the gradient check (the op's gradient is not needed and not available).
	noGrad string
}

// floats returns a tensor of values drawn from a generator seeded by its name.
func floats(name string, dt int, positive bool, dims ...int64) onnxtest.Tensor {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	h := uint64(0)
	for _, c := range name {
		h = h*31 + uint64(c)
	}
	rng := rand.New(rand.NewPCG(h, 1))
	t := onnxtest.Tensor{Name: name, DType: dt, Dims: dims}
	for range n {
		v := rng.NormFloat64()
		if positive {
			v = 0.5 + rng.Float64()
		}
		if dt == onnxtest.Float32 {
			t.Float32 = append(t.Float32, float32(v))
		} else {
			t.Float64 = append(t.Float64, v)
		}
	}
	return t
}

func scalar(name string, dt int, v float64) onnxtest.Tensor {
	if dt == onnxtest.Float32 {
		return onnxtest.Tensor{Name: name, DType: dt, Dims: []int64{}, Float32: []float32{float32(v)}}
	}
	return onnxtest.Tensor{Name: name, DType: dt, Dims: []int64{}, Float64: []float64{v}}
}

func ints(name string, v ...int64) onnxtest.Tensor {
	return onnxtest.Tensor{Name: name, DType: onnxtest.Int64, Dims: []int64{int64(len(v))}, Int64: v}
}

func in(name string, dims ...int64) onnxtest.Value { return onnxtest.Value{Name: name, Dims: dims} }

func node(op string, inputs []string, attrs ...onnxtest.Attr) onnxtest.Node {
	return onnxtest.Node{Op: op, Inputs: inputs, Outputs: []string{"y"}, Attrs: attrs}
}

func unary(op string, attrs ...onnxtest.Attr) func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
	return func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		return []onnxtest.Node{node(op, []string{"x"}, attrs...)}, nil
	}
}

// opCases are the operators of the graphs the engine trains: the ViT's blocks, final LayerNorm,
// CLS gather and classifier (decomposed LayerNorm, exact-erf GELU, attention), its embeddings
// (Conv, Pad) and LoRA's splices.
var opCases = []opCase{
	{name: "Add/broadcast", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4)},
		build: func(dt int) ([]onnxtest.Node, []onnxtest.Tensor) {
			return []onnxtest.Node{node("Add", []string{"b", "x"})}, []onnxtest.Tensor{floats("b", dt, false, 4)}
		}},
	{name: "Sub", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4), in("m", 2, 3, 1)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		return []onnxtest.Node{node("Sub", []string{"x", "m"})}, nil
	}},
	{name: "Mul/broadcast", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4), in("w", 4)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		return []onnxtest.Node{node("Mul", []string{"x", "w"})}, nil
	}},
	{name: "Div", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4), in("s", 2, 3, 1)}, positive: true,
		build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
			return []onnxtest.Node{node("Div", []string{"x", "s"})}, nil
		}},
	{name: "Pow/constant-2", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4)}, build: func(dt int) ([]onnxtest.Node, []onnxtest.Tensor) {
		// As the ViT's LayerNorm: the exponent is a Constant node.
		return []onnxtest.Node{
			{Op: "Constant", Outputs: []string{"two"}, Attrs: []onnxtest.Attr{onnxtest.TensorAttr("value", scalar("two", dt, 2))}},
			node("Pow", []string{"x", "two"}),
		}, nil
	}},
	{name: "Sqrt", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4)}, positive: true, build: unary("Sqrt")},
	{name: "Erf", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4)}, build: unary("Erf")},
	{name: "ReduceMean/last-axis", out: []int64{2, 3, 1}, inputs: []onnxtest.Value{in("x", 2, 3, 4)}, build: unary("ReduceMean", onnxtest.Ints("axes", -1))},
	{name: "Softmax/last-axis", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4)}, build: unary("Softmax", onnxtest.Int("axis", -1))},
	{name: "Transpose/heads", out: []int64{2, 2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 2, 4)}, build: unary("Transpose", onnxtest.Ints("perm", 0, 2, 1, 3))},
	{name: "Reshape/heads", out: []int64{2, 3, 2, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 8)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		return []onnxtest.Node{node("Reshape", []string{"x", "shape"})}, []onnxtest.Tensor{ints("shape", -1, 3, 2, 4)}
	}},
	{name: "MatMul/3Dx2D", out: []int64{2, 3, 5}, inputs: []onnxtest.Value{in("x", 2, 3, 4), in("w", 4, 5)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		return []onnxtest.Node{node("MatMul", []string{"x", "w"})}, nil
	}},
	{name: "MatMul/linear-weight", out: []int64{2, 3, 5}, inputs: []onnxtest.Value{in("x", 2, 3, 4), in("w", 5, 4)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		// As the ViT's Linear layers: x · Transpose(W), W [out, in].
		return []onnxtest.Node{
			{Op: "Transpose", Inputs: []string{"w"}, Outputs: []string{"wt"}, Attrs: []onnxtest.Attr{onnxtest.Ints("perm", 1, 0)}},
			node("MatMul", []string{"x", "wt"}),
		}, nil
	}},
	{name: "MatMul/attention", out: []int64{2, 2, 3, 3}, inputs: []onnxtest.Value{in("q", 2, 2, 3, 4), in("k", 2, 2, 4, 3)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		return []onnxtest.Node{node("MatMul", []string{"q", "k"})}, nil
	}},
	{name: "MatMul/lora", out: []int64{5, 4}, inputs: []onnxtest.Value{in("b", 5, 2), in("a", 2, 4), in("w", 5, 4)}, build: func(dt int) ([]onnxtest.Node, []onnxtest.Tensor) {
		// LoRA's splice: W + scale · B·A.
		return []onnxtest.Node{
			{Op: "MatMul", Inputs: []string{"b", "a"}, Outputs: []string{"ba"}},
			{Op: "Mul", Inputs: []string{"ba", "scale"}, Outputs: []string{"d"}},
			node("Add", []string{"w", "d"}),
		}, []onnxtest.Tensor{scalar("scale", dt, 2)}
	}},
	{name: "Gather/cls", out: []int64{2, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		return []onnxtest.Node{node("Gather", []string{"x", "i"}, onnxtest.Int("axis", 1))},
			[]onnxtest.Tensor{{Name: "i", DType: onnxtest.Int64, Dims: []int64{}, Int64: []int64{0}}}
	}},
	{name: "Gemm/classifier", out: []int64{2, 5}, inputs: []onnxtest.Value{in("x", 2, 4), in("w", 5, 4), in("c", 5)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		return []onnxtest.Node{node("Gemm", []string{"x", "w", "c"},
			onnxtest.Float("alpha", 1), onnxtest.Float("beta", 1), onnxtest.Int("transB", 1))}, nil
	}},
	{name: "Pad/cls-token", out: []int64{2, 4, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 4)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		// As the ViT's embeddings: constant pads, constant_value omitted ("").
		return []onnxtest.Node{node("Pad", []string{"x", "pads", ""}, onnxtest.String("mode", "constant"))},
			[]onnxtest.Tensor{ints("pads", 0, 1, 0, 0, 0, 0)}
	}, noGrad: "gomlx v0.26.0 defines no gradient for Pad; the ViT pads in its frozen embeddings only"},
	{name: "Slice/packed-qkv", out: []int64{2, 3, 4}, inputs: []onnxtest.Value{in("x", 2, 3, 12)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		// As torch's packed in_proj: the key third of the last axis. Its gradient pads (backend.go).
		return []onnxtest.Node{node("Slice", []string{"x", "starts", "ends", "axes"})},
			[]onnxtest.Tensor{ints("starts", 4), ints("ends", 8), ints("axes", -1)}
	}},
	{name: "Slice/strided", out: []int64{2, 3}, inputs: []onnxtest.Value{in("x", 2, 7)}, build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
		// A step of 2: the gradient pads with interior padding.
		return []onnxtest.Node{node("Slice", []string{"x", "starts", "ends", "axes", "steps"})},
			[]onnxtest.Tensor{ints("starts", 1), ints("ends", 7), ints("axes", 1), ints("steps", 2)}
	}},
	{name: "Conv/patches", out: []int64{2, 3, 2, 2}, inputs: []onnxtest.Value{in("x", 2, 1, 6, 6), in("k", 3, 1, 3, 3), in("c", 3)},
		build: func(int) ([]onnxtest.Node, []onnxtest.Tensor) {
			return []onnxtest.Node{node("Conv", []string{"x", "k", "c"},
				onnxtest.Ints("kernel_shape", 3, 3), onnxtest.Ints("strides", 3, 3))}, nil
		},
		noGrad: "the patch embedding is frozen trunk; simplego lacks Reverse for the kernel gradient"},
}

// model returns the case's model for an element type.
func (c opCase) model(dt int) onnxtest.Model {
	nodes, inits := c.build(dt)
	m := onnxtest.Model{Nodes: nodes, Initializers: inits, Outputs: []onnxtest.Value{{Name: "y", DType: dt, Dims: c.out}}}
	for _, v := range c.inputs {
		v.DType = dt
		m.Inputs = append(m.Inputs, v)
	}
	return m
}

// feeds returns the case's inputs.
func (c opCase) feeds(dt int) map[string]ort.Tensor {
	out := map[string]ort.Tensor{}
	for _, v := range c.inputs {
		t := floats(v.Name, dt, c.positive, v.Dims...)
		if dt == onnxtest.Float32 {
			out[v.Name] = ort.NewTensor(t.Float32, v.Dims...)
		} else {
			out[v.Name] = ort.NewTensor(t.Float64, v.Dims...)
		}
	}
	return out
}

func importBytes(t testing.TB, b []byte) (*backbone.Model, *Model) {
	t.Helper()
	bm, err := backbone.LoadBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := engine(t).Import(bm)
	if err != nil {
		t.Fatal(err)
	}
	return bm, m
}

// TestOps checks each operator the engine relies on: the forward pass in float32 against ONNX
// Runtime, and the gradient in float64 against central finite differences.
func TestOps(t *testing.T) {
	for _, c := range opCases {
		t.Run(c.name, func(t *testing.T) {
			// Forward, float32, against ONNX Runtime.
			bm, m := importBytes(t, c.model(onnxtest.Float32).Bytes())
			feeds := c.feeds(onnxtest.Float32)
			want := runORT(t, session(t, bm), feeds)["y"]
			got, err := m.Forward(context.Background(), feeds)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(t, got["y"], want); d > 1e-5 {
				t.Errorf("forward: max |GoMLX - ORT| = %g", d)
			}
			if c.noGrad != "" {
				t.Logf("gradient not checked: %s", c.noGrad)
				return
			}
			checkGradient(t, c)
		})
	}
}

// checkGradient compares the gradient of L = Σ y·R (R fixed, random) with respect to every input,
// computed by GoMLX's autodiff through the imported float64 graph, with central differences.
func checkGradient(t *testing.T, c opCase) {
	_, m := importBytes(t, c.model(onnxtest.Float64).Bytes())
	feeds := c.feeds(onnxtest.Float64)
	y, err := m.Forward(context.Background(), feeds)
	if err != nil {
		t.Fatal(err)
	}
	r := floats("R", onnxtest.Float64, false, y["y"].Shape...).Float64
	loss := func(f map[string]ort.Tensor) float64 {
		out, err := m.Forward(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := ort.Values[float64](out["y"])
		var s float64
		for i := range v {
			s += v[i] * r[i]
		}
		return s
	}
	grads := analyticGradients(t, m, feeds, c.inputs, ort.NewTensor(r, y["y"].Shape...))
	const h, tol = 1e-6, 1e-6
	for i, v := range c.inputs {
		x, _ := ort.Values[float64](feeds[v.Name])
		for j := range x {
			orig := x[j]
			x[j] = orig + h
			up := loss(feeds)
			x[j] = orig - h
			down := loss(feeds)
			x[j] = orig
			fd := (up - down) / (2 * h)
			if an := grads[i][j]; math.Abs(fd-an) > tol*math.Max(1, math.Abs(an)) {
				t.Errorf("d/d%s[%d]: autodiff %.9g, finite differences %.9g", v.Name, j, an, fd)
				return
			}
		}
	}
}

// analyticGradients returns dL/dinput for L = Σ y·r, by GoMLX autodiff through m.
func analyticGradients(t *testing.T, m *Model, feeds map[string]ort.Tensor, inputs []onnxtest.Value, r ort.Tensor) [][]float64 {
	t.Helper()
	exec, err := mlctx.NewExecAny(m.engine.backend, m.weights, func(ctx *mlctx.Context, args []*graph.Node) []*graph.Node {
		f := map[string]*graph.Node{}
		for i, v := range inputs {
			f[v.Name] = args[i]
		}
		y := m.call(ctx, f, []string{"y"})[0]
		l := graph.ReduceAllSum(graph.Mul(y, args[len(inputs)]))
		return graph.Gradient(l, args[:len(inputs)]...)
	})
	if err != nil {
		t.Fatal(err)
	}
	var args []any
	for _, v := range inputs {
		x, _ := toGoMLX(feeds[v.Name])
		args = append(args, x)
	}
	rt, _ := toGoMLX(r)
	var out []*tensors.Tensor
	if err := catch("gradient", func() (err error) { out, err = exec.Exec(append(args, rt)...); return err }); err != nil {
		t.Fatal(err)
	}
	grads := make([][]float64, len(out))
	for i, o := range out {
		grads[i] = tensors.MustCopyFlatData[float64](o)
	}
	return grads
}

// TestImportRefusesWhatItCannotRun checks that operators onnx-gomlx v0.3.4 lacks or converts
// wrongly give ErrUnsupported at import, naming the operator.
func TestImportRefusesWhatItCannotRun(t *testing.T) {
	x := []onnxtest.Value{{Name: "x", DType: onnxtest.Float32, Dims: []int64{2, 4}}}
	y := []onnxtest.Value{{Name: "y", DType: onnxtest.Float32, Dims: []int64{2, 4}}}
	for _, c := range []struct {
		name  string
		nodes []onnxtest.Node
		inits []onnxtest.Tensor
		want  string
		out   []onnxtest.Value
	}{
		{"output without shape", []onnxtest.Node{node("Relu", []string{"x"})}, nil, `"y" declares no shape`,
			[]onnxtest.Value{{Name: "y", DType: onnxtest.Float32}}},
		{"Sigmoid", []onnxtest.Node{node("Sigmoid", []string{"x"})}, nil, "Sigmoid", nil},
		{"LogSoftmax", []onnxtest.Node{node("LogSoftmax", []string{"x"})}, nil, "LogSoftmax", nil},
		{"ReduceSum", []onnxtest.Node{node("ReduceSum", []string{"x"})}, nil, "ReduceSum", nil},
		{"Gelu", []onnxtest.Node{node("Gelu", []string{"x"})}, nil, "Gelu", nil},
		{"Dropout", []onnxtest.Node{node("Dropout", []string{"x"})}, nil, "Dropout", nil},
		{"Gemm/beta-differs", []onnxtest.Node{node("Gemm", []string{"x", "w", "c"},
			onnxtest.Float("alpha", 1), onnxtest.Float("beta", 0.5), onnxtest.Int("transB", 1))},
			[]onnxtest.Tensor{floats("w", onnxtest.Float32, false, 3, 4), floats("c", onnxtest.Float32, false, 3)},
			"Gemm(alpha=1, beta=0.5)", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := y
			if c.out != nil {
				out = c.out
			}
			b := onnxtest.Model{Opset: 20, Nodes: c.nodes, Initializers: c.inits, Inputs: x, Outputs: out}.Bytes()
			bm, err := backbone.LoadBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			_, err = engine(t).Import(bm)
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(fmt.Sprint(err), c.want) {
				t.Errorf("Import: got %v, want ErrUnsupported naming %s", err, c.want)
			}
		})
	}
}
