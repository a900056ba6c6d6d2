package sdk

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// The distributions an Init may name.
const (
	// DistConstant fills every element with Value.
	DistConstant = "constant"
	// DistNormal draws from a normal distribution with Mean and Std.
	DistNormal = "normal"
	// DistUniform draws uniformly from [Low, High).
	DistUniform = "uniform"
)

// Init says how training initialises a parameter. It is data, not code, so that the host and
// every engine draw the same values: Sample is the one implementation, deterministic for a seed
// on every platform.
type Init struct {
	// Dist is DistConstant, DistNormal or DistUniform.
	Dist string `json:"dist"`
	// Value is the constant of DistConstant.
	Value float64 `json:"value,omitempty"`
	// Mean and Std parameterise DistNormal.
	Mean float64 `json:"mean,omitempty"`
	Std  float64 `json:"std,omitempty"`
	// Low and High bound DistUniform.
	Low  float64 `json:"low,omitempty"`
	High float64 `json:"high,omitempty"`
}

// Constant returns the Init that fills a parameter with v.
func Constant(v float64) Init { return Init{Dist: DistConstant, Value: v} }

// Normal returns the Init that draws from N(mean, std²).
func Normal(mean, std float64) Init { return Init{Dist: DistNormal, Mean: mean, Std: std} }

// Uniform returns the Init that draws uniformly from [low, high).
func Uniform(low, high float64) Init { return Init{Dist: DistUniform, Low: low, High: high} }

// Validate checks the distribution is known and its parameters finite and sensible
// (Std >= 0, Low <= High).
func (i Init) Validate() error {
	finite := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
		return true
	}
	switch i.Dist {
	case DistConstant:
		if !finite(i.Value) {
			return fmt.Errorf("%w: init constant %v is not finite", ErrInvalidPlan, i.Value)
		}
	case DistNormal:
		if !finite(i.Mean, i.Std) || i.Std < 0 {
			return fmt.Errorf("%w: init normal(%v, %v): want a finite mean and std >= 0", ErrInvalidPlan, i.Mean, i.Std)
		}
	case DistUniform:
		if !finite(i.Low, i.High) || i.Low > i.High {
			return fmt.Errorf("%w: init uniform[%v, %v): want finite bounds, low <= high", ErrInvalidPlan, i.Low, i.High)
		}
	default:
		return fmt.Errorf("%w: init distribution %q (want %s, %s or %s)", ErrInvalidPlan, i.Dist, DistConstant, DistNormal, DistUniform)
	}
	return nil
}

// Sample returns a float32 tensor named name of the given shape, filled from the distribution
// with a PCG generator (math/rand/v2) seeded by seed: the same seed gives the same values on
// every platform. Derive per-parameter seeds with SeedFor.
func (i Init) Sample(name string, shape []int64, seed uint64) (Tensor, error) {
	if err := i.Validate(); err != nil {
		return Tensor{}, err
	}
	t := Tensor{Name: name, DType: DTypeFloat32, Shape: append([]int64{}, shape...)}
	if err := t.checkShape(); err != nil {
		return Tensor{}, err
	}
	t.Float32 = make([]float32, NumElements(shape))
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for k := range t.Float32 {
		var v float64
		switch i.Dist {
		case DistConstant:
			v = i.Value
		case DistNormal:
			v = i.Mean + i.Std*rng.NormFloat64()
		case DistUniform:
			v = i.Low + (i.High-i.Low)*rng.Float64()
		}
		t.Float32[k] = float32(v)
	}
	return t, nil
}

// checkShape rejects negative dimensions.
func (t Tensor) checkShape() error {
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("%w: tensor %q: negative dimension in %v", ErrInvalidTensor, t.Name, t.Shape)
		}
	}
	return nil
}

// SeedFor derives the seed of one named parameter from a run's seed (FNV-1a of the name, mixed
// with the seed by SplitMix64), so that every parameter draws an independent, reproducible
// stream.
func SeedFor(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	z := seed ^ h.Sum64()
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
