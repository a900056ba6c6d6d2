package backbone

import (
	"errors"
	"fmt"
)

// maxProblems bounds how many problems one validation error lists.
const maxProblems = 20

// Validate checks the graph's structure: nodes in topological order, every node input defined
// before use (graph input, initializer or an earlier node's output; subgraph references
// included), value and node names unique, every graph output defined, initializer data matching
// its shape, and declared types and shapes consistent with what the nodes compute, where both are
// known. Every rewrite validates its result. The error wraps ErrInvalidGraph and lists up to 20
// problems.
func (m *Model) Validate() error {
	g := m.pb.GetGraph()
	if g == nil {
		return ErrNoGraph
	}
	var probs []error
	add := func(format string, args ...any) {
		probs = append(probs, fmt.Errorf(format, args...))
	}
	defined := map[string]string{} // name -> what defines it
	define := func(name, what string) {
		if name == "" {
			return
		}
		if prev, ok := defined[name]; ok {
			add("%q defined twice (%s and %s)", name, prev, what)
			return
		}
		defined[name] = what
	}
	later := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			later[o] = true
		}
	}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		if inits[t.GetName()] {
			add("initializer %q appears twice", t.GetName())
		}
		inits[t.GetName()] = true
		if t.GetName() == "" {
			add("an initializer has no name")
		}
		if DType(t.GetDataType()).Size() > 0 {
			if _, err := rawData(t); err != nil && !errors.Is(err, ErrExternalData) {
				add("%v", err)
			}
		}
	}
	for _, v := range g.GetInput() {
		define(v.GetName(), "graph input")
	}
	for _, t := range g.GetInitializer() {
		if what, ok := defined[t.GetName()]; !ok || what != "graph input" {
			define(t.GetName(), "initializer")
		}
	}
	nodeNames := map[string]bool{}
	for i, n := range g.GetNode() {
		label := fmt.Sprintf("%s node %q (#%d)", n.GetOpType(), n.GetName(), i)
		if nm := n.GetName(); nm != "" {
			if nodeNames[nm] {
				add("node name %q used twice", nm)
			}
			nodeNames[nm] = true
		}
		for _, in := range nodeInputs(n) {
			if _, ok := defined[in]; ok {
				continue
			}
			if later[in] {
				add("%s reads %q before it is computed (nodes not in topological order)", label, in)
			} else {
				add("%s reads %q, which nothing defines", label, in)
			}
		}
		for _, o := range n.GetOutput() {
			define(o, label)
		}
	}
	outs := map[string]bool{}
	for _, v := range g.GetOutput() {
		if outs[v.GetName()] {
			add("graph output %q listed twice", v.GetName())
		}
		outs[v.GetName()] = true
		if _, ok := defined[v.GetName()]; !ok {
			add("graph output %q is never computed", v.GetName())
		}
	}
	if len(probs) == 0 {
		probs = append(probs, inferGraph(g).conflicts...)
	}
	if len(probs) == 0 {
		return nil
	}
	more := ""
	if len(probs) > maxProblems {
		more = fmt.Sprintf(" (and %d more)", len(probs)-maxProblems)
		probs = probs[:maxProblems]
	}
	return fmt.Errorf("%w: %w%s", ErrInvalidGraph, errors.Join(probs...), more)
}

// checkNewName returns ErrNameConflict when name is already used in the graph.
func checkNewName(used map[string]bool, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidGraph)
	}
	if used[name] {
		return fmt.Errorf("%w: %q", ErrNameConflict, name)
	}
	used[name] = true
	return nil
}

// typeOf returns what is known about a value's type.
func typeOf(inf *inference, name string) ValueInfo {
	vi := inf.types[name]
	vi.Name = name
	return vi
}
