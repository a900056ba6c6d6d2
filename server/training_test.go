package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/internal/testmodel"
	"github.com/s3t-dev/s3t/server"
	"github.com/s3t-dev/s3t/serving"
	"github.com/s3t-dev/s3t/store"
	"github.com/s3t-dev/s3t/training"
)

// trainingStack is the ledger, bucket and training runner of the whole product in one process,
// as `s3t serve` wires them: SQLite ledger, file blobs, River jobs with a training worker
// (stopped at the end of the test).
func trainingStack(t *testing.T) (*store.Store, *store.Blobs, *training.Runner, *slog.Logger) {
	t.Helper()
	if testing.Short() {
		t.Skip("trains a model")
	}
	// The server and the runner are the ledger's only writers, as in an embedded s3t serve, so
	// the store answers ledger versions from memory (store.WithExclusive), as there.
	st, blobs := testmodel.OpenStore(t, store.WithExclusive())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs, err := st.NewJobs(store.JobsConfig{Workers: 1, PollInterval: 50 * time.Millisecond, RetryDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := training.New(training.Config{Store: st, Blobs: blobs, Jobs: jobs, WorkDir: filepath.Join(t.TempDir(), "work"),
		Logger: quiet, Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := jobs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		jobs.Stop(sctx)
	})
	return st, blobs, runner, quiet
}

// fullServer is the whole product in one process, as `s3t serve` wires it: trainingStack and
// serving, behind an HTTP server.
func fullServer(t *testing.T) *api.Client {
	t.Helper()
	st, blobs, runner, quiet := trainingStack(t)
	svc, err := serving.New(serving.Config{Store: st, Blobs: blobs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Trainer: runner, Serving: svc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		svc.Close()
	})
	c, err := api.NewClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// digitLabels are MNIST's labels.
var digitLabels = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// digitsSpec is a LoRA model of the committed ViT (registered as "vit") for MNIST digits.
func digitsSpec(layout api.S3TConfig, seed int64) api.ModelSpec {
	return api.ModelSpec{Backbone: "vit", Labels: digitLabels, PEFT: api.PEFT{Type: "lora", Config: json.RawMessage(`{"rank": 2}`)},
		S3T: layout, Training: api.TrainingConfig{Epochs: 1, LearningRate: 1e-2, BatchSize: 16}, Seed: seed}
}

// digitSamples returns the first n MNIST digits as samples with ids prefix000, prefix001, ...
func digitSamples(t *testing.T, prefix string, n int) []api.Sample {
	set := testmodel.MNIST(t)
	smps := make([]api.Sample, n)
	for i := range smps {
		in, _ := json.Marshal(set.Image(i))
		smps[i] = api.Sample{ID: fmt.Sprintf("%s%03d", prefix, i), Input: in, Label: digitLabels[set.Labels[i]]}
	}
	return smps
}

// TestTrainPredictDeleteRetrainOverHTTP drives the whole product over HTTP: upload, train
// (watched through Server-Sent Events), predict, delete until a shard has nothing live, the
// retraining policy retraining it in the background, and the unlearning status along the way.
func TestTrainPredictDeleteRetrainOverHTTP(t *testing.T) {
	ctx := context.Background()
	c := fullServer(t)
	if _, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	spec := digitsSpec(api.S3TConfig{Shards: 2, Slices: 2, Sequences: 2}, 3)
	if _, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: "d", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartTraining(ctx, &api.StartTrainingRequest{Model: "d"}); !api.IsInvalid(err) {
		t.Fatalf("training a model without samples: %v, want 400", err)
	}
	smps := digitSamples(t, "d", 120)
	if _, err := c.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "d", Samples: smps}); err != nil {
		t.Fatal(err)
	}
	input, _ := json.Marshal(testmodel.MNIST(t).Image(500))
	if _, err := c.Predict(ctx, &api.PredictRequest{Name: "d", Inputs: []json.RawMessage{input}}); !api.IsConflict(err) {
		t.Fatalf("predict before training: %v, want 409", err)
	}
	jobs, err := c.StartTraining(ctx, &api.StartTrainingRequest{Model: "d"})
	if err != nil || len(jobs.Jobs) != 4 {
		t.Fatalf("start training = %+v, %v; want 4 jobs", jobs, err)
	}
	events := 0
	last, err := c.WatchTraining(ctx, &api.GetTrainingRequest{Model: "d"}, func(*api.TrainingStatus) error { events++; return nil })
	if err != nil || !last.Done || last.Progress != 1 || last.Step != last.Steps || last.Steps == 0 {
		t.Fatalf("training events: %d, last %+v, %v", events, last, err)
	}
	for _, j := range last.Jobs {
		if j.State != api.TrainingDone || j.Stage != 2 || j.Stages != 2 {
			t.Fatalf("job %+v", j)
		}
	}
	m, err := c.GetModel(ctx, &api.GetModelRequest{Name: "d"})
	if err != nil || !slices.Equal(m.Serving, []api.Served{{Sequence: 0, Length: 2}, {Sequence: 0, Length: 2}}) {
		t.Fatalf("serving after training: %+v, %v", m, err)
	}
	res, err := c.Predict(ctx, &api.PredictRequest{Name: "d", Inputs: []json.RawMessage{input}})
	if err != nil || len(res.Predictions) != 1 || len(res.Served) != 2 || res.Served[0].Length != 2 {
		t.Fatalf("predict: %+v, %v", res, err)
	}

	// Delete shard 0's samples of its sequences' first slices until nothing of it is live:
	// the retraining policy (default: a trained shard with nothing live) retrains it.
	m, _ = c.GetModel(ctx, &api.GetModelRequest{Name: "d"})
	var lastRC *api.Receipt
	var rcs []*api.Receipt
	for _, seq := range m.Sequences[0] {
		for _, smp := range smps {
			info, err := c.GetSample(ctx, &api.GetSampleRequest{Model: "d", ID: smp.ID})
			if err == nil && info.Placement.Shard == 0 && info.Placement.Slice == seq[0] {
				if lastRC, err = c.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "d", ID: smp.ID}); err != nil {
					t.Fatal(err)
				}
				rcs = append(rcs, lastRC)
				break
			}
		}
	}
	// The first deletion leaves sequence 1 serving its first stage of generation 1: the receipt
	// names that checkpoint; the last leaves nothing served (generation 0).
	if rcs[0].Serving != (api.Served{Sequence: 1, Length: 1}) || rcs[0].ServingGen != 1 || lastRC.ServingGen != 0 {
		t.Fatalf("receipts %+v, %+v: want sequence 1 at 1 of generation 1, then nothing", rcs[0], lastRC)
	}
	if lastRC == nil || lastRC.Serving.Length != 0 {
		t.Fatalf("last receipt %+v: shard 0 should serve nothing", lastRC)
	}
	res, err = c.Predict(ctx, &api.PredictRequest{Name: "d", Inputs: []json.RawMessage{input}})
	if err != nil || res.Served[0].Length != 0 || res.Served[1].Length != 2 || res.LedgerVersion < lastRC.LedgerVersion {
		t.Fatalf("predict after shard 0 died: %+v, %v", res, err)
	}
	us, err := c.GetUnlearning(ctx, &api.GetUnlearningRequest{Model: "d"})
	if err != nil || us.Deletions != 2 || us.Shards[0].Deletions != 2 || us.Shards[1].ExpectedDeletionsBeforeRetrain <= 0 {
		t.Fatalf("unlearning status %+v, %v", us, err)
	}
	// The policy queued the retraining of shard 0 only; wait for the swap.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m, err = c.GetModel(ctx, &api.GetModelRequest{Name: "d"})
		if err != nil {
			t.Fatal(err)
		}
		if m.Serving[0].Length == 2 {
			break
		}
		if time.Now().After(deadline) {
			st, _ := c.GetTraining(ctx, &api.GetTrainingRequest{Model: "d"})
			t.Fatalf("shard 0 was not retrained: %+v; training %+v", m, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := c.WatchTraining(ctx, &api.GetTrainingRequest{Model: "d"}, func(*api.TrainingStatus) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	retrains := 0
	for _, j := range st.Jobs {
		if j.Retrain {
			retrains++
			if j.Shard != 0 {
				t.Errorf("the policy retrained shard %d", j.Shard)
			}
		}
	}
	if retrains != 2 {
		t.Errorf("%d retraining jobs, want 2 (shard 0's sequences)", retrains)
	}
	res, err = c.Predict(ctx, &api.PredictRequest{Name: "d", Inputs: []json.RawMessage{input}})
	if err != nil || res.Served[0].Length != 2 || res.Served[0].Gen != 2 {
		t.Fatalf("predict after retraining: %+v, %v", res, err)
	}
	// A deletion after the swap names the retrained generation it leaves served, as predictions do.
	m, _ = c.GetModel(ctx, &api.GetModelRequest{Name: "d"})
	for _, smp := range smps {
		info, err := c.GetSample(ctx, &api.GetSampleRequest{Model: "d", ID: smp.ID})
		if err == nil && info.Placement.Shard == 0 && info.Placement.Slice == m.Sequences[0][0][1] {
			rc, err := c.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "d", ID: smp.ID})
			if err != nil || rc.Serving != (api.Served{Sequence: 0, Length: 1}) || rc.ServingGen != 2 {
				t.Fatalf("receipt after the swap %+v, %v: want sequence 0 at 1 of generation 2", rc, err)
			}
			res, err = c.Predict(ctx, &api.PredictRequest{Name: "d", Inputs: []json.RawMessage{input}})
			if err != nil || res.Served[0].Sequence != 0 || res.Served[0].Length != 1 || res.Served[0].Gen != rc.ServingGen {
				t.Fatalf("predict after the receipt: %+v, %v; want what the receipt names", res, err)
			}
			break
		}
	}
	cancelled, err := c.CancelTraining(ctx, &api.CancelTrainingRequest{Model: "d"})
	if err != nil || len(cancelled.Cancelled) != 0 {
		t.Fatalf("cancel with nothing running: %+v, %v", cancelled, err)
	}
	if _, err := c.DeleteModel(ctx, &api.DeleteModelRequest{Name: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Predict(ctx, &api.PredictRequest{Name: "d", Inputs: []json.RawMessage{input}}); !api.IsNotFound(err) {
		t.Fatalf("predict a deleted model: %v, want 404", err)
	}
}

// TestRetrainingCheckedAtStart: a deletion that cut a shard to nothing, committed by a process
// that stopped before it queued the retraining (here: deleted in the ledger directly, as a
// process killed right after the commit leaves it), is retrained once a server starts.
func TestRetrainingCheckedAtStart(t *testing.T) {
	ctx := context.Background()
	st, blobs, runner, quiet := trainingStack(t)
	// serve runs a server on a fresh port until stop is called.
	serve := func() (c *api.Client, stop func()) {
		srv, err := server.New(server.Config{Store: st, Blobs: blobs, Trainer: runner, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := srv.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(sctx, ln) }()
		if c, err = api.NewClient("http://" + ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		return c, func() {
			cancel()
			if err := <-errc; err != nil {
				t.Error(err)
			}
		}
	}
	c, stop := serve()
	if _, err := c.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	spec := digitsSpec(api.S3TConfig{Shards: 2, Slices: 2, Sequences: 1}, 5)
	if _, err := c.CreateModel(ctx, &api.CreateModelRequest{Name: "r", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	smps := digitSamples(t, "r", 60)
	if _, err := c.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "r", Samples: smps}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartTraining(ctx, &api.StartTrainingRequest{Model: "r"}); err != nil {
		t.Fatal(err)
	}
	if last, err := c.WatchTraining(ctx, &api.GetTrainingRequest{Model: "r"}, func(*api.TrainingStatus) error { return nil }); err != nil || !last.Done {
		t.Fatalf("training: %+v, %v", last, err)
	}
	stop()

	// The deletion commits, and nothing queues its retraining.
	m, err := st.GetModel(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	first := m.Sequences[0][0][0] // shard 0's only sequence, its first slice
	var rc *store.Receipt
	for _, smp := range smps {
		if p, err := st.Placement(ctx, "r", smp.ID); err == nil && p.Shard == 0 && p.Slice == first {
			if rc, err = st.Delete(ctx, "r", smp.ID); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if rc == nil || rc.Serving.Length != 0 {
		t.Fatalf("receipt %+v: shard 0 should serve nothing", rc)
	}
	if jobs, err := runner.Status(ctx, "r"); err != nil || len(jobs) != 2 {
		t.Fatalf("training jobs before the restart: %d, %v; want the 2 first ones", len(jobs), err)
	}

	c, stop = serve()
	defer stop()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := c.GetModel(ctx, &api.GetModelRequest{Name: "r"})
		if err != nil {
			t.Fatal(err)
		}
		if got.Serving[0].Length == 2 {
			break
		}
		if time.Now().After(deadline) {
			status, _ := c.GetTraining(ctx, &api.GetTrainingRequest{Model: "r"})
			t.Fatalf("shard 0 was not retrained after the restart: %+v; training %+v", got.Serving, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPredictWhileTrainingQueued: a prediction of a model with nothing live while its training
// is queued says so, rather than "train it" (as after a deletion the retraining policy queued
// a retraining for). The jobs stay queued: the queue's workers are never started.
func TestPredictWhileTrainingQueued(t *testing.T) {
	if testing.Short() {
		t.Skip("makes a model")
	}
	ctx := context.Background()
	st, blobs := testmodel.OpenStore(t)
	fx := testmodel.New(t, st, blobs, testmodel.Options{Untrained: true})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs, err := st.NewJobs(store.JobsConfig{Workers: 1, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := training.New(training.Config{Store: st, Blobs: blobs, Jobs: jobs, WorkDir: filepath.Join(t.TempDir(), "work"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := serving.New(serving.Config{Store: st, Blobs: blobs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Trainer: runner, Serving: svc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	c, err := api.NewClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	in := rawInputs(t, fx.Test[:1])
	_, err = c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: in})
	if e := wantError(t, err, http.StatusConflict, api.CodeConflict); !strings.Contains(e.Message, "train it") {
		t.Fatalf("untrained, nothing queued: %q, want it to say train it", e.Message)
	}
	started, err := c.StartTraining(ctx, &api.StartTrainingRequest{Model: fx.Name})
	if err != nil || len(started.Jobs) == 0 {
		t.Fatalf("start training = %+v, %v", started, err)
	}
	_, err = c.Predict(ctx, &api.PredictRequest{Name: fx.Name, Inputs: in})
	e := wantError(t, err, http.StatusConflict, api.CodeConflict)
	if want := fmt.Sprintf("training is under way, %d job(s) queued or running", len(started.Jobs)); !strings.Contains(e.Message, want) {
		t.Fatalf("training queued: %q, want %q", e.Message, want)
	}
	// The KServe v2 route says the same, in its own error body.
	_, err = c.InferV2Binary(ctx, fx.Name, fx.Test[:1], fx.Rec.InputShape)
	if err == nil || !strings.Contains(err.Error(), "training is under way") {
		t.Fatalf("v2 while training queued: %v", err)
	}
}
