package training_test

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
	"github.com/s3t-dev/s3t/training"
)

// TestDeleteModelDuringTraining deletes a model while its job trains, on the real stack: the
// deletion's purge stops the job before it erases the model's work folder, so once the deletion
// has returned nothing is written there again; the job ends at its first attempt, with no error
// recorded (its model is gone: there is nothing to retry); and nothing of the model is left in
// the work folder or the bucket. The job used to go on training, save its stage into the work
// folder the purge had just erased, fail to publish it ("not found"), retry, and then find
// nothing to do, leaving the stage (trained on the erased samples) there for good.
func TestDeleteModelDuringTraining(t *testing.T) {
	ctx := context.Background()
	// A heartbeat as slow as a real one, and slower than a stage: the job's own lease check
	// does not stop it first (a production job stopped at its next heartbeat, up to a second
	// later, and a stage could finish meanwhile).
	e := newEnvHeartbeat(t, 5*time.Second, 1, 2, 1, 960)
	ids, err := e.runner.Start(ctx, testModel, false)
	if err != nil || len(ids) != 1 {
		t.Fatal(ids, err)
	}
	// Delete while stage 2 trains: stage 1 is saved in the work folder (and published).
	stage := func(i int) string {
		return filepath.Join(adapters.CheckpointDir(filepath.Join(e.work, "models", testModel), 0, 0, i), adapters.CheckpointManifestFile)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(stage(1)); err == nil {
			if _, err := e.st.CheckpointRecordOf(ctx, testModel, 0, 0, 1, 1); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("stage 1 was not saved in the work folder and published")
		}
	}
	if _, err := os.Stat(stage(2)); err == nil {
		t.Fatal("could not catch the job training stage 2")
	}
	if err := e.st.DeleteModel(ctx, testModel); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.work, "models", testModel)
	left := func() []string {
		var files []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return nil
		})
		return files
	}
	if files := left(); len(files) > 0 {
		t.Errorf("right after the deletion returned, the work folder holds %v", files)
	}
	var info *store.JobInfo
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if info, err = e.jobs.Get(ctx, ids[0]); err != nil {
			t.Fatal(err)
		}
		if info.Finished() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job of the deleted model has not ended: %+v", info)
		}
	}
	time.Sleep(200 * time.Millisecond) // a run still writing would show by now
	if info.State != "completed" || info.Attempt != 1 || len(info.Errors) != 0 {
		t.Errorf("the job of the deleted model: state %s, attempt %d, errors %q; want completed at its first attempt, no error",
			info.State, info.Attempt, info.Errors)
	}
	if files := left(); len(files) > 0 {
		t.Errorf("after the job ended, the work folder of the deleted model holds %v", files)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the work folder of the deleted model exists (%v)", err)
	}
	if keys, err := e.blobs.List(ctx, training.ModelPrefix(testModel)); err != nil || len(keys) != 0 {
		t.Errorf("blobs of the deleted model: %v, %v", keys, err)
	}
}
