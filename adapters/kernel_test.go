package adapters

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// withDefaultExecs runs fn with simplego's own executors for every op kernel*.go replaces. Not for
// parallel tests.
func withDefaultExecs(fn func()) {
	saved := simplegoNodeExecutors
	for op, def := range defaultExecs {
		simplegoNodeExecutors[op] = def
	}
	simplegoNodeExecutors[backends.OpTypeDotGeneral] = defaultDotGeneralExec
	defer func() { simplegoNodeExecutors = saved }()
	fn()
}

// TestElementwiseKernels checks that the replaced broadcasting, BroadcastInDim and Transpose
// executors give results bit-identical to simplego's own.
func TestElementwiseKernels(t *testing.T) {
	if !kernelInstalled {
		t.Fatalf("kernels not installed: %s", kernelProblem)
	}
	binary := map[string]func(x, y *graph.Node) *graph.Node{
		"add": graph.Add, "sub": graph.Sub, "mul": graph.Mul, "div": graph.Div,
	}
	type fn = func(x, y *graph.Node) *graph.Node
	type elemCase struct {
		name         string
		xDims, yDims []int
		f            fn
		wantShape    []int // when not nil, the result's dimensions
	}
	var cases []elemCase
	pairs := [][2][]int{
		{{2, 3, 4}, {1, 3, 1}}, {{2, 3, 4}, {1, 1, 4}}, {{1, 1, 4}, {2, 3, 4}}, {{2, 1, 4}, {2, 3, 1}},
		{{32, 17, 64}, {1, 1, 64}}, {{32, 17, 64}, {32, 17, 1}}, {{2, 4, 17, 17}, {2, 4, 17, 1}},
		{{5, 1, 1, 3}, {1, 6, 7, 1}}, {{3, 1}, {1, 5}}, {{1, 7}, {4, 1}},
		{{3, 37}, {3, 37}}, {{2, 17, 64}, {2, 17, 64}}, {{5}, {5}}, {{2, 19}, {}}, {{}, {2, 19}}, {{1, 1}, {}}, {{}, {}},
		{{4, 9}, {1, 1}}, {{1, 1}, {4, 9}},
	}
	for name, f := range binary {
		for _, p := range pairs {
			cases = append(cases, elemCase{fmt.Sprintf("%s %v %v", name, p[0], p[1]), p[0], p[1], f, nil})
		}
	}
	for _, perm := range [][]int{{1, 0}, {0, 2, 1}, {2, 0, 1}, {1, 2, 0}, {0, 2, 1, 3}, {3, 1, 0, 2}} {
		perm := perm
		dims := []int{3, 5, 7, 2}[:len(perm)]
		cases = append(cases, elemCase{fmt.Sprintf("transpose %v", perm), dims, []int{1}, func(x, _ *graph.Node) *graph.Node {
			return graph.TransposeAllAxes(x, perm...)
		}, nil})
	}
	for _, c := range []struct {
		dims, to []int
		axes     []int
	}{{[]int{4}, []int{3, 4}, []int{1}}, {[]int{3}, []int{3, 4}, []int{0}}, {[]int{3, 4}, []int{2, 3, 5, 4}, []int{1, 3}},
		{[]int{2, 4}, []int{2, 3, 4}, []int{0, 2}}, {[]int{1, 4}, []int{3, 5, 4}, []int{1, 2}}} {
		c := c
		cases = append(cases, elemCase{fmt.Sprintf("broadcast %v to %v", c.dims, c.to), c.dims, []int{1}, func(x, _ *graph.Node) *graph.Node {
			var expanded []int
			for a := range c.to {
				if !slices.Contains(c.axes, a) {
					expanded = append(expanded, a)
				}
			}
			return graph.ExpandAndBroadcast(x, c.to, expanded)
		}, c.to})
	}
	for _, axes := range [][]int{{0}, {1}, {2}, {0, 1}, {1, 2}, {0, 2}, {0, 1, 2}, {2, 0}} {
		axes := axes
		cases = append(cases, elemCase{fmt.Sprintf("reduce sum %v", axes), []int{6, 5, 7}, []int{1}, func(x, _ *graph.Node) *graph.Node {
			return graph.ReduceSum(x, axes...)
		}, nil}, elemCase{fmt.Sprintf("reduce sum %v with unit axis", axes), []int{4, 1, 9}, []int{1}, func(x, _ *graph.Node) *graph.Node {
			return graph.ReduceSum(x, axes...)
		}, nil})
	}
	rng := rand.New(rand.NewPCG(9, 10))
	e := engine(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x, y := randomFloats(rng, c.xDims), randomFloats(rng, c.yDims)
			run := func() []float32 {
				exec, err := graph.NewExec(e.backend, c.f)
				if err != nil {
					t.Fatal(err)
				}
				defer exec.Finalize()
				res, err := exec.Exec(tensors.FromFlatDataAndDimensions(x, c.xDims...),
					tensors.FromFlatDataAndDimensions(y, c.yDims...))
				if err != nil {
					t.Fatal(err)
				}
				if c.wantShape != nil && !slices.Equal(res[0].Shape().Dimensions, c.wantShape) {
					t.Fatalf("shape %v, want %v", res[0].Shape().Dimensions, c.wantShape)
				}
				return tensors.MustCopyFlatData[float32](res[0])
			}
			got := run()
			var want []float32
			withDefaultExecs(func() { want = run() })
			if !slices.Equal(got, want) {
				t.Errorf("results differ from simplego's:\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestUnaryKernels checks the float32 Exp and Erf executors against simplego's through GoMLX.
func TestUnaryKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	e := engine(t)
	for name, f := range map[string]func(*graph.Node) *graph.Node{"exp": graph.Exp, "erf": graph.Erf} {
		t.Run(name, func(t *testing.T) {
			x := randomFloats(rng, []int{3, 1000})
			for i := range x {
				x[i] *= 8
			}
			run := func() []float32 {
				exec, err := graph.NewExec(e.backend, f)
				if err != nil {
					t.Fatal(err)
				}
				defer exec.Finalize()
				res, err := exec.Exec(tensors.FromFlatDataAndDimensions(x, 3, 1000))
				if err != nil {
					t.Fatal(err)
				}
				return tensors.MustCopyFlatData[float32](res[0])
			}
			got := run()
			var want []float32
			withDefaultExecs(func() { want = run() })
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 4e-7*math.Max(1, math.Abs(float64(want[i]))) {
					t.Fatalf("%s(%g) = %g, simplego %g", name, x[i], got[i], want[i])
				}
			}
		})
	}
}

// TestSimplegoVersion pins the gomlx version kernel.go's go:linkname declarations were written
// against: simplego's executor table and (*Backend).getBufferForShape are unexported, so their
// types are not checked by the compiler. Before moving go.mod to another gomlx, re-read them in
// the new simplego (exec.go: nodeExecutor, nodeExecutors; buffers.go: getBufferForShape) and
// update this test.
func TestSimplegoVersion(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Skipf("go.mod: %v", err)
	}
	if !strings.Contains(string(b), "github.com/gomlx/gomlx v0.26.0\n") {
		t.Errorf("go.mod no longer requires github.com/gomlx/gomlx v0.26.0: re-check kernel.go's go:linkname declarations against the new simplego")
	}
}
