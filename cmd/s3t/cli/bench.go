package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/plugins/lora"
	"github.com/s3t-dev/s3t/sdk"
)

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks of the serving and training paths",
		Long:  "Benchmarks of s3t's hot paths. Each reports medians and percentiles of repeated runs, and ratios measured in the same run.",
	}
	c.AddCommand(newBenchInferCmd(), newBenchTrainCmd(), newBenchServeCmd(), newBenchClusterCmd())
	return c
}

// inferBenchResult is one row of `s3t bench infer`.
type inferBenchResult struct {
	Batch int `json:"batch"`
	// Original and Spliced describe the backbone as exported and with LoRA spliced into its
	// query and value weights, the LoRA parameters fed as inputs on every run.
	Original inferStats `json:"original"`
	Spliced  inferStats `json:"spliced"`
	// SplicedRatio is Spliced.P50 / Original.P50.
	SplicedRatio float64 `json:"spliced_ratio"`
}

type inferStats struct {
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	ORTP50Ms      float64 `json:"ort_p50_ms"`
	ThroughputPS  float64 `json:"throughput_per_s"` // samples per second at the median latency
	GoOverheadPct float64 `json:"go_overhead_pct"`  // median (total - ORT) / ORT, in percent
	Runs          int     `json:"runs"`
}

func newBenchInferCmd() *cobra.Command {
	var (
		path       string
		batches    string
		iterations int
		warmup     int
		rounds     int
		threads    int
		provider   string
		rank       int64
		asJSON     bool
	)
	c := &cobra.Command{
		Use:   "infer",
		Short: "Inference latency and throughput through ONNX Runtime, plain and with PEFT spliced in",
		Long: `Run a backbone through ONNX Runtime and report latency (p50/p99), throughput, and the Go layer's
cost over ONNX Runtime's own run time. The same backbone with LoRA (rank --rank) spliced into every
query and value weight, its parameters fed as inputs on every run, is measured in the same run,
alternating rounds, and reported as a ratio to the original.`,
		Example: `  s3t bench infer --backbone assets/vit-fmnist.onnx --batch 1,64`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if path == "" {
				return fmt.Errorf("%w: --backbone is required", errUsage)
			}
			sizes, err := parseInts(batches)
			if err != nil || len(sizes) == 0 {
				return fmt.Errorf("%w: --batch: want a comma-separated list of sizes >= 1", errUsage)
			}
			if iterations < 1 || rounds < 1 || warmup < 0 {
				return fmt.Errorf("%w: --iterations and --rounds must be >= 1", errUsage)
			}
			prov, err := ort.ParseProvider(provider)
			if err != nil {
				return fmt.Errorf("%w: --provider: %w", errUsage, err)
			}
			orig, err := backbone.LoadFile(path)
			if err != nil {
				return err
			}
			spliced, params, err := spliceLoRA(c.Context(), orig, rank)
			if err != nil {
				return err
			}
			origBytes, err := orig.Bytes()
			if err != nil {
				return err
			}
			splicedBytes, err := spliced.Bytes()
			if err != nil {
				return err
			}
			opts := []ort.SessionOption{ort.WithIntraOpThreads(threads), ort.WithProvider(prov)}
			so, err := ort.NewSession(origBytes, opts...)
			if err != nil {
				return err
			}
			defer so.Close()
			ss, err := ort.NewSession(splicedBytes, append(opts, ort.WithOptionalInputs(params...))...)
			if err != nil {
				return err
			}
			defer ss.Close()
			if st := so.Status(); st.Fallback != "" {
				fmt.Fprintf(c.ErrOrStderr(), "provider %s fell back to %s: %s\n", st.Requested, st.Provider, st.Fallback)
			}
			var results []inferBenchResult
			for _, batch := range sizes {
				r, err := benchInferBatch(c, so, ss, batch, warmup, iterations, rounds)
				if err != nil {
					return err
				}
				results = append(results, r)
			}
			out := c.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(struct {
					Backbone string             `json:"backbone"`
					Provider ort.Provider       `json:"provider"`
					Threads  int                `json:"intra_op_threads"`
					LoRA     int64              `json:"lora_rank"`
					Params   int                `json:"lora_tensors"`
					Results  []inferBenchResult `json:"results"`
				}{path, so.Provider(), threads, rank, len(params), results})
			}
			fmt.Fprintf(out, "backbone %s, provider %s, %d LoRA tensors (rank %d) on every query/value weight\n",
				path, so.Provider(), len(params), rank)
			printInferBench(out, results)
			return nil
		},
	}
	c.Flags().StringVar(&path, "backbone", "", "ONNX backbone file (required)")
	c.Flags().StringVar(&batches, "batch", "1,64", "comma-separated batch sizes")
	c.Flags().IntVar(&iterations, "iterations", 50, "timed runs per model per round")
	c.Flags().IntVar(&warmup, "warmup", 5, "untimed runs per model per round")
	c.Flags().IntVar(&rounds, "rounds", 5, "alternating rounds (original, spliced) per batch size")
	c.Flags().IntVar(&threads, "threads", 0, "ONNX Runtime intra-op threads (0: one per core)")
	c.Flags().StringVar(&provider, "provider", "cpu", "execution provider: cpu or cuda (falls back to cpu)")
	c.Flags().Int64Var(&rank, "rank", 8, "LoRA rank of the spliced model")
	c.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	return c
}

func benchInferBatch(c *cobra.Command, so, ss *ort.Session, batch, warmup, iterations, rounds int) (inferBenchResult, error) {
	ctx := c.Context()
	inOrig, err := ort.SyntheticInputs(so, batch, 1)
	if err != nil {
		return inferBenchResult{}, err
	}
	// The same data input, plus non-zero LoRA parameters, fed on every run.
	inSpliced, err := ort.SyntheticInputs(ss, batch, 1)
	if err != nil {
		return inferBenchResult{}, err
	}
	for name, t := range inOrig {
		inSpliced[name] = t
	}
	var all [2]ort.Samples
	for r := 0; r < rounds; r++ {
		for k, s := range []*ort.Session{so, ss} {
			in := inOrig
			if k == 1 {
				in = inSpliced
			}
			smp, err := ort.Bench(ctx, s, in, warmup, iterations)
			if err != nil {
				return inferBenchResult{}, err
			}
			all[k].Total = append(all[k].Total, smp.Total...)
			all[k].ORT = append(all[k].ORT, smp.ORT...)
		}
	}
	res := inferBenchResult{Batch: batch, Original: toStats(all[0].Summary(), batch), Spliced: toStats(all[1].Summary(), batch)}
	res.SplicedRatio = res.Spliced.P50Ms / res.Original.P50Ms
	return res, nil
}

func toStats(s ort.Summary, batch int) inferStats {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	st := inferStats{P50Ms: ms(s.TotalP50), P99Ms: ms(s.TotalP99), ORTP50Ms: ms(s.ORTP50), GoOverheadPct: 100 * s.Overhead, Runs: s.Runs}
	if s.TotalP50 > 0 {
		st.ThroughputPS = float64(batch) / s.TotalP50.Seconds()
	}
	return st
}

func printInferBench(w io.Writer, results []inferBenchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "batch\tmodel\tp50 ms\tp99 ms\tORT p50 ms\tGo overhead\tsamples/s\tvs original\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\toriginal\t%.3f\t%.3f\t%.3f\t%.2f%%\t%.0f\t\t\n", r.Batch,
			r.Original.P50Ms, r.Original.P99Ms, r.Original.ORTP50Ms, r.Original.GoOverheadPct, r.Original.ThroughputPS)
		fmt.Fprintf(tw, "%d\tspliced\t%.3f\t%.3f\t%.3f\t%.2f%%\t%.0f\t%.3fx\t\n", r.Batch,
			r.Spliced.P50Ms, r.Spliced.P99Ms, r.Spliced.ORTP50Ms, r.Spliced.GoOverheadPct, r.Spliced.ThroughputPS, r.SplicedRatio)
	}
	tw.Flush()
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", part)
		}
		out = append(out, v)
	}
	return out, nil
}

// spliceLoRA returns m with LoRA (rank rank) spliced into every query and value weight the
// detected manifest names (packed q/k/v unpacked first), and the names of the new parameter
// inputs. The rewrite is the peft.lora plugin's own plan, computed in-process: a benchmark must
// not depend on a plugin process.
func spliceLoRA(ctx context.Context, m *backbone.Model, rank int64) (*backbone.Model, []string, error) {
	man, err := backbone.DetectManifest(m)
	if err != nil {
		return nil, nil, err
	}
	m, man, err = m.Unpack(man)
	if err != nil {
		return nil, nil, err
	}
	config, err := json.Marshal(map[string]any{"rank": rank, "alpha": 2 * rank, "targets": []backbone.Role{backbone.RoleQuery, backbone.RoleValue}})
	if err != nil {
		return nil, nil, err
	}
	plan, err := lora.New().Plan(ctx, &sdk.PlanRequest{Manifest: *man, Config: config})
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	if err := sdk.ValidatePlan(man, plan); err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	out, params, err := m.SplicePlan(lora.Name, plan)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(params))
	for i, p := range params {
		names[i] = p.Name
	}
	return out, names, nil
}
