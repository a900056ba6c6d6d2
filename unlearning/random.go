package unlearning

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/s3t-dev/s3t/sdk"
)

// enumerateLimit is the largest L! for which Random enumerates every permutation and
// shuffles them instead of sampling with rejection.
const enumerateLimit = 40320 // 8!

// Random is the baseline selector: B distinct uniformly random permutations, reproducible
// for a seed (PCG seeded with the request's seed).
type Random struct{}

// Select implements [sdk.Selector].
func (Random) Select(ctx context.Context, req *sdk.SelectRequest) (*sdk.SelectResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("selector.random: %w", err)
	}
	rng := rand.New(rand.NewPCG(uint64(req.Seed), 0x5337_5e1e_c70a))
	L, B := req.Slices, req.Budget
	if sdk.Factorial(L) <= enumerateLimit {
		all := permutations(L)
		// Partial Fisher-Yates: the first B entries are a uniform sample without replacement.
		for i := 0; i < B; i++ {
			j := i + rng.IntN(len(all)-i)
			all[i], all[j] = all[j], all[i]
		}
		return &sdk.SelectResponse{Sequences: all[:B]}, nil
	}
	// L! is huge compared with any budget that can be trained: rejection sampling.
	seen := make(map[string]bool, B)
	seqs := make([][]int, 0, B)
	for len(seqs) < B {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("selector.random: %w", err)
		}
		s := identity(L)
		rng.Shuffle(L, func(i, j int) { s[i], s[j] = s[j], s[i] })
		k := fmt.Sprint(s)
		if !seen[k] {
			seen[k] = true
			seqs = append(seqs, s)
		}
	}
	return &sdk.SelectResponse{Sequences: seqs}, nil
}

// permutations returns every permutation of 0..n-1 in lexicographic order.
func permutations(n int) [][]int {
	var out [][]int
	cur := make([]int, 0, n)
	used := make([]bool, n)
	var rec func()
	rec = func() {
		if len(cur) == n {
			out = append(out, append([]int(nil), cur...))
			return
		}
		for v := 0; v < n; v++ {
			if !used[v] {
				used[v] = true
				cur = append(cur, v)
				rec()
				cur = cur[:len(cur)-1]
				used[v] = false
			}
		}
	}
	rec()
	return out
}

var _ sdk.Selector = Random{}
