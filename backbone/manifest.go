package backbone

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
)

// ParseManifest reads a manifest from JSON, rejecting unknown fields and other versions. It checks
// the manifest's own consistency, not its match with a model: see ResolveManifest.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var man Manifest
	if err := dec.Decode(&man); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	if man.Version != ManifestVersion {
		return nil, fmt.Errorf("%w: version %d (want %d)", ErrInvalidManifest, man.Version, ManifestVersion)
	}
	if len(man.Blocks) == 0 {
		return nil, fmt.Errorf("%w: no blocks", ErrInvalidManifest)
	}
	for i := range man.Blocks {
		b := &man.Blocks[i]
		if b.Index != 0 && b.Index != i {
			return nil, fmt.Errorf("%w: block %d has index %d (blocks are listed bottom to top, from 0)", ErrInvalidManifest, i, b.Index)
		}
		b.Index = i
	}
	if man.Source == "" {
		man.Source = "file"
	}
	if man.Family == "" {
		man.Family = "manual"
	}
	return &man, nil
}

// LoadManifest reads a manifest file (see ParseManifest).
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	man, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return man, nil
}

// ValidateManifest checks man against the model: its own consistency first (sdk's
// Manifest.Validate: version, blocks indexed bottom to top with unique names, one output edge
// each, roles and kinds), then every tensor and consumer present in the graph and every consumer
// reading its edge's tensor; weight edges constant, activation edges computed; slices inside
// their tensors; no edge listed twice across blocks; blocks ordered bottom to top. The error
// wraps ErrInvalidManifest and lists the problems.
func (m *Model) ValidateManifest(man *Manifest) error {
	var probs []error
	add := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }
	if err := man.Validate(); err != nil {
		probs = append(probs, err)
	}
	ix := newIndex(m.pb.Graph)
	constMemo := map[string]bool{}
	nodeByName := map[string]int{}
	for i, n := range ix.g.GetNode() {
		nodeByName[n.GetName()] = i
	}
	type edgeKey struct {
		tensor, consumers string
		slice             Slice
	}
	seen := map[edgeKey]string{}
	var outputs []string
	for i, b := range man.Blocks {
		where := fmt.Sprintf("block %d (%s)", i, b.Name)
		if b.Input != "" && !ix.defined(b.Input) {
			add("%s: input %q: %v", where, b.Input, ErrNoSuchTensor)
		}
		for _, e := range b.Edges {
			ew := fmt.Sprintf("%s: %s edge %q", where, e.Role, e.Tensor)
			if e.Role == RoleOutput {
				outputs = append(outputs, e.Tensor)
			}
			if e.Kind == "" {
				add("%s: no kind (want weight or activation)", ew)
			}
			if !ix.defined(e.Tensor) {
				add("%s: %v", ew, ErrNoSuchTensor)
				continue
			}
			isConst := ix.isConstant(e.Tensor, constMemo)
			if e.Kind == KindWeight && !isConst {
				add("%s: a weight edge must be constant (initializers and constants only)", ew)
			}
			if e.Kind == KindActivation && isConst {
				add("%s: an activation edge must depend on the model's inputs", ew)
			}
			for _, c := range e.Consumers {
				ni, ok := nodeByName[c]
				if !ok {
					add("%s: consumer node %q not found", ew, c)
					continue
				}
				if !slices.Contains(ix.g.Node[ni].GetInput(), e.Tensor) {
					add("%s: consumer node %q does not read it", ew, c)
				}
			}
			if s := e.Slice; s != nil {
				if t := ix.init[e.Tensor]; t != nil || e.Shape != nil {
					dims := e.Shape.Sizes()
					if t != nil {
						dims = t.GetDims()
					}
					if s.Axis < 0 || s.Axis >= len(dims) || s.Start < 0 || s.Start >= s.End || (dims[s.Axis] >= 0 && s.End > dims[s.Axis]) {
						add("%s: slice %d:%d on axis %d outside shape %v", ew, s.Start, s.End, s.Axis, dims)
					}
				}
			}
			k := edgeKey{tensor: e.Tensor, consumers: fmt.Sprint(e.Consumers)}
			if e.Slice != nil {
				k.slice = *e.Slice
			}
			if prev, dup := seen[k]; dup {
				add("%s: same edge as %s", ew, prev)
			}
			seen[k] = ew
		}
	}
	// Bottom to top: each block's output must feed the next one's.
	for i := 1; i < len(outputs) && len(probs) == 0; i++ {
		anc := ix.ancestors([]string{outputs[i]}, nil)
		p, ok := ix.producer[outputs[i-1]]
		if ok && !anc[p] {
			add("block %d's output %q does not depend on block %d's output %q: blocks must be listed bottom to top",
				i, outputs[i], i-1, outputs[i-1])
		}
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidManifest, errors.Join(probs...))
}
