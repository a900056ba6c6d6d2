package unlearning

import (
	"context"
	"fmt"

	"github.com/s3t-dev/s3t/sdk"
)

// Cyclic is the uniform-prior selector of the reference implementation ("iterative cyclic
// rotation").
//
// For B <= L it returns the first B right-rotations of [0..L-1]. For B > L it grows the set
// like a prefix tree: at depth n = 1, 2, ... every sequence keeps its first n slices and
// contributes rotations of its suffix, until B sequences exist; B = L! yields every
// permutation. The order and the tie rules follow the reference code exactly (when the
// budget does not divide evenly, the extra rotations are spread over the parents and the
// level is sorted lexicographically). The first slices always cover min(B, L) distinct slices.
type Cyclic struct{}

// Select implements [sdk.Selector].
func (Cyclic) Select(ctx context.Context, req *sdk.SelectRequest) (*sdk.SelectResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("selector.cyclic: %w", err)
	}
	seqs, err := cyclic(ctx, req.Slices, req.Budget)
	if err != nil {
		return nil, fmt.Errorf("selector.cyclic: %w", err)
	}
	return &sdk.SelectResponse{Sequences: seqs}, nil
}

func rotations(lst []int) [][]int {
	out := make([][]int, len(lst))
	for i := range lst {
		out[i] = rotateRight(lst, i)
	}
	return out
}

func joined(prefix, suffix []int) []int {
	s := make([]int, 0, len(prefix)+len(suffix))
	s = append(s, prefix...)
	return append(s, suffix...)
}

func cyclic(ctx context.Context, L, B int) ([][]int, error) {
	all := rotations(identity(L))
	if B <= L {
		return all[:B], nil
	}
	levelSize := L // number of distinct (depth+1)-prefixes at the current depth
	for depth := 1; len(all) < B; depth++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if depth >= L {
			return nil, fmt.Errorf("internal error: %d sequences after exhausting %d levels, want %d", len(all), L, B)
		}
		levelSize *= L - depth
		branch := len(all) / L
		perParent := B / len(all)
		next := make([][]int, 0, B)
		for _, p := range all {
			rots := rotations(p[depth:])
			for _, suffix := range rots[:min(perParent, len(rots))] {
				next = append(next, joined(p[:depth], suffix))
			}
		}
		if len(next) < levelSize {
			rem := B % len(all)
			start, startCounter := 0, 0
			for added := 0; added < rem; added++ {
				if start >= len(all) {
					startCounter++
					start = startCounter
				}
				p := all[start]
				rots := rotations(p[depth:])
				if perParent >= len(rots) {
					return nil, fmt.Errorf("internal error: rotation %d of a suffix of length %d", perParent, len(rots))
				}
				next = append(next, joined(p[:depth], rots[perParent]))
				start += branch
			}
			if rem > 0 {
				sortSeqs(next)
			}
		}
		all = next
	}
	return all, nil
}

var _ sdk.Selector = Cyclic{}
