package unlearning

import (
	"errors"
	"fmt"
	"math"
)

// Aggregation is how the outputs of live shards are combined into one prediction.
type Aggregation string

// The aggregations of METHOD.md. MeanLogits is ParseAggregation's default (s3t eval's); the
// server and training.Ensemble average probabilities (MeanProbs), since a prediction answers
// with them.
const (
	MeanLogits Aggregation = "mean_logits" // mean of logits, then argmax
	MeanProbs  Aggregation = "mean_probs"  // mean of softmax probabilities, then argmax
	Vote       Aggregation = "vote"        // majority vote of shard argmaxes (SISA); ties to the lowest class
)

// ParseAggregation returns the Aggregation named s ("" means MeanLogits).
func ParseAggregation(s string) (Aggregation, error) {
	switch a := Aggregation(s); a {
	case "":
		return MeanLogits, nil
	case MeanLogits, MeanProbs, Vote:
		return a, nil
	}
	return "", fmt.Errorf("unlearning: unknown aggregation %q (want %s, %s or %s)", s, MeanLogits, MeanProbs, Vote)
}

// ErrNoLiveShard is returned when no shard has a live model to predict with.
var ErrNoLiveShard = errors.New("unlearning: no shard has a live model")

// Aggregate combines per-shard outputs for a batch. outputs[k] holds shard k's logits for
// the batch, row-major [batch, classes], or nil when shard k has no live model (it is
// skipped). It returns the combined scores, row-major [batch, classes] (mean logits, mean
// probabilities, or vote fractions), and the predicted class per sample.
func Aggregate(method Aggregation, outputs [][]float32, batch, classes int) ([]float64, []int, error) {
	if batch < 0 || classes < 1 {
		return nil, nil, fmt.Errorf("unlearning: aggregate: bad shape [%d, %d]", batch, classes)
	}
	live := 0
	for k, o := range outputs {
		if o == nil {
			continue
		}
		if len(o) != batch*classes {
			return nil, nil, fmt.Errorf("unlearning: aggregate: shard %d has %d values, want %d x %d", k, len(o), batch, classes)
		}
		live++
	}
	if live == 0 {
		return nil, nil, ErrNoLiveShard
	}
	scores := make([]float64, batch*classes)
	row := make([]float64, classes)
	for _, o := range outputs {
		if o == nil {
			continue
		}
		for i := 0; i < batch; i++ {
			x := o[i*classes : (i+1)*classes]
			dst := scores[i*classes : (i+1)*classes]
			switch method {
			case MeanLogits:
				for c, v := range x {
					dst[c] += float64(v)
				}
			case MeanProbs:
				softmax(x, row)
				for c := range dst {
					dst[c] += row[c]
				}
			case Vote:
				dst[argmax32(x)]++
			default:
				return nil, nil, fmt.Errorf("unlearning: aggregate: unknown aggregation %q", method)
			}
		}
	}
	labels := make([]int, batch)
	for i := 0; i < batch; i++ {
		dst := scores[i*classes : (i+1)*classes]
		for c := range dst {
			dst[c] /= float64(live)
		}
		labels[i] = argmax64(dst)
	}
	return scores, labels, nil
}

// softmax writes the softmax of x into dst, computed stably in float64.
func softmax(x []float32, dst []float64) {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	sum := 0.0
	for c, v := range x {
		dst[c] = math.Exp(float64(v) - m)
		sum += dst[c]
	}
	for c := range dst {
		dst[c] /= sum
	}
}

// argmax32 returns the index of the largest value, the lowest index on ties.
func argmax32(x []float32) int {
	best := 0
	for c, v := range x {
		if v > x[best] {
			best = c
		}
	}
	return best
}

func argmax64(x []float64) int {
	best := 0
	for c, v := range x {
		if v > x[best] {
			best = c
		}
	}
	return best
}
