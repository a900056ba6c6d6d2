package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkDelete measures deletion latency, request to receipt, on the embedded SQLite
// ledger with a demo-sized model (m=4 shards, L=4 slices, B=2 sequences, 60,000 samples):
// each iteration is one Store.Delete of a different sample, committed with
// synchronous=FULL. It reports p50 and p99 latency (target: p99 < 10 ms). With
// S3T_TEST_DATABASE_URL set it runs on PostgreSQL too.
//
//	go test ./store -run '^$' -bench BenchmarkDelete -benchtime 3000x
func BenchmarkDelete(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) { benchDelete(b, be.open(b)) })
		// With a purger registered, as the server runs: the purge row is removed in a
		// second commit before Delete returns.
		b.Run(be.name+"+purger", func(b *testing.B) {
			s := be.open(b)
			s.OnPurge(func(context.Context, Purge) error { return nil })
			benchDelete(b, s)
		})
	}
}

func benchDelete(b *testing.B, s *Store) {
	ctx := context.Background()
	const n = 60_000
	model := uniqueName("demo")
	mustModel(b, s, spec(model, 4, 4, 2), 0)
	for i := 0; i < n; i += 10_000 {
		batch := make([]Sample, 10_000)
		for j := range batch {
			// About the size of an MNIST image.
			input := make([]byte, 784)
			input[0], input[1] = byte(i+j), byte((i+j)>>8)
			batch[j] = Sample{ID: fmt.Sprintf("s%06d", i+j), Label: fmt.Sprint((i + j) % 10), Input: input}
		}
		if _, err := s.PutSamples(ctx, model, batch); err != nil {
			b.Fatal(err)
		}
	}
	var lat []time.Duration
	i := 0
	for b.Loop() {
		if i >= n {
			b.Fatalf("more than %d iterations; use -benchtime Nx with N <= %d", n, n)
		}
		// Spread over the id space so that deletions hit every shard and slice.
		id := fmt.Sprintf("s%06d", (i*7919)%n)
		start := time.Now()
		if _, err := s.Delete(ctx, model, id); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
