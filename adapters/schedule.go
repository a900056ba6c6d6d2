package adapters

import (
	"fmt"
	"math"
)

// ScheduleKind names a learning-rate schedule.
type ScheduleKind string

// The learning-rate schedules.
const (
	// Constant keeps the learning rate fixed (after the warm-up).
	Constant ScheduleKind = "constant"
	// Cosine decays the learning rate from its value to 0 along half a cosine over Steps steps
	// (after the warm-up), as transformers' get_cosine_schedule_with_warmup does.
	Cosine ScheduleKind = "cosine"
)

// Schedule scales the optimizer's learning rate at each step: linearly from 0 over Warmup steps,
// then as Kind says. The zero value is a constant learning rate.
type Schedule struct {
	// Kind is the schedule. Default Constant.
	Kind ScheduleKind
	// Steps is the total number of optimizer steps (cosine decays to 0 at this step).
	Steps int
	// Warmup is the number of warm-up steps. Default 0.
	Warmup int
}

// ParseScheduleKind returns the ScheduleKind named s ("" means Constant).
func ParseScheduleKind(s string) (ScheduleKind, error) {
	switch k := ScheduleKind(s); k {
	case "", Constant:
		return Constant, nil
	case Cosine:
		return k, nil
	}
	return "", fmt.Errorf("%w: learning-rate schedule %q (want %s or %s)", ErrInvalidArgument, s, Constant, Cosine)
}

func (s Schedule) validate() error {
	if _, err := ParseScheduleKind(string(s.Kind)); err != nil {
		return err
	}
	if s.Steps < 0 || s.Warmup < 0 || (s.Kind == Cosine && s.Steps < 1) {
		return fmt.Errorf("%w: schedule %+v", ErrInvalidArgument, s)
	}
	return nil
}

// factor returns the multiplier of the learning rate at step (counted from 1).
func (s Schedule) factor(step int) float64 {
	if step <= s.Warmup {
		return float64(step) / float64(s.Warmup+1)
	}
	if s.Kind != Cosine {
		return 1
	}
	done := float64(step-1-s.Warmup) / float64(max(1, s.Steps-s.Warmup))
	return 0.5 * (1 + math.Cos(math.Pi*min(done, 1)))
}
