package ort

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// vitPath is the default backbone, produced by scripts/vit/train_vit.py; -backbone points the
// ViT tests and BenchmarkRun at another file with the same inputs and outputs.
var vitPath = flag.String("backbone", filepath.Join("..", "..", "assets", "vit-fmnist.onnx"),
	"ONNX file for the ViT tests and BenchmarkRun (pixel_values [N,1,28,28] -> logits [N,10], features [N,64])")

// openViT opens the default backbone with default options, or skips when it is not there.
func openViT(t testing.TB) *Session {
	t.Helper()
	if _, err := os.Stat(*vitPath); err != nil {
		t.Skipf("default backbone not available: %v", err)
	}
	s, err := NewSessionFromFile(*vitPath, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestViTDescribe(t *testing.T) {
	s := openViT(t)
	in, out := s.Inputs(), s.Outputs()
	if len(in) != 1 || in[0].Name != "pixel_values" || in[0].DType != Float32 || !slices.Equal(in[0].Shape, []int64{-1, 1, 28, 28}) {
		t.Errorf("inputs %v", strs(in))
	}
	want := map[string][]int64{"logits": {-1, 10}, "features": {-1, 64}}
	for _, o := range out {
		if w, ok := want[o.Name]; !ok || o.DType != Float32 || !slices.Equal(o.Shape, w) {
			t.Errorf("output %s", o)
		}
		delete(want, o.Name)
	}
	if len(want) > 0 {
		t.Errorf("outputs %v lack %v", strs(out), want)
	}
	for i, p := range s.plans {
		if p == nil {
			t.Logf("output %s is allocated by ONNX Runtime (its shape does not follow from the input's)", s.outputs[i])
		}
	}
}

// TestViTBatched checks that RunBatched over 100 images equals one run over all of them.
func TestViTBatched(t *testing.T) {
	s := openViT(t)
	in, err := SyntheticInputs(s, 100, 7)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := s.Run(ctx, in, CheckFinite(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, batch := range []int{64, 16, 7} {
		got, err := s.RunBatched(ctx, in, batch, CheckFinite(true))
		if err != nil {
			t.Fatal(err)
		}
		assertOutputs(t, got, whole)
	}
}

// TestViTConcurrent runs the same batch from many goroutines at once: every result must equal
// the one computed alone.
func TestViTConcurrent(t *testing.T) {
	s := openViT(t)
	in, err := SyntheticInputs(s, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]map[string]Tensor, 16*4)
	errs := make([]error, len(results))
	for g := range 16 {
		wg.Go(func() {
			for i := range 4 {
				results[g*4+i], errs[g*4+i] = s.Run(ctx, in)
			}
		})
	}
	wg.Wait()
	for i, got := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		assertOutputs(t, got, want)
	}
}

// TestViTDeadline stops a run in flight through ONNX Runtime's terminate flag.
func TestViTDeadline(t *testing.T) {
	s := openViT(t)
	in, err := SyntheticInputs(s, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(ctx, in); err != nil { // warm up
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s.Run(ctx, in); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	// A deadline a quarter into the run; shorter ones if a run beats it (a loaded machine can
	// make the timed run above slow).
	for _, d := range []time.Duration{full / 4, full / 16, full / 64} {
		c, cancel := context.WithTimeout(ctx, d)
		start = time.Now()
		_, err = s.Run(c, in)
		cancel()
		if err == nil {
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
		t.Logf("full run %v, deadline %v, stopped after %v: %v", full, d, time.Since(start), err)
		// The session keeps the terminated run options for its next cancellable runs: they
		// must have been reset, or these runs would stop at once.
		for range 3 {
			c, cancel := context.WithCancel(ctx)
			_, err := s.Run(c, in)
			cancel()
			if err != nil {
				t.Fatalf("a run after a terminated one: %v", err)
			}
		}
		return
	}
	t.Fatal("no run was stopped by its deadline")
}

// TestViTGraphOptimization runs the ViT at every optimization level: each must load and agree
// with the default level to float32 rounding, and an unknown level is refused.
func TestViTGraphOptimization(t *testing.T) {
	if _, err := os.Stat(*vitPath); err != nil {
		t.Skipf("default backbone not available: %v", err)
	}
	ref := openViT(t)
	in, err := SyntheticInputs(ref, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Run(context.Background(), in, Fetch("logits"))
	if err != nil {
		t.Fatal(err)
	}
	wantV, _ := Values[float32](want["logits"])
	for _, level := range []Optimization{OptimizeAll, OptimizeExtended, OptimizeBasic, OptimizeNone} {
		t.Run(level.String(), func(t *testing.T) {
			s, err := NewSessionFromFile(*vitPath, WithLogger(testLogger(t)), WithGraphOptimization(level))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, err := s.Run(context.Background(), in, Fetch("logits"))
			if err != nil {
				t.Fatal(err)
			}
			gotV, _ := Values[float32](got["logits"])
			for i := range gotV {
				if d := gotV[i] - wantV[i]; d > 1e-4 || d < -1e-4 {
					t.Fatalf("logit %d: %v at level %v, %v at the default", i, gotV[i], level, wantV[i])
				}
			}
		})
	}
	if _, err := NewSessionFromFile(*vitPath, WithGraphOptimization(Optimization(42))); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown level: %v", err)
	}
}
