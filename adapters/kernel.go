package adapters

import (
	"fmt"
	"reflect"
	"slices"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// This file installs the package's float32 kernels into simplego as op executors: matmul.go's
// for DotGeneral here, kernel_elementwise.go's for Add, Sub, Mul, Div (broadcasting), ReduceSum,
// BroadcastInDim, Transpose, Exp and Erf. Together they make a LoRA training step on the ViT
// about 7x faster than simplego's own executors (scripts/bench/stage_vs_torch.sh).
//
// simplego v0.26.0 looks executors up at run time in its unexported table nodeExecutors (one per
// op type, filled by its init functions through setNodeExecutor, whose priorities include one for
// "custom user overrides" that is never exported). The table is reached with go:linkname, which
// the Go toolchain allows for packages outside the standard library. The executors need a few
// unexported things, read here without writing any simplego state but the output buffers they
// return:
//   - a buffer's shape and flat slice (Buffer.shape, Buffer.flat) and a node's shape and data
//     (Node.shape, Node.data), found by reflection on the types' fields once, type-checked, and
//     read through their offsets;
//   - the DotGeneral node's axes (Node.data, a *dotGeneralNodeData), read by reflection as
//     grad.go reads graph nodes, and checked against the operands' shapes;
//   - output buffers from simplego's pool ((*Backend).getBufferForShape), by go:linkname.
//
// Anything unexpected (another dtype, a layout this file does not recognise) falls back to
// simplego's own executor, per call or, when the types themselves differ from what this file
// expects, for good; TestMatmulKernelInstalled fails loudly in that case. The two go:linkname
// declarations cannot be checked that way (the linker matches names, not types): they are written
// against gomlx v0.26.0, and TestSimplegoVersion fails when go.mod moves to another version so
// that they are re-read against it first.

// simplegoExecutor is simplego's nodeExecutor function type.
type simplegoExecutor = func(*simplego.Backend, *simplego.Node, []*simplego.Buffer, []bool) (*simplego.Buffer, error)

//go:linkname simplegoNodeExecutors github.com/gomlx/gomlx/backends/simplego.nodeExecutors
var simplegoNodeExecutors [backends.OpTypeLast]simplegoExecutor

//go:linkname simplegoGetBufferForShape github.com/gomlx/gomlx/backends/simplego.(*Backend).getBufferForShape
func simplegoGetBufferForShape(b *simplego.Backend, shape shapes.Shape) *simplego.Buffer

var (
	// defaultDotGeneralExec is simplego's own DotGeneral executor.
	defaultDotGeneralExec simplegoExecutor
	// kernelInstalled reports whether init installed execDotGeneral; kernelProblem says why not.
	kernelInstalled bool
	kernelProblem   string
	// Offsets of Buffer.shape, Buffer.flat, Node.shape and Node.data.
	bufShapeOff, bufFlatOff, nodeShapeOff, nodeDataOff uintptr
)

func init() {
	defaultDotGeneralExec = simplegoNodeExecutors[backends.OpTypeDotGeneral]
	if err := checkLayouts(); err != nil {
		kernelProblem = err.Error()
		return
	}
	if defaultDotGeneralExec == nil {
		kernelProblem = "simplego registers no DotGeneral executor"
		return
	}
	simplegoNodeExecutors[backends.OpTypeDotGeneral] = execDotGeneral
	installElementwise()
	kernelInstalled = true
}

// checkLayouts finds the unexported fields the executor reads and checks their types.
func checkLayouts() error {
	field := func(t reflect.Type, name string, want reflect.Type) (uintptr, error) {
		f, ok := t.FieldByName(name)
		if !ok || f.Type != want {
			return 0, fmt.Errorf("simplego.%s has no field %s of type %s", t.Name(), name, want)
		}
		return f.Offset, nil
	}
	buf, node := reflect.TypeFor[simplego.Buffer](), reflect.TypeFor[simplego.Node]()
	anyType := reflect.TypeFor[any]()
	var err error
	if bufShapeOff, err = field(buf, "shape", reflect.TypeFor[shapes.Shape]()); err != nil {
		return err
	}
	if bufFlatOff, err = field(buf, "flat", anyType); err != nil {
		return err
	}
	if nodeShapeOff, err = field(node, "shape", reflect.TypeFor[shapes.Shape]()); err != nil {
		return err
	}
	if nodeDataOff, err = field(node, "data", anyType); err != nil {
		return err
	}
	return nil
}

// bufferShape returns a simplego buffer's shape.
func bufferShape(b *simplego.Buffer) shapes.Shape {
	return *(*shapes.Shape)(ptrAdd(b, bufShapeOff))
}

// bufferFloat32 returns a simplego buffer's data when it is float32 (and the buffer not nil:
// simplego's pool returns nil once the backend is finalized).
func bufferFloat32(b *simplego.Buffer) ([]float32, bool) {
	if b == nil {
		return nil, false
	}
	f, ok := (*(*any)(ptrAdd(b, bufFlatOff))).([]float32)
	return f, ok
}

// ptrAdd returns the address of the field at offset off of the struct p points to.
func ptrAdd[T any](p *T, off uintptr) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(p), off)
}

// execDotGeneral is the DotGeneral executor: matmul.go's kernel for float32, simplego's otherwise.
func execDotGeneral(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, owned []bool) (*simplego.Buffer, error) {
	if len(inputs) != 2 || inputs[0] == nil || inputs[1] == nil {
		return defaultDotGeneralExec(backend, node, inputs, owned)
	}
	lhsShape, rhsShape := bufferShape(inputs[0]), bufferShape(inputs[1])
	lhs, ok1 := bufferFloat32(inputs[0])
	rhs, ok2 := bufferFloat32(inputs[1])
	if !ok1 || !ok2 || lhsShape.DType != dtypes.Float32 || rhsShape.DType != dtypes.Float32 {
		return defaultDotGeneralExec(backend, node, inputs, owned)
	}
	ax, ok := nodeDotAxes(node, lhsShape, rhsShape)
	if !ok {
		return defaultDotGeneralExec(backend, node, inputs, owned)
	}
	nb := prodDims(lhsShape.Dimensions, ax.lhsBatch)
	m := prodDims(lhsShape.Dimensions, crossAxes(lhsShape.Rank(), ax.lhsContracting, ax.lhsBatch))
	n := prodDims(rhsShape.Dimensions, crossAxes(rhsShape.Rank(), ax.rhsContracting, ax.rhsBatch))
	out := simplegoGetBufferForShape(backend, shapes.Make(dtypes.Float32, nb, m, n))
	if out == nil {
		return nil, fmt.Errorf("DotGeneral: %w: backend finalized", ErrEngine)
	}
	c, ok := bufferFloat32(out)
	if !ok || len(c) != nb*m*n {
		return nil, fmt.Errorf("DotGeneral: %w: simplego returned an output buffer of another type or size", ErrEngine)
	}
	dotGeneral(lhs, lhsShape.Dimensions, ax.lhsContracting, ax.lhsBatch,
		rhs, rhsShape.Dimensions, ax.rhsContracting, ax.rhsBatch, c)
	return out, nil
}

// nodeDotAxes reads a simplego DotGeneral node's axes (its data, a *dotGeneralNodeData) and checks
// them against the operands' shapes.
func nodeDotAxes(node *simplego.Node, lhs, rhs shapes.Shape) (dotAxes, bool) {
	ax, ok := readDotAxes(reflect.ValueOf(nodeData(node)), lhs, rhs)
	if !ok || slices.Contains(lhs.Dimensions, 0) || slices.Contains(rhs.Dimensions, 0) {
		return dotAxes{}, false
	}
	return ax, true
}
