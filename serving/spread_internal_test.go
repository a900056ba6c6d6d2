package serving

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/s3t-dev/s3t/internal/testmodel"
)

func TestSpreads(t *testing.T) {
	for _, tt := range []struct {
		inflight, shards, procs int
		want                    bool
	}{
		{inflight: 2, shards: 2, procs: 2, want: false}, // 2 cores: under load nothing spreads
		{inflight: 2, shards: 2, procs: 4, want: true},
		{inflight: 3, shards: 2, procs: 4, want: false},
		{inflight: 8, shards: 2, procs: 16, want: true},
		{inflight: 9, shards: 2, procs: 16, want: false},
		{inflight: 4, shards: 4, procs: 16, want: true},
		{inflight: 5, shards: 4, procs: 16, want: false},
		{inflight: 2, shards: 1, procs: 16, want: false}, // one shard: nothing to spread
	} {
		if got := spreads(tt.inflight, tt.shards, tt.procs); got != tt.want {
			t.Errorf("spreads(%d, %d, %d) = %v, want %v", tt.inflight, tt.shards, tt.procs, got, tt.want)
		}
	}
}

// TestSpreadUnderLoad: with more cores than the shards of the predictions in flight, concurrent
// single-input predictions (which on 2 cores wait in the queue for a batch) run at once, their
// shards spread over several sessions on goroutines of their own, and each answer is exactly the
// direct ensemble of its input.
func TestSpreadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(16)) // as on a 16-core host
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	fx := testmodel.New(t, st, blobs, testmodel.Options{Slices: 2, Seqs: 1})
	svc, err := New(Config{Store: st, Blobs: blobs, Pool: 8, Spin: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	var spread atomic.Int32
	svc.testHookSpread = func() { spread.Add(1) }
	fx.ConcurrentSingles(t, 4, 16, func(x []float32) ([]float64, error) {
		res, err := svc.Predict(ctx, fx.Name, [][]float32{x})
		if err != nil {
			return nil, err
		}
		return res.Predictions[0].Probabilities, nil
	})
	if spread.Load() == 0 {
		t.Error("no prediction spread its shards under load")
	}
	t.Logf("%d of 64 predictions spread their shards, %d ran in a batch", spread.Load(), svc.Coalesced())
}
