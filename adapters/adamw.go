package adapters

import (
	"fmt"
	"math"
)

// AdamW configures the optimizer: Adam (Kingma & Ba) with decoupled weight decay (Loshchilov &
// Hutter), as torch.optim.AdamW computes it. With WeightDecay 0 it is plain Adam.
type AdamW struct {
	// LearningRate is the step size. Default 1e-3.
	LearningRate float64
	// Beta1 and Beta2 are the moment decay rates. Defaults 0.9 and 0.999.
	Beta1, Beta2 float64
	// Epsilon is added to the root of the second moment. Default 1e-8.
	Epsilon float64
	// WeightDecay multiplies every trained parameter by (1 - LearningRate·WeightDecay) before each
	// step. Default 0.
	WeightDecay float64
}

func (o AdamW) withDefaults() AdamW {
	if o.LearningRate == 0 {
		o.LearningRate = 1e-3
	}
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Epsilon == 0 {
		o.Epsilon = 1e-8
	}
	return o
}

func (o AdamW) validate() error {
	ok := func(v, lo, hi float64) bool { return v >= lo && v <= hi && !math.IsNaN(v) }
	if !ok(o.LearningRate, 0, math.MaxFloat64) || !ok(o.Beta1, 0, 1-1e-12) || !ok(o.Beta2, 0, 1-1e-12) ||
		!ok(o.Epsilon, 0, math.MaxFloat64) || !ok(o.WeightDecay, 0, math.MaxFloat64) {
		return fmt.Errorf("%w: optimizer %+v", ErrInvalidArgument, o)
	}
	return nil
}

// adamState holds the optimizer's moments for one parameter.
type adamState struct {
	m, v []float64
}

// adamStep applies one AdamW step (step counts from 1) to p with gradient g. The arithmetic is in
// float64 and deterministic: the same inputs give the same bits.
func (o AdamW) adamStep(step int, p []float32, g []float64, s *adamState) {
	if s.m == nil {
		s.m, s.v = make([]float64, len(p)), make([]float64, len(p))
	}
	bc1 := 1 - math.Pow(o.Beta1, float64(step))
	bc2 := 1 - math.Pow(o.Beta2, float64(step))
	lr, decay := o.LearningRate, 1-o.LearningRate*o.WeightDecay
	for i, gi := range g {
		w := float64(p[i]) * decay
		s.m[i] = o.Beta1*s.m[i] + (1-o.Beta1)*gi
		s.v[i] = o.Beta2*s.v[i] + (1-o.Beta2)*gi*gi
		w -= lr * (s.m[i] / bc1) / (math.Sqrt(s.v[i]/bc2) + o.Epsilon)
		p[i] = float32(w)
	}
}
