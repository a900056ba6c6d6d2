package adapters_test

import (
	"context"
	"errors"
	"testing"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
)

// TestFitStopsWhenTheLossDiverges trains a linear head with an absurd learning rate: Fit stops
// at the first loss that is not a finite number, with ErrDiverged, rather than train on (and
// publish) NaN parameters; a sane rate trains the same data without it.
func TestFitStopsWhenTheLossDiverges(t *testing.T) {
	ctx := context.Background()
	m, err := backbone.LoadBytes(assets.ViTFashionMNIST())
	if err != nil {
		t.Fatal(err)
	}
	e, err := adapters.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.Import(m)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 8*28*28)
	for i := range x {
		x[i] = float32(i%255) / 255
	}
	labels := []int{0, 1, 2, 3, 4, 5, 6, 7}
	for _, tt := range []struct {
		lr       float64
		diverges bool
	}{{1e-2, false}, {1e38, true}} {
		tr, err := e.NewTrainer(g, adapters.TrainConfig{Head: adapters.Head{Input: "features", Classes: 10}, Seed: 1, BatchSize: 4,
			Optimizer: adapters.AdamW{LearningRate: tt.lr}})
		if err != nil {
			t.Fatal(err)
		}
		losses, err := tr.Fit(ctx, ort.NewTensor(x, 8, 1, 28, 28), labels, 5)
		if got := errors.Is(err, adapters.ErrDiverged); got != tt.diverges {
			t.Errorf("learning rate %g: losses %v, error %v; want diverged %v", tt.lr, losses, err, tt.diverges)
		}
	}
}
