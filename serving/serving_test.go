package serving_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/store"
)

// TestMain shuts ONNX Runtime down after the tests, which also checks that every session was
// closed.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := ort.Shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "ONNX Runtime shutdown after tests: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func newFixture(t testing.TB, o testmodel.Options) *testmodel.Fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("trains a model")
	}
	st, blobs := testmodel.OpenStore(t)
	return testmodel.New(t, st, blobs, o)
}

func newService(t testing.TB, fx *testmodel.Fixture, pool int) *serving.Service {
	t.Helper()
	return newServiceSpin(t, fx, pool, 0)
}

func newServiceSpin(t testing.TB, fx *testmodel.Fixture, pool int, spin time.Duration) *serving.Service {
	t.Helper()
	svc, err := serving.New(serving.Config{Store: fx.Store, Blobs: fx.Blobs, Pool: pool, Spin: spin,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// checkDirect checks that res equals, exactly, the ensemble of the checkpoints the ledger
// serves now computed directly through adapters.Predictor, and that res.Served names them.
func checkDirect(t *testing.T, fx *testmodel.Fixture, res *serving.Result, inputs [][]float32) {
	t.Helper()
	m, err := fx.Store.GetModel(context.Background(), fx.Name)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != m.Version {
		t.Errorf("result at ledger version %d, the ledger is at %d", res.Version, m.Version)
	}
	for k, sv := range m.Published() {
		got := res.Served[k]
		if got.Shard != k || got.Length != sv.Length || (sv.Length > 0 && (got.Sequence != sv.Sequence || got.Gen != m.Gen[k][sv.Sequence])) {
			t.Errorf("shard %d served %+v, the ledger publishes sequence %d length %d", k, got, sv.Sequence, sv.Length)
		}
	}
	scores, labels := fx.Direct(t, fx.Predictor(t, 1), fx.Served(t), inputs)
	classes := len(fx.Rec.Labels)
	if len(res.Predictions) != len(inputs) {
		t.Fatalf("%d predictions for %d inputs", len(res.Predictions), len(inputs))
	}
	for i, p := range res.Predictions {
		if p.Label != labels[i] || !slices.Equal(p.Probabilities, scores[i*classes:(i+1)*classes]) {
			t.Errorf("input %d: served %d %v, direct %d %v", i, p.Label, p.Probabilities, labels[i], scores[i*classes:(i+1)*classes])
		}
	}
}

func TestPredictDeleteAndServe(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{})
	svc := newService(t, fx, 2)
	info, err := svc.Info(ctx, fx.Name)
	if err != nil || info.InputSize != 784 || info.InputName == "" || len(info.Labels) != 10 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if ok, err := svc.Ready(ctx, fx.Name); !ok || err != nil {
		t.Fatalf("Ready = %v, %v", ok, err)
	}
	res, err := svc.Predict(ctx, fx.Name, fx.Test)
	if err != nil {
		t.Fatal(err)
	}
	for _, sv := range res.Served {
		if sv.Length != 2 {
			t.Errorf("fully trained model serves %+v", sv)
		}
	}
	checkDirect(t, fx, res, fx.Test)
	// One input, and the same batch again from the cache.
	if res, err = svc.Predict(ctx, fx.Name, fx.Test[:1]); err != nil {
		t.Fatal(err)
	}
	checkDirect(t, fx, res, fx.Test[:1])

	if n := svc.Recomputed(); n != 0 {
		t.Errorf("Recomputed() = %d with no deletion, want 0", n)
	}

	// Delete a sample of shard 0 that the served sequence's second stage saw: the very next
	// prediction serves the truncated prefix. It starts on the cached state, which the ledger
	// read beside it shows is out of date, so it is computed again on the new one.
	served := res.Served[0]
	slice := fx.Sequences[0][served.Sequence][1]
	rc, err := fx.Store.Delete(ctx, fx.Name, fx.Units[0][slice][0])
	if err != nil {
		t.Fatal(err)
	}
	res, err = svc.Predict(ctx, fx.Name, fx.Test)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version < rc.LedgerVersion || res.Served[0].Length != rc.Serving.Length || res.Served[0].Sequence != rc.Serving.Sequence {
		t.Fatalf("after the receipt (version %d, serving %+v) the prediction used version %d, %+v",
			rc.LedgerVersion, rc.Serving, res.Version, res.Served[0])
	}
	if res.Served[0].Length != 1 {
		t.Errorf("shard 0 serves length %d after deleting from slice %d, want 1", res.Served[0].Length, slice)
	}
	checkDirect(t, fx, res, fx.Test)
	if n := svc.Recomputed(); n != 1 {
		t.Errorf("Recomputed() = %d after one deletion, want 1", n)
	}

	// Kill shard 0 (a sample of every slice): only shard 1 serves.
	for s := range fx.Units[0] {
		if s != slice {
			if _, err := fx.Store.Delete(ctx, fx.Name, fx.Units[0][s][0]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if res, err = svc.Predict(ctx, fx.Name, fx.Test); err != nil {
		t.Fatal(err)
	}
	if res.Served[0].Length != 0 || res.Served[1].Length != 2 {
		t.Fatalf("served %+v after killing shard 0", res.Served)
	}
	checkDirect(t, fx, res, fx.Test)

	// And shard 1: nothing is live.
	for s := range fx.Units[1] {
		if _, err := fx.Store.Delete(ctx, fx.Name, fx.Units[1][s][0]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Predict(ctx, fx.Name, fx.Test); !errors.Is(err, serving.ErrNotLive) {
		t.Fatalf("no shard live: err = %v, want ErrNotLive", err)
	}
	if ok, err := svc.Ready(ctx, fx.Name); ok || err != nil {
		t.Errorf("Ready = %v, %v with no shard live", ok, err)
	}

	// A replica that cannot read the ledger refuses to answer from its cache.
	fx.Store.Close()
	if _, err := svc.Predict(ctx, fx.Name, fx.Test); !errors.Is(err, serving.ErrUnavailable) {
		t.Errorf("closed ledger: err = %v, want ErrUnavailable", err)
	}
}

// TestPredictModelRecreated: a model deleted and created again under its name (new weights, and
// its ledger versions starting over) while a replica holds the old one's live serving state:
// the prediction that starts on the old state answers from the new model.
func TestPredictModelRecreated(t *testing.T) {
	ctx := context.Background()
	old := newFixture(t, testmodel.Options{})
	svc := newService(t, old, 2)
	if _, err := svc.Predict(ctx, old.Name, old.Test[:1]); err != nil {
		t.Fatal(err)
	}
	if err := old.Store.DeleteModel(ctx, old.Name); err != nil {
		t.Fatal(err)
	}
	fx := testmodel.New(t, old.Store, old.Blobs, testmodel.Options{Name: old.Name, Seed: 8})
	for range 2 {
		res, err := svc.Predict(ctx, fx.Name, fx.Test)
		if err != nil {
			t.Fatal(err)
		}
		checkDirect(t, fx, res, fx.Test)
	}
	if n := svc.Recomputed(); n != 1 {
		t.Errorf("Recomputed() = %d, want 1 (the first prediction after the model was created again)", n)
	}
}

// TestInfoReadsLedger: a model's description is not answered from the cache once the model is
// deleted (by another replica: nothing tells this one).
func TestInfoReadsLedger(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{})
	svc := newService(t, fx, 2)
	info, err := svc.Info(ctx, fx.Name)
	if err != nil || info.InputSize != 784 || info.MaxBatch != serving.DefaultMaxBatch {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if err := fx.Store.DeleteModel(ctx, fx.Name); err != nil {
		t.Fatal(err)
	}
	if info, err := svc.Info(ctx, fx.Name); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Info of a deleted model = %+v, %v; want store.ErrNotFound", info, err)
	}
}

// TestPredictRefusesCacheWithoutLedger: with a live serving state cached, the shards start on it
// while the ledger is read; a ledger that cannot be read still gets no answer out of the cache,
// one input or several, whether the shards split over the pool or not.
func TestPredictRefusesCacheWithoutLedger(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{})
	pools := []int{1, 2}
	svcs := make([]*serving.Service, len(pools))
	for i, pool := range pools {
		svcs[i] = newService(t, fx, pool)
		if _, err := svcs[i].Predict(ctx, fx.Name, fx.Test[:1]); err != nil {
			t.Fatal(err)
		}
	}
	fx.Store.Close()
	for i, svc := range svcs {
		for _, n := range []int{1, len(fx.Test)} {
			if _, err := svc.Predict(ctx, fx.Name, fx.Test[:n]); !errors.Is(err, serving.ErrUnavailable) {
				t.Errorf("pool %d, %d input(s), closed ledger, live state cached: err = %v, want ErrUnavailable", pools[i], n, err)
			}
		}
	}
}

func TestPredictBadInputs(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{Untrained: true})
	svc := newService(t, fx, 1)
	cases := map[string][][]float32{
		"none":       nil,
		"short":      {make([]float32, 783)},
		"long":       {make([]float32, 785)},
		"second bad": {make([]float32, 784), make([]float32, 10)},
	}
	for name, in := range cases {
		if _, err := svc.Predict(ctx, fx.Name, in); !errors.Is(err, serving.ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", name, err)
		}
	}
	if _, err := svc.Predict(ctx, "nope", fx.Test); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown model: err = %v, want store.ErrNotFound", err)
	}
	// Never trained: a clear error, not a crash.
	_, err := svc.Predict(ctx, fx.Name, fx.Test)
	if !errors.Is(err, serving.ErrNotLive) {
		t.Errorf("untrained: err = %v, want ErrNotLive", err)
	} else {
		t.Log(err)
	}
	if ok, err := svc.Ready(ctx, fx.Name); ok || err != nil {
		t.Errorf("untrained: Ready = %v, %v", ok, err)
	}
	// A deleted model is unknown, not served from the cache.
	if err := fx.Store.DeleteModel(ctx, fx.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Predict(ctx, fx.Name, fx.Test); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted model: err = %v, want store.ErrNotFound", err)
	}
	if _, err := svc.Info(ctx, fx.Name); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted model: Info err = %v, want store.ErrNotFound", err)
	}
}

// TestPredictConcurrent runs predictions from several goroutines while samples are deleted:
// every answer is the exact ensemble of what the ledger served at the answer's version, whether
// the shards of a prediction are split over polling helpers, sleeping ones, or not at all.
func TestPredictConcurrent(t *testing.T) {
	for _, tt := range []struct {
		name string
		pool int
		spin time.Duration
	}{
		{"polling helpers", 3, serving.DefaultSpin},
		{"sleeping helpers", 3, -1},
		{"one predictor", 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) { testPredictConcurrent(t, tt.pool, tt.spin) })
	}
}

func testPredictConcurrent(t *testing.T, pool int, spin time.Duration) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{Slices: 2, Seqs: 1})
	svc := newServiceSpin(t, fx, pool, spin)
	want := map[int64][]float64{}
	ref := func() {
		res, err := svc.Predict(ctx, fx.Name, fx.Test[:2])
		if err != nil {
			t.Fatal(err)
		}
		scores, _ := fx.Direct(t, fx.Predictor(t, 1), fx.Served(t), fx.Test[:2])
		want[res.Version] = scores
	}
	ref()
	var wg sync.WaitGroup
	results := make(chan *serving.Result, 64)
	for range 4 {
		wg.Go(func() {
			for range 8 {
				res, err := svc.Predict(ctx, fx.Name, fx.Test[:2])
				if err != nil {
					t.Error(err)
					return
				}
				results <- res
			}
		})
	}
	if _, err := fx.Store.Delete(ctx, fx.Name, fx.Units[0][fx.Sequences[0][0][1]][0]); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	ref()
	for res := range results {
		w, ok := want[res.Version]
		if !ok {
			t.Errorf("answer at unexpected version %d", res.Version)
			continue
		}
		var got []float64
		for _, p := range res.Predictions {
			got = append(got, p.Probabilities...)
		}
		if !slices.Equal(got, w) {
			t.Errorf("answer at version %d differs from the direct ensemble", res.Version)
		}
	}
}

// TestBatchedEqualsAlone: a checkpoint's logits of several inputs computed in one batch are
// bit for bit those of each input alone. Predictions that wait in a model's queue run in one
// batch (dynamic batching), and they must answer exactly what they would have alone.
func TestBatchedEqualsAlone(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{Slices: 2, Seqs: 1})
	cks := fx.Served(t)
	p := fx.Predictor(t, 1)
	shape := func(n int) []int64 { return append([]int64{int64(n)}, fx.Rec.InputShape...) }
	for _, n := range []int{2, 5, 16} {
		var x []float32
		for i := range n {
			x = append(x, fx.Test[i%len(fx.Test)]...)
		}
		for k, ck := range cks {
			batch, err := p.Logits(ctx, ck, ort.NewTensor(x, shape(n)...), 0)
			if err != nil {
				t.Fatal(err)
			}
			bv, _ := ort.Values[float32](batch)
			classes := len(bv) / n
			for i := range n {
				one, err := p.Logits(ctx, ck, ort.NewTensor(fx.Test[i%len(fx.Test)], shape(1)...), 0)
				if err != nil {
					t.Fatal(err)
				}
				ov, _ := ort.Values[float32](one)
				for c := range classes {
					if math.Float32bits(ov[c]) != math.Float32bits(bv[i*classes+c]) {
						t.Fatalf("shard %d, batch of %d: input %d class %d: %v in the batch, %v alone", k, n, i, c, bv[i*classes+c], ov[c])
					}
				}
			}
		}
	}
}

// TestPredictQueuedBatches runs more concurrent predictions of different inputs than there are
// Predictors: the waiting ones run in batches, and each answer is exactly the direct ensemble
// of its own input.
func TestPredictQueuedBatches(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{Slices: 2, Seqs: 1})
	svc := newServiceSpin(t, fx, 1, -1)
	fx.ConcurrentSingles(t, 6, 12, func(x []float32) ([]float64, error) {
		res, err := svc.Predict(ctx, fx.Name, [][]float32{x})
		if err != nil {
			return nil, err
		}
		return res.Predictions[0].Probabilities, nil
	})
	if svc.Coalesced() == 0 {
		t.Error("no prediction ran in a batch with others")
	}
	t.Logf("%d of 72 predictions ran in a batch with others", svc.Coalesced())
}

// TestRunSizes: each ONNX Runtime run of a shard is counted in the bucket of its inputs, once
// per shard, whether the prediction's shards were split over Predictors or not.
func TestRunSizes(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{Slices: 2, Seqs: 1})
	svc := newService(t, fx, 2)
	shards := int64(len(fx.Served(t)))
	bounds := serving.RunSizeBounds()
	for _, tc := range []struct {
		inputs, bucket int
	}{{1, 0}, {2, 1}, {3, 2}, {4, 2}, {8, 3}, {9, 4}, {64, 6}, {65, 7}} {
		before, in0 := svc.RunSizes()
		x := make([][]float32, tc.inputs)
		for i := range x {
			x[i] = fx.Test[i%len(fx.Test)]
		}
		if _, err := svc.Predict(ctx, fx.Name, x); err != nil {
			t.Fatal(err)
		}
		after, in1 := svc.RunSizes()
		if len(after) != len(bounds)+1 {
			t.Fatalf("%d buckets for %d bounds", len(after), len(bounds))
		}
		for i := range after {
			want := before[i]
			if i == tc.bucket {
				want += shards
			}
			if after[i] != want {
				t.Errorf("%d inputs: bucket %d (bounds %v) went from %d to %d, want %d", tc.inputs, i, bounds, before[i], after[i], want)
			}
		}
		if in1-in0 != shards*int64(tc.inputs) {
			t.Errorf("%d inputs: inputs counted went up by %d, want %d", tc.inputs, in1-in0, shards*int64(tc.inputs))
		}
	}
}

// TestPredictRefusesForeignCheckpoint: a blob at a recorded key that holds a checkpoint trained
// on other samples (here, the same stage of the other sequence) is never served: the prediction
// fails instead of answering with parameters the ledger does not vouch for.
func TestPredictRefusesForeignCheckpoint(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{})
	m, err := fx.Store.GetModel(ctx, fx.Name)
	if err != nil {
		t.Fatal(err)
	}
	sv := m.Published()[0]
	rec, err := fx.Store.CheckpointRecordOf(ctx, fx.Name, 0, sv.Sequence, 1, sv.Length)
	if err != nil {
		t.Fatal(err)
	}
	other := fx.Checkpoints[0][1-sv.Sequence][sv.Length-1]
	if other.Manifest.SamplesDigest == rec.Digest {
		t.Fatal("the two sequences' checkpoints saw the same samples: the test proves nothing")
	}
	b, err := adapters.EncodeCheckpoint(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.Blobs.Put(ctx, rec.BlobKey, b); err != nil {
		t.Fatal(err)
	}
	svc := newService(t, fx, 1)
	if res, err := svc.Predict(ctx, fx.Name, fx.Test[:1]); err == nil || !strings.Contains(err.Error(), "other than the ledger records") {
		t.Fatalf("served %v, %v; want the foreign checkpoint refused", res, err)
	}
}

// TestPredictOverflowingInput: finite input values near float32's limit overflow the backbone
// into NaN, which answered 500, or over KServe v2 an arbitrary label with NaN probabilities. It
// is the input's fault, and the error names the input; the other inputs of the model still
// predict.
func TestPredictOverflowingInput(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, testmodel.Options{Slices: 2, Seqs: 1})
	svc := newService(t, fx, 1)
	huge := make([]float32, len(fx.Test[0]))
	for i := range huge {
		huge[i] = 3e38
	}
	for _, in := range [][][]float32{{huge}, {fx.Test[0], huge}} {
		_, err := svc.Predict(ctx, fx.Name, in)
		want := fmt.Sprintf("input %d: shard 0's output is not finite", len(in)-1)
		if !errors.Is(err, serving.ErrInvalidInput) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%d inputs, the last overflowing: err = %v, want ErrInvalidInput with %q", len(in), err, want)
		}
	}
	res, err := svc.Predict(ctx, fx.Name, fx.Test[:1])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Predictions[0].Probabilities {
		if math.IsNaN(p) {
			t.Fatalf("probabilities %v", res.Predictions[0].Probabilities)
		}
	}
}
