package training

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/store"
)

// TestSweepKeepsRescuedRunsBlobs: a job handed out again after its lease expired
// (RescueExpiredTrainings) while its first run was still alive is marked completed by the queue
// when that stale first run returns, although the second run holds it and goes on recording
// stages. The job still counts as unfinished while the second run's lease lasts: its sequence is
// not queued again, and no sweep removes the blob the second run then records.
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
			if ok, err := st.AcquireTraining(ctx, job.ID, "A", time.Millisecond); !ok || err != nil {
				t.Errorf("A acquires: %v, %v", ok, err)
			}
			close(aStarted)
			<-aRelease
		case 2: // worker B, after the rescue
			if ok, err := st.AcquireTraining(ctx, job.ID, "B", time.Hour); !ok || err != nil {
				t.Errorf("B acquires: %v, %v", ok, err)
			}
			close(bStarted)
			<-bRelease
		}
		return nil // a run that lost its lease returns nil
	}
	for range 2 { // two processes' queue clients
		j, err := st.NewJobs(store.JobsConfig{Workers: 1, PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Handle("rescued", handle); err != nil {
			t.Fatal(err)
		}
		if err := j.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer j.Stop(ctx)
	}
	unit := []store.TrainUnit{{Shard: 0, Sequence: 0}}
	args := func(u store.TrainUnit) any { return jobArgs{Model: "m", Shard: u.Shard, Sequence: u.Sequence} }
	ids, err := st.EnqueueTraining(ctx, r.cfg.Jobs, "m", "rescued", unit, args)
	if err != nil || len(ids) != 1 {
		t.Fatal(ids, err)
	}
	job := ids[0]
	<-aStarted
	time.Sleep(10 * time.Millisecond) // A's lease expires
	if got, err := st.RescueExpiredTrainings(ctx, "default", 0); err != nil || len(got) != 1 {
		t.Fatalf("rescue: %v, %v", got, err)
	}
	<-bStarted
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
