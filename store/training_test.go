package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/unlearning"
)

// sampleIn returns a stored sample id of (shard 0, slice).
func sampleIn(t *testing.T, s *Store, model string, slice int) string {
	t.Helper()
	smps, err := s.ListSamples(context.Background(), model, unlearning.Placement{Shard: 0, Slice: slice}, "", 1)
	if err != nil || len(smps) != 1 {
		t.Fatalf("no sample in slice %d: %v", slice, err)
	}
	return smps[0].ID
}

func ckpt(model string, seq, gen, stage int, snapshot int64) CheckpointRecord {
	return CheckpointRecord{Model: model, Shard: 0, Sequence: seq, Gen: gen, Stage: stage,
		BlobKey: fmt.Sprintf("k/%d/%d/%d", seq, gen, stage), Samples: 10, Digest: fmt.Sprintf("d%d-%d-%d", seq, gen, stage), Snapshot: snapshot}
}

// TestPublishServesOnlyLiveTrainedPrefixes: a shard serves min(live, trained); stages publish
// in order; a stage above the live prefix (a sample it may have seen was deleted) is refused.
func TestPublishServesOnlyLiveTrainedPrefixes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		// One shard, L = 3, sequences [0 1 2] and [2 0 1].
		mustModel(t, s, spec("p", 1, 3, 2), 60)
		tgt, err := s.Target(ctx, "p", 0, 0, false)
		if err != nil || tgt.Gen != 1 || tgt.Retrain || tgt.From != 1 {
			t.Fatalf("Target = %+v, %v", tgt, err)
		}
		if err := s.PublishCheckpoint(ctx, ckpt("p", 0, 1, 2, tgt.Snapshot)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("stage 2 before stage 1: %v, want ErrInvalid", err)
		}
		for stage := 1; stage <= 3; stage++ {
			if err := s.PublishCheckpoint(ctx, ckpt("p", 0, 1, stage, tgt.Snapshot)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PublishCheckpoint(ctx, ckpt("p", 0, 1, 2, tgt.Snapshot)); err != nil {
			t.Fatalf("re-publishing a stage: %v", err)
		}
		if err := s.PublishCheckpoint(ctx, ckpt("p", 1, 1, 1, tgt.Snapshot)); err != nil {
			t.Fatal(err)
		}
		m, _ := s.GetModel(ctx, "p")
		if !reflect.DeepEqual(m.Trained, [][]int{{3, 1}}) || m.Published()[0] != (unlearning.Served{Sequence: 0, Length: 3}) {
			t.Fatalf("trained %v published %v", m.Trained, m.Published())
		}
		sv, err := s.Serving(ctx, "p")
		if err != nil || sv.Shards[0] == nil || sv.Shards[0].BlobKey != "k/0/1/3" || sv.Version != m.Version {
			t.Fatalf("Serving = %+v, %v", sv, err)
		}
		// Delete from slice 1: sequence 0 keeps 1 stage, sequence 1 ([2 0 1]) keeps 2 but has
		// only 1 trained.
		rc, err := s.Delete(ctx, "p", sampleIn(t, s, "p", 1))
		if err != nil {
			t.Fatal(err)
		}
		if rc.Served != (unlearning.Served{Sequence: 1, Length: 2}) || rc.Serving != (unlearning.Served{Sequence: 0, Length: 1}) {
			t.Fatalf("receipt served %v serving %v", rc.Served, rc.Serving)
		}
		if err := s.PublishCheckpoint(ctx, ckpt("p", 1, 1, 2, tgt.Snapshot)); err != nil {
			t.Fatalf("stage 2 of sequence 1 is still live: %v", err)
		}
		if err := s.PublishCheckpoint(ctx, ckpt("p", 1, 1, 3, tgt.Snapshot)); !errors.Is(err, ErrStale) {
			t.Fatalf("stage 3 of sequence 1 is above its live prefix: %v, want ErrStale", err)
		}
		sv, _ = s.Serving(ctx, "p")
		if got := sv.Shards[0]; got == nil || got.Sequence != 1 || got.Stage != 2 {
			t.Fatalf("serving %+v, want sequence 1 stage 2", got)
		}
		// A generation that is neither the current nor the next is stale.
		if err := s.PublishCheckpoint(ctx, ckpt("p", 0, 3, 1, tgt.Snapshot)); !errors.Is(err, ErrStale) {
			t.Fatalf("generation 3: %v, want ErrStale", err)
		}
	})
}

// TestRetrainSwap: a retraining stages the next generation, which is not served until the swap;
// deletions committed after its snapshot cut the new generation's live prefix and refuse
// stages that saw them; the swap checks every staged stage is the retraining's own.
func TestRetrainSwap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("r", 1, 3, 1), 60) // sequence [0 1 2]
		for stage := 1; stage <= 3; stage++ {
			if err := s.PublishCheckpoint(ctx, ckpt("r", 0, 1, stage, 0)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Delete(ctx, "r", sampleIn(t, s, "r", 0)); err != nil {
			t.Fatal(err)
		}
		tgt, err := s.Target(ctx, "r", 0, 0, false)
		if err != nil || !tgt.Retrain || tgt.Gen != 2 || tgt.From != 1 {
			t.Fatalf("Target after a deletion = %+v, %v; want a retraining into generation 2", tgt, err)
		}
		digests := []string{"d0-2-1", "d0-2-2", "d0-2-3"}
		for stage := 1; stage <= 2; stage++ {
			if err := s.PublishCheckpoint(ctx, ckpt("r", 0, 2, stage, tgt.Snapshot)); err != nil {
				t.Fatal(err)
			}
		}
		if sv, _ := s.Serving(ctx, "r"); sv.Shards[0] != nil {
			t.Fatalf("a staged generation is served before its swap: %+v", sv.Shards[0])
		}
		if _, err := s.SwapGeneration(ctx, "r", 0, 0, 2, tgt.Snapshot, digests); !errors.Is(err, ErrInvalid) {
			t.Fatalf("swap with 2 of 3 stages: %v, want ErrInvalid", err)
		}
		// A deletion after the snapshot, in slice 2 (stage 3 of the new generation).
		if _, err := s.Delete(ctx, "r", sampleIn(t, s, "r", 2)); err != nil {
			t.Fatal(err)
		}
		if err := s.PublishCheckpoint(ctx, ckpt("r", 0, 2, 3, tgt.Snapshot)); !errors.Is(err, ErrStale) {
			t.Fatalf("stage 3 saw a sample deleted after the snapshot: %v, want ErrStale", err)
		}
		// With a later snapshot the stage is clean and the swap keeps all 3 stages.
		tgt2, _ := s.Target(ctx, "r", 0, 0, false)
		if err := s.PublishCheckpoint(ctx, ckpt("r", 0, 2, 3, tgt2.Snapshot)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SwapGeneration(ctx, "r", 0, 0, 2, tgt2.Snapshot, []string{"x", "d0-2-2", "d0-2-3"}); !errors.Is(err, ErrStale) {
			t.Fatalf("swap with a stage another retraining staged: %v, want ErrStale", err)
		}
		// Swapping with the older snapshot: the deletion in slice 2 cuts the new live prefix to 2.
		sw, err := s.SwapGeneration(ctx, "r", 0, 0, 2, tgt.Snapshot, digests)
		if err != nil || sw.Live != 2 || !reflect.DeepEqual(sw.Replaced, []string{"k/0/1/1", "k/0/1/2", "k/0/1/3"}) {
			t.Fatalf("swap = %+v, %v", sw, err)
		}
		m, _ := s.GetModel(ctx, "r")
		if !reflect.DeepEqual(m.Gen, [][]int{{2}}) || !reflect.DeepEqual(m.Live, [][]int{{2}}) || !reflect.DeepEqual(m.Trained, [][]int{{3}}) {
			t.Fatalf("after the swap: gen %v live %v trained %v", m.Gen, m.Live, m.Trained)
		}
		sv, _ := s.Serving(ctx, "r")
		if got := sv.Shards[0]; got == nil || got.Gen != 2 || got.Stage != 2 || got.BlobKey != "k/0/2/2" {
			t.Fatalf("serving %+v after the swap", got)
		}
		if _, err := s.SwapGeneration(ctx, "r", 0, 0, 2, tgt.Snapshot, digests); !errors.Is(err, ErrStale) {
			t.Fatalf("second swap: %v, want ErrStale", err)
		}
		keys, _ := s.CheckpointKeys(ctx, "r")
		if !reflect.DeepEqual(keys, []string{"k/0/2/1", "k/0/2/2", "k/0/2/3"}) {
			t.Fatalf("checkpoint keys after the swap: %v", keys)
		}
	})
}

// TestTrainingLeases: one holder at a time; an expired lease is taken over and its old holder
// can no longer write; a cancelled job cannot be acquired or updated; a finished or failed one
// cannot be acquired.
func TestTrainingLeases(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("l", 2, 2, 1), 20)
		jobs, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := s.EnqueueTraining(ctx, jobs, "l", "train", []TrainUnit{{Shard: 0}, {Shard: 1}}, func(u TrainUnit) any { return u })
		if err != nil || len(ids) != 2 {
			t.Fatal(ids, err)
		}
		for _, id := range ids {
			if info, err := jobs.Get(ctx, id); err != nil || info.Kind != "train" {
				t.Fatalf("job %d: %+v, %v", id, info, err)
			}
		}
		id := ids[0]
		if ok, err := s.AcquireTraining(ctx, id, "a", time.Hour); !ok || err != nil {
			t.Fatalf("a acquires: %v, %v", ok, err)
		}
		if ok, err := s.AcquireTraining(ctx, id, "b", time.Hour); ok || err != nil {
			t.Fatalf("b acquires a held lease: %v, %v", ok, err)
		}
		tr := &Training{JobID: id, State: TrainingRunning, Stage: 1, Step: 5, Steps: 10, Loss: 0.5, Rate: 100, ETA: 3 * time.Second}
		if err := s.UpdateTraining(ctx, tr, "a", -time.Second); err != nil { // releases
			t.Fatal(err)
		}
		if ok, err := s.AcquireTraining(ctx, id, "b", time.Millisecond); !ok || err != nil {
			t.Fatalf("b acquires a released lease: %v, %v", ok, err)
		}
		if err := s.UpdateTraining(ctx, tr, "a", time.Hour); !errors.Is(err, ErrStale) {
			t.Fatalf("a writes after losing the lease: %v, want ErrStale", err)
		}
		time.Sleep(5 * time.Millisecond)
		if ok, err := s.AcquireTraining(ctx, id, "c", time.Hour); !ok || err != nil {
			t.Fatalf("c takes an expired lease: %v, %v", ok, err)
		}
		got, err := s.GetTraining(ctx, id)
		if err != nil || got.Holder != "c" || got.State != TrainingRunning || got.Step != 5 || got.ETA != 3*time.Second {
			t.Fatalf("row %+v, %v", got, err)
		}
		if err := s.SetTrainingState(ctx, id, TrainingCancelled, "by request"); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateTraining(ctx, tr, "", time.Hour); !errors.Is(err, ErrStale) {
			t.Fatalf("update of a cancelled job: %v, want ErrStale", err)
		}
		if ok, err := s.AcquireTraining(ctx, id, "c", time.Hour); ok || err != nil {
			t.Fatalf("acquire a cancelled job: %v, %v", ok, err)
		}
		if _, err := s.AcquireTraining(ctx, 99999, "c", time.Hour); !errors.Is(err, ErrNotFound) {
			t.Fatalf("acquire an unknown job: %v, want ErrNotFound", err)
		}
		// A finished or failed job is not run again, whoever asks (a later run of a job that
		// another run finished).
		other := ids[1]
		if ok, err := s.AcquireTraining(ctx, other, "d", time.Hour); !ok || err != nil {
			t.Fatalf("d acquires: %v, %v", ok, err)
		}
		for _, state := range []string{TrainingDone, TrainingFailed} {
			if err := s.UpdateTraining(ctx, &Training{JobID: other, State: state}, map[string]string{TrainingDone: "d", TrainingFailed: ""}[state], 0); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.AcquireTraining(ctx, other, "e", time.Hour); ok || err != nil {
				t.Fatalf("acquire a %s job: %v, %v", state, ok, err)
			}
		}
		all, err := s.Trainings(ctx, "l")
		if err != nil || len(all) != 2 || all[1].State != TrainingFailed || all[1].Stages != 2 {
			t.Fatalf("Trainings = %+v, %v", all, err)
		}
		if err := s.DeleteModel(ctx, "l"); err != nil {
			t.Fatal(err)
		}
		if all, _ := s.Trainings(ctx, "l"); len(all) != 0 {
			t.Fatalf("training rows survive DeleteModel: %+v", all)
		}
	})
}

// TestRescueExpiredTrainings: a running job whose lease expired goes back to the queue; one
// whose worker still renews its lease stays.
func TestRescueExpiredTrainings(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("x", 2, 2, 1), 10)
		jobs, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := s.EnqueueTraining(ctx, jobs, "x", "train", []TrainUnit{{Shard: 0}, {Shard: 1}}, func(u TrainUnit) any { return u })
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids { // as River marks a fetched job
			if _, err := s.db.ExecContext(ctx, `UPDATE river_job SET state = 'running' WHERE id = $1`, id); err != nil {
				t.Fatal(err)
			}
		}
		if ok, _ := s.AcquireTraining(ctx, ids[0], "dead", time.Millisecond); !ok {
			t.Fatal("acquire")
		}
		if ok, _ := s.AcquireTraining(ctx, ids[1], "alive", time.Hour); !ok {
			t.Fatal("acquire")
		}
		time.Sleep(10 * time.Millisecond)
		got, err := s.RescueExpiredTrainings(ctx, jobs.Queue(), time.Millisecond)
		if err != nil || !reflect.DeepEqual(got, []int64{ids[0]}) {
			t.Fatalf("rescued %v, %v; want [%d]", got, err, ids[0])
		}
		if info, _ := jobs.Get(ctx, ids[0]); info.State != "available" {
			t.Errorf("rescued job is %s", info.State)
		}
		if info, _ := jobs.Get(ctx, ids[1]); info.State != "running" {
			t.Errorf("the live worker's job is %s", info.State)
		}
		if tr, _ := s.GetTraining(ctx, ids[0]); tr.State != TrainingQueued || tr.Holder != "" {
			t.Errorf("rescued training row %+v", tr)
		}
		if again, _ := s.RescueExpiredTrainings(ctx, jobs.Queue(), time.Millisecond); len(again) != 0 {
			t.Errorf("second rescue %v", again)
		}
	})
}

// TestRescueUnrecordedOutcome: a worker that recorded its run's outcome in the training row and
// died before River recorded it (River records outcomes in batches) leaves a job River counts as
// running that nobody holds. RescueExpiredTrainings hands it back once both the release and the
// run's start are more than grace ago: a retry waits in the queue again, a finished job's row
// stays finished. Not a job River has just handed out whose row still waits from long ago, nor
// one whose outcome River may be about to record.
func TestRescueUnrecordedOutcome(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("u", 4, 2, 1), 16)
		jobs, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		real := s.now
		s.now = func() time.Time { return real().Add(-2 * time.Hour) } // rows written 2 h ago
		ids, err := s.EnqueueTraining(ctx, jobs, "u", "train", []TrainUnit{{Shard: 0}, {Shard: 1}, {Shard: 2}, {Shard: 3}}, func(u TrainUnit) any { return u })
		if err != nil {
			t.Fatal(err)
		}
		record := func(id int64, state, msg string) { // a run takes the row, then records its outcome and releases it
			t.Helper()
			if ok, err := s.AcquireTraining(ctx, id, "w", time.Minute); err != nil || !ok {
				t.Fatalf("acquire %d: %v, %v", id, ok, err)
			}
			if err := s.UpdateTraining(ctx, &Training{JobID: id, Model: "u", State: state, Message: msg}, "w", 0); err != nil {
				t.Fatal(err)
			}
		}
		record(ids[0], TrainingQueued, "attempt 1 of 5 failed, retrying: boom") // 2 h ago
		record(ids[3], TrainingDone, "")                                        // 2 h ago
		s.now = real
		record(ids[2], TrainingQueued, "attempt 1 of 5 failed, retrying: boom") // just now
		// As River marks a job it hands out, with the database's clock, as River does: jobs 0, 2
		// and 3 two hours ago, job 1 just now (its run has not taken the row yet).
		ago := map[Dialect]string{
			Postgres: `UPDATE river_job SET state = 'running', attempted_at = now() - interval '2 hours' WHERE id = $1`,
			SQLite:   `UPDATE river_job SET state = 'running', attempted_at = datetime('now', '-2 hours', 'subsec') WHERE id = $1`,
		}[s.Dialect()]
		fresh := map[Dialect]string{
			Postgres: `UPDATE river_job SET state = 'running', attempted_at = now() WHERE id = $1`,
			SQLite:   `UPDATE river_job SET state = 'running', attempted_at = datetime('now', 'subsec') WHERE id = $1`,
		}[s.Dialect()]
		for i, q := range []string{ago, fresh, ago, ago} {
			if _, err := s.db.ExecContext(ctx, q, ids[i]); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.RescueExpiredTrainings(ctx, jobs.Queue(), time.Minute)
		slices.Sort(got)
		if err != nil || !reflect.DeepEqual(got, []int64{ids[0], ids[3]}) {
			t.Fatalf("rescued %v, %v; want [%d %d]", got, err, ids[0], ids[3])
		}
		for i, want := range []string{"available", "running", "running", "available"} {
			if info, err := jobs.Get(ctx, ids[i]); err != nil || info.State != want {
				t.Errorf("job %d: %+v, %v; want %s", i, info, err, want)
			}
		}
		tr, err := s.GetTraining(ctx, ids[0])
		if err != nil || tr.State != TrainingQueued || tr.Holder != "" || !strings.Contains(tr.Message, "boom") || !strings.Contains(tr.Message, "requeued") {
			t.Errorf("rescued training row %+v, %v", tr, err)
		}
		if tr, err := s.GetTraining(ctx, ids[3]); err != nil || tr.State != TrainingDone {
			t.Errorf("a finished job's row after the rescue: %+v, %v", tr, err)
		}
		if again, _ := s.RescueExpiredTrainings(ctx, jobs.Queue(), time.Minute); len(again) != 0 {
			t.Errorf("second rescue %v", again)
		}
	})
}

// TestPublishOnlyByTheJobsHolder: a stage published for a training job is recorded only while
// the publishing worker holds the running job; once its lease passed to another worker, or the
// job was cancelled, the record is refused (ErrNotHolder) and nothing changes.
func TestPublishOnlyByTheJobsHolder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("h", 1, 3, 1), 30)
		jobs, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := s.EnqueueTraining(ctx, jobs, "h", "test.train", []TrainUnit{{Shard: 0, Sequence: 0}}, func(TrainUnit) any { return struct{}{} })
		if err != nil {
			t.Fatal(err)
		}
		job := ids[0]
		if ok, err := s.AcquireTraining(ctx, job, "w1", time.Nanosecond); err != nil || !ok {
			t.Fatalf("w1 acquires: %v, %v", ok, err)
		}
		tgt, err := s.Target(ctx, "h", 0, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		c := ckpt("h", 0, 1, 1, tgt.Snapshot)
		c.Job, c.Holder = job, "w1"
		if err := s.PublishCheckpoint(ctx, c); err != nil {
			t.Fatalf("the holder publishes stage 1: %v", err)
		}
		time.Sleep(time.Millisecond) // w1's lease expires; w2 takes the job
		if ok, err := s.AcquireTraining(ctx, job, "w2", time.Hour); err != nil || !ok {
			t.Fatalf("w2 acquires the expired lease: %v, %v", ok, err)
		}
		c = ckpt("h", 0, 1, 2, tgt.Snapshot)
		c.Job, c.Holder = job, "w1"
		if err := s.PublishCheckpoint(ctx, c); !errors.Is(err, ErrNotHolder) {
			t.Fatalf("w1 publishes after losing the job: %v, want ErrNotHolder", err)
		}
		c.Holder = "w2"
		if err := s.PublishCheckpoint(ctx, c); err != nil {
			t.Fatalf("w2 publishes stage 2: %v", err)
		}
		if err := s.SetTrainingState(ctx, job, TrainingCancelled, "cancelled"); err != nil {
			t.Fatal(err)
		}
		c = ckpt("h", 0, 1, 3, tgt.Snapshot)
		c.Job, c.Holder = job, "w2"
		if err := s.PublishCheckpoint(ctx, c); !errors.Is(err, ErrNotHolder) {
			t.Fatalf("publishing for a cancelled job: %v, want ErrNotHolder", err)
		}
		m, err := s.GetModel(ctx, "h")
		if err != nil || m.Trained[0][0] != 2 {
			t.Fatalf("trained %v, %v; want 2 stages (the refused ones not recorded)", m.Trained, err)
		}
	})
}

// TestEnqueueTrainingOncePerSequence: replicas sharing a ledger (here two handles on one
// database, each with its own job queue client) that queue a model's training at the same time
// queue each (shard, sequence) once; queueing it again while its job is unfinished queues
// nothing, and once the job has finished (here cancelled in the queue, its row left behind) it
// can be queued again.
func TestEnqueueTrainingOncePerSequence(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			replicas := []*Store{openDSN(t, dsn), openDSN(t, dsn)}
			mustModel(t, replicas[0], spec("once", 2, 2, 2), 40)
			units := []TrainUnit{{0, 0, false}, {0, 1, false}, {1, 0, false}, {1, 1, false}}
			args := func(TrainUnit) any { return struct{}{} }
			queued := make([][]int64, 8)
			errs := make([]error, len(queued))
			var wg sync.WaitGroup
			for i := range queued {
				s := replicas[i%2]
				jobs, err := s.NewJobs(JobsConfig{})
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() { queued[i], errs[i] = s.EnqueueTraining(ctx, jobs, "once", "test.train", units, args) })
			}
			wg.Wait()
			var all []int64
			for i := range queued {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				all = append(all, queued[i]...)
			}
			if len(all) != len(units) {
				t.Fatalf("%d concurrent enqueues on two replicas queued %d jobs, want %d: one per (shard, sequence)", len(queued), len(all), len(units))
			}
			jobs, err := replicas[1].NewJobs(JobsConfig{})
			if err != nil {
				t.Fatal(err)
			}
			again, err := replicas[1].EnqueueTraining(ctx, jobs, "once", "test.train", units, args)
			if err != nil || len(again) != 0 {
				t.Fatalf("enqueue while every job is unfinished: %v, %v; want nothing queued", again, err)
			}
			if _, err := jobs.Cancel(ctx, all[0]); err != nil {
				t.Fatal(err)
			}
			again, err = replicas[1].EnqueueTraining(ctx, jobs, "once", "test.train", units, args)
			if err != nil || len(again) != 1 {
				t.Fatalf("enqueue after one job was cancelled in the queue: %v, %v; want that unit queued again", again, err)
			}
		})
	}
}

// TestUnfinishedTrainingsByLease: a training row a worker holds under a live lease is
// unfinished whatever the queue says (the queue completes a job handed out again when its first,
// stale run returns, while the second run still records stages); a row whose job finished in
// the queue and whose lease is over is not.
func TestUnfinishedTrainingsByLease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("lease", 1, 2, 2), 20)
		jobs, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		units := []TrainUnit{{Shard: 0, Sequence: 0}, {Shard: 0, Sequence: 1}}
		ids, err := s.EnqueueTraining(ctx, jobs, "lease", "test.train", units, func(TrainUnit) any { return struct{}{} })
		if err != nil || len(ids) != 2 {
			t.Fatalf("enqueue: %v, %v", ids, err)
		}
		held, expired := ids[0], ids[1]
		if ok, err := s.AcquireTraining(ctx, held, "w2", time.Hour); err != nil || !ok {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		if ok, err := s.AcquireTraining(ctx, expired, "w1", time.Nanosecond); err != nil || !ok {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		// Both jobs finish in the queue, as when a stale first run returns (cancelled here, a
		// finished state the same as completed).
		for _, id := range ids {
			if _, err := jobs.Cancel(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
		got, err := s.UnfinishedTrainings(ctx, "lease")
		if err != nil {
			t.Fatal(err)
		}
		if want := []UnfinishedTraining{{JobID: held, Shard: 0, Sequence: 0}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("unfinished %+v, want %+v: the held lease only", got, want)
		}
		again, err := s.EnqueueTraining(ctx, jobs, "lease", "test.train", units, func(TrainUnit) any { return struct{}{} })
		if err != nil || len(again) != 1 {
			t.Fatalf("enqueue again: %v, %v; want the expired job's unit only", again, err)
		}
	})
}

// TestQueueDepth counts a job whose training row a live lease holds as running, whatever River
// says of it (a run that lost its lease snoozes the job while the holder works on it).
func TestQueueDepth(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("q", 3, 2, 1), 12)
		jobs, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := s.EnqueueTraining(ctx, jobs, "q", "train", []TrainUnit{{Shard: 0}, {Shard: 1}, {Shard: 2}}, func(u TrainUnit) any { return u })
		if err != nil {
			t.Fatal(err)
		}
		depth := func(wantWaiting, wantRunning int) {
			t.Helper()
			if w, r, err := jobs.Depth(ctx); err != nil || w != wantWaiting || r != wantRunning {
				t.Errorf("depth = %d waiting, %d running, %v; want %d and %d", w, r, err, wantWaiting, wantRunning)
			}
		}
		depth(3, 0)
		if ok, err := s.AcquireTraining(ctx, ids[0], "w", time.Minute); err != nil || !ok { // River still says available
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		depth(2, 1)
		if _, err := s.db.ExecContext(ctx, `UPDATE river_job SET state = 'running' WHERE id = $1`, ids[1]); err != nil {
			t.Fatal(err)
		}
		depth(1, 2)
		real := s.now
		s.now = func() time.Time { return real().Add(2 * time.Minute) } // job 0's lease has expired
		defer func() { s.now = real }()
		depth(2, 1)
	})
}

// TestTrainingNonFiniteLoss records a diverged job's failure: a NaN or infinite loss or rate is
// stored as 0 (SQLite would store NaN as NULL, which the column refuses, and the failure would
// never be recorded: the job showed "running" for good).
func TestTrainingNonFiniteLoss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("n", 1, 1, 1), 4)
		jobs, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := s.EnqueueTraining(ctx, jobs, "n", "train", []TrainUnit{{Shard: 0}}, func(u TrainUnit) any { return u })
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.AcquireTraining(ctx, ids[0], "w", time.Hour); !ok || err != nil {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		for _, loss := range []float64{math.Inf(1), math.NaN()} {
			tr := &Training{JobID: ids[0], Model: "n", State: TrainingRunning, Loss: loss, Rate: math.Inf(-1)}
			if err := s.UpdateTraining(ctx, tr, "w", time.Hour); err != nil {
				t.Fatalf("record loss %v: %v", loss, err)
			}
		}
		if err := s.UpdateTraining(ctx, &Training{JobID: ids[0], Model: "n", State: TrainingFailed, Message: "diverged", Loss: math.NaN()}, "w", 0); err != nil {
			t.Fatalf("record the failure: %v", err)
		}
		got, err := s.GetTraining(ctx, ids[0])
		if err != nil || got.State != TrainingFailed || got.Loss != 0 || got.Rate != 0 || got.Message != "diverged" {
			t.Fatalf("training row %+v, %v; want failed, loss and rate 0", got, err)
		}
	})
}

// TestRescueAbandonedRows: a job whose last attempt failed while the ledger was down was given
// up by the queue (discarded) while its training row, which could not be written, said
// running: the model's training read as unfinished for ever (a PostgreSQL chaos audit). The
// row is marked failed once untouched for longer than grace; a row whose job the queue still
// holds is left alone.
func TestRescueAbandonedRows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustModel(t, s, spec("ab", 3, 2, 1), 12)
		jobs, err := s.NewJobs(JobsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		real := s.now
		s.now = func() time.Time { return real().Add(-time.Hour) } // rows written an hour ago
		ids, err := s.EnqueueTraining(ctx, jobs, "ab", "train", []TrainUnit{{Shard: 0}, {Shard: 1}, {Shard: 2}}, func(u TrainUnit) any { return u })
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids[:2] {
			if ok, _ := s.AcquireTraining(ctx, id, "dead", time.Millisecond); !ok {
				t.Fatal("acquire")
			}
		}
		s.now = real
		for id, state := range map[int64]string{ids[0]: "discarded", ids[1]: "running"} {
			finalized := map[Dialect]string{Postgres: "now()", SQLite: "datetime('now', 'subsec')"}[s.Dialect()]
			if state == "running" {
				finalized = "NULL"
			}
			if _, err := s.db.ExecContext(ctx, `UPDATE river_job SET state = $1, finalized_at = `+finalized+` WHERE id = $2`, state, id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.RescueExpiredTrainings(ctx, jobs.Queue(), time.Minute); err != nil {
			t.Fatal(err)
		}
		want := map[int64]string{ids[0]: TrainingFailed, ids[1]: TrainingQueued, ids[2]: TrainingQueued}
		for id, st := range want {
			tr, err := s.GetTraining(ctx, id)
			if err != nil || tr.State != st {
				t.Errorf("job %d: row %+v, %v; want %s", id, tr, err, st)
			}
		}
		if tr, _ := s.GetTraining(ctx, ids[0]); !strings.Contains(tr.Message, "train the model again") {
			t.Errorf("abandoned row's message %q", tr.Message)
		}
	})
}
