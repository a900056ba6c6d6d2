package sdktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/unlearning"
)

// selectCases are the requests the selector checks make.
var selectCases = []sdk.SelectRequest{
	{Slices: 1, Budget: 1, Seed: 1},
	{Slices: 4, Budget: 1, Seed: 7},
	{Slices: 4, Budget: 2, Seed: 7},
	{Slices: 4, Budget: 4, Seed: 7},
	{Slices: 4, Budget: 24, Seed: 7},
	{Slices: 5, Budget: 7, Seed: 11},
	{Slices: 6, Budget: 30, Seed: 11},
	{Slices: 8, Budget: 3, Seed: 3},
	{Slices: 4, Budget: 4, Seed: 5, Prior: []float64{0.1, 0.2, 0.3, 0.4}, ExpectedDeletions: 3},
}

// RunSelector runs the selector checks on an implementation in-process. They ask for budgets up
// to L! (for example 24 orders of 4 slices, 30 of 6), so a selector must answer with more
// orders than slices; only B > L! is an impossible budget (sdk.ErrInvalidRequest).
func RunSelector(t *testing.T, impl sdk.Selector) {
	t.Helper()
	ctx := context.Background()
	for _, req := range selectCases {
		t.Run(fmt.Sprintf("L%d-B%d-seed%d", req.Slices, req.Budget, req.Seed), func(t *testing.T) {
			first, err := impl.Select(ctx, &req)
			if err != nil {
				t.Fatalf("Select(%+v): %v", req, err)
			}
			if err := unlearning.CheckSequences(first.Sequences, req.Slices, req.Budget); err != nil {
				t.Fatalf("Select(%+v): %v", req, err)
			}
			again, err := impl.Select(ctx, &req)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(first.Sequences, again.Sequences, slices.Equal) {
				t.Errorf("Select(%+v) is not deterministic: %v then %v", req, first.Sequences, again.Sequences)
			}
		})
	}
	t.Run("impossible-budget", func(t *testing.T) {
		_, err := impl.Select(ctx, &sdk.SelectRequest{Slices: 4, Budget: 25})
		if !errors.Is(err, sdk.ErrInvalidRequest) {
			t.Errorf("Select with B > L!: got %v, want an error wrapping sdk.ErrInvalidRequest", err)
		}
	})
}

// TestSelector runs the selector conformance checks on the plugin that cmd starts, as a real
// process under the s3t host's Client.
func TestSelector(t *testing.T, cmd plugins.Command, opts ...Option) {
	t.Helper()
	cfg := newConfig(opts)
	c := start(t, cmd, cfg)
	info(t, c, sdk.KindSelector, cfg)
	RunSelector(t, c.Selector())
	t.Run("restart", func(t *testing.T) {
		req := sdk.SelectRequest{Slices: 5, Budget: 6, Seed: 99}
		first, err := c.Selector().Select(context.Background(), &req)
		if err != nil {
			t.Fatal(err)
		}
		c2 := start(t, cmd, cfg)
		second, err := c2.Selector().Select(context.Background(), &req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(first.Sequences, second.Sequences, slices.Equal) {
			t.Errorf("two processes select differently for the same seed: %v and %v", first.Sequences, second.Sequences)
		}
	})
}
