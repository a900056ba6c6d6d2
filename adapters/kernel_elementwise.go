package adapters

import (
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// This file replaces, for float32, simplego's executors of elementwise ops, reductions and data
// movement, which simplego runs as scalar loops, often over per-element index iterators (see
// kernel.go for how executors are installed):
//   - Add, Sub, Mul and Div: with implicit broadcasting (a bias, a LayerNorm mean), simplego
//     advances a broadcast iterator per element; here the operands' axes are merged into runs
//     that are contiguous or constant and each run is one loop. On CPUs with AVX every case of
//     the four ops (equal shapes, a scalar operand, the runs) uses the vector loops of
//     kernel_elementwise_amd64.s; without, equal shapes and scalar operands stay with simplego;
//   - BroadcastInDim of a non-scalar, and ReduceSum, with the same runs (ReduceSum adds the
//     operand's elements into the output in the operand's order, as simplego does);
//   - Transpose, with permute (one strided loop, or a copy, per output row);
//   - Exp and Erf, in float32 (kernel_math.go) instead of through float64 math.
// Except for Exp and Erf, every output element is computed by the same float32 operation on the
// same operands as in simplego, so results are bit-identical to simplego's (TestElementwiseKernels
// checks it); Exp and Erf agree with simplego's within a few ulps (TestUnaryKernels). Other dtypes
// go to simplego's own executors.

// binaryOp is one of the float32 operations below (numbered by hand: grad.go's iota function
// shadows the predeclared iota in this package).
type binaryOp int

const (
	opAdd binaryOp = 0
	opSub binaryOp = 1
	opMul binaryOp = 2
	opDiv binaryOp = 3
)

// vectorOps are vector loops for the binary ops, indexed by binaryOp: dst[i] = x[i] op y[i] (vv),
// x[i] op s (vs), s op y[i] (sv), over n elements. Each element is the same IEEE float32
// operation as in Go.
type vectorOps struct {
	vv     [4]func(dst, x, y *float32, n int)
	vs, sv [4]func(dst, x *float32, s float32, n int)
}

// vecOps, when not nil, are the vector loops kernel_elementwise_amd64.go installs.
var vecOps *vectorOps

// defaultExecs are simplego's own executors of the op types replaced here.
var defaultExecs = map[backends.OpType]simplegoExecutor{}

// installElementwise replaces simplego's executors; called by kernel.go's init once the layouts
// are checked.
func installElementwise() {
	for opType, op := range map[backends.OpType]binaryOp{
		backends.OpTypeAdd: opAdd, backends.OpTypeSub: opSub, backends.OpTypeMul: opMul, backends.OpTypeDiv: opDiv,
	} {
		def := simplegoNodeExecutors[opType]
		if def == nil {
			continue
		}
		defaultExecs[opType] = def
		simplegoNodeExecutors[opType] = func(b *simplego.Backend, n *simplego.Node, in []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
			return execBinary(op, def, b, n, in, owned)
		}
	}
	for opType, fn := range map[backends.OpType]func(y, x []float32){
		backends.OpTypeExp: func(y, x []float32) { applyMath(expf, vecExpf, y, x) },
		backends.OpTypeErf: func(y, x []float32) { applyMath(erff, vecErff, y, x) },
	} {
		def := simplegoNodeExecutors[opType]
		if def == nil {
			continue
		}
		defaultExecs[opType] = def
		simplegoNodeExecutors[opType] = func(b *simplego.Backend, n *simplego.Node, in []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
			return execUnary(fn, def, b, n, in, owned)
		}
	}
	if def := simplegoNodeExecutors[backends.OpTypeReduceSum]; def != nil {
		defaultExecs[backends.OpTypeReduceSum] = def
		simplegoNodeExecutors[backends.OpTypeReduceSum] = func(b *simplego.Backend, n *simplego.Node, in []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
			return execReduceSum(def, b, n, in, owned)
		}
	}
	if def := simplegoNodeExecutors[backends.OpTypeBroadcastInDim]; def != nil {
		defaultExecs[backends.OpTypeBroadcastInDim] = def
		simplegoNodeExecutors[backends.OpTypeBroadcastInDim] = func(b *simplego.Backend, n *simplego.Node, in []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
			return execBroadcastInDim(def, b, n, in, owned)
		}
	}
	if def := simplegoNodeExecutors[backends.OpTypeTranspose]; def != nil {
		defaultExecs[backends.OpTypeTranspose] = def
		simplegoNodeExecutors[backends.OpTypeTranspose] = func(b *simplego.Backend, n *simplego.Node, in []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
			return execTranspose(def, b, n, in, owned)
		}
	}
}

// nodeShape returns a simplego node's output shape.
func nodeShape(n *simplego.Node) shapes.Shape {
	return *(*shapes.Shape)(ptrAdd(n, nodeShapeOff))
}

// nodeData returns a simplego node's op-specific data.
func nodeData(n *simplego.Node) any {
	return *(*any)(ptrAdd(n, nodeDataOff))
}

// execBinary runs a float32 binary op with broadcasting; other cases go to def.
func execBinary(op binaryOp, def simplegoExecutor, backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
	if len(inputs) != 2 || inputs[0] == nil || inputs[1] == nil {
		return def(backend, node, inputs, owned)
	}
	ls, rs, os := bufferShape(inputs[0]), bufferShape(inputs[1]), nodeShape(node)
	lhs, ok1 := bufferFloat32(inputs[0])
	rhs, ok2 := bufferFloat32(inputs[1])
	if ok1 && ok2 && os.DType == dtypes.Float32 && vecOps != nil {
		// Equal shapes or a scalar operand: simplego's loops, vectorised.
		var x, y []float32
		var mode int
		switch n := os.Size(); {
		case ls.Equal(rs) && len(lhs) == n:
			x, y, mode = lhs, rhs, 0
		case len(rhs) == 1 && len(lhs) == n:
			x, y, mode = lhs, rhs, 1
		case len(lhs) == 1 && len(rhs) == n:
			x, y, mode = rhs, lhs, 2
		default:
			mode = -1
		}
		if mode >= 0 {
			out := binaryOutput(backend, inputs, owned, ls, rs, os)
			c, _ := bufferFloat32(out)
			if len(c) != os.Size() {
				return nil, fmt.Errorf("binary op: %w: simplego returned an output buffer of another type or size", ErrEngine)
			}
			if n := len(c); n > 0 {
				switch mode {
				case 0:
					vecOps.vv[op](&c[0], &x[0], &y[0], n)
				case 1:
					vecOps.vs[op](&c[0], &x[0], y[0], n)
				case 2:
					vecOps.sv[op](&c[0], &x[0], y[0], n)
				}
			}
			return out, nil
		}
	}
	if !ok1 || !ok2 || os.DType != dtypes.Float32 || ls.Equal(rs) || len(lhs) == 1 || len(rhs) == 1 ||
		ls.Rank() != os.Rank() || rs.Rank() != os.Rank() || !broadcastable(ls.Dimensions, os.Dimensions) ||
		!broadcastable(rs.Dimensions, os.Dimensions) {
		return def(backend, node, inputs, owned)
	}
	out := binaryOutput(backend, inputs, owned, ls, rs, os)
	c, ok := bufferFloat32(out)
	if !ok || len(c) != os.Size() {
		return def(backend, node, inputs, owned)
	}
	broadcastBinary(op, c, os.Dimensions, lhs, ls.Dimensions, rhs, rs.Dimensions)
	return out, nil
}

// binaryOutput returns the output buffer of a binary op: as in simplego, an operand's buffer of
// the output's shape when the executor owns it (its slot in inputs is then cleared), else a
// buffer from simplego's pool.
func binaryOutput(backend *simplego.Backend, inputs []*simplego.Buffer, owned []bool, ls, rs, os shapes.Shape) *simplego.Buffer {
	switch {
	case len(owned) == 2 && owned[1] && rs.Equal(os):
		out := inputs[1]
		inputs[1] = nil
		return out
	case len(owned) == 2 && owned[0] && ls.Equal(os):
		out := inputs[0]
		inputs[0] = nil
		return out
	}
	return simplegoGetBufferForShape(backend, os)
}

// execUnary computes y = fn(x) for a float32 operand x; other dtypes go to def. Like simplego, it writes over
// the operand's buffer when the executor owns it.
func execUnary(fn func(y, x []float32), def simplegoExecutor, backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
	if len(inputs) != 1 || inputs[0] == nil {
		return def(backend, node, inputs, owned)
	}
	is, os := bufferShape(inputs[0]), nodeShape(node)
	x, ok := bufferFloat32(inputs[0])
	if !ok || os.DType != dtypes.Float32 || !is.Equal(os) {
		return def(backend, node, inputs, owned)
	}
	var out *simplego.Buffer
	if len(owned) == 1 && owned[0] {
		out, inputs[0] = inputs[0], nil
	} else {
		out = simplegoGetBufferForShape(backend, os)
	}
	y, ok := bufferFloat32(out)
	if !ok || len(y) != len(x) {
		return def(backend, node, inputs, owned)
	}
	fn(y, x)
	return out, nil
}

// execReduceSum runs a float32 ReduceSum; other dtypes go to def.
func execReduceSum(def simplegoExecutor, backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
	if len(inputs) != 1 || inputs[0] == nil {
		return def(backend, node, inputs, owned)
	}
	is, os := bufferShape(inputs[0]), nodeShape(node)
	x, ok := bufferFloat32(inputs[0])
	axes, ok2 := nodeData(node).([]int)
	if !ok || !ok2 || os.DType != dtypes.Float32 || len(axes) == 0 {
		return def(backend, node, inputs, owned)
	}
	// The operand's dimensions with the reduced axes set to 1: the output's, in the operand's rank.
	kept := slices.Clone(is.Dimensions)
	for _, a := range axes {
		if a < 0 || a >= len(kept) || kept[a] == 1 && is.Dimensions[a] != 1 {
			return def(backend, node, inputs, owned)
		}
		kept[a] = 1
	}
	if prod(kept) != os.Size() {
		return def(backend, node, inputs, owned)
	}
	out := simplegoGetBufferForShape(backend, os)
	c, ok := bufferFloat32(out)
	if !ok || len(c) != os.Size() {
		return def(backend, node, inputs, owned)
	}
	reduceSum(c, kept, x, is.Dimensions)
	return out, nil
}

// prod is the product of dims.
func prod(dims []int) int {
	p := 1
	for _, d := range dims {
		p *= d
	}
	return p
}

// reduceSum sets out (dimensions od: x's, with the reduced axes set to 1) to the sums of x
// (dimensions xd), adding x's elements into out in x's order.
func reduceSum(out []float32, od []int, x []float32, xd []int) {
	clear(out)
	// Merge axes into runs as broadcastBinary does, here with out as the broadcast side.
	type axis struct{ dim, os int }
	var axes []axis
	oStride := 1
	for a := len(xd) - 1; a >= 0; a-- {
		if xd[a] == 1 {
			continue
		}
		os := 0
		if od[a] != 1 {
			os = oStride
			oStride *= od[a]
		}
		if n := len(axes); n > 0 {
			last := &axes[n-1]
			if (last.os == 0) == (os == 0) && (os == 0 || os == last.os*last.dim) {
				last.dim *= xd[a]
				continue
			}
		}
		axes = append(axes, axis{xd[a], os})
	}
	if len(axes) == 0 {
		axes = append(axes, axis{1, 1})
	}
	inner, outer := axes[0], axes[1:]
	idx := make([]int, len(outer))
	o := 0
	for i := 0; i < len(x); i += inner.dim {
		row := x[i : i+inner.dim]
		if inner.os == 0 {
			s := out[o]
			for _, v := range row {
				s += v
			}
			out[o] = s
		} else if dst := out[o : o+len(row)]; vecOps != nil && len(row) >= 8 {
			vecOps.vv[opAdd](&dst[0], &dst[0], &row[0], len(row))
		} else {
			for j, v := range row {
				dst[j] += v
			}
		}
		for a := range outer {
			idx[a]++
			o += outer[a].os
			if idx[a] < outer[a].dim {
				break
			}
			o -= idx[a] * outer[a].os
			idx[a] = 0
		}
	}
}

// execBroadcastInDim runs a float32 BroadcastInDim of a non-scalar; other cases go to def.
func execBroadcastInDim(def simplegoExecutor, backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
	if len(inputs) != 1 || inputs[0] == nil {
		return def(backend, node, inputs, owned)
	}
	is, os := bufferShape(inputs[0]), nodeShape(node)
	x, ok := bufferFloat32(inputs[0])
	axes, ok2 := nodeData(node).([]int)
	if !ok || !ok2 || os.DType != dtypes.Float32 || len(x) <= 1 || len(axes) != is.Rank() {
		return def(backend, node, inputs, owned)
	}
	dims := make([]int, os.Rank())
	for i := range dims {
		dims[i] = 1
	}
	for i, a := range axes {
		if a < 0 || a >= len(dims) || (i > 0 && a <= axes[i-1]) {
			return def(backend, node, inputs, owned)
		}
		dims[a] = is.Dimensions[i]
	}
	if !broadcastable(dims, os.Dimensions) {
		return def(backend, node, inputs, owned)
	}
	out := simplegoGetBufferForShape(backend, os)
	c, ok := bufferFloat32(out)
	if !ok || len(c) != os.Size() {
		return def(backend, node, inputs, owned)
	}
	broadcastBinary(opAdd, c, os.Dimensions, x, dims, nil, nil)
	return out, nil
}

// execTranspose runs a float32 Transpose; other dtypes go to def.
func execTranspose(def simplegoExecutor, backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
	if len(inputs) != 1 || inputs[0] == nil {
		return def(backend, node, inputs, owned)
	}
	is, os := bufferShape(inputs[0]), nodeShape(node)
	x, ok := bufferFloat32(inputs[0])
	perm, ok2 := nodeData(node).([]int)
	if !ok || !ok2 || os.DType != dtypes.Float32 || len(perm) != is.Rank() || os.Rank() != is.Rank() {
		return def(backend, node, inputs, owned)
	}
	for i, p := range perm {
		if p < 0 || p >= is.Rank() || os.Dimensions[i] != is.Dimensions[p] {
			return def(backend, node, inputs, owned)
		}
	}
	out := simplegoGetBufferForShape(backend, os)
	c, ok := bufferFloat32(out)
	if !ok || len(c) != os.Size() {
		return def(backend, node, inputs, owned)
	}
	permuteInto(c, x, is.Dimensions, perm)
	return out, nil
}

// broadcastable reports whether every axis of dims is 1 or equal to out's.
func broadcastable(dims, out []int) bool {
	for i, d := range dims {
		if d != out[i] && d != 1 {
			return false
		}
	}
	return true
}

// broadcastBinary computes out = lhs op rhs, with lhs and rhs broadcast to out's dimensions (each
// of their axes is out's or 1). With rhs nil it copies lhs broadcast (op is then ignored).
func broadcastBinary(op binaryOp, out []float32, od []int, lhs []float32, ld []int, rhs []float32, rd []int) {
	// Merge axes into runs: drop axes of size 1, merge neighbours that are broadcast alike.
	type axis struct{ dim, ls, rs int }
	var axes []axis
	lStride, rStride := 1, 1
	for a := len(od) - 1; a >= 0; a-- {
		if od[a] == 1 {
			continue
		}
		ls, rs := 0, 0
		if ld[a] != 1 {
			ls = lStride
			lStride *= ld[a]
		}
		if rhs != nil && rd[a] != 1 {
			rs = rStride
			rStride *= rd[a]
		}
		if n := len(axes); n > 0 {
			last := &axes[n-1]
			if (last.ls == 0) == (ls == 0) && (last.rs == 0) == (rs == 0) &&
				(ls == 0 || ls == last.ls*last.dim) && (rs == 0 || rs == last.rs*last.dim) {
				last.dim *= od[a]
				continue
			}
		}
		axes = append(axes, axis{od[a], ls, rs})
	}
	if len(axes) == 0 { // a single element
		axes = append(axes, axis{1, 1, 1})
	}
	inner := axes[0]
	outer := axes[1:] // innermost first
	idx := make([]int, len(outer))
	lo, ro := 0, 0
	for o := 0; o < len(out); o += inner.dim {
		row := out[o : o+inner.dim]
		if rhs == nil {
			if inner.ls == 0 {
				v := lhs[lo]
				for j := range row {
					row[j] = v
				}
			} else {
				copy(row, lhs[lo:lo+inner.dim])
			}
		} else {
			binaryRow(op, row, lhs, lo, inner.ls != 0, rhs, ro, inner.rs != 0)
		}
		for a := range outer {
			idx[a]++
			lo += outer[a].ls
			ro += outer[a].rs
			if idx[a] < outer[a].dim {
				break
			}
			lo -= idx[a] * outer[a].ls
			ro -= idx[a] * outer[a].rs
			idx[a] = 0
		}
	}
}

// binaryRow computes row[j] = l[lo+j or lo] op r[ro+j or ro].
func binaryRow(op binaryOp, row, l []float32, lo int, lv bool, r []float32, ro int, rv bool) {
	n := len(row)
	if vecOps != nil && n >= 8 {
		switch {
		case lv && rv:
			x, y := l[lo:lo+n], r[ro:ro+n]
			vecOps.vv[op](&row[0], &x[0], &y[0], n)
			return
		case lv:
			x := l[lo : lo+n]
			vecOps.vs[op](&row[0], &x[0], r[ro], n)
			return
		case rv:
			y := r[ro : ro+n]
			vecOps.sv[op](&row[0], &y[0], l[lo], n)
			return
		}
	}
	switch {
	case lv && rv:
		x, y := l[lo:lo+n], r[ro:ro+n]
		switch op {
		case opAdd:
			for j := range row {
				row[j] = x[j] + y[j]
			}
		case opSub:
			for j := range row {
				row[j] = x[j] - y[j]
			}
		case opMul:
			for j := range row {
				row[j] = x[j] * y[j]
			}
		case opDiv:
			for j := range row {
				row[j] = x[j] / y[j]
			}
		}
	case lv:
		x, s := l[lo:lo+n], r[ro]
		switch op {
		case opAdd:
			for j := range row {
				row[j] = x[j] + s
			}
		case opSub:
			for j := range row {
				row[j] = x[j] - s
			}
		case opMul:
			for j := range row {
				row[j] = x[j] * s
			}
		case opDiv:
			for j := range row {
				row[j] = x[j] / s
			}
		}
	case rv:
		s, y := l[lo], r[ro:ro+n]
		switch op {
		case opAdd:
			for j := range row {
				row[j] = s + y[j]
			}
		case opSub:
			for j := range row {
				row[j] = s - y[j]
			}
		case opMul:
			for j := range row {
				row[j] = s * y[j]
			}
		case opDiv:
			for j := range row {
				row[j] = s / y[j]
			}
		}
	default:
		var v float32
		switch op {
		case opAdd:
			v = l[lo] + r[ro]
		case opSub:
			v = l[lo] - r[ro]
		case opMul:
			v = l[lo] * r[ro]
		case opDiv:
			v = l[lo] / r[ro]
		}
		for j := range row {
			row[j] = v
		}
	}
}
