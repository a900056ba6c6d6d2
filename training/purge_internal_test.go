package training

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/store"
)

// newPurgeRunner returns a Runner on a fresh SQLite ledger and file bucket, and the bucket.
func newPurgeRunner(t *testing.T) (*Runner, *store.Blobs) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.SQLiteDSN(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	blobs, err := store.OpenBlobs(ctx, "file://"+filepath.Join(dir, "blobs")+"?create_dir=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blobs.Close() })
	jobs, err := st.NewJobs(store.JobsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Store: st, Blobs: blobs, Jobs: jobs, WorkDir: filepath.Join(dir, "work")})
	if err != nil {
		t.Fatal(err)
	}
	return r, blobs
}

// TestPurgeSparesLaterBlobs: a whole-model purge erases the model's blobs, but one handed over
// again long after its deletion spares what was written since (a model created again under
// the name).
func TestPurgeSparesLaterBlobs(t *testing.T) {
	ctx := context.Background()
	r, blobs := newPurgeRunner(t)
	key := CheckpointKey("m", 0, 0, 1, 1, 0, 0)
	put := func() {
		if err := blobs.Put(ctx, key, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	exists := func() bool {
		_, err := blobs.ModTime(ctx, key)
		return err == nil
	}
	put()
	if err := r.purge(ctx, store.Purge{Model: "m", Shard: -1, Slice: -1, Created: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if !exists() {
		t.Fatal("a purge of a deletion an hour old erased a blob written now")
	}
	if err := r.purge(ctx, store.Purge{Model: "m", Shard: -1, Slice: -1, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if exists() {
		t.Fatal("a purge right after the deletion left the model's blob")
	}
}

// TestPurgeOfRunningJob: a purge cancels the running jobs of its shard and erases the local
// stages that may have seen the deleted sample; a job still writing a stage when it stopped has
// that stage erased again once it has stopped (erasePurged), and the stages below the deleted
// slice's position stay.
func TestPurgeOfRunningJob(t *testing.T) {
	ctx := context.Background()
	r, _ := newPurgeRunner(t)
	if _, err := r.cfg.Store.CreateModel(ctx, store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2,
		Sequences: [][][]int{{{0, 1}, {1, 0}}}}); err != nil {
		t.Fatal(err)
	}
	stage := func(b, i int) string { return adapters.CheckpointDir(r.workDir("m"), 0, b, i) }
	write := func() {
		for _, d := range []string{stage(0, 1), stage(0, 2), stage(1, 1), stage(1, 2)} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancelled := 0
	a := &activeJob{model: "m", shard: 0, cancel: func(error) { cancelled++ }}
	r.active[7] = a
	write()
	// A deletion from slice 1: sequence [0 1] loses stage 2, sequence [1 0] both stages.
	if err := r.purge(ctx, store.Purge{Model: "m", SampleID: "s", Shard: 0, Slice: 1, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if cancelled != 1 || !slices.Equal(a.purged, []int{1}) {
		t.Fatalf("the running job was cancelled %d times, purged %v; want once, [1]", cancelled, a.purged)
	}
	write() // the job wrote its stages again before it noticed
	delete(r.active, 7)
	r.erasePurged(ctx, "m", 0, a.purged, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for d, want := range map[string]bool{stage(0, 1): true, stage(0, 2): false, stage(1, 1): false, stage(1, 2): false} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", d, err == nil, want)
		}
	}
}

// TestSweepSparesLiveJobs: a job's sweep of its sequence removes the blobs no record names that
// earlier runs left (of a finished job, of no job, of its own earlier run, of a job whose row
// outlived it), and keeps those of another unfinished job, which may record them yet, and every
// recorded one.
func TestSweepSparesLiveJobs(t *testing.T) {
	ctx := context.Background()
	r, blobs := newPurgeRunner(t)
	st := r.cfg.Store
	if _, err := st.CreateModel(ctx, store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}}}); err != nil {
		t.Fatal(err)
	}
	// Two unfinished jobs of one sequence: EnqueueTraining queues a sequence once, but a replica
	// of an older version (during a rolling upgrade) does not check. Queue each while the other
	// looks failed.
	var ids []int64
	for range 3 {
		q, err := st.EnqueueTraining(ctx, r.cfg.Jobs, "m", JobKind, []store.TrainUnit{{Shard: 0, Sequence: 0}},
			func(u store.TrainUnit) any { return jobArgs{Model: "m", Shard: u.Shard, Sequence: u.Sequence} })
		if err != nil || len(q) != 1 {
			t.Fatalf("enqueue: %v, %v", q, err)
		}
		ids = append(ids, q[0])
		if err := st.SetTrainingState(ctx, q[0], store.TrainingFailed, ""); err != nil {
			t.Fatal(err)
		}
	}
	// This job, running; another of the same sequence, queued; and a job that ended in the queue
	// while its row still says queued (its process stopped in between).
	me, other, stuck := ids[0], ids[1], ids[2]
	if err := st.SetTrainingState(ctx, me, store.TrainingRunning, ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{other, stuck} {
		if err := st.SetTrainingState(ctx, id, store.TrainingQueued, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.cfg.Jobs.Cancel(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{ // key: kept by the sweep
		CheckpointKey("m", 0, 0, 1, 1, other, 3):                      true,  // another live job's, not recorded yet
		CheckpointKey("m", 0, 0, 1, 2, me, 3):                         false, // this job's earlier run
		CheckpointKey("m", 0, 0, 1, 2, other+100, 1):                  false, // a job no longer queued or running
		CheckpointKey("m", 0, 0, 1, 2, stuck, 2):                      false, // a job whose row outlived it
		SequencePrefix("m", 0, 0) + "gen-1/stage-1/v1-00.safetensors": false, // no job in the key
		SequencePrefix("m", 0, 0) + "gen-1/stage-2.safetensors":       false,
	}
	recorded := CheckpointKey("m", 0, 0, 1, 1, other+100, 1) // a finished job's, recorded
	keys[recorded] = true
	for k := range keys {
		if err := blobs.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PublishCheckpoint(ctx, store.CheckpointRecord{Model: "m", Shard: 0, Sequence: 0, Gen: 1, Stage: 1,
		BlobKey: recorded, Samples: 1, Digest: "d", Snapshot: 1}); err != nil {
		t.Fatal(err)
	}
	n, err := r.sweep(ctx, jobArgs{Model: "m", Shard: 0, Sequence: 0}, me)
	if err != nil {
		t.Fatal(err)
	}
	for k, kept := range keys {
		_, err := blobs.ModTime(ctx, k)
		if (err == nil) != kept {
			t.Errorf("%s: exists %v after the sweep, want %v", k, err == nil, kept)
		}
	}
	if n != 5 {
		t.Errorf("sweep removed %d blobs, want 5", n)
	}
}

// TestPurgeBySnapshot: a sample's purge erases the covered blobs trained on data read before the
// deletion and leaves those read at its version or later, whenever either was written; a key
// that names no snapshot falls back to the blob's write time.
func TestPurgeBySnapshot(t *testing.T) {
	ctx := context.Background()
	r, blobs := newPurgeRunner(t)
	if _, err := r.cfg.Store.CreateModel(ctx, store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}}}); err != nil {
		t.Fatal(err)
	}
	const v = 7 // the deletion's ledger version; its slice 1 is stage 2 of the sequence
	before := CheckpointKey("m", 0, 0, 1, 2, 3, v-1)
	after := CheckpointKey("m", 0, 0, 2, 2, 4, v)
	below := CheckpointKey("m", 0, 0, 1, 1, 3, v-1) // stage 1 never saw slice 1
	earliest := SequencePrefix("m", 0, 0) + "gen-1/stage-2.safetensors"
	for _, k := range []string{before, after, below, earliest} {
		if err := blobs.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(k string) bool {
		_, err := blobs.ModTime(ctx, k)
		return err == nil
	}
	p := store.Purge{Model: "m", SampleID: "s", Shard: 0, Slice: 1, Version: v}
	p.Created = time.Now().Add(-time.Hour) // handed over again an hour after the deletion
	if err := r.purge(ctx, p); err != nil {
		t.Fatal(err)
	}
	if exists(before) || !exists(after) || !exists(below) || !exists(earliest) {
		t.Fatalf("an hour late: read before %v, read after %v, below %v, earliest layout %v; want false true true true",
			exists(before), exists(after), exists(below), exists(earliest))
	}
	p.Created = time.Now().Add(time.Hour) // every blob was written before the deletion, by the clocks
	if err := r.purge(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !exists(after) || !exists(below) || exists(earliest) {
		t.Fatalf("blobs older than the deletion: read after %v, below %v, earliest layout %v; want true true false",
			exists(after), exists(below), exists(earliest))
	}
}

// TestOneRunPerJob: a job the queue hands out again while it still runs in this process (its
// lease expired and RescueExpiredTrainings requeued it) waits instead of running twice: the lease, held by the process, would not
// tell the two runs apart.
func TestOneRunPerJob(t *testing.T) {
	ctx := context.Background()
	r, _ := newPurgeRunner(t)
	st := r.cfg.Store
	ids := oneJob(t, r)
	first := &activeJob{model: "m", cancel: func(error) {}}
	r.mu.Lock()
	r.active[ids[0]] = first // the first run, still training
	r.mu.Unlock()
	args, _ := json.Marshal(jobArgs{Model: "m", Shard: 0, Sequence: 0})
	if err := r.work(ctx, store.Job{ID: ids[0], Args: args}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "snooze") {
		t.Fatalf("second run of a running job: %v, want a snooze", err)
	}
	row, err := st.GetTraining(ctx, ids[0])
	if err != nil || row.State != store.TrainingQueued || row.Holder != "" {
		t.Fatalf("training row %+v, %v: the second run must not have taken the lease", row, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active[ids[0]] != first {
		t.Fatal("the second run replaced the first in the active jobs")
	}
}

// TestLedgerOutageIsNoAttempt: a run that cannot take its job's lease because the ledger does
// not answer (a database restart) snoozes the job instead of failing the attempt: each outage
// cost every job that started during it one of its attempts (a PostgreSQL chaos audit).
func TestLedgerOutageIsNoAttempt(t *testing.T) {
	ctx := context.Background()
	r, _ := newPurgeRunner(t)
	st := r.cfg.Store
	ids := oneJob(t, r)
	st.Close() // as a database that went away
	args, _ := json.Marshal(jobArgs{Model: "m", Shard: 0, Sequence: 0})
	if err := r.work(ctx, store.Job{ID: ids[0], Args: args, Attempt: 1, MaxAttempts: 5}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "snooze") {
		t.Fatalf("a run during a ledger outage: %v, want a snooze (no attempt used)", err)
	}
}

// oneJob creates model "m" (one shard of 2 slices, one sequence) in r's ledger and queues the
// training job of its one (shard, sequence); it returns the job's id as a one-element slice.
func oneJob(t *testing.T, r *Runner) []int64 {
	t.Helper()
	ctx := context.Background()
	st := r.cfg.Store
	if _, err := st.CreateModel(ctx, store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}}}); err != nil {
		t.Fatal(err)
	}
	ids, err := st.EnqueueTraining(ctx, r.cfg.Jobs, "m", JobKind, []store.TrainUnit{{Shard: 0, Sequence: 0}},
		func(u store.TrainUnit) any { return jobArgs{Model: "m", Shard: u.Shard, Sequence: u.Sequence} })
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
