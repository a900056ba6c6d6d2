package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3t-dev/s3t/api"
	"github.com/s3t-dev/s3t/assets"
)

// TestUsageExitCodes checks Execute's exit codes: every usage error exits 2 (flags, argument
// counts, unknown commands and subcommands), with cobra's message; help exits 0; an error
// that is not the caller's (no server) exits 1.
func TestUsageExitCodes(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stderr     string // a part of stderr (2: after "s3t: usage: ")
		suggestion string // a suggested command
	}{
		{args: []string{"delete", "m2"}, code: 2, stderr: "requires at least 2 arg(s), only received 1"},
		{args: []string{"delete"}, code: 2, stderr: "requires at least 2 arg(s), only received 0"},
		{args: []string{"models", "get"}, code: 2, stderr: "accepts 1 arg(s), received 0"},
		{args: []string{"models", "get", "a", "b"}, code: 2, stderr: "accepts 1 arg(s), received 2"},
		{args: []string{"models", "train"}, code: 2, stderr: "accepts 1 arg(s), received 0"},
		{args: []string{"models", "list", "extra"}, code: 2, stderr: `unknown command "extra" for "s3t models list"`},
		{args: []string{"keys", "new", "ops"}, code: 2, stderr: "accepts 2 arg(s), received 1"},
		{args: []string{"plugin", "run"}, code: 2, stderr: "accepts 1 arg(s), received 0"},
		{args: []string{"sequences", "extra"}, code: 2, stderr: `unknown command "extra" for "s3t sequences"`},
		{args: []string{"nosuchcmd"}, code: 2, stderr: `unknown command "nosuchcmd" for "s3t"`},
		{args: []string{"serv"}, code: 2, stderr: `unknown command "serv" for "s3t"`, suggestion: "serve"},
		{args: []string{"models", "nosuch"}, code: 2, stderr: `unknown command "nosuch" for "s3t models"`},
		{args: []string{"models", "lst"}, code: 2, stderr: `unknown command "lst" for "s3t models"`, suggestion: "list"},
		{args: []string{"demo", "nosuch"}, code: 2, stderr: `unknown command "nosuch" for "s3t demo"`},
		{args: []string{"completion", "nosuch"}, code: 2, stderr: `unknown command "nosuch" for "s3t completion"`},
		{args: []string{"backbone", "inspect"}, code: 2, stderr: "inspect takes one FILE, got 0 arguments"},
		{args: []string{"models", "list", "--nope"}, code: 2, stderr: "unknown flag: --nope"},
		{args: []string{"models", "get", "m", "--url", ""}, code: 2},
		{args: []string{}, code: 0},
		{args: []string{"models"}, code: 0},
		{args: []string{"models", "--help"}, code: 0},
		{args: []string{"help", "delete"}, code: 0},
		{args: []string{"models", "get", "m", "--url", "http://127.0.0.1:1"}, code: 1, stderr: "connection refused"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{"s3t"}, tt.args...), " "), func(t *testing.T) {
			out, stderr, code := run(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", code, tt.code, out, stderr)
			}
			switch {
			case tt.code == 0:
				if !strings.Contains(out, "Usage:") || stderr != "" {
					t.Errorf("want the help on stdout and nothing on stderr: stdout %q, stderr %q", out, stderr)
				}
			case tt.code == 2 && (!strings.HasPrefix(stderr, "s3t: usage: ") || strings.Contains(stderr, "usage: usage:")):
				t.Errorf("stderr %q, want one \"s3t: usage: \" prefix", stderr)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", stderr, tt.stderr)
			}
			if tt.suggestion != "" && (!strings.Contains(stderr, "Did you mean this?\n") || !strings.Contains(stderr, "\t"+tt.suggestion+"\n")) {
				t.Errorf("stderr %q does not suggest %q", stderr, tt.suggestion)
			}
		})
	}
}

// outcomeModel registers the ViT and creates a LoRA model "m" of shards x slices and one
// sequence, with samples s0..s(n-1) (constant images, labels a and b alternating).
func outcomeModel(t *testing.T, cl *api.Client, shards, slices, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := cl.RegisterBackbone(ctx, &api.RegisterBackboneRequest{Name: "vit", ONNX: assets.ViTFashionMNIST()}); err != nil {
		t.Fatal(err)
	}
	spec := api.ModelSpec{Backbone: "vit", Labels: []string{"a", "b"}, PEFT: api.PEFT{Type: "lora", Config: json.RawMessage(`{"rank": 2}`)},
		S3T:      api.S3TConfig{Shards: shards, Slices: slices, Sequences: 1},
		Training: api.TrainingConfig{Epochs: 1, LearningRate: 1e-2, BatchSize: 4}, Retrain: api.RetrainPolicy{Disabled: true}}
	if _, err := cl.CreateModel(ctx, &api.CreateModelRequest{Name: "m", ModelSpec: spec}); err != nil {
		t.Fatal(err)
	}
	var smps []api.Sample
	for i := range n {
		smps = append(smps, api.Sample{ID: fmt.Sprintf("s%d", i), Input: json.RawMessage(pixelsJSON(float32(i%2) * 0.5)), Label: spec.Labels[i%2]})
	}
	if _, err := cl.UploadSamples(ctx, &api.UploadSamplesRequest{Model: "m", Samples: smps}); err != nil {
		t.Fatal(err)
	}
}

// waitTraining polls the model's training until a job is in state, and returns that job.
func waitTraining(t *testing.T, cl *api.Client, state string) api.TrainingJob {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		st, err := cl.GetTraining(context.Background(), &api.GetTrainingRequest{Model: "m"})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range st.Jobs {
			if j.State == state {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s job within a minute: %+v", state, st)
		}
	}
}

// TestModelsTrainOutcome runs `s3t models train m` against a real server: it exits 1, naming
// the jobs and their states, when a job it follows is cancelled by another client, and 0 when
// the training it queued is done, whatever earlier trainings of the model ended in.
func TestModelsTrainOutcome(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		serve []string
		// before runs before the command; during runs while it follows the training.
		before, during func(t *testing.T, cl *api.Client)
		code           int
		stdout, stderr []string
		notStdout      string
	}{{
		// No worker: the queued job waits until another client cancels it.
		name:  "cancelled by another client",
		serve: []string{"--train-workers", "0"},
		during: func(t *testing.T, cl *api.Client) {
			waitTraining(t, cl, api.TrainingQueued)
			if res, err := cl.CancelTraining(ctx, &api.CancelTrainingRequest{Model: "m"}); err != nil || len(res.Cancelled) != 1 {
				t.Errorf("cancel: %+v, %v", res, err)
			}
		},
		code:      1,
		stdout:    []string{"1 training jobs queued", "(shard 0, sequence 0): cancelled"},
		stderr:    []string{`s3t: training of "m" did not finish: 1 of 1 jobs not done: job `, " cancelled"},
		notStdout: "training done",
	}, {
		// An earlier training was cancelled; this one trains and is done.
		name:  "earlier cancelled training",
		serve: []string{"--train-workers", "1"},
		before: func(t *testing.T, cl *api.Client) {
			if _, err := cl.StartTraining(ctx, &api.StartTrainingRequest{Model: "m"}); err != nil {
				t.Fatal(err)
			}
			if res, err := cl.CancelTraining(ctx, &api.CancelTrainingRequest{Model: "m"}); err != nil || len(res.Cancelled) != 1 {
				t.Fatalf("cancel: %+v, %v", res, err)
			}
		},
		code:   0,
		stdout: []string{"1 training jobs queued", "training done in"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.code == 0 {
				t.Skip("trains a model")
			}
			p := startServeProc(t, filepath.Join(t.TempDir(), "data"), tt.serve...)
			outcomeModel(t, p.cl, 1, 1, 4)
			if tt.before != nil {
				tt.before(t, p.cl)
			}
			var out, errb syncBuf
			done := make(chan int, 1)
			go func() {
				done <- Execute(ctx, []string{"models", "train", "m", "--url", "http://" + p.addr}, &out, &errb)
			}()
			if tt.during != nil {
				tt.during(t, p.cl)
			}
			var code int
			select {
			case code = <-done:
			case <-time.After(2 * time.Minute):
				t.Fatalf("models train did not return within 2 minutes\nstdout %s\nstderr %s\n%s", out.String(), errb.String(), p.log)
			}
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s\n%s", code, tt.code, out.String(), errb.String(), p.log)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout %q lacks %q", out.String(), want)
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(errb.String(), want) {
					t.Errorf("stderr %q lacks %q", errb.String(), want)
				}
			}
			if tt.notStdout != "" && strings.Contains(out.String(), tt.notStdout) {
				t.Errorf("stdout %q has %q", out.String(), tt.notStdout)
			}
			p.stop(t)
		})
	}
}

// TestBatchDeleteOutcome runs `s3t delete m ID...` against a real server, one row after the
// other on the same model: the batch form prints the results (JSON) and a line per id, and
// exits 1 when any id was not deleted by this call (not found, or gone: deleted earlier, its
// line naming the earlier receipt), as the single-id form does.
func TestBatchDeleteOutcome(t *testing.T) {
	p := startServeProc(t, filepath.Join(t.TempDir(), "data"), "--train-workers", "0")
	outcomeModel(t, p.cl, 2, 2, 6)
	url := "http://" + p.addr
	receipts := map[string]string{} // sample id -> receipt id, of the rows' deletions
	tests := []struct {
		name    string
		ids     []string
		code    int
		deleted []string // ids deleted by the row
		stderr  []string // parts of stderr; {id} is the receipt of that earlier deletion
	}{
		{name: "all deleted", ids: []string{"s0", "s1"}, code: 0, deleted: []string{"s0", "s1"},
			stderr: []string{"s0: deleted, receipt {s0}\n", "s1: deleted, receipt {s1}\n"}},
		{name: "one not found", ids: []string{"s2", "nope"}, code: 1, deleted: []string{"s2"},
			stderr: []string{"s2: deleted, receipt {s2}\n", "nope: not found\n", `s3t: delete from "m": 1 of 2 samples not deleted by this call: 1 not found`}},
		{name: "one deleted earlier", ids: []string{"s0", "s3"}, code: 1, deleted: []string{"s3"},
			stderr: []string{"s0: gone: deleted earlier, receipt {s0}\n", "s3: deleted, receipt {s3}\n", "1 of 2 samples not deleted by this call: 1 deleted earlier (gone)"}},
		{name: "none deleted", ids: []string{"s1", "nope", "s2"}, code: 1,
			stderr: []string{"s1: gone: deleted earlier, receipt {s1}\n", "nope: not found\n", "s2: gone: deleted earlier, receipt {s2}\n",
				"3 of 3 samples not deleted by this call: 1 not found, 2 deleted earlier (gone)"}},
		{name: "single id, deleted earlier", ids: []string{"s3"}, code: 1, stderr: []string{"gone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := run(t, append([]string{"delete", "m", "--url", url}, tt.ids...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tt.code, out, stderr)
			}
			if len(tt.ids) > 1 {
				var res api.DeleteSamplesResponse
				if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Results) != len(tt.ids) {
					t.Fatalf("stdout %q: %v; want the results of %d ids", out, err, len(tt.ids))
				}
				for _, r := range res.Results {
					if r.Status == api.DeletionDeleted && r.Receipt != nil {
						receipts[r.ID] = r.Receipt.ID
					}
				}
			}
			for _, id := range tt.deleted {
				if receipts[id] == "" {
					t.Errorf("no receipt for %s in %q", id, out)
				}
			}
			for _, want := range tt.stderr {
				for id, rc := range receipts {
					want = strings.ReplaceAll(want, "{"+id+"}", rc)
				}
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q lacks %q", stderr, want)
				}
			}
		})
	}
	p.stop(t)
}
