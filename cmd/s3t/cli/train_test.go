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
		{"train", "--out", "x", "--peft", "prefix"},
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
