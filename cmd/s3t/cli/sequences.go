package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/unlearning"
)

type selectFlags struct {
	slices    int
	budget    int
	selector  string
	prior     string
	deletions float64
	seed      int64
	// pluginData, when set, runs the selector through the plugin host over that data directory.
	pluginData string
}

func (f *selectFlags) register(c *cobra.Command) {
	c.Flags().IntVar(&f.slices, "slices", 4, "L: number of slices per shard (and PEFT block groups)")
	c.Flags().IntVar(&f.budget, "budget", 4, "B: number of slice orders (sequences) trained per shard, 1..L!")
	c.Flags().StringVar(&f.selector, "selector", "cyclic", "sequence selector: "+strings.Join(unlearning.SelectorNames, ", "))
	c.Flags().StringVar(&f.prior, "prior", "", "per-slice deletion probabilities p1,...,pL for bms (default uniform)")
	c.Flags().Float64Var(&f.deletions, "deletions", 0, fmt.Sprintf("t: expected deletions per shard, for bms scoring (0 means %d)", unlearning.DefaultExpectedDeletions))
	c.Flags().Int64Var(&f.seed, "seed", 1, "seed for randomised selectors")
	c.Flags().StringVar(&f.pluginData, "plugin-data", "", "run the selector through the plugin host over this data directory (out of process; an installed selector plugin, or a built-in); default: a built-in in process")
}

// request returns the selection request and the selector; done releases the plugin host.
func (f *selectFlags) request(stderr io.Writer) (req *sdk.SelectRequest, sel sdk.Selector, done func(), err error) {
	prior, err := parseFloats(f.prior)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: --prior: %w", errUsage, err)
	}
	req = &sdk.SelectRequest{Slices: f.slices, Budget: f.budget, Prior: prior, ExpectedDeletions: f.deletions, Seed: f.seed}
	if err := req.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	host, done, err := openHost(f.pluginData, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, nil, nil, err
	}
	if sel, err = openSelector(f.selector, host); err != nil {
		done()
		return nil, nil, nil, err
	}
	return req, sel, done, nil
}

func parseFloats(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", part)
		}
		out = append(out, v)
	}
	return out, nil
}

func newSequencesCmd() *cobra.Command {
	var f selectFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "sequences",
		Short: "Print the slice orders a selector picks for one shard",
		Long: `Print the B slice orders (permutations of the slices 0..L-1) that a sequence selector picks
for one shard, and their diversity: the mean pairwise positional Hamming distance.`,
		Example: `  s3t sequences --slices 4 --budget 4 --selector cyclic
  s3t sequences --slices 4 --budget 2 --selector bms --prior 0.4,0.3,0.2,0.1 --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req, sel, done, err := f.request(c.ErrOrStderr())
			if err != nil {
				return err
			}
			defer done()
			seqs, err := unlearning.Select(c.Context(), sel, req)
			if err != nil {
				return err
			}
			div := unlearning.Diversity(seqs)
			out := c.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				return enc.Encode(struct {
					Sequences [][]int `json:"sequences"`
					Diversity float64 `json:"diversity"`
				}{seqs, div})
			}
			for i, s := range seqs {
				fmt.Fprintf(out, "%3d  %v\n", i, s)
			}
			fmt.Fprintf(out, "selector %s, L=%d, B=%d: %d distinct first slices, mean pairwise Hamming distance %.3f\n",
				f.selector, req.Slices, req.Budget, unlearning.DistinctFirst(seqs), div)
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, `print {"sequences": [[...], ...], "diversity": x}`)
	return c
}
