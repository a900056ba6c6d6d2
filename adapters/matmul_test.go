package adapters

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// naiveDotGeneral is the definition of DotGeneral in float64, element by element: out[q, i, j] =
// Σ over contracting indices of lhs·rhs, with q, i, j enumerating the batch, lhs-cross and
// rhs-cross indices in simplego's normalized order.
func naiveDotGeneral(lhs []float32, lhsDims, lhsContracting, lhsBatch []int,
	rhs []float32, rhsDims, rhsContracting, rhsBatch []int) []float64 {
	lhsCross := crossAxes(len(lhsDims), lhsContracting, lhsBatch)
	rhsCross := crossAxes(len(rhsDims), rhsContracting, rhsBatch)
	strides := func(dims []int) []int {
		s := make([]int, len(dims))
		p := 1
		for a := len(dims) - 1; a >= 0; a-- {
			s[a] = p
			p *= dims[a]
		}
		return s
	}
	ls, rs := strides(lhsDims), strides(rhsDims)
	// offsets enumerates, in row-major order over axes, the flat offsets of those axes' indices.
	offsets := func(dims, str, axes []int) []int {
		out := []int{0}
		for _, a := range axes {
			var next []int
			for _, o := range out {
				for i := range dims[a] {
					next = append(next, o+i*str[a])
				}
			}
			out = next
		}
		return out
	}
	lb, rb := offsets(lhsDims, ls, lhsBatch), offsets(rhsDims, rs, rhsBatch)
	li, rj := offsets(lhsDims, ls, lhsCross), offsets(rhsDims, rs, rhsCross)
	lk, rk := offsets(lhsDims, ls, lhsContracting), offsets(rhsDims, rs, rhsContracting)
	var out []float64
	for q := range lb {
		for _, i := range li {
			for _, j := range rj {
				var s float64
				for p := range lk {
					s += float64(lhs[lb[q]+i+lk[p]]) * float64(rhs[rb[q]+j+rk[p]])
				}
				out = append(out, s)
			}
		}
	}
	return out
}

// kernelCases are DotGeneral problems: plain, transposed, batched, several contracting axes in
// either order, odd sizes that leave tails in every loop, and the ViT's training shapes.
var kernelCases = []struct {
	name            string
	lhsDims, lc, lb []int
	rhsDims, rc, rb []int
}{
	{name: "1x1x1", lhsDims: []int{1, 1}, lc: []int{1}, rhsDims: []int{1, 1}, rc: []int{0}},
	{name: "matmul odd", lhsDims: []int{7, 5}, lc: []int{1}, rhsDims: []int{5, 3}, rc: []int{0}},
	{name: "matmul k=1", lhsDims: []int{9, 1}, lc: []int{1}, rhsDims: []int{1, 6}, rc: []int{0}},
	{name: "matmul rhs transposed", lhsDims: []int{13, 11}, lc: []int{1}, rhsDims: []int{6, 11}, rc: []int{1}},
	{name: "matmul lhs transposed", lhsDims: []int{11, 13}, lc: []int{0}, rhsDims: []int{11, 6}, rc: []int{0}},
	{name: "matmul both transposed", lhsDims: []int{11, 13}, lc: []int{0}, rhsDims: []int{6, 11}, rc: []int{1}},
	{name: "vector dot", lhsDims: []int{17}, lc: []int{0}, rhsDims: []int{17}, rc: []int{0}},
	{name: "outer product", lhsDims: []int{5}, rhsDims: []int{3}},
	{name: "rank3 times matrix", lhsDims: []int{3, 5, 8}, lc: []int{2}, rhsDims: []int{8, 9}, rc: []int{0}},
	{name: "weight gradient", lhsDims: []int{3, 5, 8}, lc: []int{0, 1}, rhsDims: []int{3, 5, 7}, rc: []int{0, 1}},
	{name: "contracting swapped", lhsDims: []int{3, 5, 8}, lc: []int{1, 0}, rhsDims: []int{5, 3, 7}, rc: []int{0, 1}},
	{name: "batched attention scores", lhsDims: []int{2, 4, 17, 16}, lc: []int{3}, lb: []int{0, 1},
		rhsDims: []int{2, 4, 17, 16}, rc: []int{3}, rb: []int{0, 1}},
	{name: "batched attention values", lhsDims: []int{2, 4, 17, 17}, lc: []int{3}, lb: []int{0, 1},
		rhsDims: []int{2, 4, 17, 16}, rc: []int{2}, rb: []int{0, 1}},
	{name: "batch axes last", lhsDims: []int{5, 6, 3}, lc: []int{1}, lb: []int{2},
		rhsDims: []int{6, 3, 4}, rc: []int{0}, rb: []int{1}},
	{name: "batch axes swapped", lhsDims: []int{2, 3, 5, 6}, lc: []int{3}, lb: []int{1, 0},
		rhsDims: []int{3, 2, 6, 7}, rc: []int{2}, rb: []int{0, 1}},
	{name: "vit projection", lhsDims: []int{32, 17, 64}, lc: []int{2}, rhsDims: []int{64, 128}, rc: []int{0}},
	{name: "vit projection transposed weight", lhsDims: []int{32, 17, 64}, lc: []int{2}, rhsDims: []int{128, 64}, rc: []int{1}},
	{name: "vit weight gradient", lhsDims: []int{32, 17, 128}, lc: []int{0, 1}, rhsDims: []int{32, 17, 64}, rc: []int{0, 1}},
	{name: "parallel", lhsDims: []int{301, 129}, lc: []int{1}, rhsDims: []int{129, 67}, rc: []int{0}},
}

// TestDotGeneralKernel compares the kernel with the naive definition on every case.
func TestDotGeneralKernel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range kernelCases {
		t.Run(c.name, func(t *testing.T) {
			lhs, rhs := randomFloats(rng, c.lhsDims), randomFloats(rng, c.rhsDims)
			want := naiveDotGeneral(lhs, c.lhsDims, c.lc, c.lb, rhs, c.rhsDims, c.rc, c.rb)
			got := make([]float32, len(want))
			for i := range got {
				got[i] = float32(math.NaN()) // the kernel must overwrite, not accumulate
			}
			dotGeneral(lhs, c.lhsDims, c.lc, c.lb, rhs, c.rhsDims, c.rc, c.rb, got)
			k := prodDims(c.lhsDims, c.lc)
			for i := range want {
				if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5*float64(k)) {
					t.Fatalf("element %d: got %g, want %g", i, got[i], want[i])
				}
			}
		})
	}
}

// TestMatmulSplitInvariant checks that the result is bit-identical however the rows are split
// between goroutines: the kernel's determinism does not depend on the number of cores.
func TestMatmulSplitInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const nb, m, n, k = 2, 37, 29, 31
	a, b := randomFloats(rng, []int{nb, m, k}), randomFloats(rng, []int{nb, k, n})
	ref := make([]float32, nb*m*n)
	matmulRows(0, nb*m, m, n, k, a, k, 1, b, ref)
	for _, cuts := range [][]int{{1}, {3, 4}, {5, 38, 39, 41}, {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 60}} {
		got := make([]float32, nb*m*n)
		lo := 0
		for _, hi := range append(slices.Clone(cuts), nb*m) {
			matmulRows(lo, hi, m, n, k, a, k, 1, b, got)
			lo = hi
		}
		if !slices.Equal(got, ref) {
			t.Errorf("split at %v: result differs from the unsplit one", cuts)
		}
	}
}

// TestMatmulKernelInstalled checks that simplego runs DotGeneral with this package's kernel and
// that results through GoMLX agree with simplego's own executor and with the definition.
func TestMatmulKernelInstalled(t *testing.T) {
	if !kernelInstalled {
		t.Fatalf("the matmul kernel is not installed into simplego: %s", kernelProblem)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	e := engine(t)
	for _, c := range kernelCases {
		t.Run(c.name, func(t *testing.T) {
			lhs, rhs := randomFloats(rng, c.lhsDims), randomFloats(rng, c.rhsDims)
			want := naiveDotGeneral(lhs, c.lhsDims, c.lc, c.lb, rhs, c.rhsDims, c.rc, c.rb)
			run := func() []float32 {
				exec, err := graph.NewExec(e.backend, func(x, y *graph.Node) *graph.Node {
					return graph.DotGeneral(x, c.lc, c.lb, y, c.rc, c.rb)
				})
				if err != nil {
					t.Fatal(err)
				}
				defer exec.Finalize()
				res, err := exec.Exec(tensors.FromFlatDataAndDimensions(lhs, c.lhsDims...),
					tensors.FromFlatDataAndDimensions(rhs, c.rhsDims...))
				if err != nil {
					t.Fatal(err)
				}
				return tensors.MustCopyFlatData[float32](res[0])
			}
			got := run()
			var def []float32
			withDefaultDotGeneralExec(func() { def = run() })
			k := prodDims(c.lhsDims, c.lc)
			for i := range want {
				if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5*float64(k)) {
					t.Fatalf("kernel element %d: got %g, want %g", i, got[i], want[i])
				}
				if d := math.Abs(float64(def[i]) - want[i]); !(d <= 1e-5*float64(k)) {
					t.Fatalf("simplego element %d: got %g, want %g", i, def[i], want[i])
				}
			}
		})
	}
}

// withDefaultDotGeneralExec runs fn with simplego's own DotGeneral executor. Not for parallel tests.
func withDefaultDotGeneralExec(fn func()) {
	simplegoNodeExecutors[backends.OpTypeDotGeneral] = defaultDotGeneralExec
	defer func() { simplegoNodeExecutors[backends.OpTypeDotGeneral] = execDotGeneral }()
	fn()
}

func randomFloats(rng *rand.Rand, dims []int) []float32 {
	n := 1
	for _, d := range dims {
		n *= d
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64())
	}
	return out
}

// BenchmarkMatmul times the ViT's largest training matmul ([544, 64]·[64, 128], one micro-batch of
// 32) with this package's kernel and with simplego's.
func BenchmarkMatmul(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	lhsDims, rhsDims := []int{32, 17, 64}, []int{64, 128}
	lhs, rhs := randomFloats(rng, lhsDims), randomFloats(rng, rhsDims)
	e := engine(b)
	for _, kernel := range []string{"s3t", "simplego"} {
		b.Run("kernel="+kernel, func(b *testing.B) {
			run := func() {
				exec, err := graph.NewExec(e.backend, func(x, y *graph.Node) *graph.Node {
					return graph.DotGeneral(x, []int{2}, nil, y, []int{0}, nil)
				})
				if err != nil {
					b.Fatal(err)
				}
				defer exec.Finalize()
				x := tensors.FromFlatDataAndDimensions(lhs, lhsDims...)
				y := tensors.FromFlatDataAndDimensions(rhs, rhsDims...)
				if _, err := exec.Exec(x, y); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := exec.Exec(x, y); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(2*32*17*64*128)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			}
			if kernel == "simplego" {
				withDefaultDotGeneralExec(run)
			} else {
				run()
			}
		})
	}
}

// BenchmarkGemm times the kernels alone (no graph, one goroutine) on [544, 64]·[64, 128].
func BenchmarkGemm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const m, n, k = 544, 128, 64
	x, y, c := randomFloats(rng, []int{m, k}), randomFloats(rng, []int{k, n}), make([]float32, m*n)
	kernels := map[string]func(lo, hi, n, k int, a []float32, sam, sak int, b, c []float32){"scalar": gemmRowsScalar}
	if gemmRowsSIMD != nil {
		kernels["simd"] = gemmRowsSIMD
	}
	for name, f := range kernels {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				f(0, m, n, k, x, k, 1, y, c)
			}
			b.ReportMetric(float64(2*m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestGemmKernelsAgree checks the AVX2 kernel against the plain-Go one on shapes with every tail.
func TestGemmKernelsAgree(t *testing.T) {
	if gemmRowsSIMD == nil {
		t.Skip("no SIMD kernel on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(13, 14))
	for _, s := range [][3]int{{1, 1, 1}, {4, 16, 1}, {5, 17, 3}, {7, 8, 64}, {9, 25, 2}, {13, 40, 33}, {544, 128, 64}} {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range []bool{false, true} {
			x, y := randomFloats(rng, []int{m, k}), randomFloats(rng, []int{k, n})
			sam, sak := k, 1
			if tr {
				sam, sak = 1, m
			}
			want, got := make([]float32, m*n), make([]float32, m*n)
			gemmRowsScalar(0, m, n, k, x, sam, sak, y, want)
			gemmRowsSIMD(0, m, n, k, x, sam, sak, y, got)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*float64(k) {
					t.Fatalf("%dx%dx%d transposed=%v: element %d: %g, plain Go %g", m, n, k, tr, i, got[i], want[i])
				}
			}
		}
	}
}
