package unlearning

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/s3t-dev/s3t/sdk"
)

// Harmonic returns H(n) = 1 + 1/2 + ... + 1/n (0 for n <= 0).
func Harmonic(n int) float64 {
	h := 0.0
	for i := n; i >= 1; i-- { // smallest terms first
		h += 1 / float64(i)
	}
	return h
}

// ClosedForm returns the S3T deletion rate m*L*H(m*B'), where B' is the number of distinct
// first slices among a shard's sequences: the expected number of uniformly random deletion
// requests (over the m*L units, with replacement) before no shard has a live model.
func ClosedForm(shards, slices, distinctFirst int) float64 {
	return float64(shards*slices) * Harmonic(shards*distinctFirst)
}

// SISAClosedForm returns SISA's deletion rate m*L*H(m) (one sequence per shard).
func SISAClosedForm(shards, slices int) float64 {
	return ClosedForm(shards, slices, 1)
}

// SimConfig configures [Simulate].
type SimConfig struct {
	Shards   int          // m
	Slices   int          // L
	Budget   int          // B
	Selector sdk.Selector // chooses each shard's sequences
	Prior    []float64    // passed to the selector; deletions themselves are uniform
	Runs     int          // Monte-Carlo runs
	Seed     uint64       // seeds both the selector and the deletion stream
	// Workers is the number of goroutines (0 means GOMAXPROCS). The result does not depend on
	// it: run r always draws from the stream seeded with (Seed, r).
	Workers int
}

// SimResult is the outcome of [Simulate].
type SimResult struct {
	DeletionRate     float64    `json:"deletion_rate"`      // mean deletions until no shard is live
	StdDev           float64    `json:"std_dev"`            // of one run's count
	CI95             [2]float64 `json:"ci95"`               // normal-approximation 95% interval of the mean
	ClosedForm       float64    `json:"closed_form"`        // m*L*H(sum_k B'_k), = m*L*H(m*B') when shards agree
	SISAClosedForm   float64    `json:"sisa_closed_form"`   // m*L*H(m)
	RatioVsSISA      float64    `json:"ratio_vs_sisa"`      // DeletionRate / SISAClosedForm
	DistinctFirst    int        `json:"distinct_first"`     // B' (the minimum over shards)
	DistinctFirstSum int        `json:"distinct_first_sum"` // sum over shards of B'_k
	Runs             int        `json:"runs"`               // number of runs
}

// Simulate estimates the deletion rate by Monte Carlo: each run draws deletion requests
// uniformly over the m*L (shard, slice) units, applies them with the same [Shard] logic the
// server uses, and counts requests until no shard has a live model.
func Simulate(ctx context.Context, cfg SimConfig) (SimResult, error) {
	if cfg.Shards < 1 || cfg.Runs < 1 {
		return SimResult{}, fmt.Errorf("unlearning: simulate: need shards >= 1 and runs >= 1, got %d and %d", cfg.Shards, cfg.Runs)
	}
	if cfg.Selector == nil {
		return SimResult{}, fmt.Errorf("unlearning: simulate: no selector")
	}
	shardSeqs := make([][][]int, cfg.Shards)
	bPrime, bPrimeTotal := math.MaxInt, 0
	for k := range shardSeqs {
		seqs, err := Select(ctx, cfg.Selector, &sdk.SelectRequest{
			Slices: cfg.Slices, Budget: cfg.Budget, Prior: cfg.Prior,
			Seed: int64(mix(cfg.Seed, uint64(k))),
		})
		if err != nil {
			return SimResult{}, fmt.Errorf("unlearning: simulate: shard %d: %w", k, err)
		}
		shardSeqs[k] = seqs
		bPrime = min(bPrime, DistinctFirst(seqs))
		bPrimeTotal += DistinctFirst(seqs)
	}
	counts := make([]int, cfg.Runs)
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, cfg.Runs)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shards := make([]*Shard, cfg.Shards)
			for k, seqs := range shardSeqs {
				shards[k], errs[w] = NewShard(seqs)
				if errs[w] != nil {
					return
				}
			}
			for r := w; r < cfg.Runs; r += workers {
				if r%1024 == w && ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				counts[r] = runOnce(shards, cfg.Slices, cfg.Seed, uint64(r))
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return SimResult{}, fmt.Errorf("unlearning: simulate: %w", err)
		}
	}
	var sum, sumSq float64
	for _, c := range counts {
		sum += float64(c)
		sumSq += float64(c) * float64(c)
	}
	n := float64(cfg.Runs)
	mean := sum / n
	variance := 0.0
	if cfg.Runs > 1 {
		variance = math.Max(0, (sumSq-n*mean*mean)/(n-1))
	}
	sd := math.Sqrt(variance)
	half := 1.96 * sd / math.Sqrt(n)
	res := SimResult{
		DeletionRate: mean,
		StdDev:       sd,
		CI95:         [2]float64{mean - half, mean + half},
		// With B'_k distinct first slices in shard k, the model dies once all sum_k B'_k
		// (shard, first slice) units are hit: a coupon collector over m*L units.
		ClosedForm:       float64(cfg.Shards*cfg.Slices) * Harmonic(bPrimeTotal),
		SISAClosedForm:   SISAClosedForm(cfg.Shards, cfg.Slices),
		DistinctFirst:    bPrime,
		DistinctFirstSum: bPrimeTotal,
		Runs:             cfg.Runs,
	}
	res.RatioVsSISA = res.DeletionRate / res.SISAClosedForm
	return res, nil
}

// runOnce resets the shards and counts uniformly random deletion requests until no shard is
// live.
func runOnce(shards []*Shard, slices int, seed, run uint64) int {
	rng := rand.NewPCG(seed, run)
	alive := 0
	for _, s := range shards {
		s.reset()
		alive++
	}
	units := uint64(len(shards) * slices)
	n := 0
	for alive > 0 {
		u := boundedRand(rng, units)
		n++
		s := shards[u/uint64(slices)]
		if !s.Alive() {
			continue
		}
		s.truncate(int(u % uint64(slices)))
		if !s.Alive() {
			alive--
		}
	}
	return n
}

// boundedRand returns a uniform integer in [0, n) (Lemire's multiply-shift with rejection).
func boundedRand(src *rand.PCG, n uint64) uint64 {
	for {
		x := src.Uint64()
		hi, lo := bits.Mul64(x, n)
		if lo >= n || lo >= (-n)%n {
			return hi
		}
	}
}

// mix derives a per-shard seed from the simulation seed (splitmix64 finaliser).
func mix(seed, k uint64) uint64 {
	z := seed + 0x9e3779b97f4a7c15*(k+1)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Retention estimates, for one shard trained under seqs, the probability that it still
// serves at least k slices after r deletions in it (each hitting one of its L slices
// uniformly, with replacement). The result is indexed [r][k] for r = 0..maxDeletions and
// k = 0..L (k = 0 is always 1).
func Retention(ctx context.Context, seqs [][]int, maxDeletions, runs int, seed uint64) ([][]float64, error) {
	if maxDeletions < 0 || runs < 1 {
		return nil, fmt.Errorf("unlearning: retention: need deletions >= 0 and runs >= 1, got %d and %d", maxDeletions, runs)
	}
	s, err := NewShard(seqs)
	if err != nil {
		return nil, fmt.Errorf("unlearning: retention: %w", err)
	}
	L := s.Slices()
	// hist[r][j] counts runs serving exactly j slices after r deletions.
	hist := make([][]int, maxDeletions+1)
	for r := range hist {
		hist[r] = make([]int, L+1)
	}
	for run := 0; run < runs; run++ {
		if run%1024 == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("unlearning: retention: %w", ctx.Err())
		}
		rng := rand.NewPCG(seed, uint64(run))
		s.reset()
		hist[0][L]++
		for r := 1; r <= maxDeletions; r++ {
			s.truncate(int(boundedRand(rng, uint64(L))))
			hist[r][s.Served().Length]++
		}
	}
	out := make([][]float64, maxDeletions+1)
	for r, h := range hist {
		out[r] = make([]float64, L+1)
		acc := 0
		for k := L; k >= 0; k-- {
			acc += h[k]
			out[r][k] = float64(acc) / float64(runs)
		}
	}
	return out, nil
}
