package adapters

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/onnx-gomlx/onnx"
)

// This file checks and normalises an ONNX graph for onnx-gomlx v0.3.4 before it is converted,
// so that a graph it would convert wrongly or not at all gives a clear error instead of a wrong
// result or a panic deep inside the conversion.
//
// What our graphs need (the committed ViT, its top part above any block, LoRA splices, and a
// linear head built in GoMLX): Add, Sub, Mul, Div, Pow, Sqrt, Erf, ReduceMean, MatMul, Gemm,
// Transpose, Reshape, Softmax, Gather, Constant, and below the first block Conv and Pad. All are
// converted by onnx-gomlx; TestOps checks each against ONNX Runtime (forward) and finite
// differences (gradient). Two gaps are hit and filled here or in backend.go:
//   - Pad with an omitted optional input: the ViT's Pad nodes list constant_value as "" (omitted),
//     and onnx-gomlx passes that missing input on as a nil node ("invalid input[1]: Node is nil").
//     Trailing omitted inputs mean exactly what a shorter input list means in ONNX, so they are
//     trimmed from every node.
//   - Pad itself is missing from the simplego backend: backend.go implements it.
//
// Known gaps that our graphs do not hit are refused with ErrUnsupported naming the nodes:
//   - operators onnx-gomlx does not convert (among those PEFT graphs are likely to meet: Sigmoid,
//     ReduceSum, ReduceMax, LogSoftmax, Gelu, Dropout, fused attention and every non-default
//     domain);
//   - Gemm with C and beta != alpha: onnx-gomlx v0.3.4 reads the "alpha" attribute for beta
//     (ops.go: `beta := getFloatAttrOr(node, "alpha", 1.0)`), so it would scale C by alpha. The
//     ViT's classifier Gemm has alpha = beta = 1.
//
// The exact-erf GELU that torch exports (x · 0.5 · (1 + Erf(x / √2))) is made of supported
// operators and needs nothing.

// onnxGoMLXOps lists the operators onnx-gomlx v0.3.4 converts (onnx/graph.go, convertNode).
var onnxGoMLXOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true,
	"And": true, "Or": true, "Xor": true, "BitwiseAnd": true, "BitwiseOr": true, "BitwiseXor": true,
	"Equal": true, "Less": true, "LessOrEqual": true, "Greater": true, "GreaterOrEqual": true,
	"Sqrt": true, "Exp": true, "Log": true, "Erf": true, "Relu": true, "Abs": true, "Neg": true,
	"Sign": true, "Ceil": true, "Floor": true, "Identity": true, "Not": true, "BitwiseNot": true,
	"Tanh": true, "Sin": true, "Cos": true,
	"MatMul": true, "Clip": true, "Where": true, "Min": true, "Max": true,
	"Constant": true, "Gather": true, "GatherElements": true, "Shape": true, "Concat": true,
	"Softmax": true, "Cast": true, "Transpose": true, "Gemm": true, "Flatten": true,
	"DequantizeLinear": true, "QuantizeLinear": true, "MatMulInteger": true, "QLinearMatMul": true,
	"Squeeze": true, "Unsqueeze": true, "Slice": true, "Reshape": true, "ReduceMean": true,
	"ConstantOfShape": true, "Expand": true, "Tile": true, "Range": true, "CumSum": true,
	"LSTM": true, "Conv": true, "AveragePool": true, "MaxPool": true, "GlobalAveragePool": true,
	"BatchNormalization": true, "LayerNormalization": true,
	"Pad": true, "DynamicQuantizeLinear": true, "Split": true, "Trilu": true, "ScatterND": true,
	"If": true,
}

// prepare checks that onnx-gomlx can convert every node of m correctly and normalises the nodes
// it would otherwise mishandle (see the file comment). It modifies m.Proto in place.
func prepare(m *onnx.Model) error {
	g := m.Proto.Graph
	if g == nil {
		return fmt.Errorf("%w: model has no graph", ErrInvalidArgument)
	}
	if len(m.Proto.Functions) > 0 {
		return fmt.Errorf("%w: model-local functions", ErrUnsupported)
	}
	if len(g.SparseInitializer) > 0 {
		return fmt.Errorf("%w: sparse initializers", ErrUnsupported)
	}
	unsupported := map[string][]string{} // operator -> node names
	for _, n := range g.Node {
		for len(n.Input) > 0 && n.Input[len(n.Input)-1] == "" {
			n.Input = n.Input[:len(n.Input)-1]
		}
		if op := unsupportedOp(n.Domain, n.OpType, len(n.Input), n.Attribute); op != "" {
			unsupported[op] = append(unsupported[op], n.Name)
		}
	}
	if len(unsupported) == 0 {
		return nil
	}
	ops := make([]string, 0, len(unsupported))
	for op := range unsupported {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var parts []string
	for _, op := range ops {
		names := unsupported[op]
		if len(names) > 3 {
			names = append(slices.Clip(names[:3]), fmt.Sprintf("%d more", len(unsupported[op])-3))
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", op, strings.Join(names, ", ")))
	}
	return fmt.Errorf("%w: operators onnx-gomlx v0.3.4 cannot convert correctly: %s",
		ErrUnsupported, strings.Join(parts, "; "))
}

// attribute is the part of an ONNX AttributeProto that unsupportedOp reads (onnx-gomlx keeps its
// protobuf types internal, so the attribute list is passed generically).
type attribute interface {
	GetName() string
	GetF() float32
}

// unsupportedOp returns "" when onnx-gomlx converts the node correctly, else how to name its
// operator in an error.
func unsupportedOp[A attribute](domain, op string, inputs int, attrs []A) string {
	switch {
	case domain != "" && domain != "ai.onnx":
		return domain + ":" + op
	case !onnxGoMLXOps[op]:
		return op
	case op == "Gemm" && inputs > 2:
		alpha, beta := float32(1), float32(1)
		for _, a := range attrs {
			switch a.GetName() {
			case "alpha":
				alpha = a.GetF()
			case "beta":
				beta = a.GetF()
			}
		}
		if alpha != beta {
			return fmt.Sprintf("Gemm(alpha=%g, beta=%g)", alpha, beta)
		}
	}
	return ""
}
