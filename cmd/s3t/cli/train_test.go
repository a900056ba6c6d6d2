package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3t-dev/s3t/adapters"
)

// TestTrainEvalResume trains a tiny S3T model from the command line, evaluates it with the
// first-slice deletions, and runs train again: every stage is loaded, none trained; an
// interrupted stage (no manifest) is trained again.
func TestTrainEvalResume(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MNIST")
	}
	dir := t.TempDir()
	args := []string{"train", "--data", "mnist", "--shards", "2", "--slices", "2", "--budget", "2", "--rank", "2",
		"--train-limit", "96", "--test-size", "100", "--batch", "16", "--epochs", "1", "--out", dir, "--progress=false"}
	out, stderr, code := run(t, args...)
	if code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, " 0 stages loaded)") {
		t.Errorf("train output: %s", out)
	}
	for _, p := range []string{"model.json", "shard-1/seq-1/stage-2/checkpoint.json", "shard-0/seq-0/stage-1/params.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	out, stderr, code = run(t, "eval", "--model", dir, "--delete-first-slices", "--json")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr)
	}
	var ev struct {
		Rounds []evalRound `json:"rounds"`
	}
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Cyclic(2, 2) = [0 1], [1 0]: round 0 serves sequence 0 at length 2; deleting slice 0 leaves
	// sequence 1 at length 1; deleting slice 1 kills both shards.
	if len(ev.Rounds) != 3 || ev.Rounds[0].LiveShards != 2 || ev.Rounds[0].Served[0].Length != 2 ||
		ev.Rounds[1].Served[0].Sequence != 1 || ev.Rounds[1].Served[0].Length != 1 || ev.Rounds[2].LiveShards != 0 {
		t.Errorf("rounds %+v", ev.Rounds)
	}
	if a := ev.Rounds[0].Accuracy; a <= 0 || a > 1 {
		t.Errorf("accuracy %v", a)
	}
	// Resume: nothing to do, then an interrupted stage.
	out, stderr, code = run(t, args...)
	if code != 0 || !strings.Contains(out, "(0 steps trained, 8 stages loaded)") {
		t.Errorf("second train: exit %d: %s %s", code, out, stderr)
	}
	os.Remove(filepath.Join(adapters.CheckpointDir(dir, 1, 0, 2), adapters.CheckpointManifestFile))
	out, stderr, code = run(t, args...)
	if code != 0 || !strings.Contains(out, "7 stages loaded") {
		t.Errorf("train after an interruption: exit %d: %s %s", code, out, stderr)
	}
	// Other options into the same folder are refused.
	_, _, code = run(t, append(args, "--seed", "2")...)
	if code != 2 {
		t.Errorf("train with another seed into the same folder: exit %d, want 2", code)
	}
}

func TestTrainUsage(t *testing.T) {
	for _, args := range [][]string{
		{"train"},
		{"train", "--out", "x", "--peft", "nosuch"},
		{"train", "--out", "x", "--peft", "prefix", "--peft-config", `{"tokens": -1}`},
		{"train", "--out", "x", "--peft", "adapter", "--rank", "2"},
		{"train", "--out", "x", "--peft-config", "[1]"},
		{"train", "--out", "x", "--shards", "0"},
		{"train", "--out", "x", "--schedule", "linear"},
		{"eval"},
		{"bench", "train", "--samples", "1", "--slices", "4"},
	} {
		if _, _, code := run(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestBenchTrainJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MNIST")
	}
	out, stderr, code := run(t, "bench", "train", "--samples", "64", "--slices", "2", "--budget", "2", "--batch", "16", "--rank", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Results   []trainBenchRow `json:"results"`
		PeakBytes int64           `json:"peak_rss_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got.Results) != 4 || got.PeakBytes <= 0 {
		t.Fatalf("got %+v", got)
	}
	// Shard example-passes: 2 sequences x (32 + 64).
	for _, r := range got.Results {
		if r.ExamplesPerSecond <= 0 || (r.What == "shard" && r.Examples != 192) || (r.What == "stage" && r.Examples != 64) {
			t.Errorf("row %+v", r)
		}
	}
}

// TestTrainPEFTTypes trains a tiny model with prefix tuning (plan in process) and bottleneck
// adapters (plan through the plugin host, out of process), evaluates each through ONNX Runtime
// and exports the served checkpoints: the same path as LoRA, with no branch on the type.
func TestTrainPEFTTypes(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MNIST")
	}
	for _, c := range []struct {
		peft  string
		extra []string
	}{
		{"prefix", []string{"--peft-config", `{"tokens": 2}`}},
		{"adapter", []string{"--plugin-data", t.TempDir()}},
	} {
		t.Run(c.peft, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"train", "--data", "mnist", "--shards", "1", "--slices", "2", "--budget", "2", "--peft", c.peft,
				"--train-limit", "48", "--test-size", "50", "--batch", "16", "--epochs", "1", "--out", dir, "--progress=false"}, c.extra...)
			out, stderr, code := run(t, args...)
			if code != 0 {
				t.Fatalf("train: exit %d: %s", code, stderr)
			}
			if !strings.Contains(out, "trained peft."+c.peft) {
				t.Errorf("train output: %s", out)
			}
			mf, err := readModelFile(dir)
			if err != nil || mf.Plan == nil || mf.PEFT.Type != "peft."+c.peft || len(mf.PEFT.Config) == 0 {
				t.Fatalf("model.json: %v %+v", err, mf)
			}
			export := t.TempDir()
			out, stderr, code = run(t, "eval", "--model", dir, "--json", "--export", export)
			if code != 0 {
				t.Fatalf("eval: exit %d: %s", code, stderr)
			}
			for _, p := range []string{"shard-0/adapter_model.safetensors", "shard-0/checkpoint.json"} {
				if _, err := os.Stat(filepath.Join(export, p)); err != nil {
					t.Errorf("export: %v", err)
				}
			}
			// Resume: all stages load.
			out, stderr, code = run(t, args...)
			if code != 0 || !strings.Contains(out, "(0 steps trained, 4 stages loaded)") {
				t.Errorf("second train: exit %d: %s %s", code, out, stderr)
			}
		})
	}
}
