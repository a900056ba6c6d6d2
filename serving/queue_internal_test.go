package serving

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/adapters"
)

// TestMoreWorkers: one batch worker whenever predictions wait, up to the model's lanes while
// any wait, and beyond them, up to a session each, only while soloInputs inputs wait.
func TestMoreWorkers(t *testing.T) {
	for _, tc := range []struct {
		pool, lanes, workers, queued int
		want                         bool
	}{
		{pool: 2, lanes: 1, workers: 0, queued: 0, want: false},
		{pool: 2, lanes: 1, workers: 0, queued: 1, want: true},
		{pool: 2, lanes: 1, workers: 1, queued: 1, want: false},
		{pool: 2, lanes: 1, workers: 1, queued: soloInputs - 1, want: false},
		{pool: 2, lanes: 1, workers: 1, queued: soloInputs, want: true},
		{pool: 2, lanes: 1, workers: 2, queued: 3 * maxCoalesced, want: false},
		{pool: 16, lanes: 8, workers: 7, queued: 1, want: true},
		{pool: 16, lanes: 8, workers: 8, queued: 1, want: false},
		{pool: 16, lanes: 8, workers: 8, queued: soloInputs, want: true},
		{pool: 1, lanes: 1, workers: 0, queued: 1, want: true},
		{pool: 1, lanes: 1, workers: 1, queued: maxCoalesced, want: false},
	} {
		m := &model{all: make([]*adapters.Predictor, tc.pool), lanes: tc.lanes, workers: tc.workers, queued: tc.queued}
		if got := m.moreWorkersLocked(); got != tc.want {
			t.Errorf("%+v: more workers = %v, want %v", tc, got, tc.want)
		}
		if want := tc.workers + map[bool]int{true: 1}[tc.want]; m.workers != want {
			t.Errorf("%+v: %d workers counted, want %d", tc, m.workers, want)
		}
	}
}

// TestLanes: half the cores, at least one, at most the pool.
func TestLanes(t *testing.T) {
	for _, tc := range []struct{ procs, pool, want int }{{1, 1, 1}, {2, 2, 1}, {4, 4, 2}, {16, 16, 8}, {16, 3, 3}} {
		t.Run("", func(t *testing.T) {
			old := runtime.GOMAXPROCS(tc.procs)
			defer runtime.GOMAXPROCS(old)
			if got := lanes(tc.pool); got != tc.want {
				t.Errorf("GOMAXPROCS %d, pool %d: %d lanes, want %d", tc.procs, tc.pool, got, tc.want)
			}
		})
	}
}

// TestTakeBatch: the oldest waiting prediction, with the others of its serving state that fit
// in maxCoalesced inputs, oldest first; a prediction larger than a batch runs alone.
func TestTakeBatch(t *testing.T) {
	a, b := &state{version: 1}, &state{version: 2}
	for _, tc := range []struct {
		name  string
		queue []*call
		want  []int // indices into queue, in batch order
	}{
		{"empty", nil, nil},
		{"one", []*call{{st: a, n: 1}}, []int{0}},
		{"same state up to the cap", []*call{{st: a, n: 6}, {st: a, n: 8}, {st: a, n: 4}, {st: a, n: 2}}, []int{0, 1, 3}},
		{"other state stays", []*call{{st: a, n: 1}, {st: b, n: 1}, {st: a, n: 1}}, []int{0, 2}},
		{"oldest decides the state", []*call{{st: b, n: 2}, {st: a, n: 1}, {st: b, n: 6}}, []int{0, 2}},
		{"larger than a batch", []*call{{st: a, n: 20}, {st: a, n: 1}}, []int{0}},
		{"two requests of 8", []*call{{st: a, n: 8}, {st: a, n: 8}, {st: a, n: 1}}, []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &model{queue: slices.Clone(tc.queue)}
			for _, c := range tc.queue {
				m.queued += c.n
			}
			left := m.queued
			got := m.takeLocked()
			var want []*call
			for _, i := range tc.want {
				want = append(want, tc.queue[i])
				left -= tc.queue[i].n
			}
			if !slices.Equal(got, want) {
				t.Fatalf("took %v, want %v", got, want)
			}
			for _, c := range got {
				if slices.Contains(m.queue, c) {
					t.Errorf("a taken call is still queued")
				}
			}
			n := 0
			for _, c := range m.queue {
				n += c.n
			}
			if len(m.queue)+len(got) != len(tc.queue) || m.queued != n || n != left {
				t.Errorf("queue left with %d calls of %d inputs (counted %d)", len(m.queue), n, m.queued)
			}
		})
	}
}

// TestBatchWorkerPanic: a panic while a batch worker runs a batch fails that batch's
// predictions with an error instead of taking the process down; the predictions still waiting
// (here the ninth, beyond the batch) get a new worker, and so do later ones.
func TestBatchWorkerPanic(t *testing.T) {
	ctx := context.Background()
	var panics atomic.Int32
	svc, fx := newLoadedService(t, func(svc *Service) {
		svc.testHookBatch = func() {
			if panics.Add(1) == 1 {
				panic("injected")
			}
		}
	})
	m, cur := svc.cached(fx.Name)
	// Hold the only session, so that the predictions below queue.
	ps := m.tryAcquire(1)
	if len(ps) != 1 {
		t.Fatal("the session is busy")
	}
	var wg sync.WaitGroup
	errs := make([]error, maxCoalesced+1)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = m.runQueued(rctx, cur, fx.Test[i%len(fx.Test)], 1, len(m.rec.Labels), nil)
		})
		for { // queue them in order: the first maxCoalesced make the batch that panics
			m.qmu.Lock()
			n := len(m.queue)
			m.qmu.Unlock()
			if n == i+1 {
				break
			}
			runtime.Gosched()
		}
	}
	m.release(ps[0])
	wg.Wait()
	for i, err := range errs[:maxCoalesced] {
		if err == nil || !strings.Contains(err.Error(), "injected") {
			t.Errorf("prediction %d of the batch that panicked: err = %v, want the panic", i, err)
		}
	}
	if err := errs[maxCoalesced]; err != nil {
		t.Errorf("the prediction waiting beyond the batch that panicked: %v", err)
	}
	res, err := svc.Predict(ctx, fx.Name, fx.Test[:2])
	if err != nil || len(res.Predictions) != 2 {
		t.Fatalf("after the panic: %v, %v", res, err)
	}
	m.qmu.Lock()
	defer m.qmu.Unlock()
	if m.workers != 0 {
		t.Errorf("%d workers counted after the queue emptied", m.workers)
	}
}
