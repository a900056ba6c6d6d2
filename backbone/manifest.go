package backbone

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/s3t-dev/s3t/sdk"
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

// ValidateManifest checks man against the model: blocks listed bottom to top with unique names
// and one output edge each; every tensor and consumer present in the graph and every consumer
// reading its edge's tensor; weight edges constant, activation edges computed; slices inside
// their tensors; no edge listed twice. The error wraps ErrInvalidManifest and lists the problems.
func (m *Model) ValidateManifest(man *Manifest) error {
	var probs []error
	add := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }
	if man.Version != ManifestVersion {
		add("version %d (want %d)", man.Version, ManifestVersion)
	}
	if len(man.Blocks) == 0 {
		add("no blocks")
	}
	ix := newIndex(m.pb.Graph)
	constMemo := map[string]bool{}
	nodeByName := map[string]int{}
	for i, n := range ix.g.GetNode() {
		nodeByName[n.GetName()] = i
	}
	names := map[string]bool{}
	type edgeKey struct {
		tensor, consumers string
		slice             Slice
	}
	seen := map[edgeKey]string{}
	var outputs []string
	for i, b := range man.Blocks {
		where := fmt.Sprintf("block %d (%s)", i, b.Name)
		if b.Index != i {
			add("%s: index %d, want %d", where, b.Index, i)
		}
		if b.Name == "" {
			add("block %d: no name", i)
		} else if names[b.Name] {
			add("%s: name used twice", where)
		}
		names[b.Name] = true
		if b.Input != "" && !ix.defined(b.Input) {
			add("%s: input %q: %v", where, b.Input, ErrNoSuchTensor)
		}
		nout := 0
		for _, e := range b.Edges {
			ew := fmt.Sprintf("%s: %s edge %q", where, e.Role, e.Tensor)
			if !sdk.RolePattern.MatchString(string(e.Role)) {
				add("%s: role must match %s", ew, sdk.RolePattern)
			}
			if e.Role == RoleOutput {
				nout++
				outputs = append(outputs, e.Tensor)
			}
			if k := e.Role.Kind(); k != "" && e.Kind != k {
				add("%s: kind %q, want %q", ew, e.Kind, k)
			}
			if e.Kind != KindWeight && e.Kind != KindActivation {
				add("%s: kind %q (want weight or activation)", ew, e.Kind)
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
		if nout != 1 {
			add("%s: %d output edges, want exactly 1", where, nout)
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
