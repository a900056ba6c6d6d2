package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/unlearning"
)

// demoSettings are the paper's deletion-rate settings (METHOD.md): m=5 and L=4 over every
// budget up to L, and the larger L where the gain over SISA grows.
var demoSettings = []struct{ m, L, B int }{
	{5, 4, 1}, {5, 4, 2}, {5, 4, 4},
	{2, 8, 1}, {2, 8, 4}, {2, 8, 8},
	{10, 8, 1}, {10, 8, 8},
}

func newDemoRatesCmd() *cobra.Command {
	var runs int
	var seed uint64
	c := &cobra.Command{
		Use:   "rates",
		Short: "Print the S3T deletion-rate study on the paper's settings (simulated)",
		Long: `The S3T deletion-rate study on the paper's settings: for each (m shards, L slices, B sequences)
the simulated number of deletion requests a model survives, the closed form, SISA's value, and
the gain over SISA.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			out := c.OutOrStdout()
			fmt.Fprintf(out, "S3T deletion rate: expected deletion requests before no shard has a live model\n")
			fmt.Fprintf(out, "(cyclic selector, %d Monte-Carlo runs per row, seed %d)\n\n", runs, seed)
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "m\tL\tB\tB'\tsimulated\t95% CI\tclosed form\tSISA\tvs SISA\t")
			start := time.Now()
			for _, s := range demoSettings {
				res, err := unlearning.Simulate(c.Context(), unlearning.SimConfig{
					Shards: s.m, Slices: s.L, Budget: s.B, Selector: unlearning.Cyclic{}, Runs: runs, Seed: seed,
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.2f\t[%.2f, %.2f]\t%.2f\t%.2f\t%.2fx\t\n",
					s.m, s.L, s.B, res.DistinctFirst, res.DeletionRate, res.CI95[0], res.CI95[1],
					res.ClosedForm, res.SISAClosedForm, res.RatioVsSISA)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			curve, err := unlearning.Retention(c.Context(), [][]int{{0, 1, 2, 3}, {3, 0, 1, 2}, {2, 3, 0, 1}, {1, 2, 3, 0}}, 6, runs, seed)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\none shard with L=4, B=4 (cyclic):")
			printRetention(out, curve)
			fmt.Fprintf(out, "\ndone in %s\n", time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	c.Flags().IntVar(&runs, "runs", 20000, "Monte-Carlo runs per setting")
	c.Flags().Uint64Var(&seed, "seed", 1, "simulation seed")
	return c
}
