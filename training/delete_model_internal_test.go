package training

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/store"
)

// writeStage writes a stage's files into dir, as a job saving it would.
func writeStage(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{adapters.CheckpointParamsFile, adapters.CheckpointManifestFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// fakeJob registers a job of model in r that writes a stage into the work folder every
// millisecond until it is cancelled (or, with stuck, until release is closed: a call into
// ONNX Runtime that does not look at its context), then writes once more and stops.
func fakeJob(t *testing.T, r *Runner, id int64, model string, stuck bool) (ctx context.Context, release chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	a := &activeJob{model: model, cancel: cancel, stopped: make(chan struct{})}
	release = make(chan struct{})
	r.mu.Lock()
	r.active[id] = a
	r.mu.Unlock()
	dir := adapters.CheckpointDir(r.workDir(model), 0, 0, 1)
	go func() {
		defer close(a.stopped)
		if stuck {
			<-release
		} else {
			for ctx.Err() == nil {
				os.MkdirAll(dir, 0o755)
				os.WriteFile(filepath.Join(dir, adapters.CheckpointParamsFile), []byte("x"), 0o644)
				time.Sleep(time.Millisecond)
			}
		}
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, adapters.CheckpointParamsFile), []byte("x"), 0o644)
	}()
	t.Cleanup(func() {
		cancel(nil)
		select {
		case <-release:
		default:
			close(release)
		}
		<-a.stopped
	})
	return ctx, release
}

// TestModelPurgeStopsItsJobs: a model's deletion cancels this process's running jobs of the
// model (errModelDeleted) and waits for them to stop before it erases the model's work folder,
// so nothing is written there once the deletion has returned; jobs of other models run on. It
// used to erase the folder and leave the jobs running, and a stage they saved afterwards stayed.
func TestModelPurgeStopsItsJobs(t *testing.T) {
	ctx := context.Background()
	r, _ := newPurgeRunner(t)
	st := r.cfg.Store
	for _, name := range []string{"m", "other"} {
		if _, err := st.CreateModel(ctx, store.ModelSpec{Name: name, Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}}}); err != nil {
			t.Fatal(err)
		}
	}
	jctx, _ := fakeJob(t, r, 1, "m", false)
	octx, _ := fakeJob(t, r, 2, "other", false)
	for !exists(r.workDir("m")) || !exists(r.workDir("other")) {
		time.Sleep(time.Millisecond)
	}
	if err := st.DeleteModel(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(jctx), errModelDeleted) {
		t.Fatalf("the deleted model's job was not stopped: cause %v", context.Cause(jctx))
	}
	if octx.Err() != nil {
		t.Fatalf("another model's job was stopped: %v", context.Cause(octx))
	}
	time.Sleep(20 * time.Millisecond)
	if exists(r.workDir("m")) {
		t.Fatal("the deleted model's work folder exists after its deletion returned")
	}
	if !exists(r.workDir("other")) {
		t.Fatal("another model's work folder was erased")
	}
}

// TestModelPurgeWaitIsBounded: a job that does not stop (stuck in a long call) holds the
// deletion up for purgeStopWait at most; what it writes once it stops, the job itself erases
// (work calls dropWork for a job whose model is gone), and so does SweepWork.
func TestModelPurgeWaitIsBounded(t *testing.T) {
	ctx := context.Background()
	r, _ := newPurgeRunner(t)
	defer func(d time.Duration) { purgeStopWait = d }(purgeStopWait)
	purgeStopWait = 200 * time.Millisecond
	st := r.cfg.Store
	m, err := st.CreateModel(ctx, store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.claimWork(m, r.log); err != nil {
		t.Fatal(err)
	}
	_, release := fakeJob(t, r, 1, "m", true)
	start := time.Now()
	if err := st.DeleteModel(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the deletion waited %v for a stuck job", el)
	}
	close(release)
	r.mu.Lock()
	a := r.active[1]
	r.mu.Unlock()
	<-a.stopped
	if !exists(r.workDir("m")) {
		t.Fatal("the stuck job wrote nothing after the purge: the test proves nothing")
	}
	if _, err := r.dropWork(ctx, "m", &jobWork{created: m.CreatedAt}, r.log); err != nil {
		t.Fatal(err)
	}
	if exists(r.workDir("m")) {
		t.Fatal("the job's own cleanup left the deleted model's work folder")
	}
	writeStage(t, adapters.CheckpointDir(r.workDir("m"), 0, 0, 1))
	if n, err := r.SweepWork(ctx); err != nil || n != 1 || exists(r.workDir("m")) {
		t.Fatalf("SweepWork = %d, %v; folder left %v: want the deleted model's folder erased", n, err, exists(r.workDir("m")))
	}
}

// TestWorkOfModelCreatedAgain: a model deleted and created again under its name is another
// model. Its jobs claim the work folder (erasing what the deleted one left), and what they
// write stays: SweepWork, a purge of the deletion handed over again, and the cleanup of a job
// of the deleted model that wrote after the claim all leave it, the last erasing its own
// sequence only. A folder of a model that does not exist, or one no job of the model that does
// claimed, is erased.
func TestWorkOfModelCreatedAgain(t *testing.T) {
	ctx := context.Background()
	r, _ := newPurgeRunner(t)
	st := r.cfg.Store
	spec := store.ModelSpec{Name: "m", Config: []byte(`{}`), Slices: 2, Sequences: [][][]int{{{0, 1}}, {{1, 0}}}}
	old, err := st.CreateModel(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.claimWork(old, r.log); err != nil {
		t.Fatal(err)
	}
	stage := func(shard int) string { return adapters.CheckpointDir(r.workDir("m"), shard, 0, 1) }
	writeStage(t, stage(0))
	if n, err := r.SweepWork(ctx); err != nil || n != 0 || !exists(stage(0)) {
		t.Fatalf("SweepWork on a live model's claimed folder = %d, %v; want it kept", n, err)
	}
	deletedAt := time.Now()
	if err := st.DeleteModel(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if exists(r.workDir("m")) {
		t.Fatal("the purge left the deleted model's folder")
	}
	writeStage(t, stage(0)) // a job of the deleted model, still writing after the purge
	m, err := st.CreateModel(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.SweepWork(ctx); err != nil || n != 1 || exists(r.workDir("m")) {
		t.Fatalf("SweepWork on an unclaimed folder of a model created again = %d, %v; want it erased", n, err)
	}
	// What the deleted model left, found by the new model's first job: erased before it writes.
	writeStage(t, stage(0))
	if err := os.WriteFile(filepath.Join(r.workDir("m"), workMarkerFile), []byte(`{"model":"m","created_unix_nano":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.claimWork(m, r.log); err != nil {
		t.Fatal(err)
	}
	if exists(stage(0)) || !r.ownsWork(m) {
		t.Fatal("the new model's claim kept the deleted one's stages, or did not mark the folder")
	}
	writeStage(t, stage(1)) // the new model's
	writeStage(t, stage(0)) // a job of the deleted model that outlived its purge
	if n, err := r.SweepWork(ctx); err != nil || n != 0 || !exists(stage(1)) {
		t.Fatalf("SweepWork on the new model's folder = %d, %v; want it kept", n, err)
	}
	if err := r.purge(ctx, store.Purge{Model: "m", Shard: -1, Slice: -1, Created: deletedAt}); err != nil {
		t.Fatal(err)
	}
	if !exists(stage(1)) {
		t.Fatal("a purge of the earlier deletion, handed over again, erased the new model's stages")
	}
	if _, err := r.dropWork(ctx, "m", &jobWork{created: old.CreatedAt, shard: 0, sequence: 0}, r.log); err != nil {
		t.Fatal(err)
	}
	if exists(stage(0)) || !exists(stage(1)) || !r.ownsWork(m) {
		t.Fatalf("the deleted model's job's cleanup: its stage left %v, the new model's kept %v, marker kept %v; want false true true",
			exists(stage(0)), exists(stage(1)), r.ownsWork(m))
	}
	// A folder of a model that never existed here.
	writeStage(t, adapters.CheckpointDir(r.workDir("ghost"), 0, 0, 1))
	if n, err := r.SweepWork(ctx); err != nil || n != 1 || exists(r.workDir("ghost")) || !exists(stage(1)) {
		t.Fatalf("SweepWork = %d, %v; want the folder of a model that does not exist erased, the new model's kept", n, err)
	}
}
