package unlearning

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

func TestAggregate(t *testing.T) {
	// Two samples, three classes, three shards; shard 1 is dead.
	outputs := [][]float32{
		{2, 0, 0, 0, 1, 0},
		nil,
		{0, 0, 1, 0, 3, 0},
	}
	tests := []struct {
		method     Aggregation
		wantLabels []int
		check      func(scores []float64) bool
	}{
		{MeanLogits, []int{0, 1}, func(s []float64) bool { return s[0] == 1 && s[2] == 0.5 && s[4] == 2 }},
		{MeanProbs, []int{0, 1}, func(s []float64) bool {
			return math.Abs(s[0]+s[1]+s[2]-1) < 1e-12 && math.Abs(s[3]+s[4]+s[5]-1) < 1e-12
		}},
		// Sample 0: shard 0 votes 0, shard 2 votes 2: a tie, lowest class wins.
		{Vote, []int{0, 1}, func(s []float64) bool { return reflect.DeepEqual(s, []float64{0.5, 0, 0.5, 0, 1, 0}) }},
	}
	for _, tc := range tests {
		t.Run(string(tc.method), func(t *testing.T) {
			scores, labels, err := Aggregate(tc.method, outputs, 2, 3)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(labels, tc.wantLabels) {
				t.Errorf("labels = %v, want %v", labels, tc.wantLabels)
			}
			if !tc.check(scores) {
				t.Errorf("scores = %v", scores)
			}
		})
	}
}

func TestAggregateMeanProbsDiffersFromMeanLogits(t *testing.T) {
	// One confident shard against two mildly opposed ones.
	outputs := [][]float32{{10, 0}, {0, 1}, {0, 1}}
	_, byLogits, _ := Aggregate(MeanLogits, outputs, 1, 2)
	_, byProbs, _ := Aggregate(MeanProbs, outputs, 1, 2)
	_, byVote, _ := Aggregate(Vote, outputs, 1, 2)
	if byLogits[0] != 0 || byProbs[0] != 0 || byVote[0] != 1 {
		t.Fatalf("logits %v probs %v vote %v", byLogits, byProbs, byVote)
	}
}

func TestAggregateErrors(t *testing.T) {
	if _, _, err := Aggregate(MeanLogits, [][]float32{nil, nil}, 1, 2); !errors.Is(err, ErrNoLiveShard) {
		t.Errorf("all dead: %v", err)
	}
	if _, _, err := Aggregate(MeanLogits, [][]float32{{1, 2, 3}}, 1, 2); err == nil {
		t.Error("wrong length accepted")
	}
	if _, _, err := Aggregate("median", [][]float32{{1, 2}}, 1, 2); err == nil {
		t.Error("unknown method accepted")
	}
	if a, err := ParseAggregation(""); err != nil || a != MeanLogits {
		t.Errorf("default aggregation %q, %v", a, err)
	}
	if _, err := ParseAggregation("x"); err == nil {
		t.Error("ParseAggregation(x) succeeded")
	}
}
