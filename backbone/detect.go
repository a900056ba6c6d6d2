package backbone

// Manifest detection. Module paths come from three places in a PyTorch export: initializer names
// ("vit.encoder.layer.0.attention.attention.query.bias"), the names of Identity nodes that alias a
// shared initializer ("encoder.layers.1.self_attn.out_proj.weight"), and node names, which torch
// >= 1.13 writes as module scopes ("/vit/encoder/layer.0/attention/attention/query/MatMul"). Paths
// are compared component by component, so "layer.1" never matches "layer.10".

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/s3t-dev/s3t/backbone/internal/onnxpb"
)

// containerWords are the module names under which exporters list blocks as name.N.
var containerWords = map[string]bool{"layer": true, "layers": true, "blocks": true, "block": true, "h": true, "resblocks": true}

// linearRoles maps a linear layer's module path relative to its block to a role. Packed q/k/v
// projections map to rolePacked.
var linearRoles = map[string]Role{
	// Hugging Face ViT, DeiT
	"attention.attention.query": RoleQuery, "attention.attention.key": RoleKey, "attention.attention.value": RoleValue,
	// Hugging Face BERT, RoBERTa, ELECTRA
	"attention.self.query": RoleQuery, "attention.self.key": RoleKey, "attention.self.value": RoleValue,
	"attention.output.dense": RoleAttentionOutput, "intermediate.dense": RoleMLPIn, "output.dense": RoleMLPOut,
	// torch nn.TransformerEncoderLayer (separate projections when kdim/vdim differ) and Llama-style
	"self_attn.in_proj": rolePacked, "self_attn.q_proj": RoleQuery, "self_attn.k_proj": RoleKey,
	"self_attn.v_proj": RoleValue, "self_attn.out_proj": RoleAttentionOutput, "self_attn.o_proj": RoleAttentionOutput,
	"linear1": RoleMLPIn, "linear2": RoleMLPOut, "mlp.up_proj": RoleMLPIn, "mlp.down_proj": RoleMLPOut,
	// timm ViT
	"attn.qkv": rolePacked, "attn.proj": RoleAttentionOutput, "mlp.fc1": RoleMLPIn, "mlp.fc2": RoleMLPOut,
	// GPT-2
	"attn.c_attn": rolePacked, "attn.c_proj": RoleAttentionOutput, "mlp.c_fc": RoleMLPIn, "mlp.c_proj": RoleMLPOut,
}

// lastComponentRoles is the fallback for plain blocks: the linear module's own name.
var lastComponentRoles = map[string]Role{
	"query": RoleQuery, "q": RoleQuery, "q_proj": RoleQuery, "q_lin": RoleQuery,
	"key": RoleKey, "k": RoleKey, "k_proj": RoleKey, "k_lin": RoleKey,
	"value": RoleValue, "v": RoleValue, "v_proj": RoleValue, "v_lin": RoleValue,
	"qkv": rolePacked, "in_proj": rolePacked, "c_attn": rolePacked,
	"out_proj": RoleAttentionOutput, "o_proj": RoleAttentionOutput, "proj": RoleAttentionOutput, "out_lin": RoleAttentionOutput,
	"fc1": RoleMLPIn, "linear1": RoleMLPIn, "up_proj": RoleMLPIn, "c_fc": RoleMLPIn, "lin1": RoleMLPIn, "wi": RoleMLPIn,
	"fc2": RoleMLPOut, "linear2": RoleMLPOut, "down_proj": RoleMLPOut, "lin2": RoleMLPOut, "wo": RoleMLPOut,
}

// rolePacked marks a projection holding q, k and v one after the other along its output axis.
const rolePacked Role = "qkv"

// analysis caches what detection needs to know about a graph.
type analysis struct {
	m         *Model
	ix        *graphIndex
	inf       *inference
	constMemo map[string]bool
	scope     [][]string // per node: module path from its name; nil when the name has none
	scoped    bool       // some node has a module path
}

func newAnalysis(m *Model) *analysis {
	g := m.pb.Graph
	a := &analysis{m: m, ix: newIndex(g), inf: inferGraph(g), constMemo: map[string]bool{}}
	a.scope = make([][]string, len(g.GetNode()))
	for i, n := range g.GetNode() {
		a.scope[i] = nodeScope(n.GetName())
		if a.scope[i] != nil {
			a.scoped = true
		}
	}
	return a
}

// nodeScope turns "/vit/encoder/layer.0/attention/MatMul" into [vit encoder layer 0 attention];
// names that are not slash-separated scopes give nil, top-level nodes ("/Reshape") an empty path.
//
// torch names each scope by the module's name from its last non-numeric part on ("layer.0" for
// vit.encoder.layer.0), so a called container repeats itself: an nn.Sequential "blocks" has
// children "/blocks/blocks.0". Such a repeat is dropped: [blocks 0], not [blocks blocks 0].
func nodeScope(name string) []string {
	if !strings.HasPrefix(name, "/") {
		return nil
	}
	parts := strings.Split(name[1:], "/")
	out := []string{}
	for _, p := range parts[:len(parts)-1] {
		atoms := strings.Split(p, ".")
		for k := len(atoms) - 1; k >= 1; k-- {
			if allNumeric(atoms[k:]) && len(out) >= k && slices.Equal(out[len(out)-k:], atoms[:k]) {
				atoms = atoms[k:]
				break
			}
		}
		out = append(out, atoms...)
	}
	return out
}

func allNumeric(atoms []string) bool {
	for _, a := range atoms {
		if _, err := strconv.Atoi(a); err != nil {
			return false
		}
	}
	return true
}

func splitPath(s string) []string { return strings.Split(s, ".") }

// hasPrefix reports whether path starts with prefix, component by component.
func hasPrefix(path, prefix []string) bool {
	return len(path) >= len(prefix) && slices.Equal(path[:len(prefix)], prefix)
}

func (a *analysis) isConst(v string) bool { return a.ix.isConstant(v, a.constMemo) }

// constNode reports whether node i computes only constants.
func (a *analysis) constNode(i int) bool {
	n := a.ix.g.Node[i]
	for _, o := range n.GetOutput() {
		if o != "" {
			return a.isConst(o)
		}
	}
	return true
}

// aliases returns v and the names it is an Identity copy of, nearest first.
func (a *analysis) aliases(v string) []string { return a.ix.aliases(v) }

// aliases returns v and the names it is an Identity copy of, nearest first.
func (ix *graphIndex) aliases(v string) []string {
	out := []string{v}
	for range 16 {
		n := ix.node(v)
		if n == nil || n.GetOpType() != "Identity" || len(n.GetInput()) == 0 {
			break
		}
		v = n.GetInput()[0]
		out = append(out, v)
	}
	return out
}

// namedParam returns a module-path name (with at least one dot) that the constant v is, or is
// an Identity, Transpose or Cast of (nearest first).
func (a *analysis) namedParam(v string) (string, bool) {
	if !a.isConst(v) {
		return "", false
	}
	for range 16 {
		if strings.Contains(v, ".") && !strings.Contains(v, "::") {
			return v, true
		}
		n := a.ix.node(v)
		if n == nil || len(n.GetInput()) == 0 {
			break
		}
		switch n.GetOpType() {
		case "Identity", "Transpose", "Cast":
			v = n.GetInput()[0]
		default:
			return "", false
		}
	}
	return "", false
}

// DetectManifest finds the backbone's blocks and their rewritable edges. It recognises Hugging
// Face ViT/BERT/RoBERTa naming (encoder.layer.N), torch nn.TransformerEncoder (layers.N with a
// packed in_proj_weight), timm/GPT-2 style (blocks.N, h.N) and plain layers.N/blocks.N. It
// returns an error wrapping ErrNoBlocks, naming what it found, when there is no such list; write
// a manifest file for such a model (ParseManifest, ResolveManifest).
func DetectManifest(m *Model) (*Manifest, error) {
	a := newAnalysis(m)
	container, indices, alternatives := a.findContainer()
	if container == "" {
		return nil, fmt.Errorf("%w: no module path of the form <prefix>.{layer,layers,blocks,block,h,resblocks}.N; %s",
			ErrNoBlocks, a.describe(alternatives))
	}
	man := &Manifest{Version: ManifestVersion, Source: "detected", Opset: m.Opset(), Container: container}
	for i, idx := range indices {
		if i > 0 && idx != indices[i-1]+1 {
			man.Notes = append(man.Notes, fmt.Sprintf("block indices jump from %d to %d", indices[i-1], idx))
		}
	}
	if len(alternatives) > 1 {
		man.Notes = append(man.Notes, fmt.Sprintf("chose %s (%d blocks) over %s", container, len(indices), strings.Join(alternatives[1:min(4, len(alternatives))], ", ")))
	}
	names := make([]string, len(indices))
	for i, idx := range indices {
		names[i] = container + "." + strconv.Itoa(idx)
	}
	if err := a.fillBlocks(man, names, nil); err != nil {
		return nil, err
	}
	man.Family = family(man)
	if err := m.ValidateManifest(man); err != nil {
		return nil, fmt.Errorf("%w: the blocks under %q do not form a valid manifest (write one by hand): %w", ErrNoBlocks, container, err)
	}
	return man, nil
}

// ResolveManifest completes a manifest (typically hand-written) against m and validates it: a
// block given only by name gets its input, output, weights and attention edges detected from the
// graph; a block with edges keeps them, gaining an output edge if it has none; every edge gets its
// kind, dtype, shape and (for MatMul/Gemm weights) layout. The input manifest is not modified.
func ResolveManifest(m *Model, man *Manifest) (*Manifest, error) {
	out := *man
	out.Blocks = slices.Clone(man.Blocks)
	out.Notes = slices.Clone(man.Notes)
	if out.Opset == 0 {
		out.Opset = m.Opset()
	}
	a := newAnalysis(m)
	names := make([]string, len(out.Blocks))
	for i, b := range out.Blocks {
		names[i] = b.Name
	}
	if err := a.fillBlocks(&out, names, man.Blocks); err != nil {
		return nil, err
	}
	if err := m.ValidateManifest(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// fillBlocks resolves the named blocks into man.Blocks. given, when non-nil, holds hand-written
// blocks whose edges are kept.
func (a *analysis) fillBlocks(man *Manifest, names []string, given []Block) error {
	members := make([]map[int]bool, len(names))
	for i, name := range names {
		if name != "" {
			members[i] = a.members(splitPath(name))
		}
	}
	man.Blocks = make([]Block, len(names))
	var missing []string
	prevOut := ""
	for i, name := range names {
		b := Block{Index: i, Name: name}
		var next map[int]bool
		if i+1 < len(names) {
			next = members[i+1]
		}
		var hand *Block
		if given != nil {
			hand = &given[i]
			b.Input = hand.Input
			b.Edges = slices.Clone(hand.Edges)
		}
		mem := members[i]
		if name != "" && len(mem) == 0 && (hand == nil || len(hand.Edges) == 0) {
			missing = append(missing, fmt.Sprintf("%s (no node or tensor belongs to it)", name))
			man.Blocks[i] = b
			continue
		}
		if hand == nil || len(hand.Edges) == 0 {
			b.Edges = append(b.Edges, a.linearEdges(splitPath(name), mem, &man.Notes)...)
			b.Edges = append(b.Edges, a.attentionEdges(name, mem, &man.Notes)...)
		}
		out, hasOut := b.Output()
		if !hasOut && mem != nil {
			if v := a.blockOutput(name, mem, next, &man.Notes); v != "" {
				out = Edge{Role: RoleOutput, Tensor: v}
				b.Edges = append([]Edge{out}, b.Edges...)
				hasOut = true
			}
		}
		if !hasOut {
			missing = append(missing, fmt.Sprintf("%s (output not found)", name))
		}
		if b.Input == "" && mem != nil {
			b.Input = a.blockInput(name, mem, prevOut, &man.Notes)
		}
		for j := range b.Edges {
			a.complete(&b.Edges[j])
		}
		prevOut = out.Tensor
		man.Blocks[i] = b
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: under %q: %s; write a manifest file naming each block's output tensor",
			ErrNoBlocks, man.Container, strings.Join(missing, "; "))
	}
	return nil
}

// complete fills an edge's kind, type, shape and layout from the graph.
func (a *analysis) complete(e *Edge) {
	if e.Kind == "" {
		e.Kind = e.Role.Kind()
		if e.Kind == "" {
			e.Kind = KindActivation
			if a.ix.defined(e.Tensor) && a.isConst(e.Tensor) {
				e.Kind = KindWeight
			}
		}
	}
	t := typeOf(a.inf, e.Tensor)
	if e.DType == DTypeUndefined {
		e.DType = t.DType
	}
	if e.Shape == nil {
		e.Shape = t.Shape
	}
	if e.Layout == "" && e.Kind == KindWeight {
		e.Layout = a.weightLayout(e)
	}
}

// weightLayout derives a weight's layout from how its consumers use it, or "" if unclear.
func (a *analysis) weightLayout(e *Edge) Layout {
	var layout Layout
	for _, ci := range a.ix.consumers[e.Tensor] {
		n := a.ix.g.Node[ci]
		if len(e.Consumers) > 0 && !slices.Contains(e.Consumers, n.GetName()) {
			continue
		}
		var l Layout
		switch {
		case n.GetOpType() == "MatMul" && len(n.GetInput()) == 2 && n.GetInput()[1] == e.Tensor:
			l = LayoutInOut
		case n.GetOpType() == "Gemm" && len(n.GetInput()) > 1 && n.GetInput()[1] == e.Tensor:
			l = LayoutInOut
			if attrInt(n, "transB", 0) != 0 {
				l = LayoutOutIn
			}
		case n.GetOpType() == "Transpose" && len(e.Shape) == 2:
			l = LayoutOutIn
		default:
			return ""
		}
		if layout != "" && l != layout {
			return ""
		}
		layout = l
	}
	return layout
}

// findContainer returns the module path holding the most indexed children named like blocks,
// their sorted indices, and every candidate (best first) for error messages and notes.
func (a *analysis) findContainer() (string, []int, []string) {
	idx := map[string]map[int]bool{}
	weight := map[string]int{}
	visit := func(path []string, all bool) {
		for i := 0; i+1 < len(path); i++ {
			n, err := strconv.Atoi(path[i+1])
			if err != nil || n < 0 || (!all && !containerWords[path[i]]) {
				continue
			}
			c := strings.Join(path[:i+1], ".")
			if !containerWords[path[i]] {
				c = "~" + c // any indexed module: only for the error message
			}
			if idx[c] == nil {
				idx[c] = map[int]bool{}
			}
			idx[c][n] = true
			weight[c]++
		}
	}
	for _, t := range a.ix.g.GetInitializer() {
		visit(splitPath(t.GetName()), true)
	}
	for i, n := range a.ix.g.GetNode() {
		if n.GetOpType() == "Identity" && a.constNode(i) {
			for _, o := range n.GetOutput() {
				visit(splitPath(o), true)
			}
		}
		if a.scope[i] != nil {
			visit(a.scope[i], true)
		}
	}
	var cands []string
	for c := range idx {
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(x, y string) int {
		bx, by := strings.HasPrefix(x, "~"), strings.HasPrefix(y, "~")
		if bx != by {
			if bx {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(len(idx[y]), len(idx[x])); c != 0 {
			return c
		}
		if c := cmp.Compare(weight[y], weight[x]); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	var alts []string
	for _, c := range cands {
		alts = append(alts, fmt.Sprintf("%s.N (%d indices)", strings.TrimPrefix(c, "~"), len(idx[c])))
	}
	if len(cands) == 0 || strings.HasPrefix(cands[0], "~") {
		return "", nil, alts
	}
	var ids []int
	for n := range idx[cands[0]] {
		ids = append(ids, n)
	}
	slices.Sort(ids)
	return cands[0], ids, alts
}

// describe summarises the model's parameter names for an ErrNoBlocks message.
func (a *analysis) describe(indexed []string) string {
	type group struct {
		name    string
		tensors int
		params  int64
	}
	groups := map[string]*group{}
	for _, t := range a.ix.g.GetInitializer() {
		p := splitPath(t.GetName())
		if len(p) > 2 {
			p = p[:2]
		} else if len(p) > 1 {
			p = p[:1]
		}
		k := strings.Join(p, ".")
		if groups[k] == nil {
			groups[k] = &group{name: k}
		}
		groups[k].tensors++
		groups[k].params += numElements(t.GetDims())
	}
	var gs []*group
	for _, g := range groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(x, y *group) int {
		if c := cmp.Compare(y.params, x.params); c != 0 {
			return c
		}
		return cmp.Compare(x.name, y.name)
	})
	var parts []string
	for _, g := range gs[:min(8, len(gs))] {
		parts = append(parts, fmt.Sprintf("%s (%d tensors, %d elements)", g.name, g.tensors, g.params))
	}
	s := fmt.Sprintf("found %d initializers, top name prefixes: %s", len(a.ix.g.GetInitializer()), strings.Join(parts, ", "))
	if len(indexed) > 0 {
		s += "; indexed modules: " + strings.Join(indexed[:min(5, len(indexed))], ", ")
	}
	if !a.scoped {
		s += "; node names carry no module scopes"
	}
	return s
}

// members returns the indices of the non-constant nodes that belong to the block at prefix: by
// their scope when they have one, else by the named parameters they read (a weight, or the bias
// added to a linear layer's output). Nodes without a scope then join when they lie on a path
// between two of the block's nodes, or when they are elementwise (activations, residual adds) and
// all their computed inputs come from the block or enter it.
func (a *analysis) members(prefix []string) map[int]bool {
	mem := map[int]bool{}
	nodes := a.ix.g.GetNode()
	for i, n := range nodes {
		if a.constNode(i) {
			continue
		}
		if sc := a.scope[i]; sc != nil {
			if hasPrefix(sc, prefix) {
				mem[i] = true
			}
			continue
		}
		for _, in := range nodeInputs(n) {
			if p, ok := a.namedParam(in); ok && hasPrefix(splitPath(p), prefix) {
				mem[i] = true
				break
			}
		}
	}
	if len(mem) == 0 {
		return mem
	}
	// Without scopes, a linear layer whose weight lost its name (onnx::MatMul_12) is found through
	// its named bias: Add(MatMul(x, W), prefix.bias).
	for i := range mem {
		n := nodes[i]
		if a.scope[i] != nil || n.GetOpType() != "Add" {
			continue
		}
		for _, in := range n.GetInput() {
			p, ok := a.ix.producer[in]
			if !ok || a.scope[p] != nil || a.isConst(in) {
				continue
			}
			if op := nodes[p].GetOpType(); (op == "MatMul" || op == "Gemm" || op == "Conv") &&
				len(nodes[p].GetInput()) > 1 && a.isConst(nodes[p].GetInput()[1]) {
				mem[p] = true
			}
		}
	}
	// Nodes without a scope that lie between two of the block's nodes (the attention core between
	// the q/k/v and output projections) belong to it too.
	for i := range a.between(mem) {
		if a.scope[i] == nil {
			mem[i] = true
		}
	}
	entries := map[string]bool{}
	for i := range mem {
		for _, in := range nodeInputs(nodes[i]) {
			if p, ok := a.ix.producer[in]; (!ok || !mem[p]) && !a.isConst(in) {
				entries[in] = true
			}
		}
	}
	for i, n := range nodes {
		op := n.GetOpType()
		if mem[i] || a.scope[i] != nil || a.constNode(i) || !(unaryOps[op] || broadcastOps[op]) {
			continue
		}
		join, fromBlock := true, false
		for _, in := range nodeInputs(n) {
			if _, ok := a.namedParam(in); ok {
				join = false // reads another module's parameters
				break
			}
			if a.isConst(in) || entries[in] {
				continue
			}
			p, ok := a.ix.producer[in]
			if !ok || !mem[p] {
				join = false
				break
			}
			fromBlock = true
		}
		if join && fromBlock {
			mem[i] = true
		}
	}
	return mem
}

// between returns the non-constant nodes that are both descendants and ancestors of nodes in mem.
func (a *analysis) between(mem map[int]bool) map[int]bool {
	nodes := a.ix.g.GetNode()
	down := map[int]bool{}
	for i := range nodes { // topological order: one forward pass
		if mem[i] {
			down[i] = true
			continue
		}
		for _, in := range nodeInputs(nodes[i]) {
			if p, ok := a.ix.producer[in]; ok && down[p] {
				down[i] = true
				break
			}
		}
	}
	up := map[int]bool{}
	for i := len(nodes) - 1; i >= 0; i-- {
		if !mem[i] && !up[i] {
			continue
		}
		up[i] = true
		for _, in := range nodeInputs(nodes[i]) {
			if p, ok := a.ix.producer[in]; ok {
				up[p] = true
			}
		}
	}
	out := map[int]bool{}
	for i := range down {
		if up[i] && !mem[i] && !a.constNode(i) {
			out[i] = true
		}
	}
	return out
}

// isFloatish reports whether v may be a floating-point activation.
func (a *analysis) isFloatish(v string) bool {
	dt := a.inf.types[v].DType
	return dt == DTypeUndefined || dt.IsFloat()
}

// blockOutput finds the activation leaving the block: the value computed inside it that nodes
// outside it (or the graph outputs) read.
func (a *analysis) blockOutput(name string, mem, next map[int]bool, notes *[]string) string {
	var exits []string
	seen := map[string]bool{}
	for i := range a.ix.g.GetNode() {
		if !mem[i] {
			continue
		}
		for _, o := range a.ix.g.Node[i].GetOutput() {
			if o == "" || seen[o] || !a.isFloatish(o) {
				continue
			}
			leaves := a.ix.output[o]
			for _, c := range a.ix.consumers[o] {
				if !mem[c] {
					leaves = true
				}
			}
			if leaves {
				seen[o] = true
				exits = append(exits, o)
			}
		}
	}
	if len(exits) <= 1 {
		if len(exits) == 1 {
			return exits[0]
		}
		return ""
	}
	pick := exits
	if next != nil {
		var toNext []string
		for _, e := range exits {
			for _, c := range a.ix.consumers[e] {
				if next[c] {
					toNext = append(toNext, e)
					break
				}
			}
		}
		if len(toNext) > 0 {
			pick = toNext
		}
	}
	chosen := pick[len(pick)-1]
	if len(pick) > 1 || len(pick) < len(exits) {
		*notes = append(*notes, fmt.Sprintf("%s: %d values leave the block (%s); chose %q as its output",
			name, len(exits), strings.Join(quoteAll(exits[:min(4, len(exits))]), ", "), chosen))
	}
	return chosen
}

// blockInput finds the activation entering the block.
func (a *analysis) blockInput(name string, mem map[int]bool, prevOut string, notes *[]string) string {
	var entries []string
	seen := map[string]bool{}
	for i, n := range a.ix.g.GetNode() {
		if !mem[i] {
			continue
		}
		for _, in := range nodeInputs(n) {
			if seen[in] || a.isConst(in) || !a.isFloatish(in) {
				continue
			}
			if p, ok := a.ix.producer[in]; ok && mem[p] {
				continue
			}
			seen[in] = true
			entries = append(entries, in)
		}
	}
	switch {
	case len(entries) == 1:
		return entries[0]
	case len(entries) == 0:
		return ""
	case slices.Contains(entries, prevOut):
		return prevOut
	}
	*notes = append(*notes, fmt.Sprintf("%s: %d values enter the block (%s); input left empty",
		name, len(entries), strings.Join(quoteAll(entries[:min(4, len(entries))]), ", ")))
	return ""
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.Quote(v)
	}
	return out
}

// linear is a MatMul or Gemm with a constant weight, found inside a block.
type linear struct {
	index int // node index
	node  *onnxpb.NodeProto
	edge  Edge
	path  []string // module path of the linear layer
	role  Role     // set when the weight's name says its role: a part of an unpacked weight
}

// unpackedRoles are the roles of the parts Unpack and Canonicalize split a packed q/k/v weight
// into, named "<param>.query" and so on.
var unpackedRoles = []Role{RoleQuery, RoleKey, RoleValue}

// unpackedPart recognises the name of one part of an unpacked weight or bias ("<module>.in_proj_
// weight.query", "<module>.qkv.weight.key") and returns the module path and the part's role.
func unpackedPart(name, kind string) ([]string, Role, bool) {
	for _, r := range unpackedRoles {
		packed, ok := strings.CutSuffix(name, "."+string(r))
		if !ok {
			continue
		}
		if p, ok := strings.CutSuffix(packed, "."+kind); ok {
			return splitPath(p), r, true
		}
		if p, ok := strings.CutSuffix(packed, "_"+kind); ok && strings.Contains(p, ".") {
			return splitPath(p), r, true
		}
	}
	return nil, "", false
}

// linearEdges finds the weight edges of the block at prefix.
func (a *analysis) linearEdges(prefix []string, mem map[int]bool, notes *[]string) []Edge {
	var lins []linear
	scopeCount := map[string]int{}
	for i := range a.ix.g.GetNode() {
		if mem[i] {
			if l, ok := a.linearAt(i); ok {
				lins = append(lins, l)
				scopeCount[strings.Join(a.scope[i], ".")]++
			}
		}
	}
	byRole := map[Role][]int{}
	for li := range lins {
		l := &lins[li]
		if l.path == nil {
			if sc := a.scope[l.index]; sc != nil && scopeCount[strings.Join(sc, ".")] == 1 {
				l.path = sc
			}
		}
		if l.path == nil || !hasPrefix(l.path, prefix) || len(l.path) == len(prefix) {
			continue
		}
		rel := strings.Join(l.path[len(prefix):], ".")
		role, ok := linearRoles[rel]
		if !ok {
			role, ok = lastComponentRoles[l.path[len(l.path)-1]]
		}
		if l.role != "" {
			role, ok = l.role, true // one part of an unpacked q/k/v weight
		}
		if !ok {
			continue
		}
		if l.edge.Param == "" {
			l.edge.Param = strings.Join(l.path, ".") + ".weight"
		}
		byRole[role] = append(byRole[role], li)
	}
	var edges []Edge
	blockName := strings.Join(prefix, ".")
	for _, role := range []Role{RoleQuery, RoleKey, RoleValue, rolePacked, RoleAttentionOutput, RoleMLPIn, RoleMLPOut} {
		ls := byRole[role]
		if len(ls) == 0 {
			continue
		}
		if len(ls) > 1 {
			var ps []string
			for _, li := range ls {
				ps = append(ps, strings.Join(lins[li].path, "."))
			}
			*notes = append(*notes, fmt.Sprintf("%s: %d linear layers look like %s (%s); none used", blockName, len(ls), role, strings.Join(ps, ", ")))
			continue
		}
		l := lins[ls[0]]
		if role != rolePacked {
			e := l.edge
			e.Role = role
			edges = append(edges, e)
			continue
		}
		dims := l.edge.Shape.Sizes()
		axis := 1
		if l.edge.Layout == LayoutOutIn {
			axis = 0
		}
		if len(dims) != 2 || dims[axis] <= 0 || dims[axis]%3 != 0 {
			*notes = append(*notes, fmt.Sprintf("%s: packed q/k/v weight %q has shape %v, not 3 equal parts", blockName, l.edge.Tensor, dims))
			continue
		}
		part := dims[axis] / 3
		for k, r := range []Role{RoleQuery, RoleKey, RoleValue} {
			e := l.edge
			e.Role = r
			e.Slice = &Slice{Axis: axis, Start: int64(k) * part, End: int64(k+1) * part}
			edges = append(edges, e)
		}
	}
	return edges
}

// linearAt recognises node i as a linear layer with a constant weight and finds its edge and
// module path.
func (a *analysis) linearAt(i int) (linear, bool) {
	n := a.ix.g.Node[i]
	in := n.GetInput()
	op := n.GetOpType()
	if (op != "MatMul" && op != "Gemm") || len(in) < 2 || a.isConst(in[0]) || !a.isConst(in[1]) {
		return linear{}, false
	}
	if op == "Gemm" && attrInt(n, "transA", 0) != 0 {
		return linear{}, false
	}
	l := linear{index: i}
	e := Edge{Kind: KindWeight, Tensor: in[1], Consumers: []string{n.GetName()}, Layout: LayoutInOut}
	if op == "Gemm" && attrInt(n, "transB", 0) != 0 {
		e.Layout = LayoutOutIn
	}
	names := a.aliases(in[1])
	// A weight transposed at run time (export without constant folding): rewrite the stored one.
	if p := a.ix.node(in[1]); p != nil && p.GetOpType() == "Transpose" && len(a.ix.consumers[in[1]]) == 1 {
		perm := attr(p, "perm").GetInts()
		if perm == nil || slices.Equal(perm, []int64{1, 0}) {
			e.Tensor, e.Consumers = p.GetInput()[0], []string{p.GetName()}
			if e.Layout == LayoutInOut {
				e.Layout = LayoutOutIn
			} else {
				e.Layout = LayoutInOut
			}
			names = a.aliases(e.Tensor)
		}
	}
	t := typeOf(a.inf, e.Tensor)
	e.DType, e.Shape = t.DType, t.Shape
	if len(t.Shape) != 2 {
		return linear{}, false
	}
	for _, nm := range names {
		if p, r, ok := unpackedPart(nm, "weight"); ok {
			l.path, l.role, e.Param = p, r, nm
			break
		}
		if p, ok := strings.CutSuffix(nm, ".weight"); ok {
			l.path, e.Param = splitPath(p), nm
			break
		}
		if p, ok := strings.CutSuffix(nm, "_weight"); ok && strings.Contains(p, ".") {
			l.path, e.Param = splitPath(p), nm
			break
		}
	}
	if l.path == nil {
		bias := ""
		if op == "Gemm" && len(in) > 2 {
			bias = in[2]
		} else if cs := a.ix.consumers[n.GetOutput()[0]]; op == "MatMul" && len(cs) == 1 {
			if add := a.ix.g.Node[cs[0]]; add.GetOpType() == "Add" {
				for _, x := range add.GetInput() {
					if x != n.GetOutput()[0] && a.isConst(x) {
						bias = x
					}
				}
			}
		}
		if bias != "" {
			for _, nm := range a.aliases(bias) {
				if p, r, ok := unpackedPart(nm, "bias"); ok {
					l.path, l.role = p, r
					break
				}
				if p, ok := strings.CutSuffix(nm, ".bias"); ok {
					l.path = splitPath(p)
					break
				}
				if p, ok := strings.CutSuffix(nm, "_bias"); ok && strings.Contains(p, ".") {
					l.path = splitPath(p)
					if e.Param == "" {
						e.Param = p + "_weight"
					}
					break
				}
			}
		}
	}
	l.edge = e
	return l, true
}

// attentionEdges finds the attention keys, values and scores of a block with one softmax.
func (a *analysis) attentionEdges(name string, mem map[int]bool, notes *[]string) []Edge {
	var softmax []int
	for i, n := range a.ix.g.GetNode() {
		if mem[i] && (n.GetOpType() == "Softmax") {
			softmax = append(softmax, i)
		}
	}
	if len(softmax) != 1 {
		if len(softmax) > 1 {
			*notes = append(*notes, fmt.Sprintf("%s: %d softmax nodes; attention activations not reported", name, len(softmax)))
		}
		return nil
	}
	sm := a.ix.g.Node[softmax[0]]
	scores := sm.GetInput()[0]
	edges := []Edge{{Role: RoleAttentionScores, Kind: KindActivation, Tensor: scores, Consumers: []string{sm.GetName()}, Layout: LayoutQueryKey}}
	if qk := a.findMatMul(scores, mem, 8); qk != nil && !a.isConst(qk.GetInput()[1]) {
		edges = append(edges, Edge{Role: RoleAttentionKeys, Kind: KindActivation, Tensor: qk.GetInput()[1],
			Consumers: []string{qk.GetName()}, Layout: LayoutHeadDimTokens})
	}
	v := sm.GetOutput()[0]
	for range 4 {
		var next string
		for _, ci := range a.ix.consumers[v] {
			c := a.ix.g.Node[ci]
			switch c.GetOpType() {
			case "MatMul":
				if c.GetInput()[0] == v && !a.isConst(c.GetInput()[1]) {
					edges = append(edges, Edge{Role: RoleAttentionValues, Kind: KindActivation, Tensor: c.GetInput()[1],
						Consumers: []string{c.GetName()}, Layout: LayoutTokensHeadDim})
					return edges
				}
			case "Cast", "Dropout", "Identity":
				next = c.GetOutput()[0]
			}
		}
		if next == "" {
			break
		}
		v = next
	}
	return edges
}

// findMatMul walks back from v through elementwise scaling and masking to the MatMul that
// computes the attention scores.
func (a *analysis) findMatMul(v string, mem map[int]bool, depth int) *onnxpb.NodeProto {
	i, ok := a.ix.producer[v]
	if !ok || !mem[i] || depth == 0 {
		return nil
	}
	n := a.ix.g.Node[i]
	switch n.GetOpType() {
	case "MatMul":
		return n
	case "Div", "Mul", "Add", "Sub", "Where", "Cast", "Identity", "Clip":
		for _, in := range n.GetInput() {
			if in != "" && !a.isConst(in) && a.isFloatish(in) {
				if mm := a.findMatMul(in, mem, depth-1); mm != nil {
					return mm
				}
			}
		}
	}
	return nil
}

// family names the convention the detected roles follow.
func family(man *Manifest) string {
	has := func(sub string) bool {
		for _, b := range man.Blocks {
			for _, e := range b.Edges {
				if strings.Contains(e.Param, sub) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case has(".attention.attention."):
		return "hf-vit"
	case has(".attention.self."):
		return "hf-bert"
	case has(".self_attn.in_proj_weight"), has(".linear1."):
		return "torch-transformer-encoder"
	case has(".attn.qkv."):
		return "timm-vit"
	}
	return "blocks"
}
