package serving

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/internal/testmodel"
)

// TestLoadDoesNotBlockOtherModels: while one model loads (its first prediction), predictions
// of another model go on; concurrent first predictions of the loading model wait for that one
// load and share its outcome.
func TestLoadDoesNotBlockOtherModels(t *testing.T) {
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	a := testmodel.New(t, st, blobs, testmodel.Options{Name: "model-a", Slices: 2, Seqs: 1})
	b := testmodel.New(t, st, blobs, testmodel.Options{Name: "model-b", Slices: 2, Seqs: 1})
	svc, err := New(Config{Store: st, Blobs: blobs, Pool: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // lets a failing test end
	var loadsOfA atomic.Int32
	svc.testHookLoad = func(name string) {
		if name == a.Name {
			loadsOfA.Add(1)
			<-release
		}
	}
	results := make(chan *Result, 3)
	errs := make(chan error, 3)
	for range 3 { // the first loads model A and blocks; the other two wait for it
		go func() {
			res, err := svc.Predict(ctx, a.Name, a.Test[:1])
			results <- res
			errs <- err
		}()
	}
	for loadsOfA.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		_, err := svc.Predict(ctx, b.Name, b.Test[:1]) // loads model B meanwhile
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		unblock()
		<-done
		t.Fatal("a prediction of model B waited for model A to load")
	}
	unblock()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if res := <-results; res.Model != a.Name {
			t.Fatalf("answer for %q", res.Model)
		}
	}
	if n := loadsOfA.Load(); n != 1 {
		t.Errorf("model A loaded %d times, want once", n)
	}
}

// newLoadedService returns a service of one Predictor that has served a prediction of a fresh
// model (2 slices, 1 sequence); setup, when not nil, runs before that prediction.
func newLoadedService(t *testing.T, setup func(*Service)) (*Service, *testmodel.Fixture) {
	t.Helper()
	st, blobs := testmodel.OpenStore(t)
	fx := testmodel.New(t, st, blobs, testmodel.Options{Slices: 2, Seqs: 1})
	svc, err := New(Config{Store: st, Blobs: blobs, Pool: 1, Spin: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	if setup != nil {
		setup(svc)
	}
	if _, err := svc.Predict(context.Background(), fx.Name, fx.Test[:1]); err != nil {
		t.Fatal(err)
	}
	return svc, fx
}

// TestQueuedPredictionOfUnloadedModel: a prediction that reaches a model's queue after the
// model was unloaded (deleted or changed; drain then holds every session token for good) gives
// up with ErrUnavailable instead of waiting for a session that never frees up.
func TestQueuedPredictionOfUnloadedModel(t *testing.T) {
	ctx := context.Background()
	svc, fx := newLoadedService(t, nil)
	m, cur := svc.cached(fx.Name)
	svc.Forget(fx.Name)
	for deadline := time.Now().Add(10 * time.Second); len(m.sem) < cap(m.sem); {
		if time.Now().After(deadline) {
			t.Fatal("the forgotten model was not drained")
		}
		time.Sleep(time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := m.run(rctx, cur, fx.Test[0], 1, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("queued on an unloaded model: err = %v, want ErrUnavailable at once", err)
	}
}

// TestForgetModelLeavesNewer: a prediction that found its model out of date drops that model
// only; the newer one another prediction loaded meanwhile stays cached and serving.
func TestForgetModelLeavesNewer(t *testing.T) {
	ctx := context.Background()
	svc, fx := newLoadedService(t, nil)
	old, _ := svc.cached(fx.Name)
	svc.forgetModel(old) // the first prediction to see the change
	if _, err := svc.Predict(ctx, fx.Name, fx.Test[:1]); err != nil {
		t.Fatal(err)
	}
	newer, _ := svc.cached(fx.Name)
	if newer == nil || newer == old {
		t.Fatal("the model was not loaded again")
	}
	svc.forgetModel(old) // a second prediction that held the old model
	if m, _ := svc.cached(fx.Name); m != newer {
		t.Fatal("dropping the out-of-date model dropped the newer one")
	}
	if newer.closing() {
		t.Fatal("the newer model is draining")
	}
	if _, err := svc.Predict(ctx, fx.Name, fx.Test[:1]); err != nil {
		t.Fatal(err)
	}
}
