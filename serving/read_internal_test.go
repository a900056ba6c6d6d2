package serving

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/internal/testmodel"
)

// TestLedgerReadOnHelper: with a live serving state cached, a prediction's ledger read starts on
// a helper while its inputs are decoded. Decoding here waits until the read has started, so the
// read runs on a helper; the answers must still be those of the state the ledger serves: the
// cached one, the one after a deletion (the prediction that started on the old state is computed
// again), and none at all once the ledger cannot be read.
func TestLedgerReadOnHelper(t *testing.T) {
	ctx := context.Background()
	svc, fx := newPollingService(t, testmodel.Options{})
	st := fx.Store
	started := make(chan struct{}, 1)
	svc.testHookRead = func() { started <- struct{}{} }
	decode := func(info *Info) ([]float32, int, error) {
		if info.InputSize != len(fx.Test[0]) {
			t.Errorf("decode got InputSize %d, want %d", info.InputSize, len(fx.Test[0]))
		}
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Error("no helper started the ledger read while the inputs were decoded")
		}
		return flatten(info, fx.Test)
	}
	p := fx.Predictor(t, 1)
	check := func(res *Result) {
		t.Helper()
		scores, labels := fx.Direct(t, p, fx.Served(t), fx.Test)
		classes := len(fx.Rec.Labels)
		for i, pr := range res.Predictions {
			if pr.Label != labels[i] || !slices.Equal(pr.Probabilities, scores[i*classes:(i+1)*classes]) {
				t.Errorf("input %d: served %d %v, direct %d %v", i, pr.Label, pr.Probabilities, labels[i], scores[i*classes:(i+1)*classes])
			}
		}
	}

	res, err := svc.PredictWith(ctx, fx.Name, decode)
	if err != nil {
		t.Fatal(err)
	}
	check(res)

	rc, err := st.Delete(ctx, fx.Name, fx.Units[0][fx.Sequences[0][res.Served[0].Sequence][1]][0])
	if err != nil {
		t.Fatal(err)
	}
	if res, err = svc.PredictWith(ctx, fx.Name, decode); err != nil {
		t.Fatal(err)
	}
	if res.Version < rc.LedgerVersion || res.Served[0].Length != rc.Serving.Length {
		t.Errorf("after the receipt (version %d, shard 0 serving length %d) the prediction used version %d, %+v",
			rc.LedgerVersion, rc.Serving.Length, res.Version, res.Served[0])
	}
	check(res)
	if n := svc.Recomputed(); n != 1 {
		t.Errorf("Recomputed() = %d after one deletion, want 1", n)
	}

	// A bad input is refused whoever runs the read.
	bad := func(*Info) ([]float32, int, error) { <-started; return []float32{1, 2}, 1, nil }
	if _, err := svc.PredictWith(ctx, fx.Name, bad); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("input of 2 values: err = %v, want ErrInvalidInput", err)
	}

	st.Close()
	if _, err := svc.PredictWith(ctx, fx.Name, decode); !errors.Is(err, ErrUnavailable) {
		t.Errorf("closed ledger: err = %v, want ErrUnavailable", err)
	}
}

// TestLedgerReadPanicOnBadRequest: a ledger read that a helper started and that panicked reaches
// the caller as a panic (where the HTTP server recovers and logs it) even when the request's
// inputs were refused meanwhile, instead of vanishing on the helper.
func TestLedgerReadPanicOnBadRequest(t *testing.T) {
	ctx := context.Background()
	svc, fx := newPollingService(t, testmodel.Options{Slices: 2, Seqs: 1})
	started := make(chan struct{}, 1)
	svc.testHookRead = func() {
		started <- struct{}{}
		panic("injected")
	}
	bad := func(*Info) ([]float32, int, error) {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Error("no helper started the ledger read while the inputs were decoded")
		}
		return nil, 0, errors.New("bad request")
	}
	defer func() {
		if v := recover(); v != "injected" {
			t.Errorf("recovered %v, want the ledger read's panic", v)
		}
	}()
	_, err := svc.PredictWith(ctx, fx.Name, bad)
	t.Errorf("PredictWith returned (%v) after its ledger read panicked", err)
}

// newPollingService returns a service of a model trained with o, its model and serving state
// cached, whose helpers poll through the whole test however long its ledger writes take.
func newPollingService(t *testing.T, o testmodel.Options) (*Service, *testmodel.Fixture) {
	t.Helper()
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("helpers need two cores")
	}
	st, blobs := testmodel.OpenStore(t)
	fx := testmodel.New(t, st, blobs, o)
	svc, err := New(Config{Store: st, Blobs: blobs, Pool: 2, Spin: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	if _, err := svc.Predict(context.Background(), fx.Name, fx.Test[:1]); err != nil {
		t.Fatal(err)
	}
	return svc, fx
}
