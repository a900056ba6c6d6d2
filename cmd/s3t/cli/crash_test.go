package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
	"github.com/s3t-dev/s3t/training"
)

// serverProc is an `s3t serve` process: this test binary as the s3t command
// (S3T_TEST_AS_CLI), with its output kept for failure messages.
type serverProc struct {
	*serveChild
	log *syncBuf
}

func startServeProc(t *testing.T, data string, args ...string) *serverProc {
	t.Helper()
	t.Setenv("S3T_TEST_AS_CLI", "1")
	p := &serverProc{log: &syncBuf{}}
	var err error
	if p.serveChild, err = startServeChild(context.Background(), data, p.log, append([]string{"--compact-every", "200ms"}, args...)...); err != nil {
		t.Fatalf("%v\n%s", err, p.log)
	}
	t.Cleanup(p.kill)
	return p
}

// stop shuts the server down gracefully and fails the test if it does not exit cleanly.
func (p *serverProc) stop(t *testing.T) {
	t.Helper()
	if err := p.serveChild.stop(); err != nil {
		t.Fatalf("s3t serve: %v\n%s", err, p.log)
	}
}

// crashModel registers the ViT and a LoRA model of m shards, L slices and one sequence, and
// uploads n MNIST digits; it returns their ids and inputs.
func crashModel(t *testing.T, cl *api.Client, shards, slices, epochs, n int) ([]string, map[string][]float32) {
	t.Helper()
	ctx := context.Background()
	data, err := loadTrainData("mnist", 100, n)
	if err != nil {
		t.Skipf("MNIST is not installed (make deps): %v", err)
	}
	if _, err := cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	labels := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	spec := api.ModelSpec{Backbone: "vit", Labels: labels, PEFT: api.PEFT{Type: "lora", Config: json.RawMessage(`{"rank": 2}`)},
		S3T:      api.S3TConfig{Shards: shards, Slices: slices, Sequences: 1},
		Training: api.TrainingConfig{Epochs: epochs, LearningRate: 1e-2, BatchSize: 16}, Retrain: api.RetrainPolicy{Disabled: true}}
	if _, err := cl.CreateModel(ctx, &api.CreateModelRequest{Name: "m", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	inputs := map[string][]float32{}
	var smps []api.Sample
	for _, e := range data.train {
		in, _ := json.Marshal(e.Input)
		smps = append(smps, api.Sample{ID: e.ID, Input: in, Label: labels[e.Label]})
		ids = append(ids, e.ID)
		inputs[e.ID] = e.Input
	}
	if _, err := cl.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "m", Samples: smps}); err != nil {
		t.Fatal(err)
	}
	return ids, inputs
}

func trainedStages(t *testing.T, cl *api.Client) (done, total int) {
	t.Helper()
	m, err := cl.GetModel(context.Background(), &api.GetModelRequest{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range m.Trained {
		for _, n := range ts {
			done += n
			total += len(m.Sequences[0][0])
		}
	}
	return done, total
}

// TestKillDuringTraining kills the server (SIGKILL) while it trains, after some stages are
// published; the restarted server recovers the orphaned jobs, keeps the published stages and
// finishes training.
func TestKillDuringTraining(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	p := startServeProc(t, data, "--train-workers", "1")
	crashModel(t, p.cl, 2, 2, 3, 640)
	if _, err := p.cl.StartTraining(ctx, &api.StartTrainingRequest{Model: "m"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	var before int
	for {
		done, total := trainedStages(t, p.cl)
		if done >= 1 && done < total {
			before = done
			break
		}
		if done == total || time.Now().After(deadline) {
			t.Fatalf("could not catch training midway (%d of %d stages)\n%s", done, total, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill()

	p = startServeProc(t, data, "--train-workers", "1")
	if done, _ := trainedStages(t, p.cl); done < before {
		t.Fatalf("after the crash %d stages are published, %d were before", done, before)
	}
	st, err := p.cl.WatchTraining(ctx, &api.GetTrainingRequest{Model: "m"}, func(*api.TrainingStatus) error { return nil })
	if err != nil {
		t.Fatalf("watch training after restart: %v\n%s", err, p.log)
	}
	for _, j := range st.Jobs {
		if j.State != api.TrainingDone {
			t.Fatalf("job %+v after restart\n%s", j, p.log)
		}
	}
	if done, total := trainedStages(t, p.cl); done != total {
		t.Fatalf("%d of %d stages trained after restart\n%s", done, total, p.log)
	}
	if !strings.Contains(p.log.String(), "recovered jobs left running by a previous process") {
		t.Errorf("the restarted server did not recover the orphaned job\n%s", p.log)
	}
	res, err := p.cl.Predict(ctx, &api.PredictRequest{Name: "m", Inputs: []json.RawMessage{json.RawMessage(pixelsJSON(0.5))}})
	if err != nil || len(res.Predictions) != 1 {
		t.Fatalf("predict after restart: %+v, %v", res, err)
	}
	p.stop(t)
}

// TestRestartsDoNotUseUpAttempts stops the server gracefully (SIGTERM) again and again while it
// trains, each time interrupting the stage in progress, more often than a job has attempts (5):
// an interruption is not a failed attempt, so the job is never given up, and once left alone it
// finishes.
func TestRestartsDoNotUseUpAttempts(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--train-workers", "1", "--jobs-stop-timeout", "1ms"}
	p := startServeProc(t, data, args...)
	crashModel(t, p.cl, 1, 1, 40, 160) // one stage of about 400 steps
	if _, err := p.cl.StartTraining(ctx, &api.StartTrainingRequest{Model: "m"}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		// Let the job start (it has taken steps), then stop the server mid-stage.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			st, err := p.cl.GetTraining(ctx, &api.GetTrainingRequest{Model: "m"})
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Jobs) == 1 && st.Jobs[0].State == api.TrainingRunning && st.Jobs[0].Step > 0 {
				break
			}
			if st.Done || time.Now().After(deadline) {
				t.Fatalf("restart %d: the job is not running: %+v\n%s", i, st, p.log)
			}
		}
		p.stop(t)
		p = startServeProc(t, data, args...)
	}
	st, err := p.cl.WatchTraining(ctx, &api.GetTrainingRequest{Model: "m"}, func(*api.TrainingStatus) error { return nil })
	if err != nil || len(st.Jobs) != 1 || st.Jobs[0].State != api.TrainingDone {
		t.Fatalf("after 6 interruptions: %+v, %v\n%s", st, err, p.log)
	}
	if done, total := trainedStages(t, p.cl); done != total {
		t.Fatalf("%d of %d stages trained\n%s", done, total, p.log)
	}
	p.stop(t)
}

func pixelsJSON(v float32) string {
	b, _ := json.Marshal(slices.Repeat([]float32{v}, 28*28))
	return string(b)
}

// TestKillDuringDeletions kills the server while clients delete samples (singly and in
// batches). After a restart every receipt a client received exists, each deletion batch is all
// or nothing, every sample is either stored or deleted with exactly one receipt, and no deleted
// sample's input is left in the ledger files or the blobs.
func TestKillDuringDeletions(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	p := startServeProc(t, data, "--train-workers", "0")
	ids, inputs := crashModel(t, p.cl, 2, 2, 1, 600)

	received := make(chan *api.Receipt, len(ids))
	batchDone := make(chan []api.DeletionResult, 16)
	stopClients := make(chan struct{})
	clientsDone := make(chan struct{}, 2)
	go func() { // single deletions of the first half
		defer func() { clientsDone <- struct{}{} }()
		for _, id := range ids[:300] {
			select {
			case <-stopClients:
				return
			default:
			}
			rc, err := p.cl.DeleteSample(ctx, &api.DeleteSampleRequest{Model: "m", ID: id})
			if err != nil {
				return
			}
			received <- rc
		}
	}()
	go func() { // batches of 50 of the second half
		defer func() { clientsDone <- struct{}{} }()
		for lo := 300; lo < len(ids); lo += 50 {
			res, err := p.cl.DeleteSamples(ctx, &api.DeleteSamplesRequest{Model: "m", IDs: ids[lo : lo+50]})
			if err != nil {
				return
			}
			batchDone <- res.Results
		}
	}()
	time.Sleep(300 * time.Millisecond)
	p.kill()
	close(stopClients)
	<-clientsDone
	<-clientsDone
	close(received)
	close(batchDone)

	p = startServeProc(t, data, "--train-workers", "0")
	n := 0
	for rc := range received {
		got, err := p.cl.GetReceipt(ctx, &api.GetReceiptRequest{ID: rc.ID})
		if err != nil || got.SampleID != rc.SampleID || got.LedgerVersion != rc.LedgerVersion {
			t.Fatalf("receipt %s returned before the crash: after restart %+v, %v", rc.ID, got, err)
		}
		n++
	}
	for res := range batchDone {
		for _, r := range res {
			if _, err := p.cl.GetReceipt(ctx, &api.GetReceiptRequest{ID: r.Receipt.ID}); err != nil {
				t.Fatalf("batch receipt %s lost: %v", r.Receipt.ID, err)
			}
		}
	}
	if n == 0 {
		t.Fatalf("no deletion finished before the kill; the test killed too early\n%s", p.log)
	}
	rcs, err := p.cl.AllReceipts(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[string]bool{}
	for _, rc := range rcs {
		if deleted[rc.SampleID] {
			t.Fatalf("two receipts for %s", rc.SampleID)
		}
		deleted[rc.SampleID] = true
	}
	for lo := 300; lo < len(ids); lo += 50 {
		k := 0
		for _, id := range ids[lo : lo+50] {
			if deleted[id] {
				k++
			}
		}
		if k != 0 && k != 50 {
			t.Fatalf("batch %d: %d of 50 deleted: not all or nothing", lo/50, k)
		}
	}
	m, err := p.cl.GetModel(ctx, &api.GetModelRequest{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if int(m.Samples)+len(deleted) != len(ids) {
		t.Fatalf("%d stored + %d deleted != %d uploaded", m.Samples, len(deleted), len(ids))
	}
	for _, id := range ids {
		_, err := p.cl.GetSample(ctx, &api.GetSampleRequest{Model: "m", ID: id})
		switch {
		case deleted[id] && !api.IsGone(err):
			t.Fatalf("deleted sample %s: %v, want 410", id, err)
		case !deleted[id] && err != nil:
			t.Fatalf("stored sample %s: %v", id, err)
		}
	}
	// The compaction loop (every 200 ms here) rewrites the ledger after deletions; then no
	// deleted input may remain in any file of the data directory.
	time.Sleep(time.Second)
	p.stop(t)
	var files [][]byte
	filepath.WalkDir(data, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := os.ReadFile(path); err == nil {
				files = append(files, b)
			}
		}
		return nil
	})
	checked := 0
	for id := range deleted {
		needle := training.EncodeInput(inputs[id])
		for _, b := range files {
			if bytes.Contains(b, needle) {
				t.Fatalf("the input of deleted sample %s survives in the data directory", id)
			}
		}
		if checked++; checked == 60 {
			break
		}
	}
	// The search finds what is there: a stored sample's input is in the ledger.
	found := false
	for _, id := range ids {
		if !deleted[id] {
			needle := training.EncodeInput(inputs[id])
			for _, b := range files {
				found = found || bytes.Contains(b, needle)
			}
			break
		}
	}
	if !found {
		t.Fatal("a stored sample's input is not found in the data directory: the erasure check proves nothing")
	}
	t.Logf("%d single receipts received before the kill, %d samples deleted in all, %d checked absent", n, len(deleted), checked)
}
