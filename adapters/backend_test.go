package adapters

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// refPad pads a row-major float64 tensor as XLA's Pad does: per axis, interior padding, then
// start and end padding, negative start/end removing entries.
func refPad(x []float64, dims []int, fill float64, axes []backends.PadAxis) ([]float64, []int) {
	for axis, p := range axes {
		outer, inner := 1, 1
		for _, d := range dims[:axis] {
			outer *= d
		}
		for _, d := range dims[axis+1:] {
			inner *= d
		}
		n := dims[axis]
		// Positions of the original entries along the axis, after interior and start padding.
		size := n + max(n-1, 0)*p.Interior + p.Start + p.End
		var out []float64
		for o := range outer {
			for i := range size {
				for k := range inner {
					v := fill
					if j := i - p.Start; j >= 0 && j%(p.Interior+1) == 0 && j/(p.Interior+1) < n {
						v = x[(o*n+j/(p.Interior+1))*inner+k]
					}
					out = append(out, v)
				}
			}
		}
		x = out
		dims = slices.Clone(dims)
		dims[axis] = size
	}
	return x, dims
}

// TestPad checks the Pad the backend adds to simplego against a reference implementation.
func TestPad(t *testing.T) {
	x := make([]float64, 3*4)
	for i := range x {
		x[i] = float64(i + 1)
	}
	for _, c := range []struct {
		name string
		axes []backends.PadAxis
	}{
		{"none", nil},
		{"start", []backends.PadAxis{{Start: 1}}},
		{"end-second-axis", []backends.PadAxis{{}, {End: 2}}},
		{"both-axes", []backends.PadAxis{{Start: 2, End: 1}, {Start: 1, End: 3}}},
		{"interior", []backends.PadAxis{{Interior: 2}, {Interior: 1}}},
		{"interior-and-edges", []backends.PadAxis{{Start: 1, End: 1, Interior: 1}, {Start: 2, Interior: 3}}},
		{"negative", []backends.PadAxis{{Start: -1}, {Start: 1, End: -2}}},
		{"negative-into-interior", []backends.PadAxis{{Start: -1, End: -1, Interior: 1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, wantDims := refPad(x, []int{3, 4}, -7, c.axes)
			got := graph.MustExecOnce(engine(t).backend, func(x *graph.Node) *graph.Node {
				return graph.Pad(x, graph.Const(x.Graph(), -7.0), c.axes...)
			}, tensors.FromFlatDataAndDimensions(x, 3, 4))
			if !slices.Equal(got.Shape().Dimensions, wantDims) {
				t.Fatalf("shape %v, want %v", got.Shape().Dimensions, wantDims)
			}
			if g := tensors.MustCopyFlatData[float64](got); !slices.Equal(g, want) {
				t.Errorf("got %v\nwant %v", g, want)
			}
		})
	}
}

// TestNoDeadlock runs a graph with many independent batched matmuls, which deadlocks simplego's
// default configuration (ops run in parallel, each holding a worker while it waits for the
// sub-tasks of its batch split): with GOMLX_BACKEND=go on 2 cores it hangs within the first few
// executions. The engine's backend must finish.
func TestNoDeadlock(t *testing.T) {
	exec := graph.MustNewExec(engine(t).backend, func(a *graph.Node) *graph.Node {
		var sum *graph.Node
		for i := range 16 {
			b := graph.AddScalar(a, float64(i))
			p := graph.ReduceAllSum(graph.Einsum("bij,bjk->bik", b, b))
			if sum == nil {
				sum = p
			} else {
				sum = graph.Add(sum, p)
			}
		}
		return sum
	})
	a := tensors.FromShape(shapeOf(64, 17, 17))
	done := make(chan error, 1)
	go func() {
		done <- catch("exec", func() error {
			for range 50 {
				if _, err := exec.Exec(a); err != nil {
					return err
				}
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		panic(fmt.Sprintf("%s: simplego deadlocked", t.Name())) // a hung execution cannot be stopped
	}
}
