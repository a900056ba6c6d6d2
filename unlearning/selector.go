package unlearning

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/s3t-dev/s3t/sdk"
)

// SelectorNames lists the built-in selectors in the order the CLI shows them.
var SelectorNames = []string{"cyclic", "bms", "random"}

// NewSelector returns the built-in selector with the given name ("cyclic", "bms", "random";
// the namespaced forms "selector.cyclic" etc. are accepted too).
func NewSelector(name string) (sdk.Selector, error) {
	switch name {
	case "cyclic", "selector.cyclic":
		return Cyclic{}, nil
	case "bms", "selector.bms":
		return BMS{}, nil
	case "random", "selector.random":
		return Random{}, nil
	}
	return nil, fmt.Errorf("%w: unknown selector %q (want one of %v)", sdk.ErrInvalidRequest, name, SelectorNames)
}

// ErrBadSequences means a selector answered with something other than the distinct
// permutations it was asked for: the selector's fault, not the request's.
var ErrBadSequences = errors.New("selector returned bad sequences")

// Select runs sel and checks that its answer is what the contract promises: req.Budget
// distinct permutations of 0..req.Slices-1. Callers that take sequences from a plugin should
// go through Select so that a faulty selector cannot corrupt a model.
func Select(ctx context.Context, sel sdk.Selector, req *sdk.SelectRequest) ([][]int, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	resp, err := sel.Select(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := CheckSequences(resp.Sequences, req.Slices, req.Budget); err != nil {
		return nil, fmt.Errorf("unlearning: %w: %w", ErrBadSequences, err)
	}
	return resp.Sequences, nil
}

// CheckSequences reports whether seqs holds exactly budget distinct permutations of
// 0..slices-1.
func CheckSequences(seqs [][]int, slices, budget int) error {
	if len(seqs) != budget {
		return fmt.Errorf("got %d sequences, want %d", len(seqs), budget)
	}
	seen := make(map[string]int, len(seqs))
	for i, s := range seqs {
		if err := checkPermutation(s, slices); err != nil {
			return fmt.Errorf("sequence %d: %w", i, err)
		}
		k := fmt.Sprint(s)
		if j, dup := seen[k]; dup {
			return fmt.Errorf("sequences %d and %d are both %v", j, i, s)
		}
		seen[k] = i
	}
	return nil
}

func checkPermutation(s []int, n int) error {
	if len(s) != n {
		return fmt.Errorf("length %d, want %d", len(s), n)
	}
	used := make([]bool, n)
	for _, v := range s {
		if v < 0 || v >= n {
			return fmt.Errorf("slice %d out of range [0, %d)", v, n)
		}
		if used[v] {
			return fmt.Errorf("slice %d repeated in %v", v, s)
		}
		used[v] = true
	}
	return nil
}

// Diversity returns the mean pairwise positional Hamming distance between sequences: for
// every pair, the number of positions where they differ, averaged over pairs. It is 0 for
// fewer than two sequences.
func Diversity(seqs [][]int) float64 {
	if len(seqs) < 2 {
		return 0
	}
	total, pairs := 0, 0
	for i := range seqs {
		for j := i + 1; j < len(seqs); j++ {
			for p := range seqs[i] {
				if seqs[i][p] != seqs[j][p] {
					total++
				}
			}
			pairs++
		}
	}
	return float64(total) / float64(pairs)
}

// DistinctFirst returns B', the number of distinct first slices among seqs. A shard's
// model dies only when every one of those slices has been hit by a deletion.
func DistinctFirst(seqs [][]int) int {
	first := map[int]bool{}
	for _, s := range seqs {
		if len(s) > 0 {
			first[s[0]] = true
		}
	}
	return len(first)
}

// rotateRight returns lst rotated right by k: lst[len-k:] + lst[:len-k].
func rotateRight(lst []int, k int) []int {
	n := len(lst)
	k %= n
	out := make([]int, 0, n)
	out = append(out, lst[n-k:]...)
	return append(out, lst[:n-k]...)
}

func identity(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func lessSeq(a, b []int) bool {
	for i := range a {
		if i >= len(b) {
			return false
		}
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func sortSeqs(seqs [][]int) {
	sort.SliceStable(seqs, func(i, j int) bool { return lessSeq(seqs[i], seqs[j]) })
}
