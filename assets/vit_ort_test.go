package assets

import (
	"context"
	"math"
	"testing"

	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/dataset"
)

// openViT opens the embedded ViT in ONNX Runtime, closed when the test ends.
func openViT(t *testing.T) *ort.Session {
	t.Helper()
	s, err := ort.NewSession(ViTFashionMNIST())
	if err != nil {
		t.Fatalf("ONNX Runtime session on the embedded ViT (run `make deps`): %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// runViT runs the ViT on a set of images in batches and returns its logits and features.
func runViT(t *testing.T, s *ort.Session, set *dataset.Set) (logits, features []float32) {
	t.Helper()
	out, err := s.RunBatched(context.Background(),
		map[string]ort.Tensor{"pixel_values": ort.NewTensor(set.Pixels, set.Shape()...)}, 500, ort.CheckFinite(true))
	if err != nil {
		t.Fatal(err)
	}
	if logits, err = ort.Values[float32](out["logits"]); err != nil {
		t.Fatal(err)
	}
	if features, err = ort.Values[float32](out["features"]); err != nil {
		t.Fatal(err)
	}
	return logits, features
}

// TestViTMatchesTorch checks ONNX Runtime's outputs for the first test images against torch's.
func TestViTMatchesTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Fashion-MNIST (installed by `make deps`)")
	}
	ref, err := ViTFashionMNISTReference()
	if err != nil {
		t.Fatal(err)
	}
	test, err := dataset.LoadFashionMNIST("", dataset.Test)
	if err != nil {
		t.Fatal(err)
	}
	logits, features := runViT(t, openViT(t), test.Slice(0, ref.First))
	const tol = 1e-4
	for name, c := range map[string]struct {
		got  []float32
		want [][]float32
	}{"logits": {logits, ref.Logits}, "features": {features, ref.Features}} {
		width := len(c.want[0])
		worst := 0.0
		for i, row := range c.want {
			for j, w := range row {
				worst = max(worst, math.Abs(float64(c.got[i*width+j])-float64(w)))
			}
		}
		t.Logf("%s: max |ORT - torch| = %.3g over %d images", name, worst, ref.First)
		if worst > tol {
			t.Errorf("%s: max |ORT - torch| = %.3g, want <= %g", name, worst, tol)
		}
	}
}

// TestViTAccuracy computes the ViT's accuracy on the Fashion-MNIST test set through ONNX
// Runtime and checks that it equals the count the training script reported from torch.
func TestViTAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Fashion-MNIST (installed by `make deps`)")
	}
	info, err := ViTFashionMNISTInfo()
	if err != nil {
		t.Fatal(err)
	}
	test, err := dataset.LoadFashionMNIST("", dataset.Test)
	if err != nil {
		t.Fatal(err)
	}
	logits, _ := runViT(t, openViT(t), test)
	classes := info.Architecture.NumLabels
	correct := 0
	for i, label := range test.Labels {
		row := logits[i*classes : (i+1)*classes]
		best := 0
		for c, v := range row {
			if v > row[best] {
				best = c
			}
		}
		if best == label {
			correct++
		}
	}
	t.Logf("ONNX Runtime: %d/%d correct (%.2f%%)", correct, test.Len(), 100*float64(correct)/float64(test.Len()))
	if test.Len() != info.TestTotal || correct != info.TestCorrect {
		t.Errorf("ONNX Runtime gets %d/%d right, torch got %d/%d", correct, test.Len(), info.TestCorrect, info.TestTotal)
	}
}
