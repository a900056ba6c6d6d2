package training

import (
	"context"
	"runtime/trace"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/unlearning"
)

// Ensemble computes the ensemble of checkpoints cks (one per shard; nil: the shard serves
// nothing) on inputs directly, shard after shard on p: each checkpoint's logits, then
// unlearning.Aggregate of the mean probabilities. It returns the scores [n, classes] and the
// labels. It is the reference the serving package is checked against, and what s3t bench serve
// compares predictions over HTTP with.
func Ensemble(ctx context.Context, p *adapters.Predictor, cks []*adapters.Checkpoint, rec *Record, inputs [][]float32) ([]float64, []int, error) {
	n, classes := len(inputs), len(rec.Labels)
	x := make([]float32, 0, n*rec.InputSize())
	for _, in := range inputs {
		x = append(x, in...)
	}
	t := ort.NewTensor(x, append([]int64{int64(n)}, rec.InputShape...)...)
	outs := make([][]float32, len(cks))
	for k, c := range cks {
		if c == nil {
			continue
		}
		r := trace.StartRegion(ctx, "shard") // for a Go execution trace; a load otherwise
		l, err := p.Logits(ctx, c, t, 0)
		if err == nil {
			outs[k], err = ort.Values[float32](l)
		}
		r.End()
		if err != nil {
			return nil, nil, err
		}
	}
	return unlearning.Aggregate(unlearning.MeanProbs, outs, n, classes)
}
