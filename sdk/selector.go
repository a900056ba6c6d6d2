package sdk

import (
	"context"
	"errors"
	"fmt"
)

// Selector chooses the slice orders ("sequences") one shard is trained under.
//
// Select returns exactly req.Budget distinct permutations of 0..req.Slices-1. For the same
// request (seed included) it returns the same sequences. Implementations must honour ctx.
type Selector interface {
	Select(ctx context.Context, req *SelectRequest) (*SelectResponse, error)
}

// SelectRequest is the input of [Selector.Select].
type SelectRequest struct {
	// Slices is L, the number of slices per shard (>= 1).
	Slices int `json:"slices"`
	// Budget is B, the number of sequences to return (1 <= B <= L!).
	Budget int `json:"budget"`
	// Prior is the per-slice deletion probability p_1..p_L; empty means uniform. Selectors
	// that do not use a prior ignore it.
	Prior []float64 `json:"prior,omitempty"`
	// ExpectedDeletions is t, the expected number of deletions per shard, used by
	// prior-aware selectors to score sequences. Zero means the selector's default.
	ExpectedDeletions float64 `json:"expected_deletions,omitempty"`
	// Seed makes randomised selectors reproducible.
	Seed int64 `json:"seed"`
}

// SelectResponse is the output of [Selector.Select].
type SelectResponse struct {
	// Sequences holds Budget distinct permutations of 0..Slices-1, in the selector's order of
	// preference (the first is the one served when prefixes tie).
	Sequences [][]int `json:"sequences"`
}

// ErrInvalidRequest marks a request that no selector can satisfy (bad L, B or prior).
var ErrInvalidRequest = errors.New("invalid request")

// MaxSlices is the largest L a selector must accept.
const MaxSlices = 64

// MaxBudget is the largest B a selector must accept. Training costs B*L(L+1)/2 slice passes
// per shard, so real budgets are far below it; it bounds memory for a careless request.
const MaxBudget = 1 << 16

// Validate checks the fields every selector relies on: 1 <= Slices <= MaxSlices,
// 1 <= Budget <= Slices!, and, when a prior is given, one finite probability in [0, 1] per
// slice. Errors wrap [ErrInvalidRequest].
func (r *SelectRequest) Validate() error {
	if r.Slices < 1 || r.Slices > MaxSlices {
		return fmt.Errorf("%w: slices must be in [1, %d], got %d", ErrInvalidRequest, MaxSlices, r.Slices)
	}
	if r.Budget < 1 {
		return fmt.Errorf("%w: budget must be >= 1, got %d", ErrInvalidRequest, r.Budget)
	}
	if r.Budget > MaxBudget {
		return fmt.Errorf("%w: budget %d exceeds the maximum %d", ErrInvalidRequest, r.Budget, MaxBudget)
	}
	if max := Factorial(r.Slices); r.Budget > max {
		return fmt.Errorf("%w: budget %d exceeds %d! = %d distinct sequences", ErrInvalidRequest, r.Budget, r.Slices, max)
	}
	if len(r.Prior) > 0 {
		if len(r.Prior) != r.Slices {
			return fmt.Errorf("%w: prior has %d entries, want one per slice (%d)", ErrInvalidRequest, len(r.Prior), r.Slices)
		}
		for i, p := range r.Prior {
			if !(p >= 0 && p <= 1) { // also rejects NaN
				return fmt.Errorf("%w: prior[%d] = %v is not a probability", ErrInvalidRequest, i, p)
			}
		}
	}
	if r.ExpectedDeletions < 0 || r.ExpectedDeletions != r.ExpectedDeletions {
		return fmt.Errorf("%w: expected deletions must be >= 0, got %v", ErrInvalidRequest, r.ExpectedDeletions)
	}
	return nil
}

// Factorial returns n!, saturating at the largest int for large n.
func Factorial(n int) int {
	const maxInt = int(^uint(0) >> 1)
	f := 1
	for i := 2; i <= n; i++ {
		if f > maxInt/i {
			return maxInt
		}
		f *= i
	}
	return f
}
