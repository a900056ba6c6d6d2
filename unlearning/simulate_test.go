package unlearning

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/s3t-dev/s3t/sdk"
)

func TestClosedFormMethodExamples(t *testing.T) {
	// METHOD.md: m=5, L=4: B=1 gives 45.67, B=2 gives 58.58, B=4 gives 71.95 (1.58x SISA);
	// m=2, L=8: 2.25x at B' = L.
	tests := []struct {
		m, L, Bp int
		want     float64
	}{
		{5, 4, 1, 45.67},
		{5, 4, 2, 58.58},
		{5, 4, 4, 71.95},
	}
	for _, tc := range tests {
		if got := ClosedForm(tc.m, tc.L, tc.Bp); math.Abs(got-tc.want) > 0.005 {
			t.Errorf("ClosedForm(%d,%d,%d) = %.4f, want %.2f", tc.m, tc.L, tc.Bp, got, tc.want)
		}
	}
	if r := ClosedForm(5, 4, 4) / SISAClosedForm(5, 4); math.Abs(r-1.58) > 0.005 {
		t.Errorf("m=5 L=4 ratio %.3f, want 1.58", r)
	}
	if r := ClosedForm(2, 8, 8) / SISAClosedForm(2, 8); math.Abs(r-2.25) > 0.005 {
		t.Errorf("m=2 L=8 ratio %.3f, want 2.25", r)
	}
	if Harmonic(0) != 0 || Harmonic(1) != 1 || math.Abs(Harmonic(4)-25.0/12) > 1e-15 {
		t.Error("Harmonic")
	}
}

// TestSimulateMatchesClosedForm: the simulator, which runs the server's Shard logic, lands
// within 2% of m*L*H(m*B') on the METHOD.md examples, for every selector.
func TestSimulateMatchesClosedForm(t *testing.T) {
	tests := []struct {
		m, L, B  int
		selector string
	}{
		{5, 4, 1, "cyclic"},
		{5, 4, 2, "cyclic"},
		{5, 4, 4, "cyclic"},
		{5, 4, 4, "bms"},
		{5, 4, 8, "cyclic"}, // B > L: B' stays L
		{2, 8, 8, "cyclic"},
		{10, 8, 8, "cyclic"},
		{5, 4, 3, "random"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s_m%d_L%d_B%d", tc.selector, tc.m, tc.L, tc.B), func(t *testing.T) {
			sel, _ := NewSelector(tc.selector)
			res, err := Simulate(context.Background(), SimConfig{
				Shards: tc.m, Slices: tc.L, Budget: tc.B, Selector: sel, Runs: 20000, Seed: 42,
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.selector != "random" && res.DistinctFirst != min(tc.B, tc.L) {
				t.Errorf("B' = %d, want %d", res.DistinctFirst, min(tc.B, tc.L))
			}
			if rel := math.Abs(res.DeletionRate-res.ClosedForm) / res.ClosedForm; rel > 0.02 {
				t.Errorf("simulated %.3f, closed form %.3f (%.1f%% off)", res.DeletionRate, res.ClosedForm, 100*rel)
			}
			if !(res.CI95[0] < res.DeletionRate && res.DeletionRate < res.CI95[1]) {
				t.Errorf("CI %v does not contain the mean %v", res.CI95, res.DeletionRate)
			}
			if got, want := res.RatioVsSISA, res.DeletionRate/SISAClosedForm(tc.m, tc.L); got != want {
				t.Errorf("ratio %v, want %v", got, want)
			}
		})
	}
}

func TestSimulateDeterministicAcrossWorkers(t *testing.T) {
	run := func(workers int) SimResult {
		res, err := Simulate(context.Background(), SimConfig{
			Shards: 3, Slices: 4, Budget: 2, Selector: Random{}, Runs: 999, Seed: 9, Workers: workers,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if a, b := run(1), run(3); a != b {
		t.Fatalf("1 worker %+v, 3 workers %+v", a, b)
	}
}

func TestSimulateErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []SimConfig{
		{Shards: 0, Slices: 4, Budget: 1, Selector: Cyclic{}, Runs: 10},
		{Shards: 1, Slices: 4, Budget: 1, Selector: Cyclic{}, Runs: 0},
		{Shards: 1, Slices: 4, Budget: 1, Runs: 10},
		{Shards: 1, Slices: 3, Budget: 7, Selector: Cyclic{}, Runs: 10},
	} {
		if _, err := Simulate(ctx, cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Simulate(cancelled, SimConfig{Shards: 2, Slices: 4, Budget: 2, Selector: Cyclic{}, Runs: 100}); err == nil {
		t.Error("cancelled context: no error")
	}
}

// TestRetention checks the curve against exact values: with one sequence (SISA) the shard
// serves >= 1 slice after r deletions iff its first slice was never hit: ((L-1)/L)^r.
func TestRetention(t *testing.T) {
	const L, runs = 4, 40000
	cur, err := Retention(context.Background(), [][]int{{0, 1, 2, 3}}, 6, runs, 1)
	if err != nil {
		t.Fatal(err)
	}
	for r := 0; r <= 6; r++ {
		if cur[r][0] != 1 {
			t.Fatalf("P(served >= 0) = %v", cur[r][0])
		}
		want := math.Pow(float64(L-1)/L, float64(r))
		if math.Abs(cur[r][1]-want) > 0.01 {
			t.Errorf("r=%d: P(served >= 1) = %.4f, want %.4f", r, cur[r][1], want)
		}
		// Full length survives only if no deletion hit the shard at all.
		wantFull := 0.0
		if r == 0 {
			wantFull = 1
		}
		if cur[r][L] != wantFull {
			t.Errorf("r=%d: P(served >= L) = %v, want %v", r, cur[r][L], wantFull)
		}
		for k := 1; k <= L; k++ {
			if cur[r][k] > cur[r][k-1] {
				t.Fatalf("r=%d: curve not monotone in k: %v", r, cur[r])
			}
		}
	}
	// More sequences retain at least as well.
	four, _ := Retention(context.Background(), cyclic44, 6, runs, 1)
	if four[3][1] <= cur[3][1] {
		t.Errorf("B=4 retains %.3f <= B=1 %.3f", four[3][1], cur[3][1])
	}
	if _, err := Retention(context.Background(), nil, 3, 10, 1); err == nil {
		t.Error("no sequences: no error")
	}
}

func BenchmarkSimulate(b *testing.B) {
	sel := Cyclic{}
	for _, tc := range []struct{ m, L, B, workers int }{
		{10, 8, 8, 1},
		{10, 8, 8, 0},
		{5, 4, 4, 1},
	} {
		b.Run(fmt.Sprintf("m%d_L%d_B%d_runs10000_workers%d", tc.m, tc.L, tc.B, tc.workers), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := Simulate(context.Background(), SimConfig{
					Shards: tc.m, Slices: tc.L, Budget: tc.B, Selector: sel, Runs: 10000, Seed: uint64(i), Workers: tc.workers,
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSelectBMS(b *testing.B) {
	req := &sdk.SelectRequest{Slices: 8, Budget: 8, Prior: []float64{.05, .1, .15, .2, .1, .1, .2, .1}}
	for i := 0; i < b.N; i++ {
		if _, err := (BMS{}).Select(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
