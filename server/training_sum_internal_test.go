package server

import (
	"testing"
	"time"

	"github.com/s3t-dev/s3t/store"
)

// units numbers the jobs of sumTraining's tests.
var units int

// job is a training row for sumTraining's tests, of a unit of its own (shard units, sequence 0).
func job(state string, step, steps int64, eta time.Duration) *store.Training {
	units++
	return &store.Training{JobID: int64(units), Shard: units, State: state, Step: step, Steps: steps, ETA: eta}
}

// again is a later job of t's unit.
func again(t *store.Training, state string, step, steps int64, eta time.Duration) *store.Training {
	j := job(state, step, steps, eta)
	j.Shard, j.Sequence = t.Shard, t.Sequence
	return j
}

// now is the time sumTraining's tests read the leases at.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// leased is t (running) under a lease that ends after now: its worker renews it.
func leased(t *store.Training) *store.Training {
	t.Holder, t.LeaseUntil = "w-live", now.Add(20*time.Second)
	return t
}

// lapsed is t (running) under a lease that ended before now: its worker stopped renewing it.
func lapsed(t *store.Training) *store.Training {
	t.Holder, t.LeaseUntil = "w-dead", now.Add(-10*time.Second)
	return t
}

const (
	queued    = store.TrainingQueued
	running   = store.TrainingRunning
	done      = store.TrainingDone
	failed    = store.TrainingFailed
	cancelled = store.TrainingCancelled
)

func TestSumTraining(t *testing.T) {
	tests := []struct {
		name        string
		jobs        []*store.Training
		step, steps int64
		eta         time.Duration
		done        bool
	}{
		{name: "no jobs", done: true},
		{name: "all queued, no job knows its steps", jobs: []*store.Training{job(queued, 0, 0, 0), job(queued, 0, 0, 0)}},
		// The first of 4 jobs runs on the only worker: the 3 queued ones count its 100 steps each,
		// and the ETA covers them at its rate (50 steps in 25 s: 2 steps/s), 350 steps: 175 s.
		{name: "one running, three queued", jobs: []*store.Training{job(running, 50, 100, 25*time.Second), job(queued, 0, 0, 0), job(queued, 0, 0, 0), job(queued, 0, 0, 0)},
			step: 50, steps: 400, eta: 175 * time.Second},
		// Two workers: 2 steps/s each, 4 steps/s together, 200 steps left: 50 s.
		{name: "two running, one queued, one done", jobs: []*store.Training{job(done, 100, 100, 0), job(running, 60, 100, 20*time.Second), job(running, 40, 100, 30*time.Second), job(queued, 0, 0, 0)},
			step: 200, steps: 400, eta: 50 * time.Second},
		// No fewer seconds than the longest running job's ETA (one job is not shared by workers).
		{name: "the slowest running job bounds the ETA", jobs: []*store.Training{job(running, 90, 100, time.Second), job(running, 10, 100, 90*time.Second)},
			step: 100, steps: 200, eta: 90 * time.Second},
		// A running job still loading its data does not know its steps yet: estimated too (the
		// mean of 120 and 80), but gives no rate; 190 steps left at 2 steps/s: 95 s.
		{name: "running without steps yet", jobs: []*store.Training{job(running, 0, 0, 0), job(running, 30, 120, 45*time.Second), job(done, 80, 80, 0)},
			step: 110, steps: 300, eta: 95 * time.Second},
		// Failed and cancelled jobs count no steps, but their steps inform the estimate.
		{name: "failed and cancelled", jobs: []*store.Training{job(failed, 10, 100, 0), job(cancelled, 0, 0, 0), job(queued, 0, 0, 0)},
			steps: 100},
		{name: "finished", jobs: []*store.Training{job(done, 100, 100, 0), job(done, 90, 100, 0), job(failed, 3, 100, 0), job(cancelled, 0, 0, 0)},
			step: 200, steps: 200, done: true},
		// Queued jobs but no worker running: the ETA is unknown.
		{name: "queued after done, no worker", jobs: []*store.Training{job(done, 100, 100, 0), job(queued, 0, 0, 0)},
			step: 100, steps: 200},
		// A forced retrain of two trained units: their earlier done jobs are not this work, so
		// the progress starts at 0, not at a half (and the estimate is the new jobs' own).
		{name: "retrain after done", jobs: func() []*store.Training {
			a, b := job(done, 100, 100, 0), job(done, 100, 100, 0)
			return []*store.Training{a, b, again(a, running, 10, 40, 30*time.Second), again(b, queued, 0, 0, 0)}
		}(), step: 10, steps: 80, eta: 70 * time.Second}, // 70 steps left at 1 step/s
		// An earlier job of a unit still running beside its newer, finished one (queued twice by
		// an older replica): not done.
		{name: "earlier job still running", jobs: func() []*store.Training {
			a := job(running, 5, 100, 0)
			return []*store.Training{a, again(a, done, 100, 100, 0)}
		}(), step: 100, steps: 100},
		// A job whose worker stopped renewing its lease still counts its steps (it is requeued,
		// and resumed), but not its rate or its ETA, which stay as its last heartbeat wrote them:
		// the 200 steps left (the stalled job's 50 included) at the live job's 2 steps/s, 100 s
		// (it was 29 s, at 7 steps/s: the dead worker's 5 steps/s counted as if it still ran).
		{name: "one job stalled, one running", jobs: []*store.Training{lapsed(job(running, 50, 100, 10*time.Second)), leased(job(running, 50, 100, 25*time.Second)), job(queued, 0, 0, 0)},
			step: 100, steps: 300, eta: 100 * time.Second},
		// The only running job stalled: no rate, the ETA is unknown (it read 30 s, at the dead
		// worker's rate, until the job was requeued, up to 2.5 leases later).
		{name: "only job stalled", jobs: []*store.Training{lapsed(job(running, 50, 100, 10*time.Second)), job(queued, 0, 0, 0)},
			step: 50, steps: 200},
		// A lease that has not ended: the job runs, its ETA counts.
		{name: "lease live", jobs: []*store.Training{leased(job(running, 50, 100, 10*time.Second))},
			step: 50, steps: 100, eta: 10 * time.Second},
		// A unit trained again after its job was cancelled: only the new job counts.
		{name: "done after cancelled", jobs: func() []*store.Training {
			a := job(cancelled, 5, 100, 0)
			return []*store.Training{a, again(a, done, 100, 100, 0)}
		}(), step: 100, steps: 100, done: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sumTraining(tt.jobs, now)
			var progress float64
			if tt.steps > 0 {
				progress = float64(tt.step) / float64(tt.steps)
			}
			if got.step != tt.step || got.steps != tt.steps || got.progress != progress || got.eta != tt.eta || got.done != tt.done {
				t.Fatalf("sumTraining = %+v, want step %d, steps %d, progress %v, eta %v, done %v", got, tt.step, tt.steps, progress, tt.eta, tt.done)
			}
		})
	}
}

// TestTrainingProgressMonotone follows 3 jobs of 100 steps each through one worker, as the
// status sees them: queued, running step by step, done. The model's progress never falls and
// its ETA covers the jobs still queued.
func TestTrainingProgressMonotone(t *testing.T) {
	const n, steps, stepTime = 3, 100, 100 * time.Millisecond
	jobs := make([]*store.Training, n)
	for i := range jobs {
		jobs[i] = job(queued, 0, 0, 0)
	}
	last := -1.0
	check := func(what string) {
		t.Helper()
		sum := sumTraining(jobs, now)
		if sum.progress < last {
			t.Fatalf("%s: progress fell from %v to %v", what, last, sum.progress)
		}
		last = sum.progress
		// Once the running job has an ETA: every step left, across the queue, at its rate.
		var left time.Duration
		rated := false
		for _, j := range jobs {
			switch j.State {
			case queued:
				left += steps * stepTime
			case running:
				left += time.Duration(j.Steps-j.Step) * stepTime
				rated = j.ETA > 0
			}
		}
		if rated && sum.eta != left {
			t.Fatalf("%s: ETA %v, want %v", what, sum.eta, left)
		}
	}
	check("all queued")
	for _, j := range jobs {
		j.State = running // started: loading its data, its steps not known yet
		check("started")
		j.Steps = steps
		for j.Step = 0; j.Step < steps; j.Step += 10 {
			j.ETA = time.Duration(steps-j.Step) * stepTime
			check("running")
		}
		j.State, j.Step, j.ETA = done, steps, 0
		check("done")
	}
	if last != 1 {
		t.Fatalf("progress at the end %v, want 1", last)
	}
}
