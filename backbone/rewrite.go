package backbone

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Splice is one edge rewrite: Graph computes the edge's new value from its old one, and every name
// Graph adds is prefixed with Scope.
type Splice struct {
	// Edge is the tensor to replace and the nodes that read it (see Edge.Consumers).
	Edge Edge
	// Graph computes the new value.
	Graph Subgraph
	// Scope prefixes every name the subgraph adds to the model: node names, intermediate values,
	// Params and Constants (a Param "A" under scope "lora/block.3/query/" becomes the graph input
	// "lora/block.3/query/A"). It should end with a separator.
	Scope string
}

// Splice returns a model in which each splice's subgraph replaces its edge. Every new parameter
// becomes a graph input with a default initializer (its "off" value), so the result runs with or
// without the parameters being fed.
//
// An edge with consumers is rewritten for those nodes only. An edge without consumers is
// rewritten for every reader: when a node computes it, that node's output is renamed to
// Scope+Graph.Input and the subgraph's output takes the edge's name, so graph outputs, later
// splices and manifests naming the edge all see the new value.
//
// The result is validated; the subgraph's output must have the edge's element type and, for
// weights and block outputs, its shape where both are known. Edges of packed tensors (with a
// Slice) must be unpacked first (Unpack).
func (m *Model) Splice(splices ...Splice) (*Model, error) {
	pb := cloneModel(m.pb)
	type check struct {
		what         string
		in, out      string
		compareShape bool
	}
	var checks []check
	for i, s := range splices {
		in, out, err := spliceOne(pb, s)
		if err != nil {
			return nil, fmt.Errorf("splice %d (%s edge %q): %w", i, s.Edge.Role, s.Edge.Tensor, err)
		}
		checks = append(checks, check{
			what: fmt.Sprintf("splice %d (%s edge %q)", i, s.Edge.Role, s.Edge.Tensor), in: in, out: out,
			compareShape: s.Edge.Kind == KindWeight || s.Edge.Role == RoleOutput,
		})
	}
	out, err := finish(pb, false)
	if err != nil {
		return nil, fmt.Errorf("splice: %w", err)
	}
	inf := inferGraph(out.pb.Graph)
	for _, c := range checks {
		was, now := inf.types[c.in], inf.types[c.out]
		if was.DType != DTypeUndefined && now.DType != DTypeUndefined && was.DType != now.DType {
			return nil, fmt.Errorf("splice: %s: %w: the subgraph returns %v, the edge is %v", c.what, ErrInvalidGraph, now.DType, was.DType)
		}
		if c.compareShape && !shapesCompatible(was.Shape, now.Shape) {
			return nil, fmt.Errorf("splice: %s: %w: the subgraph returns shape %v, the edge has %v", c.what, ErrInvalidGraph, now.Shape, was.Shape)
		}
	}
	return out, nil
}

// spliceOne applies s to pb and returns the names of the edge's old and new values.
func spliceOne(pb *onnxpb.ModelProto, s Splice) (oldName, newName string, err error) {
	g := pb.Graph
	e, sub := s.Edge, s.Graph
	if e.Slice != nil {
		return "", "", fmt.Errorf("%w: the edge is a slice of packed tensor %q; Unpack the manifest first", ErrUnsupported, e.Tensor)
	}
	ix := newIndex(g)
	if !ix.defined(e.Tensor) {
		return "", "", fmt.Errorf("%w: %q", ErrNoSuchTensor, e.Tensor)
	}
	if err := checkSubgraph(sub, ix); err != nil {
		return "", "", err
	}
	used := allNames(g)
	global := func(local string) string { return s.Scope + local }

	// Decide where the edge's value comes from and who reads the new one.
	var readers []int
	insertAt := len(g.Node)
	prodIdx, produced := ix.producer[e.Tensor]
	if len(e.Consumers) == 0 && produced {
		oldName, newName = global(sub.Input), e.Tensor
		if err := checkNewName(used, oldName); err != nil {
			return "", "", err
		}
		p := g.Node[prodIdx]
		for j, o := range p.Output {
			if o == e.Tensor {
				p.Output[j] = oldName
			}
		}
		insertAt = prodIdx + 1
	} else {
		oldName, newName = e.Tensor, global(sub.Output)
		if err := checkNewName(used, newName); err != nil {
			return "", "", err
		}
		if len(e.Consumers) == 0 {
			readers = ix.consumers[e.Tensor]
		}
		for _, c := range e.Consumers {
			found := false
			for j, n := range g.Node {
				if n.GetName() == c {
					readers, found = append(readers, j), true
					break
				}
			}
			if !found {
				return "", "", fmt.Errorf("%w: consumer node %q not found", ErrStaleEdge, c)
			}
		}
		for _, r := range readers {
			n := g.Node[r]
			if !slices.Contains(n.Input, e.Tensor) {
				return "", "", fmt.Errorf("%w: node %q does not read %q (already rewritten?)", ErrStaleEdge, n.GetName(), e.Tensor)
			}
			for j, x := range n.Input {
				if x == e.Tensor {
					n.Input[j] = newName
				}
			}
			insertAt = min(insertAt, r)
		}
	}

	// Map local names to global ones.
	names := map[string]string{sub.Input: oldName, sub.Output: newName}
	for _, r := range sub.Refs {
		names[r] = r
	}
	local := func(n string) string {
		if n == "" {
			return ""
		}
		if gname, ok := names[n]; ok {
			return gname
		}
		gname := global(n)
		names[n] = gname
		return gname
	}
	for _, t := range sub.Constants {
		name := local(t.Name)
		if err := checkNewName(used, name); err != nil {
			return "", "", err
		}
		g.Initializer = append(g.Initializer, tensorProto(t, name))
	}
	for _, t := range sub.Params {
		name := local(t.Name)
		if err := checkNewName(used, name); err != nil {
			return "", "", err
		}
		g.Initializer = append(g.Initializer, tensorProto(t, name))
		g.Input = append(g.Input, valueInfoProto(name, t.DType, ShapeOf(t.Shape...)))
	}
	domains := map[string]bool{"": true, "ai.onnx": true}
	for _, o := range pb.GetOpsetImport() {
		domains[o.GetDomain()] = true
	}
	nodes := make([]*onnxpb.NodeProto, 0, len(sub.Nodes))
	for k, n := range sub.Nodes {
		if !domains[n.Domain] {
			return "", "", fmt.Errorf("%w: node %d (%s) uses domain %q, which the model does not import", ErrUnsupported, k, n.Op, n.Domain)
		}
		nodeName := n.Name
		if nodeName == "" {
			nodeName = n.Op + "_" + strconv.Itoa(k)
		}
		np := &onnxpb.NodeProto{OpType: proto.String(n.Op), Name: proto.String(global(nodeName))}
		if n.Domain != "" {
			np.Domain = proto.String(n.Domain)
		}
		if err := checkNewName(used, np.GetName()); err != nil {
			return "", "", err
		}
		for _, x := range n.Inputs {
			np.Input = append(np.Input, local(x))
		}
		for _, o := range n.Outputs {
			gname := local(o)
			if o != sub.Output {
				if err := checkNewName(used, gname); err != nil {
					return "", "", err
				}
			}
			np.Output = append(np.Output, gname)
		}
		for _, at := range n.Attrs {
			ap, err := attrProto(at)
			if err != nil {
				return "", "", fmt.Errorf("node %d (%s): %w", k, n.Op, err)
			}
			np.Attribute = append(np.Attribute, ap)
		}
		nodes = append(nodes, np)
	}
	g.Node = slices.Insert(g.Node, insertAt, nodes...)
	return oldName, newName, nil
}

// checkSubgraph checks a subgraph's own consistency (sdk.Subgraph.Validate) and that the model
// tensors it refers to exist.
func checkSubgraph(sub Subgraph, ix *graphIndex) error {
	if err := sub.Validate(); err != nil {
		return fmt.Errorf("subgraph: %w: %w", ErrInvalidGraph, err)
	}
	for _, r := range sub.Refs {
		if !ix.defined(r) {
			return fmt.Errorf("subgraph ref %q: %w", r, ErrNoSuchTensor)
		}
	}
	return nil
}

// Unpack splits every packed weight in the manifest (edges with a Slice, e.g. the q, k and v
// parts of torch's in_proj_weight) into separate initializers joined by a Concat, so that each
// part is an edge of its own. It returns the rewritten model and a manifest whose edges name the
// parts ("<param>.query", ...; consumer: the Concat). Outputs are unchanged.
func (m *Model) Unpack(man *Manifest) (*Model, *Manifest, error) {
	pb := cloneModel(m.pb)
	g := pb.Graph
	ix := newIndex(g)
	used := allNames(g)
	out := *man
	out.Blocks = slices.Clone(man.Blocks)
	type group struct {
		edges []*Edge
	}
	for bi := range out.Blocks {
		b := &out.Blocks[bi]
		b.Edges = slices.Clone(b.Edges)
		groups := map[string]*group{}
		var order []string
		for ei := range b.Edges {
			e := &b.Edges[ei]
			if e.Slice == nil {
				continue
			}
			k := e.Tensor + "\x00" + strings.Join(e.Consumers, "\x00")
			if groups[k] == nil {
				groups[k] = &group{}
				order = append(order, k)
			}
			groups[k].edges = append(groups[k].edges, e)
		}
		for _, k := range order {
			if err := unpackGroup(g, ix, used, groups[k].edges); err != nil {
				return nil, nil, fmt.Errorf("unpack block %d (%s): %w", bi, b.Name, err)
			}
		}
	}
	res, err := finish(pb, true)
	if err != nil {
		return nil, nil, fmt.Errorf("unpack: %w", err)
	}
	if err := res.ValidateManifest(&out); err != nil {
		return nil, nil, fmt.Errorf("unpack: %w", err)
	}
	return res, &out, nil
}

// unpackGroup replaces the packed tensor read by one group's consumers.
func unpackGroup(g *onnxpb.GraphProto, ix *graphIndex, used map[string]bool, edges []*Edge) error {
	e0 := edges[0]
	tensor, consumers := e0.Tensor, slices.Clone(e0.Consumers)
	var data *onnxpb.TensorProto
	for _, al := range ix.aliases(tensor) {
		if t := ix.init[al]; t != nil && !ix.input[al] {
			data = t
		}
	}
	if data == nil {
		return fmt.Errorf("%w: packed tensor %q is not an initializer", ErrUnsupported, tensor)
	}
	axis := e0.Slice.Axis
	dims := data.GetDims()
	if axis < 0 || axis >= len(dims) {
		return fmt.Errorf("%w: slice axis %d of %q with shape %v", ErrInvalidManifest, axis, tensor, dims)
	}
	slices.SortFunc(edges, func(a, b *Edge) int { return int(a.Slice.Start - b.Slice.Start) })
	base := e0.Param
	if base == "" {
		base = tensor
	}
	concat := &onnxpb.NodeProto{OpType: proto.String("Concat"), Name: proto.String(base + "/unpack"),
		Attribute: []*onnxpb.AttributeProto{{Name: proto.String("axis"), I: proto.Int64(int64(axis)), Type: onnxpb.AttributeProto_INT.Enum()}},
		Output:    []string{base + ".unpacked"}}
	if err := checkNewName(used, concat.GetName()); err != nil {
		return err
	}
	if err := checkNewName(used, concat.Output[0]); err != nil {
		return err
	}
	addPart := func(name string, start, end int64) error {
		if err := checkNewName(used, name); err != nil {
			return err
		}
		t, err := sliceTensor(data, name, axis, start, end)
		if err != nil {
			return err
		}
		g.Initializer = append(g.Initializer, t)
		concat.Input = append(concat.Input, name)
		return nil
	}
	pos := int64(0)
	for k, e := range edges {
		if e.Slice.Axis != axis || e.Slice.Start < pos {
			return fmt.Errorf("%w: slices of %q overlap or use different axes", ErrInvalidManifest, tensor)
		}
		if e.Slice.Start > pos {
			if err := addPart(base+".part"+strconv.Itoa(k), pos, e.Slice.Start); err != nil {
				return err
			}
		}
		name := base + "." + string(e.Role)
		if err := addPart(name, e.Slice.Start, e.Slice.End); err != nil {
			return err
		}
		pos = e.Slice.End
		e.Tensor, e.Consumers, e.Slice = name, []string{concat.GetName()}, nil
		e.Shape = ShapeOf(g.Initializer[len(g.Initializer)-1].GetDims()...)
	}
	if pos < dims[axis] {
		if err := addPart(base+".rest", pos, dims[axis]); err != nil {
			return err
		}
	}
	readers := ix.consumers[tensor]
	if len(consumers) > 0 {
		readers = nil
		for i, n := range g.Node {
			if slices.Contains(consumers, n.GetName()) {
				readers = append(readers, i)
			}
		}
	}
	if len(readers) == 0 {
		return fmt.Errorf("%w: nothing reads %q", ErrStaleEdge, tensor)
	}
	first := len(g.Node)
	for _, r := range readers {
		n := g.Node[r]
		if !slices.Contains(n.Input, tensor) {
			return fmt.Errorf("%w: node %q does not read %q", ErrStaleEdge, n.GetName(), tensor)
		}
		for j, x := range n.Input {
			if x == tensor {
				n.Input[j] = concat.Output[0]
			}
		}
		first = min(first, r)
	}
	g.Node = slices.Insert(g.Node, first, concat)
	// Later groups index the graph by position: keep the index current.
	*ix = *newIndex(g)
	return nil
}

// ExposeOutputs returns a model that also outputs the named intermediate tensors (after the
// existing outputs, in the given order; names already output are skipped). Their types come from
// value_info or inference.
func (m *Model) ExposeOutputs(names ...string) (*Model, error) {
	pb := cloneModel(m.pb)
	g := pb.Graph
	ix := newIndex(g)
	inf := inferGraph(g)
	for _, name := range names {
		if ix.output[name] {
			continue
		}
		if _, ok := ix.producer[name]; !ok {
			if ix.defined(name) {
				return nil, fmt.Errorf("expose %q: only values computed by nodes can be exposed: %w", name, ErrUnsupported)
			}
			return nil, fmt.Errorf("expose %q: %w", name, ErrNoSuchTensor)
		}
		t := typeOf(inf, name)
		g.Output = append(g.Output, valueInfoProto(name, t.DType, t.Shape))
		ix.output[name] = true
	}
	out, err := finish(pb, false)
	if err != nil {
		return nil, fmt.Errorf("expose outputs: %w", err)
	}
	return out, nil
}

// Cut splits the model at the given tensors (typically one block input: the activation below a
// trainable group). The trunk computes the cut tensors from the model's inputs and outputs them;
// the top takes them as inputs (plus any original graph input it still reads) and computes the
// model's outputs. Feeding the trunk's outputs to the top reproduces the model's outputs.
//
// Constant-only computations are copied into both parts. If the top would need anything else
// computed below the cut, Cut fails with ErrCutLeak naming those values: add them to the cut.
func (m *Model) Cut(at ...string) (trunk, top *Model, err error) {
	if len(at) == 0 {
		return nil, nil, fmt.Errorf("cut: %w: no tensors to cut at", ErrInvalidGraph)
	}
	g := m.pb.Graph
	ix := newIndex(g)
	inf := inferGraph(g)
	memo := map[string]bool{}
	stop := map[string]bool{}
	for _, v := range at {
		if _, ok := ix.producer[v]; !ok {
			if ix.defined(v) {
				return nil, nil, fmt.Errorf("cut at %q: %w: only values computed by nodes can be cut at", v, ErrUnsupported)
			}
			return nil, nil, fmt.Errorf("cut at %q: %w", v, ErrNoSuchTensor)
		}
		if ix.isConstant(v, memo) {
			return nil, nil, fmt.Errorf("cut at %q: %w: the value is constant", v, ErrUnsupported)
		}
		stop[v] = true
	}
	var outs []string
	for _, o := range g.GetOutput() {
		outs = append(outs, o.GetName())
	}
	below := ix.ancestors(at, nil)
	above := ix.ancestors(outs, stop)
	// The top must read every cut tensor.
	for _, v := range at {
		read := ix.output[v]
		for _, c := range ix.consumers[v] {
			read = read || above[c]
		}
		if !read {
			return nil, nil, fmt.Errorf("cut at %q: %w: the model's outputs do not depend on it", v, ErrCutLeak)
		}
	}
	var leaks []string
	leaked := map[string]bool{}
	for i := range g.GetNode() {
		if !above[i] || !below[i] {
			continue
		}
		n := g.Node[i]
		if allConst(n, ix, memo) {
			continue
		}
		for _, o := range n.GetOutput() {
			for _, c := range ix.consumers[o] {
				if above[c] && !below[c] && !leaked[o] {
					leaked[o] = true
					leaks = append(leaks, o)
				}
			}
			if ix.output[o] && !leaked[o] {
				leaked[o] = true
				leaks = append(leaks, o)
			}
		}
	}
	if len(leaks) > 0 {
		return nil, nil, fmt.Errorf("cut at %s: %w: the part above also needs %s", strings.Join(quoteAll(at), ", "), ErrCutLeak,
			strings.Join(quoteAll(leaks[:min(10, len(leaks))]), ", "))
	}
	mk := func(keep map[int]bool, inputs []*onnxpb.ValueInfoProto, outputs []*onnxpb.ValueInfoProto) (*Model, error) {
		pb := cloneModel(m.pb)
		pg := pb.Graph
		var nodes []*onnxpb.NodeProto
		read := map[string]bool{}
		for i, n := range pg.Node {
			if keep[i] {
				nodes = append(nodes, n)
				for _, x := range nodeInputs(n) {
					read[x] = true
				}
			}
		}
		for _, o := range outputs {
			read[o.GetName()] = true
		}
		pg.Node = nodes
		pg.Output = outputs
		var ins []*onnxpb.ValueInfoProto
		for _, v := range inputs {
			if read[v.GetName()] {
				ins = append(ins, proto.Clone(v).(*onnxpb.ValueInfoProto))
			}
		}
		pg.Input = ins
		io := map[string]bool{}
		for _, v := range append(slices.Clone(ins), outputs...) {
			io[v.GetName()] = true
		}
		pg.ValueInfo = slices.DeleteFunc(pg.ValueInfo, func(v *onnxpb.ValueInfoProto) bool { return io[v.GetName()] })
		return finish(pb, true)
	}
	cutInfos := make([]*onnxpb.ValueInfoProto, len(at))
	for i, v := range at {
		t := typeOf(inf, v)
		cutInfos[i] = valueInfoProto(v, t.DType, t.Shape)
	}
	// Constant-only nodes the top needs are kept there too (they are in `above` already).
	trunk, err = mk(below, g.GetInput(), cutInfos)
	if err != nil {
		return nil, nil, fmt.Errorf("cut: trunk: %w", err)
	}
	topInputs := append(slices.Clone(cutInfos), g.GetInput()...)
	var topOutputs []*onnxpb.ValueInfoProto
	for _, o := range g.GetOutput() {
		topOutputs = append(topOutputs, proto.Clone(o).(*onnxpb.ValueInfoProto))
	}
	top, err = mk(above, topInputs, topOutputs)
	if err != nil {
		return nil, nil, fmt.Errorf("cut: top: %w", err)
	}
	return trunk, top, nil
}

// allConst reports whether every output of n is constant.
func allConst(n *onnxpb.NodeProto, ix *graphIndex, memo map[string]bool) bool {
	for _, o := range n.GetOutput() {
		if o != "" && !ix.isConstant(o, memo) {
			return false
		}
	}
	return true
}
