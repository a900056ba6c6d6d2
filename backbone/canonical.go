package backbone

// Canonicalization turns a raw framework export into the plain graph that the training import
// (onnx-gomlx) runs correctly and that PEFT plugins can target: packed q/k/v weights become three
// named weights with three projections, shape arithmetic (Shape/Gather/Concat chains) and every
// other computation that depends only on stored tensors is evaluated once by ONNX Runtime and
// stored as initializers, and the batch dimension can be fixed.
//
// The pass runs in five steps, each producing a validated model:
//
//  1. pin the batch dimension (PinBatch), so that shape arithmetic becomes constant;
//  2. unpack packed weights named by the manifest (Unpack: "<param>.query", ...);
//  3. fold the constant values that do not involve a parameter tensor: shape arithmetic, Constant
//     nodes, slice bounds. Values read from partly known shapes (Gather(Shape(x), 2) when dim 2 is
//     fixed but the batch is not) are taken from shape inference; Reshape targets left with one
//     unknown element (the batch) become constants with -1 there;
//  4. split packed projections: the Slices of MatMul(X, Wᵀ)+b whose bounds line up with the
//     unpacked parts become one MatMul+Add per part;
//  5. fold everything constant that is left (Transpose(weight), ...), naming a folded weight
//     after the parameter it was computed from when that parameter has no other reader.
//
// Folding before splitting keeps the packed weight's Concat and Transpose intact for step 4,
// which needs them to see where each part lies; folding after splitting then stores each part
// pre-transposed under its own name. Finally the canonical model and the original run through
// ONNX Runtime on the same input and must agree.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"github.com/s3t-dev/s3t/backbone/ort"
	"google.golang.org/protobuf/proto"
)

// CanonicalTolerance is the largest difference Canonicalize accepts between an output of the
// canonical model and the same output of the original, relative to max(1, max |original|).
const CanonicalTolerance = 1e-5

// verifyBatch is the batch size of the verification input when the batch is not pinned.
const verifyBatch = 2

// verifySeed seeds the verification input, so that a failure can be reproduced.
const verifySeed = 20240917

// maxFoldGrowth bounds how much one folded value may grow the model: a value larger than this
// and larger than the stored tensors it is computed from (a ConstantOfShape mask at a pinned
// batch, an Expand) is left computed.
const maxFoldGrowth = 1 << 20

// CanonicalOption configures Canonicalize.
type CanonicalOption func(*canonicalConfig)

type canonicalConfig struct {
	batch    int64
	manifest *Manifest
	verify   bool
	inputs   []Tensor
	report   *CanonicalReport
	errs     []error
}

// PinBatch fixes the batch dimension to n: the first dimension of every fed input, where it is
// symbolic, becomes n, and so does every dimension with the same symbolic name elsewhere (the
// outputs' batch). Shape arithmetic then folds completely. Default: the batch stays symbolic,
// and only what does not depend on it is folded. n must be at least 1; a model that fixes its
// batch to another size fails with ErrInvalidOption.
func PinBatch(n int64) CanonicalOption {
	return func(c *canonicalConfig) {
		if n < 1 {
			c.errs = append(c.errs, fmt.Errorf("%w: PinBatch(%d): the batch must be at least 1", ErrInvalidOption, n))
		}
		c.batch = n
	}
}

// WithManifest gives the manifest whose packed weight edges (edges with a Slice) are unpacked,
// typically a hand-written one (it is resolved against the model first, see ResolveManifest).
// Default: the manifest DetectManifest finds; when it finds none, nothing is unpacked.
func WithManifest(man *Manifest) CanonicalOption {
	return func(c *canonicalConfig) {
		if man == nil {
			c.errs = append(c.errs, fmt.Errorf("%w: WithManifest(nil)", ErrInvalidOption))
		}
		c.manifest = man
	}
}

// WithVerify turns the final check on or off. Default on: the original and the canonical model
// run through ONNX Runtime on the same input (see WithVerifyInputs) and every output must agree
// within CanonicalTolerance, else Canonicalize fails with ErrMismatch.
func WithVerify(on bool) CanonicalOption {
	return func(c *canonicalConfig) { c.verify = on }
}

// WithVerifyInputs feeds the given tensors (by Tensor.Name, one per model input) to the check
// instead of the default input: uniform random floats in [-1, 1) from a fixed seed (zeros for
// integer inputs) with the pinned batch, or batch 2, and size 1 for other symbolic dimensions.
func WithVerifyInputs(inputs ...Tensor) CanonicalOption {
	return func(c *canonicalConfig) {
		if len(inputs) == 0 {
			c.errs = append(c.errs, fmt.Errorf("%w: WithVerifyInputs without inputs", ErrInvalidOption))
		}
		c.inputs = append(c.inputs, inputs...)
	}
}

// WithReport stores what Canonicalize changed in dst (also when it fails, as far as it got).
func WithReport(dst *CanonicalReport) CanonicalOption {
	return func(c *canonicalConfig) { c.report = dst }
}

// CanonicalReport says what Canonicalize changed.
type CanonicalReport struct {
	// NodesBefore and NodesAfter count the main graph's nodes.
	NodesBefore int `json:"nodes_before"`
	NodesAfter  int `json:"nodes_after"`
	// OpsBefore and OpsAfter count nodes per operator, most frequent first.
	OpsBefore []OpCount `json:"ops_before"`
	OpsAfter  []OpCount `json:"ops_after"`
	// Batch is the pinned batch size, 0 when the batch was left symbolic.
	Batch int64 `json:"batch,omitempty"`
	// BatchDims lists the symbolic dimension names that Batch replaced.
	BatchDims []string `json:"batch_dims,omitempty"`
	// Manifest says where the unpacking manifest came from: "detected", "file" (WithManifest)
	// or "" when none was found.
	Manifest string `json:"manifest,omitempty"`
	// Unpacked lists the packed weights split into separately named parts.
	Unpacked []string `json:"unpacked,omitempty"`
	// Folded lists the values computed once and stored as initializers, in the order folded.
	Folded []FoldedValue `json:"folded,omitempty"`
	// Relaxed lists the Reshape nodes whose computed target became a constant with -1 for the
	// one element that depends on the batch.
	Relaxed []string `json:"relaxed,omitempty"`
	// Split lists the packed projections replaced by one projection per part.
	Split []SplitProjection `json:"split,omitempty"`
	// Skipped lists constant values left computed, with the reason.
	Skipped []string `json:"skipped,omitempty"`
	// Verified says the outputs were checked against the original's.
	Verified bool `json:"verified"`
	// MaxDiff is the largest output difference found by the check, relative to
	// max(1, max |original output|).
	MaxDiff float64 `json:"max_diff"`
}

// FoldedValue is one value that Canonicalize evaluated and stored as an initializer.
type FoldedValue struct {
	// Name is the initializer's name in the canonical graph.
	Name string `json:"name"`
	// Was is the name of the computed value it replaces, when that differs from Name (the value
	// took the name of the parameter it was computed from).
	Was string `json:"was,omitempty"`
	// Op is the operator that computed the value.
	Op string `json:"op"`
	// DType and Shape describe the stored tensor.
	DType DType   `json:"dtype"`
	Shape []int64 `json:"shape"`
}

// SplitProjection is one part of a packed projection that became a projection of its own.
type SplitProjection struct {
	// Slice is the Slice node that was replaced, and Output the value it computed (which the
	// new projection now computes).
	Slice  string `json:"slice"`
	Output string `json:"output"`
	// Weight and Bias are the part's initializers (Bias is empty when there is none).
	Weight string `json:"weight"`
	Bias   string `json:"bias,omitempty"`
}

// Canonicalize returns an equivalent model in canonical form: packed q/k/v weights unpacked into
// "<param>.query", "<param>.key" and "<param>.value" and computed by three projections instead of
// one projection sliced three ways; every value that depends only on stored tensors (Constant
// nodes, shape arithmetic, transposed weights, ...) evaluated by ONNX Runtime and stored as an
// initializer; with PinBatch, the batch dimension fixed. Folded values keep their tensor names,
// except that a value computed from exactly one parameter tensor with as many elements and no
// other reader takes that parameter's name (a Linear weight read through a Transpose is stored as
// "<module>.weight" in [in, out] layout). Random operators are never folded. DetectManifest finds
// the same blocks and roles on the result, with q/k/v as separate weights.
//
// By default the result is checked: the original and the canonical model run through ONNX
// Runtime on the same input and must agree within CanonicalTolerance (ErrMismatch otherwise);
// see WithVerify and WithVerifyInputs. Canonicalizing a canonical model changes nothing.
// Canonicalize needs ONNX Runtime (see ort.Init); ctx cancels the runs.
func (m *Model) Canonicalize(ctx context.Context, opts ...CanonicalOption) (*Model, error) {
	cfg := canonicalConfig{verify: true}
	for _, o := range opts {
		o(&cfg)
	}
	var rep CanonicalReport
	if cfg.report != nil {
		defer func() { *cfg.report = rep }()
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	if len(cfg.inputs) > 0 && !cfg.verify {
		return nil, fmt.Errorf("canonicalize: %w: WithVerifyInputs with WithVerify(false)", ErrInvalidOption)
	}
	info := m.Inspect()
	rep.NodesBefore, rep.OpsBefore = info.Nodes, info.Ops
	out, err := canonicalize(ctx, m, cfg, &rep)
	if err != nil {
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	info = out.Inspect()
	rep.NodesAfter, rep.OpsAfter = info.Nodes, info.Ops
	// Report only what the canonical graph stores: a value known from shape inference may only
	// have fed other folded values, a Reshape target may have been replaced.
	kept := initializerSet(out.pb.Graph)
	rep.Folded = slices.DeleteFunc(rep.Folded, func(f FoldedValue) bool { return !kept[f.Name] })
	if cfg.verify {
		d, err := verifyCanonical(ctx, m, out, cfg.inputs)
		rep.MaxDiff = d
		if err != nil {
			return nil, fmt.Errorf("canonicalize: verify: %w", err)
		}
		rep.Verified = true
	}
	return out, nil
}

// canonicalize runs the rewriting steps.
func canonicalize(ctx context.Context, m *Model, cfg canonicalConfig, rep *CanonicalReport) (*Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cur := m
	if cfg.batch > 0 {
		pb := cloneModel(m.pb)
		dims, err := pinBatch(pb.Graph, cfg.batch)
		if err != nil {
			return nil, fmt.Errorf("pin batch: %w", err)
		}
		if cur, err = finish(pb, false); err != nil {
			return nil, fmt.Errorf("pin batch: %w", err)
		}
		rep.Batch, rep.BatchDims = cfg.batch, dims
	}

	// Unpack the packed weights the manifest names.
	man := cfg.manifest
	if man != nil {
		var err error
		if man, err = ResolveManifest(cur, man); err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		rep.Manifest = "file"
	} else if det, err := DetectManifest(cur); err == nil {
		man, rep.Manifest = det, "detected"
	}
	if man != nil {
		var packed []string
		for _, b := range man.Blocks {
			for _, e := range b.Edges {
				if e.Slice != nil && !slices.Contains(packed, e.Tensor) {
					packed = append(packed, e.Tensor)
				}
			}
		}
		if len(packed) > 0 {
			var err error
			if cur, _, err = cur.Unpack(man); err != nil {
				return nil, err
			}
			rep.Unpacked = packed
		}
	}

	f := &folder{rep: rep, left: map[string]bool{}}
	var err error
	if cur, err = f.fold(ctx, cur, false); err != nil {
		return nil, err
	}
	if cur, err = relaxReshapes(cur, rep); err != nil {
		return nil, fmt.Errorf("relax reshape targets: %w", err)
	}
	if cur, err = splitProjections(cur, rep); err != nil {
		return nil, fmt.Errorf("split packed projections: %w", err)
	}
	if cur, err = f.fold(ctx, cur, true); err != nil {
		return nil, err
	}
	return refreshOutputs(cur)
}

// pinBatch fixes the first dimension of every fed input of g to n, and every dimension sharing
// a symbolic name with one of them. It returns the symbolic names replaced.
func pinBatch(g *onnxpb.GraphProto, n int64) ([]string, error) {
	init := initializerSet(g)
	params := map[string]bool{}
	var names []string
	seen := 0
	for _, v := range g.GetInput() {
		if init[v.GetName()] {
			continue
		}
		dims := v.GetType().GetTensorType().GetShape().GetDim()
		if len(dims) == 0 {
			continue
		}
		seen++
		switch d := dims[0].GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			if d.DimValue != n {
				return nil, fmt.Errorf("%w: input %q has a fixed batch of %d, not %d", ErrInvalidOption, v.GetName(), d.DimValue, n)
			}
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			if !params[d.DimParam] {
				params[d.DimParam] = true
				names = append(names, d.DimParam)
			}
		}
		dims[0].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: n}
	}
	if seen == 0 {
		return nil, fmt.Errorf("%w: PinBatch(%d): no input has a batch dimension", ErrInvalidOption, n)
	}
	for _, vis := range [][]*onnxpb.ValueInfoProto{g.GetInput(), g.GetOutput(), g.GetValueInfo()} {
		for _, v := range vis {
			for _, d := range v.GetType().GetTensorType().GetShape().GetDim() {
				if p, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimParam); ok && params[p.DimParam] {
					d.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: n}
				}
			}
		}
	}
	return names, nil
}

// folder evaluates constant subgraphs.
type folder struct {
	rep  *CanonicalReport
	left map[string]bool // values left computed, not to be tried again
}

// leave records that the constant v stays computed, and why.
func (f *folder) leave(v, why string) {
	if f.left == nil {
		f.left = map[string]bool{}
	}
	f.left[v] = true
	f.rep.Skipped = append(f.rep.Skipped, v+": "+why)
}

// staticPlan says which values of a graph are constant and how to obtain them.
type staticPlan struct {
	static      map[string]bool                // the value depends on stored tensors only
	param       map[string]bool                // ... and on a parameter tensor
	staticNode  []bool                         // per node: its outputs are static
	materialize map[string]*onnxpb.TensorProto // values whose contents shape inference knows
}

// isParamTensor reports whether t holds parameters (as opposed to shape constants and scalars):
// floating point with more than one element.
func isParamTensor(t *onnxpb.TensorProto) bool {
	return DType(t.GetDataType()).IsFloat() && numElements(t.GetDims()) > 1
}

func defaultDomain(n *onnxpb.NodeProto) bool {
	d := n.GetDomain()
	return d == "" || d == "ai.onnx"
}

// planStatic finds g's constant values. Without all, a node that reads a parameter tensor is
// not constant, so Transpose(weight) and the packed projections stay as they are.
func planStatic(g *onnxpb.GraphProto, inf *inference, all bool) staticPlan {
	p := staticPlan{static: map[string]bool{}, param: map[string]bool{}, staticNode: make([]bool, len(g.GetNode())),
		materialize: map[string]*onnxpb.TensorProto{}}
	inputs := map[string]bool{}
	for _, v := range g.GetInput() {
		inputs[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		if !inputs[t.GetName()] {
			p.static[t.GetName()] = true
			p.param[t.GetName()] = isParamTensor(t)
		}
	}
	for i, n := range g.GetNode() {
		if isRandomOp(n.GetOpType()) || !defaultDomain(n) {
			continue
		}
		isStatic, readsParam := true, false
		if n.GetOpType() == "Constant" {
			readsParam = constantIsParam(n)
		} else {
			for _, in := range nodeInputs(n) {
				isStatic = isStatic && p.static[in]
				readsParam = readsParam || p.param[in]
			}
		}
		if isStatic && (all || !readsParam) {
			p.staticNode[i] = true
			for _, o := range n.GetOutput() {
				if o != "" {
					p.static[o], p.param[o] = true, readsParam
				}
			}
			continue
		}
		if t := inferredConstant(n, inf); t != nil {
			p.static[t.GetName()] = true
			p.materialize[t.GetName()] = t
		}
	}
	return p
}

// inferredConstant returns the output of n as a tensor when shape inference knows its contents
// exactly: Shape and Size of tensors whose dimensions are known, and integer arithmetic on them
// (Gather(Shape(x), 2) when dimension 2 of x is fixed).
func inferredConstant(n *onnxpb.NodeProto, inf *inference) *onnxpb.TensorProto {
	if len(n.GetOutput()) != 1 || n.GetOutput()[0] == "" || !defaultDomain(n) {
		return nil
	}
	o := n.GetOutput()[0]
	vi := inf.types[o]
	if n.GetOpType() == "Size" {
		s := inf.in(n, 0).Shape
		if !s.Known() {
			return nil
		}
		return tensorProto(Tensor{DType: DTypeInt64, Shape: []int64{}, Int64: []int64{numElements(s.Sizes())}}, o)
	}
	if vi.DType != DTypeInt64 && vi.DType != DTypeInt32 {
		return nil
	}
	if n.GetOpType() != "Shape" {
		// Shape inference tracks integer contents only: every input must be an integer (or the
		// boolean condition of a Where).
		for _, in := range n.GetInput() {
			if dt := inf.types[in].DType; in != "" && dt != DTypeInt64 && dt != DTypeInt32 && dt != DTypeBool {
				return nil
			}
		}
	}
	vals, ok := inf.values[o]
	if !ok || !vi.Shape.Known() || numElements(vi.Shape.Sizes()) != int64(len(vals)) {
		return nil
	}
	v := make([]int64, len(vals))
	for i, x := range vals {
		if !x.known {
			return nil
		}
		v[i] = x.v
	}
	t := tensorProto(Tensor{DType: DTypeInt64, Shape: vi.Shape.Sizes(), Int64: v}, o)
	if vi.DType == DTypeInt32 {
		raw := make([]byte, 0, 4*len(v))
		for _, x := range v {
			raw = binary.LittleEndian.AppendUint32(raw, uint32(int32(x)))
		}
		t.DataType, t.RawData = proto.Int32(int32(DTypeInt32)), raw
	}
	return t
}

// constantTensor returns the value of a Constant node named name, or nil for the forms it does
// not read (strings, sparse tensors).
func constantTensor(n *onnxpb.NodeProto, name string) *onnxpb.TensorProto {
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			if a.GetT() == nil {
				return nil
			}
			// Share the data: initializers are replaced, never modified in place.
			t := cloneExcept(a.GetT(), "raw_data").(*onnxpb.TensorProto)
			t.RawData = a.GetT().RawData
			t.Name = proto.String(name)
			return t
		case "value_float":
			return tensorProto(Scalar("", a.GetF()), name)
		case "value_floats":
			return tensorProto(Tensor{DType: DTypeFloat32, Shape: []int64{int64(len(a.GetFloats()))}, Float32: a.GetFloats()}, name)
		case "value_int":
			return tensorProto(Tensor{DType: DTypeInt64, Shape: []int64{}, Int64: []int64{a.GetI()}}, name)
		case "value_ints":
			return tensorProto(Int64s("", a.GetInts()...), name)
		}
	}
	return nil
}

// constantIsParam reports whether a Constant node holds parameters (see isParamTensor).
func constantIsParam(n *onnxpb.NodeProto) bool {
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			return a.GetT() != nil && isParamTensor(a.GetT())
		case "value_floats":
			return len(a.GetFloats()) > 1
		}
	}
	return false
}

// fold evaluates the constant values that non-constant nodes (or the graph outputs) read and
// stores them as initializers. With all unset, values that involve a parameter tensor are left.
func (f *folder) fold(ctx context.Context, m *Model, all bool) (*Model, error) {
	what := "fold shape arithmetic"
	if all {
		what = "fold constants"
	}
	pb := cloneModel(m.pb)
	g := pb.Graph
	plan := planStatic(g, inferGraph(g), all)

	// Values known from shape inference become initializers first, so that everything constant
	// is computed from initializers alone.
	for i, n := range g.GetNode() {
		for j, o := range n.GetOutput() {
			if t := plan.materialize[o]; t != nil && o != "" {
				g.Initializer = append(g.Initializer, t)
				g.Node[i].Output[j] = ""
				plan.staticNode[i] = true
				f.rep.Folded = append(f.rep.Folded, foldedValue(t, "", n.GetOpType()))
			}
		}
	}
	ix := newIndex(g)
	var frontier []string
	producer := map[string]*onnxpb.NodeProto{}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o == "" || !plan.static[o] {
				continue
			}
			read := ix.output[o]
			for _, c := range ix.consumers[o] {
				read = read || !plan.staticNode[c]
			}
			if read {
				frontier = append(frontier, o)
				producer[o] = n
			}
		}
	}
	if len(frontier) == 0 && len(plan.materialize) == 0 {
		return m, nil
	}

	// Evaluate: Constant nodes directly, everything else with ONNX Runtime.
	values := map[string]*onnxpb.TensorProto{}
	var evaluate []string
	for _, v := range frontier {
		if f.left[v] {
			continue
		}
		if n := producer[v]; n.GetOpType() == "Constant" {
			if t := constantTensor(n, v); t != nil {
				values[v] = t
				continue
			}
		}
		evaluate = append(evaluate, v)
	}
	if len(evaluate) > 0 {
		got, err := f.evaluate(ctx, pb, evaluate)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		for k, t := range got {
			values[k] = t
		}
	}

	// Decide names: a value takes the name of the one parameter it is computed from when no
	// other folded value (or value left computed) reads that parameter.
	claims := map[string]int{}
	owner := map[string]string{}
	for _, v := range frontier {
		params, readers := paramsOf(ix, v)
		for _, p := range params {
			claims[p]++
		}
		if len(params) == 1 && readers {
			owner[v] = params[0]
		}
	}
	for _, v := range frontier {
		t := values[v]
		if t == nil {
			continue
		}
		if src := sourceBytes(ix, v); tensorBytes(t) > maxFoldGrowth && tensorBytes(t) > src {
			f.leave(v, fmt.Sprintf("%d bytes computed from %d stored; folding would grow the model", tensorBytes(t), src))
			continue
		}
		name := v
		if p := owner[v]; p != "" && claims[p] == 1 && numElements(t.GetDims()) == numElements(ix.init[p].GetDims()) && renamable(ix, v) {
			name = p
		}
		n := producer[v]
		for j, o := range n.Output {
			if o == v {
				n.Output[j] = ""
			}
		}
		if name != v {
			for _, ci := range ix.consumers[v] {
				c := g.Node[ci]
				for j, in := range c.Input {
					if in == v {
						c.Input[j] = name
					}
				}
			}
			g.Initializer = slices.DeleteFunc(g.Initializer, func(x *onnxpb.TensorProto) bool { return x.GetName() == name })
			g.ValueInfo = slices.DeleteFunc(g.ValueInfo, func(x *onnxpb.ValueInfoProto) bool { return x.GetName() == v || x.GetName() == name })
		}
		t.Name = proto.String(name)
		g.Initializer = append(g.Initializer, t)
		was := ""
		if name != v {
			was = v
		}
		f.rep.Folded = append(f.rep.Folded, foldedValue(t, was, n.GetOpType()))
	}
	out, err := finish(pb, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// foldedValue describes a folded tensor for the report.
func foldedValue(t *onnxpb.TensorProto, was, op string) FoldedValue {
	shape := slices.Clone(t.GetDims())
	if shape == nil {
		shape = []int64{}
	}
	return FoldedValue{Name: t.GetName(), Was: was, Op: op, DType: DType(t.GetDataType()), Shape: shape}
}

// paramsOf returns the parameter initializers that the constant v is computed from and, when
// there is exactly one, whether every reader of it is part of v's computation.
func paramsOf(ix *graphIndex, v string) ([]string, bool) {
	anc := ix.ancestors([]string{v}, nil)
	var params []string
	for i := range anc {
		for _, in := range nodeInputs(ix.g.Node[i]) {
			if t := ix.init[in]; t != nil && isParamTensor(t) && !ix.input[in] && !slices.Contains(params, in) {
				params = append(params, in)
			}
		}
	}
	if len(params) != 1 || ix.output[params[0]] {
		return params, false
	}
	for _, c := range ix.consumers[params[0]] {
		if !anc[c] {
			return params, false
		}
	}
	return params, true
}

// renamable reports whether v can be renamed: it is not a graph output and every reader reads
// it as a plain input (not from inside a subgraph).
func renamable(ix *graphIndex, v string) bool {
	if ix.output[v] {
		return false
	}
	for _, ci := range ix.consumers[v] {
		n := ix.g.Node[ci]
		if !slices.Contains(n.GetInput(), v) {
			return false
		}
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil || len(a.GetGraphs()) > 0 {
				return false
			}
		}
	}
	return true
}

// sourceBytes returns the size of the initializers the constant v is computed from.
func sourceBytes(ix *graphIndex, v string) int64 {
	var total int64
	seen := map[string]bool{}
	for i := range ix.ancestors([]string{v}, nil) {
		for _, in := range nodeInputs(ix.g.Node[i]) {
			if t := ix.init[in]; t != nil && !seen[in] {
				seen[in] = true
				total += tensorBytes(t)
			}
		}
	}
	return total
}

// evaluate computes the named constant values of pb with ONNX Runtime. When they cannot all be
// computed in one run, each is tried alone, and those that still fail are left computed and
// reported: one construct ONNX Runtime cannot return (a sequence, a string) does not block the
// rest. Only a missing ONNX Runtime or a cancelled ctx is an error.
func (f *folder) evaluate(ctx context.Context, pb *onnxpb.ModelProto, names []string) (map[string]*onnxpb.TensorProto, error) {
	got, err := evalConstants(ctx, pb, names)
	if err == nil {
		return got, nil
	}
	fatal := func(err error) bool { return ctx.Err() != nil || errors.Is(err, ort.ErrLibrary) }
	if fatal(err) {
		return nil, err
	}
	if len(names) == 1 {
		f.leave(names[0], err.Error())
		return nil, nil
	}
	got = map[string]*onnxpb.TensorProto{}
	for _, v := range names {
		one, err := evalConstants(ctx, pb, []string{v})
		if err != nil {
			if fatal(err) {
				return nil, err
			}
			f.leave(v, err.Error())
			continue
		}
		got[v] = one[v]
	}
	return got, nil
}

// evalConstants runs a copy of pb whose outputs are the named constant values and whose only
// input is an unused placeholder (the values depend on initializers alone).
//
// A value whose shape inference knows completely is declared with its shape, so that ONNX
// Runtime writes it into a buffer of that shape. Any other value is fetched flattened, with its
// shape as a second output (with a 1 appended, so that a scalar's shape is not empty): package
// ort can only return a scalar it allocated itself.
func evalConstants(ctx context.Context, pb *onnxpb.ModelProto, names []string) (map[string]*onnxpb.TensorProto, error) {
	ev := cloneModel(pb)
	g := ev.Graph
	inf := inferGraph(g)
	used := allNames(g)
	g.Output = nil
	type fetch struct{ data, shape string }
	fetches := map[string]fetch{}
	var flatShape, one string
	for _, v := range names {
		vi := inf.types[v]
		if vi.DType != DTypeUndefined && vi.Shape.Known() {
			g.Output = append(g.Output, valueInfoProto(v, vi.DType, vi.Shape))
			fetches[v] = fetch{data: v}
			continue
		}
		if flatShape == "" {
			flatShape, one = uniqueName(used, "s3t.fold.flat"), uniqueName(used, "s3t.fold.one")
			g.Initializer = append(g.Initializer, tensorProto(Int64s("", -1), flatShape), tensorProto(Int64s("", 1), one))
		}
		f := fetch{data: uniqueName(used, v+".s3t.flat"), shape: uniqueName(used, v+".s3t.shape")}
		dims := uniqueName(used, v+".s3t.dims")
		g.Node = append(g.Node,
			&onnxpb.NodeProto{OpType: proto.String("Reshape"), Name: proto.String(uniqueName(used, f.data)), Input: []string{v, flatShape}, Output: []string{f.data}},
			&onnxpb.NodeProto{OpType: proto.String("Shape"), Name: proto.String(uniqueName(used, dims)), Input: []string{v}, Output: []string{dims}},
			&onnxpb.NodeProto{OpType: proto.String("Concat"), Name: proto.String(uniqueName(used, f.shape)), Input: []string{dims, one}, Output: []string{f.shape},
				Attribute: []*onnxpb.AttributeProto{{Name: proto.String("axis"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(0)}}})
		data := &onnxpb.ValueInfoProto{Name: proto.String(f.data)}
		if vi.DType != DTypeUndefined {
			data = valueInfoProto(f.data, vi.DType, nil)
		}
		g.Output = append(g.Output, data, valueInfoProto(f.shape, DTypeInt64, Shape{{Size: -1}}))
		fetches[v] = f
	}
	dummy := uniqueName(used, "s3t.fold.placeholder")
	init := initializerSet(g)
	g.Input = slices.DeleteFunc(g.Input, func(v *onnxpb.ValueInfoProto) bool { return !init[v.GetName()] })
	g.Input = append(g.Input, valueInfoProto(dummy, DTypeFloat32, ShapeOf(1)))
	g.ValueInfo = nil
	prune(g)
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("%w: serialise: %w", ErrFold, err)
	}
	s, err := ort.NewSession(data, ort.WithIntraOpThreads(1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFold, err)
	}
	defer s.Close()
	res, err := s.Run(ctx, map[string]ort.Tensor{dummy: ort.NewTensor([]float32{0}, 1)})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFold, err)
	}
	out := make(map[string]*onnxpb.TensorProto, len(names))
	for _, v := range names {
		f := fetches[v]
		t := res[f.data]
		if f.shape != "" {
			dims, err := ort.Values[int64](res[f.shape])
			if err != nil || len(dims) == 0 {
				return nil, fmt.Errorf("%w: shape of %q: %v", ErrFold, v, err)
			}
			t.Shape = dims[:len(dims)-1]
		}
		p, err := ortProto(v, t)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrFold, v, err)
		}
		out[v] = p
	}
	return out, nil
}

// ortProto stores an ONNX Runtime tensor as a raw-data TensorProto.
func ortProto(name string, t ort.Tensor) (*onnxpb.TensorProto, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	raw, err := binary.Append(nil, binary.LittleEndian, t.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s data: %w", ErrUnsupported, t.DType(), err)
	}
	return &onnxpb.TensorProto{
		Name:     proto.String(name),
		DataType: proto.Int32(int32(t.DType())), // ort numbers types as ONNX does
		Dims:     slices.Clone(t.Shape),
		RawData:  raw,
	}, nil
}

// relaxReshapes replaces each computed Reshape target whose elements are all known but one (the
// batch) by a constant with -1 there, so that no shape arithmetic is left for it.
func relaxReshapes(m *Model, rep *CanonicalReport) (*Model, error) {
	pb := cloneModel(m.pb)
	g := pb.Graph
	ix := newIndex(g)
	inf := inferGraph(g)
	used := allNames(g)
	changed := false
	for _, n := range g.GetNode() {
		if n.GetOpType() != "Reshape" || !defaultDomain(n) || len(n.GetInput()) < 2 {
			continue
		}
		target := n.GetInput()[1]
		if _, computed := ix.producer[target]; !computed {
			continue
		}
		vals, ok := inf.symValues(n, 1)
		if !ok || len(vals) == 0 {
			continue
		}
		unknown, fixed := -1, make([]int64, len(vals))
		zeroOK := attrInt(n, "allowzero", 0) == 0
		for i, x := range vals {
			switch {
			case !x.known && unknown < 0:
				unknown = i
			case !x.known, x.v < 0, x.v == 0 && !zeroOK:
				unknown = -2
			default:
				fixed[i] = x.v
			}
			if unknown == -2 {
				break
			}
		}
		if unknown < 0 {
			continue
		}
		fixed[unknown] = -1
		name := uniqueName(used, n.GetName()+"_shape")
		g.Initializer = append(g.Initializer, tensorProto(Int64s("", fixed...), name))
		n.Input[1] = name
		rep.Relaxed = append(rep.Relaxed, n.GetName())
		changed = true
	}
	if !changed {
		return m, nil
	}
	return finish(pb, true)
}

// uniqueName returns base, or base with a numeric suffix, whichever is unused, and marks it used.
func uniqueName(used map[string]bool, base string) string {
	name := base
	for k := 1; used[name]; k++ {
		name = base + "_" + strconv.Itoa(k)
	}
	used[name] = true
	return name
}

// segment is one stored part of a packed weight or bias, [start, end) along its output axis.
type segment struct {
	name       string
	start, end int64
}

// packedProjection is a projection Add(MatMul(X, W), b) whose output only Slices read.
type packedProjection struct {
	x          string // the MatMul's input
	transposed bool   // W is Transpose(src): src is [out, in]
	axis       int    // the output axis of the stored weight: 0 when transposed, else 1
	weights    []segment
	bias       []segment // nil without a bias
	biasFirst  bool      // the Add reads the bias first
	base       string    // the packed weight's name, for naming parts ("" when unknown)
	slices     []packedSlice
}

// packedSlice is one Slice of a packed projection's output.
type packedSlice struct {
	node       *onnxpb.NodeProto
	index      int
	start, end int64
}

// splitProjections replaces each Slice of a packed projection by a projection of its own part.
func splitProjections(m *Model, rep *CanonicalReport) (*Model, error) {
	pb := cloneModel(m.pb)
	g := pb.Graph
	ix := newIndex(g)
	inf := inferGraph(g)
	used := allNames(g)
	seen := map[string]bool{}
	replace := map[int][]*onnxpb.NodeProto{}
	for _, n := range g.GetNode() {
		if n.GetOpType() != "Slice" || len(n.GetInput()) == 0 || seen[n.GetInput()[0]] {
			continue
		}
		packed := n.GetInput()[0]
		seen[packed] = true
		p, ok := matchPacked(ix, inf, packed)
		if !ok {
			continue
		}
		for k, s := range p.slices {
			nodes, sp, err := p.split(g, ix, used, s, k)
			if err != nil {
				return nil, err
			}
			replace[s.index] = nodes
			rep.Split = append(rep.Split, sp)
		}
	}
	if len(replace) == 0 {
		return m, nil
	}
	var nodes []*onnxpb.NodeProto
	for i, n := range g.GetNode() {
		if r, ok := replace[i]; ok {
			nodes = append(nodes, r...)
			continue
		}
		nodes = append(nodes, n)
	}
	g.Node = nodes
	return finish(pb, true)
}

// matchPacked recognises the packed projection computing v.
func matchPacked(ix *graphIndex, inf *inference, v string) (*packedProjection, bool) {
	if ix.output[v] {
		return nil, false
	}
	p := &packedProjection{}
	prod := ix.node(v)
	if prod == nil || !defaultDomain(prod) {
		return nil, false
	}
	mm, bias := prod, ""
	if prod.GetOpType() == "Add" && len(prod.GetInput()) == 2 {
		mm = nil
		for k, in := range prod.GetInput() {
			if c := ix.node(in); c != nil && c.GetOpType() == "MatMul" && len(ix.consumers[in]) == 1 && !ix.output[in] && mm == nil {
				mm, bias = c, prod.GetInput()[1-k]
				p.biasFirst = k == 1
			}
		}
	}
	if mm == nil || mm.GetOpType() != "MatMul" || len(mm.GetInput()) != 2 || !defaultDomain(mm) {
		return nil, false
	}
	p.x = mm.GetInput()[0]
	src := mm.GetInput()[1]
	if t := ix.node(src); t != nil && t.GetOpType() == "Transpose" && len(ix.consumers[src]) == 1 {
		if perm := attr(t, "perm").GetInts(); perm == nil || slices.Equal(perm, []int64{1, 0}) {
			src, p.transposed = t.GetInput()[0], true
		}
	}
	if !p.transposed {
		p.axis = 1
	}
	var ok bool
	if p.weights, p.base, ok = segments(ix, src, p.axis, 2); !ok {
		return nil, false
	}
	total := p.weights[len(p.weights)-1].end
	if bias != "" {
		if p.bias, _, ok = segments(ix, bias, 0, 1); !ok || p.bias[len(p.bias)-1].end != total {
			return nil, false
		}
	}
	rank := len(inf.types[v].Shape)
	for _, ci := range ix.consumers[v] {
		s, ok := matchSlice(ix, ix.g.Node[ci], v, rank, total)
		if !ok || !within(p.weights, s) || (p.bias != nil && !within(p.bias, s)) {
			return nil, false
		}
		s.index = ci
		p.slices = append(p.slices, s)
	}
	return p, len(p.slices) > 0
}

// within reports whether the slice lies inside one of the stored parts.
func within(segs []segment, s packedSlice) bool {
	return slices.ContainsFunc(segs, func(g segment) bool { return g.start <= s.start && s.end <= g.end })
}

// segments lists the stored parts of the constant v along axis: the inputs of a Concat of
// initializers, or v itself when it is an initializer. It also returns the packed name that
// Unpack derived the parts' names from ("" when v is not such a Concat).
func segments(ix *graphIndex, v string, axis, rank int) ([]segment, string, bool) {
	stored := func(name string) *onnxpb.TensorProto {
		t := ix.init[name]
		if t == nil || ix.input[name] || len(t.GetDims()) != rank {
			return nil
		}
		return t
	}
	if t := stored(v); t != nil {
		return []segment{{name: v, end: t.GetDims()[axis]}}, "", true
	}
	c := ix.node(v)
	if c == nil || c.GetOpType() != "Concat" || len(ix.consumers[v]) != 1 || ix.output[v] {
		return nil, "", false
	}
	if a, ok := normAxis(attrInt(c, "axis", 0), rank); !ok || a != axis {
		return nil, "", false
	}
	var segs []segment
	pos := int64(0)
	for _, in := range c.GetInput() {
		t := stored(in)
		if t == nil {
			return nil, "", false
		}
		segs = append(segs, segment{name: in, start: pos, end: pos + t.GetDims()[axis]})
		pos += t.GetDims()[axis]
	}
	if len(segs) == 0 {
		return nil, "", false
	}
	return segs, strings.TrimSuffix(v, ".unpacked"), true
}

// matchSlice recognises n as a Slice of v's last axis with constant bounds and step 1.
func matchSlice(ix *graphIndex, n *onnxpb.NodeProto, v string, rank int, size int64) (packedSlice, bool) {
	in := n.GetInput()
	if n.GetOpType() != "Slice" || !defaultDomain(n) || len(in) < 4 || in[0] != v || slices.Contains(in[1:], v) {
		return packedSlice{}, false
	}
	starts, ok1 := storedInts(ix, in[1])
	ends, ok2 := storedInts(ix, in[2])
	axes, ok3 := storedInts(ix, in[3])
	if !ok1 || !ok2 || !ok3 || len(starts) != 1 || len(ends) != 1 || len(axes) != 1 {
		return packedSlice{}, false
	}
	if axes[0] != -1 && (rank == 0 || axes[0] != int64(rank-1)) {
		return packedSlice{}, false
	}
	if len(in) > 4 && in[4] != "" {
		if steps, ok := storedInts(ix, in[4]); !ok || len(steps) != 1 || steps[0] != 1 {
			return packedSlice{}, false
		}
	}
	clamp := func(x int64) int64 {
		if x < 0 {
			x += size
		}
		return min(max(x, 0), size)
	}
	s, e := clamp(starts[0]), clamp(ends[0])
	return packedSlice{node: n, start: s, end: e}, s < e
}

// storedInts reads a small integer initializer.
func storedInts(ix *graphIndex, name string) ([]int64, bool) {
	t := ix.init[name]
	if t == nil || ix.input[name] || numElements(t.GetDims()) > 64 {
		return nil, false
	}
	raw, err := rawData(t)
	if err != nil {
		return nil, false
	}
	switch DType(t.GetDataType()) {
	case DTypeInt64:
		out := make([]int64, len(raw)/8)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		return out, true
	case DTypeInt32:
		out := make([]int64, len(raw)/4)
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
		return out, true
	}
	return nil, false
}

// part returns the initializer holding [start, end) of segs along axis: a segment itself when
// it matches exactly, else a new slice of the segment that contains the range, named
// "<segment>.<tag>". It fails when the range spans segments.
func part(g *onnxpb.GraphProto, ix *graphIndex, used map[string]bool, segs []segment, axis int, start, end int64, tag string) (string, error) {
	for _, s := range segs {
		if s.start == start && s.end == end {
			return s.name, nil
		}
		if s.start <= start && end <= s.end {
			name := uniqueName(used, s.name+"."+tag)
			t, err := sliceTensor(ix.init[s.name], name, axis, start-s.start, end-s.start)
			if err != nil {
				return "", err
			}
			g.Initializer = append(g.Initializer, t)
			return name, nil
		}
	}
	return "", fmt.Errorf("%w: slice [%d:%d] spans several stored parts", ErrUnsupported, start, end)
}

// split returns the nodes that compute slice s of the projection from its own part.
func (p *packedProjection) split(g *onnxpb.GraphProto, ix *graphIndex, used map[string]bool, s packedSlice, k int) ([]*onnxpb.NodeProto, SplitProjection, error) {
	tag := "part" + strconv.Itoa(k)
	for _, seg := range p.weights {
		if seg.start == s.start && seg.end == s.end && p.base != "" && strings.HasPrefix(seg.name, p.base+".") {
			tag = strings.TrimPrefix(seg.name, p.base+".")
		}
	}
	sp := SplitProjection{Slice: s.node.GetName(), Output: s.node.GetOutput()[0]}
	var err error
	if sp.Weight, err = part(g, ix, used, p.weights, p.axis, s.start, s.end, tag); err != nil {
		return nil, sp, fmt.Errorf("slice %q: %w", sp.Slice, err)
	}
	if p.bias != nil {
		if sp.Bias, err = part(g, ix, used, p.bias, 0, s.start, s.end, tag); err != nil {
			return nil, sp, fmt.Errorf("slice %q: bias: %w", sp.Slice, err)
		}
	}
	prefix := ""
	if name := s.node.GetName(); strings.HasPrefix(name, "/") {
		prefix = name[:strings.LastIndex(name, "/")+1]
	} else if name != "" {
		prefix = name + "/"
	}
	node := func(op string, inputs []string, last bool) *onnxpb.NodeProto {
		name := uniqueName(used, prefix+op+"_"+tag)
		out := sp.Output
		if !last {
			out = uniqueName(used, name+"_output_0")
		}
		return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: inputs, Output: []string{out}}
	}
	var nodes []*onnxpb.NodeProto
	w := sp.Weight
	if p.transposed {
		t := node("Transpose", []string{w}, false)
		t.Attribute = []*onnxpb.AttributeProto{{Name: proto.String("perm"), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: []int64{1, 0}}}
		nodes = append(nodes, t)
		w = t.Output[0]
	}
	mm := node("MatMul", []string{p.x, w}, p.bias == nil)
	nodes = append(nodes, mm)
	if p.bias != nil {
		in := []string{mm.Output[0], sp.Bias}
		if p.biasFirst {
			in = []string{sp.Bias, mm.Output[0]}
		}
		nodes = append(nodes, node("Add", in, true))
	}
	return nodes, sp, nil
}

// refreshOutputs fills in the graph outputs' element types and dimensions that the declaration
// leaves unknown and inference now knows (after pinning the batch, the outputs' batch too).
func refreshOutputs(m *Model) (*Model, error) {
	inf := inferGraph(m.pb.Graph)
	pb := cloneModel(m.pb)
	changed := false
	for i, o := range pb.Graph.GetOutput() {
		decl := valueInfoFromProto(o)
		got := typeOf(inf, o.GetName())
		merged := mergeInfo(decl, got)
		if merged.DType == decl.DType && merged.Shape.String() == decl.Shape.String() {
			continue
		}
		vi := valueInfoProto(o.GetName(), merged.DType, merged.Shape)
		vi.DocString = o.DocString
		pb.Graph.Output[i] = vi
		changed = true
	}
	if !changed {
		return m, nil
	}
	return finish(pb, false)
}

// verifyCanonical runs both models on the same input and returns the largest output difference
// relative to max(1, max |original|).
func verifyCanonical(ctx context.Context, orig, canon *Model, given []Tensor) (float64, error) {
	feeds, err := verifyInputs(canon, given)
	if err != nil {
		return 0, err
	}
	want, err := runModel(ctx, orig, feeds)
	if err != nil {
		return 0, fmt.Errorf("original model: %w", err)
	}
	got, err := runModel(ctx, canon, feeds)
	if err != nil {
		return 0, fmt.Errorf("canonical model: %w", err)
	}
	worst := 0.0
	for _, o := range orig.Outputs() {
		a, b := want[o.Name], got[o.Name]
		if !slices.Equal(a.Shape, b.Shape) || a.DType() != b.DType() {
			return 0, fmt.Errorf("%w: output %q is %s%v, the original's %s%v", ErrMismatch, o.Name, b.DType(), b.Shape, a.DType(), a.Shape)
		}
		d, exact := relDiff(a, b)
		if exact && d != 0 {
			return 0, fmt.Errorf("%w: output %q: integer outputs differ", ErrMismatch, o.Name)
		}
		if !(d <= CanonicalTolerance) {
			return d, fmt.Errorf("%w: output %q differs by %.3g relative to max(1, max |output|) (tolerance %g)", ErrMismatch, o.Name, d, CanonicalTolerance)
		}
		worst = max(worst, d)
	}
	return worst, nil
}

// relDiff returns max |a-b| / max(1, max |a|) for float tensors (NaN where only one of them is
// NaN: the same computation gives NaN in the same places); for other types it reports exact and
// 0 or 1.
func relDiff(a, b ort.Tensor) (float64, bool) {
	var x, y []float64
	switch av := a.Data.(type) {
	case []float32:
		bv := b.Data.([]float32)
		x, y = make([]float64, len(av)), make([]float64, len(bv))
		for i := range av {
			x[i], y[i] = float64(av[i]), float64(bv[i])
		}
	case []float64:
		x, y = av, b.Data.([]float64)
	default:
		ab, _ := binary.Append(nil, binary.LittleEndian, a.Data)
		bb, _ := binary.Append(nil, binary.LittleEndian, b.Data)
		if string(ab) == string(bb) {
			return 0, true
		}
		return 1, true
	}
	scale, d := 1.0, 0.0
	for i := range x {
		xn, yn := math.IsNaN(x[i]), math.IsNaN(y[i])
		switch {
		case xn && yn:
			continue
		case xn || yn:
			return math.NaN(), false
		}
		if !math.IsInf(x[i], 0) {
			scale = max(scale, math.Abs(x[i]))
		}
		if x[i] != y[i] { // equal infinities are equal
			d = max(d, math.Abs(x[i]-y[i]))
		}
	}
	return d / scale, false
}

// verifyInputs returns the check's input: the given tensors, or a seeded random one.
func verifyInputs(m *Model, given []Tensor) (map[string]ort.Tensor, error) {
	ins := m.Inputs()
	feeds := map[string]ort.Tensor{}
	if len(given) > 0 {
		for _, t := range given {
			if !slices.ContainsFunc(ins, func(v ValueInfo) bool { return v.Name == t.Name }) {
				return nil, fmt.Errorf("%w: verification input %q is not a model input", ErrInvalidOption, t.Name)
			}
			if err := t.Validate(); err != nil {
				return nil, fmt.Errorf("%w: verification input: %w", ErrInvalidOption, err)
			}
			if t.DType == DTypeInt64 {
				feeds[t.Name] = ort.NewTensor(t.Int64, t.Shape...)
			} else {
				feeds[t.Name] = ort.NewTensor(t.Float32, t.Shape...)
			}
		}
		for _, v := range ins {
			if _, ok := feeds[v.Name]; !ok {
				return nil, fmt.Errorf("%w: no verification input for %q", ErrInvalidOption, v.Name)
			}
		}
		return feeds, nil
	}
	rng := rand.New(rand.NewPCG(verifySeed, verifySeed))
	for _, v := range ins {
		if v.Shape == nil {
			return nil, fmt.Errorf("%w: input %q has no declared shape; give WithVerifyInputs", ErrUnsupported, v.Name)
		}
		shape := make([]int64, len(v.Shape))
		for i, d := range v.Shape {
			switch {
			case d.Known():
				shape[i] = d.Size
			case i == 0:
				shape[i] = verifyBatch
			default:
				shape[i] = 1
			}
		}
		n := numElements(shape)
		switch v.DType {
		case DTypeFloat32:
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.Float64()*2 - 1)
			}
			feeds[v.Name] = ort.NewTensor(x, shape...)
		case DTypeFloat64:
			x := make([]float64, n)
			for i := range x {
				x[i] = rng.Float64()*2 - 1
			}
			feeds[v.Name] = ort.NewTensor(x, shape...)
		case DTypeInt64:
			feeds[v.Name] = ort.NewTensor(make([]int64, n), shape...)
		case DTypeInt32:
			feeds[v.Name] = ort.NewTensor(make([]int32, n), shape...)
		case DTypeBool:
			feeds[v.Name] = ort.NewTensor(make([]bool, n), shape...)
		default:
			return nil, fmt.Errorf("%w: cannot make a %v verification input for %q; give WithVerifyInputs or WithVerify(false)", ErrUnsupported, v.DType, v.Name)
		}
	}
	return feeds, nil
}

// runModel runs m once through ONNX Runtime.
func runModel(ctx context.Context, m *Model, feeds map[string]ort.Tensor) (map[string]ort.Tensor, error) {
	data, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	s, err := ort.NewSession(data, ort.WithIntraOpThreads(1))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Run(ctx, feeds)
}
