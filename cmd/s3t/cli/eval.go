package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/dataset"
	"github.com/s3t-dev/s3t/unlearning"
)

// evalRound is the ensemble's state and accuracy after some deletions.
type evalRound struct {
	// Deleted lists the (shard, slice) units deleted so far.
	Deleted []unlearning.Placement `json:"deleted"`
	// Served is each shard's served (sequence, prefix length); length 0 is a dead shard.
	Served []unlearning.Served `json:"served"`
	// LiveShards counts shards with a live model; Accuracy is the ensemble's test accuracy
	// (0 when no shard is live).
	LiveShards int     `json:"live_shards"`
	Accuracy   float64 `json:"accuracy"`
	// ShardAccuracy is each live shard's own test accuracy (-1 for a dead shard).
	ShardAccuracy []float64 `json:"shard_accuracy"`
}

func newEvalCmd() *cobra.Command {
	var (
		dir         string
		aggregation string
		deleteFirst bool
		testLimit   int
		threads     int
		export      string
		asJSON      bool
	)
	c := &cobra.Command{
		Use:   "eval",
		Short: "Test accuracy of a trained S3T model's aggregated ensemble",
		Long: `Evaluate a model written by s3t train: each shard serves the checkpoint of its longest live
prefix, run through ONNX Runtime (the backbone with that prefix's LoRA groups spliced in and fed as
inputs, lower groups off) with the stage's linear head applied in Go; the shards' logits are
aggregated (unlearning.Aggregate) and the argmax compared with the test labels.

--delete-first-slices then deletes, round after round, a sample of the first slice of every live
shard's served sequence (as a deletion request would: the sequences holding that slice are cut
before it) and reports the accuracy after each round, until no shard is live.`,
		Example: `  s3t eval --model runs/s3t --delete-first-slices`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("%w: --model is required", errUsage)
			}
			agg, err := unlearning.ParseAggregation(aggregation)
			if err != nil {
				return fmt.Errorf("%w: --aggregation: %w", errUsage, err)
			}
			rounds, err := runEval(c.Context(), dir, agg, deleteFirst, testLimit, threads)
			if err != nil {
				return err
			}
			if export != "" {
				if err := exportServed(dir, export, rounds[0].Served); err != nil {
					return err
				}
				fmt.Fprintf(c.ErrOrStderr(), "served checkpoints exported under %s (LoRA in the Hugging Face PEFT layout, other types as parameters and manifest)\n", export)
			}
			if asJSON {
				return json.NewEncoder(c.OutOrStdout()).Encode(struct {
					Model  string      `json:"model"`
					Rounds []evalRound `json:"rounds"`
				}{dir, rounds})
			}
			printEval(c.OutOrStdout(), rounds)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&dir, "model", "", "folder written by s3t train (required)")
	f.StringVar(&aggregation, "aggregation", "mean_logits", "how shard outputs combine: mean_logits, mean_probs or vote")
	f.BoolVar(&deleteFirst, "delete-first-slices", false, "also report accuracy after deleting each served sequence's first slice, round by round")
	f.IntVar(&testLimit, "test-limit", 0, "evaluate on at most this many test images (0: the whole test set)")
	f.IntVar(&threads, "threads", 0, "ONNX Runtime intra-op threads (0: its default)")
	f.StringVar(&export, "export", "", "also export each shard's served checkpoint (before any deletion) under this folder, one shard-<k> folder each: LoRA in the Hugging Face PEFT layout, other types as adapter_model.safetensors and checkpoint.json")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// exportServed writes each live shard's served checkpoint to out/shard-<k> with adapters.Export.
func exportServed(dir, out string, served []unlearning.Served) error {
	for k, s := range served {
		if s.Length == 0 {
			continue
		}
		c, err := adapters.LoadCheckpoint(adapters.CheckpointDir(dir, k, s.Sequence, s.Length))
		if err != nil {
			return err
		}
		if err := adapters.Export(filepath.Join(out, fmt.Sprintf("shard-%d", k)), c); err != nil {
			return err
		}
	}
	return nil
}

// runEval evaluates the model in dir, then (deleteFirst) round after round of first-slice deletions.
func runEval(ctx context.Context, dir string, agg unlearning.Aggregation, deleteFirst bool, testLimit, threads int) ([]evalRound, error) {
	mf, err := readModelFile(dir)
	if err != nil {
		return nil, err
	}
	m, man, sha, err := loadBackbone(mf.Backbone)
	if err != nil {
		return nil, err
	}
	if sha != mf.BackboneSHA256 {
		return nil, fmt.Errorf("backbone %q has SHA-256 %s, the model was trained on %s", mf.Backbone, sha, mf.BackboneSHA256)
	}
	data, err := loadTrainData(mf.Data, mf.TestSize, 1)
	if err != nil {
		return nil, err
	}
	n := len(data.testY)
	if testLimit > 0 && testLimit < n {
		n = testLimit
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: the model has no test set (--test-size 0)", errUsage)
	}
	row := len(data.testX) / len(data.testY)
	x := ort.NewTensor(data.testX[:n*row], append([]int64{int64(n)}, data.inputShape...)...)
	y := data.testY[:n]
	pred, err := adapters.NewPredictor(m, man, peftOf(mf), mf.Slices, mf.HeadInput, threads)
	if err != nil {
		return nil, err
	}
	defer pred.Close()
	shards := make([]*unlearning.Shard, mf.Shards)
	for k := range shards {
		if shards[k], err = unlearning.NewShard(mf.Sequences[k]); err != nil {
			return nil, err
		}
	}
	// Logits per served checkpoint, computed once.
	cache := map[[3]int][]float32{}
	logits := func(k int, s unlearning.Served) ([]float32, error) {
		key := [3]int{k, s.Sequence, s.Length}
		if v, ok := cache[key]; ok {
			return v, nil
		}
		c, err := adapters.LoadCheckpoint(adapters.CheckpointDir(dir, k, s.Sequence, s.Length))
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w (train it with s3t train)", k, err)
		}
		z, err := pred.Logits(ctx, c, x, 256)
		if err != nil {
			return nil, err
		}
		v, _ := ort.Values[float32](z)
		cache[key] = v
		return v, nil
	}
	evaluate := func(deleted []unlearning.Placement) (evalRound, error) {
		r := evalRound{Deleted: slices.Clone(deleted)}
		outputs := make([][]float32, mf.Shards)
		for k, sh := range shards {
			s := sh.Served()
			r.Served = append(r.Served, s)
			r.ShardAccuracy = append(r.ShardAccuracy, -1)
			if s.Length == 0 {
				continue
			}
			v, err := logits(k, s)
			if err != nil {
				return r, err
			}
			outputs[k] = v
			r.LiveShards++
			_, p, err := unlearning.Aggregate(unlearning.MeanLogits, [][]float32{v}, n, dataset.Classes)
			if err != nil {
				return r, err
			}
			r.ShardAccuracy[k] = accuracyOf(p, y)
		}
		if r.LiveShards == 0 {
			return r, nil
		}
		_, p, err := unlearning.Aggregate(agg, outputs, n, dataset.Classes)
		if err != nil {
			return r, err
		}
		r.Accuracy = accuracyOf(p, y)
		return r, nil
	}
	r, err := evaluate(nil)
	if err != nil {
		return nil, err
	}
	rounds := []evalRound{r}
	var deleted []unlearning.Placement
	for deleteFirst && r.LiveShards > 0 {
		for k, sh := range shards {
			s := sh.Served()
			if s.Length == 0 {
				continue
			}
			slice := mf.Sequences[k][s.Sequence][0]
			if _, err := sh.Delete(slice); err != nil {
				return nil, err
			}
			deleted = append(deleted, unlearning.Placement{Shard: k, Slice: slice})
		}
		if r, err = evaluate(deleted); err != nil {
			return nil, err
		}
		rounds = append(rounds, r)
	}
	return rounds, nil
}

func accuracyOf(pred, labels []int) float64 {
	correct := 0
	for i, p := range pred {
		if p == labels[i] {
			correct++
		}
	}
	return float64(correct) / float64(len(labels))
}

func printEval(w io.Writer, rounds []evalRound) {
	fmt.Fprintf(w, "%-6s %-28s %-11s %-9s %s\n", "round", "deleted (shard:slice)", "live shards", "accuracy", "served (shard: seq/len acc)")
	for i, r := range rounds {
		del := "-"
		if len(r.Deleted) > 0 {
			del = ""
			for _, p := range r.Deleted {
				del += fmt.Sprintf("%d:%d ", p.Shard, p.Slice)
			}
		}
		served := ""
		for k, s := range r.Served {
			if s.Length == 0 {
				served += fmt.Sprintf("%d: dead  ", k)
			} else {
				served += fmt.Sprintf("%d: %d/%d %.4f  ", k, s.Sequence, s.Length, r.ShardAccuracy[k])
			}
		}
		acc := "-"
		if r.LiveShards > 0 {
			acc = fmt.Sprintf("%.4f", r.Accuracy)
		}
		fmt.Fprintf(w, "%-6d %-28s %-11d %-9s %s\n", i, del, r.LiveShards, acc, served)
	}
}
