package adapters

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/s3t-dev/s3t/backbone/ort"
)

// TestForwardMatchesORT runs the committed ViT, whole and cut above each block, in GoMLX and in
// ONNX Runtime on real images and compares every output.
func TestForwardMatchesORT(t *testing.T) {
	m, man := vit(t)
	const tol = 1e-4
	for _, set := range []string{"fashion-mnist", "mnist"} {
		imgs := images(t, set, 64)
		feeds := map[string]ort.Tensor{"pixel_values": pixels(imgs)}
		want := runORT(t, session(t, m), feeds)
		t.Run(set+"/whole", func(t *testing.T) {
			g, err := engine(t).Import(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.Forward(context.Background(), feeds)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []string{"logits", "features"} {
				d := maxAbsDiff(t, got[o], want[o])
				t.Logf("%s: max |GoMLX - ORT| = %.3g", o, d)
				if d > tol {
					t.Errorf("%s differs from ONNX Runtime by %g > %g", o, d, tol)
				}
			}
		})
		for _, blk := range man.Blocks {
			t.Run(fmt.Sprintf("%s/above-block-%d", set, blk.Index), func(t *testing.T) {
				trunk, top, err := m.Cut(blk.Input)
				if err != nil {
					t.Fatal(err)
				}
				act := runORT(t, session(t, trunk), feeds)
				g, err := engine(t).Import(top)
				if err != nil {
					t.Fatal(err)
				}
				got, err := g.Forward(context.Background(), act)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range []string{"logits", "features"} {
					if d := maxAbsDiff(t, got[o], want[o]); d > tol {
						t.Errorf("%s differs from ONNX Runtime by %g > %g", o, d, tol)
					}
				}
			})
		}
	}
}

// TestForwardErrors checks that bad feeds are errors, not panics.
func TestForwardErrors(t *testing.T) {
	m, _ := vit(t)
	g, err := engine(t).Import(m)
	if err != nil {
		t.Fatal(err)
	}
	px := ort.NewTensor(make([]float32, 2*28*28), 2, 1, 28, 28)
	for _, c := range []struct {
		name  string
		feeds map[string]ort.Tensor
		want  error
	}{
		{"missing input", map[string]ort.Tensor{}, ErrInvalidArgument},
		{"unknown input", map[string]ort.Tensor{"pixel_values": px, "x": px}, ErrInvalidArgument},
		{"bad data", map[string]ort.Tensor{"pixel_values": ort.NewTensor(make([]float32, 3), 2, 1, 28, 28)}, ErrInvalidArgument},
		{"wrong shape", map[string]ort.Tensor{"pixel_values": ort.NewTensor(make([]float32, 2*27*27), 2, 1, 27, 27)}, ErrInvalidArgument},
		{"wrong type", map[string]ort.Tensor{"pixel_values": ort.NewTensor(make([]int64, 2*28*28), 2, 1, 28, 28)}, ErrInvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := g.Forward(context.Background(), c.feeds); !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
}
