package training

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	key := CheckpointKey("m", 0, 0, 1, 1, 0)
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
