package training_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/dataset"
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

// TestStrayStageOfDeletedModel: a model is deleted and created again under its name with the
// same ids and labels but other inputs; the new model's job claimed the work folder, and a job
// of the deleted model that outlived the deletion's purge (stuck in one long call, or running
// in another process until its heartbeat) saved a stage there and was not there to erase it (a
// kill). That stage was kept by the sweep and taken by the new model's training as already
// trained (its manifest matched: ids, labels, configuration), which then published and served
// it: parameters trained on the deleted inputs (a review of the deletion-during-training fix).
// Now a stage records its owner (the model's name and creation time): the sweep at start erases
// another owner's, and training never takes one. "same key" also keeps the assignment key, so
// that the deleted model's stages match on every layout, not only one slice.
func TestStrayStageOfDeletedModel(t *testing.T) {
	for _, tt := range []struct {
		name    string
		slices  int
		sameKey bool
	}{{"one slice", 1, false}, {"two slices, same key", 2, true}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 1, tt.slices, 1, 64)
			ids, err := e.runner.Start(ctx, testModel, false)
			if err != nil {
				t.Fatal(err)
			}
			e.wait(t, ids)
			_, old := e.served(t, 0)
			m1, err := e.st.GetModel(ctx, testModel)
			if err != nil {
				t.Fatal(err)
			}
			// What the straggler saves: the deleted model's stages.
			stray := t.TempDir()
			if err := os.CopyFS(stray, os.DirFS(filepath.Join(e.work, "models", testModel, "shard-0"))); err != nil {
				t.Fatal(err)
			}
			if err := e.st.DeleteModel(ctx, testModel); err != nil {
				t.Fatal(err)
			}
			spec := store.ModelSpec{Name: testModel, Config: m1.Config, Slices: m1.Slices, Sequences: m1.Sequences}
			if tt.sameKey {
				spec.Key = m1.Key
			}
			if _, err := e.st.CreateModel(ctx, spec); err != nil {
				t.Fatal(err)
			}
			set, err := dataset.LoadMNIST("")
			if err != nil {
				t.Skip(err)
			}
			var smps []store.Sample
			for i := range 64 {
				smps = append(smps, store.Sample{ID: fmt.Sprintf("m%04d", i), Label: fmt.Sprint(set.Labels[i]), Input: training.EncodeInput(set.Image(i + 5000))})
			}
			if _, err := e.st.PutSamples(ctx, testModel, smps); err != nil {
				t.Fatal(err)
			}
			m2, err := e.st.GetModel(ctx, testModel)
			if err != nil {
				t.Fatal(err)
			}
			// The new model's claim of the folder (what a job of it writes first) ...
			dir := filepath.Join(e.work, "models", testModel)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			mk, _ := json.Marshal(map[string]any{"model": testModel, "created_unix_nano": m2.CreatedAt.UnixNano()})
			if err := os.WriteFile(filepath.Join(dir, "model.json"), mk, 0o644); err != nil {
				t.Fatal(err)
			}
			// ... then the straggler's stages, and a kill.
			if err := os.CopyFS(filepath.Join(dir, "shard-0"), os.DirFS(stray)); err != nil {
				t.Fatal(err)
			}
			// The restart's sweep erases them.
			if _, err := e.runner.SweepWork(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "shard-0", "seq-0", "stage-1")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the deleted model's stage survives the sweep (%v)", err)
			}
			// Left there anyway (the sweep has not run), training would not take it.
			if err := os.CopyFS(filepath.Join(dir, "shard-0"), os.DirFS(stray)); err != nil {
				t.Fatal(err)
			}
			ids, err = e.runner.Start(ctx, testModel, false)
			if err != nil {
				t.Fatal(err)
			}
			e.wait(t, ids)
			_, now := e.served(t, 0)
			if now.Manifest.ParamsSHA256 == old.Manifest.ParamsSHA256 {
				t.Fatalf("the model created again serves the deleted model's checkpoint (params %s)", now.Manifest.ParamsSHA256)
			}
			if now.Manifest.Owner != training.ModelOwner(m2) {
				t.Fatalf("served stage's owner %q, want %q", now.Manifest.Owner, training.ModelOwner(m2))
			}
		})
	}
}
