package training

import (
	"context"
	"testing"

	"github.com/s3t-dev/s3t/store"
)

// TestStatusKeepsEndedJobs: a job this process still holds shows its live progress while the
// ledger says it is queued or running, and the ledger's state once that says it ended: a run
// registers itself as running before it looks at its row, and a cancelled job showed as running
// meanwhile, which made s3t models train follow it and fail.
func TestStatusKeepsEndedJobs(t *testing.T) {
	ctx := context.Background()
	r, _ := newPurgeRunner(t)
	st := r.cfg.Store
	if _, err := st.CreateModel(ctx, store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}}}); err != nil {
		t.Fatal(err)
	}
	q, err := st.EnqueueTraining(ctx, r.cfg.Jobs, "m", JobKind, []store.TrainUnit{{Shard: 0, Sequence: 0}},
		func(u store.TrainUnit) any { return jobArgs{Model: "m", Shard: u.Shard, Sequence: u.Sequence} })
	if err != nil || len(q) != 1 {
		t.Fatalf("enqueue: %v, %v", q, err)
	}
	a := &activeJob{model: "m", row: store.Training{JobID: q[0], Model: "m", State: store.TrainingRunning, Step: 3, Steps: 10}}
	r.mu.Lock()
	r.active[q[0]] = a
	r.mu.Unlock()
	for _, tt := range []struct {
		ledger, want string
		step         int64
	}{
		{store.TrainingQueued, store.TrainingRunning, 3}, // the run began: its live progress
		{store.TrainingRunning, store.TrainingRunning, 3},
		{store.TrainingCancelled, store.TrainingCancelled, 0}, // ended: the ledger's row
		{store.TrainingDone, store.TrainingDone, 0},
	} {
		if err := st.SetTrainingState(ctx, q[0], tt.ledger, ""); err != nil {
			t.Fatal(err)
		}
		ts, err := r.Status(ctx, "m")
		if err != nil || len(ts) != 1 {
			t.Fatalf("Status: %v, %v", ts, err)
		}
		if ts[0].State != tt.want || ts[0].Step != tt.step {
			t.Errorf("ledger %s: Status says %s at step %d, want %s at step %d", tt.ledger, ts[0].State, ts[0].Step, tt.want, tt.step)
		}
	}
}
