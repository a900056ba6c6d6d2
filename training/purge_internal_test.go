package training

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/store"
)

// TestPurgeSparesLaterBlobs: a whole-model purge erases the model's blobs, but one handed over
// again long after its deletion spares what was written since (a model created again under
// the name).
func TestPurgeSparesLaterBlobs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.SQLiteDSN(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	blobs, err := store.OpenBlobs(ctx, "file://"+filepath.Join(dir, "blobs")+"?create_dir=true")
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	jobs, err := st.NewJobs(store.JobsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Store: st, Blobs: blobs, Jobs: jobs, WorkDir: filepath.Join(dir, "work")})
	if err != nil {
		t.Fatal(err)
	}
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
