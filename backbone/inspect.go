package backbone

import (
	"cmp"
	"slices"
	"strings"
)

// Info summarises a model for people and tools: what `s3t backbone inspect` prints.
type Info struct {
	// IRVersion is the ONNX IR version of the file.
	IRVersion int64 `json:"ir_version"`
	// Producer is the producing tool and its version, e.g. "pytorch 1.13.0".
	Producer string `json:"producer"`
	// Domain and ModelVersion are the model's own metadata (often empty).
	Domain       string `json:"domain,omitempty"`
	ModelVersion int64  `json:"model_version,omitempty"`
	// Opsets lists the imported operator sets.
	Opsets []Opset `json:"opsets"`
	// Inputs are the graph inputs a caller feeds (without default initializers).
	Inputs []ValueInfo `json:"inputs"`
	// Params are graph inputs that have default initializers (e.g. spliced PEFT parameters).
	Params []ValueInfo `json:"params,omitempty"`
	// Outputs are the graph outputs.
	Outputs []ValueInfo `json:"outputs"`
	// Initializers summarises the stored tensors.
	Initializers InitializerStats `json:"initializers"`
	// Nodes is the number of nodes in the main graph.
	Nodes int `json:"nodes"`
	// Ops counts nodes per operator, most frequent first. Operators outside the default domain
	// are written "domain:Op".
	Ops []OpCount `json:"ops"`
	// Functions lists model-local functions ("domain:name"), if any.
	Functions []string `json:"functions,omitempty"`
}

// Opset is one imported operator set.
type Opset struct {
	// Domain is "" for the default ONNX domain.
	Domain string `json:"domain"`
	// Version is the opset version.
	Version int64 `json:"version"`
}

// InitializerStats summarises a model's initializers.
type InitializerStats struct {
	// Count is the number of initializers.
	Count int `json:"count"`
	// Parameters is the number of floating-point elements: the model's parameter count.
	Parameters int64 `json:"parameters"`
	// Bytes is the size of all initializer data.
	Bytes int64 `json:"bytes"`
	// ByDType counts initializers per element type.
	ByDType map[string]int `json:"by_dtype"`
	// Largest lists up to 5 of the largest initializers by element count.
	Largest []ValueInfo `json:"largest"`
}

// OpCount is the number of nodes of one operator type.
type OpCount struct {
	// Op is the operator, "domain:Op" outside the default domain.
	Op string `json:"op"`
	// Count is the number of nodes.
	Count int `json:"count"`
}

// Inspect summarises the model.
func (m *Model) Inspect() Info {
	pb := m.pb
	g := pb.GetGraph()
	info := Info{
		IRVersion:    pb.GetIrVersion(),
		Producer:     strings.TrimSpace(pb.GetProducerName() + " " + pb.GetProducerVersion()),
		Domain:       pb.GetDomain(),
		ModelVersion: pb.GetModelVersion(),
		Inputs:       m.Inputs(),
		Params:       m.Params(),
		Outputs:      m.Outputs(),
		Nodes:        len(g.GetNode()),
	}
	if info.Inputs == nil {
		info.Inputs = []ValueInfo{}
	}
	for _, o := range pb.GetOpsetImport() {
		info.Opsets = append(info.Opsets, Opset{Domain: o.GetDomain(), Version: o.GetVersion()})
	}
	st := InitializerStats{ByDType: map[string]int{}}
	var all []ValueInfo
	for _, t := range g.GetInitializer() {
		st.Count++
		dt := DType(t.GetDataType())
		st.ByDType[dt.String()]++
		st.Bytes += tensorBytes(t)
		n := numElements(t.GetDims())
		if dt.IsFloat() {
			st.Parameters += n
		}
		all = append(all, ValueInfo{Name: t.GetName(), DType: dt, Shape: ShapeOf(t.GetDims()...)})
	}
	size := func(v ValueInfo) int64 { return numElements(v.Shape.Sizes()) }
	slices.SortStableFunc(all, func(a, b ValueInfo) int { return cmp.Compare(size(b), size(a)) })
	st.Largest = all[:min(5, len(all))]
	info.Initializers = st
	counts := map[string]int{}
	for _, n := range g.GetNode() {
		counts[opName(n.GetDomain(), n.GetOpType())]++
	}
	for op, c := range counts {
		info.Ops = append(info.Ops, OpCount{Op: op, Count: c})
	}
	slices.SortFunc(info.Ops, func(a, b OpCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Op, b.Op)
	})
	for _, f := range pb.GetFunctions() {
		info.Functions = append(info.Functions, opName(f.GetDomain(), f.GetName()))
	}
	return info
}

func opName(domain, op string) string {
	if domain == "" || domain == "ai.onnx" {
		return op
	}
	return domain + ":" + op
}
