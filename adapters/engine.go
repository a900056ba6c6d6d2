package adapters

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/onnx-gomlx/onnx"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// Engine runs ONNX graphs in GoMLX on its pure-Go backend (simplego): no cgo, no accelerator
// plugin. It is safe for concurrent use; models imported into it share its backend.
type Engine struct {
	backend backends.Backend
}

// NewEngine returns an engine on a fresh simplego backend, configured so that it cannot deadlock
// on nested waits and extended with the operations the package's graphs need (see backend.go).
func NewEngine() (*Engine, error) {
	b, err := newBackend()
	if err != nil {
		return nil, fmt.Errorf("new engine: %w: %w", ErrEngine, err)
	}
	return &Engine{backend: b}, nil
}

// Model is an ONNX graph imported into GoMLX with onnx-gomlx. Its weights (initializers) are
// frozen: GoMLX reads them and never changes them. Graph inputs that have a default initializer
// (PEFT parameters spliced in by backbone.Model.Splice) may be fed or left at their defaults, as in
// ONNX Runtime; a Trainer feeds the ones it trains. A Model is safe for concurrent use.
type Model struct {
	engine  *Engine
	graph   *onnx.Model
	weights *mlctx.Context // the initializers, as non-trainable variables
	inputs  []backbone.ValueInfo
	params  []backbone.ValueInfo
	outputs []backbone.ValueInfo

	// convert serialises onnx-gomlx conversions (CallGraph), which happen while GoMLX builds a
	// graph for new input shapes; the model's maps are not documented as safe for concurrent use.
	convert sync.Mutex

	mu       sync.Mutex
	forwards map[string]*mlctx.Exec // by forwardKey
}

// Import converts m into a GoMLX model. It fails with an error wrapping ErrUnsupported, naming the
// operators and nodes, when the graph uses operators that onnx-gomlx v0.3.4 cannot convert
// correctly (ops.go lists what is filled in and what is refused).
func (e *Engine) Import(m *backbone.Model) (*Model, error) {
	// onnx-gomlx v0.3.4 dereferences every graph input's and output's shape while parsing.
	for _, v := range slices.Concat(m.Inputs(), m.Params(), m.Outputs()) {
		if v.Shape == nil {
			return nil, fmt.Errorf("import: %w: graph input or output %q declares no shape (onnx-gomlx needs its rank)",
				ErrUnsupported, v.Name)
		}
	}
	b, err := m.Bytes()
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var out *Model
	err = catch("import", func() error {
		g, err := onnx.Parse(b)
		if err != nil {
			return fmt.Errorf("%w: onnx-gomlx: %w", ErrInvalidArgument, err)
		}
		if err := prepare(g); err != nil {
			return err
		}
		weights := mlctx.New()
		if err := g.VariablesToContext(weights); err != nil {
			return fmt.Errorf("%w: loading initializers: %w", ErrEngine, err)
		}
		for v := range weights.IterVariables() {
			v.SetTrainable(false)
		}
		out = &Model{
			engine:   e,
			graph:    g,
			weights:  weights,
			inputs:   m.Inputs(),
			params:   m.Params(),
			outputs:  m.Outputs(),
			forwards: map[string]*mlctx.Exec{},
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return out, nil
}

// Inputs returns the graph inputs callers feed (those without a default initializer).
func (m *Model) Inputs() []backbone.ValueInfo { return slices.Clone(m.inputs) }

// Params returns the graph inputs that have a default initializer (PEFT parameters).
func (m *Model) Params() []backbone.ValueInfo { return slices.Clone(m.params) }

// Outputs returns the graph outputs.
func (m *Model) Outputs() []backbone.ValueInfo { return slices.Clone(m.outputs) }

// Weights returns the names of the frozen weights: the initializers that are not parameters.
func (m *Model) Weights() []string {
	params := map[string]bool{}
	for _, p := range m.params {
		params[p.Name] = true
	}
	var names []string
	for _, t := range m.graph.Proto.Graph.Initializer {
		if !params[t.Name] {
			names = append(names, t.Name)
		}
	}
	return names
}

// Weight returns the current value of a frozen weight (an initializer that is not a parameter),
// for tests that check that training leaves the backbone untouched.
func (m *Model) Weight(name string) (ort.Tensor, error) {
	v := m.weights.In(onnx.ModelScope).GetVariable(onnx.SafeVarName(name))
	if v == nil {
		return ort.Tensor{}, fmt.Errorf("weight %q: %w: no such initializer", name, ErrInvalidArgument)
	}
	t, err := v.Value()
	if err != nil {
		return ort.Tensor{}, fmt.Errorf("weight %q: %w: %w", name, ErrEngine, err)
	}
	return fromGoMLX(t)
}

// Forward runs the model on the named inputs and returns the named outputs (all graph outputs
// when none are named; any intermediate tensor may be named). Every input of Inputs must be fed;
// parameters of Params may be, and keep their default values otherwise. GoMLX compiles the graph
// once per set of input shapes and reuses it.
func (m *Model) Forward(ctx context.Context, feeds map[string]ort.Tensor, outputs ...string) (map[string]ort.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(outputs) == 0 {
		for _, o := range m.outputs {
			outputs = append(outputs, o.Name)
		}
	}
	names, err := m.feedOrder(feeds)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	args := make([]any, len(names))
	for i, n := range names {
		if err := m.checkFeed(n, feeds[n]); err != nil {
			return nil, fmt.Errorf("forward: %w", err)
		}
		if args[i], err = toGoMLX(feeds[n]); err != nil {
			return nil, fmt.Errorf("forward: input %q: %w", n, err)
		}
	}
	exec, err := m.forward(names, outputs)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	var res []*tensors.Tensor
	if err := catch("forward", func() (err error) {
		res, err = exec.Exec(args...)
		return err
	}); err != nil {
		return nil, err
	}
	out := make(map[string]ort.Tensor, len(outputs))
	for i, n := range outputs {
		if out[n], err = fromGoMLX(res[i]); err != nil {
			return nil, fmt.Errorf("forward: output %q: %w", n, err)
		}
	}
	return out, nil
}

// feedOrder checks the feeds' names and returns them in a canonical order: the inputs in graph
// order, then the fed parameters in graph order.
func (m *Model) feedOrder(feeds map[string]ort.Tensor) ([]string, error) {
	var names []string
	for _, in := range m.inputs {
		if _, ok := feeds[in.Name]; !ok {
			return nil, fmt.Errorf("%w: missing input %q", ErrInvalidArgument, in.Name)
		}
		names = append(names, in.Name)
	}
	for _, p := range m.params {
		if _, ok := feeds[p.Name]; ok {
			names = append(names, p.Name)
		}
	}
	if len(names) != len(feeds) {
		var unknown []string
		for n := range feeds {
			if !slices.Contains(names, n) {
				unknown = append(unknown, n)
			}
		}
		slices.Sort(unknown)
		return nil, fmt.Errorf("%w: unknown inputs %q", ErrInvalidArgument, unknown)
	}
	return names, nil
}

// checkFeed checks a fed tensor against the graph's declaration of that input or parameter:
// element type, rank and fixed dimensions.
func (m *Model) checkFeed(name string, t ort.Tensor) error {
	i := slices.IndexFunc(m.inputs, func(v backbone.ValueInfo) bool { return v.Name == name })
	decl := backbone.ValueInfo{}
	if i >= 0 {
		decl = m.inputs[i]
	} else if i = slices.IndexFunc(m.params, func(v backbone.ValueInfo) bool { return v.Name == name }); i >= 0 {
		decl = m.params[i]
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%w: input %q: %w", ErrInvalidArgument, name, err)
	}
	// backbone.DType and ort.DType both number element types as ONNX does.
	if decl.DType != backbone.DTypeUndefined && int32(decl.DType) != int32(t.DType()) {
		return fmt.Errorf("%w: input %q is %s, the model wants %s", ErrInvalidArgument, name, t.DType(), decl.DType)
	}
	if decl.Shape != nil {
		ok := len(decl.Shape) == len(t.Shape)
		for j := 0; ok && j < len(t.Shape); j++ {
			ok = !decl.Shape[j].Known() || decl.Shape[j].Size == t.Shape[j]
		}
		if !ok {
			return fmt.Errorf("%w: input %q has shape %v, the model wants %s", ErrInvalidArgument, name, t.Shape, decl.Shape)
		}
	}
	return nil
}

// forward returns the cached executable that feeds names and computes outputs.
func (m *Model) forward(names, outputs []string) (*mlctx.Exec, error) {
	key := strings.Join(names, "\x00") + "\x01" + strings.Join(outputs, "\x00")
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.forwards[key]; ok {
		return e, nil
	}
	names, outputs = slices.Clone(names), slices.Clone(outputs)
	var exec *mlctx.Exec
	err := catch("compile forward", func() (err error) {
		exec, err = mlctx.NewExecAny(m.engine.backend, m.weights, func(ctx *mlctx.Context, args []*graph.Node) []*graph.Node {
			feeds := make(map[string]*graph.Node, len(args))
			for i, n := range names {
				feeds[n] = args[i]
			}
			return m.call(ctx, feeds, outputs)
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	m.forwards[key] = exec
	return exec, nil
}

// call builds the model's computation into the graph of the feeds (graph-building time, inside a
// GoMLX Exec whose context is m.weights): parameters that are not fed read their defaults.
func (m *Model) call(ctx *mlctx.Context, feeds map[string]*graph.Node, outputs []string) []*graph.Node {
	var g *graph.Graph
	for _, n := range feeds {
		g = n.Graph()
		break
	}
	all := maps.Clone(feeds)
	for _, p := range m.params {
		if _, ok := all[p.Name]; !ok {
			all[p.Name] = ctx.In(onnx.ModelScope).GetVariable(onnx.SafeVarName(p.Name)).ValueGraph(g)
		}
	}
	m.convert.Lock()
	defer m.convert.Unlock()
	return m.graph.CallGraph(ctx, g, all, outputs...)
}
