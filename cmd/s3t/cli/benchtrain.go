package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/dataset"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/unlearning"
)

// trainBenchRow is one measurement of `s3t bench train`.
type trainBenchRow struct {
	// What is "stage" (stage 1, the top group, on every sample) or "shard" (B sequences x L stages).
	What string `json:"what"`
	// Cache says whether trunk activations came from the activation cache (filled by the run
	// itself for "shard"; already filled for "stage") or were recomputed by ONNX Runtime every epoch.
	Cache bool `json:"cache"`
	// Examples counts example-passes (samples x epochs, summed over stages); Seconds is the wall
	// time, compilation of the GoMLX graphs included.
	Examples          int     `json:"examples"`
	Seconds           float64 `json:"seconds"`
	ExamplesPerSecond float64 `json:"examples_per_second"`
}

func newBenchTrainCmd() *cobra.Command {
	var (
		path                             string
		data                             string
		samples, slices, budget, batch   int
		epochs, rank, microBatches, reps int
		only                             string
		asJSON                           bool
	)
	c := &cobra.Command{
		Use:   "train",
		Short: "Training throughput of one stage and of a whole shard, with and without the activation cache",
		Long: `Train LoRA stages on --samples samples of one shard and report examples/s: one stage (stage 1,
the top block group, on all samples) and a whole shard (--budget sequences x --slices stages on
cumulative slices), each with trunk activations from the activation cache and recomputed by ONNX
Runtime at every epoch. Times are wall times and include compiling the GoMLX graphs of each stage.
The process's peak resident memory (VmHWM) is reported at the end.`,
		Example: `  s3t bench train --samples 2048 --batch 64`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if samples < slices || slices < 1 || budget < 1 || batch < 1 || epochs < 1 || reps < 1 {
				return fmt.Errorf("%w: need --samples >= --slices >= 1 and positive --budget, --batch, --epochs, --repeat", errUsage)
			}
			if only != "" && only != "stage" && only != "shard" {
				return fmt.Errorf("%w: --only is stage or shard", errUsage)
			}
			rows, err := runBenchTrain(c.Context(), path, data, samples, slices, budget, batch, epochs, rank, microBatches, reps, only)
			if err != nil {
				return err
			}
			peak := peakRSS()
			if asJSON {
				return json.NewEncoder(c.OutOrStdout()).Encode(struct {
					Samples   int             `json:"samples"`
					Slices    int             `json:"slices"`
					Budget    int             `json:"budget"`
					Batch     int             `json:"batch"`
					Epochs    int             `json:"epochs"`
					Rank      int             `json:"lora_rank"`
					Results   []trainBenchRow `json:"results"`
					PeakBytes int64           `json:"peak_rss_bytes"`
				}{samples, slices, budget, batch, epochs, rank, rows, peak})
			}
			out := c.OutOrStdout()
			fmt.Fprintf(out, "%d samples, L=%d slices, B=%d sequences, batch %d, %d epoch(s) per stage, LoRA rank %d\n",
				samples, slices, budget, batch, epochs, rank)
			printBenchTrain(out, rows)
			fmt.Fprintf(out, "peak memory (VmHWM): %s\n", humanBytes(peak))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&path, "backbone", "", "ONNX backbone file (default: the committed ViT)")
	f.StringVar(&data, "data", "mnist", "data set: mnist or fashion-mnist")
	f.IntVar(&samples, "samples", 1024, "samples in the shard")
	f.IntVar(&slices, "slices", 4, "L")
	f.IntVar(&budget, "budget", 2, "B")
	f.IntVar(&batch, "batch", 64, "batch size")
	f.IntVar(&epochs, "epochs", 1, "epochs per stage")
	f.IntVar(&rank, "rank", 8, "LoRA rank")
	f.IntVar(&microBatches, "micro-batches", 2, "concurrent micro-batches per step")
	f.IntVar(&reps, "repeat", 1, "repetitions of each measurement (the fastest is reported)")
	f.StringVar(&only, "only", "", "run only the stage or only the shard measurements")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func runBenchTrain(ctx context.Context, path, data string, samples, L, B, batch, epochs, rank, micro, reps int, only string) ([]trainBenchRow, error) {
	m, man, _, err := loadBackbone(path)
	if err != nil {
		return nil, err
	}
	d, err := loadTrainData(data, 0, samples)
	if err != nil {
		return nil, err
	}
	seqs, err := unlearning.Select(ctx, mustCyclic(), &sdk.SelectRequest{Slices: L, Budget: B})
	if err != nil {
		return nil, err
	}
	eng, err := adapters.NewEngine()
	if err != nil {
		return nil, err
	}
	newTrainer := func(cache adapters.ActivationCache, noCache bool) (*adapters.ShardTrainer, error) {
		return eng.NewShardTrainer(adapters.ShardConfig{
			Backbone: m, Manifest: man, LoRA: adapters.LoRA{Rank: rank}, Slices: L,
			Head: adapters.Head{Classes: dataset.Classes}, Epochs: epochs, Optimizer: adapters.AdamW{LearningRate: 1e-2},
			BatchSize: batch, MicroBatches: micro, Seed: 1, Cache: cache, NoCache: noCache,
			Logger: slog.New(slog.DiscardHandler),
		})
	}
	// One stage: every sample in the first slice of sequence 0, stage 1.
	all := make([][]adapters.Example, L)
	all[seqs[0][0]] = d.train
	// A shard: the samples dealt round-robin over the slices.
	shard := make([][]adapters.Example, L)
	for i, e := range d.train {
		shard[i%L] = append(shard[i%L], e)
	}
	shardPasses := 0
	for _, seq := range seqs {
		n := 0
		for _, j := range seq {
			n += len(shard[j])
			shardPasses += n * epochs
		}
	}
	var rows []trainBenchRow
	measure := func(what string, cache bool, examples int, fn func() error) error {
		best := time.Duration(1<<63 - 1)
		for range reps {
			start := time.Now()
			if err := fn(); err != nil {
				return fmt.Errorf("bench %s: %w", what, err)
			}
			best = min(best, time.Since(start))
		}
		rows = append(rows, trainBenchRow{What: what, Cache: cache, Examples: examples, Seconds: best.Seconds(),
			ExamplesPerSecond: float64(examples) / best.Seconds()})
		return nil
	}
	for _, cached := range []bool{true, false} {
		if only == "shard" {
			break
		}
		cache := adapters.NewMemoryCache()
		st, err := newTrainer(cache, !cached)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		if cached { // fill the cache and import the stage's model outside the measurement
			if _, err := st.TrainSequence(ctx, 0, 0, seqs[0], all, 1); err != nil {
				return nil, err
			}
		}
		if err := measure("stage", cached, len(d.train)*epochs, func() error {
			_, err := st.TrainSequence(ctx, 0, 0, seqs[0], all, 1)
			return err
		}); err != nil {
			return nil, err
		}
	}
	for _, cached := range []bool{true, false} {
		if only == "stage" {
			break
		}
		err := measure("shard", cached, shardPasses, func() error {
			st, err := newTrainer(adapters.NewMemoryCache(), !cached) // empty cache: the run fills it
			if err != nil {
				return err
			}
			defer st.Close()
			_, err = st.TrainShard(ctx, 0, seqs, shard)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

func mustCyclic() sdk.Selector {
	sel, err := unlearning.NewSelector("cyclic")
	if err != nil {
		panic(err)
	}
	return sel
}

func printBenchTrain(w io.Writer, rows []trainBenchRow) {
	fmt.Fprintf(w, "%-6s %-9s %10s %9s %12s\n", "what", "cache", "examples", "seconds", "examples/s")
	for _, r := range rows {
		cache := "cached"
		if !r.Cache {
			cache = "recompute"
		}
		fmt.Fprintf(w, "%-6s %-9s %10d %9.2f %12.0f\n", r.What, cache, r.Examples, r.Seconds, r.ExamplesPerSecond)
	}
}
