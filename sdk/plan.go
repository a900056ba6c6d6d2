package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Scope returns the prefix the host gives every name that rewrite i of the block adds to the
// model: "<plugin>/<block>/<role>/", for example "peft.lora/3/query/", so that parameter A
// becomes the graph input "peft.lora/3/query/A". When several rewrites of the block have the
// same role, the second and later get ".<i>" after the role.
func (bp BlockPlan) Scope(plugin string, i int) string {
	role := string(bp.Rewrites[i].Edge.Role)
	for j := range i {
		if bp.Rewrites[j].Edge.Role == bp.Rewrites[i].Edge.Role {
			role += "." + strconv.Itoa(i)
			break
		}
	}
	return plugin + "/" + strconv.Itoa(bp.Block) + "/" + role + "/"
}

// ValidatePlan checks that a plan keeps the contract for the manifest it was made for: blocks
// by increasing index and inside the manifest; each rewrite naming an edge of its block exactly
// as the manifest has it (unpacked), each edge rewritten at most once; every subgraph valid
// (Subgraph.Validate) with float32 parameters and finite parameter and constant values; one
// valid Init per parameter and nothing else; dropout only on values the graph defines, with a
// rate in [0, 1); Config empty or a JSON object; at least one rewrite. Errors wrap
// ErrInvalidPlan and list the problems.
//
// A host runs it on every plan it receives; sdktest runs it too, and then checks the math.
func ValidatePlan(man *Manifest, p *PlanResponse) error {
	if err := man.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	var probs []error
	add := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }
	if len(p.Config) > 0 {
		if c := bytes.TrimSpace(p.Config); len(c) == 0 || c[0] != '{' || !json.Valid(c) {
			add("config is not a JSON object")
		}
	}
	prev, rewrites := -1, 0
	for bi, bp := range p.Blocks {
		where := fmt.Sprintf("blocks[%d] (block %d)", bi, bp.Block)
		if bp.Block <= prev {
			add("%s: blocks must be listed by increasing index", where)
		}
		prev = bp.Block
		blk, ok := man.Block(bp.Block)
		if !ok {
			add("%s: the manifest has %d blocks", where, len(man.Blocks))
			continue
		}
		rewritten := map[string]int{}
		for ri, rw := range bp.Rewrites {
			rewrites++
			rwhere := fmt.Sprintf("%s: rewrite %d (%s edge %q)", where, ri, rw.Edge.Role, rw.Edge.Tensor)
			if !slices.ContainsFunc(blk.Edges, func(e Edge) bool { return sameEdge(e, rw.Edge) }) {
				add("%s: not an edge of block %d (%s) as the manifest lists it", rwhere, blk.Index, blk.Name)
			}
			if rw.Edge.Slice != nil {
				add("%s: a packed edge (slice) cannot be rewritten; the host unpacks it first", rwhere)
			}
			key := rw.Edge.Tensor + fmt.Sprint(rw.Edge.Consumers)
			if j, dup := rewritten[key]; dup {
				add("%s: the edge is already rewritten by rewrite %d", rwhere, j)
			}
			rewritten[key] = ri
			if err := rw.Graph.Validate(); err != nil {
				add("%s: %w", rwhere, err)
				continue
			}
			for _, t := range rw.Graph.Constants {
				if !finite(t.Float32) {
					add("%s: constant %q has a value that is not finite", rwhere, t.Name)
				}
			}
			names := map[string]bool{}
			for _, t := range rw.Graph.Params {
				names[t.Name] = true
				if t.DType != DTypeFloat32 {
					add("%s: parameter %q is %v, want float32", rwhere, t.Name, t.DType)
				}
				if !finite(t.Float32) {
					add("%s: parameter %q has an off value that is not finite", rwhere, t.Name)
				}
				init, ok := rw.Init[t.Name]
				if !ok {
					add("%s: parameter %q has no init", rwhere, t.Name)
				} else if err := init.Validate(); err != nil {
					add("%s: parameter %q: %w", rwhere, t.Name, err)
				}
			}
			for name := range rw.Init {
				if !names[name] {
					add("%s: init for %q, which is not a parameter", rwhere, name)
				}
			}
			for name, rate := range rw.Dropout {
				if !(rate >= 0 && rate < 1) {
					add("%s: dropout on %q at rate %v (want [0, 1))", rwhere, name, rate)
				}
				if !graphDefines(rw.Graph, name) {
					add("%s: dropout on %q, which the graph does not define", rwhere, name)
				}
			}
		}
	}
	if rewrites == 0 {
		add("the plan rewrites no edge")
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidPlan, errors.Join(probs...))
}

// sameEdge reports whether two edges name the same rewrite target.
func sameEdge(a, b Edge) bool {
	return a.Role == b.Role && a.Tensor == b.Tensor && slices.Equal(a.Consumers, b.Consumers) &&
		(a.Slice == nil) == (b.Slice == nil) && (a.Slice == nil || *a.Slice == *b.Slice)
}

// graphDefines reports whether name is a parameter, constant or node output of g.
func graphDefines(g Subgraph, name string) bool {
	for _, ts := range [][]Tensor{g.Params, g.Constants} {
		for _, t := range ts {
			if t.Name == name {
				return true
			}
		}
	}
	for _, n := range g.Nodes {
		if slices.Contains(n.Outputs, name) {
			return true
		}
	}
	return false
}

func finite(vs []float32) bool {
	for _, v := range vs {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}
