package training

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/store"
)

// TestSweepKeepsRescuedRunsBlobs: a job handed out again after its lease expired
// (RescueExpiredTrainings) while its first run was still alive can be marked finished by the
// queue when that stale first run returns, although the second run holds it and goes on recording
// stages (the runner's stale runs snooze instead, see TestStaleRunLeavesTheOutcomeToLaterRuns;
// the ledger does not count on it). The job still counts as unfinished while the second run's
// lease lasts: its sequence is not queued again, and no sweep removes the blob the second run
// then records.
func TestSweepKeepsRescuedRunsBlobs(t *testing.T) {
	ctx := context.Background()
	r, blobs := newPurgeRunner(t)
	st := r.cfg.Store
	if _, err := st.CreateModel(ctx, store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}}}); err != nil {
		t.Fatal(err)
	}
	aStarted, aRelease, bStarted, bRelease := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	handle := func(ctx context.Context, job store.Job) error {
		switch runs.Add(1) {
		case 1: // worker A: its lease expires while it stalls
			holdUntil(t, st, job.ID, "A", time.Millisecond, aStarted, aRelease)
		case 2: // worker B, after the rescue
			holdUntil(t, st, job.ID, "B", time.Hour, bStarted, bRelease)
		}
		return nil // for A: an outcome that finishes the job under B
	}
	job := rescueStalledRun(t, r, "rescued", store.JobsConfig{}, handle, aStarted, bStarted)
	close(aRelease) // A's stale run returns: the queue completes the job
	defer close(bRelease)
	for deadline := time.Now().Add(30 * time.Second); ; {
		info, err := r.cfg.Jobs.Get(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if info.Finished() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue did not finish job %d after its first run returned: %s", job, info.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	key := CheckpointKey("m", 0, 0, 1, 1, job, 1) // B writes stage 1
	if err := blobs.Put(ctx, key, []byte("x")); err != nil {
		t.Fatal(err)
	}
	unit := []store.TrainUnit{{Shard: 0, Sequence: 0}}
	args := func(u store.TrainUnit) any { return jobArgs{Model: "m", Shard: u.Shard, Sequence: u.Sequence} }
	again, err := st.EnqueueTraining(ctx, r.cfg.Jobs, "m", JobKind, unit, args)
	if err != nil || len(again) != 0 {
		t.Fatalf("enqueue while B runs the job: %v, %v; want nothing queued", again, err)
	}
	if n, err := r.sweep(ctx, jobArgs{Model: "m", Shard: 0, Sequence: 0}, job+1000); err != nil || n != 0 {
		t.Fatalf("another job's sweep removed %d blobs (%v), want none", n, err)
	}
	if err := st.PublishCheckpoint(ctx, store.CheckpointRecord{Model: "m", Shard: 0, Sequence: 0, Gen: 1, Stage: 1,
		BlobKey: key, Samples: 1, Digest: "d", Snapshot: 1, Job: job, Holder: "B"}); err != nil {
		t.Fatalf("B records stage 1: %v", err)
	}
	if _, err := blobs.ModTime(ctx, key); err != nil {
		t.Fatalf("the recorded blob %s is gone: %v", key, err)
	}
}

// TestStaleRunLeavesTheOutcomeToLaterRuns: when a job handed out again after its lease expired
// (RescueExpiredTrainings) sees its stale first run return (afterLeaseLost) while the second run
// holds it, and the second run then fails, the failure is retried: a later run takes the job
// once the second run let it go (acquire) and finishes it. Were the stale run to return nil, the
// queue would mark the job completed under the second run, and the failure would never be
// retried.
func TestStaleRunLeavesTheOutcomeToLaterRuns(t *testing.T) {
	ctx := context.Background()
	r, _ := newPurgeRunner(t)
	r.cfg.Lease = 50 * time.Millisecond // how long the stale run's snooze lasts
	st := r.cfg.Store
	if _, err := st.CreateModel(ctx, store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}}}); err != nil {
		t.Fatal(err)
	}
	aStarted, aRelease, aDone, bStarted, bRelease, cDone := make(chan struct{}), make(chan struct{}), make(chan error, 1), make(chan struct{}), make(chan struct{}), make(chan struct{})
	var runs, finished atomic.Int32
	handle := func(ctx context.Context, job store.Job) error {
		switch runs.Add(1) {
		case 1: // worker A: its lease expires while it stalls
			holdUntil(t, st, job.ID, "A", time.Millisecond, aStarted, aRelease)
			err := r.afterLeaseLost(ctx, job.ID, r.log)
			aDone <- err
			return err
		case 2: // worker B, after the rescue: records a retry and fails
			holdUntil(t, st, job.ID, "B", time.Hour, bStarted, bRelease)
			if err := st.UpdateTraining(ctx, &store.Training{JobID: job.ID, Model: "m", State: store.TrainingQueued, Message: "attempt 1 failed, retrying"}, "B", 0); err != nil {
				t.Errorf("B records its failure: %v", err)
			}
			return errors.New("B fails")
		}
		// Later runs, as the runner takes a job: they wait while B holds it, then one retries
		// B's failure and finishes the job.
		ok, ret := r.acquire(ctx, job.ID, r.log)
		if !ok {
			return ret
		}
		if err := st.UpdateTraining(ctx, &store.Training{JobID: job.ID, Model: "m", State: store.TrainingDone}, r.cfg.Holder, 0); err != nil {
			t.Errorf("the retry records the job done: %v", err)
		}
		if finished.Add(1) == 1 {
			close(cDone)
		}
		return nil
	}
	job := rescueStalledRun(t, r, "stale", store.JobsConfig{RetryDelay: 10 * time.Millisecond}, handle, aStarted, bStarted)
	close(aRelease) // A's stale run returns while B holds the job
	if err := <-aDone; err == nil {
		t.Fatal("the stale run returned nil: the queue would finish the job under B")
	}
	time.Sleep(300 * time.Millisecond) // the queue records A's outcome (in batches, within 250 ms)
	// While B holds the job, the queue's depth counts it running, though River shows it
	// available for a moment every time a later run has found B holding it and snoozed (about
	// a sample in twelve here).
	for range 50 {
		if waiting, running, err := r.cfg.Jobs.Depth(ctx); err != nil || waiting != 0 || running != 1 {
			info, _ := r.cfg.Jobs.Get(ctx, job)
			t.Errorf("depth while B holds the job (River: %s): %d waiting, %d running, %v; want 0 and 1", info.State, waiting, running, err)
			break // and let B go: the queues stop only once its run returns
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(bRelease)
	select {
	case <-cDone:
	case <-time.After(30 * time.Second):
		info, _ := r.cfg.Jobs.Get(ctx, job)
		t.Fatalf("B's failure was not retried: job %+v after %d runs", info, runs.Load())
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		info, err := r.cfg.Jobs.Get(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if info.State == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d is %s after the retry finished it", job, info.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tr, err := st.GetTraining(ctx, job); err != nil || tr.State != store.TrainingDone {
		t.Fatalf("training row %+v, %v", tr, err)
	}
	if n := finished.Load(); n != 1 {
		t.Fatalf("%d runs finished the job, want 1", n)
	}
}

// rescueStalledRun starts two queue clients of one worker each (two processes) running kind
// with handle, and enqueues a training job of model "m" for them. Its first run, on worker A,
// closes aStarted and stalls; once the run's lease has expired, the job is handed out again
// (RescueExpiredTrainings), and rescueStalledRun returns the job once its second run, on worker
// B, has closed bStarted.
func rescueStalledRun(t *testing.T, r *Runner, kind string, cfg store.JobsConfig, handle store.JobHandler, aStarted, bStarted <-chan struct{}) int64 {
	t.Helper()
	ctx := context.Background()
	st := r.cfg.Store
	cfg.Workers, cfg.PollInterval = 1, 20*time.Millisecond
	for range 2 {
		j, err := st.NewJobs(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Handle(kind, handle); err != nil {
			t.Fatal(err)
		}
		if err := j.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Stop(ctx) })
	}
	unit := []store.TrainUnit{{Shard: 0, Sequence: 0}}
	ids, err := st.EnqueueTraining(ctx, r.cfg.Jobs, "m", kind, unit, func(u store.TrainUnit) any { return jobArgs{Model: "m", Shard: u.Shard, Sequence: u.Sequence} })
	if err != nil || len(ids) != 1 {
		t.Fatal(ids, err)
	}
	<-aStarted
	time.Sleep(10 * time.Millisecond) // A's lease expires
	if got, err := st.RescueExpiredTrainings(ctx, "default", 0); err != nil || len(got) != 1 {
		t.Fatalf("rescue: %v, %v", got, err)
	}
	<-bStarted
	return ids[0]
}

// holdUntil is a run on worker holder: it takes the job's lease for lease, closes started, and
// waits for release.
func holdUntil(t *testing.T, st *store.Store, job int64, holder string, lease time.Duration, started chan<- struct{}, release <-chan struct{}) {
	t.Helper()
	if ok, err := st.AcquireTraining(context.Background(), job, holder, lease); !ok || err != nil {
		t.Errorf("%s acquires: %v, %v", holder, ok, err)
	}
	close(started)
	<-release
}
