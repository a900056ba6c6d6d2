package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/unlearning"
)

func newSimulateCmd() *cobra.Command {
	var (
		f         selectFlags
		shards    int
		runs      int
		retention int
		asJSON    bool
		workers   int
	)
	c := &cobra.Command{
		Use:   "simulate",
		Short: "Simulate the deletion rate of an S3T configuration and compare it with theory",
		Long: `Simulate the deletion rate: the expected number of deletion requests, each hitting one of the
m*L (shard, slice) units uniformly at random, before no shard has a live model. The simulation
runs the same live-prefix logic as the server. It prints the estimate with its 95% interval, the
closed form m*L*H(m*B'), SISA's m*L*H(m), and the ratio of the estimate to SISA.`,
		Example: `  s3t simulate --shards 5 --slices 4 --budget 4 --selector cyclic --runs 10000
  s3t simulate --shards 10 --slices 8 --budget 8 --runs 10000 --seed 7 --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req, sel, done, err := f.request(c.ErrOrStderr())
			if err != nil {
				return err
			}
			defer done()
			if shards < 1 || runs < 1 {
				return fmt.Errorf("%w: --shards and --runs must be >= 1", errUsage)
			}
			start := time.Now()
			res, err := unlearning.Simulate(c.Context(), unlearning.SimConfig{
				Shards: shards, Slices: req.Slices, Budget: req.Budget, Selector: sel,
				Prior: req.Prior, Runs: runs, Seed: uint64(f.seed), Workers: workers,
			})
			if err != nil {
				return err
			}
			elapsed := time.Since(start)
			var curve [][]float64
			if retention > 0 {
				seqs, err := unlearning.Select(c.Context(), sel, req)
				if err != nil {
					return err
				}
				if curve, err = unlearning.Retention(c.Context(), seqs, retention, runs, uint64(f.seed)); err != nil {
					return err
				}
			}
			out := c.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(struct {
					unlearning.SimResult
					Retention [][]float64 `json:"retention,omitempty"`
				}{res, curve})
			}
			fmt.Fprintf(out, "S3T deletion rate, m=%d L=%d B=%d selector=%s, %d runs (%s)\n",
				shards, req.Slices, req.Budget, f.selector, runs, elapsed.Round(time.Millisecond))
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "simulated\t%.2f\t95%% CI [%.2f, %.2f]\n", res.DeletionRate, res.CI95[0], res.CI95[1])
			fmt.Fprintf(tw, "closed form\t%.2f\tm*L*H(m*B'), B'=%d\n", res.ClosedForm, res.DistinctFirst)
			fmt.Fprintf(tw, "SISA\t%.2f\tm*L*H(m)\n", res.SISAClosedForm)
			fmt.Fprintf(tw, "ratio vs SISA\t%.3f\t\n", res.RatioVsSISA)
			if err := tw.Flush(); err != nil {
				return err
			}
			if curve != nil {
				printRetention(out, curve)
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().IntVar(&shards, "shards", 5, "m: number of shards")
	c.Flags().IntVar(&runs, "runs", 10000, "Monte-Carlo runs")
	c.Flags().IntVar(&retention, "retention", 0, "also print the retention curve of one shard up to this many deletions in it")
	c.Flags().IntVar(&workers, "workers", 0, "goroutines (0 = one per CPU); the result does not depend on it")
	c.Flags().BoolVar(&asJSON, "json", false, `print {"deletion_rate", "ci95", "closed_form", "sisa_closed_form", "ratio_vs_sisa", ...}`)
	return c
}

// printRetention prints P(shard serves >= k slices | r deletions in it) as a table.
func printRetention(w io.Writer, curve [][]float64) {
	L := len(curve[0]) - 1
	fmt.Fprintf(w, "\nretention: P(shard still serves >= k slices) after r deletions in it\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "r\t")
	for k := 1; k <= L; k++ {
		fmt.Fprintf(tw, "k>=%d\t", k)
	}
	fmt.Fprintln(tw)
	for r, row := range curve {
		fmt.Fprintf(tw, "%d\t", r)
		for k := 1; k <= L; k++ {
			fmt.Fprintf(tw, "%.3f\t", row[k])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
