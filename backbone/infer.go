package backbone

// A small type and shape inference: element types for most operators, shapes for the operators
// that PEFT subgraphs and transformer blocks are made of. It gives types to tensors that become
// graph outputs (Cut, ExposeOutputs), checks spliced subgraphs against their edges, and checks
// declared value_info against what the nodes produce. Unknown stays unknown: it never guesses.

import (
	"fmt"
	"slices"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
)

// inference holds the types found for a graph's values.
type inference struct {
	ix        *graphIndex
	types     map[string]ValueInfo
	consts    map[string][]int64  // small int64 constants (initializers, Constant nodes)
	values    map[string][]symInt // contents of small integer tensors computed from shapes
	conflicts []error
}

// inferGraph infers the types of every value of g, starting from the declared graph inputs,
// initializers and value_info. Contradictions between declared and inferred types are collected in
// conflicts.
func inferGraph(g *onnxpb.GraphProto) *inference {
	inf := &inference{ix: newIndex(g), types: map[string]ValueInfo{}, consts: map[string][]int64{}, values: map[string][]symInt{}}
	for _, v := range g.GetInput() {
		inf.types[v.GetName()] = valueInfoFromProto(v)
	}
	for _, t := range g.GetInitializer() {
		vi := ValueInfo{Name: t.GetName(), DType: DType(t.GetDataType()), Shape: ShapeOf(t.GetDims()...)}
		if decl, ok := inf.types[t.GetName()]; ok {
			inf.check("graph input", decl, vi)
		}
		inf.types[t.GetName()] = vi
		if vi.DType == DTypeInt64 && numElements(t.GetDims()) <= 64 && !inf.ix.input[t.GetName()] {
			if tt, err := tensorFromProto(t); err == nil {
				inf.consts[t.GetName()] = tt.Int64
			}
		}
	}
	declared := map[string]ValueInfo{}
	for _, v := range g.GetValueInfo() {
		declared[v.GetName()] = valueInfoFromProto(v)
	}
	for _, v := range g.GetOutput() {
		if _, isIn := inf.types[v.GetName()]; !isIn {
			declared[v.GetName()] = valueInfoFromProto(v)
		}
	}
	for _, n := range g.GetNode() {
		outs := inf.node(n)
		for i, o := range n.GetOutput() {
			if o == "" {
				continue
			}
			var vi ValueInfo
			if i < len(outs) {
				vi = outs[i]
			}
			vi.Name = o
			if d, ok := declared[o]; ok {
				inf.check(fmt.Sprintf("output %d of %s node %q", i, n.GetOpType(), n.GetName()), d, vi)
				vi = mergeInfo(d, vi)
			}
			inf.types[o] = vi
		}
		inf.propagate(n)
	}
	return inf
}

// check records a conflict when declared and inferred disagree on something both know.
func (inf *inference) check(what string, declared, inferred ValueInfo) {
	if declared.DType != DTypeUndefined && inferred.DType != DTypeUndefined && declared.DType != inferred.DType {
		inf.conflicts = append(inf.conflicts, fmt.Errorf("%q (%s): declared %v, computed %v", declared.Name, what, declared.DType, inferred.DType))
		return
	}
	if !shapesCompatible(declared.Shape, inferred.Shape) {
		inf.conflicts = append(inf.conflicts, fmt.Errorf("%q (%s): declared shape %v, computed %v", declared.Name, what, declared.Shape, inferred.Shape))
	}
}

// shapesCompatible reports whether two shapes can describe the same tensor.
func shapesCompatible(a, b Shape) bool {
	if a == nil || b == nil {
		return true
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Known() && b[i].Known() && a[i].Size != b[i].Size {
			return false
		}
	}
	return true
}

// mergeInfo combines two compatible descriptions, preferring known facts.
func mergeInfo(a, b ValueInfo) ValueInfo {
	out := a
	if out.DType == DTypeUndefined {
		out.DType = b.DType
	}
	switch {
	case a.Shape == nil:
		out.Shape = b.Shape
	case b.Shape != nil && len(a.Shape) == len(b.Shape):
		out.Shape = slices.Clone(a.Shape)
		for i := range out.Shape {
			if !out.Shape[i].Known() && (b.Shape[i].Known() || out.Shape[i].Param == "") {
				out.Shape[i] = b.Shape[i]
			}
		}
	}
	return out
}

func (inf *inference) in(n *onnxpb.NodeProto, i int) ValueInfo {
	if i >= len(n.GetInput()) || n.GetInput()[i] == "" {
		return ValueInfo{}
	}
	return inf.types[n.GetInput()[i]]
}

// constInts returns the int64 constant fed as input i, if known.
func (inf *inference) constInts(n *onnxpb.NodeProto, i int) ([]int64, bool) {
	if i >= len(n.GetInput()) {
		return nil, false
	}
	if v, ok := inf.consts[n.GetInput()[i]]; ok {
		return v, true
	}
	sv, ok := inf.values[n.GetInput()[i]]
	if !ok {
		return nil, false
	}
	v := make([]int64, len(sv))
	for j, x := range sv {
		if !x.known {
			return nil, false
		}
		v[j] = x.v
	}
	return v, true
}

var (
	unaryOps = set("Identity", "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Neg", "Abs",
		"Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Clip", "LeakyRelu", "Elu", "Selu",
		"HardSigmoid", "HardSwish", "Gelu", "Softplus", "Softsign", "Mish", "Celu", "ThresholdedRelu",
		"Softmax", "LogSoftmax", "Hardmax", "Dropout", "Not", "IsNaN", "IsInf", "Cast", "CastLike",
		"LayerNormalization", "BatchNormalization", "InstanceNormalization", "LRN", "CumSum",
		"Shrink", "Trilu", "MeanVarianceNormalization", "LpNormalization")
	broadcastOps = set("Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "LessOrEqual",
		"GreaterOrEqual", "And", "Or", "Xor", "Max", "Min", "Mod", "PRelu", "Sum", "Mean", "BitShift",
		"Where")
	boolOps = set("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor",
		"Not", "IsNaN", "IsInf")
	int64Ops    = set("Shape", "Size", "NonZero", "ArgMax", "ArgMin")
	sameTypeOps = set("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "PRelu", "Sum", "Mean",
		"BitShift", "MatMul", "Gemm", "Transpose", "Concat", "Reshape", "Unsqueeze", "Squeeze",
		"Flatten", "Gather", "GatherElements", "GatherND", "Slice", "Split", "Expand", "Tile", "Pad",
		"Conv", "ConvTranspose", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
		"GlobalLpPool", "MaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
		"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Resize",
		"Upsample", "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "Scatter",
		"Einsum", "Range", "TopK", "Compress", "ReverseSequence", "Einsum", "MaxRoiPool", "RoiAlign",
		"GridSample", "Col2Im", "CenterCropPad", "DFT", "Det", "Unique")
)

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// node infers the types of n's outputs (shorter than n's outputs where unknown).
func (inf *inference) node(n *onnxpb.NodeProto) []ValueInfo {
	if d := n.GetDomain(); d != "" && d != "ai.onnx" {
		return nil
	}
	op := n.GetOpType()
	x := inf.in(n, 0)
	out := ValueInfo{}
	switch {
	case boolOps[op]:
		out.DType = DTypeBool
	case int64Ops[op]:
		out.DType = DTypeInt64
	case op == "Cast":
		out.DType = DType(attrInt(n, "to", 0))
	case op == "CastLike" || op == "Where":
		out.DType = inf.in(n, 1).DType
	case op == "Constant":
		return []ValueInfo{inf.constant(n)}
	case op == "ConstantOfShape":
		out.DType = DTypeFloat32
		if a := attr(n, "value"); a != nil && a.GetT() != nil {
			out.DType = DType(a.GetT().GetDataType())
		}
		if v, ok := inf.symValues(n, 0); ok {
			out.Shape = symShape(v)
		}
		return []ValueInfo{out}
	case op == "QuantizeLinear":
		out.DType = DTypeUint8
		if zp := inf.in(n, 2); zp.DType != DTypeUndefined {
			out.DType = zp.DType
		}
	case op == "DequantizeLinear":
		out.DType = inf.in(n, 1).DType
	case unaryOps[op] || sameTypeOps[op]:
		out.DType = x.DType
	default:
		return nil
	}
	out.Shape = inf.shape(n)
	switch op {
	case "TopK":
		return []ValueInfo{out, {DType: DTypeInt64, Shape: out.Shape}}
	case "MaxPool":
		return []ValueInfo{out, {DType: DTypeInt64, Shape: out.Shape}}
	case "Dropout":
		return []ValueInfo{out, {DType: DTypeBool, Shape: out.Shape}}
	case "Split":
		outs := make([]ValueInfo, len(n.GetOutput()))
		for i := range outs {
			outs[i] = ValueInfo{DType: x.DType}
		}
		return outs
	case "LayerNormalization", "BatchNormalization":
		return []ValueInfo{out}
	}
	return []ValueInfo{out}
}

func (inf *inference) constant(n *onnxpb.NodeProto) ValueInfo {
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			t := a.GetT()
			if DType(t.GetDataType()) == DTypeInt64 && numElements(t.GetDims()) <= 64 && len(n.GetOutput()) == 1 {
				if tt, err := tensorFromProto(t); err == nil {
					inf.consts[n.GetOutput()[0]] = tt.Int64
				}
			}
			return ValueInfo{DType: DType(t.GetDataType()), Shape: ShapeOf(t.GetDims()...)}
		case "value_float":
			return ValueInfo{DType: DTypeFloat32, Shape: Shape{}}
		case "value_floats":
			return ValueInfo{DType: DTypeFloat32, Shape: ShapeOf(int64(len(a.GetFloats())))}
		case "value_int":
			inf.consts[n.GetOutput()[0]] = []int64{a.GetI()}
			return ValueInfo{DType: DTypeInt64, Shape: Shape{}}
		case "value_ints":
			inf.consts[n.GetOutput()[0]] = a.GetInts()
			return ValueInfo{DType: DTypeInt64, Shape: ShapeOf(int64(len(a.GetInts())))}
		}
	}
	return ValueInfo{}
}

// shape infers the shape of n's first output; nil when unknown.
func (inf *inference) shape(n *onnxpb.NodeProto) Shape {
	op := n.GetOpType()
	x := inf.in(n, 0).Shape
	switch {
	case unaryOps[op]:
		return x
	case broadcastOps[op]:
		shapes := make([]Shape, 0, len(n.GetInput()))
		for i := range n.GetInput() {
			shapes = append(shapes, inf.in(n, i).Shape)
		}
		out, ok := broadcast(shapes...)
		if !ok {
			inf.conflicts = append(inf.conflicts, fmt.Errorf("%s node %q: shapes %v do not broadcast", op, n.GetName(), shapes))
		}
		return out
	}
	if x == nil && op != "Constant" {
		return nil
	}
	r := len(x)
	switch op {
	case "MatMul":
		out, ok := matmulShape(x, inf.in(n, 1).Shape)
		if !ok {
			inf.conflicts = append(inf.conflicts, fmt.Errorf("MatMul node %q: shapes %v and %v do not multiply", n.GetName(), x, inf.in(n, 1).Shape))
		}
		return out
	case "Gemm":
		b := inf.in(n, 1).Shape
		if r != 2 || len(b) != 2 {
			return nil
		}
		m, k := x[0], x[1]
		if attrInt(n, "transA", 0) != 0 {
			m = x[1]
		}
		kb, nn := b[0], b[1]
		if attrInt(n, "transB", 0) != 0 {
			kb, nn = b[1], b[0]
		}
		if attrInt(n, "transA", 0) != 0 {
			k = x[0]
		}
		if k.Known() && kb.Known() && k.Size != kb.Size {
			inf.conflicts = append(inf.conflicts, fmt.Errorf("Gemm node %q: shapes %v and %v do not multiply", n.GetName(), x, b))
		}
		return Shape{m, nn}
	case "Transpose":
		perm := attr(n, "perm").GetInts()
		if perm == nil {
			for i := r - 1; i >= 0; i-- {
				perm = append(perm, int64(i))
			}
		}
		if len(perm) != r {
			return nil
		}
		out := make(Shape, r)
		for i, p := range perm {
			if p < 0 || int(p) >= r {
				return nil
			}
			out[i] = x[p]
		}
		return out
	case "Concat":
		axis, ok := normAxis(attrInt(n, "axis", 0), r)
		if !ok {
			return nil
		}
		out := slices.Clone(x)
		for i := 1; i < len(n.GetInput()); i++ {
			s := inf.in(n, i).Shape
			if len(s) != r {
				return nil
			}
			if out[axis].Known() && s[axis].Known() {
				out[axis].Size += s[axis].Size
			} else {
				out[axis] = Dim{Size: -1}
			}
		}
		return out
	case "Reshape":
		target, ok := inf.symValues(n, 1)
		if !ok && len(n.GetInput()) < 2 && attr(n, "shape") != nil {
			target, ok = symInts(attr(n, "shape").GetInts()), true
		}
		if !ok {
			return nil
		}
		return reshapeShape(x, target, attrInt(n, "allowzero", 0) != 0)
	case "Expand":
		target, ok := inf.symValues(n, 1)
		if !ok {
			return nil
		}
		out, _ := broadcast(x, symShape(target))
		return out
	case "Unsqueeze", "Squeeze":
		axes, ok := inf.constInts(n, 1)
		if !ok {
			if a := attr(n, "axes"); a != nil {
				axes, ok = a.GetInts(), true
			}
		}
		if op == "Unsqueeze" {
			if !ok {
				return nil
			}
			return unsqueezeShape(x, axes)
		}
		return squeezeShape(x, axes, ok)
	case "Flatten":
		axis, ok := normAxis(attrInt(n, "axis", 1), r+1)
		if !ok {
			return nil
		}
		return Shape{prodDims(x[:axis]), prodDims(x[axis:])}
	case "Shape":
		start, end := attrInt(n, "start", 0), attrInt(n, "end", int64(r))
		start, end = clampAxis(start, r), clampAxis(end, r)
		return ShapeOf(max(end-start, 0))
	case "Size":
		return Shape{}
	case "Slice":
		return inf.sliceShape(n, x)
	case "Pad":
		pads, ok := inf.constInts(n, 1)
		if len(n.GetInput()) < 2 {
			pads, ok = attr(n, "pads").GetInts(), attr(n, "pads") != nil
		}
		if !ok || len(n.GetInput()) > 3 && n.GetInput()[3] != "" || len(pads) != 2*r {
			return nil
		}
		out := slices.Clone(x)
		for i := range out {
			if out[i].Known() {
				out[i] = Dim{Size: out[i].Size + pads[i] + pads[i+r]}
			} else if pads[i]+pads[i+r] != 0 {
				out[i] = Dim{Size: -1}
			}
		}
		return out
	case "Conv":
		w := inf.in(n, 1).Shape
		if len(w) != r || r < 3 {
			return nil
		}
		kernel := make([]int64, r-2)
		for i := range kernel {
			kernel[i] = w[i+2].Size
		}
		if k := attr(n, "kernel_shape").GetInts(); len(k) == r-2 {
			kernel = k
		}
		return windowShape(n, x, w[0], kernel, false)
	case "MaxPool", "AveragePool", "LpPool":
		return windowShape(n, x, x[1], attr(n, "kernel_shape").GetInts(), attrInt(n, "ceil_mode", 0) != 0)
	case "Gather":
		idx := inf.in(n, 1).Shape
		axis, ok := normAxis(attrInt(n, "axis", 0), r)
		if !ok || idx == nil {
			return nil
		}
		out := slices.Clone(x[:axis])
		out = append(out, idx...)
		return append(out, x[axis+1:]...)
	case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
		"ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare":
		axes := attr(n, "axes").GetInts()
		if len(n.GetInput()) > 1 {
			var ok bool
			if axes, ok = inf.constInts(n, 1); !ok {
				return nil
			}
		}
		keep := attrInt(n, "keepdims", 1) != 0
		if len(axes) == 0 {
			if attrInt(n, "noop_with_empty_axes", 0) != 0 {
				return x
			}
			for i := range r {
				axes = append(axes, int64(i))
			}
		}
		red := map[int]bool{}
		for _, a := range axes {
			ax, ok := normAxis(a, r)
			if !ok {
				return nil
			}
			red[ax] = true
		}
		out := Shape{}
		for i, d := range x {
			switch {
			case !red[i]:
				out = append(out, d)
			case keep:
				out = append(out, Dim{Size: 1})
			}
		}
		return out
	case "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool":
		if r < 2 {
			return nil
		}
		out := slices.Clone(x[:2])
		for range r - 2 {
			out = append(out, Dim{Size: 1})
		}
		return out
	}
	return nil
}

func normAxis(a int64, r int) (int, bool) {
	if a < 0 {
		a += int64(r)
	}
	return int(a), a >= 0 && a < int64(r)
}

func clampAxis(a int64, r int) int64 {
	if a < 0 {
		a += int64(r)
	}
	return min(max(a, 0), int64(r))
}

func prodDims(ds []Dim) Dim {
	p := int64(1)
	for _, d := range ds {
		if !d.Known() {
			return Dim{Size: -1}
		}
		p *= d.Size
	}
	return Dim{Size: p}
}

// broadcast applies numpy-style multidirectional broadcasting. ok is false when two known
// dimensions clash.
func broadcast(shapes ...Shape) (out Shape, ok bool) {
	r := 0
	for _, s := range shapes {
		if s == nil {
			return nil, true
		}
		r = max(r, len(s))
	}
	out = make(Shape, r)
	for i := range out {
		d := Dim{Size: 1}
		for _, s := range shapes {
			j := i - (r - len(s))
			if j < 0 {
				continue
			}
			e := s[j]
			switch {
			case e.Known() && e.Size == 1:
			case d.Known() && d.Size == 1:
				d = e
			case e.Known() && d.Known():
				if e.Size != d.Size {
					return nil, false
				}
			case !e.Known() && !d.Known() && e.Param != "" && e.Param == d.Param:
			case e.Known():
				d = e
			case !d.Known():
				d = Dim{Size: -1}
			}
		}
		out[i] = d
	}
	return out, true
}

// matmulShape returns the shape of a·b; ok is false when known inner dimensions differ.
func matmulShape(a, b Shape) (Shape, bool) {
	if a == nil || b == nil || len(a) == 0 || len(b) == 0 {
		return nil, true
	}
	a1, b1 := len(a) == 1, len(b) == 1
	if a1 {
		a = Shape{{Size: 1}, a[0]}
	}
	if b1 {
		b = Shape{b[0], {Size: 1}}
	}
	if k, kb := a[len(a)-1], b[len(b)-2]; k.Known() && kb.Known() && k.Size != kb.Size {
		return nil, false
	}
	batch, ok := broadcast(a[:len(a)-2], b[:len(b)-2])
	if !ok {
		return nil, false
	}
	out := append(batch, a[len(a)-2], b[len(b)-1])
	if a1 {
		out = append(out[:len(out)-2], out[len(out)-1])
	}
	if b1 {
		out = out[:len(out)-1]
	}
	return out, true
}

func reshapeShape(x Shape, target []symInt, allowZero bool) Shape {
	out := make(Shape, len(target))
	infer := -1
	for i, t := range target {
		switch {
		case !t.known:
			out[i] = Dim{Size: -1, Param: t.param}
		case t.v == 0 && !allowZero:
			if i >= len(x) {
				return nil
			}
			out[i] = x[i]
		case t.v == -1:
			if infer >= 0 {
				return nil
			}
			infer = i
			out[i] = Dim{Size: -1}
		case t.v < 0:
			return nil
		default:
			out[i] = Dim{Size: t.v}
		}
	}
	if infer >= 0 {
		out[infer] = inferredDim(x, append(slices.Clone(out[:infer]), out[infer+1:]...))
	}
	return out
}

// inferredDim is the size of Reshape's -1 dimension: the input's element count over the other
// output dimensions', where symbolic dimensions ("batch") cancel out by name.
func inferredDim(in, rest Shape) Dim {
	pin, pout := int64(1), int64(1)
	var left []Dim // the input's dimensions that are not fixed and not cancelled
	for _, d := range in {
		if d.Known() {
			pin *= d.Size
		} else {
			left = append(left, d)
		}
	}
	for _, d := range rest {
		if d.Known() {
			pout *= d.Size
			continue
		}
		i := slices.IndexFunc(left, func(e Dim) bool { return e.Param != "" && e.Param == d.Param })
		if i < 0 {
			return Dim{Size: -1}
		}
		left = slices.Delete(left, i, i+1)
	}
	switch {
	case pout <= 0 || pin%pout != 0:
		return Dim{Size: -1}
	case len(left) == 0:
		return Dim{Size: pin / pout}
	case len(left) == 1 && pin == pout:
		return left[0]
	}
	return Dim{Size: -1}
}

func unsqueezeShape(x Shape, axes []int64) Shape {
	r := len(x) + len(axes)
	ins := map[int]bool{}
	for _, a := range axes {
		ax, ok := normAxis(a, r)
		if !ok {
			return nil
		}
		ins[ax] = true
	}
	out := make(Shape, 0, r)
	j := 0
	for i := range r {
		if ins[i] {
			out = append(out, Dim{Size: 1})
		} else if j < len(x) {
			out = append(out, x[j])
			j++
		}
	}
	return out
}

func squeezeShape(x Shape, axes []int64, given bool) Shape {
	rm := map[int]bool{}
	if given {
		for _, a := range axes {
			ax, ok := normAxis(a, len(x))
			if !ok {
				return nil
			}
			rm[ax] = true
		}
	} else {
		for i, d := range x {
			if !d.Known() {
				return nil
			}
			if d.Size == 1 {
				rm[i] = true
			}
		}
	}
	out := Shape{}
	for i, d := range x {
		if !rm[i] {
			out = append(out, d)
		}
	}
	return out
}

// symInt is one element of a small integer tensor computed from shapes (a Reshape target):
// a known value, a symbolic dimension such as "batch", or unknown.
type symInt struct {
	known bool
	v     int64
	param string
}

func symInts(v []int64) []symInt {
	out := make([]symInt, len(v))
	for i, x := range v {
		out[i] = symInt{known: true, v: x}
	}
	return out
}

// symShape reads a shape tensor's contents as a Shape.
func symShape(v []symInt) Shape {
	out := make(Shape, len(v))
	for i, x := range v {
		out[i] = Dim{Size: -1, Param: x.param}
		if x.known && x.v >= 0 {
			out[i] = Dim{Size: x.v}
		}
	}
	return out
}

// symValues returns the contents of input i when they are known element by element (possibly
// symbolically).
func (inf *inference) symValues(n *onnxpb.NodeProto, i int) ([]symInt, bool) {
	if i >= len(n.GetInput()) || n.GetInput()[i] == "" {
		return nil, false
	}
	name := n.GetInput()[i]
	if v, ok := inf.consts[name]; ok {
		return symInts(v), true
	}
	v, ok := inf.values[name]
	return v, ok
}

// maxValues bounds the tensors whose contents propagate tracks.
const maxValues = 64

// propagate tracks the contents of small integer tensors through the Shape, Gather, Concat,
// Unsqueeze, arithmetic and Where chains exporters use to compute Reshape and Expand targets, so
// that shapes downstream of them stay known (symbolic dimensions included).
func (inf *inference) propagate(n *onnxpb.NodeProto) {
	if len(n.GetOutput()) == 0 || n.GetOutput()[0] == "" || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") {
		return
	}
	out := n.GetOutput()[0]
	in := func(i int) ([]symInt, bool) { return inf.symValues(n, i) }
	var res []symInt
	switch n.GetOpType() {
	case "Constant":
		if v, ok := inf.consts[out]; ok {
			res = symInts(v)
		}
	case "Shape":
		s := inf.in(n, 0).Shape
		if s == nil {
			return
		}
		r := len(s)
		start, end := clampAxis(attrInt(n, "start", 0), r), clampAxis(attrInt(n, "end", int64(r)), r)
		for _, d := range s[start:max(start, end)] {
			res = append(res, symInt{known: d.Known(), v: d.Size, param: d.Param})
		}
	case "Identity", "Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten":
		v, ok := in(0)
		if !ok {
			return
		}
		res = v
	case "Gather":
		v, ok := in(0)
		idx, iok := inf.constInts(n, 1)
		if !ok || !iok || len(inf.in(n, 0).Shape) != 1 {
			return
		}
		for _, i := range idx {
			if i < 0 {
				i += int64(len(v))
			}
			if i < 0 || i >= int64(len(v)) {
				return
			}
			res = append(res, v[i])
		}
	case "Concat":
		for i := range n.GetInput() {
			v, ok := in(i)
			if !ok {
				return
			}
			res = append(res, v...)
		}
	case "Slice":
		v, ok := in(0)
		starts, sok := inf.constInts(n, 1)
		ends, eok := inf.constInts(n, 2)
		if len(n.GetInput()) < 3 {
			starts, sok = attr(n, "starts").GetInts(), attr(n, "starts") != nil
			ends, eok = attr(n, "ends").GetInts(), attr(n, "ends") != nil
		}
		if !ok || !sok || !eok || len(starts) != 1 || len(ends) != 1 || len(n.GetInput()) > 4 {
			return
		}
		r := len(v)
		b, e := clampAxis(starts[0], r), clampAxis(ends[0], r)
		res = append(res, v[b:max(b, e)]...)
	case "Add", "Sub", "Mul", "Div", "Equal":
		a, aok := in(0)
		b, bok := in(1)
		if !aok || !bok || (len(a) != len(b) && len(a) != 1 && len(b) != 1) {
			return
		}
		for i := range max(len(a), len(b)) {
			res = append(res, symArith(n.GetOpType(), a[min(i, len(a)-1)], b[min(i, len(b)-1)]))
		}
	case "Where":
		c, cok := in(0)
		x, xok := in(1)
		y, yok := in(2)
		if !cok || !xok || !yok {
			return
		}
		k := max(len(c), len(x), len(y))
		for _, l := range []int{len(c), len(x), len(y)} {
			if l != k && l != 1 {
				return
			}
		}
		for i := range k {
			ci, xi, yi := c[min(i, len(c)-1)], x[min(i, len(x)-1)], y[min(i, len(y)-1)]
			switch {
			case ci.known && ci.v != 0:
				res = append(res, xi)
			case ci.known:
				res = append(res, yi)
			case xi == yi:
				res = append(res, xi)
			default:
				res = append(res, symInt{})
			}
		}
	case "ConstantOfShape":
		shape, ok := in(0)
		if !ok || len(shape) > 1 {
			return
		}
		t := attr(n, "value").GetT()
		fill := int64(0)
		if t != nil {
			tt, err := tensorFromProto(t)
			if err != nil || len(tt.Int64) != 1 {
				return
			}
			fill = tt.Int64[0]
		}
		count := int64(1)
		if len(shape) == 1 {
			if !shape[0].known {
				return
			}
			count = shape[0].v
		}
		if count > maxValues {
			return
		}
		for range count {
			res = append(res, symInt{known: true, v: fill})
		}
	default:
		return
	}
	if len(res) <= maxValues {
		inf.values[out] = res
	}
}

// symArith applies an integer operation to two shape elements. A symbolic dimension is never
// negative, so it differs from any negative constant.
func symArith(op string, a, b symInt) symInt {
	if !a.known || !b.known {
		switch {
		case op == "Equal" && (a.known && a.v < 0 || b.known && b.v < 0):
			return symInt{known: true, v: 0}
		case op == "Equal" && a.param != "" && a.param == b.param:
			return symInt{known: true, v: 1}
		case (op == "Mul" || op == "Div") && b.known && b.v == 1:
			return a
		case op == "Mul" && a.known && a.v == 1:
			return b
		}
		return symInt{}
	}
	switch op {
	case "Add":
		return symInt{known: true, v: a.v + b.v}
	case "Sub":
		return symInt{known: true, v: a.v - b.v}
	case "Mul":
		return symInt{known: true, v: a.v * b.v}
	case "Div":
		if b.v == 0 {
			return symInt{}
		}
		return symInt{known: true, v: a.v / b.v}
	case "Equal":
		if a.v == b.v {
			return symInt{known: true, v: 1}
		}
		return symInt{known: true, v: 0}
	}
	return symInt{}
}

// sliceShape infers Slice's output shape from constant starts, ends, axes and steps (inputs from
// opset 10, attributes before).
func (inf *inference) sliceShape(n *onnxpb.NodeProto, x Shape) Shape {
	r := len(x)
	var starts, ends, axes, steps []int64
	ok := true
	if len(n.GetInput()) >= 3 {
		var ok1, ok2 bool
		starts, ok1 = inf.constInts(n, 1)
		ends, ok2 = inf.constInts(n, 2)
		ok = ok1 && ok2
		if len(n.GetInput()) > 3 && n.GetInput()[3] != "" {
			var ok3 bool
			axes, ok3 = inf.constInts(n, 3)
			ok = ok && ok3
		}
		if len(n.GetInput()) > 4 && n.GetInput()[4] != "" {
			var ok4 bool
			steps, ok4 = inf.constInts(n, 4)
			ok = ok && ok4
		}
	} else {
		starts, ends, axes = attr(n, "starts").GetInts(), attr(n, "ends").GetInts(), attr(n, "axes").GetInts()
	}
	if !ok || len(starts) != len(ends) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
		return nil
	}
	out := slices.Clone(x)
	for i := range starts {
		axis := i
		if axes != nil {
			a, ok := normAxis(axes[i], r)
			if !ok {
				return nil
			}
			axis = a
		}
		step := int64(1)
		if steps != nil {
			step = steps[i]
		}
		d := x[axis]
		if !d.Known() || step == 0 {
			out[axis] = Dim{Size: -1}
			continue
		}
		out[axis] = Dim{Size: sliceLen(d.Size, starts[i], ends[i], step)}
	}
	return out
}

// sliceLen is the length of range(start, end, step) over a dimension of size n, with ONNX's
// clamping of negative and out-of-range bounds.
func sliceLen(n, start, end, step int64) int64 {
	clamp := func(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	if step > 0 {
		start, end = clamp(start, 0, n), clamp(end, 0, n)
		if end <= start {
			return 0
		}
		return (end - start + step - 1) / step
	}
	start, end = clamp(start, -1, n-1), clamp(end, -1, n-1)
	if start <= end {
		return 0
	}
	return (start - end - step - 1) / -step
}

// windowShape is the output shape of a convolution or pooling over x [N, C, spatial...] with
// the given output channels and kernel, from the strides, pads, dilations and auto_pad attributes.
func windowShape(n *onnxpb.NodeProto, x Shape, channels Dim, kernel []int64, ceil bool) Shape {
	r := len(x)
	sp := r - 2
	if sp < 1 || len(kernel) != sp {
		return nil
	}
	strides, dil, pads := attr(n, "strides").GetInts(), attr(n, "dilations").GetInts(), attr(n, "pads").GetInts()
	autoPad := string(attr(n, "auto_pad").GetS())
	out := Shape{x[0], channels}
	for i := range sp {
		in, k := x[i+2], kernel[i]
		stride, d := int64(1), int64(1)
		if len(strides) == sp {
			stride = strides[i]
		}
		if len(dil) == sp {
			d = dil[i]
		}
		if !in.Known() || k < 0 || stride <= 0 {
			out = append(out, Dim{Size: -1})
			continue
		}
		switch autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			out = append(out, Dim{Size: (in.Size + stride - 1) / stride})
			continue
		case "", "NOTSET", "VALID":
		default:
			return nil
		}
		var pad int64
		if len(pads) == 2*sp && autoPad != "VALID" {
			pad = pads[i] + pads[i+sp]
		}
		span := in.Size + pad - d*(k-1) - 1
		if span < 0 {
			return nil
		}
		size := span/stride + 1
		if ceil && span%stride != 0 {
			size++
		}
		out = append(out, Dim{Size: size})
	}
	return out
}
