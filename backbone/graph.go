package backbone

// Graph plumbing shared by inspection, manifest detection, rewrites and validation: an index of
// producers and consumers, ancestor walks, a stable topological sort and cheap cloning. Rewrites
// (and later passes such as constant folding) work on a cloned ModelProto, then call finish to
// sort, prune and validate it.

import (
	"container/heap"
	"fmt"
	"strings"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// graphIndex maps value names to the nodes that produce and consume them.
type graphIndex struct {
	g         *onnxpb.GraphProto
	producer  map[string]int   // value -> index of the node that outputs it
	consumers map[string][]int // value -> indices of nodes that read it (subgraph references included)
	init      map[string]*onnxpb.TensorProto
	input     map[string]bool // graph inputs (with or without initializer)
	output    map[string]bool // graph outputs
}

func newIndex(g *onnxpb.GraphProto) *graphIndex {
	ix := &graphIndex{
		g:         g,
		producer:  make(map[string]int, len(g.GetNode())),
		consumers: make(map[string][]int, len(g.GetNode())),
		init:      make(map[string]*onnxpb.TensorProto, len(g.GetInitializer())),
		input:     make(map[string]bool, len(g.GetInput())),
		output:    make(map[string]bool, len(g.GetOutput())),
	}
	for _, t := range g.GetInitializer() {
		ix.init[t.GetName()] = t
	}
	for _, v := range g.GetInput() {
		ix.input[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		ix.output[v.GetName()] = true
	}
	for i, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				ix.producer[o] = i
			}
		}
		for _, in := range nodeInputs(n) {
			if c := ix.consumers[in]; len(c) == 0 || c[len(c)-1] != i {
				ix.consumers[in] = append(c, i)
			}
		}
	}
	return ix
}

// node returns the node that produces v, or nil for graph inputs, initializers and unknown names.
func (ix *graphIndex) node(v string) *onnxpb.NodeProto {
	if i, ok := ix.producer[v]; ok {
		return ix.g.Node[i]
	}
	return nil
}

// defined reports whether v is a graph input, an initializer or a node output.
func (ix *graphIndex) defined(v string) bool {
	_, p := ix.producer[v]
	return p || ix.input[v] || ix.init[v] != nil
}

// isConstant reports whether v depends on nothing a caller feeds: an initializer that is not an
// overridable graph input, or the output of nodes whose inputs are all constant. memo caches
// answers across calls.
func (ix *graphIndex) isConstant(v string, memo map[string]bool) bool {
	if c, ok := memo[v]; ok {
		return c
	}
	memo[v] = false // breaks cycles in malformed graphs
	var c bool
	switch {
	case ix.input[v]:
		c = false
	case ix.init[v] != nil:
		c = true
	default:
		n := ix.node(v)
		if n == nil || isRandomOp(n.GetOpType()) {
			break
		}
		c = true
		for _, in := range nodeInputs(n) {
			if !ix.isConstant(in, memo) {
				c = false
				break
			}
		}
	}
	memo[v] = c
	return c
}

func isRandomOp(op string) bool {
	return strings.HasPrefix(op, "Random") || op == "Multinomial" || op == "Bernoulli"
}

// ancestors returns the indices of the nodes needed to compute the values in targets, not
// walking past the values in stop.
func (ix *graphIndex) ancestors(targets []string, stop map[string]bool) map[int]bool {
	seen := map[int]bool{}
	stack := append([]string{}, targets...)
	visited := map[string]bool{}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[v] || stop[v] {
			continue
		}
		visited[v] = true
		i, ok := ix.producer[v]
		if !ok || seen[i] {
			continue
		}
		seen[i] = true
		stack = append(stack, nodeInputs(ix.g.Node[i])...)
	}
	return seen
}

// nodeInputs returns the names a node reads: its non-empty inputs, then the outer-scope names its
// subgraph attributes (If, Loop, Scan bodies) refer to.
func nodeInputs(n *onnxpb.NodeProto) []string {
	out := make([]string, 0, len(n.GetInput()))
	for _, in := range n.GetInput() {
		if in != "" {
			out = append(out, in)
		}
	}
	for _, a := range n.GetAttribute() {
		for _, sg := range append([]*onnxpb.GraphProto{a.GetG()}, a.GetGraphs()...) {
			if sg != nil {
				out = append(out, outerRefs(sg)...)
			}
		}
	}
	return out
}

// outerRefs returns the names g reads without defining them.
func outerRefs(g *onnxpb.GraphProto) []string {
	def := map[string]bool{}
	for _, v := range g.GetInput() {
		def[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		def[t.GetName()] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, in := range nodeInputs(n) {
			if !def[in] && !seen[in] {
				seen[in] = true
				out = append(out, in)
			}
		}
		for _, o := range n.GetOutput() {
			def[o] = true
		}
	}
	for _, v := range g.GetOutput() {
		if !def[v.GetName()] && !seen[v.GetName()] {
			seen[v.GetName()] = true
			out = append(out, v.GetName())
		}
	}
	return out
}

// intHeap is a min-heap of node indices, used to keep the original order where possible.
type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sortNodes orders g's nodes topologically, keeping the existing order wherever the dependencies
// allow (Kahn's algorithm, lowest index first). It fails on a cycle.
func sortNodes(g *onnxpb.GraphProto) error {
	nodes := g.GetNode()
	producer := make(map[string]int, len(nodes))
	for i, n := range nodes {
		for _, o := range n.GetOutput() {
			if o != "" {
				producer[o] = i
			}
		}
	}
	indeg := make([]int, len(nodes))
	users := make([][]int, len(nodes))
	for i, n := range nodes {
		deps := map[int]bool{}
		for _, in := range nodeInputs(n) {
			if p, ok := producer[in]; ok && p != i && !deps[p] {
				deps[p] = true
				users[p] = append(users[p], i)
				indeg[i]++
			}
		}
	}
	h := &intHeap{}
	for i := range nodes {
		if indeg[i] == 0 {
			*h = append(*h, i)
		}
	}
	heap.Init(h)
	order := make([]*onnxpb.NodeProto, 0, len(nodes))
	for h.Len() > 0 {
		i := heap.Pop(h).(int)
		order = append(order, nodes[i])
		for _, u := range users[i] {
			if indeg[u]--; indeg[u] == 0 {
				heap.Push(h, u)
			}
		}
	}
	if len(order) != len(nodes) {
		return fmt.Errorf("%w: the graph has a cycle", ErrInvalidGraph)
	}
	g.Node = order
	return nil
}

// cloneModel returns a copy of m that can be modified freely, except that initializer tensors
// (their data can be large) are shared: replace them, never modify them in place.
func cloneModel(m *onnxpb.ModelProto) *onnxpb.ModelProto {
	out := cloneExcept(m, "graph").(*onnxpb.ModelProto)
	if m.Graph != nil {
		g := cloneExcept(m.Graph, "initializer").(*onnxpb.GraphProto)
		g.Initializer = append([]*onnxpb.TensorProto(nil), m.Graph.Initializer...)
		out.Graph = g
	}
	return out
}

// cloneExcept deep-copies msg without the named fields.
func cloneExcept(msg proto.Message, skip ...string) proto.Message {
	src := msg.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		for _, s := range skip {
			if string(fd.Name()) == s {
				return true
			}
		}
		dst.Set(fd, v)
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	return proto.Clone(dst.Interface())
}

// prune removes nodes whose outputs nobody reads (no node, no graph output), then initializers
// and value_info entries that nothing refers to. Graph inputs are kept.
func prune(g *onnxpb.GraphProto) {
	ix := newIndex(g)
	targets := make([]string, 0, len(g.GetOutput()))
	for _, o := range g.GetOutput() {
		targets = append(targets, o.GetName())
	}
	keep := ix.ancestors(targets, nil)
	nodes := g.Node[:0:0]
	used := map[string]bool{}
	for i, n := range g.GetNode() {
		if keep[i] {
			nodes = append(nodes, n)
			for _, in := range nodeInputs(n) {
				used[in] = true
			}
			for _, o := range n.GetOutput() {
				used[o] = true
			}
		}
	}
	g.Node = nodes
	for _, o := range g.GetOutput() {
		used[o.GetName()] = true
	}
	inputs := map[string]bool{}
	for _, v := range g.GetInput() {
		inputs[v.GetName()] = true
	}
	inits := g.Initializer[:0:0]
	for _, t := range g.GetInitializer() {
		if used[t.GetName()] || inputs[t.GetName()] {
			inits = append(inits, t)
		}
	}
	g.Initializer = inits
	vis := g.ValueInfo[:0:0]
	for _, v := range g.GetValueInfo() {
		if used[v.GetName()] {
			vis = append(vis, v)
		}
	}
	g.ValueInfo = vis
}

// allNames returns every name used in g: values, initializers, inputs, outputs and node names.
func allNames(g *onnxpb.GraphProto) map[string]bool {
	s := map[string]bool{}
	for _, v := range g.GetInput() {
		s[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		s[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		s[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		if n.GetName() != "" {
			s[n.GetName()] = true
		}
		for _, o := range n.GetOutput() {
			s[o] = true
		}
		for _, in := range n.GetInput() {
			s[in] = true
		}
	}
	delete(s, "")
	return s
}

// finish sorts, prunes (when asked) and validates a rewritten model.
func finish(pb *onnxpb.ModelProto, pruneUnused bool) (*Model, error) {
	if err := sortNodes(pb.Graph); err != nil {
		return nil, err
	}
	if pruneUnused {
		prune(pb.Graph)
	}
	m := &Model{pb: pb}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// attr returns the attribute named name, or nil.
func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// attrInt returns an int attribute or def.
func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}
