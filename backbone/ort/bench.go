package ort

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Samples holds the latencies of repeated runs in run order; Total[i] and ORT[i] come from the
// same run (see RunStats).
type Samples struct {
	Total []time.Duration
	ORT   []time.Duration
}

// Summary condenses Samples for a report.
type Summary struct {
	// Runs is the number of samples.
	Runs int
	// TotalP50, TotalP99, ORTP50 and ORTP99 are percentiles of the wrapper's total time and of
	// the time inside ONNX Runtime's Run.
	TotalP50, TotalP99 time.Duration
	ORTP50, ORTP99     time.Duration
	// Overhead is the median over runs of (Total-ORT)/ORT: the Go layer's cost as a fraction
	// of ONNX Runtime's own run time (0.05 is 5%).
	Overhead float64
}

// Bench runs s on inputs warmup times untimed, then iterations times, and returns each timed
// run's latencies. opts apply to every run (RecordStats is taken over). It stops at the first
// error.
func Bench(ctx context.Context, s *Session, inputs map[string]Tensor, warmup, iterations int, opts ...RunOption) (Samples, error) {
	if warmup < 0 || iterations < 1 {
		return Samples{}, fmt.Errorf("ort: bench: warmup %d, iterations %d: %w", warmup, iterations, ErrInvalidArgument)
	}
	var st RunStats
	opts = append(slices.Clip(opts), RecordStats(&st))
	for range warmup {
		if _, err := s.Run(ctx, inputs, opts...); err != nil {
			return Samples{}, fmt.Errorf("ort: bench: warmup: %w", err)
		}
	}
	out := Samples{Total: make([]time.Duration, 0, iterations), ORT: make([]time.Duration, 0, iterations)}
	for range iterations {
		if _, err := s.Run(ctx, inputs, opts...); err != nil {
			return out, fmt.Errorf("ort: bench: %w", err)
		}
		out.Total = append(out.Total, st.Total)
		out.ORT = append(out.ORT, st.ORT)
	}
	return out, nil
}

// Summary returns the percentiles and median overhead of the samples.
func (s Samples) Summary() Summary {
	ratios := make([]float64, 0, len(s.Total))
	for i := range min(len(s.Total), len(s.ORT)) {
		if s.ORT[i] > 0 {
			ratios = append(ratios, float64(s.Total[i]-s.ORT[i])/float64(s.ORT[i]))
		}
	}
	slices.Sort(ratios)
	overhead := math.NaN()
	if n := len(ratios); n > 0 {
		overhead = ratios[n/2]
		if n%2 == 0 {
			overhead = (ratios[n/2-1] + ratios[n/2]) / 2
		}
	}
	return Summary{
		Runs:     len(s.Total),
		TotalP50: Percentile(s.Total, 50),
		TotalP99: Percentile(s.Total, 99),
		ORTP50:   Percentile(s.ORT, 50),
		ORTP99:   Percentile(s.ORT, 99),
		Overhead: overhead,
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of d by the nearest-rank method, or 0
// for no samples. d is not modified.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sorted := slices.Clone(d)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// SyntheticInputs makes inputs for every input s takes, for benchmarks: a dynamic first
// dimension gets batch rows, floats are uniform in [0, 1) from a PCG seeded with seed, and
// other types are zero. An input with another dynamic dimension, or no declared shape, gives an
// error wrapping ErrShape (pass real inputs for such models).
func SyntheticInputs(s *Session, batch int, seed uint64) (map[string]Tensor, error) {
	if batch < 1 {
		return nil, fmt.Errorf("ort: synthetic inputs: batch %d: %w", batch, ErrInvalidArgument)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5e3d))
	out := make(map[string]Tensor, len(s.inputs))
	for _, in := range s.inputs {
		if in.Shape == nil {
			return nil, fmt.Errorf("ort: synthetic inputs: input %q declares no shape: %w", in.Name, ErrShape)
		}
		shape := slices.Clone(in.Shape)
		for k, d := range shape {
			switch {
			case d >= 0:
			case k == 0:
				shape[k] = int64(batch)
			default:
				return nil, fmt.Errorf("ort: synthetic inputs: input %s has a dynamic dimension %d: %w", in, k, ErrShape)
			}
		}
		n, err := numElements(shape)
		if err != nil {
			return nil, fmt.Errorf("ort: synthetic inputs: input %q: %w", in.Name, err)
		}
		var data any
		switch in.DType {
		case Float32:
			v := make([]float32, n)
			for i := range v {
				v[i] = rng.Float32()
			}
			data = v
		case Float64:
			v := make([]float64, n)
			for i := range v {
				v[i] = rng.Float64()
			}
			data = v
		default:
			if !supported(in.DType) {
				return nil, fmt.Errorf("ort: synthetic inputs: input %q is %s: %w", in.Name, in.DType, ErrDType)
			}
			data = zeros(in.DType, n)
		}
		out[in.Name] = Tensor{Shape: shape, Data: data}
	}
	return out, nil
}
