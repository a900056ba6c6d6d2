package training_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/adapters"
	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/backbone"
	"github.com/s3t-dev/s3t/backbone/ort"
	"github.com/s3t-dev/s3t/dataset"
	"github.com/s3t-dev/s3t/sdk"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
	"github.com/s3t-dev/s3t/unlearning"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := ort.Shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "ONNX Runtime shutdown after tests: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// env is a real embedded deployment: SQLite ledger, file blobs, River queue, a Runner.
type env struct {
	st     *store.Store
	blobs  *store.Blobs
	jobs   *store.Jobs
	runner *training.Runner
	work   string
	bucket string // the file:// bucket's folder
	rec    *training.Record
	byID   map[string]adapters.Example
}

const testModel = "digits"

func newEnv(t *testing.T, shards, slices, seqs, samples int) *env {
	t.Helper()
	return newEnvHeartbeat(t, 100*time.Millisecond, shards, slices, seqs, samples)
}

// newEnvHeartbeat is newEnv with the runner's heartbeat (how often a job writes its progress
// and checks its lease).
func newEnvHeartbeat(t *testing.T, heartbeat time.Duration, shards, slices, seqs, samples int) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	var out slog.Handler = slog.NewTextHandler(io.Discard, nil)
	if testing.Verbose() {
		out = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	// No line names an attribute twice (a job's logger and its shard trainer both added shard
	// and sequence): checked once everything below has stopped.
	dups := &dupLog{}
	t.Cleanup(func() {
		if len(dups.lines) > 0 {
			t.Errorf("log lines naming an attribute twice: %q", dups.lines)
		}
	})
	log := slog.New(&uniqueAttrs{next: out, dups: dups})
	st, err := store.Open(ctx, store.SQLiteDSN(dir), store.WithLogger(log))
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
	st.OnPurge(blobs.Purger())
	onnx := assets.ViTFashionMNIST()
	if err := blobs.Put(ctx, training.BackboneKey("vit"), onnx); err != nil {
		t.Fatal(err)
	}
	labels := make([]string, dataset.Classes)
	for i := range labels {
		labels[i] = fmt.Sprint(i)
	}
	spec := api.ModelSpec{
		Backbone: "vit", Labels: labels,
		PEFT:     api.PEFT{Type: "lora", Config: json.RawMessage(`{"rank": 2}`)},
		S3T:      api.S3TConfig{Shards: shards, Slices: slices, Sequences: seqs, Selector: "cyclic"},
		Training: api.TrainingConfig{Epochs: 1, LearningRate: 1e-2, BatchSize: 16},
		Seed:     7,
	}
	rec, err := training.NewRecord(ctx, spec, onnx, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(rec)
	layout := make([][][]int, shards)
	for k := range layout {
		if layout[k], err = unlearning.Select(ctx, unlearning.Cyclic{}, &sdk.SelectRequest{Slices: slices, Budget: seqs, Seed: int64(k)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateModel(ctx, store.ModelSpec{Name: testModel, Config: cfg, Slices: slices, Sequences: layout}); err != nil {
		t.Fatal(err)
	}
	set, err := dataset.LoadMNIST("")
	if err != nil {
		t.Skipf("MNIST is not installed (make deps): %v", err)
	}
	e := &env{st: st, blobs: blobs, rec: rec, byID: map[string]adapters.Example{}, work: filepath.Join(dir, "work"), bucket: filepath.Join(dir, "blobs")}
	var smps []store.Sample
	for i := range samples {
		id := fmt.Sprintf("m%04d", i)
		in := set.Image(i)
		smps = append(smps, store.Sample{ID: id, Label: fmt.Sprint(set.Labels[i]), Input: training.EncodeInput(in)})
		e.byID[id] = adapters.Example{ID: id, Input: in, Label: set.Labels[i]}
	}
	if _, err := st.PutSamples(ctx, testModel, smps); err != nil {
		t.Fatal(err)
	}
	e.jobs, err = st.NewJobs(store.JobsConfig{Workers: 1, PollInterval: 50 * time.Millisecond, RetryDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.runner, err = training.New(training.Config{Store: st, Blobs: blobs, Jobs: e.jobs, WorkDir: e.work, Logger: log,
		Heartbeat: heartbeat})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.jobs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e.jobs.Stop(sctx)
	})
	return e
}

// wait waits for a model's training jobs to finish and fails on a failed or cancelled one.
func (e *env) wait(t *testing.T, ids []int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ts, err := e.st.Trainings(context.Background(), testModel)
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, tr := range ts {
			if !slices.Contains(ids, tr.JobID) {
				continue
			}
			switch tr.State {
			case store.TrainingDone:
				done++
			case store.TrainingCancelled:
				t.Fatalf("job %d cancelled: %s", tr.JobID, tr.Message)
			}
		}
		if done == len(ids) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("training did not finish: %+v", ts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// served decodes the checkpoint a shard serves now.
func (e *env) served(t *testing.T, shard int) (*store.CheckpointRecord, *adapters.Checkpoint) {
	t.Helper()
	ctx := context.Background()
	sv, err := e.st.Serving(ctx, testModel)
	if err != nil {
		t.Fatal(err)
	}
	rec := sv.Shards[shard]
	if rec == nil {
		t.Fatalf("shard %d serves nothing", shard)
	}
	b, err := e.blobs.Get(ctx, rec.BlobKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := adapters.DecodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	return rec, c
}

// retrainFromScratch trains C[shard, sequence, 1..stage] with a fresh ShardTrainer (no
// checkpoint folder, no shared cache) on the samples the ledger holds now.
func (e *env) retrainFromScratch(t *testing.T, shard, sequence, stage int) *adapters.Checkpoint {
	t.Helper()
	ctx := context.Background()
	m, err := e.st.GetModel(ctx, testModel)
	if err != nil {
		t.Fatal(err)
	}
	data := make([][]adapters.Example, m.Slices)
	for j := range data {
		smps, err := e.st.ListSamples(ctx, testModel, unlearning.Placement{Shard: shard, Slice: j}, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range smps {
			data[j] = append(data[j], e.byID[s.ID])
		}
	}
	bm, err := backbone.LoadBytes(assets.ViTFashionMNIST())
	if err != nil {
		t.Fatal(err)
	}
	man, err := backbone.DetectManifest(bm)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := adapters.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	st, err := eng.NewShardTrainer(adapters.ShardConfig{
		Backbone: bm, Manifest: man, PEFT: adapters.Planned{Plugin: e.rec.PEFT.Type, Plan: e.rec.Plan},
		Slices: m.Slices, Head: adapters.Head{Input: e.rec.HeadInput, Classes: len(e.rec.Labels)},
		Epochs: e.rec.Training.Epochs, Optimizer: adapters.AdamW{LearningRate: e.rec.Training.LearningRate},
		BatchSize: e.rec.Training.BatchSize, MicroBatches: 2, Seed: uint64(e.rec.Seed),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs, err := st.TrainSequence(ctx, shard, sequence, m.Sequences[shard][sequence], data, stage)
	if err != nil {
		t.Fatal(err)
	}
	return cs[stage-1]
}

func sameParams(t *testing.T, what string, got, want *adapters.Checkpoint) {
	t.Helper()
	if len(got.Params) != len(want.Params) {
		t.Fatalf("%s: %d parameters, want %d", what, len(got.Params), len(want.Params))
	}
	for name, w := range want.Params {
		g := got.Params[name]
		gv, _ := ort.Values[float32](g)
		wv, _ := ort.Values[float32](w)
		if !slices.Equal(g.Shape, w.Shape) || !slices.Equal(gv, wv) {
			t.Fatalf("%s: parameter %q differs from the stage retrained from scratch", what, name)
		}
	}
	if got.Manifest.SamplesDigest != want.Manifest.SamplesDigest {
		t.Fatalf("%s: samples digest %s, retrained %s", what, got.Manifest.SamplesDigest, want.Manifest.SamplesDigest)
	}
}

// TestTrainDeleteRetrain is the server-side exactness story on the real stack: River jobs train
// every (shard, sequence); a deletion switches stages off, erases the stage checkpoints that saw
// the sample (local and blobs), and what the shard serves then equals, bit for bit, that stage
// retrained from scratch on the remaining data; a retraining swaps in a new generation that
// never saw the sample.
func TestTrainDeleteRetrain(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, 2, 2, 96)
	ids, err := e.runner.Start(ctx, testModel, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Fatalf("Start queued %d jobs, want 2 (one per sequence)", len(ids))
	}
	// A second Start while the jobs are unfinished queues nothing.
	if again, err := e.runner.Start(ctx, testModel, false); err != nil || len(again) != 0 {
		t.Fatalf("second Start = %v, %v; want no new jobs", again, err)
	}
	e.wait(t, ids)
	m, err := e.st.GetModel(ctx, testModel)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Trained, [][]int{{2, 2}}) || !reflect.DeepEqual(m.Published(), []unlearning.Served{{Sequence: 0, Length: 2}}) {
		t.Fatalf("after training: trained %v, published %v", m.Trained, m.Published())
	}
	ts, _ := e.st.Trainings(ctx, testModel)
	for _, tr := range ts {
		if tr.Step != tr.Steps || tr.Steps == 0 || tr.Stage != 2 || tr.Loss <= 0 || tr.Rate <= 0 {
			t.Errorf("job %d progress: %+v", tr.JobID, tr)
		}
	}
	_, full := e.served(t, 0)
	sameParams(t, "trained C[0,0,2]", full, e.retrainFromScratch(t, 0, 0, 2))
	if again, err := e.runner.Start(ctx, testModel, false); err != nil || len(again) != 0 {
		t.Fatalf("Start on a trained model = %v, %v; want nothing to do", again, err)
	}

	// Delete a sample of the second slice of sequence 0: sequence 0 keeps stage 1, sequence 1
	// (whose first slice it is) loses everything.
	seq0 := m.Sequences[0][0]
	victimSlice := seq0[1]
	smps, err := e.st.ListSamples(ctx, testModel, unlearning.Placement{Shard: 0, Slice: victimSlice}, "", 1)
	if err != nil || len(smps) != 1 {
		t.Fatal(smps, err)
	}
	victim := smps[0].ID
	rc, err := e.st.Delete(ctx, testModel, victim)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Serving != (unlearning.Served{Sequence: 0, Length: 1}) {
		t.Fatalf("receipt serving %v, want sequence 0 at 1", rc.Serving)
	}
	crec, c := e.served(t, 0)
	if crec.Stage != 1 || c.Manifest.Stage != 1 {
		t.Fatalf("after the deletion shard 0 serves stage %d", crec.Stage)
	}
	sameParams(t, "served C[0,0,1] after the deletion", c, e.retrainFromScratch(t, 0, 0, 1))
	// Every stage that saw the sample is erased: blobs and local stage checkpoints.
	keys, _ := e.blobs.List(ctx, training.ModelPrefix(testModel))
	for _, k := range keys {
		if strings.Contains(k, "seq-0/gen-1/stage-2") || strings.Contains(k, "seq-1/gen-1/") {
			t.Errorf("blob %s saw the deleted sample and survived", k)
		}
	}
	for _, d := range []string{adapters.CheckpointDir(filepath.Join(e.work, "models", testModel), 0, 0, 2), adapters.CheckpointDir(filepath.Join(e.work, "models", testModel), 0, 1, 1)} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("local stage checkpoint %s survived the deletion (%v)", d, err)
		}
	}

	// Retraining the cut sequences on the remaining data swaps in generation 2.
	ids, err = e.runner.Start(ctx, testModel, false)
	if err != nil || len(ids) != 2 {
		t.Fatalf("Start after the deletion = %v, %v; want 2 retraining jobs", ids, err)
	}
	e.wait(t, ids)
	m, _ = e.st.GetModel(ctx, testModel)
	if !reflect.DeepEqual(m.Gen, [][]int{{2, 2}}) || !reflect.DeepEqual(m.Live, [][]int{{2, 2}}) || !reflect.DeepEqual(m.Trained, [][]int{{2, 2}}) {
		t.Fatalf("after retraining: gen %v live %v trained %v", m.Gen, m.Live, m.Trained)
	}
	_, c = e.served(t, 0)
	sameParams(t, "retrained C[0,0,2]", c, e.retrainFromScratch(t, 0, 0, 2))
	if c.Manifest.Samples != 95 {
		t.Errorf("the retrained stage saw %d samples, want 95", c.Manifest.Samples)
	}
	keys, _ = e.blobs.List(ctx, training.ModelPrefix(testModel))
	for _, k := range keys {
		if strings.Contains(k, "/gen-1/") {
			t.Errorf("generation 1 checkpoint %s survived the swap", k)
		}
	}

	// Deleting the model erases everything derived from it: checkpoints and local stages.
	if err := e.st.DeleteModel(ctx, testModel); err != nil {
		t.Fatal(err)
	}
	if keys, _ := e.blobs.List(ctx, training.ModelPrefix(testModel)); len(keys) != 0 {
		t.Errorf("blobs of a deleted model survive: %v", keys)
	}
	if _, err := os.Stat(filepath.Join(e.bucket, "models", testModel)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the bucket's folder of a deleted model survives (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(e.work, "models", testModel)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the local stage checkpoints of a deleted model survive (%v)", err)
	}
}

// TestCancelTraining cancels queued and running jobs; nothing is published afterwards and the
// model can be trained again.
func TestCancelTraining(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, 2, 1, 64)
	ids, err := e.runner.Start(ctx, testModel, false)
	if err != nil || len(ids) != 2 {
		t.Fatal(ids, err)
	}
	cancelled, err := e.runner.Cancel(ctx, testModel)
	if err != nil || len(cancelled) == 0 {
		t.Fatalf("Cancel = %v, %v", cancelled, err)
	}
	time.Sleep(500 * time.Millisecond)
	ts, _ := e.st.Trainings(ctx, testModel)
	for _, tr := range ts {
		if slices.Contains(cancelled, tr.JobID) && tr.State != store.TrainingCancelled {
			t.Errorf("job %d is %s after Cancel", tr.JobID, tr.State)
		}
	}
	ids, err = e.runner.Start(ctx, testModel, false)
	if err != nil || len(ids) == 0 {
		t.Fatalf("Start after Cancel = %v, %v", ids, err)
	}
	e.wait(t, ids)
	m, _ := e.st.GetModel(ctx, testModel)
	if !reflect.DeepEqual(m.Trained, [][]int{{2}, {2}}) {
		t.Fatalf("trained %v after training again", m.Trained)
	}
}

// TestDeleteDuringTraining deletes a sample of the shard a job is training: the job stops,
// starts over on the remaining data as the next generation, and nothing it publishes, nor
// anything left published, saw the sample.
func TestDeleteDuringTraining(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, 2, 1, 160)
	ids, err := e.runner.Start(ctx, testModel, false)
	if err != nil || len(ids) != 1 {
		t.Fatal(ids, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		tr, err := e.st.GetTraining(ctx, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if tr.State == store.TrainingRunning && tr.Step > 0 {
			break
		}
		if tr.State == store.TrainingDone || time.Now().After(deadline) {
			t.Fatalf("could not catch the job training: %+v", tr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	m, _ := e.st.GetModel(ctx, testModel)
	first := m.Sequences[0][0][0]
	smps, _ := e.st.ListSamples(ctx, testModel, unlearning.Placement{Shard: 0, Slice: first}, "", 1)
	if _, err := e.st.Delete(ctx, testModel, smps[0].ID); err != nil {
		t.Fatal(err)
	}
	e.wait(t, ids)
	m, _ = e.st.GetModel(ctx, testModel)
	if m.Gen[0][0] != 2 || m.Live[0][0] != 2 || m.Trained[0][0] != 2 {
		t.Fatalf("after the deletion during training: gen %v live %v trained %v", m.Gen, m.Live, m.Trained)
	}
	keys, _ := e.blobs.List(ctx, training.ModelPrefix(testModel))
	for _, k := range keys {
		if !strings.Contains(k, "/gen-2/") {
			t.Errorf("checkpoint %s is not of the retrained generation", k)
		}
	}
	_, c := e.served(t, 0)
	if c.Manifest.Samples != 159 {
		t.Errorf("the served stage saw %d samples, want 159", c.Manifest.Samples)
	}
	sameParams(t, "C[0,0,2] after a deletion during training", c, e.retrainFromScratch(t, 0, 0, 2))
}

// TestResumeFromPublishedStages: a sequence whose first stage another worker published (its
// local files elsewhere) resumes here from the published checkpoint: the stage is fetched, not
// trained again, and the result equals training from scratch bit for bit.
func TestResumeFromPublishedStages(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, 2, 1, 64)
	c1 := e.retrainFromScratch(t, 0, 0, 1) // what the other worker trained and published
	b, err := adapters.EncodeCheckpoint(c1)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := e.st.Target(ctx, testModel, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	key := training.CheckpointKey(testModel, 0, 0, 1, 1, 0, tgt.Snapshot)
	if err := e.blobs.Put(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	if err := e.st.PublishCheckpoint(ctx, store.CheckpointRecord{Model: testModel, Shard: 0, Sequence: 0, Gen: 1, Stage: 1,
		BlobKey: key, Samples: int64(c1.Manifest.Samples), Digest: c1.Manifest.SamplesDigest, Snapshot: tgt.Snapshot}); err != nil {
		t.Fatal(err)
	}
	ids, err := e.runner.Start(ctx, testModel, false)
	if err != nil || len(ids) != 1 {
		t.Fatal(ids, err)
	}
	e.wait(t, ids)
	tr, _ := e.st.GetTraining(ctx, ids[0])
	if full := e.retrainFromScratch(t, 0, 0, 2); tr.Steps >= int64(full.Manifest.Steps+c1.Manifest.Steps) {
		t.Errorf("the job took %d steps: it trained stage 1 again", tr.Steps)
	}
	local, err := adapters.LoadCheckpoint(adapters.CheckpointDir(filepath.Join(e.work, "models", testModel), 0, 0, 1))
	if err != nil {
		t.Fatalf("stage 1 was not fetched into the work folder: %v", err)
	}
	sameParams(t, "fetched C[0,0,1]", local, c1)
	_, c2 := e.served(t, 0)
	sameParams(t, "C[0,0,2] resumed from the published stage 1", c2, e.retrainFromScratch(t, 0, 0, 2))
}

// TestConcurrentStartsQueueOnce: concurrent starts of one model (train requests, the retraining
// policy) queue each (shard, sequence) once.
func TestConcurrentStartsQueueOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, 2, 2, 64)
	var wg sync.WaitGroup
	queued := make([][]int64, 6)
	errs := make([]error, len(queued))
	for i := range queued {
		wg.Go(func() { queued[i], errs[i] = e.runner.Start(ctx, testModel, false) })
	}
	wg.Wait()
	var all []int64
	for i := range queued {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		all = append(all, queued[i]...)
	}
	if len(all) != 4 {
		t.Fatalf("%d concurrent starts queued %d jobs (%v), want 4: one per (shard, sequence)", len(queued), len(all), queued)
	}
	e.wait(t, all)
}

// TestJobSweepsItsSequence: a blob an earlier run wrote and never recorded (it stopped in
// between, or failed to remove one the ledger refused) is removed when the next job of that
// sequence starts; what the ledger records stays.
func TestJobSweepsItsSequence(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, 2, 1, 64)
	ids, err := e.runner.Start(ctx, testModel, false)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(t, ids)
	left := []string{
		training.CheckpointKey(testModel, 0, 0, 1, 2, ids[0], 0),
		training.CheckpointKey(testModel, 1, 0, 2, 1, ids[1], 1),
		training.SequencePrefix(testModel, 1, 0) + "gen-1/stage-2.safetensors",
	}
	for _, k := range left {
		if err := e.blobs.Put(ctx, k, []byte("a stage trained on data deleted since")); err != nil {
			t.Fatal(err)
		}
	}
	ids, err = e.runner.Start(ctx, testModel, true) // retrain every sequence
	if err != nil || len(ids) != 2 {
		t.Fatal(ids, err)
	}
	e.wait(t, ids)
	for _, k := range left {
		if _, err := e.blobs.ModTime(ctx, k); err == nil {
			t.Errorf("%s is left after the next job of its sequence", k)
		}
	}
	keys, err := e.st.CheckpointKeys(ctx, testModel)
	if err != nil || len(keys) != 4 {
		t.Fatalf("recorded %v, %v; want 4 stages", keys, err)
	}
	for _, k := range keys {
		if _, err := e.blobs.ModTime(ctx, k); err != nil {
			t.Errorf("recorded %s: %v", k, err)
		}
	}
}

// TestNewSamplesAreTrained uploads samples to a trained model: no checkpoint saw them, so Start
// retrains the sequences whose slices hold them, on the data as it is now (a new generation,
// swapped in), and what the shard serves then equals, bit for bit, a training from scratch on
// all the samples. A Start after that has nothing to do.
func TestNewSamplesAreTrained(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, 2, 2, 64)
	ids, err := e.runner.Start(ctx, testModel, false)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(t, ids)
	if again, err := e.runner.Start(ctx, testModel, false); err != nil || len(again) != 0 {
		t.Fatalf("Start on a trained model = %v, %v; want nothing to do", again, err)
	}
	set, err := dataset.LoadMNIST("")
	if err != nil {
		t.Skipf("MNIST is not installed (make deps): %v", err)
	}
	var late []store.Sample
	for i := 64; i < 80; i++ {
		id := fmt.Sprintf("m%04d", i)
		in := set.Image(i)
		late = append(late, store.Sample{ID: id, Label: fmt.Sprint(set.Labels[i]), Input: training.EncodeInput(in)})
		e.byID[id] = adapters.Example{ID: id, Input: in, Label: set.Labels[i]}
	}
	if _, err := e.st.PutSamples(ctx, testModel, late); err != nil {
		t.Fatal(err)
	}
	m, err := e.st.GetModel(ctx, testModel)
	if err != nil {
		t.Fatal(err)
	}
	if stale, err := e.st.Stale(ctx, m); err != nil || !reflect.DeepEqual(stale, [][]bool{{true, true}}) {
		t.Fatalf("stale after the upload = %v, %v; want both sequences (16 samples fill both slices)", stale, err)
	}
	ids, err = e.runner.Start(ctx, testModel, false)
	if err != nil || len(ids) != 2 {
		t.Fatalf("Start after the upload = %v, %v; want a retraining of both sequences", ids, err)
	}
	e.wait(t, ids)
	m, err = e.st.GetModel(ctx, testModel)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Gen, [][]int{{2, 2}}) || !reflect.DeepEqual(m.Trained, [][]int{{2, 2}}) {
		t.Fatalf("after the retraining: gen %v, trained %v; want a new generation, fully trained", m.Gen, m.Trained)
	}
	rec, ck := e.served(t, 0)
	if rec.Samples != 80 {
		t.Errorf("the served stage saw %d samples, want all 80", rec.Samples)
	}
	sameParams(t, "served after the retraining", ck, e.retrainFromScratch(t, 0, rec.Sequence, rec.Stage))
	if stale, err := e.st.Stale(ctx, m); err != nil || !reflect.DeepEqual(stale, [][]bool{{false, false}}) {
		t.Fatalf("stale after the retraining = %v, %v", stale, err)
	}
	if again, err := e.runner.Start(ctx, testModel, false); err != nil || len(again) != 0 {
		t.Fatalf("Start after the retraining = %v, %v; want nothing to do", again, err)
	}
	// A run of such a job after the swap (a retry, a restart) checks again and trains nothing.
	rerun, err := e.st.EnqueueTraining(ctx, e.jobs, testModel, training.JobKind, []store.TrainUnit{{Shard: 0, Sequence: 0}},
		func(store.TrainUnit) any {
			return map[string]any{"model": testModel, "shard": 0, "sequence": 0, "stale": true}
		})
	if err != nil || len(rerun) != 1 {
		t.Fatalf("enqueue a rerun: %v, %v", rerun, err)
	}
	e.wait(t, rerun)
	if m, err := e.st.GetModel(ctx, testModel); err != nil || !reflect.DeepEqual(m.Gen, [][]int{{2, 2}}) {
		t.Fatalf("after a rerun of a stale job: gen %v, %v; want the retrained generation kept", m.Gen, err)
	}
}

// uniqueAttrs is a slog.Handler that records every line naming an attribute twice, the
// logger's own (With) attributes included, then hands it on.
type uniqueAttrs struct {
	next  slog.Handler
	attrs []string // keys added by WithAttrs since the last group
	dups  *dupLog
}

// dupLog collects the lines uniqueAttrs found.
type dupLog struct {
	mu    sync.Mutex
	lines []string
}

func (h *uniqueAttrs) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *uniqueAttrs) Handle(ctx context.Context, r slog.Record) error {
	seen := map[string]bool{}
	var dup []string
	note := func(k string) {
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
	}
	for _, k := range h.attrs {
		note(k)
	}
	r.Attrs(func(a slog.Attr) bool { note(a.Key); return true })
	if len(dup) > 0 {
		h.dups.mu.Lock()
		h.dups.lines = append(h.dups.lines, fmt.Sprintf("%s: %v", r.Message, dup))
		h.dups.mu.Unlock()
	}
	return h.next.Handle(ctx, r)
}

func (h *uniqueAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	keys := slices.Clone(h.attrs)
	for _, a := range as {
		keys = append(keys, a.Key)
	}
	return &uniqueAttrs{next: h.next.WithAttrs(as), attrs: keys, dups: h.dups}
}

func (h *uniqueAttrs) WithGroup(name string) slog.Handler {
	return &uniqueAttrs{next: h.next.WithGroup(name), dups: h.dups}
}
