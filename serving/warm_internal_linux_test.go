package serving

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/internal/warmpool"
)

// TestPredictorsKeepTheirCPUs: predictions made in turn on CPUs 0 and 1 each come to run on a
// Predictor of their own CPU, rather than on whichever was released last (a session whose
// memory is in the other core's caches; see warmpool).
func TestPredictorsKeepTheirCPUs(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil || !all.IsSet(0) || !all.IsSet(1) {
		t.Skip("needs CPUs 0 and 1")
	}
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	fx := testmodel.New(t, st, blobs, testmodel.Options{Slices: 2, Seqs: 1})
	// Spin -1: no helper polls, so a lone prediction runs all its shards on its caller's
	// Predictor.
	svc, err := New(Config{Store: st, Blobs: blobs, Pool: 2, Spin: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for i := range 6 {
		err := warmpool.OnCPU(i%2, func() {
			if _, err := svc.Predict(ctx, fx.Name, fx.Test[:1]); err != nil {
				t.Error(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	m, _ := svc.cached(fx.Name)
	if m == nil {
		t.Fatal("model not cached after predictions")
	}
	homes := map[int]int{}
	for _, p := range m.all {
		if cpu, ok := m.idle.Home(p); ok {
			homes[cpu]++
		}
	}
	if homes[0] != 1 || homes[1] != 1 {
		t.Fatalf("Predictors by the CPU they last ran on: %v; want one on CPU 0 and one on CPU 1", homes)
	}
}
