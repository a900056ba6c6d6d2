package serving_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/training"
)

// Predict latency through the Service (ledger version check, cached state, pooled Predictor,
// aggregation) against the same ensemble run directly through adapters.Predictor and
// unlearning.Aggregate, on a trained 2-shard, L=2 model; both with 1 ONNX Runtime thread
// (the Service with its default pool of GOMAXPROCS Predictors).
//
//	go test ./serving/ -run '^$' -bench . -benchtime 200x
//
// Each benchmark reports its p50 in ms; the ratio is Predict p50 / Direct p50.

func benchFixture(b *testing.B) *testmodel.Fixture {
	b.Helper()
	st, blobs := testmodel.OpenStore(b)
	return testmodel.New(b, st, blobs, testmodel.Options{Samples: 48})
}

func reportP50(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(d[len(d)*99/100])/1e6, "p99-ms")
}

func BenchmarkPredict(b *testing.B) {
	ctx := context.Background()
	fx := benchFixture(b)
	for _, n := range []int{1, 8} {
		inputs := fx.Test[:n]
		b.Run(map[int]string{1: "single", 8: "batch8"}[n], func(b *testing.B) {
			svc, err := serving.New(serving.Config{Store: fx.Store, Blobs: fx.Blobs, Threads: 1, // Pool: GOMAXPROCS

				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer svc.Close()
			if _, err := svc.Predict(ctx, fx.Name, inputs); err != nil { // load
				b.Fatal(err)
			}
			d := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				if _, err := svc.Predict(ctx, fx.Name, inputs); err != nil {
					b.Fatal(err)
				}
				d = append(d, time.Since(t0))
			}
			reportP50(b, d)
		})
	}
}

func BenchmarkDirect(b *testing.B) {
	ctx := context.Background()
	fx := benchFixture(b)
	cks := fx.Served(b)
	for _, n := range []int{1, 8, 16, 32} { // 16 and 32: what batching more than 8 inputs buys
		inputs := make([][]float32, n)
		for k := range inputs {
			inputs[k] = fx.Test[k%len(fx.Test)]
		}
		b.Run(map[int]string{1: "single", 8: "batch8", 16: "batch16", 32: "batch32"}[n], func(b *testing.B) {
			p := fx.Predictor(b, 1)
			if _, _, err := training.Ensemble(ctx, p, cks, fx.Rec, inputs); err != nil {
				b.Fatal(err)
			}
			d := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				if _, _, err := training.Ensemble(ctx, p, cks, fx.Rec, inputs); err != nil {
					b.Fatal(err)
				}
				d = append(d, time.Since(t0))
			}
			reportP50(b, d)
		})
	}
}

// BenchmarkPredictParallel compares one Predictor behind the pool (a mutex, in effect) with a
// pool of GOMAXPROCS, single inputs from concurrent callers.
func BenchmarkPredictParallel(b *testing.B) {
	ctx := context.Background()
	fx := benchFixture(b)
	for _, pool := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(map[bool]string{true: "pool1", false: "poolGOMAXPROCS"}[pool == 1], func(b *testing.B) {
			svc, err := serving.New(serving.Config{Store: fx.Store, Blobs: fx.Blobs, Pool: pool, Threads: 1,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer svc.Close()
			for range pool { // warm every predictor's session
				if _, err := svc.Predict(ctx, fx.Name, fx.Test[:1]); err != nil {
					b.Fatal(err)
				}
			}
			b.SetParallelism(2)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := svc.Predict(ctx, fx.Name, fx.Test[:1]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLedgerVersion is the consistency check every Predict pays: one read of the model's
// ledger version.
func BenchmarkLedgerVersion(b *testing.B) {
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(b)
	fx := testmodel.New(b, st, blobs, testmodel.Options{Untrained: true})
	for b.Loop() {
		if _, _, err := fx.Store.Stamp(ctx, fx.Name); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGaps runs one input through the direct ensemble (its shards in turn on one
// Predictor) and through the service (serving.Predict, its shards split over the cores), with an
// idle gap before each run, as a server between requests sees it: against the runs with no gap
// it shows what idle gaps alone (parked threads, halted cores, cooled caches) cost each way, with
// no HTTP or JSON at all. "spin" waits the gap out on the clock, so the caller's thread keeps its
// core. "quiet" is the service with polling off (Config.Spin < 0): its shards are still split,
// each extra one started on a goroutine of its own, and no helper polls between predictions or
// beside them. Only the runs are timed (p50-ms); ns/op includes the gaps.
//
//	go test ./serving -run '^$' -bench Gaps -count 3
func BenchmarkGaps(b *testing.B) {
	ctx := context.Background()
	fx := benchFixture(b)
	cks := fx.Served(b)
	inputs := fx.Test[:1]
	p := fx.Predictor(b, 1)
	svc, err := serving.New(serving.Config{Store: fx.Store, Blobs: fx.Blobs, Threads: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	quiet, err := serving.New(serving.Config{Store: fx.Store, Blobs: fx.Blobs, Threads: 1, Spin: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer quiet.Close()
	run := map[string]func() error{
		"direct":  func() error { _, _, err := training.Ensemble(ctx, p, cks, fx.Rec, inputs); return err },
		"service": func() error { _, err := svc.Predict(ctx, fx.Name, inputs); return err },
		"quiet":   func() error { _, err := quiet.Predict(ctx, fx.Name, inputs); return err },
	}
	for _, way := range []string{"direct", "service", "quiet"} {
		if err := run[way](); err != nil { // load
			b.Fatal(err)
		}
		for _, c := range []struct {
			gap  time.Duration
			spin bool
		}{{0, false}, {100 * time.Microsecond, false}, {300 * time.Microsecond, false}, {300 * time.Microsecond, true}} {
			name := way + "/" + map[bool]string{false: "sleep", true: "spin"}[c.spin] + c.gap.String()
			b.Run(name, func(b *testing.B) {
				d := make([]time.Duration, 0, b.N)
				for b.Loop() {
					if c.spin {
						for t := time.Now(); time.Since(t) < c.gap; {
						}
					} else if c.gap > 0 {
						time.Sleep(c.gap)
					}
					t0 := time.Now()
					if err := run[way](); err != nil {
						b.Fatal(err)
					}
					d = append(d, time.Since(t0))
				}
				reportP50(b, d)
			})
		}
	}
}
