package adapters

import (
	"reflect"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// This file replaces gomlx's reverse-mode gradients of Dot and DotGeneral by matmul-based ones.
//
// gomlx v0.26.0 differentiates a dot product by broadcasting the output gradient against the other
// operand, multiplying elementwise and reducing: the weight gradient of x[1088,64]·W[64,64] builds
// a [1088,64,64] tensor before summing it. The gradients below compute the same values with one
// DotGeneral per operand (dA = dY·Bᵀ, dB = Aᵀ·dY, generalised to batch and multiple contracting
// axes), as gomlx itself does from its PR #428 on. Values agree up to float rounding (the
// summation order differs); the tests check them against the default gradients and against
// finite differences in float64.
//
// gomlx looks gradients up in the process-wide map graph.VJPRegistration, its documented
// extension point ("If implementing a new outputOps, or for experimentation, one can dynamically
// change this"). A node-level override (graph.IdentityWithCustomGradient) only exists for
// single-input identities, so it cannot express a two-operand product. init installs the
// replacements before any graph is built, so no graph is ever differentiated with a mix; gomlx is
// used by this package only (DESIGN.md), so the change reaches no other code.
//
// DotGeneral keeps its axes in an unexported struct. dotGeneralAxes reads them by reflection and
// checks them against the node's shape; when that fails (a future gomlx with another layout), the
// gradient falls back to gomlx's own, and TestFastGradientsInstalled fails loudly.

var (
	// defaultDotVJP and defaultDotGeneralVJP are gomlx's own gradients, kept for the fallback and
	// for the tests that compare against them.
	defaultDotVJP        = graph.VJPRegistration[graph.NodeTypeDot]
	defaultDotGeneralVJP = graph.VJPRegistration[graph.NodeTypeDotGeneral]
)

func init() {
	graph.VJPRegistration[graph.NodeTypeDot] = dotVJP
	graph.VJPRegistration[graph.NodeTypeDotGeneral] = dotGeneralVJP
}

// dotVJP is the gradient of graph.Dot (vector·vector, matrix·vector, matrix·matrix) by matmuls.
func dotVJP(node *graph.Node, vjps []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	in := node.Inputs()
	lhs, rhs, v := in[0], in[1], vjps[0]
	if lhs.DType().IsComplex() {
		return defaultDotVJP(node, vjps, outputShape)
	}
	switch {
	case lhs.Rank() == 1 && rhs.Rank() == 1: // [k]·[k] -> []
		return []*graph.Node{graph.Mul(v, rhs), graph.Mul(v, lhs)}
	case lhs.Rank() == 2 && rhs.Rank() == 1: // [m,k]·[k] -> [m]
		return []*graph.Node{
			graph.DotGeneral(v, nil, nil, rhs, nil, nil),           // v ⊗ rhs: [m,k]
			graph.DotGeneral(lhs, []int{0}, nil, v, []int{0}, nil), // lhsᵀ·v: [k]
		}
	case lhs.Rank() == 2 && rhs.Rank() == 2: // [m,k]·[k,n] -> [m,n]
		return []*graph.Node{
			graph.DotGeneral(v, []int{1}, nil, rhs, []int{1}, nil), // v·rhsᵀ: [m,k]
			graph.DotGeneral(lhs, []int{0}, nil, v, []int{0}, nil), // lhsᵀ·v: [k,n]
		}
	}
	return defaultDotVJP(node, vjps, outputShape)
}

// dotAxes are the axes of a DotGeneral node. Batch and contracting axes pair up by position.
type dotAxes struct {
	lhsContracting, lhsBatch []int
	rhsContracting, rhsBatch []int
}

// dotGeneralVJP is the gradient of graph.DotGeneral by two DotGenerals and a transpose each.
//
// The output of DotGeneral(lhs, rhs) has the axes [batch..., lhsCross..., rhsCross...], where the
// cross axes are those neither batch nor contracting, in increasing order. With v the output's
// gradient:
//
//	dlhs = DotGeneral(v, contracting=rhsCross(v), batch=batch(v), rhs, contracting=rhsCross, batch=rhsBatch)
//	     -> [batch..., lhsCross..., rhsContracting (in rhs axis order)...], transposed to lhs's axes;
//	drhs = DotGeneral(lhs, contracting=lhsCross, batch=lhsBatch, v, contracting=lhsCross(v), batch=batch(v))
//	     -> [batch..., lhsContracting (in lhs axis order)..., rhsCross...], transposed to rhs's axes.
func dotGeneralVJP(node *graph.Node, vjps []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	in := node.Inputs()
	lhs, rhs, v := in[0], in[1], vjps[0]
	ax, ok := dotGeneralAxes(node)
	if !ok || lhs.DType().IsComplex() {
		return defaultDotGeneralVJP(node, vjps, outputShape)
	}
	lhsCross := crossAxes(lhs.Rank(), ax.lhsContracting, ax.lhsBatch)
	rhsCross := crossAxes(rhs.Rank(), ax.rhsContracting, ax.rhsBatch)
	nb, nlc, nrc := len(ax.lhsBatch), len(lhsCross), len(rhsCross)
	vBatch := iota(0, nb)
	vLhsCross := iota(nb, nlc)
	vRhsCross := iota(nb+nlc, nrc)

	// Gradient with respect to lhs.
	dlhs := graph.DotGeneral(v, vRhsCross, vBatch, rhs, rhsCross, ax.rhsBatch)
	perm := make([]int, lhs.Rank())
	for i, a := range ax.lhsBatch {
		perm[a] = i
	}
	for j, a := range lhsCross {
		perm[a] = nb + j
	}
	sortedRhsContracting := slices.Sorted(slices.Values(ax.rhsContracting))
	for i, a := range ax.lhsContracting {
		perm[a] = nb + nlc + slices.Index(sortedRhsContracting, ax.rhsContracting[i])
	}
	dlhs = transposeIfNeeded(dlhs, perm)

	// Gradient with respect to rhs.
	drhs := graph.DotGeneral(lhs, lhsCross, ax.lhsBatch, v, vLhsCross, vBatch)
	perm = make([]int, rhs.Rank())
	nc := len(ax.lhsContracting)
	for i, a := range ax.rhsBatch {
		perm[a] = i
	}
	for j, a := range rhsCross {
		perm[a] = nb + nc + j
	}
	sortedLhsContracting := slices.Sorted(slices.Values(ax.lhsContracting))
	for i, a := range ax.rhsContracting {
		perm[a] = nb + slices.Index(sortedLhsContracting, ax.lhsContracting[i])
	}
	drhs = transposeIfNeeded(drhs, perm)
	return []*graph.Node{dlhs, drhs}
}

// transposeIfNeeded returns x with its axes permuted: axis a of the result is axis perm[a] of x
// (graph.TransposeAllAxes), or x itself when perm is the identity.
func transposeIfNeeded(x *graph.Node, perm []int) *graph.Node {
	for i, p := range perm {
		if i != p {
			return graph.TransposeAllAxes(x, perm...)
		}
	}
	return x
}

// crossAxes returns the axes of a rank-r operand that are neither contracting nor batch, in order.
func crossAxes(rank int, contracting, batch []int) []int {
	var out []int
	for a := range rank {
		if !slices.Contains(contracting, a) && !slices.Contains(batch, a) {
			out = append(out, a)
		}
	}
	return out
}

// iota returns [start, start+1, ..., start+n-1].
func iota(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}

// dotGeneralAxes reads the axes of a DotGeneral node. gomlx keeps them in the node's unexported
// inputs struct (nodeInputsDotGeneral); reflection reads them without unsafe. The axes are
// accepted only when they are consistent and reproduce the node's output shape.
// readDotAxes reads the four axis lists of a DotGeneral's data (a pointer to a struct with int
// slice fields lhsContractingAxes, lhsBatchAxes, rhsContractingAxes and rhsBatchAxes: the graph
// node's inputs here, simplego's node data in kernel.go) and checks them against the operands'
// shapes: in range, distinct, paired, and equal in size where they pair.
func readDotAxes(p reflect.Value, lhs, rhs shapes.Shape) (dotAxes, bool) {
	if p.Kind() != reflect.Pointer || p.IsNil() || p.Elem().Kind() != reflect.Struct {
		return dotAxes{}, false
	}
	s := p.Elem()
	ints := func(name string) ([]int, bool) {
		f := s.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Int {
			return nil, false
		}
		out := make([]int, f.Len())
		for i := range out {
			out[i] = int(f.Index(i).Int())
		}
		return out, true
	}
	var ax dotAxes
	var ok [4]bool
	ax.lhsContracting, ok[0] = ints("lhsContractingAxes")
	ax.lhsBatch, ok[1] = ints("lhsBatchAxes")
	ax.rhsContracting, ok[2] = ints("rhsContractingAxes")
	ax.rhsBatch, ok[3] = ints("rhsBatchAxes")
	if ok != [4]bool{true, true, true, true} ||
		!validAxes(lhs, ax.lhsContracting, ax.lhsBatch) || !validAxes(rhs, ax.rhsContracting, ax.rhsBatch) ||
		len(ax.lhsContracting) != len(ax.rhsContracting) || len(ax.lhsBatch) != len(ax.rhsBatch) {
		return dotAxes{}, false
	}
	for i, a := range ax.lhsContracting {
		if lhs.Dimensions[a] != rhs.Dimensions[ax.rhsContracting[i]] {
			return dotAxes{}, false
		}
	}
	for i, a := range ax.lhsBatch {
		if lhs.Dimensions[a] != rhs.Dimensions[ax.rhsBatch[i]] {
			return dotAxes{}, false
		}
	}
	return ax, true
}

func dotGeneralAxes(node *graph.Node) (dotAxes, bool) {
	if node == nil || node.Type() != graph.NodeTypeDotGeneral || len(node.Inputs()) != 2 {
		return dotAxes{}, false
	}
	f := reflect.ValueOf(node).Elem().FieldByName("inputs")
	if !f.IsValid() || f.Kind() != reflect.Interface || f.IsNil() {
		return dotAxes{}, false
	}
	lhs, rhs := node.Inputs()[0].Shape(), node.Inputs()[1].Shape()
	ax, ok := readDotAxes(f.Elem(), lhs, rhs)
	if !ok {
		return dotAxes{}, false
	}
	// The output shape the axes imply must be the node's.
	var dims []int
	for _, a := range ax.lhsBatch {
		dims = append(dims, lhs.Dimensions[a])
	}
	for _, a := range crossAxes(lhs.Rank(), ax.lhsContracting, ax.lhsBatch) {
		dims = append(dims, lhs.Dimensions[a])
	}
	for _, a := range crossAxes(rhs.Rank(), ax.rhsContracting, ax.rhsBatch) {
		dims = append(dims, rhs.Dimensions[a])
	}
	if !slices.Equal(dims, node.Shape().Dimensions) && !(len(dims) == 0 && node.Shape().Rank() == 0) {
		return dotAxes{}, false
	}
	return ax, true
}

// validAxes reports whether contracting and batch are distinct axes of shape.
func validAxes(shape shapes.Shape, contracting, batch []int) bool {
	seen := make([]bool, shape.Rank())
	for _, a := range slices.Concat(contracting, batch) {
		if a < 0 || a >= shape.Rank() || seen[a] {
			return false
		}
		seen[a] = true
	}
	return true
}
